//! Batch mode (`withdraw_mode = "batch"`, issue 15): the real `ccpayout` binary pays network rows
//! through CCPayment's batch withdrawals against a sandbox on loopback, exactly once, under the
//! readings of what CCPayment does not document (R14) and with replies lost after commit.
//!
//! Every proof is from the sandbox's ledger (payouts by ccpayout's order_id: a task's remark, a
//! single withdrawal's orderId) and from ccpayout's own store and reports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ccpayout::model::bundle::BundlePhase;
use ccpayout::model::record::BatchState;
use ccpayout::model::state::StateKind;
use ccpayout::report::ReportPaths;
use ccpayout::sandbox::{DEMO_FAILING_ADDRESS, Faults, Ledger, LedgerPayout, Readings, SandboxConfig};
use ccpayout::store::Store;
use serde_json::Value;

use crate::helpers::TestApi;
use crate::survive::{Run, ccpayout, sandbox, submit, tail, write_config};

const TRON: [&str; 3] = [
    "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K",
    "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr",
    "TVqoGi64Ad2mSiPNsqVnqB2VkLGi7Mx1vq",
];
const EVM: [&str; 2] = [
    "0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d",
    "0x09a939da0a61353314b90d4bdcc7d7450c847008",
];

/// The `[api]` lines of batch mode with `delay` seconds before a confirmed batch runs, and the
/// `[batch]` default that lets rows into batches (a task cannot say who pays the fee).
fn batch_mode(delay: u64) -> String {
    format!(
        "withdraw_mode = \"batch\"\nbatch_confirm_delay_secs = {delay}\n[batch]\ndefault_merchant_pays_fee = true\n"
    )
}

/// A batch over USDT on TRX, POLYGON and BSC, with a Cwallet row every tenth and, when
/// `failing`, a row to the sandbox's always-failing address.
fn write_rows(dir: &Path, name: &str, prefix: &str, n: usize, failing: bool) -> (PathBuf, Vec<String>) {
    let mut text = String::from("order_id,recipient,coin,chain,amount\n");
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i:04}");
        let (to, chain) = match i % 10 {
            9 => ("9558861", "CWALLET"),
            0..=3 => (TRON[i % 3], "TRX"),
            4..=6 => (EVM[i % 2], "POLYGON"),
            _ => (EVM[i % 2], "BSC"),
        };
        let to = if failing && i == 1 { DEMO_FAILING_ADDRESS } else { to };
        text.push_str(&format!("{id},{to},USDT,{chain},{}.5\n", 12 + i % 7));
        ids.push(id);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    (path, ids)
}

/// Payouts in the ledger by ccpayout's order_id.
fn by_ref(ledger: &Ledger) -> BTreeMap<&str, Vec<&LedgerPayout>> {
    let mut out: BTreeMap<&str, Vec<&LedgerPayout>> = BTreeMap::new();
    for p in &ledger.payouts {
        out.entry(p.merchant_ref()).or_default().push(p);
    }
    out
}

/// The report rows of every batch in `state`, by order_id.
fn report_rows(state: &Path) -> BTreeMap<String, Value> {
    let store = Store::open(state).expect("the store opens after the run");
    let mut rows = BTreeMap::new();
    for batch in store.batches().unwrap() {
        let path = ReportPaths::new(&state.join("reports"), &batch.name).result_json;
        let json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for row in json["rows"].as_array().unwrap() {
            rows.insert(row["order_id"].as_str().unwrap().to_owned(), row.clone());
        }
    }
    rows
}

/// The proof of a finished run: every row of `ids` paid at most once (exactly once unless it is
/// `failed_ok`, which must be reported failed), nothing else paid, every batch done, and every
/// report row equal to the ledger — a task's record id, tx id and CCPayment orderId included.
fn assert_paid_once(api: &TestApi, run: &Run, state: &Path, ids: &[String], expect_failed: &[&str]) {
    let ledger = api.sandbox.ledger();
    let paid = by_ref(&ledger);
    let twice: Vec<(&str, usize)> = paid
        .iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|(id, p)| (*id, p.len()))
        .collect();
    assert!(
        twice.is_empty(),
        "rows paid more than once: {twice:?}\n{}",
        tail(&run.stderr)
    );
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let stray: Vec<&&str> = paid.keys().filter(|id| !wanted.contains(**id)).collect();
    assert!(stray.is_empty(), "payouts for rows not in the batch: {stray:?}");
    let unpaid: Vec<&&str> = wanted.iter().filter(|id| !paid.contains_key(**id)).collect();
    assert!(unpaid.is_empty(), "rows never paid: {unpaid:?}\n{}", tail(&run.stderr));

    let store = Store::open(state).unwrap();
    for batch in store.batches().unwrap() {
        assert_eq!(batch.state, BatchState::Done, "batch {} is not done", batch.name);
        for bundle in store.bundles(batch.batch_id.as_str()).unwrap() {
            assert!(bundle.phase.is_final(), "bundle {}: {:?}", bundle.id, bundle.phase);
        }
    }
    drop(store);
    let rows = report_rows(state);
    assert_eq!(rows.len(), ids.len(), "report rows");
    for (id, row) in &rows {
        let payout = paid[id.as_str()][0];
        let expected = if expect_failed.contains(&id.as_str()) {
            "failed"
        } else {
            "success"
        };
        assert_eq!(row["status"], expected, "{row}");
        assert_eq!(
            payout.status.as_str(),
            if expected == "success" { "Success" } else { "Failed" },
            "{id}"
        );
        assert_eq!(
            row["record_id"].as_str(),
            Some(payout.record_id.as_str()),
            "{id}: {row}"
        );
        if payout.is_batch_task() {
            assert_eq!(
                row["batch_order_id"].as_str(),
                Some(payout.batch_order_id.as_str()),
                "{row}"
            );
            assert_eq!(row["task_seq"].as_str(), Some(payout.seq.to_string().as_str()), "{row}");
            assert_eq!(
                row["ccpayment_order_id"].as_str(),
                Some(payout.order_id.as_str()),
                "{row}"
            );
            if !payout.tx_id.is_empty() {
                assert_eq!(row["tx_id"].as_str(), Some(payout.tx_id.as_str()), "{row}");
            }
        } else {
            assert!(
                row.get("batch_order_id").is_none_or(Value::is_null),
                "a single create: {row}"
            );
        }
    }
}

/// The acceptance example: the 500-row affiliate file over TRX, POLYGON and BSC with ten Cwallet
/// rows is paid exactly once in batch mode, in at most 0.1 API requests per order counted by the
/// sandbox (preflight, batch requests, the Cwallet creates and their tracking all included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_affiliate_example_is_paid_once_in_at_most_a_tenth_of_a_request_per_order() {
    let api = TestApi::start_live(SandboxConfig {
        settle_delay: Duration::from_millis(300),
        batch_task_interval: Duration::from_millis(5),
        ..SandboxConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), &batch_mode(0)));
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/affiliates-500.jsonl");
    let ids: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["order_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 500);

    let run = submit(&api, dir.path(), &state, &config, &file).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, tail(&run.stderr));
    assert_paid_once(&api, &run, &state, &ids, &[]);
    let ledger = api.sandbox.ledger();
    let tasks = ledger.payouts.iter().filter(|p| p.is_batch_task()).count();
    assert_eq!(tasks, 490, "every network row went in a batch");
    let batches: BTreeSet<&str> = ledger
        .payouts
        .iter()
        .map(|p| p.batch_order_id.as_str())
        .filter(|b| !b.is_empty())
        .collect();
    assert_eq!(batches.len(), 3, "one batch per chain: {batches:?}");

    let stats = api.sandbox.stats();
    let requests: u64 = stats.requests.iter().map(|r| r.count).sum();
    let per_order = requests as f64 / 500.0;
    assert!(
        per_order <= 0.1,
        "{requests} requests for 500 orders ({per_order:.3} per order): {:?}",
        stats.requests
    );
    assert!(
        run.stdout.contains("batch withdrawals"),
        "the plan shows the grouping:\n{}",
        run.stdout
    );
}

/// Lost replies to apply, append and confirm (40 % of them dropped after commit), against the
/// readings that would pay twice if ccpayout sent blind: a reused batchOrderId makes a second
/// batch (which a confirm would run too), a repeated seq is stored and paid, and lookups lag a
/// second behind. Plus a row that fails on chain: reported failed, as the ledger says.
///
/// Guards the bundle's resolution by lookup (`engine::bundle`, `look_up` and `verify`): a
/// re-apply or append on a lost reply's word alone pays tasks twice here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_replies_under_the_readings_that_could_pay_twice_pay_each_row_once() {
    for seed in [3, 11] {
        let faults = Faults {
            drop_after_commit: 0.4,
            ..Faults::default()
        };
        let api = sandbox("batch-id-reuse,batch-seq-unchecked,lookup-lag=1000", faults, seed).await;
        let dir = tempfile::tempdir().unwrap();
        let (state, config) = (dir.path().join("state"), write_config(dir.path(), &batch_mode(0)));
        let (file, ids) = write_rows(dir.path(), "lost.csv", &format!("lost{seed}"), 40, true);
        let run = submit(&api, dir.path(), &state, &config, &file).await;
        let failed = format!("lost{seed}-0001");
        assert_paid_once(&api, &run, &state, &ids, &[failed.as_str()]);
        assert_eq!(run.code, Some(1), "a failed row: exit 1\n{}", tail(&run.stderr));
        let audit = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
        assert!(
            audit.contains("(unknown → open)")
                || audit.contains("(open → open)")
                || audit.contains("(confirming → confirmed)"),
            "seed {seed}: no lost reply was resolved by a lookup"
        );
    }
}

/// Every create's reply is lost after commit, and an apply that loses its reply kept only the
/// first half of its tasks (`batch-partial-apply`): each batch is found by lookup, its task list
/// read, the missing tasks confirmed absent and appended — only those — and the batch confirmed
/// once every task is there. Every row paid once.
///
/// Guards `verify` and `append` in `engine::bundle`: appending tasks that are present (or
/// re-applying) pays twice under `batch-seq-unchecked`; confirming before the missing tasks are
/// in leaves rows unpaid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_apply_is_completed_by_appending_only_the_missing_tasks() {
    let faults = Faults {
        drop_after_commit: 1.0,
        ..Faults::default()
    };
    let api = sandbox("batch-partial-apply,batch-seq-unchecked", faults, 9).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), &batch_mode(0)));
    let (file, ids) = write_rows(dir.path(), "partial.csv", "partial", 20, false);
    let run = submit(&api, dir.path(), &state, &config, &file).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, tail(&run.stderr));
    assert_paid_once(&api, &run, &state, &ids, &[]);
    let stats = api.sandbox.stats();
    assert!(
        stats.to_endpoint("appendBatchWithdraw") >= 1,
        "no task was appended: {:?}",
        stats.requests
    );
    assert_eq!(stats.to_endpoint("applyBatchWithdraw"), 3, "each batch applied once");
}

/// A batch CCPayment's review rejects (`batch-review-reject`): nothing is paid, every task's row
/// is reported failed with CCPayment's reason, and `status` shows the batch `Rejected` with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_review_rejects_is_reported_failed_with_the_reason() {
    let api = sandbox("batch-review-reject,batch-review=1500", Faults::default(), 13).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), &batch_mode(0)));
    let (file, ids) = write_rows(dir.path(), "rejected.csv", "rejected", 10, false);
    let run = submit(&api, dir.path(), &state, &config, &file).await;
    assert_eq!(
        run.code,
        Some(1),
        "rows failed: exit 1\n{}\n{}",
        run.stdout,
        tail(&run.stderr)
    );
    let ledger = api.sandbox.ledger();
    assert!(
        ledger.payouts.iter().all(|p| !p.is_batch_task()),
        "a task of a rejected batch ran"
    );
    let rows = report_rows(&state);
    for id in &ids {
        let row = &rows[id];
        if row["chain"] == "CWALLET" {
            assert_eq!(row["status"], "success", "{row}");
        } else {
            assert_eq!(row["status"], "failed", "{row}");
            let message = row["error_message"].as_str().unwrap_or_default();
            assert!(message.contains("rejected by risk review"), "{row}");
        }
    }
    let name = Store::open(&state).unwrap().batches().unwrap()[0].name.clone();
    let status = ccpayout(&api, dir.path(), &state, &config, &["status", &name]).await;
    assert!(
        status.stdout.contains("CCPayment: Rejected") && status.stdout.contains("reason: rejected by risk review"),
        "{}",
        status.stdout
    );
}

/// `cancel` within the confirm's delay aborts the batch's tasks: nothing is paid, the rows are
/// reported cancelled, and `status` names the cancelled seqs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_within_the_confirm_delay_aborts_every_task() {
    let api = TestApi::start_live(SandboxConfig {
        settle_delay: Duration::from_millis(300),
        ..SandboxConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), &batch_mode(3600)));
    let (file, ids) = write_rows(dir.path(), "late.csv", "late", 9, false);
    let file_arg = file.to_str().unwrap();

    let first = ccpayout(&api, dir.path(), &state, &config, &["submit", file_arg, "--no-wait"]).await;
    assert!(
        first.code == Some(0) || first.code == Some(1),
        "submit --no-wait\n{}\n{}",
        first.stdout,
        tail(&first.stderr)
    );
    {
        let store = Store::open(&state).unwrap();
        let batch = &store.batches().unwrap()[0];
        let bundles = store.bundles(batch.batch_id.as_str()).unwrap();
        assert_eq!(bundles.len(), 3, "TRX, POLYGON and BSC");
        assert!(bundles.iter().all(|b| b.phase == BundlePhase::Confirmed), "{bundles:?}");
    }
    let name = Store::open(&state).unwrap().batches().unwrap()[0].name.clone();
    let cancel = ccpayout(&api, dir.path(), &state, &config, &["cancel", &name]).await;
    assert_eq!(cancel.code, Some(0), "{}\n{}", cancel.stdout, cancel.stderr);

    let resumed = submit(&api, dir.path(), &state, &config, &file).await;
    assert_eq!(
        resumed.code,
        Some(1),
        "rows cancelled: exit 1\n{}",
        tail(&resumed.stderr)
    );
    let ledger = api.sandbox.ledger();
    let paid: Vec<&str> = ledger
        .payouts
        .iter()
        .filter(|p| p.is_batch_task())
        .map(LedgerPayout::merchant_ref)
        .collect();
    assert!(paid.is_empty(), "a task ran despite the abort: {paid:?}");
    let rows = report_rows(&state);
    for id in &ids {
        let row = &rows[id];
        let expected = if row["chain"] == "CWALLET" {
            "success"
        } else {
            "cancelled"
        };
        assert_eq!(row["status"], expected, "{row}");
    }
    let status = ccpayout(&api, dir.path(), &state, &config, &["status", &name]).await;
    assert!(status.stdout.contains("cancelled seqs ["), "{}", status.stdout);
    assert!(status.stdout.contains("batch withdrawals (3)"), "{}", status.stdout);
}

/// An account without the batch routes (HTTP 404, `no-batch-withdraw`): each batch's apply is
/// answered 404, nothing is created, and its rows are paid by single creates, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_batch_routes_pays_the_rows_by_single_creates() {
    let api = sandbox("no-batch-withdraw", Faults::default(), 7).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), &batch_mode(0)));
    let (file, ids) = write_rows(dir.path(), "noroute.csv", "noroute", 12, false);
    let run = submit(&api, dir.path(), &state, &config, &file).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, tail(&run.stderr));
    assert_paid_once(&api, &run, &state, &ids, &[]);
    assert!(api.sandbox.ledger().payouts.iter().all(|p| !p.is_batch_task()));
    let store = Store::open(&state).unwrap();
    let batch = &store.batches().unwrap()[0];
    for bundle in store.bundles(batch.batch_id.as_str()).unwrap() {
        assert!(matches!(bundle.phase, BundlePhase::Refused { .. }), "{bundle:?}");
    }
    let counts = store.counts(Some(batch.batch_id.as_str())).unwrap();
    assert_eq!(counts.get(&StateKind::Success).copied(), Some(12));
}

/// A batch held in CCPayment's review (`batch-review`) and task statuses spelt `Success`: paid
/// once, and the audit trail shows the batch was seen `Reviewing`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_held_in_review_is_followed_to_its_end() {
    let api = TestApi::start_live(SandboxConfig {
        settle_delay: Duration::from_millis(300),
        readings: Readings::parse("batch-review=2500,task-status-success,batch-apply-idempotent").unwrap(),
        ..SandboxConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), &batch_mode(0)));
    let (file, ids) = write_rows(dir.path(), "review.csv", "review", 8, false);
    let run = submit(&api, dir.path(), &state, &config, &file).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, tail(&run.stderr));
    assert_paid_once(&api, &run, &state, &ids, &[]);
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    assert!(audit.contains("Reviewing"), "the review was never seen");
}
