//! Each reading of the API the sandbox can take (ccpayment-api.md §5), shown on the wire: a
//! real `Sandbox` on loopback, driven by the client (raw bytes through `Client::send_raw` where
//! the bytes are the point), one test per reading, plus one that starts a sandbox under every
//! name in `Readings::ALL_NAMES`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use ccpayout::api::sign::verify_v2;
use ccpayout::api::types::{
    ApplyBatchWithdrawRequest, BatchOrderQuery, BatchRecordListQuery, BatchTask, ConfirmBatchWithdrawRequest,
    NetworkWithdrawRequest, RecordStatus, TaskStatus, V1WithdrawRequest, WithdrawRecordListQuery, WithdrawRecordQuery,
    method,
};
use ccpayout::api::{CallError, Endpoint, RawReply};
use ccpayout::sandbox::{DEMO_APP_ID, DEMO_APP_SECRET, Readings, SandboxConfig};
use ccpayout::util::clock::ManualClock;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::*;

/// A sandbox taking the readings `spec` names.
async fn start(spec: &str) -> TestApi {
    TestApi::start(SandboxConfig {
        readings: Readings::parse(spec).expect("a reading"),
        ..SandboxConfig::default()
    })
    .await
}

fn by_order(order_id: &str) -> WithdrawRecordQuery {
    WithdrawRecordQuery {
        order_id: Some(order_id.into()),
        record_id: None,
    }
}

fn api_code(result: Result<impl std::fmt::Debug, CallError>) -> i64 {
    match result {
        Err(CallError::Api(e)) => e.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// POSTs these exact bytes to a v2 method; returns the reply's bytes as text.
async fn raw_v2(api: &TestApi, name: &str, body: &[u8]) -> String {
    let reply: RawReply = api
        .client
        .send_raw(Endpoint::v2(name), body.to_vec())
        .await
        .expect("a reply");
    assert_eq!(reply.http_status, 200);
    String::from_utf8(reply.body.to_vec()).expect("UTF-8")
}

fn code_of(text: &str) -> i64 {
    let reply: Value = serde_json::from_str(text).expect("JSON");
    reply["code"].as_i64().expect("a code")
}

/// A v1 withdrawal of 5 USDT on TRX.
fn v1_withdraw(api: &TestApi, order_id: &str) -> V1WithdrawRequest {
    V1WithdrawRequest {
        merchant_order_id: order_id.into(),
        address: TRON_ADDRESS.into(),
        token_id: api.sandbox.v1_token_id("USDT", "TRX").expect("token"),
        value: "5".into(),
        memo: None,
        merchant_pays_fee: None,
    }
}

#[tokio::test]
async fn lookup_lag_answers_not_found_right_after_a_create_and_finds_it_after_the_lag() {
    let api = start("lookup-lag=5000").await;
    let c = &api.client;
    let receipt = c
        .apply_app_withdraw_to_network(&trx_withdraw("lag-0001", "5"))
        .await
        .expect("created");
    // Right after the create, every read says it does not exist.
    assert_eq!(api_code(c.get_app_withdraw_record(&by_order("lag-0001")).await), 11003);
    let list = WithdrawRecordListQuery {
        order_ids: vec!["lag-0001".into()],
        ..WithdrawRecordListQuery::default()
    };
    assert!(
        c.get_app_withdraw_record_list(&list)
            .await
            .expect("a page")
            .records
            .is_empty()
    );
    assert_eq!(c.v1_bill_info(&["lag-0001".to_owned()]).await.expect("bills").len(), 0);
    // A create sees it at once: resending now is refused, not paid twice.
    assert_eq!(
        api_code(c.apply_app_withdraw_to_network(&trx_withdraw("lag-0001", "5")).await),
        11011
    );
    api.clock.advance(Duration::from_millis(4999));
    assert_eq!(api_code(c.get_app_withdraw_record(&by_order("lag-0001")).await), 11003);
    api.clock.advance(Duration::from_millis(1));
    let record = c.get_app_withdraw_record(&by_order("lag-0001")).await.expect("found");
    assert_eq!(record.record_id, receipt.record_id);
    assert_eq!(
        c.get_app_withdraw_record_list(&list)
            .await
            .expect("a page")
            .records
            .len(),
        1
    );
    assert_eq!(api.sandbox.ledger().payouts_for("lag-0001").len(), 1);
}

#[tokio::test]
async fn empty_record_answers_success_with_an_empty_record_for_an_order_never_sent() {
    let api = start("empty-record").await;
    let text = raw_v2(&api, method::GET_APP_WITHDRAW_RECORD, br#"{"orderId":"never-sent"}"#).await;
    assert_eq!(text, r#"{"code":10000,"msg":"success","data":{"record":{}}}"#);
    // What a lenient reader makes of it: a "record" whose orderId is not the one asked for.
    let record = api
        .client
        .get_app_withdraw_record(&by_order("never-sent"))
        .await
        .expect("success");
    assert_eq!((record.order_id.as_str(), record.record_id.as_str()), ("", ""));
    // A record that exists is still itself.
    api.client
        .apply_app_withdraw_to_network(&trx_withdraw("known-0001", "5"))
        .await
        .expect("created");
    let record = api
        .client
        .get_app_withdraw_record(&by_order("known-0001"))
        .await
        .expect("found");
    assert_eq!(record.order_id, "known-0001");
}

#[tokio::test]
async fn other_record_answers_an_unknown_order_id_with_another_orders_record() {
    let api = start("other-record").await;
    api.client
        .apply_app_withdraw_to_network(&trx_withdraw("paid-0001", "7"))
        .await
        .expect("created");
    let record = api
        .client
        .get_app_withdraw_record(&by_order("never-sent"))
        .await
        .expect("success");
    assert_eq!(
        record.order_id, "paid-0001",
        "only a record whose orderId matches is the order"
    );
    assert_eq!(record.amount, "7");
}

#[tokio::test]
async fn no_order_uniqueness_pays_a_reused_order_id_a_second_time() {
    let api = start("no-order-uniqueness").await;
    let c = &api.client;
    let first = c
        .apply_app_withdraw_to_network(&trx_withdraw("twice-0001", "5"))
        .await
        .expect("created");
    let second = c
        .apply_app_withdraw_to_network(&trx_withdraw("twice-0001", "5"))
        .await
        .expect("created again");
    assert_ne!(first.record_id, second.record_id);
    // v1 does not refuse it either.
    c.v1_withdraw(&v1_withdraw(&api, "twice-0001"))
        .await
        .expect("created on v1");
    let ledger = api.sandbox.ledger();
    assert_eq!(
        ledger.payouts_for("twice-0001").len(),
        3,
        "the ledger shows the double payment"
    );
    assert_eq!(api.sandbox.balance("USDT"), "999985");
    let list = WithdrawRecordListQuery {
        order_ids: vec!["twice-0001".into()],
        ..WithdrawRecordListQuery::default()
    };
    let page = c.get_app_withdraw_record_list(&list).await.expect("a page");
    assert_eq!(page.records.len(), 3);
}

#[tokio::test]
async fn string_ids_sends_every_number_in_the_data_as_a_string() {
    let api = start("string-ids").await;
    let created = raw_v2(
        &api,
        method::APPLY_APP_WITHDRAW_TO_NETWORK,
        &serde_json::to_vec(&trx_withdraw("str-0001", "5")).expect("JSON"),
    )
    .await;
    assert_eq!(code_of(&created), 10000, "{created}");
    let list = raw_v2(
        &api,
        method::GET_APP_WITHDRAW_RECORD_LIST,
        br#"{"orderIds":["str-0001"]}"#,
    )
    .await;
    assert!(
        list.starts_with(r#"{"code":10000,"#),
        "the envelope's code stays a number: {list}"
    );
    assert!(list.contains(r#""coinId":"1280""#), "{list}");
    let coins = raw_v2(&api, method::GET_COIN_LIST, b"").await;
    assert!(coins.contains(r#""precision":"6""#), "{coins}");
    assert!(coins.contains(r#""coinId":"1280""#), "{coins}");
    let fee = raw_v2(&api, method::GET_WITHDRAW_FEE, br#"{"coinId":1280,"chain":"POLYGON"}"#).await;
    assert!(fee.contains(r#""coinId":"1329""#), "{fee}");
    // Errors are untouched.
    let missing = raw_v2(&api, method::GET_APP_WITHDRAW_RECORD, br#"{"orderId":"nope-0001"}"#).await;
    assert_eq!(code_of(&missing), 11003);
    // Without the reading the same list has numbers.
    let plain = TestApi::demo().await;
    raw_v2(
        &plain,
        method::APPLY_APP_WITHDRAW_TO_NETWORK,
        &serde_json::to_vec(&trx_withdraw("str-0001", "5")).expect("JSON"),
    )
    .await;
    let list = raw_v2(
        &plain,
        method::GET_APP_WITHDRAW_RECORD_LIST,
        br#"{"orderIds":["str-0001"]}"#,
    )
    .await;
    assert!(list.contains(r#""coinId":1280"#), "{list}");
}

const PARAMETERLESS: [&str; 4] = [
    method::GET_COIN_LIST,
    method::GET_APP_COIN_ASSET_LIST,
    method::GET_FIAT_LIST,
    method::GET_SWAP_COIN_LIST,
];

#[tokio::test]
async fn parameterless_calls_accept_an_empty_body_and_braces_by_default() {
    let api = TestApi::demo().await;
    for name in PARAMETERLESS {
        // An empty body is signed over appId + timestamp alone, as the official examples do.
        let empty = raw_v2(&api, name, b"").await;
        assert_eq!(code_of(&empty), 10000, "{name}: {empty}");
        let braces = raw_v2(&api, name, b"{}").await;
        assert_eq!(code_of(&braces), 10000, "{name}: {braces}");
        assert_eq!(empty, braces, "{name}");
    }
}

#[tokio::test]
async fn empty_body_only_refuses_braces_for_parameterless_calls() {
    let api = start("empty-body-only").await;
    for name in PARAMETERLESS {
        let empty = raw_v2(&api, name, b"").await;
        assert_eq!(code_of(&empty), 10000, "{name}: {empty}");
        let braces = raw_v2(&api, name, b"{}").await;
        assert_eq!(code_of(&braces), 11000, "{name}: {braces}");
    }
    // A call with parameters still takes them.
    let coin = raw_v2(&api, method::GET_COIN, br#"{"coinId":1280}"#).await;
    assert_eq!(code_of(&coin), 10000);
}

#[tokio::test]
async fn pre_delisting_lists_usdc_as_pre_delisting_and_still_pays_it() {
    let api = start("pre-delisting").await;
    let coins = api.client.get_coin_list().await.expect("coins");
    let usdc = coins.iter().find(|c| c.symbol == "USDC").expect("USDC listed");
    assert_eq!(usdc.status, "Pre-delisting");
    let request = NetworkWithdrawRequest {
        order_id: "usdc-0001".into(),
        coin_id: usdc.coin_id,
        chain: "POLYGON".into(),
        address: EVM_ADDRESS.into(),
        memo: None,
        amount: "25".into(),
        merchant_pay_network_fee: None,
        network_fee_inquiry_id: None,
        notify_url: None,
    };
    api.client
        .apply_app_withdraw_to_network(&request)
        .await
        .expect("still withdrawable");
    api.settle(Duration::from_secs(3));
    let ledger = api.sandbox.ledger();
    assert_eq!(ledger.payouts_for("usdc-0001")[0].status, RecordStatus::Success);
}

/// What a webhook receiver saw: (Timestamp, Sign, body) per attempt.
type Seen = Arc<Mutex<Vec<(String, String, Bytes)>>>;

/// A receiver that refuses the first attempt after moving the sandbox's clock a minute on, and
/// accepts the rest; returns its URL and what it saw.
async fn receiver(clock: Arc<ManualClock>) -> (String, Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State((seen, clock)): State<(Seen, Arc<ManualClock>)>, headers: HeaderMap, body: Bytes| async move {
                    let get = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let mut seen = seen.lock().expect("lock");
                    seen.push((get("timestamp"), get("sign"), body));
                    if seen.len() == 1 {
                        clock.advance(Duration::from_secs(60));
                        (StatusCode::INTERNAL_SERVER_ERROR, "try later")
                    } else {
                        (StatusCode::OK, "success")
                    }
                },
            ),
        )
        .with_state((Arc::clone(&seen), clock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen, task)
}

/// The headers of the first webhook's first two attempts, under `readings`.
async fn first_and_retry(readings: &str) -> Vec<(String, String, Bytes)> {
    let clock = ManualClock::starting_now();
    let (url, seen, task) = receiver(clock.clone()).await;
    let config = SandboxConfig {
        webhook_url: Some(url),
        webhook_time_scale: 0.001,
        readings: Readings::parse(readings).expect("a reading"),
        ..SandboxConfig::default()
    };
    let sandbox = ccpayout::sandbox::Sandbox::start(config, clock.clone())
        .await
        .expect("sandbox starts");
    let client = client_for(
        &sandbox,
        clock.clone(),
        DEMO_APP_ID,
        SecretString::from(DEMO_APP_SECRET),
    );
    client
        .apply_app_withdraw_to_network(&trx_withdraw("hook-0001", "5"))
        .await
        .expect("created");
    // The clock moved a minute on, so the final webhook may come too: only the attempts of the
    // first one (the same body) count.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let attempts: Vec<_> = {
            let seen = seen.lock().expect("lock");
            seen.iter()
                .filter(|s| seen.first().is_some_and(|f| f.2 == s.2))
                .cloned()
                .collect()
        };
        if attempts.len() >= 2 {
            task.abort();
            return attempts;
        }
        assert!(std::time::Instant::now() < deadline, "the retry never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn old_webhook_timestamps_resend_the_first_timestamp_and_signature() {
    let secret = SecretString::from(DEMO_APP_SECRET);
    let seen = first_and_retry("old-webhook-timestamps").await;
    let (first, retry) = (&seen[0], &seen[1]);
    assert_eq!(retry.0, first.0, "the retry carries the original timestamp");
    assert_eq!(retry.1, first.1, "and the signature made with it");
    assert_eq!(retry.2, first.2);
    assert!(verify_v2(DEMO_APP_ID, &secret, &retry.0, &retry.2, &retry.1));
    // By default a retry is signed afresh, a minute later.
    let seen = first_and_retry("none").await;
    let (first, retry) = (&seen[0], &seen[1]);
    let secs = |ts: &str| ts.parse::<i64>().expect("seconds");
    assert!(secs(&retry.0) >= secs(&first.0) + 60, "{} then {}", first.0, retry.0);
    assert!(verify_v2(DEMO_APP_ID, &secret, &retry.0, &retry.2, &retry.1));
}

#[tokio::test]
async fn v1_only_answers_11013_to_every_v2_call_and_serves_v1() {
    let api = start("v1-only").await;
    let c = &api.client;
    assert_eq!(api_code(c.get_coin_list().await), 11013);
    assert_eq!(
        api_code(c.apply_app_withdraw_to_network(&trx_withdraw("v1o-0001", "5")).await),
        11013
    );
    assert_eq!(api_code(c.get_app_withdraw_record(&by_order("v1o-0001")).await), 11013);
    assert!(api.sandbox.ledger().payouts.is_empty());
    c.v1_withdraw(&v1_withdraw(&api, "v1o-0001")).await.expect("v1 works");
    let bills = c.v1_bill_info(&["v1o-0001".to_owned()]).await.expect("bills");
    assert_eq!(bills.len(), 1);
    assert_eq!(api.sandbox.stats().with_code(11013), 3);
}

/// A Single-mode batch of 5 USDT TRX tasks with these seqs, each task's remark `ID-SEQ`.
fn batch_of(id: &str, seqs: &[u32]) -> ApplyBatchWithdrawRequest {
    ApplyBatchWithdrawRequest {
        batch_order_id: id.into(),
        coin_id: USDT,
        chain: "TRX".into(),
        orders: seqs
            .iter()
            .map(|&seq| BatchTask {
                seq,
                address: TRON_ADDRESS.into(),
                amount: "5".into(),
                remark: format!("{id}-{seq}"),
                ..BatchTask::default()
            })
            .collect(),
        mode: "Single".into(),
        ..ApplyBatchWithdrawRequest::default()
    }
}

fn confirm_now(id: &str) -> ConfirmBatchWithdrawRequest {
    ConfirmBatchWithdrawRequest {
        batch_order_id: id.into(),
        delay_seconds: 0,
    }
}

fn order_of(id: &str) -> BatchOrderQuery {
    BatchOrderQuery {
        batch_order_id: id.into(),
        verbose: 0,
    }
}

async fn task_statuses(api: &TestApi, id: &str) -> Vec<String> {
    let query = BatchRecordListQuery {
        batch_order_id: id.into(),
        ..BatchRecordListQuery::default()
    };
    let page = api
        .client
        .get_batch_withdraw_order_record_list(&query)
        .await
        .expect("tasks");
    page.records.into_iter().map(|t| t.status).collect()
}

#[tokio::test]
async fn batch_apply_idempotent_answers_a_reused_batch_order_id_with_the_first_batch() {
    let plain = start("none").await;
    plain
        .client
        .apply_batch_withdraw(&batch_of("bi-0001", &[1, 2]))
        .await
        .expect("applied");
    let again = plain.client.apply_batch_withdraw(&batch_of("bi-0001", &[1, 2])).await;
    assert_eq!(api_code(again), 11007, "refused by default");

    let api = start("batch-apply-idempotent").await;
    let first = api
        .client
        .apply_batch_withdraw(&batch_of("bi-0001", &[1, 2]))
        .await
        .expect("applied");
    let again = api
        .client
        .apply_batch_withdraw(&batch_of("bi-0001", &[1, 2, 3]))
        .await
        .expect("success");
    assert_eq!(again, first);
    api.client
        .confirm_batch_withdraw(&confirm_now("bi-0001"))
        .await
        .expect("confirmed");
    api.settle(Duration::from_secs(5));
    assert_eq!(api.sandbox.ledger().tasks_of("bi-0001").len(), 2, "paid once");
}

#[tokio::test]
async fn batch_id_reuse_pays_a_reapplied_batch_twice_on_one_confirm() {
    let api = start("batch-id-reuse").await;
    let c = &api.client;
    let first = c
        .apply_batch_withdraw(&batch_of("br-0001", &[1, 2]))
        .await
        .expect("applied")
        .expect("the route");
    let second = c
        .apply_batch_withdraw(&batch_of("br-0001", &[1, 2]))
        .await
        .expect("applied again")
        .expect("the route");
    assert_ne!(first.bill_id, second.bill_id, "a second batch under the same id");
    let order = c
        .get_batch_withdraw_order(&order_of("br-0001"))
        .await
        .expect("the batch");
    assert_eq!(
        (order.bill_id.as_str(), order.stats.total),
        (first.bill_id.as_str(), 2),
        "reads see the first"
    );
    c.confirm_batch_withdraw(&confirm_now("br-0001"))
        .await
        .expect("confirmed");
    api.settle(Duration::from_secs(5));
    let ledger = api.sandbox.ledger();
    assert_eq!(ledger.tasks_of("br-0001").len(), 4);
    assert_eq!(ledger.payouts_by_ref("br-0001-1").len(), 2, "row 1 paid twice");
}

#[tokio::test]
async fn batch_seq_unchecked_stores_a_repeated_seq_and_pays_it() {
    let plain = start("none").await;
    assert_eq!(
        api_code(plain.client.apply_batch_withdraw(&batch_of("bs-0001", &[1, 1])).await),
        14027
    );
    assert!(api_code(plain.client.get_batch_withdraw_order(&order_of("bs-0001")).await) == 11003);

    let api = start("batch-seq-unchecked").await;
    api.client
        .apply_batch_withdraw(&batch_of("bs-0001", &[1, 1]))
        .await
        .expect("stored");
    api.client
        .confirm_batch_withdraw(&confirm_now("bs-0001"))
        .await
        .expect("confirmed");
    api.settle(Duration::from_secs(5));
    let seqs: Vec<u32> = api.sandbox.ledger().tasks_of("bs-0001").iter().map(|p| p.seq).collect();
    assert_eq!(seqs, [1, 1]);
}

#[tokio::test]
async fn batch_review_holds_a_confirmed_batch_in_reviewing_then_runs_it() {
    let api = start("batch-review=3000").await;
    let c = &api.client;
    c.apply_batch_withdraw(&batch_of("bv-0001", &[1]))
        .await
        .expect("applied");
    let confirmed = c
        .confirm_batch_withdraw(&confirm_now("bv-0001"))
        .await
        .expect("confirmed");
    assert_eq!(confirmed.status, "Reviewing");
    assert_eq!(task_statuses(&api, "bv-0001").await, ["Pending"]);
    api.settle(Duration::from_millis(2999));
    assert_eq!(
        c.get_batch_withdraw_order(&order_of("bv-0001"))
            .await
            .expect("batch")
            .status,
        "Reviewing"
    );
    assert!(api.sandbox.ledger().payouts.is_empty());
    api.settle(Duration::from_millis(1));
    assert_eq!(
        c.get_batch_withdraw_order(&order_of("bv-0001"))
            .await
            .expect("batch")
            .status,
        "Processing"
    );
    api.settle(Duration::from_secs(2));
    assert_eq!(
        c.get_batch_withdraw_order(&order_of("bv-0001"))
            .await
            .expect("batch")
            .status,
        "Completed"
    );
}

#[tokio::test]
async fn task_status_success_spells_a_paid_task_like_a_single_withdrawal() {
    let api = start("task-status-success").await;
    api.client
        .apply_batch_withdraw(&batch_of("bt-0001", &[1]))
        .await
        .expect("applied");
    api.client
        .confirm_batch_withdraw(&confirm_now("bt-0001"))
        .await
        .expect("confirmed");
    api.settle(Duration::from_secs(5));
    let statuses = task_statuses(&api, "bt-0001").await;
    assert_eq!(statuses, ["Success"]);
    assert_eq!(TaskStatus::of(&statuses[0]), TaskStatus::Succeeded);
    let plain = start("none").await;
    plain
        .client
        .apply_batch_withdraw(&batch_of("bt-0001", &[1]))
        .await
        .expect("applied");
    plain
        .client
        .confirm_batch_withdraw(&confirm_now("bt-0001"))
        .await
        .expect("confirmed");
    plain.settle(Duration::from_secs(5));
    assert_eq!(task_statuses(&plain, "bt-0001").await, ["Successful"]);
}

#[tokio::test]
async fn no_batch_withdraw_answers_every_batch_route_like_an_unknown_method() {
    let api = start("no-batch-withdraw").await;
    for name in [
        method::APPLY_BATCH_WITHDRAW,
        method::APPEND_BATCH_WITHDRAW,
        method::CONFIRM_BATCH_WITHDRAW,
        method::ABORT_BATCH_WITHDRAW,
        method::GET_BATCH_WITHDRAW_ORDER,
        method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST,
    ] {
        let reply = api
            .client
            .send_raw(Endpoint::v2(name), br#"{"batchOrderId":"bn-0001"}"#.to_vec())
            .await
            .expect("a reply");
        assert_eq!(reply.http_status, 404, "{name}");
        assert_eq!(&reply.body[..], b"404 page not found", "{name}");
    }
    // What the client makes of it: no CCPayment reply at all.
    let err = api
        .client
        .get_batch_withdraw_order(&order_of("bn-0001"))
        .await
        .expect_err("404");
    assert!(matches!(err, CallError::Ambiguous { .. }), "{err}");
    assert_eq!(api.sandbox.stats().total(), 0, "nothing reached the API");
    // Single withdrawals are there as ever.
    api.client
        .apply_app_withdraw_to_network(&trx_withdraw("bn-0002", "5"))
        .await
        .expect("created");
}

#[tokio::test]
async fn no_address_batch_check_answers_the_batch_check_as_an_unknown_method() {
    let api = start("no-address-batch-check").await;
    let body = json!({"chain": "TRX", "addressInfoList": [{"address": TRON_ADDRESS, "seq": 1}]});
    let reply = api
        .client
        .send_raw(
            Endpoint::v2(method::CHECK_WITHDRAW_ADDRESS),
            body.to_string().into_bytes(),
        )
        .await
        .expect("a reply");
    assert_eq!(reply.http_status, 404);
    assert_eq!(&reply.body[..], b"404 page not found");
    // Byte for byte what a method the sandbox does not know gets.
    let unknown = api
        .client
        .send_raw(Endpoint::v2("noSuchMethod"), body.to_string().into_bytes())
        .await
        .expect("a reply");
    assert_eq!((unknown.http_status, &unknown.body[..]), (404, &reply.body[..]));
    assert!(
        api.client
            .check_withdrawal_address_validity("TRX", TRON_ADDRESS)
            .await
            .expect("the single check")
    );
    let stats = api.sandbox.stats();
    assert_eq!(stats.to_endpoint(method::CHECK_WITHDRAW_ADDRESS), 0, "{stats:?}");
    // Without the reading the route answers.
    let api = start("none").await;
    let text = raw_v2(&api, method::CHECK_WITHDRAW_ADDRESS, body.to_string().as_bytes()).await;
    assert_eq!(code_of(&text), 10000, "{text}");
}

#[tokio::test]
async fn every_reading_starts_a_sandbox_that_pays_on_v1() {
    for name in Readings::ALL_NAMES {
        let api = start(name).await;
        let body = serde_json::to_vec(&v1_withdraw(&api, "every-0001")).expect("JSON");
        let reply = api
            .client
            .send_raw(Endpoint::v1(method::V1_WITHDRAW), body)
            .await
            .expect("a reply");
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        assert_eq!(code_of(&text), 10000, "{name}: {text}");
        api.settle(Duration::from_secs(5));
        let ledger = api.sandbox.ledger();
        assert_eq!(ledger.payouts.len(), 1, "{name}");
        assert_eq!(ledger.payouts[0].status, RecordStatus::Success, "{name}");
        let bill = json!({"merchant_order_ids": ["every-0001"]}).to_string();
        let reply = api
            .client
            .send_raw(Endpoint::v1(method::V1_BILL_INFO), bill.into_bytes())
            .await
            .expect("a reply");
        let bills: Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(bills["data"].as_array().map(Vec::len), Some(1), "{name}: {bills}");
    }
}
