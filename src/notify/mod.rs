//! Sending notices (issue 16): the dispatcher reads the store's outbox (`store::outbox`), sends
//! each pending delivery to its target as the target's format wants it, and records the answer
//! durably before the next — 2xx delivered (never sent again), 4xx refused (logged, not
//! retried), no answer or 5xx retried with a growing delay for up to 72 hours.
//!
//! It never touches payouts: it runs as a task of its own (`ccpayout run`) or beside the engine
//! (`ccpayout submit`, then a short flush), its only writes are small transactions on the outbox,
//! and a target that is down only delays that target's notices. Each target's notices go in the
//! order they were recorded: while the first waits for a retry, the ones behind it wait too, and
//! once it is through the rest follow at once.
//!
//! - [`body`]: the JSON and Slack bodies (pure).

pub mod body;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::api::pacing::backoff::{Backoff, Jitter};
use crate::config::{NotifyFormat, NotifyTarget};
use crate::model::notice::{Attempt, Delivery, Notice, after_attempt};
use crate::store::{Store, StoreError};
use crate::util::clock::SharedClock;

/// The retry delays of one target's head notice: about 1 s, 2 s, 4 s, … up to 5 minutes.
const RETRY: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(300),
};

/// The dispatcher looks at the outbox at least this often, whatever it expects.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Settled notices are pruned about this often.
const PRUNE_EVERY_MS: i64 = 3_600_000;

/// At most this much of a refusing target's reply is kept and logged.
const DETAIL_CHARS: usize = 200;

/// Sends the outbox's notices to the configured targets.
pub struct Dispatcher {
    store: Arc<Store>,
    targets: Vec<NotifyTarget>,
    http: reqwest::Client,
    clock: SharedClock,
    host: String,
    reports_dir: Option<PathBuf>,
    console: crate::config::ConsoleConfig,
    jitter: Mutex<Jitter>,
}

/// What a flush left behind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Left {
    /// Target → (notices not yet delivered, the last error met).
    pub pending: BTreeMap<String, (u64, Option<String>)>,
}

impl Dispatcher {
    /// A dispatcher for `targets` over `store`'s outbox; the store records notices for them from
    /// now on. `reports_dir` names a finished batch's reports in its notice; with `console` on,
    /// every notice about a batch links the batch's page there.
    pub fn new(
        store: Arc<Store>,
        targets: Vec<NotifyTarget>,
        clock: SharedClock,
        reports_dir: Option<PathBuf>,
        console: crate::config::ConsoleConfig,
    ) -> anyhow::Result<Dispatcher> {
        crate::api::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("ccpayout/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            // Notices go where the configuration says, never through a redirect elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the notices' HTTP client: {e}"))?;
        store.set_subscriptions(targets.iter().map(NotifyTarget::subscription).collect());
        let seed = u64::try_from(clock.now_ms()).unwrap_or(1) ^ u64::from(std::process::id());
        Ok(Dispatcher {
            store,
            targets,
            http,
            clock,
            host: host_name(),
            reports_dir,
            console,
            jitter: Mutex::new(Jitter::new(seed)),
        })
    }

    /// Sends notices as they are recorded and retries what failed, until `cancel`; then one
    /// more pass for what is due (a daemon stopping tells so).
    pub async fn run(&self, cancel: CancellationToken) {
        let mut pruned_ms = i64::MIN;
        loop {
            let now = self.clock.now_ms();
            if now.saturating_sub(pruned_ms) >= PRUNE_EVERY_MS {
                pruned_ms = now;
                match self.store.prune_notices(now) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(notices = n, "removed settled notices older than a week"),
                    Err(e) => tracing::warn!(error = %e, "could not prune the outbox"),
                }
            }
            let wait = match self.round().await {
                Ok(Some(next_ms)) => Duration::from_millis(u64::try_from(next_ms - self.clock.now_ms()).unwrap_or(0)),
                Ok(None) => MAX_IDLE,
                Err(e) => {
                    tracing::error!(error = %e, "the outbox could not be read or written; notices wait");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = self.store.notice_signal().notified() => {}
                () = tokio::time::sleep(wait.min(MAX_IDLE)) => {}
            }
        }
    }

    /// Sends what is due, for at most `within`: what `submit` does before it exits. Returns
    /// what is left for the next `submit` or `run` to send.
    pub async fn flush(&self, within: Duration) -> Left {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = match tokio::time::timeout_at(deadline, self.round()).await {
                Ok(Ok(next)) => next,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "the outbox could not be read or written");
                    break;
                }
                Err(_) => break,
            };
            let Some(next_ms) = next else { break };
            let wait = Duration::from_millis(u64::try_from(next_ms - self.clock.now_ms()).unwrap_or(0));
            if tokio::time::Instant::now() + wait >= deadline {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        self.left()
    }

    /// The machine's host name, as the notices carry it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The store whose outbox it sends.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// What is still pending, per target.
    pub fn left(&self) -> Left {
        let mut left = Left::default();
        if let Ok(summary) = self.store.outbox_summary() {
            for (target, t) in summary.targets {
                if t.pending > 0 {
                    left.pending.insert(target, (t.pending, t.failing.map(|(e, _)| e)));
                }
            }
        }
        left
    }

    /// One pass: every target's due notices, targets side by side. Returns when the next
    /// delivery is due, if any is pending.
    async fn round(&self) -> Result<Option<i64>, StoreError> {
        let pending = self.store.pending_notices()?;
        let now = self.clock.now_ms();
        let mut queues: BTreeMap<&str, Vec<&Notice>> = BTreeMap::new();
        for notice in &pending {
            for (target, delivery) in &notice.deliveries {
                if !matches!(delivery, Delivery::Pending { .. }) {
                    continue;
                }
                match self.targets.iter().find(|t| &t.name == target) {
                    Some(t) => queues.entry(t.name.as_str()).or_default().push(notice),
                    None => {
                        let dropped = Delivery::Dropped {
                            at_ms: now,
                            reason: "the target is no longer configured".to_owned(),
                        };
                        self.store.put_delivery(notice.seq, target, &dropped)?;
                    }
                }
            }
        }
        let runs = queues.into_iter().map(|(name, queue)| self.drain(name, queue));
        let mut next: Option<i64> = None;
        for result in futures_util::future::join_all(runs).await {
            if let Some(due) = result? {
                next = Some(next.map_or(due, |n: i64| n.min(due)));
            }
        }
        Ok(next)
    }

    /// Sends one target's pending notices in order until one is not acknowledged; returns when
    /// that one is due again.
    async fn drain(&self, name: &str, queue: Vec<&Notice>) -> Result<Option<i64>, StoreError> {
        let Some(target) = self.targets.iter().find(|t| t.name == name) else {
            return Ok(None);
        };
        for (i, notice) in queue.into_iter().enumerate() {
            let Some(Delivery::Pending { attempts, next_ms, .. }) = notice.deliveries.get(name) else {
                continue;
            };
            // The first waits for its retry time; the ones behind it follow as soon as it is
            // through (the target answers again).
            if i == 0 && *next_ms > self.clock.now_ms() {
                return Ok(Some(*next_ms));
            }
            let attempt = self.send(target, notice).await;
            let now = self.clock.now_ms();
            let retry_in = self.retry_delay(attempts.saturating_add(1));
            let delivery = after_attempt(*attempts, &attempt, notice.at_ms, now, retry_in);
            match &delivery {
                Delivery::Delivered { .. } => {
                    tracing::info!(target = name, notice = %notice.id(), event = %notice.event, "notice delivered");
                }
                Delivery::Refused { status, detail, .. } => tracing::error!(
                    target = name,
                    url = %target.url,
                    notice = %notice.id(),
                    event = %notice.event,
                    status,
                    detail = %detail,
                    "the notice target refused a notice (4xx); it is not sent again: check the target's configuration"
                ),
                Delivery::Pending {
                    last_error, next_ms, ..
                } => tracing::warn!(
                    target = name,
                    url = %target.url,
                    notice = %notice.id(),
                    error = last_error.as_deref().unwrap_or(""),
                    retry_in_ms = next_ms - now,
                    "a notice could not be delivered; it is retried"
                ),
                Delivery::Dropped { reason, .. } => {
                    tracing::error!(target = name, notice = %notice.id(), reason = %reason, "a notice was given up");
                }
            }
            self.store.put_delivery(notice.seq, name, &delivery)?;
            if let Delivery::Pending { next_ms, .. } = delivery {
                return Ok(Some(next_ms));
            }
        }
        Ok(None)
    }

    /// One POST of `notice` to `target`.
    async fn send(&self, target: &NotifyTarget, notice: &Notice) -> Attempt {
        let context = body::Context {
            host: &self.host,
            reports_dir: self.reports_dir.as_deref(),
            console: Some(&self.console),
        };
        let bytes = body::body(target.format, notice, &context);
        let mut request = self
            .http
            .post(target.url.as_str())
            .timeout(target.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Ccpayout-Event", notice.event.as_str())
            .header("X-Ccpayout-Notice-Id", notice.id());
        if let Some(secret) = &target.secret
            && target.format == NotifyFormat::Json
        {
            let signature = crate::api::sign::sign_notice(secret, &bytes);
            request = request.header("X-Ccpayout-Signature", format!("sha256={signature}"));
        }
        match request.body(bytes).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let detail = if response.status().is_success() {
                    String::new()
                } else {
                    let text = response.text().await.unwrap_or_default();
                    one_line(&text)
                };
                Attempt::Status(status, detail)
            }
            // Without the URL: a Slack webhook's URL is a credential.
            Err(e) => Attempt::NoAnswer(e.without_url().to_string()),
        }
    }

    /// The delay before retry `attempt`: between half and all of the backoff's ceiling.
    fn retry_delay(&self, attempt: u32) -> i64 {
        let unit = self.jitter.lock().map(|mut j| j.next_unit()).unwrap_or(0.5);
        let ceiling = RETRY.ceiling(attempt).as_millis() as f64;
        (ceiling * (0.5 + unit / 2.0)) as i64
    }
}

/// A reply's text on one line, cut short.
fn one_line(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > DETAIL_CHARS {
        line.chars().take(DETAIL_CHARS).collect::<String>() + "…"
    } else {
        line
    }
}

/// The machine's host name, for the notices' `host`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_kept_short_and_on_one_line() {
        assert_eq!(one_line("bad\n  request\t!"), "bad request !");
        assert_eq!(one_line(&"x".repeat(500)).chars().count(), DETAIL_CHARS + 1);
    }
}
