//! `ccpayout retry` (issue 16): a finished batch's failed and rejected rows, and only those, as
//! a new batch file under `~r1` ids; that file, submitted, pays each of them once; the reports
//! of both batches name each other; a retry of the retry counts up to `~r2`; and the one
//! operator answers the same on the store and through a running daemon.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ccpayout::app::{Request, Verdict};
use ccpayout::config::Config;
use ccpayout::sandbox::{DEMO_FAILING_ADDRESS, SandboxConfig};
use serde_json::Value;

use crate::helpers::{TRON_ADDRESS, TestApi, command};
use crate::submit::{Run, paid_once, sandbox_config, submit, write_config};

/// A recipient that is paid (the failing one is `DEMO_FAILING_ADDRESS`).
const OK: &str = TRON_ADDRESS;

/// Runs the binary with `args` against the sandbox in `cwd`, with the state and config given.
fn ccpayout(api: &TestApi, state: &Path, config: &Path, cwd: &Path, args: &[&str]) -> Run {
    let mut all = vec![
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = command(api, &all).current_dir(cwd).output().expect("ccpayout runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// The one report file of batch `stem` (its name starts `stem-`) ending in `suffix`.
fn report(state: &Path, stem: &str, suffix: &str) -> PathBuf {
    std::fs::read_dir(state.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.strip_prefix(&format!("{stem}-"))
                .is_some_and(|rest| !rest.contains('-') && rest.ends_with(suffix))
        })
        .unwrap_or_else(|| panic!("no {suffix} report of {stem}"))
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The rows of a result JSON report by order_id.
fn rows_by_id(state: &Path, stem: &str) -> BTreeMap<String, Value> {
    json(&report(state, stem, ".result.json"))["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["order_id"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

/// A CSV file's records as maps from column to value.
fn csv_records(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_writes_exactly_the_failed_and_rejected_rows_and_that_file_pays_each_of_them_once() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    // An earlier batch, so that a row of the next one is a duplicate.
    let early = work.join("early.csv");
    std::fs::write(
        &early,
        format!("order_id,recipient,coin,chain,amount\ndup-0001,{OK},USDT,TRX,2\n"),
    )
    .unwrap();
    let run = submit(&api, &state, &config, &early);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);

    // One create is refused for good (rejected), three rows go to an address whose payouts
    // fail on chain (one of them with an id too long for a retry id), one row is refused by
    // validation, one is the duplicate, one is paid.
    let long_id = format!("pay-{}", "x".repeat(58));
    assert_eq!(long_id.len(), 62);
    api.sandbox
        .force_error("applyAppWithdrawToNetwork", 14015, "WithdrawToContractAddress", 1);
    let payroll = work.join("payroll.csv");
    std::fs::write(
        &payroll,
        format!(
            "order_id,recipient,coin,chain,amount,reference\n\
             pay-0001,{OK},USDT,TRX,3.50,first\n\
             pay-0002,{DEMO_FAILING_ADDRESS},USDT,TRX,4,\"second, with a comma\"\n\
             pay-0003,{OK},USDT,TRX,005,paid\n\
             pay-0004,{DEMO_FAILING_ADDRESS},USDT,TRX,6.25,\n\
             pay-0005,{OK},USDT,TRX,-1,refused\n\
             dup-0001,{OK},USDT,TRX,2,duplicate\n\
             {long_id},{DEMO_FAILING_ADDRESS},USDT,TRX,7,long\n"
        ),
    )
    .unwrap();
    let run = submit(&api, &state, &config, &payroll);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let original = rows_by_id(&state, "payroll");
    let status = |id: &str| original[id]["status"].as_str().unwrap().to_owned();
    assert_eq!(
        original.values().filter(|r| r["status"] == "rejected").count(),
        1,
        "{original:?}"
    );
    assert_eq!(
        (status("pay-0005"), status("dup-0001")),
        ("refused".into(), "duplicate".into())
    );
    let unpaid: BTreeSet<String> = original
        .iter()
        .filter(|(_, r)| r["status"] == "failed" || r["status"] == "rejected")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(unpaid.len(), 4, "{original:?}");
    assert!(unpaid.contains(&long_id) && !unpaid.contains("pay-0003"), "{unpaid:?}");
    let ledger = api.sandbox.ledger();
    let paid_before = paid_once(&ledger);

    // The retry file: every failed or rejected row but the one whose retry id would be too
    // long, which is named, and exit 1.
    let run = ccpayout(&api, &state, &config, &work, &["retry", "payroll"]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&long_id) && run.stdout.contains("65 characters"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("1 refused row ") && run.stdout.contains("1 duplicate row "),
        "{}",
        run.stdout
    );
    let retry_file = work.join("payroll.retry1.csv");
    assert!(
        run.stdout.contains("ccpayout check payroll.retry1.csv"),
        "{}",
        run.stdout
    );
    let written = csv_records(&retry_file);
    let retried: BTreeSet<String> = written.iter().map(|r| r["original_order_id"].clone()).collect();
    let mut expected = unpaid.clone();
    expected.remove(&long_id);
    assert_eq!(retried, expected);
    for row in &written {
        let was = &original[&row["original_order_id"]];
        assert_eq!(row["order_id"], format!("{}~r1", row["original_order_id"]));
        for column in ["recipient", "coin", "chain", "reference"] {
            assert_eq!(
                row[column].as_str(),
                was[column].as_str().unwrap_or(""),
                "{column}: {row:?}"
            );
        }
        // The amount is the exact text the store kept, never a number.
        assert_eq!(Some(row["amount"].as_str()), was["amount_sent"].as_str(), "{row:?}");
    }
    let header = std::fs::read_to_string(&retry_file).unwrap();
    assert!(
        header.starts_with("order_id,recipient,coin,chain,amount,merchant_pays_fee,reference,original_order_id\n"),
        "{header}"
    );
    // Never over an existing file.
    let before = std::fs::read(&retry_file).unwrap();
    let run = ccpayout(&api, &state, &config, &work, &["retry", "payroll"]);
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("exists already"), "{}", run.stderr);
    assert_eq!(std::fs::read(&retry_file).unwrap(), before);

    // The retry file pays each of its rows once, under its new id; nothing of the original is
    // paid again.
    let run = submit(&api, &state, &config, &retry_file);
    assert!(matches!(run.code, Some(0 | 1)), "{}\n{}", run.stdout, run.stderr);
    let ledger = api.sandbox.ledger();
    let paid = paid_once(&ledger);
    for id in &expected {
        assert_eq!(ledger.payouts_for(&format!("{id}~r1")).len(), 1, "{id}~r1");
        assert_eq!(paid.get(id), paid_before.get(id), "{id} was not paid again");
    }
    assert_eq!(paid.len(), paid_before.len() + expected.len());
    let retry_rows = rows_by_id(&state, "payroll.retry1");
    assert_eq!(retry_rows.len(), expected.len());
    for (id, row) in &retry_rows {
        assert_eq!(row["original_order_id"], id.trim_end_matches("~r1"), "{row}");
        let payout = &ledger.payouts_for(id)[0];
        assert_eq!(row["record_id"].as_str(), Some(payout.record_id.as_str()));
    }

    // The reports link both ways: the retry names its origin, and the original's reports were
    // written again when the retry was taken in, naming it and each row's retry.
    let original_summary = json(&report(&state, "payroll", ".summary.json"));
    let retry_summary = json(&report(&state, "payroll.retry1", ".summary.json"));
    let (original_name, retry_name) = (
        original_summary["batch"]["name"].as_str().unwrap().to_owned(),
        retry_summary["batch"]["name"].as_str().unwrap().to_owned(),
    );
    assert_eq!(retry_summary["batch"]["retry_of"][0]["batch"], original_name.as_str());
    assert_eq!(retry_summary["batch"]["retry_of"][0]["orders"], expected.len());
    assert_eq!(original_summary["batch"]["retried_by"][0]["batch"], retry_name.as_str());
    assert_eq!(original_summary["batch"]["retried_by"][0]["orders"], expected.len());
    for (id, row) in rows_by_id(&state, "payroll") {
        let want = expected.contains(&id).then(|| format!("{id}~r1"));
        assert_eq!(row["retried_as"].as_str(), want.as_deref(), "{row}");
    }
    let csv = csv_records(&report(&state, "payroll", ".result.csv"));
    assert!(csv.iter().any(|r| r["retried_as"] == "pay-0002~r1"), "{csv:?}");
    let run = ccpayout(&api, &state, &config, &work, &["report", "payroll"]);
    assert!(
        run.stdout
            .contains(&format!("retried by batch {retry_name} ({} rows)", expected.len())),
        "{}",
        run.stdout
    );
    let run = ccpayout(&api, &state, &config, &work, &["status", "payroll.retry1"]);
    assert!(
        run.stdout.contains(&format!("retry of batch {original_name}")),
        "{}",
        run.stdout
    );

    // The original again: its retried rows are left to their retry; only the long one remains.
    let run = ccpayout(
        &api,
        &state,
        &config,
        &work,
        &["retry", "payroll", "--out", "again.csv"],
    );
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("nothing to retry") && run.stderr.contains("retried already (3"),
        "{}",
        run.stderr
    );
    assert!(!work.join("again.csv").exists());

    // A hand-made second retry of a row that has one is refused by check, naming the first.
    let second = work.join("second.csv");
    std::fs::write(
        &second,
        format!("order_id,recipient,coin,chain,amount,original_order_id\npay-0002-again,{OK},USDT,TRX,4,pay-0002\n"),
    )
    .unwrap();
    let run = ccpayout(&api, &state, &config, &work, &["check", second.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("retried already by \"pay-0002~r1\""), "{said}");

    // The retry of the retry: the rows that failed again count up to ~r2.
    let failed_again: BTreeSet<String> = retry_rows
        .iter()
        .filter(|(_, r)| r["status"] == "failed" || r["status"] == "rejected")
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!failed_again.is_empty(), "the failing address fails every time");
    let run = ccpayout(&api, &state, &config, &work, &["retry", "payroll.retry1"]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let second_retry = csv_records(&work.join("payroll.retry2.csv"));
    let pairs: BTreeSet<(String, String)> = second_retry
        .iter()
        .map(|r| (r["order_id"].clone(), r["original_order_id"].clone()))
        .collect();
    let want: BTreeSet<(String, String)> = failed_again
        .iter()
        .map(|id| (id.replace("~r1", "~r2"), id.clone()))
        .collect();
    assert_eq!(pairs, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_or_json_lines_batch_is_retried_in_its_own_format() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), write_config(dir.path(), ""));
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    let json_batch = work.join("weekly.json");
    std::fs::write(
        &json_batch,
        format!(
            r#"{{"orders": [
  {{"order_id": "wk-0001", "recipient": "{OK}", "coin": "USDT", "chain": "TRX", "amount": "2.5", "payee": "emp-1"}},
  {{"order_id": "wk-0002", "recipient": "{DEMO_FAILING_ADDRESS}", "coin": "USDT", "chain": "TRX", "amount": "3", "merchant_pays_fee": true, "payee": "emp-2"}}
]}}"#
        ),
    )
    .unwrap();
    let lines_batch = work.join("daily.jsonl");
    std::fs::write(
        &lines_batch,
        format!(
            "{{\"order_id\": \"dy-0001\", \"recipient\": \"{DEMO_FAILING_ADDRESS}\", \"coin\": \"USDT\", \"chain\": \"TRX\", \"amount\": \"2.75\"}}\n\
             {{\"order_id\": \"dy-0002\", \"recipient\": \"{OK}\", \"coin\": \"USDT\", \"chain\": \"TRX\", \"amount\": \"2\"}}\n"
        ),
    )
    .unwrap();
    for file in [&json_batch, &lines_batch] {
        let run = submit(&api, &state, &config, file);
        assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    }

    // A name for another format is refused before anything is written.
    let run = ccpayout(
        &api,
        &state,
        &config,
        &work,
        &["retry", "weekly", "--out", "weekly-again.csv"],
    );
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("use a .json name"), "{}", run.stderr);

    let run = ccpayout(
        &api,
        &state,
        &config,
        &work,
        &["retry", "weekly", "--out", "weekly-again.json"],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let document = json(&work.join("weekly-again.json"));
    assert_eq!(
        document,
        serde_json::json!({"orders": [{
            "order_id": "wk-0002~r1",
            "recipient": DEMO_FAILING_ADDRESS,
            "coin": "USDT",
            "chain": "TRX",
            "amount": "3",
            "merchant_pays_fee": "true",
            "payee": "emp-2",
            "original_order_id": "wk-0002"
        }]})
    );
    let run = ccpayout(&api, &state, &config, &work, &["retry", "daily"]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let text = std::fs::read_to_string(work.join("daily.retry1.jsonl")).expect(&run.stdout);
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(
        (
            lines[0]["order_id"].as_str(),
            lines[0]["original_order_id"].as_str(),
            lines[0]["amount"].as_str()
        ),
        (Some("dy-0001~r1"), Some("dy-0001"), Some("2.75"))
    );

    // Both files are batch files like any other: submitted, each row is paid once.
    for file in [work.join("weekly-again.json"), work.join("daily.retry1.jsonl")] {
        let run = submit(&api, &state, &config, &file);
        assert_eq!(run.code, Some(1), "they fail again: {}\n{}", run.stdout, run.stderr);
    }
    let ledger = api.sandbox.ledger();
    paid_once(&ledger);
    for id in ["wk-0002~r1", "dy-0001~r1"] {
        assert_eq!(ledger.payouts_for(id).len(), 1, "{id}");
    }
    assert_eq!(
        rows_by_id(&state, "weekly-again")["wk-0002~r1"]["original_order_id"],
        "wk-0002"
    );
}

/// A copy of the state directory the previous release wrote (see `upgrade.rs`).
fn copy_of_fixture(to: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-0.1.0");
    std::fs::create_dir_all(to).unwrap();
    for name in ["ccpayout.redb", "audit.jsonl"] {
        std::fs::copy(fixture.join(name), to.join(name)).unwrap();
    }
}

fn daemon_config(dir: &Path, api: &TestApi) -> Config {
    let path = dir.join("daemon.toml");
    std::fs::write(&path, "[daemon]\ndrain_secs = 10\nmetrics_listen = \"\"\n").unwrap();
    let env = api.env();
    Config::load(Some(&path), &|key| {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    })
    .expect("the config loads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_answers_the_same_on_the_store_and_through_the_daemon_and_reads_an_older_store() {
    let api = TestApi::start_live(SandboxConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), &api);
    let (offline_dir, live_dir) = (dir.path().join("state-a"), dir.path().join("state-b"));
    copy_of_fixture(&offline_dir);
    copy_of_fixture(&live_dir);
    let requests = [
        // Done, with one order failed on chain, one refused row.
        Request::Retry { batch: "mixed".into() },
        // Done, everything paid.
        Request::Retry {
            batch: "payroll".into(),
        },
        // Waiting for approval: three orders not final.
        Request::Retry { batch: "bonus".into() },
        Request::Retry {
            batch: "no-such-batch".into(),
        },
    ];

    let (offline, live) = crate::operator::both_ways(&api, &config, &offline_dir, &live_dir, &requests).await;

    let same_place = |text: &str| text.replace(live_dir.to_str().unwrap(), offline_dir.to_str().unwrap());
    for ((request, offline), live) in requests.iter().zip(&offline).zip(&live) {
        assert_eq!(offline.verdict, live.verdict, "{request:?}");
        assert_eq!(offline.text, same_place(&live.text), "{request:?}");
        assert_eq!(offline.retry, live.retry, "{request:?}");
    }
    let verdicts: Vec<Verdict> = offline.iter().map(|r| r.verdict).collect();
    assert_eq!(
        verdicts,
        [Verdict::Done, Verdict::Done, Verdict::Refused, Verdict::Failed]
    );

    // The failed order of the older release's batch, under its retry id, with the columns it
    // had (its refused row and its successes are not retried).
    let file = offline[0].retry.as_ref().expect("a retry file");
    assert_eq!(file.file_name, "mixed.retry1.csv");
    assert_eq!(file.format, "CSV");
    let mut bytes = Vec::new();
    ccpayout::batch::retry::write_rows(file.format().unwrap(), &file.rows, &mut bytes).unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        format!(
            "order_id,recipient,coin,chain,amount,merchant_pays_fee,reference,original_order_id\n\
             mixed-002~r1,{DEMO_FAILING_ADDRESS},USDT,TRX,30,false,fails on chain,mixed-002\n"
        )
    );
    assert!(
        offline[0].text.contains("1 refused row (fix them"),
        "{}",
        offline[0].text
    );
    assert!(
        offline[1]
            .text
            .contains("nothing to retry: no order failed or was rejected")
            && offline[1].retry.is_none(),
        "{}",
        offline[1].text
    );
    assert!(
        offline[2].text.contains("3 of its orders are not final yet") && offline[2].retry.is_none(),
        "{}",
        offline[2].text
    );
}
