//! The diff to last time: `check` compares a batch with the previous batch of its series (or
//! the one `--compare-with` names) in the store, and names every row added, removed, with its
//! amount changed beyond `policy.diff_warn_percent`, or paid to a payee's new destination.
//!
//! The real binary against a sandbox on loopback: a first batch is paid with `submit`, then the
//! next month's file is checked against the same state directory.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::helpers::TestApi;
use crate::submit::{ccpayout, sandbox_config, write_config};

const A: &str = "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K";
const B: &str = "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr";
const C: &str = "TVqoGi64Ad2mSiPNsqVnqB2VkLGi7Mx1vq";

/// A CSV of USDT payouts on TRX: (order_id, recipient, amount, payee).
fn batch(dir: &Path, name: &str, rows: &[(&str, &str, &str, &str)]) -> PathBuf {
    let mut text = String::from("order_id,recipient,coin,chain,amount,payee\n");
    for (id, to, amount, payee) in rows {
        text.push_str(&format!("{id},{to},USDT,TRX,{amount},{payee}\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// November's payroll, paid: four payees.
fn pay_november(api: &TestApi, dir: &Path, state: &Path, config: &Path) -> String {
    let november = batch(
        dir,
        "payroll-2026-11.csv",
        &[
            ("nov-1", A, "100", "emp-1"),
            ("nov-2", B, "50", "emp-2"),
            ("nov-3", C, "10", "emp-3"),
            ("nov-4", A, "7", "emp-4"),
        ],
    );
    let paid = ccpayout(api, state, config, &["submit", november.to_str().unwrap()]);
    assert_eq!(paid.code, Some(0), "{}\n{}", paid.stdout, paid.stderr);
    let status = ccpayout(api, state, config, &["status"]);
    status
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("payroll-2026-11-"))
        .unwrap_or_else(|| panic!("no batch in status: {}", status.stdout))
        .to_owned()
}

/// December's: emp-1 up 50 %, emp-2 up 10 %, emp-3 to another address, emp-4 gone, emp-5 new.
fn december(dir: &Path) -> PathBuf {
    batch(
        dir,
        "payroll-2026-12.csv",
        &[
            ("dec-1", A, "150", "emp-1"),
            ("dec-2", B, "55", "emp-2"),
            ("dec-3", B, "10", "emp-3"),
            ("dec-5", C, "20", "emp-5"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_rows_added_removed_changed_and_redirected_since_last_month() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let november = pay_november(&api, dir.path(), &state, &config);
    let december = december(dir.path());

    let text = ccpayout(&api, &state, &config, &["check", december.to_str().unwrap()]);
    // Information for the approver: the batch is as payable as without it.
    assert_eq!(text.code, Some(0), "{}\n{}", text.stdout, text.stderr);
    let out = &text.stdout;
    for needle in [
        format!("Compared with {november} ("),
        "rows: 4 then, 4 now: 1 added, 1 removed, 3 matched (0 unchanged)".to_owned(),
        "added (1):\n    line 5 dec-5: payee emp-5, 20 USDT".to_owned(),
        "removed (1):\n    was line 5 nov-4: payee emp-4, 7 USDT".to_owned(),
        "! amounts changed by more than 20% (1):\n    line 2 dec-1 (was nov-1): payee emp-1, 100 → 150 USDT (+50%)"
            .to_owned(),
        "amounts changed by 20% or less: 1".to_owned(),
        format!("! destinations changed (1):\n    line 4 dec-3 (was nov-3): payee emp-3, TRX {C} → TRX {B}"),
        "USDT 167 → 235 (+68; 4 → 4 rows)".to_owned(),
    ] {
        assert!(out.contains(&needle), "{needle:?} missing from:\n{out}");
    }
    // The small change is counted, not listed.
    assert!(!out.contains("dec-2 (was nov-2)"), "{out}");

    let json = ccpayout(&api, &state, &config, &["check", "--json", december.to_str().unwrap()]);
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let report = json.json();
    let diff = &report["diff"];
    assert_eq!(diff["previous"]["name"], november.as_str(), "{diff:#}");
    assert_eq!(diff["chosen_by"], "series");
    assert_eq!(diff["series"], "payroll");
    assert_eq!(diff["warn_percent"], "20");
    let counts = &diff["counts"];
    for (key, n) in [
        ("previous_rows", 4),
        ("rows", 4),
        ("matched", 3),
        ("unchanged", 0),
        ("added", 1),
        ("removed", 1),
        ("amount_changed", 1),
        ("amount_changed_within", 1),
        ("destination_changed", 1),
    ] {
        assert_eq!(counts[key], n, "{key}: {counts}");
    }
    assert_eq!(
        diff["added"],
        serde_json::json!([{"line": 5, "order_id": "dec-5", "key": "payee emp-5", "coin": "USDT", "amount": "20"}])
    );
    assert_eq!(
        diff["removed"],
        serde_json::json!([{"previous_line": 5, "previous_order_id": "nov-4", "key": "payee emp-4", "coin": "USDT", "amount": "7"}])
    );
    assert_eq!(
        diff["amount_changed"],
        serde_json::json!([{
            "line": 2, "order_id": "dec-1", "previous_order_id": "nov-1", "key": "payee emp-1",
            "coin": "USDT", "old": "100", "new": "150", "percent": "+50"
        }])
    );
    assert_eq!(
        diff["destination_changed"],
        serde_json::json!([{
            "line": 4, "order_id": "dec-3", "previous_order_id": "nov-3", "payee": "emp-3",
            "coin": "USDT", "old": format!("TRX {C}"), "new": format!("TRX {B}")
        }])
    );
    assert_eq!(
        diff["totals"],
        serde_json::json!([{
            "coin": "USDT", "previous_rows": 4, "rows": 4, "previous": "167", "now": "235", "delta": "+68"
        }])
    );

    // The diff is not part of what is approved: the digest is the one a check without any
    // earlier batch computes.
    let elsewhere = dir.path().join("no-state");
    let alone = ccpayout(
        &api,
        &elsewhere,
        &config,
        &["check", "--json", december.to_str().unwrap()],
    );
    let alone = alone.json();
    assert_eq!(alone["digest"], report["digest"]);
    assert!(report["digest"].is_string(), "{report}");
    assert_eq!(alone["diff"], Value::Null);
    assert!(
        alone["no_diff"]
            .as_str()
            .is_some_and(|why| why.contains("no state directory")),
        "{alone}"
    );

    // A threshold of 0 lists every change of amount.
    let every = write_config(dir.path(), "[policy]\ndiff_warn_percent = 0\n");
    let all = ccpayout(&api, &state, &every, &["check", "--json", december.to_str().unwrap()]).json();
    assert_eq!(all["diff"]["counts"]["amount_changed"], 2, "{}", all["diff"]);
    assert_eq!(all["diff"]["amount_changed"][1]["order_id"], "dec-2");
    assert_eq!(all["diff"]["amount_changed"][1]["percent"], "+10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_with_picks_a_batch_and_a_file_of_a_new_series_has_none() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let november = pay_november(&api, dir.path(), &state, &config);
    let bonus = batch(
        dir.path(),
        "bonus-2026-12.csv",
        &[("bonus-1", A, "100", "emp-1"), ("bonus-2", B, "5", "emp-9")],
    );

    // No batch of the series "bonus" yet: the diff says so, and the check is unchanged.
    let none = ccpayout(&api, &state, &config, &["check", bonus.to_str().unwrap()]);
    assert_eq!(none.code, Some(0), "{}\n{}", none.stdout, none.stderr);
    assert!(
        none.stdout
            .contains("Compared with: no earlier batch of the series \"bonus\""),
        "{}",
        none.stdout
    );
    let json = ccpayout(&api, &state, &config, &["check", "--json", bonus.to_str().unwrap()]).json();
    assert_eq!(json["diff"]["previous"], Value::Null, "{}", json["diff"]);
    assert_eq!(json["diff"]["series"], "bonus");

    // Named: November's payroll, by its name.
    let named = ccpayout(
        &api,
        &state,
        &config,
        &["check", "--json", "--compare-with", &november, bonus.to_str().unwrap()],
    );
    assert_eq!(named.code, Some(0), "{}", named.stderr);
    let diff = &named.json()["diff"];
    assert_eq!(diff["previous"]["name"], november.as_str(), "{diff}");
    assert_eq!(diff["chosen_by"], "compare_with");
    assert_eq!(diff["counts"]["matched"], 1, "{diff}");
    assert_eq!(diff["counts"]["unchanged"], 1, "{diff}");
    assert_eq!(diff["counts"]["added"], 1, "{diff}");
    assert_eq!(diff["counts"]["removed"], 3, "{diff}");
    assert_eq!(diff["added"][0]["order_id"], "bonus-2");

    // A batch the store does not have is an error that names it.
    let unknown = ccpayout(
        &api,
        &state,
        &config,
        &["check", "--compare-with", "payroll-1999", bonus.to_str().unwrap()],
    );
    assert_eq!(unknown.code, Some(2), "{}\n{}", unknown.stdout, unknown.stderr);
    assert!(unknown.stderr.contains("\"payroll-1999\""), "{}", unknown.stderr);

    // Without a store there is no diff, and the text says why.
    let bare = ccpayout(
        &api,
        &dir.path().join("empty"),
        &config,
        &["check", bonus.to_str().unwrap()],
    );
    assert_eq!(bare.code, Some(0), "{}", bare.stderr);
    assert!(bare.stdout.contains("no diff: no state directory"), "{}", bare.stdout);
}

/// Takes `rows` in as the daemon's intake does, from `inbox/processing/NAME`.
async fn take_in(
    api: &TestApi,
    store: &std::sync::Arc<ccpayout::store::Store>,
    inbox: &Path,
    name: &str,
    rows: &[(&str, &str, &str, &str)],
) -> Option<Box<ccpayout::batch::diff::BatchDiff>> {
    use ccpayout::app::{self, Ingested};
    let processing = inbox.join("processing");
    std::fs::create_dir_all(&processing).unwrap();
    let file = batch(&processing, name, rows);
    let config = ccpayout::config::Config::load(None, &|_| None).expect("defaults load");
    let now = ccpayout::util::clock::system().now_ms();
    match app::ingest(&api.client, &config, store, &file, now).await {
        Ok(Ingested::Created { diff, .. }) => diff,
        other => panic!("{name} was not stored: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_compares_with_the_last_batch_of_the_same_inbox_and_summarises_it() {
    let api = TestApi::demo().await;
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(ccpayout::store::Store::open(&dir.path().join("state")).unwrap());
    let (payroll, other) = (dir.path().join("payroll"), dir.path().join("other"));

    let first = take_in(
        &api,
        &store,
        &payroll,
        "payroll-2026-11.csv",
        &[("i-nov-1", A, "100", "emp-1")],
    )
    .await;
    let first = first.expect("a diff, even without a previous batch");
    assert!(first.previous.is_none(), "{first:?}");

    let second = take_in(
        &api,
        &store,
        &payroll,
        "payroll-2026-12.csv",
        &[("i-dec-1", B, "300", "emp-1"), ("i-dec-2", C, "5", "emp-2")],
    )
    .await
    .expect("a diff");
    let previous = second.previous.as_ref().expect("November's batch");
    assert!(previous.name.starts_with("payroll-2026-11-"), "{previous:?}");
    let summary = ccpayout::batch::render::diff(&second);
    for needle in [
        format!("Compared with {} (", previous.name),
        "1 added, 0 removed, 1 amount(s) changed by more than 20%, 1 destination(s) changed".to_owned(),
        "totals: USDT 100 → 305 (+205)".to_owned(),
        "! line 2 i-dec-1: payee emp-1, 100 → 300 USDT".to_owned(),
        format!("! line 2 i-dec-1: payee emp-1 now TRX {B} (was TRX {A})"),
    ] {
        assert!(summary.contains(&needle), "{needle:?} missing from:\n{summary}");
    }
    assert!(summary.lines().count() <= 6, "{summary}");

    // Another inbox (another job's) has its own history, even for a file of the same series.
    let elsewhere = take_in(
        &api,
        &store,
        &other,
        "payroll-2027-01.csv",
        &[("i-jan-1", A, "10", "emp-1")],
    )
    .await
    .expect("a diff");
    assert!(elsewhere.previous.is_none(), "{elsewhere:?}");
    assert!(
        ccpayout::batch::render::diff(&elsewhere).contains("no earlier batch of the series \"payroll\""),
        "{elsewhere:?}"
    );
}
