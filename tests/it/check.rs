//! `ccpayout check`: the malformed-input corpus, the example files, the hand-computed totals of
//! the payroll example, and the canonical-amount property.

use std::path::Path;
use std::sync::Arc;

use ccpayout::batch::plan::Verdict;
use ccpayout::batch::preflight::{AddressCheck, CheckError, CheckReport, RemoteChecks, check_file};
use ccpayout::batch::validate::NoKnownOrders;
use ccpayout::config::Config;
use ccpayout::sandbox::{Readings, SandboxConfig};
use rust_decimal::Decimal;

use crate::helpers::TestApi;

const HEADER: &str = "order_id,recipient,coin,chain,amount,memo,merchant_pays_fee,reference";
const TRON: &str = "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K";
const TRON_2: &str = "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr";
const EVM: &str = "0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d";
const XRP: &str = "rsGgQno3NYMPso4zJyzxijJCMTEgcQh6nT";

fn default_config() -> Config {
    Config::load(None, &|_| None).expect("defaults load")
}

async fn check_bytes(api: &TestApi, name: &str, bytes: &[u8]) -> Result<CheckReport, CheckError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    check_file(
        &api.client,
        &default_config().preflight_settings(),
        &path,
        Arc::new(NoKnownOrders),
    )
    .await
}

async fn check_path(api: &TestApi, path: &Path) -> CheckReport {
    check_file(
        &api.client,
        &default_config().preflight_settings(),
        path,
        Arc::new(NoKnownOrders),
    )
    .await
    .expect("check runs")
}

fn csv(rows: &[&str]) -> Vec<u8> {
    let mut text = String::from(HEADER);
    for row in rows {
        text.push('\n');
        text.push_str(row);
    }
    text.push('\n');
    text.into_bytes()
}

/// One hostile input and the problem it must produce: (line, field, words in the message).
struct Case {
    name: &'static str,
    file: &'static str,
    bytes: Vec<u8>,
    line: Option<u64>,
    field: Option<&'static str>,
    contains: &'static str,
}

fn row_case(name: &'static str, row: String, field: &'static str, contains: &'static str) -> Case {
    Case {
        name,
        file: "batch.csv",
        bytes: csv(&[&row]),
        line: Some(2),
        field: Some(field),
        contains,
    }
}

fn tron_row(order_id: &str, amount: &str) -> String {
    format!("{order_id},{TRON},USDT,TRX,{amount},,false,")
}

fn validation_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Every amount-grammar violation.
    for (name, amount, contains) in [
        ("negative amount", "-5", "sign"),
        ("plus sign", "+5", "sign"),
        ("exponent", "1e3", "exponent"),
        ("capital exponent", "2E2", "exponent"),
        ("inner space", "\"1 000\"", "space"),
        ("thousands separator", "\"1,000\"", "separator"),
        ("two points", "1.2.3", "more than one"),
        ("leading point", ".5", "digits on both sides"),
        ("trailing point", "5.", "digits on both sides"),
        ("zero", "0", "greater than zero"),
        ("zero with decimals", "0.000", "greater than zero"),
        ("letters", "ten", "only digits"),
        ("currency sign", "$5", "only digits"),
        ("empty amount", "", "amount is empty"),
        ("too many digits", "123456789012345678901", "digits before"),
    ] {
        cases.push(row_case(name, tron_row("case-amt", amount), "amount", contains));
    }
    cases.extend([
        row_case("precision", tron_row("case-prec", "1.0000001"), "amount", "allows 6"),
        row_case(
            "below minimum",
            tron_row("case-min", "0.5"),
            "amount",
            "below the minimum of 1 USDT on TRX",
        ),
        row_case(
            "above maximum",
            format!("case-max,{EVM},USDT,ETH,100000.01,,false,"),
            "amount",
            "above the maximum of 100000 USDT on ETH",
        ),
        row_case(
            "memo missing",
            format!("case-memo,{XRP},XRP,XRP,100,,false,"),
            "memo",
            "memo is required on XRP",
        ),
        row_case(
            "memo refused",
            format!("case-memo2,{TRON},USDT,TRX,100,555,false,"),
            "memo",
            "memo is not used on TRX",
        ),
        row_case(
            "memo on cwallet",
            "case-memo3,9558861,USDT,CWALLET,10,555,false,".into(),
            "memo",
            "CWALLET",
        ),
        row_case(
            "tron checksum",
            format!("case-addr,{}X,USDT,TRX,5,,false,", &TRON[..33]),
            "recipient",
            "checksum",
        ),
        row_case(
            "evm on tron",
            format!("case-addr2,{EVM},USDT,TRX,5,,false,"),
            "recipient",
            "not a TRX address",
        ),
        row_case(
            "tron on evm",
            format!("case-addr3,{TRON},USDT,POLYGON,5,,false,"),
            "recipient",
            "EVM",
        ),
        row_case(
            "short evm",
            "case-addr4,0x1234,USDT,POLYGON,5,,false,".into(),
            "recipient",
            "EVM",
        ),
        row_case(
            "cwallet junk",
            "case-cw,not a user,USDT,CWALLET,5,,false,".into(),
            "recipient",
            "Cwallet",
        ),
        row_case(
            "unknown coin",
            format!("case-coin,{TRON},DOGGO,TRX,5,,false,"),
            "coin",
            "unknown coin \"DOGGO\"",
        ),
        row_case(
            "unknown chain",
            format!("case-chain,{TRON},USDT,TRON,5,,false,"),
            "chain",
            "unknown chain \"TRON\"",
        ),
        row_case(
            "coin not on chain",
            format!("case-chain2,{TRON},XRP,TRX,5,,false,"),
            "chain",
            "XRP cannot be paid on TRX",
        ),
        row_case("short order_id", tron_row("ab", "5"), "order_id", "3 to 64"),
        row_case("long order_id", tron_row(&"x".repeat(65), "5"), "order_id", "3 to 64"),
        row_case(
            "order_id with space",
            tron_row("\"a b c\"", "5"),
            "order_id",
            "contains ' '",
        ),
        row_case(
            "order_id with slash",
            tron_row("a/b/c", "5"),
            "order_id",
            "contains '/'",
        ),
        row_case(
            "empty recipient",
            "case-empty,,USDT,TRX,5,,false,".into(),
            "recipient",
            "recipient is empty",
        ),
        row_case(
            "bad fee flag",
            format!("case-flag,{TRON},USDT,TRX,5,,maybe,"),
            "merchant_pays_fee",
            "not true or false",
        ),
        row_case("v1 token on v2", tron_row("case-tok", "5"), "order_id", "").with_token(),
    ]);
    cases.push(Case {
        name: "duplicate order_id names both lines",
        file: "batch.csv",
        bytes: csv(&[
            &tron_row("dup-0001", "5"),
            &format!("dup-0001,{TRON_2},USDT,TRX,6,,false,"),
        ]),
        line: Some(3),
        field: Some("order_id"),
        contains: "also on line 2",
    });
    cases.push(Case {
        name: "what the fee leaves is below the minimum (14019)",
        file: "batch.csv",
        bytes: csv(&["min-0001,0x29b8430691cc5324ca89165999b4c60fdb505a45,USDT,BSC,0.35,,false,"]),
        line: Some(2),
        field: None,
        contains: "0.35 USDT minus the network fee of 0.3 USDT is below the minimum of 0.1 USDT",
    });
    cases.push(Case {
        name: "a fee larger than the amount",
        file: "batch.csv",
        bytes: csv(&["fee-0001,0x29b8430691cc5324ca89165999b4c60fdb505a45,USDT,BSC,0.3,,false,"]),
        line: Some(2),
        field: None,
        contains: "does not cover the network fee of 0.3 USDT",
    });
    cases.extend(file_cases());
    cases
}

fn file_case(
    name: &'static str,
    file: &'static str,
    bytes: Vec<u8>,
    line: Option<u64>,
    field: Option<&'static str>,
    contains: &'static str,
) -> Case {
    Case {
        name,
        file,
        bytes,
        line,
        field,
        contains,
    }
}

/// Hostile files: encodings, structure, sizes, JSON shapes.
fn file_cases() -> Vec<Case> {
    let good = tron_row("file-0001", "5");
    let mut non_utf8 = csv(&[]);
    non_utf8.extend_from_slice(b"file-0002,T\xff\xfeabc,USDT,TRX,5,,false,\n");
    let mut bad_header = b"order_id,recipient,coin,chain,amount,r\xe9f\n".to_vec();
    bad_header.extend_from_slice(good.as_bytes());
    let mut bom_bad = b"\xef\xbb\xbf".to_vec();
    bom_bad.extend_from_slice(&csv(&[&tron_row("bom-0001", "-1")]));
    let huge = format!(
        "{HEADER}\nhuge-0001,{TRON},USDT,TRX,5,,false,{}\n",
        "x".repeat(10 * 1024 * 1024)
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    vec![
        file_case("empty file", "e.csv", Vec::new(), None, None, "the file is empty"),
        file_case("bom only", "e.csv", b"\xef\xbb\xbf".to_vec(), None, None, "the file is empty"),
        file_case("header only", "h.csv", format!("{HEADER}\n").into_bytes(), None, None, "header but no rows"),
        file_case(
            "unknown column",
            "u.csv",
            format!("order_id,recipient,coin,chain,ammount\n{good}\n").into_bytes(),
            Some(1),
            None,
            "unknown column \"ammount\" (did you mean \"amount\"?)",
        ),
        file_case(
            "missing column",
            "m.csv",
            b"order_id,coin,chain,amount\nmiss-0001,USDT,TRX,5\n".to_vec(),
            Some(1),
            Some("recipient"),
            "missing required column",
        ),
        file_case("ragged short row", "r.csv", csv(&["rag-0001,TRX,5"]), Some(2), None, "row has 3 fields, the header has 8"),
        file_case("ragged long row", "r.csv", csv(&[&format!("{good},extra")]), Some(2), None, "row has 9 fields"),
        file_case(
            "unterminated quote",
            "q.csv",
            csv(&[&good, &format!("open-0001,{TRON},USDT,TRX,5,,false,\"never closed")]),
            Some(3),
            Some("reference"),
            "unterminated quoted field starting on line 3",
        ),
        file_case(
            "quoted newlines keep later lines right",
            "n.csv",
            csv(&[&format!("nl-0001,{TRON},USDT,TRX,5,,false,\"two\nlines\""), &tron_row("nl-0002", "-3")]),
            Some(4),
            Some("amount"),
            "sign",
        ),
        file_case("non-utf-8 field", "x.csv", non_utf8, Some(2), Some("recipient"), "not valid UTF-8"),
        file_case("non-utf-8 header", "x.csv", bad_header, Some(1), None, "not valid UTF-8"),
        file_case("a 10 MB field", "big.csv", huge.into_bytes(), Some(2), Some("reference"), "bytes long"),
        file_case(
            "crlf lines",
            "c.csv",
            format!("{HEADER}\r\n{good}\r\n{}\r\n", tron_row("crlf-0002", "1e2")).into_bytes(),
            Some(3),
            Some("amount"),
            "exponent",
        ),
        file_case("bom then a bad row", "b.csv", bom_bad, Some(2), Some("amount"), "sign"),
        file_case(
            "json amount as a number",
            "n.json",
            format!("{{\"orders\": [\n  {{\"order_id\": \"j-0001\", \"recipient\": \"{TRON}\", \"coin\": \"USDT\", \"chain\": \"TRX\", \"amount\": 12.5}}\n]}}").into_bytes(),
            Some(2),
            Some("amount"),
            "must be a JSON string",
        ),
        file_case(
            "json value as an array",
            "a.json",
            format!("[{{\"order_id\": \"j-0002\", \"recipient\": [\"{TRON}\"], \"coin\": \"USDT\", \"chain\": \"TRX\", \"amount\": \"5\"}}]").into_bytes(),
            Some(1),
            Some("recipient"),
            "not an array",
        ),
        file_case("json element not an object", "o.json", b"[\n42\n]".to_vec(), Some(2), None, "row is a number, expected an object"),
        file_case("json syntax error", "s.json", b"[\n{\"order_id\": \"x\"\n\n".to_vec(), Some(4), None, "invalid JSON"),
        file_case("json deep nesting", "d.json", deep.into_bytes(), Some(1), None, "nesting deeper than 32 levels"),
        file_case("json orders not an array", "o.json", b"{\"orders\": 5}".to_vec(), Some(1), None, "must be an array"),
        file_case(
            "jsonl missing key",
            "l.jsonl",
            b"\n{\"order_id\": \"l-0001\", \"coin\": \"USDT\", \"chain\": \"TRX\", \"amount\": \"5\"}\n".to_vec(),
            Some(2),
            Some("recipient"),
            "missing required key",
        ),
    ]
}

impl Case {
    /// Turns a case into the v1-token-on-v2 case: a token_id column on a v2 account.
    fn with_token(mut self) -> Case {
        self.bytes = format!(
            "order_id,recipient,coin,chain,amount,token_id\ncase-tok,{TRON},USDT,TRX,5,fdf0e8b0-ebf5-44f0-a335-21c121b73fc8\n"
        )
        .into_bytes();
        self.field = Some("token_id");
        self.contains = "v1 accounts";
        self
    }
}

#[tokio::test]
async fn every_validation_case_names_its_line_and_field_and_refuses_the_batch() {
    let api = TestApi::demo().await;
    let cases = validation_cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for case in cases {
        let report = check_bytes(&api, case.file, &case.bytes)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let plan = &report.plan;
        assert!(!plan.payable, "{}: the batch must not be payable", case.name);
        let found = plan
            .problems
            .iter()
            .any(|p| p.line == case.line && p.field.as_deref() == case.field && p.message.contains(case.contains));
        assert!(
            found,
            "{}: no problem at line {:?} field {:?} containing {:?} in {:#?}",
            case.name, case.line, case.field, case.contains, plan.problems
        );
    }
}

#[tokio::test]
async fn the_payroll_example_is_payable_and_its_totals_match_a_hand_computation() {
    let api = TestApi::demo().await;
    let report = check_path(
        &api,
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/payroll.csv")),
    )
    .await;
    let plan = &report.plan;
    assert!(plan.payable, "{:#?} {:#?}", plan.problems, plan.blockers);
    assert_eq!((plan.counts.rows, plan.counts.payable), (20, 20));

    // By hand, from examples/payroll.csv and the sandbox's fee table:
    // USDT on TRX fee 1 USDT; on POLYGON 0.0213814 MATIC; on ETH 2.5 USDT; on BSC 0.3 USDT;
    // USDC on POLYGON 0.0213814 MATIC; XRP 0.2 XRP; TRX 1 TRX; ETH on ETH 0.0006 ETH; Cwallet 0.
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    // USDT rows: amount, fee charged in USDT, whether the merchant pays it.
    let usdt = [
        ("2500", "1", false),
        ("3100.50", "1", false),
        ("1875.25", "1", true),
        ("2200", "1", false),
        ("950", "1", false),
        ("4200", "0", false),
        ("1650.75", "0", false),
        ("2780", "0", true),
        ("6000", "2.5", true),
        ("1320.40", "0.3", false),
        ("800", "0", false),
        ("1200", "0", false),
        ("1425.60", "1", false),
        ("2650", "1", false),
    ];
    let amount: Decimal = usdt.iter().map(|(a, _, _)| d(a)).sum();
    let fees: Decimal = usdt.iter().map(|(_, f, _)| d(f)).sum();
    let needed: Decimal = usdt
        .iter()
        .map(|(a, f, merchant)| d(a) + if *merchant { d(f) } else { Decimal::ZERO })
        .sum();
    let receivers: Decimal = usdt
        .iter()
        .map(|(a, f, merchant)| d(a) - if *merchant { Decimal::ZERO } else { d(f) })
        .sum();
    assert_eq!(amount, d("32652.50"));

    let coin = |symbol: &str| {
        plan.coins
            .iter()
            .find(|c| c.coin == symbol)
            .unwrap_or_else(|| panic!("{symbol} totals"))
    };
    let usdt_totals = coin("USDT");
    assert_eq!(usdt_totals.rows, 14);
    assert_eq!(d(&usdt_totals.amount), amount);
    assert_eq!(d(&usdt_totals.fees), fees);
    assert_eq!(d(&usdt_totals.needed), needed);
    assert_eq!(d(&usdt_totals.receivers_get), receivers);
    assert_eq!(d(&usdt_totals.balance_before), d("1000000"));
    assert_eq!(d(&usdt_totals.balance_after), d("1000000") - needed);

    // MATIC pays the POLYGON fees of three USDT rows and two USDC rows; nobody is paid MATIC.
    let matic = coin("MATIC");
    assert_eq!(d(&matic.needed), d("0.0213814") * Decimal::from(5));
    assert_eq!(matic.rows, 0);
    let usdc = coin("USDC");
    assert_eq!((d(&usdc.amount), d(&usdc.needed)), (d("4449.99"), d("4449.99")));
    let xrp = coin("XRP");
    assert_eq!((d(&xrp.amount), d(&xrp.receivers_get)), (d("8200.5"), d("8200.1")));
    let trx = coin("TRX");
    assert_eq!((d(&trx.amount), d(&trx.receivers_get)), (d("15000"), d("14999")));
    let eth = coin("ETH");
    assert_eq!((d(&eth.amount), d(&eth.receivers_get)), (d("0.85"), d("0.8494")));

    assert_eq!(plan.requests.withdrawals, 20);
    assert_eq!(plan.digest.len(), 64);
    assert!(plan.remote_checks.performed);
}

#[tokio::test]
async fn the_plan_digest_is_stable_and_binds_the_rows() {
    let api = TestApi::demo().await;
    let rows = [tron_row("dig-0001", "5"), tron_row("dig-0002", "7")];
    let a = check_bytes(&api, "a.csv", &csv(&[&rows[0], &rows[1]])).await.unwrap();
    // Same rows with other formatting and column order: the same plan.
    let reordered = format!(
        "amount,order_id,chain,coin,recipient\n5.00,dig-0001,TRX,usdt,{TRON}\r\n7,dig-0002,trx,USDT,{TRON}\r\n"
    );
    let b = check_bytes(&api, "b.csv", reordered.as_bytes()).await.unwrap();
    assert_eq!(a.plan.digest, b.plan.digest);
    assert_ne!(a.sha256, b.sha256, "different bytes, same plan");
    let c = check_bytes(&api, "c.csv", &csv(&[&rows[0], &tron_row("dig-0002", "7.01")]))
        .await
        .unwrap();
    assert_ne!(a.plan.digest, c.plan.digest);
}

#[tokio::test]
async fn the_broken_example_lists_every_problem_with_its_line() {
    let api = TestApi::demo().await;
    let report = check_path(
        &api,
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/broken.csv")),
    )
    .await;
    let plan = &report.plan;
    assert!(!plan.payable);
    assert_eq!(plan.counts.rows, 13);
    assert_eq!(plan.counts.payable, 0, "{:#?}", plan.rows);
    let lines: std::collections::BTreeSet<u64> = plan.problems.iter().filter_map(|p| p.line).collect();
    assert_eq!(lines, (2..=14).collect(), "{:#?}", plan.problems);
}

#[tokio::test]
async fn the_affiliate_example_reads_as_json_lines() {
    let api = TestApi::demo().await;
    let report = check_path(
        &api,
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/affiliates.jsonl")),
    )
    .await;
    assert!(report.plan.payable, "{:#?}", report.plan.problems);
    assert_eq!(report.plan.counts.rows, 8);
    assert_eq!(report.format, "JSON Lines");
}

#[tokio::test]
async fn rows_on_a_chain_in_maintenance_are_held_with_a_reason() {
    let api = TestApi::demo().await;
    api.sandbox.set_chain_status("TRX", "Maintenance");
    let report = check_bytes(&api, "m.csv", &csv(&[&tron_row("held-0001", "5")]))
        .await
        .unwrap();
    assert!(!report.plan.payable);
    match report.plan.rows.verdict(0).unwrap() {
        Verdict::Held { reason } => assert!(reason.contains("TRX is in maintenance"), "{reason}"),
        other => panic!("expected held, got {other:?}"),
    }
}

#[tokio::test]
async fn a_short_balance_blocks_the_batch() {
    let api = TestApi::demo().await;
    api.sandbox.set_balance("USDT", "4");
    let report = check_bytes(&api, "b.csv", &csv(&[&tron_row("bal-0001", "5")]))
        .await
        .unwrap();
    assert!(!report.plan.payable);
    assert!(
        report
            .plan
            .blockers
            .iter()
            .any(|b| b.contains("USDT balance of 4 is short of the 5 USDT")),
        "{:?}",
        report.plan.blockers
    );
}

#[tokio::test]
async fn remote_checks_refuse_unknown_cwallet_users() {
    let api = TestApi::demo().await;
    let report = check_bytes(&api, "u.csv", &csv(&["cw-0001,77777777,USDT,CWALLET,5,,false,"]))
        .await
        .unwrap();
    assert!(!report.plan.payable);
    assert!(
        report
            .plan
            .problems
            .iter()
            .any(|p| p.line == Some(2) && p.message.contains("no Cwallet user")),
        "{:#?}",
        report.plan.problems
    );
}

#[tokio::test]
async fn an_unknown_extension_is_not_a_batch() {
    let api = TestApi::demo().await;
    let err = check_bytes(&api, "batch.xlsx", b"PK\x03\x04").await.unwrap_err();
    assert!(matches!(err, CheckError::NotABatch(_)), "{err}");
}

/// `n` distinct, well-formed BSC addresses.
fn bsc_addresses(n: u64) -> Vec<String> {
    (0..n).map(|i| format!("0x{:040x}", 0x5eed_0000u64 + i)).collect()
}

/// One USDT row on BSC per address, lines 2.. in order.
fn bsc_batch(addresses: &[String]) -> Vec<u8> {
    let rows: Vec<String> = addresses
        .iter()
        .enumerate()
        .map(|(i, address)| format!("addr-{i:05},{address},USDT,BSC,5,,true,"))
        .collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    csv(&rows)
}

/// Checks `bytes` with every recipient asked about, whatever the batch's size, and addresses
/// asked as `address_check` says.
async fn check_all(api: &TestApi, name: &str, bytes: &[u8], address_check: AddressCheck) -> CheckReport {
    let mut settings = default_config().preflight_settings();
    settings.remote_checks = RemoteChecks::Always;
    settings.address_check = address_check;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    check_file(&api.client, &settings, &path, Arc::new(NoKnownOrders))
        .await
        .expect("check runs")
}

/// Requests the client sent to `endpoint`.
fn sent(api: &TestApi, endpoint: &str) -> u64 {
    api.client.request_counts().get(endpoint).copied().unwrap_or(0)
}

/// The lines the remote checks refused, with the field and message of each problem.
fn remote_refusals(report: &CheckReport) -> Vec<(u64, Option<String>, String)> {
    report
        .plan
        .problems
        .iter()
        .filter(|p| p.message.starts_with("CCPayment says"))
        .map(|p| (p.line.expect("a line"), p.field.clone(), p.message.clone()))
        .collect()
}

#[tokio::test]
async fn addresses_are_checked_up_to_500_a_request_and_refusals_name_line_field_and_code() {
    let api = TestApi::demo().await;
    let addresses = bsc_addresses(1200);
    // Well-formed, so validation lets them through; CCPayment refuses them anyway.
    for i in [0, 499, 500, 1199] {
        api.sandbox.refuse_address(&addresses[i]);
    }
    let report = check_all(&api, "many.csv", &bsc_batch(&addresses), AddressCheck::Batch).await;

    assert_eq!(
        sent(&api, "checkWithdrawAddress"),
        3,
        "{:?}",
        api.client.request_counts()
    );
    assert_eq!(sent(&api, "checkWithdrawalAddressValidity"), 0);
    assert_eq!(api.sandbox.stats().to_endpoint("checkWithdrawAddress"), 3);
    let checks = &report.plan.remote_checks;
    assert!(checks.performed);
    assert_eq!(checks.addresses_checked, 1200);
    assert_eq!(checks.address_check, Some(AddressCheck::Batch));
    assert_eq!(checks.note, None);
    // Coins and chains, one fee quote, the balances, three address checks.
    assert_eq!(report.preflight_requests, 7);

    let refusals = remote_refusals(&report);
    let lines: Vec<u64> = refusals.iter().map(|(line, _, _)| *line).collect();
    assert_eq!(lines, vec![2, 501, 502, 1201], "{refusals:#?}");
    for (line, field, message) in &refusals {
        assert_eq!(field.as_deref(), Some("recipient"), "line {line}");
        let address = &addresses[*line as usize - 2];
        assert!(message.contains(address.as_str()), "{message}");
        assert!(
            message.contains("14002 AddressNotActive: the receiving address is invalid or inactive"),
            "{message}"
        );
    }
    assert_eq!(report.plan.counts.refused, 4);
    assert_eq!(report.plan.counts.payable, 1196);
    // Rendered as every other problem: the file, the line, the field.
    let text = ccpayout::batch::render::check_report(&report);
    assert!(
        text.lines()
            .any(|l| l.contains("many.csv:501: recipient: CCPayment says") && l.contains("14002")),
        "{text}"
    );
}

/// The same file against an account without `checkWithdrawAddress`: one refused batch request
/// (the 404 of an unknown method), then one request per address, with the same verdicts.
#[tokio::test]
async fn an_account_without_the_batch_route_gets_one_request_per_address_and_the_same_verdicts() {
    let addresses = bsc_addresses(40);
    let refused = [3usize, 17, 39];
    let check = |api: TestApi| {
        let bytes = bsc_batch(&addresses);
        let addresses = addresses.clone();
        async move {
            for i in refused {
                api.sandbox.refuse_address(&addresses[i]);
            }
            let report = check_all(&api, "few.csv", &bytes, AddressCheck::Batch).await;
            (api, report)
        }
    };
    let (batch_api, batched) = check(TestApi::demo().await).await;
    let (api, report) = check(
        TestApi::start(SandboxConfig {
            readings: Readings::parse("no-address-batch-check").unwrap(),
            ..SandboxConfig::default()
        })
        .await,
    )
    .await;

    assert_eq!(sent(&batch_api, "checkWithdrawAddress"), 1);
    assert_eq!(sent(&batch_api, "checkWithdrawalAddressValidity"), 0);
    assert_eq!(
        sent(&api, "checkWithdrawAddress"),
        1,
        "one request learns the route is not there"
    );
    assert_eq!(
        api.client
            .request_stats()
            .by_endpoint_and_code
            .get(&("checkWithdrawAddress".to_owned(), "http_404".to_owned())),
        Some(&1)
    );
    assert_eq!(sent(&api, "checkWithdrawalAddressValidity"), 40);
    // The 404 never reached the account.
    assert_eq!(api.sandbox.stats().to_endpoint("checkWithdrawAddress"), 0);
    // The failed batch request counts too.
    assert_eq!(report.preflight_requests, batched.preflight_requests + 40);

    let checks = &report.plan.remote_checks;
    assert_eq!(checks.addresses_checked, 40);
    assert_eq!(checks.address_check, Some(AddressCheck::Single));
    assert!(
        checks
            .note
            .as_deref()
            .is_some_and(|n| n.contains("checkWithdrawAddress")),
        "{checks:?}"
    );
    let lines = |r: &CheckReport| -> Vec<u64> { remote_refusals(r).iter().map(|(l, _, _)| *l).collect() };
    assert_eq!(lines(&report), vec![5, 19, 41]);
    assert_eq!(lines(&report), lines(&batched));
    for (line, field, message) in remote_refusals(&report) {
        assert_eq!(field.as_deref(), Some("recipient"), "line {line}");
        assert!(message.contains("is not a valid BSC address"), "{message}");
    }
    assert_eq!(report.plan.counts, batched.plan.counts);
}

/// 11013 to the batch check is S2's "not supported by API v2": the same fallback.
#[tokio::test]
async fn a_batch_check_answered_11013_falls_back_to_one_request_per_address() {
    let api = TestApi::demo().await;
    api.sandbox
        .force_error("checkWithdrawAddress", 11013, "NoSupportVersion", 1);
    let addresses = bsc_addresses(600);
    api.sandbox.refuse_address(&addresses[550]);
    let report = check_all(&api, "v.csv", &bsc_batch(&addresses), AddressCheck::Batch).await;
    // The first of the two batches went alone and was refused; the second was never sent.
    assert_eq!(sent(&api, "checkWithdrawAddress"), 1);
    assert_eq!(sent(&api, "checkWithdrawalAddressValidity"), 600);
    assert_eq!(report.plan.remote_checks.address_check, Some(AddressCheck::Single));
    let lines: Vec<u64> = remote_refusals(&report).iter().map(|(l, _, _)| *l).collect();
    assert_eq!(lines, vec![552]);
}

/// `AddressCheck::Single` asks one address at a time from the start.
#[tokio::test]
async fn single_address_checks_when_the_settings_say_so() {
    let api = TestApi::demo().await;
    let addresses = bsc_addresses(12);
    let report = check_all(&api, "s.csv", &bsc_batch(&addresses), AddressCheck::Single).await;
    assert_eq!(sent(&api, "checkWithdrawAddress"), 0);
    assert_eq!(sent(&api, "checkWithdrawalAddressValidity"), 12);
    assert_eq!(report.plan.remote_checks.address_check, Some(AddressCheck::Single));
    assert_eq!(report.plan.remote_checks.note, None);
}
