//! Engineering rule 11: an upgrade loses nothing. A state directory written by the previous
//! release (`tests/fixtures/store-0.1.0`, see its README) opens in this one: every record reads
//! back, the audit chain verifies, the operator's pause and the daily budget carry over, the
//! reports it writes are the ones that release wrote, and the batch it left waiting for approval
//! is approved and paid.

use std::path::{Path, PathBuf};

use ccpayout::model::ApiGeneration;
use ccpayout::model::record::{Approval, BatchState};
use ccpayout::model::state::StateKind;
use ccpayout::store::Store;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-0.1.0")
}

/// The fixture copied into a temporary state directory (tests never write into the fixture).
fn copy_of_fixture(dir: &Path) -> PathBuf {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    for name in ["ccpayout.redb", "audit.jsonl", "sandbox-account.json"] {
        std::fs::copy(fixture().join(name), state.join(name)).unwrap();
    }
    state
}

fn ccpayout(state: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    // The sandbox runs in process (`--sandbox`); nothing of the host's environment leaks in.
    let mut all = vec!["--state-dir", state.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccpayout"))
        .args(&all)
        .env_remove("CCPAYOUT_CONFIG")
        .env_remove("CCPAYOUT_STATE_DIR")
        .env_remove("CCPAYOUT_API_BASE_URL")
        .env_remove("CCPAYOUT_APP_ID")
        .env_remove("CCPAYOUT_APP_SECRET")
        .env_remove("CCPAYOUT_APP_SECRET_FILE")
        .env_remove("RUST_LOG")
        .output()
        .expect("ccpayout runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_store_written_by_the_previous_release_opens_with_everything_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = copy_of_fixture(dir.path());
    let store = Store::open(&state).expect("the previous release's store opens");
    assert_eq!(store.verify_audit().expect("the audit chain verifies"), 69);

    let mut batches = store.batches().unwrap();
    batches.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = batches.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        ["bonus-9da924350621", "mixed-fdc54155ab2c", "payroll-e8fb3ef69cb5"]
    );
    assert!(batches.iter().all(|b| b.api == ApiGeneration::V2));
    let (bonus, mixed, payroll) = (&batches[0], &batches[1], &batches[2]);
    assert_eq!(
        (bonus.state, payroll.state, mixed.state),
        (BatchState::Open, BatchState::Done, BatchState::Done)
    );
    // 0.1.0's approvals were anonymous and needed one approver.
    assert!(
        matches!(&bonus.approval, Approval::Required { needed: 1, given, .. } if given.is_empty()),
        "{:?}",
        bonus.approval
    );
    assert!(bonus.signer.is_none() && bonus.recipients.is_none() && bonus.maker_may_approve);
    assert_eq!(mixed.refused.len(), 1);
    assert_eq!(mixed.refused[0].order_id.as_deref(), Some("mixed-003"));

    let counts = store.counts(Some(&mixed.batch_id)).unwrap();
    assert_eq!(counts.get(&StateKind::Success), Some(&2));
    assert_eq!(counts.get(&StateKind::Failed), Some(&1));
    assert_eq!(
        store.counts(Some(&payroll.batch_id)).unwrap().get(&StateKind::Success),
        Some(&20)
    );
    assert_eq!(
        store
            .counts(Some(&bonus.batch_id))
            .unwrap()
            .get(&StateKind::AwaitingApproval),
        Some(&3)
    );
    let paid = store
        .order("mixed-001")
        .unwrap()
        .expect("an order of the previous release");
    assert_eq!(paid.call.amount(), "12.5");
    assert!(paid.record_id.is_some() && paid.tx_id.is_some());
    let fee = paid.fee.expect("its fee");
    assert_eq!((fee.coin_symbol.as_str(), fee.amount.as_str()), ("USDT", "1"));

    let pause = store.get(&ccpayout::engine::PAUSE).unwrap().expect("the stored pause");
    assert!(pause.kill_switch);
    assert_eq!(pause.reason.as_deref(), Some("fixture: paused by the previous release"));
    let (_day, used) = store
        .get(&ccpayout::engine::BUDGET)
        .unwrap()
        .expect("the budget counter");
    assert!(used > 0);
    let explorers = store
        .get(&ccpayout::app::ingest::EXPLORERS)
        .unwrap()
        .expect("explorers");
    assert!(explorers.contains_key("TRX"), "{explorers:?}");

    // The recipient registry, which 0.1.0 did not keep, is filled from its 22 successful
    // payouts when the store is first opened.
    let registry = store.recipients().unwrap();
    assert_eq!(registry.iter().map(|r| r.payouts).sum::<u64>(), 22, "{registry:?}");
    let destination = ccpayout::store::destination_of(&store.order("mixed-001").unwrap().unwrap());
    assert!(
        registry.iter().any(|r| r.destination == destination),
        "{destination:?} in {registry:?}"
    );
    drop(store);
    // Once: opening again adds nothing.
    let store = Store::open(&state).unwrap();
    assert_eq!(store.recipients().unwrap().iter().map(|r| r.payouts).sum::<u64>(), 22);
}

#[test]
fn the_previous_release_s_state_reports_the_same_and_pays_what_it_left_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let state = copy_of_fixture(dir.path());

    // The report of a finished batch, written again, is the one that release wrote.
    let (code, out, err) = ccpayout(&state, &["report", "mixed"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let written = std::fs::read_to_string(state.join("reports/mixed-fdc54155ab2c.result.csv")).unwrap();
    let expected = std::fs::read_to_string(fixture().join("mixed.result.csv")).unwrap();
    assert_eq!(written, expected);

    // The pause carried over; the batch waiting for approval is still waiting.
    let (code, out, _) = ccpayout(&state, &["status"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("PAUSED by an operator: fixture: paused by the previous release"),
        "{out}"
    );
    assert!(
        out.contains("bonus-9da924350621  Open  0/3 final") && out.contains("AWAITING APPROVAL"),
        "{out}"
    );

    // Paused, submit refuses before taking anything in.
    let config = fixture().join("approve.toml");
    let file = fixture().join("bonus.csv");
    let submit = [
        "--config",
        config.to_str().unwrap(),
        "submit",
        file.to_str().unwrap(),
        "--sandbox",
    ];
    let (code, _, err) = ccpayout(&state, &submit);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("paused by an operator"), "{err}");

    // Resumed and approved, the waiting batch is paid, against the same simulated account.
    assert_eq!(ccpayout(&state, &["resume"]).0, Some(0));
    let digest = {
        let store = Store::open(&state).unwrap();
        store.find_batch("bonus").unwrap().unwrap().plan_digest
    };
    let (code, out, err) = ccpayout(&state, &["approve", "bonus", "--digest", &digest]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = ccpayout(&state, &submit);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("batch bonus-9da924350621: 3 success"), "{out}");
    let (_, out, _) = ccpayout(&state, &["status"]);
    assert!(out.contains("bonus-9da924350621  Done  3/3 final  (3 success"), "{out}");
    assert!(
        out.contains("mixed-fdc54155ab2c  Done  3/3 final  (2 success, 1 failed"),
        "{out}"
    );
}
