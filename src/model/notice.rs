//! Notices: what ccpayout tells the people who must act (issue 16). A notice is recorded in the
//! store's outbox in the same transaction as the event it reports, with one delivery per
//! configured target that wants its event; the dispatcher (`crate::notify`) sends it and records
//! each target's answer. This module is the data and the pure rules: the events, the record,
//! the deliveries and how an answer moves one, and the builders of each event's notice.
//!
//! Pure: no I/O, no clock (times come in as arguments).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happened. The snake_case name is the `event` field of a notice and the value of a
/// target's `events` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeEvent {
    /// A batch (or its recipient review part) waits for approval.
    ApprovalRequired,
    /// Every order of a batch is final.
    BatchFinished,
    /// Rows of a finished batch failed at CCPayment or were rejected.
    RowsFailed,
    /// Sending stopped: the daily limit (11009) until its reset, the operator's kill switch, or
    /// a problem every request meets (credentials, IP whitelist, clock).
    SendingPaused,
    /// A balance is below what a batch needs.
    BalanceLow,
    /// A scheduled job's run failed.
    JobFailed,
    /// The daemon started.
    DaemonStarted,
    /// The daemon is stopping.
    DaemonStopping,
}

impl NoticeEvent {
    /// Every event, in order.
    pub const ALL: [NoticeEvent; 8] = [
        NoticeEvent::ApprovalRequired,
        NoticeEvent::BatchFinished,
        NoticeEvent::RowsFailed,
        NoticeEvent::SendingPaused,
        NoticeEvent::BalanceLow,
        NoticeEvent::JobFailed,
        NoticeEvent::DaemonStarted,
        NoticeEvent::DaemonStopping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeEvent::ApprovalRequired => "approval_required",
            NoticeEvent::BatchFinished => "batch_finished",
            NoticeEvent::RowsFailed => "rows_failed",
            NoticeEvent::SendingPaused => "sending_paused",
            NoticeEvent::BalanceLow => "balance_low",
            NoticeEvent::JobFailed => "job_failed",
            NoticeEvent::DaemonStarted => "daemon_started",
            NoticeEvent::DaemonStopping => "daemon_stopping",
        }
    }

    /// The event of a name, as a configuration names it.
    pub fn parse(name: &str) -> Option<NoticeEvent> {
        NoticeEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl std::fmt::Display for NoticeEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The batch a notice is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeBatch {
    pub id: String,
    pub name: String,
}

/// One notice as the outbox keeps it: what happened, in words and in figures, and where each
/// target's delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The outbox's sequence number (from 1), set by the store when it records the notice; with
    /// `at_ms` it identifies the notice to a receiver that removes duplicates.
    #[serde(default)]
    pub seq: u64,
    pub event: NoticeEvent,
    /// When the event happened (Unix ms).
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<NoticeBatch>,
    /// One line a person reads first ("Batch payroll-ab12 finished: 98 paid, 2 failed").
    pub title: String,
    /// Further lines, each a fact or the next step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    /// The command that takes the next step, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The event's figures, as the JSON format carries them.
    #[serde(default)]
    pub figures: serde_json::Value,
    /// Target name → its delivery. Set by the store from the subscriptions when it records the
    /// notice; a notice no target wants is not recorded.
    #[serde(default)]
    pub deliveries: BTreeMap<String, Delivery>,
}

impl Notice {
    /// A notice of `event` at `at_ms` with its title; no deliveries yet.
    pub fn new(event: NoticeEvent, at_ms: i64, title: impl Into<String>) -> Notice {
        Notice {
            seq: 0,
            event,
            at_ms,
            batch: None,
            title: title.into(),
            lines: Vec::new(),
            command: None,
            figures: serde_json::Value::Object(serde_json::Map::new()),
            deliveries: BTreeMap::new(),
        }
    }

    pub fn about(mut self, id: &str, name: &str) -> Notice {
        self.batch = Some(NoticeBatch {
            id: id.to_owned(),
            name: name.to_owned(),
        });
        self
    }

    pub fn line(mut self, line: impl Into<String>) -> Notice {
        self.lines.push(line.into());
        self
    }

    pub fn command(mut self, command: impl Into<String>) -> Notice {
        self.command = Some(command.into());
        self
    }

    pub fn figures(mut self, figures: serde_json::Value) -> Notice {
        self.figures = figures;
        self
    }

    /// The id a receiver sees: `<seq>-<at_ms>`, stable across every retry of the notice.
    pub fn id(&self) -> String {
        format!("{}-{}", self.seq, self.at_ms)
    }

    /// Whether every delivery has ended (delivered, refused, given up).
    pub fn settled(&self) -> bool {
        self.deliveries.values().all(Delivery::is_final)
    }
}

/// Which events a target wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The target's name (the key of its delivery).
    pub target: String,
    pub events: Vec<NoticeEvent>,
}

impl Subscription {
    pub fn wants(&self, event: NoticeEvent) -> bool {
        self.events.contains(&event)
    }
}

/// The deliveries a new notice gets: one pending delivery, due at once, per target that wants
/// its event.
pub fn deliveries_for(event: NoticeEvent, at_ms: i64, subscriptions: &[Subscription]) -> BTreeMap<String, Delivery> {
    subscriptions
        .iter()
        .filter(|s| s.wants(event))
        .map(|s| {
            (
                s.target.clone(),
                Delivery::Pending {
                    attempts: 0,
                    next_ms: at_ms,
                    last_error: None,
                },
            )
        })
        .collect()
}

/// Where one target's delivery of a notice stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Delivery {
    /// Not acknowledged yet: tried `attempts` times, next at `next_ms`.
    Pending {
        attempts: u32,
        next_ms: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_error: Option<String>,
    },
    /// The target answered 2xx: never sent again.
    Delivered { at_ms: i64, attempts: u32 },
    /// The target answered 4xx (other than 408 and 429): the notice itself is wrong for it;
    /// logged, not retried.
    Refused { at_ms: i64, status: u16, detail: String },
    /// Given up: too old to be useful, or the target is no longer configured.
    Dropped { at_ms: i64, reason: String },
}

impl Delivery {
    pub fn is_final(&self) -> bool {
        !matches!(self, Delivery::Pending { .. })
    }
}

/// What one attempt to deliver a notice met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The target answered with this HTTP status.
    Status(u16, String),
    /// No answer: the connection failed or timed out.
    NoAnswer(String),
}

/// How long a notice keeps being retried before it is dropped.
pub const NOTICE_MAX_AGE_MS: i64 = 72 * 3_600_000;

/// The delivery after an attempt at `now_ms`: 2xx delivered; 4xx other than 408 and 429
/// refused for good; anything else pending again after `retry_in_ms` (from the caller's
/// backoff), or dropped once the notice is older than [`NOTICE_MAX_AGE_MS`].
pub fn after_attempt(attempts: u32, attempt: &Attempt, notice_at_ms: i64, now_ms: i64, retry_in_ms: i64) -> Delivery {
    let attempts = attempts.saturating_add(1);
    let error = match attempt {
        Attempt::Status(status, _) if (200..300).contains(status) => {
            return Delivery::Delivered {
                at_ms: now_ms,
                attempts,
            };
        }
        Attempt::Status(status, detail) if (400..500).contains(status) && *status != 408 && *status != 429 => {
            return Delivery::Refused {
                at_ms: now_ms,
                status: *status,
                detail: detail.clone(),
            };
        }
        Attempt::Status(status, detail) if detail.is_empty() => format!("HTTP {status}"),
        Attempt::Status(status, detail) => format!("HTTP {status}: {detail}"),
        Attempt::NoAnswer(detail) => detail.clone(),
    };
    if now_ms - notice_at_ms >= NOTICE_MAX_AGE_MS {
        return Delivery::Dropped {
            at_ms: now_ms,
            reason: format!("not delivered within 72 hours; last error: {error}"),
        };
    }
    Delivery::Pending {
        attempts,
        next_ms: now_ms + retry_in_ms.max(0),
        last_error: Some(error),
    }
}

/// Per coin: rows and the sum of their amounts (exact, canonical text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CoinSum {
    pub rows: u64,
    pub amount: String,
}

/// One row of a batch that failed or was rejected, as a notice names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedRow {
    pub order_id: String,
    pub line: u64,
    pub coin: String,
    pub amount: String,
    /// `failed` or `rejected`.
    pub state: String,
    pub reason: String,
}

/// At most this many failed rows are listed in a notice; the counts are always whole.
pub const MAX_LISTED_ROWS: usize = 50;

/// The figures of a finished batch, gathered by the engine from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Finished {
    /// Orders per final state (`success`, `failed`, `rejected`, `cancelled`).
    pub counts: BTreeMap<String, u64>,
    /// Per coin symbol: what was paid.
    pub paid: BTreeMap<String, CoinSum>,
    /// Per coin symbol: what failed or was rejected.
    pub not_paid: BTreeMap<String, CoinSum>,
    /// Rows the plan refused (their own fault) and rows that repeated an earlier batch.
    pub refused_rows: u64,
    pub duplicate_rows: u64,
    /// The failed and rejected rows, at most [`MAX_LISTED_ROWS`].
    pub failed: Vec<FailedRow>,
    /// All failed and rejected rows.
    pub failed_total: u64,
}

/// "Batch NAME finished" and, when rows failed or were rejected, "rows failed" with the one
/// command that retries them.
pub fn batch_finished(batch_id: &str, name: &str, figures: &Finished, at_ms: i64) -> Vec<Notice> {
    let count = |state: &str| figures.counts.get(state).copied().unwrap_or(0);
    let paid_line = sums_text(&figures.paid);
    let mut title = format!("Batch {name} finished: {} paid", count("success"));
    for state in ["failed", "rejected", "cancelled"] {
        if count(state) > 0 {
            title.push_str(&format!(", {} {state}", count(state)));
        }
    }
    let mut finished = Notice::new(NoticeEvent::BatchFinished, at_ms, title)
        .about(batch_id, name)
        .figures(serde_json::json!({
            "counts": figures.counts,
            "paid": figures.paid,
            "not_paid": figures.not_paid,
            "refused_rows": figures.refused_rows,
            "duplicate_rows": figures.duplicate_rows,
        }));
    if !paid_line.is_empty() {
        finished = finished.line(format!("Paid: {paid_line}"));
    }
    if !figures.not_paid.is_empty() {
        finished = finished.line(format!("Not paid: {}", sums_text(&figures.not_paid)));
    }
    if figures.refused_rows + figures.duplicate_rows > 0 {
        finished = finished.line(format!(
            "Rows not taken in: {} refused, {} duplicates of earlier batches",
            figures.refused_rows, figures.duplicate_rows
        ));
    }
    finished = finished.command(format!("ccpayout report {name}"));
    let mut notices = vec![finished];
    if figures.failed_total > 0 {
        let mut failed = Notice::new(
            NoticeEvent::RowsFailed,
            at_ms,
            format!("Batch {name}: {} row(s) failed or were rejected", figures.failed_total),
        )
        .about(batch_id, name)
        .figures(serde_json::json!({
            "failed_total": figures.failed_total,
            "not_paid": figures.not_paid,
            "rows": figures.failed,
            "listed": figures.failed.len(),
        }))
        .command(format!("ccpayout retry {name}"));
        for row in &figures.failed {
            failed = failed.line(format!(
                "line {}: {} {} {} {}: {}",
                row.line, row.order_id, row.amount, row.coin, row.state, row.reason
            ));
        }
        if figures.failed_total > figures.failed.len() as u64 {
            failed = failed.line(format!(
                "… and {} more (see the report)",
                figures.failed_total - figures.failed.len() as u64
            ));
        }
        notices.push(failed);
    }
    notices
}

/// "12.5 USDT (3 rows), 0.1 ETH (1 row)".
fn sums_text(sums: &BTreeMap<String, CoinSum>) -> String {
    sums.iter()
        .map(|(coin, s)| {
            format!(
                "{} {coin} ({} row{})",
                s.amount,
                s.rows,
                if s.rows == 1 { "" } else { "s" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One coin's total in a batch waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoinTotal {
    pub coin: String,
    pub rows: u64,
    pub amount: String,
}

/// What waits for approval: the batch's plan, or its recipient review part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awaiting<'a> {
    /// `plan` or `recipient_review`.
    pub part: &'a str,
    pub digest: &'a str,
    pub orders: u64,
    pub needed: u32,
    pub reasons: &'a [String],
}

/// The diff to the previous batch of a series, as a notice carries it: its summary lines and
/// the structured diff for the JSON format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiffSummary {
    pub lines: Vec<String>,
    pub value: serde_json::Value,
}

/// "Batch NAME waits for approval", with the command that approves it, the totals and the diff
/// to the previous batch of its series (a few lines, when there is one).
pub fn approval_required(
    batch_id: &str,
    name: &str,
    awaiting: &Awaiting<'_>,
    totals: &[CoinTotal],
    diff: &DiffSummary,
    at_ms: i64,
) -> Notice {
    let what = if awaiting.part == "recipient_review" {
        format!(
            "{} row(s) of batch {name} to new or changed recipients wait",
            awaiting.orders
        )
    } else {
        format!("Batch {name} ({} orders) waits", awaiting.orders)
    };
    let approvers = if awaiting.needed > 1 {
        format!(" from {} approvers", awaiting.needed)
    } else {
        String::new()
    };
    let mut n = Notice::new(
        NoticeEvent::ApprovalRequired,
        at_ms,
        format!("{what} for approval{approvers}"),
    )
    .about(batch_id, name)
    .command(format!("ccpayout approve {name} --digest {}", awaiting.digest))
    .figures(serde_json::json!({
        "part": awaiting.part,
        "digest": awaiting.digest,
        "orders": awaiting.orders,
        "approvals_needed": awaiting.needed,
        "reasons": awaiting.reasons,
        "totals": totals,
        "diff": diff.value,
    }));
    for reason in awaiting.reasons {
        n = n.line(format!("Why: {reason}"));
    }
    if !totals.is_empty() {
        let text: Vec<String> = totals
            .iter()
            .map(|t| format!("{} {} ({} rows)", t.amount, t.coin, t.rows))
            .collect();
        n = n.line(format!("Totals: {}", text.join(", ")));
    }
    for line in &diff.lines {
        n = n.line(line.clone());
    }
    n
}

/// Why sending paused, for [`sending_paused`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseCause {
    /// CCPayment's daily limit (11009): closed until the reset.
    DailyLimit { until_ms: i64, until: String },
    /// The operator's kill switch.
    KillSwitch { reason: Option<String> },
    /// A problem every request meets: credentials, the IP whitelist, the clock.
    Stopped {
        code: i64,
        message: String,
        hint: Option<String>,
    },
}

/// "Sending is paused", with why, until when, and how it resumes.
pub fn sending_paused(cause: &PauseCause, at_ms: i64) -> Notice {
    match cause {
        PauseCause::DailyLimit { until_ms, until } => Notice::new(
            NoticeEvent::SendingPaused,
            at_ms,
            format!("Sending paused: CCPayment's daily limit (11009) until {until}"),
        )
        .line("Payouts resume by themselves after the reset; nothing to do unless the limit is too low.")
        .figures(serde_json::json!({"cause": "daily_limit", "until_ms": until_ms, "until": until})),
        PauseCause::KillSwitch { reason } => {
            let mut n = Notice::new(
                NoticeEvent::SendingPaused,
                at_ms,
                "Sending paused by an operator (kill switch)",
            )
            .command("ccpayout resume")
            .figures(serde_json::json!({"cause": "kill_switch", "reason": reason}));
            if let Some(reason) = reason {
                n = n.line(format!("Reason: {reason}"));
            }
            n
        }
        PauseCause::Stopped { code, message, hint } => {
            let mut n = Notice::new(NoticeEvent::SendingPaused, at_ms, format!("Sending stopped: {message}"))
                .figures(serde_json::json!({"cause": "api_refused", "code": code, "message": message}));
            if let Some(hint) = hint {
                n = n.line(format!("Check: {hint}"));
            }
            n.command("ccpayout doctor")
        }
    }
}

/// A balance short of what a batch needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shortfall {
    pub coin: String,
    /// The balance, when it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    /// What the batch needs (with the margin), when it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needed: Option<String>,
}

/// "The balance is below what batch NAME needs", from the plan (the file was not taken in) or
/// from CCPayment's refusals while paying (`detail`).
pub fn balance_low(
    batch: Option<(&str, &str)>,
    file: Option<&str>,
    short: &[Shortfall],
    detail: &str,
    at_ms: i64,
) -> Notice {
    let coins: Vec<&str> = short.iter().map(|s| s.coin.as_str()).collect();
    let whose = match (batch, file) {
        (Some((_, name)), _) => format!("batch {name}"),
        (None, Some(file)) => file.to_owned(),
        (None, None) => "a batch".to_owned(),
    };
    let mut n = Notice::new(
        NoticeEvent::BalanceLow,
        at_ms,
        format!("Balance too low for {whose}: {}", coins.join(", ")),
    )
    .figures(serde_json::json!({"shortfalls": short, "file": file, "detail": detail}));
    if let Some((id, name)) = batch {
        n = n.about(id, name);
    }
    for s in short {
        match (&s.balance, &s.needed) {
            (Some(balance), Some(needed)) => n = n.line(format!("{}: balance {balance}, needed {needed}", s.coin)),
            _ => n = n.line(format!("{}: {detail}", s.coin)),
        }
    }
    if batch.is_some() {
        n.line("Top up the balance; the rows CCPayment refused are sent again by themselves.")
    } else {
        n.line("Top up the balance, then submit the file again (or drop it into the inbox again).")
    }
}

/// "Job NAME failed", with its error.
pub fn job_failed(job: &str, scheduled: &str, error: &str, at_ms: i64) -> Notice {
    Notice::new(
        NoticeEvent::JobFailed,
        at_ms,
        format!("Job {job} failed (run of {scheduled})"),
    )
    .line(error.to_owned())
    .command("ccpayout status")
    .figures(serde_json::json!({"job": job, "scheduled": scheduled, "error": error}))
}

/// "The daemon started" / "is stopping", with what it holds.
pub fn daemon(event: NoticeEvent, host: &str, detail: &str, open_batches: u64, at_ms: i64) -> Notice {
    let title = match event {
        NoticeEvent::DaemonStopping => format!("ccpayout on {host} is stopping"),
        _ => format!("ccpayout on {host} started"),
    };
    Notice::new(event, at_ms, title)
        .line(detail.to_owned())
        .line(format!("Open batches: {open_batches}"))
        .figures(serde_json::json!({"host": host, "detail": detail, "open_batches": open_batches}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip_and_are_stable() {
        for e in NoticeEvent::ALL {
            assert_eq!(NoticeEvent::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), serde_json::json!(e.as_str()));
        }
        assert_eq!(NoticeEvent::parse("batch_done"), None);
    }

    #[test]
    fn deliveries_go_to_the_targets_that_want_the_event() {
        let subs = vec![
            Subscription {
                target: "ops".into(),
                events: NoticeEvent::ALL.to_vec(),
            },
            Subscription {
                target: "treasury".into(),
                events: vec![NoticeEvent::ApprovalRequired],
            },
        ];
        let d = deliveries_for(NoticeEvent::BatchFinished, 5, &subs);
        assert_eq!(d.keys().collect::<Vec<_>>(), ["ops"]);
        let d = deliveries_for(NoticeEvent::ApprovalRequired, 5, &subs);
        assert_eq!(d.len(), 2);
        assert!(matches!(
            d["treasury"],
            Delivery::Pending {
                attempts: 0,
                next_ms: 5,
                ..
            }
        ));
    }

    #[test]
    fn an_answer_moves_a_delivery() {
        let ok = after_attempt(2, &Attempt::Status(204, String::new()), 0, 10, 1000);
        assert_eq!(ok, Delivery::Delivered { at_ms: 10, attempts: 3 });
        let refused = after_attempt(0, &Attempt::Status(400, "bad".into()), 0, 10, 1000);
        assert!(matches!(refused, Delivery::Refused { status: 400, .. }));
        for retried in [
            Attempt::Status(500, String::new()),
            Attempt::Status(503, "down".into()),
            Attempt::Status(429, String::new()),
            Attempt::Status(408, String::new()),
            Attempt::Status(302, String::new()),
            Attempt::NoAnswer("connection refused".into()),
        ] {
            match after_attempt(0, &retried, 0, 10, 1000) {
                Delivery::Pending {
                    attempts: 1,
                    next_ms: 1010,
                    last_error: Some(_),
                } => {}
                other => panic!("{retried:?} gave {other:?}"),
            }
        }
        let old = after_attempt(9, &Attempt::Status(503, String::new()), 0, NOTICE_MAX_AGE_MS, 1000);
        assert!(matches!(old, Delivery::Dropped { .. }), "{old:?}");
    }

    #[test]
    fn a_finished_batch_with_failures_gives_two_notices_and_the_retry_command() {
        let mut f = Finished::default();
        f.counts.insert("success".into(), 3);
        f.counts.insert("failed".into(), 1);
        f.paid.insert(
            "USDT".into(),
            CoinSum {
                rows: 3,
                amount: "30.5".into(),
            },
        );
        f.failed.push(FailedRow {
            order_id: "o-4".into(),
            line: 5,
            coin: "USDT".into(),
            amount: "1".into(),
            state: "failed".into(),
            reason: "chain said no".into(),
        });
        f.failed_total = 1;
        let n = batch_finished("abc", "payroll-abc", &f, 7);
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].event, NoticeEvent::BatchFinished);
        assert_eq!(n[0].title, "Batch payroll-abc finished: 3 paid, 1 failed");
        assert!(n[0].lines[0].contains("30.5 USDT (3 rows)"), "{:?}", n[0].lines);
        assert_eq!(n[1].event, NoticeEvent::RowsFailed);
        assert_eq!(n[1].command.as_deref(), Some("ccpayout retry payroll-abc"));
        assert!(n[1].lines[0].contains("line 5: o-4"));
        f.failed_total = 0;
        assert_eq!(batch_finished("abc", "payroll-abc", &f, 7).len(), 1);
    }
}
