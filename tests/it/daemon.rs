//! `ccpayout run`: the daemon against a sandbox on loopback, on the real clock, with temporary
//! inboxes and state. The sandbox's ledger is the proof of what was paid.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ccpayout::sandbox::{Ledger, SandboxConfig};

use crate::helpers::{TestApi, command, run_ccpayout};

pub(crate) const RECIPIENTS: [&str; 3] = [
    "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K",
    "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr",
    "TVqoGi64Ad2mSiPNsqVnqB2VkLGi7Mx1vq",
];

/// A running daemon; killed when dropped (tests stop it with SIGTERM when they mean to).
pub(crate) struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub(crate) fn start(api: &TestApi, state: &Path, config: &Path, extra: &[&str]) -> Daemon {
        let log = state.with_extension(format!("log-{}", nanos()));
        let mut args = vec![
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "run",
        ];
        args.extend_from_slice(extra);
        let child = command(api, &args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the daemon starts");
        let daemon = Daemon { child, log };
        // Ready when the control socket answers.
        daemon.wait_for("the control socket", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(state.join("control.sock")).is_ok()
        });
        daemon
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `done` until it holds, failing the test (with the daemon's log) after `limit`.
    pub(crate) fn wait_for(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            if start.elapsed() > limit {
                panic!("timed out waiting for {what}; daemon log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code and how long it took.
    pub(crate) fn terminate(mut self, limit: Duration) -> (Option<i32>, Duration, String) {
        let start = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), start.elapsed(), self.log());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "the daemon did not exit within {limit:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A temporary folder with a state directory, a config (with `extra`) and an empty inbox.
pub(crate) fn layout(extra: &str) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (state, config, inbox) = (
        dir.path().join("state"),
        write_config(dir.path(), extra),
        dir.path().join("inbox"),
    );
    std::fs::create_dir_all(&inbox).unwrap();
    (dir, state, config, inbox)
}

/// A config for fast tests: short tracking, a quick rescan, no metrics port unless asked.
pub(crate) fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("ccpayout.toml");
    std::fs::write(
        &path,
        format!(
            "[api]\nconnect_timeout_ms = 1000\nrequest_timeout_ms = 3000\n\
             [limits]\nrate_per_second = 200\nconcurrency = 16\ntrack_first_check_secs = 1\ntrack_max_interval_secs = 2\n\
             not_found_confirm_secs = 3\n\
             [daemon]\nsettle_secs = 1\nrescan_secs = 1\ndrain_secs = 20\nmetrics_listen = \"\"\n{extra}"
        ),
    )
    .unwrap();
    path
}

pub(crate) fn sandbox_config() -> SandboxConfig {
    SandboxConfig {
        settle_delay: Duration::from_millis(300),
        ..SandboxConfig::default()
    }
}

/// CSV text of `n` USDT payouts on TRX with ids `{prefix}-0000…`.
pub(crate) fn batch_text(prefix: &str, n: usize) -> String {
    let mut text = String::from("order_id,recipient,coin,chain,amount\n");
    for i in 0..n {
        text.push_str(&format!("{prefix}-{i:04},{},USDT,TRX,2.5\n", RECIPIENTS[i % 3]));
    }
    text
}

/// Writes `text` beside the inbox and renames it in: the producer contract.
pub(crate) fn drop_file(inbox: &Path, name: &str, text: &str) {
    let staging = inbox.parent().unwrap().join(format!(".staging-{name}-{}", nanos()));
    std::fs::write(&staging, text).unwrap();
    std::fs::rename(&staging, inbox.join(name)).unwrap();
}

pub(crate) fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Payouts per order id; fails if any order was paid twice.
pub(crate) fn paid_once(ledger: &Ledger) -> std::collections::BTreeMap<String, usize> {
    let mut per_order = std::collections::BTreeMap::new();
    for p in &ledger.payouts {
        *per_order.entry(p.order_id.clone()).or_insert(0) += 1;
    }
    for (id, n) in &per_order {
        assert_eq!(*n, 1, "order {id} was paid {n} times");
    }
    per_order
}

pub(crate) fn ccpayout_text(
    api: &TestApi,
    state: &Path,
    config: &Path,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut all = vec![
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = run_ccpayout(api, &all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_into_the_inbox_is_paid_and_archived_with_its_reports() {
    let api = TestApi::start_live(sandbox_config()).await;
    let (_dir, state, config, inbox) = layout("");
    // Files the inbox must never read: a dotfile and a file still being written under a
    // temporary name.
    std::fs::write(inbox.join(".hidden.csv"), batch_text("hidden", 2)).unwrap();
    std::fs::write(inbox.join("incoming.csv.part"), batch_text("part", 2)).unwrap();
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);

    drop_file(&inbox, "payroll.csv", &batch_text("pay", 6));
    let done = inbox.join("done");
    daemon.wait_for("payroll.csv in done/", Duration::from_secs(60), || {
        done.join("payroll.csv").exists()
    });
    let archived = files_in(&done);
    assert!(archived.iter().any(|f| f.ends_with(".result.csv")), "{archived:?}");
    assert!(archived.iter().any(|f| f.ends_with(".result.json")), "{archived:?}");
    assert!(archived.iter().any(|f| f.ends_with(".summary.json")), "{archived:?}");
    let ledger = api.sandbox.ledger();
    let paid = paid_once(&ledger);
    assert_eq!(paid.len(), 6, "{paid:?}");
    assert!(paid.keys().all(|id| id.starts_with("pay-")), "{paid:?}");
    let summary_name = archived.iter().find(|f| f.ends_with(".summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(done.join(summary_name)).unwrap()).unwrap();
    assert!(summary.to_string().contains("success"), "{summary}");

    // The status command reaches the daemon through its socket while it holds the store.
    let (code, out, err) = ccpayout_text(&api, &state, &config, &["status"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("daemon: up"), "{out}");
    assert!(out.contains("6/6 final"), "{out}");
    // It has measured the round trip, and says how many requests it keeps in flight.
    assert!(
        out.contains("API: round trip") && out.contains("ms on average; in flight up to"),
        "{out}"
    );

    // The ignored files are still where they were, unread.
    assert!(inbox.join(".hidden.csv").exists());
    assert!(inbox.join("incoming.csv.part").exists());
    assert!(files_in(&inbox.join("rejected")).is_empty());

    let (code, took, log) = daemon.terminate(Duration::from_secs(25));
    assert_eq!(code, Some(0), "{log}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(!state.join("control.sock").exists(), "the socket is removed on exit");
}

/// Batch mode through the daemon (issue 15): a file dropped into the inbox is paid through
/// CCPayment's batch withdrawals (TRX and POLYGON rows) and a single create (the Cwallet row),
/// each row once; `status BATCH` through the control socket lists the batch withdrawals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_pays_a_file_through_batch_withdrawals_in_batch_mode() {
    let api = TestApi::start_live(sandbox_config()).await;
    let (_dir, state, config, inbox) = layout("[batch]\ndefault_merchant_pays_fee = true\n");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("[api]\n", "[api]\nwithdraw_mode = \"batch\"\n", 1),
    )
    .unwrap();
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);

    let mut rows = String::from("order_id,recipient,coin,chain,amount\n");
    for i in 0..9 {
        let (to, chain) = match i % 3 {
            0 => (RECIPIENTS[i % 3], "TRX"),
            1 => ("0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d", "POLYGON"),
            _ => ("9558861", "CWALLET"),
        };
        rows.push_str(&format!("inbox-batch-{i:04},{to},USDT,{chain},{}.25\n", 12 + i));
    }
    drop_file(&inbox, "bundled.csv", &rows);
    let done = inbox.join("done");
    daemon.wait_for("bundled.csv in done/", Duration::from_secs(60), || {
        done.join("bundled.csv").exists()
    });

    let ledger = api.sandbox.ledger();
    let mut per_row = std::collections::BTreeMap::new();
    for p in &ledger.payouts {
        *per_row.entry(p.merchant_ref().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(per_row.len(), 9, "{per_row:?}");
    assert!(per_row.values().all(|n| *n == 1), "{per_row:?}");
    let tasks = ledger.payouts.iter().filter(|p| p.is_batch_task()).count();
    assert_eq!(tasks, 6, "TRX and POLYGON rows as tasks, the Cwallet rows single");

    let (code, out, err) = ccpayout_text(&api, &state, &config, &["status"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let name = out
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("bundled-")))
        .unwrap_or_else(|| panic!("no batch line in {out}"))
        .trim_end_matches(':')
        .to_owned();
    let (code, out, err) = ccpayout_text(&api, &state, &config, &["status", &name]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("batch withdrawals (2)"), "{out}");
    assert!(out.contains("done; CCPayment: Completed"), "{out}");

    let (code, _, log) = daemon.terminate(Duration::from_secs(25));
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_still_being_written_is_not_read_before_it_settles() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, inbox) = (dir.path().join("state"), dir.path().join("inbox"));
    // A producer that cannot rename writes in place: the settle time protects it.
    let config = write_config(dir.path(), "").to_path_buf();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("settle_secs = 1", "settle_secs = 2");
    std::fs::write(&config, text).unwrap();
    std::fs::create_dir_all(&inbox).unwrap();
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);

    // Written slowly, in place, in pieces less than the settle time apart; a half-read file
    // would be rejected (a broken last line) or lose rows.
    let full = batch_text("slow", 10);
    let (first, rest) = full.split_at(full.len() / 2);
    let path = inbox.join("slow.csv");
    std::fs::write(&path, first).unwrap();
    for chunk in rest.as_bytes().chunks(rest.len() / 4 + 1) {
        std::thread::sleep(Duration::from_millis(600));
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(chunk).unwrap();
    }
    daemon.wait_for("slow.csv in done/", Duration::from_secs(60), || {
        inbox.join("done/slow.csv").exists()
    });
    assert!(files_in(&inbox.join("rejected")).is_empty());
    assert_eq!(paid_once(&api.sandbox.ledger()).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_files_dropped_at_once_are_each_processed_once() {
    let api = TestApi::start_live(sandbox_config()).await;
    let (dir, state, config, inbox) = layout("");
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    // Prepared beside the inbox, then renamed in together.
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    for i in 0..50 {
        std::fs::write(staging.join(format!("b{i:02}.csv")), batch_text(&format!("f{i:02}"), 2)).unwrap();
    }
    for i in 0..50 {
        let name = format!("b{i:02}.csv");
        std::fs::rename(staging.join(&name), inbox.join(&name)).unwrap();
    }
    let done = inbox.join("done");
    daemon.wait_for("50 files in done/", Duration::from_secs(120), || {
        files_in(&done).iter().filter(|f| is_batch_name(f)).count() >= 50
    });
    let archived: Vec<String> = files_in(&done).into_iter().filter(|f| is_batch_name(f)).collect();
    assert_eq!(archived.len(), 50, "each file archived once: {archived:?}");
    assert!(files_in(&inbox.join("rejected")).is_empty());
    assert!(files_in(&inbox.join("processing")).is_empty());
    let paid = paid_once(&api.sandbox.ledger());
    assert_eq!(paid.len(), 100);
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_refuses_to_start() {
    let api = TestApi::start_live(sandbox_config()).await;
    let (_dir, state, config, inbox) = layout("");
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    let (code, out, err) = ccpayout_text(&api, &state, &config, &["run", "--inbox", inbox.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("in use by another ccpayout process"), "{err}");
    // The first one is unharmed.
    let (code, out, _) = ccpayout_text(&api, &state, &config, &["status"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("daemon: up"), "{out}");
    drop(daemon);
}

/// `doctor` while a daemon holds the store: its findings go through the control socket to the
/// one operator, and the daemon's `status` shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_records_its_findings_through_a_running_daemon() {
    let api = TestApi::start_live(sandbox_config()).await;
    let (_dir, state, config, inbox) = layout("");
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    let (code, out, err) = ccpayout_text(&api, &state, &config, &["doctor"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("recorded in"), "{err}");
    let (code, out, err) = ccpayout_text(&api, &state, &config, &["status"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("daemon: up"), "through the daemon: {out}");
    assert!(
        out.contains("account (ccpayout doctor") && out.contains("11003 NotFound"),
        "{out}"
    );
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_is_rejected_with_an_error_report_naming_its_lines() {
    let api = TestApi::start_live(sandbox_config()).await;
    let (_dir, state, config, inbox) = layout("");
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    let broken = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/broken.csv")).unwrap();
    drop_file(&inbox, "broken.csv", &broken);
    let rejected = inbox.join("rejected");
    daemon.wait_for("broken.csv in rejected/", Duration::from_secs(30), || {
        rejected.join("broken.csv.error.txt").exists()
    });
    assert!(rejected.join("broken.csv").exists());
    let report = std::fs::read_to_string(rejected.join("broken.csv.error.txt")).unwrap();
    assert!(report.contains("broken.csv:2:"), "{report}");
    assert!(report.contains("nothing was submitted"), "{report}");
    assert!(api.sandbox.ledger().attempts.is_empty(), "no money moved");

    // The same contents as a paid batch are refused as a duplicate, not paid again.
    drop_file(&inbox, "one.csv", &batch_text("dup", 2));
    daemon.wait_for("one.csv in done/", Duration::from_secs(30), || {
        inbox.join("done/one.csv").exists()
    });
    drop_file(&inbox, "again.csv", &batch_text("dup", 2));
    daemon.wait_for("again.csv in rejected/", Duration::from_secs(30), || {
        rejected.join("again.csv.error.txt").exists()
    });
    let text = std::fs::read_to_string(rejected.join("again.csv.error.txt")).unwrap();
    assert!(text.contains("nothing is paid twice"), "{text}");
    assert_eq!(paid_once(&api.sandbox.ledger()).len(), 2);
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_pays_a_signed_batch_and_rejects_unsigned_and_altered_ones() {
    let api = TestApi::start_live(sandbox_config()).await;
    let signers = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/signing");
    let (_dir, state, config, inbox) = layout(&format!(
        "[policy]\nrequire_signature = true\nallowed_signers = \"{}\"\n",
        signers.join("allowed_signers").display()
    ));
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    let key = std::fs::read_to_string(signers.join("alice")).unwrap();
    let signed = |text: &str| ccpayout::rules::signature::sign(&key, "ccpayout-batch", text.as_bytes()).unwrap();

    // The producer contract: the .sig first, then the batch, each renamed into place.
    let good = batch_text("signed", 2);
    drop_file(&inbox, "good.csv.sig", &signed(&good));
    drop_file(&inbox, "good.csv", &good);
    let unsigned = batch_text("unsigned", 2);
    drop_file(&inbox, "unsigned.csv", &unsigned);
    let altered = batch_text("altered", 2);
    drop_file(&inbox, "altered.csv.sig", &signed(&altered));
    drop_file(&inbox, "altered.csv", &altered.replace(",2.5\n", ",25\n"));

    let (done, rejected) = (inbox.join("done"), inbox.join("rejected"));
    daemon.wait_for("good.csv in done/", Duration::from_secs(60), || {
        done.join("good.csv").exists()
    });
    assert!(
        done.join("good.csv.sig").exists(),
        "the signature is archived with its batch"
    );
    for (name, says) in [
        ("unsigned.csv", "unsigned"),
        ("altered.csv", "changed after it was signed"),
    ] {
        daemon.wait_for(&format!("{name} in rejected/"), Duration::from_secs(30), || {
            rejected.join(format!("{name}.error.txt")).exists()
        });
        let report = std::fs::read_to_string(rejected.join(format!("{name}.error.txt"))).unwrap();
        assert!(report.contains(says), "{name}: {report}");
    }
    let paid = paid_once(&api.sandbox.ledger());
    assert_eq!(paid.len(), 2, "{paid:?}");
    assert!(paid.keys().all(|id| id.starts_with("signed-")), "{paid:?}");
    let id = ccpayout::app::file_sha256(&done.join("good.csv")).unwrap();
    let (code, out, err) = ccpayout_text(&api, &state, &config, &["status", &id[..16]]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("signed by:   alice"), "{out}");
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_cancel_and_pause_work_through_the_control_socket() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, inbox) = (dir.path().join("state"), dir.path().join("inbox"));
    let config = write_config(dir.path(), "[policy]\napproval = \"always\"\n");
    std::fs::create_dir_all(&inbox).unwrap();
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);

    drop_file(&inbox, "needs-ok.csv", &batch_text("ok", 3));
    drop_file(&inbox, "unwanted.csv", &batch_text("no", 3));
    let status = |target: &str| ccpayout_text(&api, &state, &config, &["status", target]).1;
    daemon.wait_for("two batches awaiting approval", Duration::from_secs(30), || {
        status("needs-ok").contains("AWAITING APPROVAL") && status("unwanted").contains("AWAITING APPROVAL")
    });
    let text = status("needs-ok");
    let digest = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("plan digest: "))
        .expect("status shows the plan digest")
        .trim()
        .to_owned();

    let (code, _, err) = ccpayout_text(&api, &state, &config, &["approve", "needs-ok", "--digest", "0000"]);
    assert_eq!(code, Some(1), "a wrong digest is refused: {err}");
    let (code, out, err) = ccpayout_text(&api, &state, &config, &["cancel", "unwanted"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("cancelled 3 unsent orders"), "{out}");

    // Paused: an approved batch sends nothing until resumed.
    let (code, _, _) = ccpayout_text(&api, &state, &config, &["pause", "--reason", "test"]);
    assert_eq!(code, Some(0));
    let (code, out, err) = ccpayout_text(&api, &state, &config, &["approve", "needs-ok", "--digest", &digest]);
    assert_eq!(code, Some(0), "{out}{err}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(api.sandbox.ledger().attempts.is_empty(), "nothing is sent while paused");
    let all = ccpayout_text(&api, &state, &config, &["status"]).1;
    assert!(all.contains("PAUSED"), "{all}");

    let (code, _, _) = ccpayout_text(&api, &state, &config, &["resume"]);
    assert_eq!(code, Some(0));
    daemon.wait_for("needs-ok.csv in done/", Duration::from_secs(30), || {
        inbox.join("done/needs-ok.csv").exists()
    });
    daemon.wait_for("unwanted.csv in done/", Duration::from_secs(30), || {
        inbox.join("done/unwanted.csv").exists()
    });
    let paid = paid_once(&api.sandbox.ledger());
    assert_eq!(paid.len(), 3);
    assert!(paid.keys().all(|id| id.starts_with("ok-")), "{paid:?}");
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_1000_row_batch_exits_0_and_the_restart_pays_the_rest_once() {
    let api = TestApi::start_live(SandboxConfig {
        settle_delay: Duration::from_millis(300),
        ..SandboxConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (state, inbox) = (dir.path().join("state"), dir.path().join("inbox"));
    // Slow enough that the signal lands mid-batch.
    let config = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("rate_per_second = 200", "rate_per_second = 100");
    std::fs::write(&config, text).unwrap();
    std::fs::create_dir_all(&inbox).unwrap();
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    drop_file(&inbox, "big.csv", &batch_text("big", 1000));
    daemon.wait_for("some payouts", Duration::from_secs(60), || {
        api.sandbox.ledger().payouts.len() >= 150
    });
    let (code, took, log) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");
    assert!(
        took <= Duration::from_secs(20),
        "exited within the drain deadline: {took:?}"
    );
    let at_stop = api.sandbox.ledger().payouts.len();
    assert!(at_stop < 1000, "the signal landed mid-batch ({at_stop} paid)");

    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    daemon.wait_for("big.csv in done/", Duration::from_secs(120), || {
        inbox.join("done/big.csv").exists()
    });
    let paid = paid_once(&api.sandbox.ledger());
    assert_eq!(paid.len(), 1000, "every row paid exactly once across the restart");
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_release_job_pays_its_staged_file_and_metrics_count_it() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let jobs = dir.path().join("jobs");
    let (job_inbox, staged) = (dir.path().join("payroll-inbox"), dir.path().join("payroll-staged"));
    std::fs::create_dir_all(&jobs).unwrap();
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(
        jobs.join("payroll.toml"),
        format!(
            "inbox = {:?}\nschedule = \"*/2 * * * * *\"\ntimezone = \"Europe/Berlin\"\nmissed = \"skip\"\n[release]\nstaging = {:?}\n",
            job_inbox, staged
        ),
    )
    .unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &format!("jobs_dir = {:?}\n", jobs)).to_path_buf();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "metrics_listen = \"\"",
        &format!("metrics_listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&config, text).unwrap();
    std::fs::write(staged.join("march.csv"), batch_text("job", 4)).unwrap();
    let daemon = Daemon::start(&api, &state, &config, &[]);
    daemon.wait_for("march.csv released and paid", Duration::from_secs(60), || {
        job_inbox.join("done/march.csv").exists()
    });
    assert!(files_in(&staged).is_empty());
    assert_eq!(paid_once(&api.sandbox.ledger()).len(), 4);

    let metrics = http_get(port, "/metrics");
    assert!(metrics.contains("ccpayout_orders{state=\"success\"} 4"), "{metrics}");
    assert!(
        metrics.contains("ccpayout_job_runs_total{job=\"payroll\",result=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ccpayout_inbox_files_total{result=\"done\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("ccpayout_api_requests_total{"), "{metrics}");
    drop(daemon);
}

/// `bNN.csv`, not a report.
fn is_batch_name(name: &str) -> bool {
    name.len() == 7 && name.starts_with('b') && name.ends_with(".csv")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_webhooks_make_the_daemon_ask_about_an_order_at_once() {
    // Status checks are scheduled two minutes out, so only the webhooks' hints can finish the
    // batch within the test's time.
    let port = free_port();
    let api = TestApi::start_live(SandboxConfig {
        settle_delay: Duration::from_millis(300),
        webhook_url: Some(format!("http://127.0.0.1:{port}/ccpayment/webhook")),
        ..SandboxConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (state, inbox) = (dir.path().join("state"), dir.path().join("inbox"));
    let config = write_config(
        dir.path(),
        &format!("[webhook]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("track_first_check_secs = 1", "track_first_check_secs = 120")
        .replace("track_max_interval_secs = 2", "track_max_interval_secs = 600");
    std::fs::write(&config, text).unwrap();
    std::fs::create_dir_all(&inbox).unwrap();
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    let started = Instant::now();
    drop_file(&inbox, "hinted.csv", &batch_text("hint", 3));
    daemon.wait_for("hinted.csv in done/", Duration::from_secs(60), || {
        inbox.join("done/hinted.csv").exists()
    });
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(paid_once(&api.sandbox.ledger()).len(), 3);
    let deliveries = api.sandbox.webhook_deliveries();
    assert!(!deliveries.is_empty(), "the sandbox sent webhooks");
    assert!(
        deliveries.iter().all(|d| d.accepted),
        "every webhook was verified and acknowledged: {deliveries:?}"
    );
    drop(daemon);
}

/// `ccpayout run` with a fake systemd notification socket (and `extra` environment), the
/// socket it reports to (10-second read timeout), and the folder both live in.
fn daemon_with_notify_socket(
    api: &TestApi,
    extra: &[(&str, &str)],
) -> (Daemon, std::os::unix::net::UnixDatagram, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut cmd = command(
        api,
        &[
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "run",
        ],
    );
    cmd.env("NOTIFY_SOCKET", &socket_path);
    for (key, value) in extra {
        cmd.env(key, value);
    }
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let daemon = Daemon {
        child,
        log: dir.path().join("none.log"),
    };
    (daemon, socket, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_watchdog_and_stopping() {
    let api = TestApi::start_live(sandbox_config()).await;
    let (daemon, socket, _dir) = daemon_with_notify_socket(&api, &[("WATCHDOG_USEC", "400000")]);
    let mut heard = String::new();
    let mut buf = [0u8; 512];
    let start = Instant::now();
    while !(heard.contains("READY=1") && heard.matches("WATCHDOG=1").count() >= 2) {
        assert!(start.elapsed() < Duration::from_secs(10), "heard only: {heard:?}");
        let n = socket.recv(&mut buf).unwrap();
        heard.push_str(&String::from_utf8_lossy(&buf[..n]));
        heard.push('\n');
    }
    let (code, _, _) = daemon.terminate(Duration::from_secs(20));
    assert_eq!(code, Some(0));
    let mut stopping = false;
    while let Ok(n) = socket.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 was sent on SIGTERM; before it: {heard:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_the_moment_ready_is_sent_stops_the_daemon_cleanly() {
    let api = TestApi::start_live(sandbox_config()).await;
    let (daemon, socket, _dir) = daemon_with_notify_socket(&api, &[]);
    let mut buf = [0u8; 512];
    loop {
        let n = socket.recv(&mut buf).expect("READY=1 within 10 s");
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break;
        }
    }
    // No pause, not even a `kill` process: the handler must already be in place when READY=1
    // is sent (the default disposition of SIGTERM kills the process, which shows as no code).
    let pid = libc::pid_t::try_from(daemon.child.id()).unwrap();
    // SAFETY: kill(2) with a pid of our own child and a valid signal number has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let mut daemon = daemon;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no exit within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "a SIGTERM right after READY=1 is a clean stop, not a kill: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_dies_stops_the_daemon_with_a_log_line_naming_it() {
    let api = TestApi::start_live(sandbox_config()).await;
    let (_dir, state, config, inbox) = layout("");
    let mut daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    // The inbox vanishes under the daemon (an unmounted share): its task cannot scan it.
    std::fs::remove_dir_all(&inbox).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the daemon kept running:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(2));
    let log = daemon.log();
    assert!(log.contains(&format!("task inbox {} failed", inbox.display())), "{log}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET on loopback.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// Issue 11: every request of the daemon — the creates and status queries of a batch being paid,
/// and the preflight of a batch that arrives meanwhile (coins, chains, fees, balances, and one
/// address check per recipient) — passes one pacing. With CCPayment's limit equal to the
/// configured rate, nothing is answered 11004. The account has no `checkWithdrawAddress`
/// (`no-address-batch-check`), so the preflights learn that and check one address a request,
/// the heaviest way there is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_batch_arriving_while_one_is_paid_costs_no_rate_limit_refusal() {
    use ccpayout::sandbox::RateLimit;
    const RATE: u32 = 20;
    const BURST: u32 = 5;
    let api = TestApi::start_live(SandboxConfig {
        settle_delay: Duration::from_millis(300),
        rate_limit: Some(RateLimit {
            per_second: f64::from(RATE),
            burst: BURST,
        }),
        readings: ccpayout::sandbox::Readings::parse("no-address-batch-check").expect("a reading"),
        ..SandboxConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (state, inbox) = (dir.path().join("state"), dir.path().join("inbox"));
    std::fs::create_dir_all(&inbox).unwrap();
    let config = dir.path().join("ccpayout.toml");
    std::fs::write(
        &config,
        format!(
            "[preflight]\nremote_checks = \"always\"\n\
             [limits]\nrate_per_second = {RATE}\nburst = {BURST}\nread_rate_per_second = {RATE}\nconcurrency = 8\n\
             track_first_check_secs = 1\ntrack_max_interval_secs = 2\n\
             [daemon]\nsettle_secs = 0\nrescan_secs = 1\ndrain_secs = 20\nmetrics_listen = \"\"\n"
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);

    // The first batch: 160 creates (8 s at 20/s) plus their status queries.
    drop_file(&inbox, "first.csv", &batch_text("first", 160));
    daemon.wait_for("the first batch paying", Duration::from_secs(30), || {
        api.sandbox.ledger().payouts.len() >= 20
    });
    // The second arrives mid-way, with 60 distinct addresses for the preflight to check.
    let mut second = String::from("order_id,recipient,coin,chain,amount\n");
    for i in 0..60 {
        second.push_str(&format!("second-{i:04},0x{:040x},USDT,BSC,2.5\n", 0xabc0_0000u64 + i));
    }
    drop_file(&inbox, "second.csv", &second);
    daemon.wait_for("both batches in done/", Duration::from_secs(90), || {
        inbox.join("done/first.csv").exists() && inbox.join("done/second.csv").exists()
    });
    let stats = api.sandbox.stats();
    let paid = paid_once(&api.sandbox.ledger());
    assert_eq!(paid.len(), 220, "every row paid once");
    assert!(
        stats.to_endpoint("checkWithdrawalAddressValidity") >= 60,
        "the second batch's addresses were checked remotely: {stats:?}"
    );
    // Each preflight said once that it fell back.
    let log = daemon.log();
    assert_eq!(
        log.matches("this account has no checkWithdrawAddress").count(),
        2,
        "{log}"
    );
    assert_eq!(
        stats.with_code(11004),
        0,
        "requests answered 11004 with the API's limit equal to the configured rate: {stats:?}\n{}",
        daemon.log()
    );
    drop(daemon);
}
