//! Prometheus metrics of the `ccpayout run` daemon: a [`Snapshot`] of what it exposes, its
//! rendering in the Prometheus text exposition format 0.0.4 ([`render`], pure), and a small HTTP
//! server for `GET /metrics` ([`router`], [`serve`]).
//!
//! The daemon builds a [`Snapshot`] on every scrape from its store (orders and batches by
//! state), the API client ([`crate::api::Client::request_stats`]), the pause gate
//! ([`crate::api::pacing::gate::Gate::pause_counts`] and [`crate::api::pacing::gate::Gate::snapshot`]) and
//! its own counters (webhooks, inbox files, jobs). Counters count since the daemon started;
//! Prometheus handles the reset at a restart (`rate()`, `increase()`).
//!
//! # Metrics
//!
//! | name | type | labels |
//! |---|---|---|
//! | `ccpayout_orders` | gauge | `state` |
//! | `ccpayout_batches` | gauge | `state` |
//! | `ccpayout_queue_depth` | gauge | |
//! | `ccpayout_api_requests_total` | counter | `endpoint`, `code` |
//! | `ccpayout_rate_limit_pauses_total` | counter | |
//! | `ccpayout_daily_limit_pauses_total` | counter | |
//! | `ccpayout_submission_paused` | gauge | |
//! | `ccpayout_kill_switch` | gauge | |
//! | `ccpayout_last_successful_api_call_timestamp_seconds` | gauge | |
//! | `ccpayout_api_request_duration_seconds` | histogram | |
//! | `ccpayout_api_requests_in_flight` | gauge | |
//! | `ccpayout_api_in_flight_limit` | gauge | |
//! | `ccpayout_webhooks_total` | counter | `result` |
//! | `ccpayout_inbox_files_total` | counter | `result` |
//! | `ccpayout_job_runs_total` | counter | `job`, `result` |
//! | `ccpayout_job_last_run_timestamp_seconds` | gauge | `job` |
//! | `ccpayout_notices` | gauge | `target`, `state` |
//! | `ccpayout_notice_target_failing` | gauge | `target` |
//! | `ccpayout_console_sessions` | gauge | |
//! | `ccpayout_console_sign_ins_total` | counter | `result` |
//! | `ccpayout_console_actions_total` | counter | `action`, `result` |
//! | `ccpayout_start_time_seconds` | gauge | |
//! | `ccpayout_build_info` | gauge | `version` |
//!
//! Every family always has its `# HELP` and `# TYPE` lines, also when it has no sample yet.
//! Timestamps are Unix seconds with up to millisecond decimals.
//!
//! `ccpayout_last_successful_api_call_timestamp_seconds` has **no sample** until the first
//! successful call, rather than `NaN` or 0: a 0 would read as "last success in 1970" and a `NaN`
//! silently makes every comparison false. Alert on staleness with something like
//! `time() - ccpayout_last_successful_api_call_timestamp_seconds > 900`, and on a daemon that
//! never succeeded with `absent(ccpayout_last_successful_api_call_timestamp_seconds)`.
//!
//! # Exposure
//!
//! The endpoint has no authentication and tells anyone who can reach it how much is being paid
//! out and when. It is bound to a loopback address (default `127.0.0.1:9187`) for a local
//! Prometheus or agent to scrape; [`crate::util::net::check_loopback`] is the check the configuration makes, which
//! refuses any other address (put a proxy in front to expose the metrics).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::model::record::BatchState;
use crate::model::state::StateKind;

/// The `Content-Type` of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything the daemon exposes, taken at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Orders in the store by state. Fill in every state, zeros included, so a series does not
    /// vanish when its count drops to zero.
    pub orders_by_state: BTreeMap<StateKind, u64>,
    /// Batches in the store by state, zeros included.
    pub batches_by_state: BTreeMap<BatchState, u64>,
    /// Orders waiting to be submitted: `queued` plus `deferred`.
    pub queue_depth: u64,
    /// API requests by (endpoint label, outcome), from
    /// [`crate::api::client::RequestStats::by_endpoint_and_code`].
    pub requests: BTreeMap<(String, String), u64>,
    /// Pauses begun after an 11004, from [`crate::api::pacing::gate::PauseCounts::rate_limit`].
    pub rate_limit_pauses: u64,
    /// Pauses begun until the daily reset, from
    /// [`crate::api::pacing::gate::PauseCounts::daily_limit`].
    pub daily_limit_pauses: u64,
    /// Sending is paused now, for any reason (rate limit, daily limit, kill switch).
    pub paused: bool,
    /// The operator's kill switch is on.
    pub kill_switch: bool,
    /// When CCPayment last answered a request with success (Unix ms); `None`: never yet.
    pub last_success_ms: Option<i64>,
    /// Webhook deliveries received, by result.
    pub webhooks: BTreeMap<String, u64>,
    /// Inbox files handled, by result: `claimed`, `done`, `rejected`.
    pub inbox_files: BTreeMap<String, u64>,
    /// Scheduled job runs by (job, `ok` | `failed`).
    pub job_runs: BTreeMap<(String, String), u64>,
    /// When each job last ran (Unix ms).
    pub job_last_run_ms: BTreeMap<String, i64>,
    /// Notices in the outbox by (target, delivery state: `pending`, `delivered`, `refused`,
    /// `dropped`), zeros included.
    pub notices: BTreeMap<(String, String), u64>,
    /// Targets whose oldest pending notice failed its last attempt (1) or not (0).
    pub notice_failing: BTreeMap<String, bool>,
    /// When the daemon started (Unix ms).
    pub started_ms: i64,
    /// When this snapshot was taken (Unix ms). Not exported as a sample: Prometheus stamps
    /// every scrape itself, and explicit sample timestamps would defeat its staleness handling.
    /// The daemon's own status output uses it.
    pub now_ms: i64,
    /// The ccpayout version (`CARGO_PKG_VERSION`).
    pub build_version: String,
    /// Round trips of API replies by bucket ([`crate::api::client::LATENCY_BOUNDS_SECS`], not
    /// cumulative, one more than the bounds) and their sum in milliseconds.
    pub latency_buckets: Vec<u64>,
    pub latency_sum_ms: u64,
    /// API requests sent whose outcome is not known yet.
    pub in_flight: u64,
    /// How many may be in flight now (the pacing's limit, from the latency measured).
    pub in_flight_limit: u64,
    /// The web console's sessions, sign-ins and actions; `None`: no console.
    pub console: Option<crate::console::ConsoleMetrics>,
}

/// One metric family being written: its `# HELP` and `# TYPE` lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    /// A sample with `labels` (name, value) and a value already formatted.
    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (name, label_value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{name}=\"{}\"", escape_label_value(label_value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Renders `s` in the Prometheus text exposition format 0.0.4.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let out = &mut out;

    let mut f = Family::new(out, "ccpayout_orders", "gauge", "Orders in the store by state.");
    for (state, n) in &s.orders_by_state {
        f.sample(&[("state", state.as_str())], n);
    }

    let mut f = Family::new(out, "ccpayout_batches", "gauge", "Batches in the store by state.");
    for (state, n) in &s.batches_by_state {
        f.sample(&[("state", state.as_str())], n);
    }

    Family::new(
        out,
        "ccpayout_queue_depth",
        "gauge",
        "Orders waiting to be submitted (queued or deferred).",
    )
    .sample(&[], s.queue_depth);

    let mut f = Family::new(
        out,
        "ccpayout_api_requests_total",
        "counter",
        "CCPayment API requests by endpoint and outcome: the reply's code, http_<status> for an HTTP reply that \
         is not a CCPayment envelope, or transport when no reply came.",
    );
    for ((endpoint, code), n) in &s.requests {
        f.sample(&[("endpoint", endpoint), ("code", code)], n);
    }

    Family::new(
        out,
        "ccpayout_rate_limit_pauses_total",
        "counter",
        "Submission pauses begun because CCPayment answered 11004 (rate limited).",
    )
    .sample(&[], s.rate_limit_pauses);

    Family::new(
        out,
        "ccpayout_daily_limit_pauses_total",
        "counter",
        "Submission pauses begun until the daily reset (11009 or the client's daily budget).",
    )
    .sample(&[], s.daily_limit_pauses);

    Family::new(
        out,
        "ccpayout_submission_paused",
        "gauge",
        "1 while sending to CCPayment is paused (rate limit, daily limit or kill switch), else 0.",
    )
    .sample(&[], u8::from(s.paused));

    Family::new(
        out,
        "ccpayout_kill_switch",
        "gauge",
        "1 while the operator's kill switch is on, else 0.",
    )
    .sample(&[], u8::from(s.kill_switch));

    let mut f = Family::new(
        out,
        "ccpayout_last_successful_api_call_timestamp_seconds",
        "gauge",
        "When CCPayment last answered a request with success (Unix time); no sample until the first success.",
    );
    if let Some(ms) = s.last_success_ms {
        f.sample(&[], seconds(ms));
    }

    Family::new(
        out,
        "ccpayout_api_request_duration_seconds",
        "histogram",
        "Round trips of CCPayment API requests that got a reply, from leaving to the reply.",
    );
    let mut cumulative = 0u64;
    for (i, bound) in crate::api::client::LATENCY_BOUNDS_SECS.iter().enumerate() {
        cumulative += s.latency_buckets.get(i).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "ccpayout_api_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    let total: u64 = s.latency_buckets.iter().sum();
    let _ = writeln!(
        out,
        "ccpayout_api_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
    );
    let _ = writeln!(
        out,
        "ccpayout_api_request_duration_seconds_sum {}",
        seconds(s.latency_sum_ms as i64)
    );
    let _ = writeln!(out, "ccpayout_api_request_duration_seconds_count {total}");

    Family::new(
        out,
        "ccpayout_api_requests_in_flight",
        "gauge",
        "CCPayment API requests sent whose outcome is not known yet.",
    )
    .sample(&[], s.in_flight);

    Family::new(
        out,
        "ccpayout_api_in_flight_limit",
        "gauge",
        "How many API requests may be in flight now: the rate times the measured round trip, with headroom, within limits.concurrency.",
    )
    .sample(&[], s.in_flight_limit);

    let mut f = Family::new(
        out,
        "ccpayout_webhooks_total",
        "counter",
        "Webhook deliveries received, by result.",
    );
    for (result, n) in &s.webhooks {
        f.sample(&[("result", result)], n);
    }

    let mut f = Family::new(
        out,
        "ccpayout_inbox_files_total",
        "counter",
        "Inbox files handled, by result.",
    );
    for (result, n) in &s.inbox_files {
        f.sample(&[("result", result)], n);
    }

    let mut f = Family::new(
        out,
        "ccpayout_job_runs_total",
        "counter",
        "Scheduled job runs by job and result.",
    );
    for ((job, result), n) in &s.job_runs {
        f.sample(&[("job", job), ("result", result)], n);
    }

    let mut f = Family::new(
        out,
        "ccpayout_job_last_run_timestamp_seconds",
        "gauge",
        "When each scheduled job last ran (Unix time).",
    );
    for (job, ms) in &s.job_last_run_ms {
        f.sample(&[("job", job)], seconds(*ms));
    }

    let mut f = Family::new(
        out,
        "ccpayout_notices",
        "gauge",
        "Notices in the outbox by target and delivery state (settled ones are kept a week).",
    );
    for ((target, state), n) in &s.notices {
        f.sample(&[("target", target), ("state", state)], n);
    }

    let mut f = Family::new(
        out,
        "ccpayout_notice_target_failing",
        "gauge",
        "1 while a notify target's oldest pending notice failed its last attempt (unreachable or 5xx).",
    );
    for (target, failing) in &s.notice_failing {
        f.sample(&[("target", target)], u8::from(*failing));
    }

    let mut f = Family::new(
        out,
        "ccpayout_console_sessions",
        "gauge",
        "Web console sessions signed in and not idle (no sample when the console is off).",
    );
    if let Some(c) = &s.console {
        f.sample(&[], c.sessions);
    }

    let mut f = Family::new(
        out,
        "ccpayout_console_sign_ins_total",
        "counter",
        "Web console sign-in attempts by result: ok, or why the link was refused (unknown, used, expired, limited).",
    );
    for (result, n) in s.console.iter().flat_map(|c| &c.sign_ins) {
        f.sample(&[("result", result)], n);
    }

    let mut f = Family::new(
        out,
        "ccpayout_console_actions_total",
        "counter",
        "Web console actions (approve, cancel, pause, resume, sign_out) by result: done, refused, failed, or forbidden (no valid CSRF token).",
    );
    for ((action, result), n) in s.console.iter().flat_map(|c| &c.actions) {
        f.sample(&[("action", action), ("result", result)], n);
    }

    Family::new(
        out,
        "ccpayout_start_time_seconds",
        "gauge",
        "When the daemon started (Unix time).",
    )
    .sample(&[], seconds(s.started_ms));

    Family::new(
        out,
        "ccpayout_build_info",
        "gauge",
        "The ccpayout build; the value is always 1.",
    )
    .sample(&[("version", &s.build_version)], 1);

    std::mem::take(out)
}

/// Unix milliseconds as exact decimal seconds: `1700000000.5`, `1700000000`, `-0.001`.
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    let (whole, frac) = (abs / 1000, abs % 1000);
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let frac = format!("{frac:03}");
        format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
    }
}

/// A label value as the text format wants it: backslash, double quote and line feed escaped.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text as the text format wants it: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Where snapshots come from: called once per scrape, on a blocking thread (it may read the
/// store).
pub type SnapshotSource = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// The metrics HTTP service: `GET /metrics` answers the rendered snapshot with
/// [`CONTENT_TYPE`]; any other path answers 404 (and another method on `/metrics`, 405).
///
/// `source` is called once per scrape, on tokio's blocking pool; if it panics the scrape
/// answers 500 and the server goes on.
pub fn router(source: SnapshotSource) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let source = Arc::clone(&source);
                async move { scrape(source).await }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
}

async fn scrape(source: SnapshotSource) -> Response {
    match tokio::task::spawn_blocking(move || render(&source())).await {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "building the metrics snapshot failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response()
        }
    }
}

/// Serves `router` on `listener` until `cancel` is cancelled, then stops accepting, lets
/// requests in progress finish and returns.
///
/// Bind `listener` to a loopback address: the endpoint has no authentication (see
/// "Exposure" in the module documentation and [`crate::util::net::check_loopback`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    fn small() -> Snapshot {
        Snapshot {
            orders_by_state: BTreeMap::from([(StateKind::Queued, 2), (StateKind::Success, 3)]),
            batches_by_state: BTreeMap::from([(BatchState::Open, 1)]),
            queue_depth: 2,
            requests: BTreeMap::from([(("getCoinList".to_owned(), "10000".to_owned()), 4)]),
            rate_limit_pauses: 1,
            daily_limit_pauses: 0,
            paused: true,
            kill_switch: false,
            last_success_ms: Some(1_700_000_000_500),
            webhooks: BTreeMap::new(),
            inbox_files: BTreeMap::from([("claimed".to_owned(), 1)]),
            job_runs: BTreeMap::from([(("reconcile".to_owned(), "ok".to_owned()), 2)]),
            job_last_run_ms: BTreeMap::from([("reconcile".to_owned(), 1_700_000_000_000)]),
            notices: BTreeMap::from([(("ops".to_owned(), "pending".to_owned()), 2)]),
            notice_failing: BTreeMap::from([("ops".to_owned(), true)]),
            started_ms: 1_699_999_000_250,
            now_ms: 1_700_000_001_000,
            build_version: "0.1.0".to_owned(),
            latency_buckets: vec![0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 1],
            latency_sum_ms: 12_230,
            in_flight: 3,
            in_flight_limit: 20,
            console: None,
        }
    }

    #[test]
    fn a_small_snapshot_renders_exactly() {
        let expected = r#"# HELP ccpayout_orders Orders in the store by state.
# TYPE ccpayout_orders gauge
ccpayout_orders{state="queued"} 2
ccpayout_orders{state="success"} 3
# HELP ccpayout_batches Batches in the store by state.
# TYPE ccpayout_batches gauge
ccpayout_batches{state="open"} 1
# HELP ccpayout_queue_depth Orders waiting to be submitted (queued or deferred).
# TYPE ccpayout_queue_depth gauge
ccpayout_queue_depth 2
# HELP ccpayout_api_requests_total CCPayment API requests by endpoint and outcome: the reply's code, http_<status> for an HTTP reply that is not a CCPayment envelope, or transport when no reply came.
# TYPE ccpayout_api_requests_total counter
ccpayout_api_requests_total{endpoint="getCoinList",code="10000"} 4
# HELP ccpayout_rate_limit_pauses_total Submission pauses begun because CCPayment answered 11004 (rate limited).
# TYPE ccpayout_rate_limit_pauses_total counter
ccpayout_rate_limit_pauses_total 1
# HELP ccpayout_daily_limit_pauses_total Submission pauses begun until the daily reset (11009 or the client's daily budget).
# TYPE ccpayout_daily_limit_pauses_total counter
ccpayout_daily_limit_pauses_total 0
# HELP ccpayout_submission_paused 1 while sending to CCPayment is paused (rate limit, daily limit or kill switch), else 0.
# TYPE ccpayout_submission_paused gauge
ccpayout_submission_paused 1
# HELP ccpayout_kill_switch 1 while the operator's kill switch is on, else 0.
# TYPE ccpayout_kill_switch gauge
ccpayout_kill_switch 0
# HELP ccpayout_last_successful_api_call_timestamp_seconds When CCPayment last answered a request with success (Unix time); no sample until the first success.
# TYPE ccpayout_last_successful_api_call_timestamp_seconds gauge
ccpayout_last_successful_api_call_timestamp_seconds 1700000000.5
# HELP ccpayout_api_request_duration_seconds Round trips of CCPayment API requests that got a reply, from leaving to the reply.
# TYPE ccpayout_api_request_duration_seconds histogram
ccpayout_api_request_duration_seconds_bucket{le="0.01"} 0
ccpayout_api_request_duration_seconds_bucket{le="0.025"} 0
ccpayout_api_request_duration_seconds_bucket{le="0.05"} 1
ccpayout_api_request_duration_seconds_bucket{le="0.1"} 3
ccpayout_api_request_duration_seconds_bucket{le="0.25"} 3
ccpayout_api_request_duration_seconds_bucket{le="0.5"} 3
ccpayout_api_request_duration_seconds_bucket{le="1"} 3
ccpayout_api_request_duration_seconds_bucket{le="2.5"} 3
ccpayout_api_request_duration_seconds_bucket{le="5"} 3
ccpayout_api_request_duration_seconds_bucket{le="10"} 3
ccpayout_api_request_duration_seconds_bucket{le="+Inf"} 4
ccpayout_api_request_duration_seconds_sum 12.23
ccpayout_api_request_duration_seconds_count 4
# HELP ccpayout_api_requests_in_flight CCPayment API requests sent whose outcome is not known yet.
# TYPE ccpayout_api_requests_in_flight gauge
ccpayout_api_requests_in_flight 3
# HELP ccpayout_api_in_flight_limit How many API requests may be in flight now: the rate times the measured round trip, with headroom, within limits.concurrency.
# TYPE ccpayout_api_in_flight_limit gauge
ccpayout_api_in_flight_limit 20
# HELP ccpayout_webhooks_total Webhook deliveries received, by result.
# TYPE ccpayout_webhooks_total counter
# HELP ccpayout_inbox_files_total Inbox files handled, by result.
# TYPE ccpayout_inbox_files_total counter
ccpayout_inbox_files_total{result="claimed"} 1
# HELP ccpayout_job_runs_total Scheduled job runs by job and result.
# TYPE ccpayout_job_runs_total counter
ccpayout_job_runs_total{job="reconcile",result="ok"} 2
# HELP ccpayout_job_last_run_timestamp_seconds When each scheduled job last ran (Unix time).
# TYPE ccpayout_job_last_run_timestamp_seconds gauge
ccpayout_job_last_run_timestamp_seconds{job="reconcile"} 1700000000
# HELP ccpayout_notices Notices in the outbox by target and delivery state (settled ones are kept a week).
# TYPE ccpayout_notices gauge
ccpayout_notices{target="ops",state="pending"} 2
# HELP ccpayout_notice_target_failing 1 while a notify target's oldest pending notice failed its last attempt (unreachable or 5xx).
# TYPE ccpayout_notice_target_failing gauge
ccpayout_notice_target_failing{target="ops"} 1
# HELP ccpayout_console_sessions Web console sessions signed in and not idle (no sample when the console is off).
# TYPE ccpayout_console_sessions gauge
# HELP ccpayout_console_sign_ins_total Web console sign-in attempts by result: ok, or why the link was refused (unknown, used, expired, limited).
# TYPE ccpayout_console_sign_ins_total counter
# HELP ccpayout_console_actions_total Web console actions (approve, cancel, pause, resume, sign_out) by result: done, refused, failed, or forbidden (no valid CSRF token).
# TYPE ccpayout_console_actions_total counter
# HELP ccpayout_start_time_seconds When the daemon started (Unix time).
# TYPE ccpayout_start_time_seconds gauge
ccpayout_start_time_seconds 1699999000.25
# HELP ccpayout_build_info The ccpayout build; the value is always 1.
# TYPE ccpayout_build_info gauge
ccpayout_build_info{version="0.1.0"} 1
"#;
        assert_eq!(render(&small()), expected);
    }

    #[test]
    fn a_daemon_that_never_succeeded_has_no_last_success_sample() {
        let s = Snapshot {
            last_success_ms: None,
            ..small()
        };
        let text = render(&s);
        assert!(text.contains("# TYPE ccpayout_last_successful_api_call_timestamp_seconds gauge\n"));
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("ccpayout_last_successful_api_call_timestamp_seconds")),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("two\nlines"), r"two\nlines");
        assert_eq!(escape_label_value("plain-ünïcode ok"), "plain-ünïcode ok");
        let s = Snapshot {
            webhooks: BTreeMap::from([("bad \"sig\"\n\\".to_owned(), 1)]),
            build_version: "1.0\\dev".to_owned(),
            ..Snapshot::default()
        };
        let text = render(&s);
        assert!(
            text.contains("ccpayout_webhooks_total{result=\"bad \\\"sig\\\"\\n\\\\\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ccpayout_build_info{version=\"1.0\\\\dev\"} 1\n"),
            "{text}"
        );
        check_exposition(&text);
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1_700_000_000_000), "1700000000");
        assert_eq!(seconds(1_700_000_000_120), "1700000000.12");
        assert_eq!(seconds(1_700_000_000_001), "1700000000.001");
        assert_eq!(seconds(-1), "-0.001");
        assert_eq!(seconds(-1_500), "-1.5");
        assert_eq!(seconds(i64::MIN), "-9223372036854775.808");
    }

    /// Every family of the documented table.
    const FAMILIES: [(&str, &str); 23] = [
        ("ccpayout_orders", "gauge"),
        ("ccpayout_batches", "gauge"),
        ("ccpayout_queue_depth", "gauge"),
        ("ccpayout_api_requests_total", "counter"),
        ("ccpayout_rate_limit_pauses_total", "counter"),
        ("ccpayout_daily_limit_pauses_total", "counter"),
        ("ccpayout_submission_paused", "gauge"),
        ("ccpayout_kill_switch", "gauge"),
        ("ccpayout_last_successful_api_call_timestamp_seconds", "gauge"),
        ("ccpayout_api_request_duration_seconds", "histogram"),
        ("ccpayout_api_requests_in_flight", "gauge"),
        ("ccpayout_api_in_flight_limit", "gauge"),
        ("ccpayout_webhooks_total", "counter"),
        ("ccpayout_inbox_files_total", "counter"),
        ("ccpayout_job_runs_total", "counter"),
        ("ccpayout_job_last_run_timestamp_seconds", "gauge"),
        ("ccpayout_notices", "gauge"),
        ("ccpayout_notice_target_failing", "gauge"),
        ("ccpayout_console_sessions", "gauge"),
        ("ccpayout_console_sign_ins_total", "counter"),
        ("ccpayout_console_actions_total", "counter"),
        ("ccpayout_start_time_seconds", "gauge"),
        ("ccpayout_build_info", "gauge"),
    ];

    fn rich() -> Snapshot {
        let states = StateKind::ALL;
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        Snapshot {
            orders_by_state: states.iter().zip(0..).map(|(s, n)| (*s, n * 7)).collect(),
            batches_by_state: BTreeMap::from([(BatchState::Open, 2), (BatchState::Done, 40)]),
            queue_depth: 35,
            requests: BTreeMap::from([
                (pair("applyAppWithdrawToNetwork", "10000"), 1_200),
                (pair("applyAppWithdrawToNetwork", "11004"), 3),
                (pair("getAppWithdrawRecord", "transport"), 2),
                (pair("getAppWithdrawRecord", "http_502"), 1),
                (pair("v1/withdraw", "10000"), 8),
                (pair("v1/bill/info", "224066"), 1),
            ]),
            rate_limit_pauses: 3,
            daily_limit_pauses: 1,
            paused: false,
            kill_switch: true,
            last_success_ms: Some(1_777_593_600_123),
            webhooks: BTreeMap::from([
                ("accepted".to_owned(), 50),
                ("bad_signature".to_owned(), 2),
                ("weird \"value\"\nwith\\escapes".to_owned(), 1),
            ]),
            inbox_files: BTreeMap::from([
                ("claimed".to_owned(), 5),
                ("done".to_owned(), 4),
                ("rejected".to_owned(), 1),
            ]),
            job_runs: BTreeMap::from([
                (pair("reconcile", "ok"), 10),
                (pair("reconcile", "failed"), 1),
                (pair("balance-check", "ok"), 3),
            ]),
            job_last_run_ms: BTreeMap::from([
                ("reconcile".to_owned(), 1_777_593_000_000),
                ("balance-check".to_owned(), 1_777_500_000_999),
            ]),
            notices: BTreeMap::from([
                (pair("ops", "delivered"), 12),
                (pair("ops", "pending"), 0),
                (pair("slack", "refused"), 1),
            ]),
            notice_failing: BTreeMap::from([("ops".to_owned(), false)]),
            started_ms: 1_777_000_000_000,
            now_ms: 1_777_593_601_000,
            build_version: "0.1.0+abc".to_owned(),
            latency_buckets: vec![5, 10, 20, 40, 80, 20, 5, 1, 0, 0, 0],
            latency_sum_ms: 31_415,
            in_flight: 17,
            in_flight_limit: 39,
            console: Some(crate::console::ConsoleMetrics {
                sessions: 2,
                sign_ins: BTreeMap::from([("ok".to_owned(), 3), ("used".to_owned(), 1)]),
                actions: BTreeMap::from([(pair("approve", "done"), 1), (pair("approve", "forbidden"), 1)]),
            }),
        }
    }

    /// Label (name, value) pairs as parsed back from a sample line.
    type Labels = Vec<(String, String)>;

    /// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (labels without the colon).
    fn is_name(s: &str, colon: bool) -> bool {
        let ok = |c: char, first: bool| {
            c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
        };
        let mut chars = s.chars();
        chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
    }

    /// Parses `{name="value",...}` at the start of `s`; returns the labels and the rest.
    fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
        let mut labels = Vec::new();
        let mut rest = s.strip_prefix('{').ok_or("no {")?;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                return Ok((labels, after));
            }
            if !labels.is_empty() {
                rest = rest
                    .strip_prefix(',')
                    .ok_or_else(|| format!("no comma before {rest:?}"))?;
            }
            let eq = rest.find('=').ok_or("no =")?;
            let name = &rest[..eq];
            if !is_name(name, false) {
                return Err(format!("bad label name {name:?}"));
            }
            rest = rest[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("dangling backslash")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (_, '\n') => return Err("raw newline in a label value".into()),
                    (_, c) => value.push(c),
                }
            };
            labels.push((name.to_owned(), value));
            rest = &rest[end + 1..];
        }
    }

    /// A small checker of the text format: every line is a HELP, a TYPE or a sample
    /// `name{labels} value`; every family has one HELP and one TYPE before its samples, and its
    /// samples are contiguous and unique. Returns the samples (name, labels, value).
    fn check_exposition(text: &str) -> Vec<(String, Labels, f64)> {
        assert!(text.ends_with('\n'), "the exposition ends with a line feed");
        let mut helps = BTreeSet::new();
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut finished: BTreeSet<String> = BTreeSet::new();
        let mut current: Option<String> = None;
        let mut seen = BTreeSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(is_name(name, true) && !help.is_empty(), "{line}");
                assert!(helps.insert(name.to_owned()), "second HELP: {line}");
                assert!(
                    !finished.contains(name) && !types.contains_key(name),
                    "HELP after TYPE: {line}"
                );
                if let Some(previous) = current.replace(name.to_owned()) {
                    finished.insert(previous);
                }
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name type");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                assert_eq!(current.as_deref(), Some(name), "TYPE right after its HELP: {line}");
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "second TYPE: {line}"
                );
            } else {
                assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
                let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
                let name = &line[..name_end];
                assert!(is_name(name, true), "bad metric name: {line}");
                let (labels, rest) = if line[name_end..].starts_with('{') {
                    parse_labels(&line[name_end..]).unwrap_or_else(|e| panic!("{e}: {line}"))
                } else {
                    (Vec::new(), &line[name_end..])
                };
                let value = rest
                    .strip_prefix(' ')
                    .unwrap_or_else(|| panic!("no space before the value: {line}"));
                let value: f64 = match value {
                    "NaN" => f64::NAN,
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?}: {line}")),
                };
                // A histogram's samples are `<family>_bucket`, `_sum` and `_count`.
                let family = match current.as_deref() {
                    Some(f) if types.get(f).is_some_and(|k| k == "histogram") => ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|suffix| name.strip_suffix(suffix).filter(|base| *base == f))
                        .unwrap_or(name),
                    _ => name,
                };
                assert_eq!(current.as_deref(), Some(family), "sample outside its family: {line}");
                assert!(types.contains_key(family), "sample before TYPE: {line}");
                let mut names: Vec<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
                names.sort_unstable();
                assert!(names.windows(2).all(|w| w[0] != w[1]), "a label twice: {line}");
                assert!(
                    seen.insert((name.to_owned(), labels.clone())),
                    "duplicate series: {line}"
                );
                samples.push((name.to_owned(), labels, value));
            }
        }
        assert_eq!(helps.len(), types.len(), "every HELP has its TYPE");
        samples
    }

    #[test]
    fn every_family_has_help_and_type_once_whatever_the_snapshot() {
        for snapshot in [Snapshot::default(), small(), rich()] {
            let text = render(&snapshot);
            check_exposition(&text);
            for (name, kind) in FAMILIES {
                assert_eq!(
                    text.matches(&format!("# HELP {name} ")).count(),
                    1,
                    "{name} HELP in\n{text}"
                );
                let type_line = format!("# TYPE {name} {kind}\n");
                assert_eq!(text.matches(&type_line).count(), 1, "{name} TYPE in\n{text}");
            }
            let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
            assert_eq!(families, FAMILIES.len(), "no family beyond the table");
        }
    }

    #[test]
    fn a_rich_snapshot_passes_the_line_format_checker() {
        let s = rich();
        let text = render(&s);
        let samples = check_exposition(&text);
        let value = |name: &str, labels: &[(&str, &str)]| {
            let labels: Vec<(String, String)> = labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            samples
                .iter()
                .find(|(n, l, _)| n == name && *l == labels)
                .map(|s| s.2)
                .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
        };
        // Every map entry is one sample, with its labels read back unescaped.
        let expected = s.orders_by_state.len()
            + s.batches_by_state.len()
            + s.requests.len()
            + s.webhooks.len()
            + s.inbox_files.len()
            + s.job_runs.len()
            + s.job_last_run_ms.len()
            + s.notices.len()
            + s.notice_failing.len()
            + s.console.as_ref().map_or(0, |c| 1 + c.sign_ins.len() + c.actions.len())
            + 8
            // The histogram: one bucket per bound and +Inf, its sum and count; two gauges.
            + crate::api::client::LATENCY_BOUNDS_SECS.len()
            + 3
            + 2;
        assert_eq!(samples.len(), expected, "{text}");
        assert_eq!(value("ccpayout_console_sessions", &[]), 2.0);
        assert_eq!(
            value(
                "ccpayout_console_actions_total",
                &[("action", "approve"), ("result", "forbidden")]
            ),
            1.0
        );
        // Buckets are cumulative.
        assert_eq!(
            value("ccpayout_api_request_duration_seconds_bucket", &[("le", "0.1")]),
            75.0
        );
        assert_eq!(
            value("ccpayout_api_request_duration_seconds_bucket", &[("le", "+Inf")]),
            181.0
        );
        assert_eq!(value("ccpayout_api_request_duration_seconds_count", &[]), 181.0);
        assert_eq!(value("ccpayout_api_request_duration_seconds_sum", &[]), 31.415);
        assert_eq!(value("ccpayout_api_requests_in_flight", &[]), 17.0);
        assert_eq!(value("ccpayout_api_in_flight_limit", &[]), 39.0);
        assert_eq!(value("ccpayout_orders", &[("state", "cancelled")]), 70.0);
        assert_eq!(
            value(
                "ccpayout_api_requests_total",
                &[("endpoint", "v1/bill/info"), ("code", "224066")]
            ),
            1.0
        );
        assert_eq!(
            value(
                "ccpayout_webhooks_total",
                &[("result", "weird \"value\"\nwith\\escapes")]
            ),
            1.0
        );
        assert_eq!(value("ccpayout_kill_switch", &[]), 1.0);
        assert_eq!(value("ccpayout_submission_paused", &[]), 0.0);
        assert_eq!(
            value("ccpayout_last_successful_api_call_timestamp_seconds", &[]),
            1_777_593_600.123
        );
        assert_eq!(
            value("ccpayout_job_last_run_timestamp_seconds", &[("job", "balance-check")]),
            1_777_500_000.999
        );
        assert_eq!(value("ccpayout_build_info", &[("version", "0.1.0+abc")]), 1.0);
    }

    #[test]
    fn the_checker_rejects_malformed_lines() {
        let family = "# HELP m h\n# TYPE m gauge\n";
        for bad in [
            "m{a=\"unterminated} 1\n",
            "m{a=\"x\"}1\n",
            "m{a=\"bad \\t escape\"} 1\n",
            "m 1 2 3\n",
            "m{a=\"x\",a=\"y\"} 1\n",
            "other 1\n",
            "m 1\nm 2\n",
        ] {
            let text = format!("{family}{bad}");
            let result = std::panic::catch_unwind(|| check_exposition(&text));
            assert!(result.is_err(), "accepted {bad:?}");
        }
        assert_eq!(check_exposition(&format!("{family}m{{a=\"x\\n\"}} 1.5\n")).len(), 1);
    }

    #[tokio::test]
    async fn metrics_are_served_on_loopback_and_stop_on_cancel() {
        crate::api::ensure_crypto_provider();
        // A source that counts its calls: each scrape builds a fresh snapshot.
        let scrapes = Arc::new(AtomicU64::new(0));
        let source: SnapshotSource = {
            let scrapes = Arc::clone(&scrapes);
            Arc::new(move || Snapshot {
                queue_depth: scrapes.fetch_add(1, Ordering::SeqCst) + 1,
                ..small()
            })
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        crate::util::net::check_loopback(&addr).expect("bound to loopback");
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(listener, router(source), cancel.clone()));

        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("http://{addr}/metrics");
        for scrape in 1..=2u64 {
            let response = http.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()[reqwest::header::CONTENT_TYPE], CONTENT_TYPE);
            let body = response.text().await.unwrap();
            let expected = render(&Snapshot {
                queue_depth: scrape,
                ..small()
            });
            assert_eq!(body, expected);
        }
        assert_eq!(scrapes.load(Ordering::SeqCst), 2);

        for path in ["/", "/metrics/", "/other"] {
            let response = http.get(format!("http://{addr}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 404, "{path}");
        }
        let response = http.post(&url).send().await.unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(scrapes.load(Ordering::SeqCst), 2, "only GET /metrics builds a snapshot");

        cancel.cancel();
        let result = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops after cancel")
            .expect("server task");
        assert!(result.is_ok(), "{result:?}");
        assert!(http.get(&url).send().await.is_err(), "nothing listens after the stop");
    }

    #[tokio::test]
    async fn a_panicking_source_answers_500_and_the_server_goes_on() {
        crate::api::ensure_crypto_provider();
        let calls = Arc::new(AtomicU64::new(0));
        let source: SnapshotSource = {
            let calls = Arc::clone(&calls);
            Arc::new(move || {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("store unavailable");
                }
                small()
            })
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(listener, router(source), cancel.clone()));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("http://{addr}/metrics");
        assert_eq!(http.get(&url).send().await.unwrap().status(), 500);
        assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
        cancel.cancel();
        server.await.unwrap().unwrap();
    }
}
