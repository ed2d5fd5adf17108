//! Scheduled jobs through the public API: the loop on virtual time (exact fire instants across
//! a DST change, catch-up once, skip, no overlap), releases and commands on real temp folders,
//! and the repository's own example job files.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ccpayout::jobs::fire::execute_with_env;
use ccpayout::jobs::{
    Action, FireFn, Job, JobError, LastRun, LastRuns, Missed, Schedule, execute, load_jobs, next_fires, run_job,
};
use ccpayout::rules::policy::{ApprovalRule, Policy};
use ccpayout::store::Store;
use ccpayout::util::clock::{SharedClock, TokioClock};
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

/// Unix ms of an RFC 3339 instant.
fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

/// Last runs in memory, optionally failing every write.
#[derive(Default)]
struct MemoryRuns {
    runs: Mutex<Vec<(String, LastRun)>>,
    fail_writes: bool,
}

impl LastRuns for MemoryRuns {
    fn last_run(&self, job: &str) -> Result<Option<LastRun>, String> {
        let runs = self.runs.lock().unwrap();
        Ok(runs.iter().rev().find(|(j, _)| j == job).map(|(_, r)| r.clone()))
    }

    fn record(&self, job: &str, run: &LastRun) -> Result<(), String> {
        if self.fail_writes {
            return Err("disk full".to_owned());
        }
        self.runs.lock().unwrap().push((job.to_owned(), run.clone()));
        Ok(())
    }
}

fn scheduled_job(expr: &str, tz: &str, missed: Missed) -> Job {
    Job {
        name: "payroll".into(),
        file: PathBuf::from("/etc/ccpayout/jobs/payroll.toml"),
        description: None,
        inbox: PathBuf::from("/srv/ccpayout/payroll"),
        schedule: Some(Schedule::parse(expr, tz).unwrap()),
        missed,
        action: Some(Action::Release {
            staging: PathBuf::from("/srv/ccpayout/payroll/staged"),
        }),
        settle: None,
        enabled: true,
        policy: Policy::default(),
    }
}

/// Every firing as `(clock ms when it fired, scheduled ms)`.
type FireLog = Arc<Mutex<Vec<(i64, i64)>>>;

/// A fire function that logs and takes `takes` of virtual time.
fn recording_fire(clock: SharedClock, takes: Duration) -> (FireFn, FireLog) {
    let log: FireLog = Arc::default();
    let fire_log = log.clone();
    let fire: FireFn = Arc::new(move |_job, scheduled_ms| {
        let (clock, log) = (clock.clone(), fire_log.clone());
        async move {
            log.lock().unwrap().push((clock.now_ms(), scheduled_ms));
            tokio::time::sleep(takes).await;
            Ok("done".to_owned())
        }
        .boxed()
    });
    (fire, log)
}

/// Runs `job` from the clock's current time until the wall clock reads `until_ms`, then cancels
/// it and returns how the loop ended.
async fn run_until(
    job: Job,
    clock: SharedClock,
    runs: Arc<dyn LastRuns>,
    fire: FireFn,
    until_ms: i64,
) -> Result<(), JobError> {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_job(Arc::new(job), clock.clone(), runs, fire, cancel.clone()));
    let wait = u64::try_from(until_ms - clock.now_ms()).unwrap();
    tokio::time::sleep(Duration::from_millis(wait)).await;
    cancel.cancel();
    task.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn daily_berlin_job_fires_at_nine_local_time_across_the_dst_change() {
    let clock: SharedClock = TokioClock::new(ms("2026-03-27T12:00:00Z"));
    let runs = Arc::new(MemoryRuns::default());
    let (fire, log) = recording_fire(clock.clone(), Duration::ZERO);
    let job = scheduled_job("0 0 9 * * *", "Europe/Berlin", Missed::CatchUp);

    run_until(job, clock, runs.clone(), fire, ms("2026-03-30T12:00:00Z"))
        .await
        .unwrap();

    let fired = log.lock().unwrap().clone();
    let expected = [
        ms("2026-03-28T08:00:00Z"), // 09:00 CET
        ms("2026-03-29T07:00:00Z"), // 09:00 CEST, the day the clocks go forward
        ms("2026-03-30T07:00:00Z"),
    ];
    assert_eq!(
        fired,
        expected.map(|t| (t, t)),
        "fired at the exact instants, for those instants"
    );
    let last = runs.last_run("payroll").unwrap().unwrap();
    assert_eq!(last.scheduled_ms, expected[2]);
    assert_eq!(last.finished_ms, Some(expected[2]));
    assert_eq!((last.ok, last.outcome.as_deref()), (Some(true), Some("done")));
}

#[tokio::test(start_paused = true)]
async fn a_missed_run_is_caught_up_exactly_once_and_persisted_before_it_fires() {
    let state = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(state.path()).unwrap());
    // The daemon last fired on the 24th and was down until the 27th at noon: three runs missed.
    store
        .record(
            "payroll",
            &LastRun {
                scheduled_ms: ms("2026-03-24T08:00:00Z"),
                started_ms: ms("2026-03-24T08:00:00Z"),
                finished_ms: Some(ms("2026-03-24T08:00:01Z")),
                outcome: Some("released 1 file(s)".into()),
                ok: Some(true),
            },
        )
        .unwrap();
    let clock: SharedClock = TokioClock::new(ms("2026-03-27T12:00:00Z"));

    // The fire function checks that its run is already durable when it is called.
    let log: FireLog = Arc::default();
    let (fire_store, fire_log, fire_clock) = (store.clone(), log.clone(), clock.clone());
    let fire: FireFn = Arc::new(move |job: Arc<Job>, scheduled_ms| {
        let recorded = fire_store.last_run(&job.name).unwrap().unwrap();
        assert_eq!(recorded.scheduled_ms, scheduled_ms, "run persisted before firing");
        assert_eq!(recorded.finished_ms, None);
        fire_log.lock().unwrap().push((fire_clock.now_ms(), scheduled_ms));
        async { Ok("released".to_owned()) }.boxed()
    });
    let job = scheduled_job("0 0 9 * * *", "Europe/Berlin", Missed::CatchUp);

    run_until(
        job.clone(),
        clock.clone(),
        store.clone(),
        fire.clone(),
        ms("2026-03-28T12:00:00Z"),
    )
    .await
    .unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            // One catch-up at start, for the latest missed instant only.
            (ms("2026-03-27T12:00:00Z"), ms("2026-03-27T08:00:00Z")),
            (ms("2026-03-28T08:00:00Z"), ms("2026-03-28T08:00:00Z")),
        ]
    );

    // A restart the same day catches nothing up again.
    log.lock().unwrap().clear();
    run_until(job, clock, store.clone(), fire, ms("2026-03-28T20:00:00Z"))
        .await
        .unwrap();
    assert!(log.lock().unwrap().is_empty());
    let last = store.last_run("payroll").unwrap().unwrap();
    assert_eq!(last.scheduled_ms, ms("2026-03-28T08:00:00Z"));
    assert_eq!(last.ok, Some(true));
}

#[tokio::test(start_paused = true)]
async fn with_skip_missed_runs_are_not_fired() {
    let runs = Arc::new(MemoryRuns::default());
    runs.record(
        "payroll",
        &LastRun {
            scheduled_ms: ms("2026-03-24T08:00:00Z"),
            started_ms: ms("2026-03-24T08:00:00Z"),
            finished_ms: Some(ms("2026-03-24T08:00:00Z")),
            outcome: None,
            ok: Some(true),
        },
    )
    .unwrap();
    let clock: SharedClock = TokioClock::new(ms("2026-03-27T12:00:00Z"));
    let (fire, log) = recording_fire(clock.clone(), Duration::ZERO);
    let job = scheduled_job("0 0 9 * * *", "Europe/Berlin", Missed::Skip);

    run_until(job, clock, runs, fire, ms("2026-03-28T12:00:00Z"))
        .await
        .unwrap();
    let t = ms("2026-03-28T08:00:00Z");
    assert_eq!(*log.lock().unwrap(), [(t, t)]);
}

#[tokio::test(start_paused = true)]
async fn a_run_that_never_finished_is_not_repeated_after_a_restart() {
    let runs = Arc::new(MemoryRuns::default());
    // The daemon died during the 08:00Z run: started, never finished.
    runs.record(
        "payroll",
        &LastRun {
            scheduled_ms: ms("2026-03-27T08:00:00Z"),
            started_ms: ms("2026-03-27T08:00:00Z"),
            finished_ms: None,
            outcome: None,
            ok: None,
        },
    )
    .unwrap();
    let clock: SharedClock = TokioClock::new(ms("2026-03-27T08:05:00Z"));
    let (fire, log) = recording_fire(clock.clone(), Duration::ZERO);
    let job = scheduled_job("0 0 9 * * *", "Europe/Berlin", Missed::CatchUp);

    run_until(job, clock, runs, fire, ms("2026-03-27T20:00:00Z"))
        .await
        .unwrap();
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_slow_run_never_overlaps_and_the_instants_it_outlasts_are_skipped() {
    let start = ms("2026-03-27T12:00:00Z");
    let clock: SharedClock = TokioClock::new(start);
    let runs = Arc::new(MemoryRuns::default());
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let log: FireLog = Arc::default();
    let (c, r, m, l) = (clock.clone(), running.clone(), max_running.clone(), log.clone());
    // Every 10 s, and each run takes 25 s.
    let fire: FireFn = Arc::new(move |_job, scheduled_ms| {
        let (c, r, m, l) = (c.clone(), r.clone(), m.clone(), l.clone());
        async move {
            let now_running = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now_running, Ordering::SeqCst);
            l.lock().unwrap().push((c.now_ms(), scheduled_ms));
            tokio::time::sleep(Duration::from_secs(25)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            Ok("slow".to_owned())
        }
        .boxed()
    });
    let job = scheduled_job("*/10 * * * * *", "UTC", Missed::CatchUp);

    run_until(job, clock, runs.clone(), fire, start + 90_000).await.unwrap();

    assert_eq!(max_running.load(Ordering::SeqCst), 1, "runs overlapped");
    // 12:00:10 runs until :35 (skipping :20 and :30), :40 until 01:05, 01:10 until 01:35.
    let expected = [10_000, 40_000, 70_000].map(|s| (start + s, start + s));
    assert_eq!(*log.lock().unwrap(), expected);
    // Cancellation let the run in progress finish and record its outcome.
    let last = runs.last_run("payroll").unwrap().unwrap();
    assert_eq!(
        (last.scheduled_ms, last.finished_ms),
        (start + 70_000, Some(start + 95_000))
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_cannot_record_the_run_stops_the_job_before_it_fires() {
    let clock: SharedClock = TokioClock::new(ms("2026-03-27T12:00:00Z"));
    let runs = Arc::new(MemoryRuns {
        fail_writes: true,
        ..MemoryRuns::default()
    });
    let (fire, log) = recording_fire(clock.clone(), Duration::ZERO);
    let job = scheduled_job("0 0 9 * * *", "Europe/Berlin", Missed::CatchUp);
    let task = tokio::spawn(run_job(Arc::new(job), clock, runs, fire, CancellationToken::new()));
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, JobError::Store { .. }));
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(log.lock().unwrap().is_empty(), "fired without a durable record");
}

#[tokio::test(start_paused = true)]
async fn an_inbox_only_job_has_no_loop() {
    let clock: SharedClock = TokioClock::new(0);
    let (fire, _log) = recording_fire(clock.clone(), Duration::ZERO);
    let mut job = scheduled_job("0 0 9 * * *", "UTC", Missed::CatchUp);
    job.schedule = None;
    job.action = None;
    let runs: Arc<dyn LastRuns> = Arc::new(MemoryRuns::default());
    run_job(Arc::new(job), clock, runs, fire, CancellationToken::new())
        .await
        .unwrap();
}

/// Writes `jobs/NAME.toml` into a temp folder and loads that folder.
fn load_one(dir: &Path, name: &str, toml: &str) -> Job {
    let jobs_dir = dir.join("jobs");
    std::fs::create_dir_all(&jobs_dir).unwrap();
    std::fs::write(jobs_dir.join(format!("{name}.toml")), toml).unwrap();
    let mut jobs = load_jobs(&jobs_dir, &Policy::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jobs.len(), 1);
    jobs.remove(0)
}

#[tokio::test]
async fn a_release_job_moves_staged_files_into_the_inbox_without_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    let job = load_one(
        dir.path(),
        "payroll",
        "inbox = \"../inbox\"\nschedule = \"0 0 9 1 * *\"\ntimezone = \"Europe/Berlin\"\n\
         [release]\nstaging = \"../staged\"\n",
    );
    let (inbox, staging) = (dir.path().join("inbox"), dir.path().join("staged"));
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("payroll-april.csv"), "staged").unwrap();
    std::fs::write(staging.join("notes.txt"), "not a batch").unwrap();
    std::fs::write(inbox.join("payroll-april.csv"), "already waiting").unwrap();

    let summary = execute(&job, ms("2026-04-01T07:00:00Z")).await.unwrap();
    assert!(summary.contains("released 1 file(s)"), "{summary}");
    assert_eq!(
        std::fs::read_to_string(inbox.join("payroll-april.csv")).unwrap(),
        "already waiting"
    );
    assert_eq!(
        std::fs::read_to_string(inbox.join("payroll-april-1.csv")).unwrap(),
        "staged"
    );
    assert!(!staging.join("payroll-april.csv").exists());
    assert!(staging.join("notes.txt").exists());

    // Nothing staged is not an error.
    let summary = execute(&job, ms("2026-05-01T07:00:00Z")).await.unwrap();
    assert!(summary.starts_with("nothing staged"), "{summary}");
}

/// A producer in the contract's style: writes under a name the inbox ignores, then renames.
const PRODUCER: &str = r#"set -eu
tmp="$1/.affiliates.tmp"
printf 'job=%s date=%s scheduled=%s env_job=%s env_inbox=%s env_at=%s secret=%s secret_file=%s creds=%s\n' \
  "$2" "$3" "$4" "$CCPAYOUT_JOB" "$CCPAYOUT_INBOX" "$CCPAYOUT_SCHEDULED_AT" \
  "${CCPAYOUT_APP_SECRET-unset}" "${CCPAYOUT_APP_SECRET_FILE-unset}" "${CREDENTIALS_DIRECTORY-unset}" > "$tmp"
mv "$tmp" "$1/affiliates-$3.csv"
echo "wrote affiliates-$3.csv"
"#;

fn parent_env_with_secrets() -> Vec<(OsString, OsString)> {
    vec![
        (
            "PATH".into(),
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        ),
        ("CCPAYOUT_APP_SECRET".into(), "s3cr3t".into()),
        ("CCPAYOUT_APP_SECRET_FILE".into(), "/run/secret".into()),
        (
            "CREDENTIALS_DIRECTORY".into(),
            "/run/credentials/ccpayout.service".into(),
        ),
    ]
}

fn command_job(dir: &Path, argv: &[&str], timeout_secs: u64) -> Job {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    load_one(
        dir,
        "affiliates",
        &format!(
            "inbox = \"../inbox\"\nschedule = \"0 0 6 * * MON\"\ntimezone = \"UTC\"\nmissed = \"skip\"\n\
             [command]\nargv = [{}]\ntimeout_secs = {timeout_secs}\n",
            argv.join(", ")
        ),
    )
}

#[tokio::test]
async fn a_command_job_runs_with_placeholders_and_without_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let job = command_job(
        dir.path(),
        &["sh", "-c", PRODUCER, "sh", "{inbox}", "{job}", "{date}", "{scheduled}"],
        60,
    );
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();

    let summary = execute_with_env(&job, ms("2026-03-30T06:00:00Z"), parent_env_with_secrets())
        .await
        .unwrap();
    assert!(summary.starts_with("sh succeeded"), "{summary}");
    let written = std::fs::read_to_string(inbox.join("affiliates-2026-03-30.csv")).unwrap();
    let inbox_text = job.inbox.display().to_string();
    assert_eq!(
        written.trim_end(),
        format!(
            "job=affiliates date=2026-03-30 scheduled=2026-03-30T06:00:00Z env_job=affiliates \
             env_inbox={inbox_text} env_at=2026-03-30T06:00:00Z secret=unset secret_file=unset creds=unset"
        )
    );
    assert!(!inbox.join(".affiliates.tmp").exists());
}

#[tokio::test]
async fn a_command_that_exits_3_is_an_error_with_its_status_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let job = command_job(
        dir.path(),
        &["sh", "-c", "echo 'export: database unreachable' >&2; exit 3"],
        60,
    );
    let err = execute_with_env(&job, ms("2026-03-30T06:00:00Z"), parent_env_with_secrets())
        .await
        .unwrap_err();
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains("database unreachable"), "{err}");
}

#[tokio::test]
async fn a_command_that_outlives_its_timeout_is_killed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = command_job(dir.path(), &["sh", "-c", "exec sleep 30"], 1);
    if let Some(Action::Command { timeout, .. }) = &mut job.action {
        *timeout = Duration::from_millis(300);
    }
    let started = std::time::Instant::now();
    let err = execute_with_env(&job, ms("2026-03-30T06:00:00Z"), parent_env_with_secrets())
        .await
        .unwrap_err();
    assert!(err.contains("timed out after 0.3 s and was killed"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not killed: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_command_that_cannot_start_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let job = command_job(dir.path(), &["/nonexistent/export-affiliates"], 60);
    let err = execute(&job, 0).await.unwrap_err();
    assert!(err.contains("cannot start \"/nonexistent/export-affiliates\""), "{err}");
}

#[test]
fn the_repositorys_example_jobs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
    let jobs = load_jobs(&dir, &Policy::default()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["affiliates", "payroll"]);
    let from = ms("2026-03-27T12:00:00Z");

    let affiliates = &jobs[0];
    assert!(matches!(&affiliates.action, Some(Action::Command { argv, .. }) if argv.iter().any(|a| a == "{inbox}")));
    assert_eq!(affiliates.missed, Missed::Skip);
    assert!(affiliates.policy.coins["USDT"].max_per_order.is_some());
    assert_eq!(next_fires(affiliates, from, 1), [ms("2026-03-30T06:00:00Z")]); // Monday 06:00 UTC

    let payroll = &jobs[1];
    assert!(matches!(payroll.action, Some(Action::Release { .. })));
    assert_eq!(payroll.missed, Missed::CatchUp);
    assert_eq!(payroll.policy.approval, ApprovalRule::Always);
    assert_eq!(payroll.inbox, PathBuf::from("/srv/ccpayout/payroll"));
    assert_eq!(
        next_fires(payroll, from, 2),
        [ms("2026-04-01T07:00:00Z"), ms("2026-05-01T07:00:00Z")] // 09:00 CEST
    );
}
