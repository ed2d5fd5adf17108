//! ccpayout survives every reading of the API (issue 12; ccpayment-api.md §5): the real
//! `ccpayout submit` binary against a sandbox on loopback that takes one reading or several,
//! with the faults that make the reading matter, and every row paid exactly once.
//!
//! `readings.rs` shows what the sandbox does under each reading; these show what ccpayout does
//! about it. Each test proves from the sandbox's ledger (the ground truth: payouts per orderId)
//! and from ccpayout's own report and store (every row final, the counts and record ids equal to
//! the ledger). Each names in its doc comment the fix it guards; with that fix reverted it fails.
//!
//! The config is the one of `submit.rs`: request timeout 3 s and `not_found_confirm_secs = 3`,
//! so every lookup lag here (1000 ms) is well below the time an absence takes to be confirmed.
//! A run that does not finish is killed after [`RUN_LIMIT`] and the test fails saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ccpayout::model::ApiGeneration;
use ccpayout::model::record::BatchState;
use ccpayout::model::state::StateKind;
use ccpayout::report::ReportPaths;
use ccpayout::sandbox::demo::v1_token_id;
use ccpayout::sandbox::readings::PRE_DELISTING_COIN;
use ccpayout::sandbox::{AttemptOutcome, Faults, Ledger, Readings, SandboxConfig};
use ccpayout::store::Store;
use serde_json::Value;

use crate::helpers::{EVM_ADDRESS, TestApi, command, run_ccpayout};

/// Longest a `submit` may take here. The slowest case (lag, lost replies, confirmation) needs
/// about 10 s on a busy 2-core machine; a run that hangs (a reply that cannot be read, an order
/// that is never final) is stopped here.
const RUN_LIMIT: Duration = Duration::from_secs(45);

/// Valid TRON addresses the sandbox pays normally.
const TRON: [&str; 3] = [
    "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K",
    "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr",
    "TVqoGi64Ad2mSiPNsqVnqB2VkLGi7Mx1vq",
];

/// A sandbox on the real clock taking the readings `spec` names, with `faults` on withdrawal
/// creates and a short settle delay.
pub(crate) async fn sandbox(spec: &str, faults: Faults, seed: u64) -> TestApi {
    TestApi::start_live(SandboxConfig {
        settle_delay: Duration::from_millis(300),
        readings: Readings::parse(spec).expect("a reading"),
        faults,
        seed,
        ..SandboxConfig::default()
    })
    .await
}

/// The config of `submit.rs` (short tracking, 3 s timeout and confirmation), with `api` added
/// to its `[api]` table.
pub(crate) fn write_config(dir: &Path, api: &str) -> PathBuf {
    let path = dir.join("ccpayout.toml");
    std::fs::write(
        &path,
        format!(
            "[api]\nconnect_timeout_ms = 1000\nrequest_timeout_ms = 3000\n{api}\
             [limits]\nrate_per_second = 200\nconcurrency = 8\ntrack_first_check_secs = 1\ntrack_max_interval_secs = 2\n\
             not_found_confirm_secs = 3\n"
        ),
    )
    .unwrap();
    path
}

/// A batch file with `rows` (order_id, recipient, coin, chain, amount); on v1 each row also
/// names its token.
fn write_batch(
    dir: &Path,
    name: &str,
    rows: &[(String, &str, &str, &str, &str)],
    generation: ApiGeneration,
) -> PathBuf {
    let mut text = String::from("order_id,recipient,coin,chain,amount,token_id\n");
    for (id, recipient, coin, chain, amount) in rows {
        let token = match generation {
            ApiGeneration::V2 => String::new(),
            ApiGeneration::V1 => v1_token_id(coin, chain),
        };
        text.push_str(&format!("{id},{recipient},{coin},{chain},{amount},{token}\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `n` USDT payouts on TRX with ids `{prefix}-0000…`. 12 USDT clears every minimum, v1's one
/// per coin (10) included, after the 1 USDT fee (R7).
fn usdt_rows(prefix: &str, n: usize) -> Vec<(String, &'static str, &'static str, &'static str, &'static str)> {
    (0..n)
        .map(|i| (format!("{prefix}-{i:04}"), TRON[i % 3], "USDT", "TRX", "12"))
        .collect()
}

/// What one `submit` did.
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) took: Duration,
}

/// Runs `ccpayout submit FILE` to its end, or kills it after [`RUN_LIMIT`] and fails the test
/// naming the orders that were not final.
pub(crate) async fn submit(api: &TestApi, dir: &Path, state: &Path, config: &Path, file: &Path) -> Run {
    ccpayout(api, dir, state, config, &["submit", file.to_str().unwrap()]).await
}

/// Runs `ccpayout --config CONFIG --state-dir STATE ARGS…` to its end, or kills it after
/// [`RUN_LIMIT`] and fails the test naming the orders that were not final.
pub(crate) async fn ccpayout(api: &TestApi, dir: &Path, state: &Path, config: &Path, args: &[&str]) -> Run {
    let n = std::fs::read_dir(dir).unwrap().count();
    let (out_path, err_path) = (dir.join(format!("run-{n}.out")), dir.join(format!("run-{n}.err")));
    let mut full = vec![
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    full.extend_from_slice(args);
    let mut cmd = command(api, &full);
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap());
    let state = state.to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut child = cmd.spawn().expect("ccpayout starts");
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > RUN_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        let run = Run {
            code: status.and_then(|s| s.code()),
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
            took: started.elapsed(),
        };
        if status.is_none() {
            let pending = not_final(&state);
            panic!(
                "ccpayout submit did not finish within {} s; orders not final: {pending:?}\n--- stdout\n{}\n--- stderr\n{}",
                RUN_LIMIT.as_secs(),
                run.stdout,
                tail(&run.stderr)
            );
        }
        run
    })
    .await;
    match run {
        Ok(run) => run,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The last lines of a long log.
pub(crate) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The orders of `state` that are not final, with their states (read after the run stopped).
fn not_final(state: &Path) -> Vec<(String, String)> {
    let Ok(store) = Store::open(state) else {
        return vec![("(the store does not open)".into(), String::new())];
    };
    let mut out = Vec::new();
    for batch in store.batches().unwrap_or_default() {
        for order in store.batch_orders(batch.batch_id.as_str()).unwrap_or_default() {
            if !order.state.is_final() {
                out.push((order.order_id.to_string(), format!("{:?}", order.kind())));
            }
        }
    }
    out
}

/// Payouts per orderId in the ledger.
fn per_order(ledger: &Ledger) -> BTreeMap<&str, Vec<&ccpayout::sandbox::LedgerPayout>> {
    let mut out: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for p in &ledger.payouts {
        out.entry(p.order_id.as_str()).or_default().push(p);
    }
    out
}

/// The whole proof of one run: the run finished with exit 0; in the ledger every row of `ids`
/// was paid exactly once and nothing else was paid; in ccpayout's store every batch is done and
/// every order `Success` with the ledger's record id; every report row is `success` with that
/// record id. On v1 a record id comes only from the withdraw's own reply (bills do not carry
/// one), so a v1 row whose reply was lost may have none; any it has must be the ledger's.
fn assert_every_row_paid_once(api: &TestApi, run: &Run, state: &Path, ids: &[String], generation: ApiGeneration) {
    assert_eq!(
        run.code,
        Some(0),
        "submit failed\n{}\n{}",
        run.stdout,
        tail(&run.stderr)
    );
    let ledger = api.sandbox.ledger();
    let paid = per_order(&ledger);
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let twice: Vec<(&str, usize)> = paid
        .iter()
        .filter(|(_, ps)| ps.len() > 1)
        .map(|(id, ps)| (*id, ps.len()))
        .collect();
    assert!(
        twice.is_empty(),
        "orders paid more than once (orderId, payouts): {twice:?}"
    );
    let unpaid: Vec<&&str> = wanted.iter().filter(|id| !paid.contains_key(**id)).collect();
    assert!(unpaid.is_empty(), "rows never paid: {unpaid:?}");
    let stray: Vec<&&str> = paid.keys().filter(|id| !wanted.contains(**id)).collect();
    assert!(stray.is_empty(), "payouts for orders not in the batch: {stray:?}");

    let same_record = |id: &str, record: Option<&str>| -> bool {
        let ledger_record = paid[id][0].record_id.as_str();
        match record.filter(|r| !r.is_empty()) {
            Some(r) => r == ledger_record,
            None => generation == ApiGeneration::V1,
        }
    };

    let store = Store::open(state).expect("the store opens after the run");
    let batches = store.batches().unwrap();
    assert!(!batches.is_empty());
    let mut rows = Vec::new();
    for batch in &batches {
        assert_eq!(batch.state, BatchState::Done, "batch {} is not done", batch.name);
        let counts = store.counts(Some(batch.batch_id.as_str())).unwrap();
        let success = counts.get(&StateKind::Success).copied().unwrap_or(0);
        assert_eq!(
            counts.values().sum::<u64>(),
            success,
            "batch {}: not every order succeeded: {counts:?}",
            batch.name
        );
        for order in store.batch_orders(batch.batch_id.as_str()).unwrap() {
            let id = order.order_id.to_string();
            assert!(
                same_record(&id, order.record_id.as_deref()),
                "{id}: the store keeps record {:?}, the ledger paid {}",
                order.record_id,
                paid[id.as_str()][0].record_id
            );
        }
        let path = ReportPaths::new(&state.join("reports"), &batch.name).result_json;
        let json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        rows.extend(json["rows"].as_array().unwrap().iter().cloned());
    }
    drop(store);
    assert_eq!(rows.len(), ids.len(), "report rows");
    for row in &rows {
        let id = row["order_id"].as_str().unwrap_or_default();
        assert!(wanted.contains(id), "report row for an order not in the batch: {row}");
        assert_eq!(row["status"], "success", "{row}");
        assert!(
            same_record(id, row["record_id"].as_str()),
            "{id}: reported record {}, the ledger paid {}",
            row["record_id"],
            paid[id][0].record_id
        );
    }
}

/// Create attempts the sandbox answered with `fault`.
fn faults_of(ledger: &Ledger, fault: &str) -> Vec<String> {
    ledger
        .attempts
        .iter()
        .filter(|a| matches!(&a.outcome, AttemptOutcome::Fault { fault: f } if f == fault))
        .map(|a| a.order_id.clone())
        .collect()
}

fn ids_of(rows: &[(String, &str, &str, &str, &str)]) -> Vec<String> {
    rows.iter().map(|r| r.0.clone()).collect()
}

/// R2 + R3 on v2: lookups lag 1 s behind creates and a reused orderId is paid again, while 30 %
/// of the create replies are lost after commit. A lost reply is looked up within the lag, told
/// 11003, and must not be sent again on that word alone.
///
/// Guards the NotFound confirmation (`Engine::absent` in src/engine/reconcile.rs: two lookups
/// and `not_found_confirm_secs` since the send): it fails, with orders paid twice, if a single
/// 11003 is taken as absence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_with_lookup_lag_and_no_order_uniqueness_pays_every_lost_reply_once() {
    let faults = Faults {
        drop_after_commit: 0.3,
        ..Faults::default()
    };
    let api = sandbox("lookup-lag=1000,no-order-uniqueness", faults, 21).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let rows = usdt_rows("lag2", 30);
    let file = write_batch(dir.path(), "lag2.csv", &rows, ApiGeneration::V2);

    let run = submit(&api, dir.path(), &state, &config, &file).await;
    assert_every_row_paid_once(&api, &run, &state, &ids_of(&rows), ApiGeneration::V2);
    let ledger = api.sandbox.ledger();
    assert!(
        !faults_of(&ledger, "drop_after_commit").is_empty(),
        "the seed lost no reply"
    );
    assert!(
        api.sandbox.stats().with_code(11003) > 0,
        "no lookup fell inside the lag, so the reading was not exercised"
    );
}

/// R2 + R3 + R15: the same on a v1 account (`api.version = "v1"` against an account that
/// answers every v2 call with 11013): a lost v1 withdraw is absent from `bill/info` for 1 s, and
/// v1 pays a reused `merchant_order_id` again.
///
/// Guards the NotFound confirmation on v1 (`Engine::absent` in src/engine/reconcile.rs, reached
/// through `lookup`'s bill/info branch): it fails, with orders paid twice, if one bill/info
/// without the order is taken as absence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_with_lookup_lag_and_no_order_uniqueness_pays_every_lost_reply_once() {
    let faults = Faults {
        drop_after_commit: 0.3,
        ..Faults::default()
    };
    let api = sandbox("v1-only,lookup-lag=1000,no-order-uniqueness", faults, 22).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "version = \"v1\"\n");
    let state = dir.path().join("state");
    let rows = usdt_rows("lag1", 30);
    let file = write_batch(dir.path(), "lag1.csv", &rows, ApiGeneration::V1);

    let run = submit(&api, dir.path(), &state, &config, &file).await;
    assert_every_row_paid_once(&api, &run, &state, &ids_of(&rows), ApiGeneration::V1);
    let ledger = api.sandbox.ledger();
    assert!(ledger.payouts.iter().all(|p| p.api == "v1"));
    assert!(
        !faults_of(&ledger, "drop_after_commit").is_empty(),
        "the seed lost no reply"
    );
    let stats = api.sandbox.stats();
    assert!(stats.to_endpoint("v1/bill/info") > 0);
    assert_eq!(stats.with_code(11013), 0, "a v1 job asked v2: {stats:?}");
}

/// R1 `empty-record`: an unknown orderId answers 10000 with `"record":{}`. Creates are lost
/// before commit (nothing paid) and after commit (paid, reply lost), lookups lag 1 s and
/// orderIds are not unique. An order whose create never arrived is told "success, {}" at every
/// lookup: that must read as absence, be confirmed, and the order sent again and paid; one whose
/// reply was lost must still be paid only once.
///
/// Guards strict identity (`is_this_order` in src/engine/track.rs: only a record whose orderId
/// is the order's is the order) with the lenient reading of an empty record
/// (src/api/lenient.rs): if any success answer is taken as the order, the never-created orders
/// are followed for ever and the run does not finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_record_is_no_record_and_a_lost_create_is_resent_and_paid_once() {
    let faults = Faults {
        drop_before_commit: 0.25,
        drop_after_commit: 0.15,
        ..Faults::default()
    };
    let api = sandbox("empty-record,lookup-lag=1000,no-order-uniqueness", faults, 23).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let rows = usdt_rows("empty", 30);
    let file = write_batch(dir.path(), "empty.csv", &rows, ApiGeneration::V2);

    let run = submit(&api, dir.path(), &state, &config, &file).await;
    assert_every_row_paid_once(&api, &run, &state, &ids_of(&rows), ApiGeneration::V2);
    let ledger = api.sandbox.ledger();
    let lost = faults_of(&ledger, "drop_before_commit");
    assert!(!lost.is_empty(), "the seed lost no create before commit");
    // Each of those was sent again after its absence was confirmed: the payout came later.
    for id in &lost {
        let attempts = ledger.attempts_for(id);
        assert!(
            attempts
                .iter()
                .any(|a| matches!(a.outcome, AttemptOutcome::Created { .. })),
            "{id}: {attempts:?}"
        );
    }
    assert!(api.sandbox.stats().to_endpoint("getAppWithdrawRecord") > 0);
}

/// R1 `other-record`: an unknown orderId answers 10000 with the record of another order. With
/// lookups lagging 1 s, a lost reply (after commit) or a lost create (before commit) is looked
/// up and shown somebody else's payout.
///
/// Guards strict identity (`is_this_order` in src/engine/track.rs, the orderId comparison): if
/// a record for another orderId is taken as the order, the order takes that record's id and is
/// then never found again (the run does not finish), or is reported paid with another order's
/// record, or never paid at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_orders_record_is_not_the_order_and_nothing_is_paid_twice() {
    let faults = Faults {
        drop_after_commit: 0.3,
        drop_before_commit: 0.1,
        ..Faults::default()
    };
    let api = sandbox("other-record,lookup-lag=1000,no-order-uniqueness", faults, 24).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let rows = usdt_rows("other", 30);
    let file = write_batch(dir.path(), "other.csv", &rows, ApiGeneration::V2);

    let run = submit(&api, dir.path(), &state, &config, &file).await;
    assert_every_row_paid_once(&api, &run, &state, &ids_of(&rows), ApiGeneration::V2);
    let ledger = api.sandbox.ledger();
    assert!(
        !faults_of(&ledger, "drop_after_commit").is_empty(),
        "the seed lost no reply"
    );
    assert!(api.sandbox.stats().to_endpoint("getAppWithdrawRecord") > 0);
}

/// R4 `string-ids`: every number in every success reply's data is a string, for the preflight
/// (coin list, fees, balances, address checks), the creates, the lookups of lost replies and the
/// record lists. Two batches: the example payroll (every chain, Cwallet, memos, fees in another
/// coin) and 20 USDT rows with lost replies; each must finish, bounded by [`RUN_LIMIT`].
///
/// Guards the lenient decoding (src/api/lenient.rs, used by every reply type): if a numeric
/// string is refused where a number is expected, the preflight cannot read the coin list and
/// the batch never pays (or, in the tracking, never finishes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_ids_every_batch_finishes() {
    let faults = Faults {
        drop_after_commit: 0.3,
        ..Faults::default()
    };
    let api = sandbox("string-ids", faults, 25).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let payroll = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/payroll.csv"));
    let first = submit(&api, dir.path(), &state, &config, payroll).await;
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, tail(&first.stderr));

    let rows = usdt_rows("str", 20);
    let file = write_batch(dir.path(), "str.csv", &rows, ApiGeneration::V2);
    let second = submit(&api, dir.path(), &state, &config, &file).await;
    let mut ids: Vec<String> = (1..=20).map(|i| format!("payroll-2026-11-{i:03}")).collect();
    ids.extend(ids_of(&rows));
    assert_every_row_paid_once(&api, &second, &state, &ids, ApiGeneration::V2);
    assert!(
        !faults_of(&api.sandbox.ledger(), "drop_after_commit").is_empty(),
        "the seed lost no reply"
    );
    eprintln!(
        "string-ids: payroll in {:.1} s, 20 rows in {:.1} s",
        first.took.as_secs_f64(),
        second.took.as_secs_f64()
    );
}

/// R5 `empty-body-only`: the parameter-less calls (`getCoinList`, `getAppCoinAssetList`)
/// refuse a body of `{}` with 11000. The preflight must work and the example payroll pay.
///
/// Guards the empty body of parameter-less calls (`NoParams::Empty`, the client's default in
/// src/api/client.rs): sending `{}` makes the preflight fail on the coin list and nothing pays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_body_only_the_preflight_works_and_the_batch_pays() {
    let api = sandbox("empty-body-only", Faults::default(), 26).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let payroll = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/payroll.csv"));
    let run = submit(&api, dir.path(), &state, &config, payroll).await;
    let ids: Vec<String> = (1..=20).map(|i| format!("payroll-2026-11-{i:03}")).collect();
    assert_every_row_paid_once(&api, &run, &state, &ids, ApiGeneration::V2);
    let stats = api.sandbox.stats();
    assert!(stats.to_endpoint("getCoinList") > 0, "{stats:?}");
    assert_eq!(
        stats.with_code(11000),
        0,
        "a parameter-less call was refused: {stats:?}"
    );
}

/// R6 `pre-delisting`: USDC reports `Pre-delisting` (deposits suspended, withdrawals still
/// work). USDC rows must be payable and paid, next to USDT rows.
///
/// Guards the coin status rule (`CoinEntry::withdrawals_suspended` in src/batch/catalogue.rs:
/// only maintenance, a delisted coin or an unknown status holds rows): if every status but
/// `Normal` held rows, the USDC rows would be held and the plan not payable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_delisting_coin_is_payable_and_paid() {
    let api = sandbox("pre-delisting", Faults::default(), 27).await;
    let coins = api.client.get_coin_list().await.expect("coins");
    let usdc = coins
        .iter()
        .find(|c| c.symbol == PRE_DELISTING_COIN)
        .expect("USDC listed");
    assert_eq!(usdc.status, "Pre-delisting", "the reading is on");
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let mut rows: Vec<(String, &str, &str, &str, &str)> = (0..3)
        .map(|i| (format!("usdc-{i:04}"), EVM_ADDRESS, PRE_DELISTING_COIN, "POLYGON", "25"))
        .collect();
    rows.extend(usdt_rows("usdt", 2));
    let file = write_batch(dir.path(), "usdc.csv", &rows, ApiGeneration::V2);

    // The plan first: a held row would make `submit` wait for ever for the coin to resume.
    let check = run_ccpayout(
        &api,
        &["--config", config.to_str().unwrap(), "check", file.to_str().unwrap()],
    );
    let plan = String::from_utf8_lossy(&check.stdout);
    assert!(
        plan.contains("verdict: payable, all 5 rows"),
        "the USDC rows must be payable:\n{plan}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let run = submit(&api, dir.path(), &state, &config, &file).await;
    assert_every_row_paid_once(&api, &run, &state, &ids_of(&rows), ApiGeneration::V2);
    let ledger = api.sandbox.ledger();
    assert_eq!(
        ledger
            .payouts
            .iter()
            .filter(|p| p.coin_symbol == PRE_DELISTING_COIN)
            .count(),
        3
    );
}
