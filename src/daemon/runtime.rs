//! What the daemon adds to the one operator and to metrics: [`Live`], the operator's runtime
//! inside a running daemon (its pacing, its batch tasks, the lines only it can tell), and the
//! metrics `snapshot`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::api::Pacing;
use crate::app::Runtime;
use crate::jobs;
use crate::model::record::{BatchRecord, BatchState};
use crate::model::state::StateKind;
use crate::util::time::rfc3339_ms;

/// The operator's runtime inside a running daemon.
pub struct Live {
    shared: Arc<Shared>,
}

impl Live {
    pub(super) fn new(shared: Arc<Shared>) -> Live {
        Live { shared }
    }
}

impl Runtime for Live {
    fn pacing(&self) -> Option<&Pacing> {
        Some(self.shared.engine.pacing())
    }

    async fn hold(&self, batch_id: &str) {
        self.shared.batches().hold(batch_id).await;
    }

    fn release(&self, batch_id: &str) {
        self.shared.batches().release(batch_id);
    }

    fn launch(&self, batch_id: &str) {
        self.shared.batches().launch(batch_id);
    }

    fn after_approval(&self, _batch: &BatchRecord) -> String {
        "the daemon sends them now\n".to_owned()
    }

    fn console_link(&self, user: &str) -> Result<String, String> {
        match self.shared.console.get() {
            Some(console) => Ok(console.sign_in_link(user)),
            None => Err(format!(
                "the web console is off in this daemon: add\n\n  [console]\n  enabled = true\n\nto {} and restart it (`systemctl restart ccpayout`); it then answers on {} (loopback only, unless console.behind_proxy = true)",
                self.shared
                    .config
                    .path
                    .as_ref()
                    .map_or_else(|| "its configuration file".to_owned(), |p| p.display().to_string()),
                self.shared.config.console.listen
            )),
        }
    }

    fn status_context(&self) -> String {
        let shared = &self.shared;
        let now = shared.clock.now_ms();
        let mut out = String::new();
        let uptime = Duration::from_millis(u64::try_from(now - shared.started_ms).unwrap_or(0));
        let _ = writeln!(
            out,
            "daemon: up {}, pid {}, state {}",
            human_duration(uptime),
            std::process::id(),
            shared.state_dir.display()
        );
        let gate = shared.engine.pacing().gate();
        if let Some(reason) = gate.snapshot().1 {
            let _ = writeln!(out, "sending held: {reason}");
        }
        if let Some(rate) = gate.allowed_rate() {
            let _ = writeln!(out, "rate limited by CCPayment: sending at about {rate:.1}/s");
        }
        let pacing = shared.engine.pacing();
        let _ = writeln!(
            out,
            "API: round trip {}; in flight up to {} (limits.concurrency {})",
            pacing
                .latency_ms()
                .map_or_else(|| "not measured yet".to_owned(), |ms| format!("{ms:.0} ms on average")),
            pacing.in_flight_limit(),
            pacing.max_in_flight()
        );
        match shared.client.request_stats().last_success_ms {
            Some(t) => {
                let _ = writeln!(out, "last successful API call: {}", rfc3339_ms(t));
            }
            None => {
                let _ = writeln!(out, "last successful API call: none yet");
            }
        }
        let running = shared.batches().running();
        if !running.is_empty() {
            let _ = writeln!(out, "batches being paid: {}", running.len());
        }
        for spec in &shared.inboxes {
            let _ = writeln!(
                out,
                "inbox {}{}",
                spec.inbox.dir().display(),
                spec.job.as_ref().map(|j| format!(" (job {j})")).unwrap_or_default()
            );
        }
        for job in &shared.jobs {
            let _ = writeln!(out, "job {}", jobs::describe(job, now));
        }
        out
    }
}

/// What the console sees of the running daemon: its pacing and request figures, and balances
/// and fee quotes asked through its one paced client.
pub(super) struct ConsoleLive {
    pub(super) shared: Arc<Shared>,
}

impl crate::console::Live for ConsoleLive {
    fn facts(&self) -> crate::console::Facts {
        let shared = &self.shared;
        let pacing = shared.engine.pacing();
        let requests = shared.client.request_stats();
        crate::console::Facts {
            held: pacing.gate().snapshot().1,
            limited_rate: pacing.gate().allowed_rate(),
            configured_rate: f64::from(shared.config.limits.rate_per_second),
            in_flight: requests.in_flight,
            in_flight_limit: pacing.in_flight_limit() as u64,
            last_success_ms: requests.last_success_ms,
            batches_paying: shared.batches().running().len(),
            started_ms: shared.started_ms,
        }
    }

    fn balances(&self) -> futures_util::future::BoxFuture<'_, Result<Vec<crate::console::Balance>, String>> {
        use crate::rules::amount::parse_api_decimal;
        // Each API generation has its own balances call (a v1 account answers 11013 to v2's).
        Box::pin(async move {
            let client = &self.shared.client;
            let balances = match self.shared.config.api.generation {
                crate::model::ApiGeneration::V2 => client
                    .get_app_coin_asset_list()
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|a| (a.coin_symbol, parse_api_decimal(&a.available)))
                    .collect::<Vec<_>>(),
                crate::model::ApiGeneration::V1 => client
                    .v1_assets(None)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|a| (a.crypto, parse_api_decimal(&a.value)))
                    .collect(),
            };
            Ok(balances
                .into_iter()
                .filter_map(|(coin, available)| {
                    Some(crate::console::Balance {
                        coin,
                        available: available?,
                    })
                })
                .collect())
        })
    }

    fn fee(
        &self,
        coin_id: u64,
        chain: String,
    ) -> futures_util::future::BoxFuture<'_, Result<crate::console::FeeQuote, String>> {
        Box::pin(async move {
            let quote = self
                .shared
                .client
                .get_withdraw_fee(coin_id, &chain)
                .await
                .map_err(|e| e.to_string())?;
            let amount = crate::rules::amount::parse_api_decimal(&quote.fee.amount)
                .ok_or_else(|| format!("the fee {:?} is not a decimal", quote.fee.amount))?;
            Ok(crate::console::FeeQuote {
                amount,
                coin_id: Some(quote.fee.coin_id).filter(|c| *c != 0),
            })
        })
    }
}

/// The metrics snapshot, taken at one moment.
pub(super) fn snapshot(shared: &Shared) -> super::metrics::Snapshot {
    let now = shared.clock.now_ms();
    let counts = shared.store.counts(None).unwrap_or_default();
    let count = |k| counts.get(&k).copied().unwrap_or(0);
    let mut batches_by_state: BTreeMap<BatchState, u64> = BatchState::ALL.into_iter().map(|s| (s, 0)).collect();
    if let Ok(batches) = shared.store.batches() {
        for b in batches {
            *batches_by_state.entry(b.state).or_insert(0) += 1;
        }
    }
    let gate = shared.engine.pacing().gate();
    let (persisted, held) = gate.snapshot();
    let pauses = gate.pause_counts();
    let requests = shared.client.request_stats();
    let notices = shared.store.outbox_summary().unwrap_or_default();
    super::metrics::Snapshot {
        orders_by_state: StateKind::ALL.iter().map(|k| (*k, count(*k))).collect(),
        batches_by_state,
        queue_depth: count(StateKind::Queued) + count(StateKind::Deferred),
        requests: requests.by_endpoint_and_code,
        rate_limit_pauses: pauses.rate_limit,
        daily_limit_pauses: pauses.daily_limit,
        paused: held.is_some(),
        kill_switch: persisted.kill_switch,
        last_success_ms: requests.last_success_ms,
        webhooks: shared.webhook_stats.get().map(|s| s.snapshot()).unwrap_or_default(),
        inbox_files: shared.stats.inbox.lock().map(|m| m.clone()).unwrap_or_default(),
        job_runs: shared.stats.job_runs.lock().map(|m| m.clone()).unwrap_or_default(),
        job_last_run_ms: shared.stats.job_last_run.lock().map(|m| m.clone()).unwrap_or_default(),
        notices: notices
            .targets
            .iter()
            .flat_map(|(target, t)| {
                [
                    ("pending", t.pending),
                    ("delivered", t.delivered),
                    ("refused", t.refused),
                    ("dropped", t.dropped),
                ]
                .map(|(state, n)| ((target.clone(), state.to_owned()), n))
            })
            .collect(),
        notice_failing: notices
            .targets
            .iter()
            .map(|(target, t)| (target.clone(), t.failing.is_some()))
            .collect(),
        started_ms: shared.started_ms,
        now_ms: now,
        build_version: env!("CARGO_PKG_VERSION").to_owned(),
        latency_buckets: requests.latency_buckets,
        latency_sum_ms: requests.latency_sum_ms,
        in_flight: requests.in_flight,
        in_flight_limit: shared.engine.pacing().in_flight_limit() as u64,
        console: shared.console.get().map(|c| c.metrics()),
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}
