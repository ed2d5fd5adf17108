//! The loop of one scheduled job: wait on tokio time for the next fire time, persist the run,
//! fire, record the outcome, repeat until cancelled.
//!
//! The rules, in the order they matter for money:
//!
//! 1. **A run is persisted before it fires.** If the daemon dies during a firing, the restart
//!    sees that instant as done and does not fire it again: a command that ran twice could
//!    produce a second batch. (The store would still refuse order_ids it has already paid, but
//!    a producer with unstable order_ids would not be protected.)
//! 2. **Runs of one job never overlap.** The loop awaits each firing; instants that pass during a
//!    long run are skipped, counted and logged, and the next run is the first instant after both
//!    now and the run's instant.
//! 3. **Missed runs are caught up at most once.** At start, with `missed = "catch-up"`, the latest
//!    instant missed while the daemon was down fires once; with `"skip"`, none does. A job that
//!    has never run does not catch up.
//!
//! Sleeps are at most [`MAX_SLEEP`] long and the wall clock is read again after each, so a clock
//! that jumps (NTP, suspend) is noticed within a minute, and tests drive the loop across days of
//! virtual time with [`crate::util::clock::TokioClock`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::schedule::{self, Schedule};
use super::{Action, Job};
use crate::store::{Key, Store};
use crate::util::clock::{Clock, SharedClock};

/// The longest single sleep: after it the wall clock is read again.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Fires a job for a scheduled instant; [`fire_fn`] is the real one, tests pass their own.
pub type FireFn = Arc<dyn Fn(Arc<Job>, i64) -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// The real [`FireFn`]: [`super::fire::execute`].
pub fn fire_fn() -> FireFn {
    Arc::new(|job: Arc<Job>, scheduled_ms: i64| async move { super::fire::execute(&job, scheduled_ms).await }.boxed())
}

/// The last run of a job, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// The scheduled instant the run was for (Unix ms).
    pub scheduled_ms: i64,
    /// When it started (Unix ms).
    pub started_ms: i64,
    /// When it finished; `None` while running, or forever if the daemon died during it.
    #[serde(default)]
    pub finished_ms: Option<i64>,
    /// The summary or the error of the firing.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Whether the firing succeeded.
    #[serde(default)]
    pub ok: Option<bool>,
}

/// Where the last run of each job is kept, durably.
pub trait LastRuns: Send + Sync {
    /// The last run of `job`, if it ever ran.
    fn last_run(&self, job: &str) -> Result<Option<LastRun>, String>;
    /// Replaces the last run of `job`. Must be durable when it returns.
    fn record(&self, job: &str, run: &LastRun) -> Result<(), String>;
}

/// The stored form of [`LastRun`], versioned so the record can change without misreading old
/// files.
#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum StoredLastRun {
    #[serde(rename = "1")]
    V1(LastRun),
}

/// The meta key of a job's last run, `job:<name>`. Jobs come and go with their files, so the key
/// is made per job here, next to the type it holds, rather than declared as a constant.
fn meta_key(job: &str) -> Key<StoredLastRun> {
    Key::dynamic(format!("job:{job}"))
}

impl LastRuns for Store {
    fn last_run(&self, job: &str) -> Result<Option<LastRun>, String> {
        let stored = self.get(&meta_key(job)).map_err(|e| e.to_string())?;
        Ok(stored.map(|StoredLastRun::V1(run)| run))
    }

    /// A failed run is recorded with the notice "job failed" in the same transaction.
    fn record(&self, job: &str, run: &LastRun) -> Result<(), String> {
        let notices = match (run.ok, &run.outcome, run.finished_ms) {
            (Some(false), Some(error), Some(finished_ms)) => vec![crate::model::notice::job_failed(
                job,
                &crate::util::time::rfc3339_ms(run.scheduled_ms),
                error,
                finished_ms,
            )],
            _ => Vec::new(),
        };
        self.put_noticed(&meta_key(job), &StoredLastRun::V1(run.clone()), &notices)
            .map_err(|e| e.to_string())
    }
}

/// Why a job's loop stopped other than by cancellation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The run record could not be read or written. Without it the exactly-once rule cannot be
    /// kept, so the daemon must stop rather than fire blind.
    #[error("job {job:?}: the run record could not be {action}: {message}")]
    Store {
        /// The job.
        job: String,
        /// "read" or "written".
        action: &'static str,
        /// The store's error.
        message: String,
    },
}

/// Runs one job's schedule until `cancel` fires; returns at once for a job without a schedule
/// or a disabled one.
///
/// A firing in progress is not interrupted by `cancel`: it finishes and its outcome is recorded,
/// then the loop returns. To stop sooner, abort the task: the firing is dropped (a command is
/// killed), and the run stays recorded as started, so it is not repeated.
pub async fn run_job(
    job: Arc<Job>,
    clock: SharedClock,
    runs: Arc<dyn LastRuns>,
    fire: FireFn,
    cancel: CancellationToken,
) -> Result<(), JobError> {
    let Some(schedule) = job.schedule.clone() else {
        return Ok(());
    };
    if !job.enabled {
        tracing::info!(job = %job.name, "job disabled; its schedule does not run");
        return Ok(());
    }
    let name = job.name.as_str();
    let last = runs.last_run(name).map_err(|message| JobError::Store {
        job: job.name.clone(),
        action: "read",
        message,
    })?;
    if let Some(run) = &last
        && run.finished_ms.is_none()
    {
        tracing::warn!(
            job = name,
            scheduled = %schedule.local_rfc3339(run.scheduled_ms),
            started = %schedule.local_rfc3339(run.started_ms),
            "the last run did not finish (the daemon stopped during it); it is not repeated, check its output"
        );
    }

    let now = clock.now_ms();
    let decision = schedule::decide_start(&schedule, job.missed, last.as_ref().map(|r| r.scheduled_ms), now);
    if decision.missed > 0 {
        let missed = count_text(decision.missed);
        match decision.catch_up {
            Some(at) => tracing::warn!(
                job = name,
                missed = %missed,
                catch_up = %schedule.local_rfc3339(at),
                "runs were missed while the daemon was down; catching up the latest one once"
            ),
            None => tracing::warn!(
                job = name,
                missed = %missed,
                "runs were missed while the daemon was down; skipping them (missed = \"skip\")"
            ),
        }
    }

    let mut next = decision.next;
    if let Some(at) = decision.catch_up {
        next = fire_once(&job, &schedule, &*clock, &*runs, &fire, at).await?;
    }
    loop {
        let Some(target) = next else {
            tracing::warn!(job = name, schedule = %schedule, "the schedule has no more fire times");
            cancel.cancelled().await;
            return Ok(());
        };
        tracing::debug!(job = name, next = %schedule.local_rfc3339(target), "waiting for the next run");
        if !sleep_until(&*clock, target, &cancel).await {
            return Ok(());
        }
        let Some(due) = schedule::due(&schedule, target, clock.now_ms()) else {
            continue;
        };
        if due.coalesced > 0 {
            tracing::warn!(
                job = name,
                coalesced = %count_text(due.coalesced),
                scheduled = %schedule.local_rfc3339(due.scheduled_ms),
                "woke late (clock jump or suspend); earlier passed instants are folded into this run"
            );
        }
        next = fire_once(&job, &schedule, &*clock, &*runs, &fire, due.scheduled_ms).await?;
    }
}

/// One firing: record the start, fire, record the outcome. Returns the next fire time.
async fn fire_once(
    job: &Arc<Job>,
    schedule: &Schedule,
    clock: &dyn Clock,
    runs: &dyn LastRuns,
    fire: &FireFn,
    scheduled_ms: i64,
) -> Result<Option<i64>, JobError> {
    let store_error = |action, message| JobError::Store {
        job: job.name.clone(),
        action,
        message,
    };
    let mut run = LastRun {
        scheduled_ms,
        started_ms: clock.now_ms(),
        finished_ms: None,
        outcome: None,
        ok: None,
    };
    // Durable before the side effect: a crash from here on never fires this instant again.
    runs.record(&job.name, &run).map_err(|m| store_error("written", m))?;

    let scheduled = schedule.local_rfc3339(scheduled_ms);
    let result = fire(job.clone(), scheduled_ms).await;
    let finished = clock.now_ms();
    match &result {
        Ok(summary) => tracing::info!(job = %job.name, scheduled = %scheduled, outcome = %summary, "job fired"),
        Err(error) => tracing::error!(job = %job.name, scheduled = %scheduled, error = %error, "job run failed"),
    }
    run.finished_ms = Some(finished);
    run.ok = Some(result.is_ok());
    run.outcome = Some(result.unwrap_or_else(|e| e));
    runs.record(&job.name, &run).map_err(|m| store_error("written", m))?;

    let after = schedule::after_run(schedule, scheduled_ms, finished);
    if after.skipped > 0 {
        tracing::warn!(
            job = %job.name,
            skipped = %count_text(after.skipped),
            scheduled = %scheduled,
            "the run outlasted the interval; instants that passed meanwhile are skipped (runs never overlap)"
        );
    }
    Ok(after.next)
}

/// Sleeps until the wall clock reads `target_ms`, in chunks of at most [`MAX_SLEEP`]. `false`
/// when cancelled first.
async fn sleep_until(clock: &dyn Clock, target_ms: i64, cancel: &CancellationToken) -> bool {
    loop {
        let now = clock.now_ms();
        if now >= target_ms {
            return true;
        }
        let wait = Duration::from_millis(u64::try_from(target_ms - now).unwrap_or(0)).min(MAX_SLEEP);
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

fn count_text(n: u32) -> String {
    if n >= schedule::COUNT_CAP {
        format!("at least {n}")
    } else {
        n.to_string()
    }
}

/// The next `n` fire times of `job` strictly after `from_ms`; empty for an inbox-only job.
pub fn next_fires(job: &Job, from_ms: i64, n: usize) -> Vec<i64> {
    job.schedule.as_ref().map_or_else(Vec::new, |s| s.next_n(from_ms, n))
}

/// One line about `job` for `status`: name, schedule and zone, what it does, next fire time.
pub fn describe(job: &Job, now_ms: i64) -> String {
    let disabled = if job.enabled { "" } else { " [disabled]" };
    let Some(schedule) = &job.schedule else {
        return format!("{}: inbox {}, no schedule{disabled}", job.name, job.inbox.display());
    };
    let action = match &job.action {
        Some(Action::Release { staging }) => format!("release {}", staging.display()),
        Some(Action::Command { argv, .. }) => format!("run {}", argv[0]),
        None => "nothing".to_owned(),
    };
    let next = match schedule.next_after(now_ms) {
        Some(t) if job.enabled => format!("next {}", schedule.local_rfc3339(t)),
        Some(_) => "not scheduled".to_owned(),
        None => "no more fire times".to_owned(),
    };
    format!(
        "{}: {schedule}, {action} into {}, {next}{disabled}",
        job.name,
        job.inbox.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Missed;
    use crate::rules::policy::Policy;
    use std::path::PathBuf;

    fn job(schedule: Option<&str>, enabled: bool) -> Job {
        Job {
            name: "payroll".into(),
            file: PathBuf::from("/jobs/payroll.toml"),
            description: None,
            inbox: PathBuf::from("/srv/ccpayout/payroll"),
            schedule: schedule.map(|s| Schedule::parse(s, "Europe/Berlin").unwrap()),
            missed: Missed::CatchUp,
            action: schedule.map(|_| Action::Release {
                staging: PathBuf::from("/srv/ccpayout/payroll/staged"),
            }),
            settle: None,
            enabled,
            policy: Policy::default(),
        }
    }

    const MARCH_27: i64 = 1_774_612_800_000; // 2026-03-27T12:00:00Z

    #[test]
    fn describe_gives_schedule_action_and_next_fire_in_the_zone() {
        assert_eq!(
            describe(&job(Some("0 0 9 1 * *"), true), MARCH_27),
            "payroll: \"0 0 9 1 * *\" Europe/Berlin, release /srv/ccpayout/payroll/staged into /srv/ccpayout/payroll, next 2026-04-01T09:00:00+02:00"
        );
        assert!(describe(&job(Some("0 0 9 1 * *"), false), MARCH_27).ends_with("not scheduled [disabled]"));
        assert_eq!(
            describe(&job(None, true), MARCH_27),
            "payroll: inbox /srv/ccpayout/payroll, no schedule"
        );
    }

    #[test]
    fn next_fires_lists_instants_and_nothing_without_a_schedule() {
        let fires = next_fires(&job(Some("0 0 9 1 * *"), true), MARCH_27, 2);
        assert_eq!(fires, [1_775_026_800_000, 1_777_618_800_000]); // 04-01 07:00Z, 05-01 07:00Z
        assert!(next_fires(&job(None, true), MARCH_27, 2).is_empty());
    }

    #[test]
    fn stored_run_records_are_versioned() {
        let run = LastRun {
            scheduled_ms: 1,
            started_ms: 2,
            finished_ms: None,
            outcome: None,
            ok: None,
        };
        let json = serde_json::to_string(&StoredLastRun::V1(run.clone())).unwrap();
        assert!(json.starts_with("{\"version\":\"1\","), "{json}");
        let StoredLastRun::V1(back) = serde_json::from_str(&json).unwrap();
        assert_eq!(back, run);
    }

    #[test]
    fn the_store_keeps_the_last_run_per_job() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.last_run("payroll").unwrap(), None);
        let run = LastRun {
            scheduled_ms: 10,
            started_ms: 11,
            finished_ms: Some(12),
            outcome: Some("released 1 file(s)".into()),
            ok: Some(true),
        };
        store.record("payroll", &run).unwrap();
        assert_eq!(store.last_run("payroll").unwrap(), Some(run));
        assert_eq!(store.last_run("affiliates").unwrap(), None);
    }

    #[test]
    fn a_run_recorded_under_the_previous_name_reads_back() {
        // The previous release wrote runs under `job:<name>`; the typed key must keep that name,
        // or an upgrade would forget every job's last run. (The store's own tests show that a
        // value written by `meta_put` reads back through a key.)
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let run = LastRun {
            scheduled_ms: 10,
            started_ms: 11,
            finished_ms: None,
            outcome: None,
            ok: None,
        };
        let by_name: Key<StoredLastRun> = Key::dynamic("job:payroll".to_owned());
        store.put(&by_name, &StoredLastRun::V1(run.clone())).unwrap();
        assert_eq!(store.last_run("payroll").unwrap(), Some(run));
        assert_eq!(meta_key("payroll").name(), "job:payroll");
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_until_reads_the_clock_in_chunks_and_stops_on_cancel() {
        let clock = crate::util::clock::TokioClock::new(0);
        let cancel = CancellationToken::new();
        assert!(sleep_until(&*clock, 3_600_000, &cancel).await);
        assert_eq!(clock.now_ms(), 3_600_000);
        cancel.cancel();
        assert!(!sleep_until(&*clock, 7_200_000, &cancel).await);
        assert_eq!(clock.now_ms(), 3_600_000);
    }
}
