//! `ccpayout doctor` as an operator runs it, against the sandbox playing each account a real
//! operator could have: a healthy one, a wrong secret, a server clock five minutes off, an address
//! off the whitelist, a legacy v1 account, undocumented lookup replies, an account without the
//! batch withdrawal routes, nothing listening.

use std::path::Path;
use std::process::Output;

use ccpayout::sandbox::{Readings, Sandbox, SandboxConfig};
use ccpayout::util::clock::{self, OffsetClock};
use serde_json::Value;

use crate::helpers::{TestApi, command};

/// A secret no output may show.
const WRONG_SECRET: &str = "wrong-secret-never-printed-4711";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ccpayout doctor` (with `args` after it) against `api`, its state in `state`.
fn doctor(api: &TestApi, state: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec!["--state-dir", state.to_str().unwrap(), "doctor"];
    all.extend_from_slice(args);
    let mut cmd = command(api, &all);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("ccpayout runs")
}

/// The line of check `name`.
fn line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(name)))
        .unwrap_or_else(|| panic!("no {name} line in:\n{stdout}"))
}

fn status(api: &TestApi, state: &Path) -> String {
    let out = command(api, &["--state-dir", state.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// Requests that could have created a payout, by endpoint.
fn creates(sandbox: &Sandbox) -> Vec<String> {
    sandbox
        .stats()
        .requests
        .iter()
        .filter(|r| r.endpoint.starts_with("apply") || r.endpoint == "v1/withdraw")
        .map(|r| format!("{} {} x{}", r.endpoint, r.code, r.count))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_against_the_sandbox_records_its_findings_and_creates_no_payout() {
    let api = TestApi::start_live(SandboxConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = doctor(&api, &state, &[], &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let checks: Vec<&str> = stdout.lines().take_while(|l| !l.trim().is_empty()).collect();
    assert_eq!(checks.iter().filter(|l| !l.starts_with("  ")).count(), 11, "{stdout}");
    for check in checks.iter().filter(|l| !l.starts_with("  ")) {
        assert!(check.starts_with("ok "), "every check passes: {check}\n{stdout}");
    }
    assert!(line(&stdout, "unknown orderId").contains("11003 NotFound"), "{stdout}");
    assert!(
        line(&stdout, "batch withdrawals").contains("the account answers the batch routes"),
        "{stdout}"
    );
    assert!(line(&stdout, "decoding").contains("coins"), "{stdout}");
    assert!(line(&stdout, "balances").contains("USDT 1000000"), "{stdout}");
    // The secret is never shown.
    let secret = secrecy::ExposeSecret::expose_secret(api.sandbox.app_secret()).to_owned();
    assert!(!stdout.contains(&secret) && !stderr.contains(&secret));

    // Read-only: no create reached the sandbox, nothing was paid.
    assert_eq!(creates(&api.sandbox), Vec::<String>::new());
    let ledger = api.sandbox.ledger();
    assert!(ledger.payouts.is_empty() && ledger.attempts.is_empty(), "{ledger:?}");

    // What it learnt is in the store, and `status` shows it.
    let shown = status(&api, &state);
    assert!(
        shown.contains("account (ccpayout doctor")
            && shown.contains("an empty body")
            && shown.contains("11003 NotFound"),
        "{shown}"
    );

    // The same as JSON, for machines.
    let out = doctor(&api, &state, &["--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["checks"].as_array().unwrap().len(), 11);
    assert_eq!(json["findings"]["no_params"], "empty");
    assert_eq!(json["findings"]["batch_withdraw"], true);
    assert_eq!(json["findings"]["unknown_order"], "not_found_code");
    assert_eq!(creates(&api.sandbox), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_named_as_11005_and_fails_without_being_printed() {
    let api = TestApi::start_live(SandboxConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = doctor(
        &api,
        &dir.path().join("state"),
        &[],
        &[("CCPAYOUT_APP_SECRET", WRONG_SECRET)],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let credentials = line(&stdout, "credentials");
    assert!(
        credentials.starts_with("FAIL") && credentials.contains("11005"),
        "{stdout}"
    );
    assert!(stdout.contains("app secret is wrong"), "{stdout}");
    assert!(!stdout.contains(WRONG_SECRET) && !stderr.contains(WRONG_SECRET));
    assert!(line(&stdout, "decoding").starts_with("skip"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_clock_five_minutes_off_is_named_and_fails() {
    for offset_secs in [300_i64, -300] {
        let sandbox = Sandbox::start(
            SandboxConfig::default(),
            OffsetClock::new(clock::system(), offset_secs * 1000),
        )
        .await
        .expect("sandbox starts");
        let api = TestApi {
            client: crate::helpers::client_for(
                &sandbox,
                clock::system(),
                sandbox.app_id(),
                sandbox.app_secret().clone(),
            ),
            sandbox,
            clock: ccpayout::util::clock::ManualClock::starting_now(),
        };
        let dir = tempfile::tempdir().unwrap();
        let out = doctor(&api, &dir.path().join("state"), &[], &[]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
        let clock_line = line(&stdout, "clock");
        let side = if offset_secs > 0 { "ahead" } else { "behind" };
        assert!(
            clock_line.starts_with("FAIL") && clock_line.contains(side) && clock_line.contains("11006"),
            "{stdout}"
        );
        // Within a second of the offset (the Date header has whole seconds).
        let said: i64 = clock_line
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .expect("the skew in seconds");
        assert!((said - offset_secs.abs()).abs() <= 1, "{clock_line}");
        assert!(stdout.contains("timedatectl"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_off_the_whitelist_is_named_as_12002() {
    let api = TestApi::start_live(SandboxConfig {
        ip_whitelist: Some(vec!["10.9.8.7".parse().unwrap()]),
        ..SandboxConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = doctor(&api, &dir.path().join("state"), &[], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let ip = line(&stdout, "ip whitelist");
    assert!(ip.starts_with("FAIL") && ip.contains("12002"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undocumented_lookup_replies_are_learnt_and_shown_by_status() {
    for (reading, form, shown) in [
        ("empty-record", "empty_record", "an empty record"),
        ("other-record", "other_record", "another order's record"),
    ] {
        let api = TestApi::start_live(SandboxConfig {
            readings: Readings::parse(reading).unwrap(),
            ..SandboxConfig::default()
        })
        .await;
        // Another order exists (paid by someone else), for the server to answer with.
        api.client
            .apply_app_withdraw_to_network(&crate::helpers::trx_withdraw("someone-elses-order", "5"))
            .await
            .expect("a payout of another order");
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let out = doctor(&api, &state, &["--json"], &[]);
        assert_eq!(out.status.code(), Some(0), "{reading}: {}", text(&out.stdout));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["findings"]["unknown_order"], form, "{reading}");
        let status = status(&api, &state);
        assert!(status.contains(shown), "{reading}: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_routes_are_probed_with_a_read_and_their_absence_is_a_warning() {
    // With the routes: one read of a batch never applied, answered 11003; nothing created.
    let api = TestApi::start_live(SandboxConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = doctor(&api, &state, &[], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let batch = line(&stdout, "batch withdrawals");
    assert!(batch.starts_with("ok") && batch.contains("11003 NotFound"), "{stdout}");
    let probes: Vec<(i64, u64)> = api
        .sandbox
        .stats()
        .requests
        .iter()
        .filter(|r| r.endpoint == "getBatchWithdrawOrder")
        .map(|r| (r.code, r.count))
        .collect();
    assert_eq!(probes, [(11003, 1)]);
    assert!(api.sandbox.ledger().attempts.is_empty(), "no apply, append or confirm");
    assert!(status(&api, &state).contains("batch withdrawals available"));

    // Without them: the router's 404, a warning (not a failure), learnt and shown.
    let api = TestApi::start_live(SandboxConfig {
        readings: Readings::parse("no-batch-withdraw").unwrap(),
        ..SandboxConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = doctor(&api, &state, &[], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "a warning only:\n{stdout}");
    let batch = line(&stdout, "batch withdrawals");
    assert!(
        batch.starts_with("warn")
            && batch.contains("not available on this account; withdraw_mode = \"batch\" cannot be used")
            && batch.contains("HTTP 404"),
        "{stdout}"
    );
    // Every other check passes as on a healthy account.
    let others = stdout
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| !l.starts_with("  ") && !l.contains("batch withdrawals"));
    for check in others {
        assert!(check.starts_with("ok "), "{check}\n{stdout}");
    }
    assert_eq!(
        api.sandbox.stats().to_endpoint("getBatchWithdrawOrder"),
        0,
        "a 404 never reaches the API"
    );
    let out = doctor(&api, &state, &["--json"], &[]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["findings"]["batch_withdraw"], false);
    assert!(status(&api, &state).contains("no batch withdrawals"));
    assert_eq!(creates(&api.sandbox), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_account_is_told_to_set_api_version_and_then_passes() {
    let api = TestApi::start_live(SandboxConfig {
        readings: Readings::parse("v1-only").unwrap(),
        ..SandboxConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = doctor(&api, &state, &[], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let generation = line(&stdout, "api generation");
    assert!(
        generation.starts_with("FAIL") && generation.contains("11013") && stdout.contains("api.version = \"v1\""),
        "{stdout}"
    );

    let config = dir.path().join("ccpayout.toml");
    std::fs::write(&config, "[api]\nversion = \"v1\"\n").unwrap();
    let out = doctor(&api, &state, &[], &[("CCPAYOUT_CONFIG", config.to_str().unwrap())]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert!(line(&stdout, "api generation").contains("v1 answers"), "{stdout}");
    assert!(line(&stdout, "unknown orderId").contains("no bill"), "{stdout}");
    assert!(line(&stdout, "decoding").contains("fee quote"), "{stdout}");
    assert!(line(&stdout, "batch withdrawals").starts_with("skip"), "{stdout}");
    assert_eq!(creates(&api.sandbox), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_exits_2_and_a_missing_secret_exits_78() {
    let api = TestApi::start_live(SandboxConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // A port nothing listens on: bind one, then free it.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{free}");
    let out = doctor(&api, &state, &[], &[("CCPAYOUT_API_BASE_URL", url.as_str())]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(line(&stdout, "endpoint").starts_with("FAIL"), "{stdout}");
    assert!(line(&stdout, "credentials").starts_with("skip"), "{stdout}");
    // Nothing was learnt, so nothing was recorded.
    assert!(!state.join(ccpayout::store::DB_FILE).exists(), "no store was written");

    let mut cmd = command(&api, &["--state-dir", state.to_str().unwrap(), "doctor"]);
    cmd.env_remove("CCPAYOUT_APP_SECRET");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
}
