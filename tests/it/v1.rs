//! A v1 account's whole job uses only v1 endpoints (issue 12, R15): the preflight of a v1 batch
//! asks nothing of v2, and `ccpayout submit` pays a v1 batch end to end, against an account
//! that answers every v2 call with 11013 NoSupportVersion and against `--sandbox`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ccpayout::api::types::method;
use ccpayout::batch::plan::Verdict;
use ccpayout::batch::preflight::{RemoteChecks, Settings, check_file};
use ccpayout::batch::validate::NoKnownOrders;
use ccpayout::config::Config;
use ccpayout::model::ApiGeneration;
use ccpayout::sandbox::demo::v1_token_id;
use ccpayout::sandbox::{Sandbox, SandboxConfig, SandboxStats};
use serde_json::Value;

use crate::helpers::{EVM_ADDRESS, TRON_ADDRESS, TestApi, XRP_ADDRESS, run_ccpayout};

/// Makes the sandbox a v1-only account: every v2 method answers 11013 NoSupportVersion.
pub(crate) fn refuse_v2(sandbox: &Sandbox) {
    for name in method::ALL {
        sandbox.force_error(name, 11013, "NoSupportVersion", u32::MAX);
    }
}

/// Requests to anything but v1, by endpoint.
pub(crate) fn not_v1(stats: &SandboxStats) -> Vec<(String, i64, u64)> {
    stats
        .requests
        .iter()
        .filter(|r| !r.endpoint.starts_with("v1/"))
        .map(|r| (r.endpoint.clone(), r.code, r.count))
        .collect()
}

/// A v1 batch over the demo catalogue: USDT on TRX (fee in USDT), USDT on POLYGON (fee in
/// MATIC), a Cwallet transfer and XRP with its memo, plus `extra` rows.
fn v1_batch(dir: &Path, extra: &str) -> PathBuf {
    let usdt_trx = v1_token_id("USDT", "TRX");
    let usdt_polygon = v1_token_id("USDT", "POLYGON");
    let xrp = v1_token_id("XRP", "XRP");
    let text = format!(
        "order_id,recipient,amount,memo,token_id\n\
         v1-0001,{TRON_ADDRESS},12,,{usdt_trx}\n\
         v1-0002,{EVM_ADDRESS},15,,{usdt_polygon}\n\
         v1-0003,9558861,20,,{usdt_trx}\n\
         v1-0004,{XRP_ADDRESS},12,12345,{xrp}\n\
         {extra}"
    );
    let path = dir.join("v1-payroll.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn v1_settings() -> Settings {
    let mut settings = Config::load(None, &|_| None)
        .expect("defaults load")
        .preflight_settings();
    settings.generation = ApiGeneration::V1;
    settings.remote_checks = RemoteChecks::Always;
    settings
}

#[tokio::test]
async fn the_preflight_of_a_v1_batch_asks_only_the_v1_api() {
    let api = TestApi::demo().await;
    refuse_v2(&api.sandbox);
    let dir = tempfile::tempdir().unwrap();
    let usdt_trx = v1_token_id("USDT", "TRX");
    // v1 has one minimum per coin (the sandbox's USDT: 10), and this Cwallet ID is nobody's.
    let extra = format!("v1-0005,{TRON_ADDRESS},5,,{usdt_trx}\nv1-0006,777777,20,,{usdt_trx}\n");
    let file = v1_batch(dir.path(), &extra);

    let report = check_file(&api.client, &v1_settings(), &file, Arc::new(NoKnownOrders))
        .await
        .expect("the preflight runs");
    let plan = &report.plan;
    assert_eq!(
        (plan.counts.payable, plan.counts.refused),
        (4, 2),
        "{:#?}",
        plan.problems
    );
    let row = |id: &str| plan.rows.iter().find(|r| r.order_id == id).expect("row");
    // The fee of USDT on POLYGON is in MATIC: resolved through the token list by its UUID.
    let polygon = row("v1-0002");
    assert_eq!(
        (
            polygon.coin.as_str(),
            polygon.chain.as_str(),
            polygon.fee.as_deref(),
            polygon.fee_coin.as_deref()
        ),
        ("USDT", "POLYGON", Some("0.0213814"), Some("MATIC"))
    );
    assert_eq!(row("v1-0001").receiver_gets.as_deref(), Some("11"));
    assert_eq!(row("v1-0003").chain, "CWALLET");
    assert_eq!(row("v1-0004").fee_coin.as_deref(), Some("XRP"));
    let Verdict::Refused { reasons } = &row("v1-0006").verdict else {
        panic!("an unknown Cwallet ID is refused")
    };
    assert!(
        reasons[0].contains("did not confirm the Cwallet ID \"777777\""),
        "{reasons:?}"
    );
    assert!(
        plan.problems
            .iter()
            .any(|p| p.line == Some(6) && p.message.contains("below the minimum of 10 USDT")),
        "{:#?}",
        plan.problems
    );
    // Balances come from /v1/assets: MATIC pays the POLYGON fee.
    let matic = plan.coins.iter().find(|c| c.coin == "MATIC").expect("MATIC totals");
    assert_eq!(
        (matic.fees.as_str(), matic.balance_before.as_str()),
        ("0.0213814", "5000")
    );
    let usdt = plan.coins.iter().find(|c| c.coin == "USDT").expect("USDT totals");
    assert_eq!((usdt.amount.as_str(), usdt.balance_before.as_str()), ("47", "1000000"));
    // Cwallet IDs were checked; addresses could not be, and the plan says so.
    let checks = &plan.remote_checks;
    assert!(checks.performed);
    assert_eq!((checks.addresses_checked, checks.cwallet_users_checked), (0, 2));
    assert!(
        checks.note.as_deref().is_some_and(|n| n.contains("no address check")),
        "{checks:?}"
    );

    // Not one v2 request: the token list, three fee quotes, one network list (for MATIC), the
    // balances and two users.
    assert_eq!(not_v1(&api.sandbox.stats()), []);
    let counts = api.client.request_counts();
    let expected = [
        ("v1/assets", 1),
        ("v1/check/user", 2),
        ("v1/coin/all", 1),
        ("v1/network/fee", 3),
        ("v1/token/chain", 1),
    ];
    assert_eq!(
        counts.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(report.preflight_requests, 8);
}

/// A config for v1 with short tracking delays and a generous rate.
fn v1_config(dir: &Path) -> PathBuf {
    let path = dir.join("ccpayout.toml");
    std::fs::write(
        &path,
        "[api]\nversion = \"v1\"\n[limits]\nrate_per_second = 200\nconcurrency = 8\ntrack_first_check_secs = 1\ntrack_max_interval_secs = 2\n",
    )
    .unwrap();
    path
}

/// The rows of the result JSON report of the only batch in `state`.
fn result_rows(state: &Path) -> Vec<Value> {
    let file = std::fs::read_dir(state.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".result.json"))
        .expect("a result report");
    let json: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    json["rows"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_pays_a_v1_batch_from_an_account_that_refuses_v2() {
    let api = TestApi::start_live(SandboxConfig {
        settle_delay: Duration::from_millis(300),
        ..SandboxConfig::default()
    })
    .await;
    refuse_v2(&api.sandbox);
    let dir = tempfile::tempdir().unwrap();
    let (state, config, file) = (
        dir.path().join("state"),
        v1_config(dir.path()),
        v1_batch(dir.path(), ""),
    );
    let out = run_ccpayout(
        &api,
        &[
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "submit",
            file.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("4 success"), "{stdout}");

    let ledger = api.sandbox.ledger();
    assert_eq!(ledger.payouts.len(), 4);
    for payout in &ledger.payouts {
        assert_eq!(payout.api, "v1", "{payout:?}");
        assert_eq!(ledger.payouts_for(&payout.order_id).len(), 1);
    }
    let rows = result_rows(&state);
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["status"] == "success"), "{rows:#?}");
    // Preflight, sends and tracking: nothing but v1.
    assert_eq!(not_v1(&api.sandbox.stats()), []);
}

#[test]
fn submit_with_the_built_in_sandbox_pays_a_v1_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (state, config, file) = (
        dir.path().join("state"),
        v1_config(dir.path()),
        v1_batch(dir.path(), ""),
    );
    // The sandbox runs in process (`--sandbox`); nothing of the host's environment leaks in.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccpayout"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "submit",
            file.to_str().unwrap(),
            "--sandbox",
        ])
        .env_remove("CCPAYOUT_CONFIG")
        .env_remove("CCPAYOUT_STATE_DIR")
        .env_remove("CCPAYOUT_API_BASE_URL")
        .env_remove("CCPAYOUT_APP_ID")
        .env_remove("CCPAYOUT_APP_SECRET")
        .env_remove("CCPAYOUT_APP_SECRET_FILE")
        .env_remove("RUST_LOG")
        .output()
        .expect("ccpayout runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("4 success"), "{stdout}");
    let rows = result_rows(&state);
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["status"] == "success"), "{rows:#?}");
    let coins: Vec<&str> = rows.iter().filter_map(|r| r["coin"].as_str()).collect();
    assert_eq!(coins, ["USDT", "USDT", "USDT", "XRP"]);
}
