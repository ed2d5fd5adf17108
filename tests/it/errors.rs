//! Each error class is produced by the sandbox and mapped by the client, and transport failures
//! are sorted into "not sent" and "ambiguous".

use std::time::Duration;

use ccpayout::api::types::*;
use ccpayout::api::{CallError, ErrorClass};
use ccpayout::sandbox::{Faults, RateLimit, SandboxConfig};
use ccpayout::util::clock::OffsetClock;

use crate::helpers::*;

fn api_class(result: Result<impl std::fmt::Debug, CallError>) -> (i64, ErrorClass) {
    match result {
        Err(CallError::Api(e)) => (e.code, e.class),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn retry_later_comes_from_internal_errors_and_suspended_chains() {
    let api = TestApi::demo().await;
    api.sandbox
        .force_error(method::APPLY_APP_WITHDRAW_TO_NETWORK, 11002, "Internal", 1);
    let first = api
        .client
        .apply_app_withdraw_to_network(&trx_withdraw("rl-1", "2"))
        .await;
    assert_eq!(api_class(first), (11002, ErrorClass::RetryLater));
    // Nothing was committed, so the same orderId goes through afterwards.
    api.client
        .apply_app_withdraw_to_network(&trx_withdraw("rl-1", "2"))
        .await
        .unwrap();

    // ARBITRUM is in maintenance in the demo catalogue.
    let mut req = trx_withdraw("rl-2", "2");
    req.chain = "ARBITRUM".into();
    req.address = EVM_ADDRESS.into();
    assert_eq!(
        api_class(api.client.apply_app_withdraw_to_network(&req).await),
        (14004, ErrorClass::RetryLater)
    );
    assert!(api.sandbox.ledger().payouts_for("rl-2").is_empty());
}

#[tokio::test]
async fn rate_limited_past_the_burst_on_a_frozen_clock() {
    let config = SandboxConfig {
        rate_limit: Some(RateLimit {
            per_second: 1.0,
            burst: 3,
        }),
        ..SandboxConfig::default()
    };
    let api = TestApi::start(config).await;
    for _ in 0..3 {
        api.client.get_coin_list().await.unwrap();
    }
    assert_eq!(
        api_class(api.client.get_coin_list().await),
        (11004, ErrorClass::RateLimited)
    );
    api.clock.advance(Duration::from_secs(1));
    api.client.get_coin_list().await.unwrap();
}

#[tokio::test]
async fn daily_limit_until_the_day_resets() {
    let config = SandboxConfig {
        daily_create_limit: Some(2),
        day_length: Duration::from_secs(60),
        ..SandboxConfig::default()
    };
    let api = TestApi::start(config).await;
    api.client
        .apply_app_withdraw_to_network(&trx_withdraw("day-1", "2"))
        .await
        .unwrap();
    api.client
        .apply_app_withdraw_to_network(&trx_withdraw("day-2", "2"))
        .await
        .unwrap();
    let third = api
        .client
        .apply_app_withdraw_to_network(&trx_withdraw("day-3", "2"))
        .await;
    assert_eq!(api_class(third), (11009, ErrorClass::DailyLimit));
    // Reads are not capped by the create limit.
    api.client.get_coin_list().await.unwrap();
    api.clock.advance(Duration::from_secs(60));
    api.client
        .apply_app_withdraw_to_network(&trx_withdraw("day-3", "2"))
        .await
        .unwrap();
}

#[tokio::test]
async fn duplicate_order_ids_ask_for_reconciliation() {
    let api = TestApi::demo().await;
    api.client
        .apply_app_withdraw_to_network(&trx_withdraw("dup-1", "2"))
        .await
        .unwrap();
    let again = api
        .client
        .apply_app_withdraw_to_network(&trx_withdraw("dup-1", "2"))
        .await;
    assert_eq!(api_class(again), (11011, ErrorClass::DuplicateReconcile));
    assert_eq!(api.sandbox.ledger().payouts_for("dup-1").len(), 1);
}

#[tokio::test]
async fn not_found_for_an_order_never_created() {
    let api = TestApi::demo().await;
    let query = WithdrawRecordQuery {
        order_id: Some("never-created".into()),
        record_id: None,
    };
    assert_eq!(
        api_class(api.client.get_app_withdraw_record(&query).await),
        (11003, ErrorClass::NotFound)
    );
}

#[tokio::test]
async fn clock_when_the_timestamp_is_ten_minutes_old() {
    let api = TestApi::demo().await;
    let late = OffsetClock::new(api.clock.clone(), -600_000);
    let client = api.client_with(late, api.sandbox.app_id(), "ccpayout-sandbox-secret");
    assert_eq!(api_class(client.get_coin_list().await), (11006, ErrorClass::Clock));
}

#[tokio::test]
async fn permanent_for_requests_that_can_never_succeed() {
    let api = TestApi::demo().await;
    // USDT on TRX takes 6 decimals.
    let precision = api
        .client
        .apply_app_withdraw_to_network(&trx_withdraw("perm-1", "1.0000001"))
        .await;
    assert_eq!(api_class(precision), (14013, ErrorClass::Permanent));
    let mut bad_address = trx_withdraw("perm-2", "5");
    bad_address.address = EVM_ADDRESS.into();
    assert_eq!(
        api_class(api.client.apply_app_withdraw_to_network(&bad_address).await),
        (14007, ErrorClass::Permanent)
    );
    let mut memo_missing = trx_withdraw("perm-3", "5");
    memo_missing.coin_id = 1462; // XRP
    memo_missing.chain = "XRP".into();
    memo_missing.address = XRP_ADDRESS.into();
    assert_eq!(
        api_class(api.client.apply_app_withdraw_to_network(&memo_missing).await),
        (14003, ErrorClass::Permanent)
    );
    assert!(api.sandbox.ledger().payouts.is_empty());
}

#[tokio::test]
async fn operator_action_for_credentials_balance_and_whitelist() {
    let api = TestApi::demo().await;
    let wrong_secret = api.client_with(api.clock.clone(), api.sandbox.app_id(), "not-the-secret");
    assert_eq!(
        api_class(wrong_secret.get_coin_list().await),
        (11005, ErrorClass::OperatorAction)
    );
    let wrong_app = api.client_with(api.clock.clone(), "someone-else", "ccpayout-sandbox-secret");
    assert_eq!(
        api_class(wrong_app.get_coin_list().await),
        (12001, ErrorClass::OperatorAction)
    );

    api.sandbox.set_balance("USDT", "10");
    let too_much = api
        .client
        .apply_app_withdraw_to_network(&trx_withdraw("op-1", "11"))
        .await;
    assert_eq!(api_class(too_much), (14000, ErrorClass::OperatorAction));

    // USDT on POLYGON pays its fee in MATIC.
    api.sandbox.set_balance("MATIC", "0");
    let mut polygon = trx_withdraw("op-2", "1");
    polygon.chain = "POLYGON".into();
    polygon.address = EVM_ADDRESS.into();
    assert_eq!(
        api_class(api.client.apply_app_withdraw_to_network(&polygon).await),
        (14011, ErrorClass::OperatorAction)
    );

    let whitelisted = TestApi::start(SandboxConfig {
        ip_whitelist: Some(vec!["203.0.113.7".parse().unwrap()]),
        ..SandboxConfig::default()
    })
    .await;
    assert_eq!(
        api_class(whitelisted.client.get_coin_list().await),
        (12002, ErrorClass::OperatorAction)
    );
}

#[tokio::test]
async fn unknown_codes_are_kept_and_never_success() {
    let api = TestApi::demo().await;
    api.sandbox
        .force_error(method::APPLY_APP_WITHDRAW_TO_NETWORK, 19999, "something new", 1);
    let err = api
        .client
        .apply_app_withdraw_to_network(&trx_withdraw("unk-1", "2"))
        .await
        .unwrap_err();
    let e = err.api().expect("an API error");
    assert_eq!(
        (e.code, e.class, e.msg.as_str()),
        (19999, ErrorClass::Unknown, "something new")
    );
}

#[tokio::test]
async fn a_reply_dropped_after_commit_is_ambiguous_and_the_payout_exists() {
    let api = TestApi::demo().await;
    api.sandbox.set_faults(Faults {
        drop_after_commit: 1.0,
        ..Faults::default()
    });
    let err = api
        .client
        .apply_app_withdraw_to_network(&trx_withdraw("amb-1", "2"))
        .await
        .unwrap_err();
    assert!(err.is_ambiguous(), "{err}");
    assert_eq!(api.sandbox.ledger().payouts_for("amb-1").len(), 1);

    // Reconciling by orderId tells what happened; reads are not faulted by default.
    let record = api
        .client
        .get_app_withdraw_record(&WithdrawRecordQuery {
            order_id: Some("amb-1".into()),
            record_id: None,
        })
        .await
        .unwrap();
    assert_eq!(record.order_id, "amb-1");
}

#[tokio::test]
async fn a_reply_dropped_before_commit_is_also_ambiguous_but_nothing_exists() {
    let api = TestApi::demo().await;
    api.sandbox.set_faults(Faults {
        drop_before_commit: 1.0,
        ..Faults::default()
    });
    let err = api
        .client
        .apply_app_withdraw_to_network(&trx_withdraw("amb-2", "2"))
        .await
        .unwrap_err();
    assert!(err.is_ambiguous(), "{err}");
    assert!(api.sandbox.ledger().payouts_for("amb-2").is_empty());
    let query = WithdrawRecordQuery {
        order_id: Some("amb-2".into()),
        record_id: None,
    };
    assert_eq!(
        api_class(api.client.get_app_withdraw_record(&query).await),
        (11003, ErrorClass::NotFound)
    );
}

#[tokio::test]
async fn an_http_5xx_is_ambiguous() {
    let api = TestApi::demo().await;
    api.sandbox.set_faults(Faults {
        http_5xx: 1.0,
        ..Faults::default()
    });
    let err = api
        .client
        .apply_app_withdraw_to_network(&trx_withdraw("amb-3", "2"))
        .await
        .unwrap_err();
    assert!(err.is_ambiguous(), "{err}");
    assert!(err.to_string().contains("502"), "{err}");
}

#[tokio::test]
async fn a_reply_slower_than_the_timeout_is_ambiguous_and_committed() {
    let api = TestApi::demo().await;
    api.sandbox.set_faults(Faults {
        slow: 1.0,
        slow_delay_ms: 1_500,
        ..Faults::default()
    });
    let mut config = ccpayout::api::ClientConfig {
        v2_base_url: api.sandbox.base_url(),
        v1_base_url: api.sandbox.base_url(),
        app_id: api.sandbox.app_id().to_owned(),
        app_secret: api.sandbox.app_secret().clone(),
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_millis(300),
    };
    let impatient = ccpayout::api::Client::new(config.clone(), api.clock.clone()).unwrap();
    let err = impatient
        .apply_app_withdraw_to_network(&trx_withdraw("slow-1", "2"))
        .await
        .unwrap_err();
    assert!(err.is_ambiguous(), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(api.sandbox.ledger().payouts_for("slow-1").len(), 1);

    // While the slow create is still unanswered, a resend of the orderId is a repeated submit.
    config.request_timeout = Duration::from_secs(5);
    let patient = ccpayout::api::Client::new(config, api.clock.clone()).unwrap();
    api.sandbox.set_faults(Faults::default());
    let again = patient
        .apply_app_withdraw_to_network(&trx_withdraw("slow-1", "2"))
        .await;
    let (code, class) = api_class(again);
    assert!(code == 11007 || code == 11011, "code {code}");
    assert_eq!(class, ErrorClass::DuplicateReconcile);
}

#[tokio::test]
async fn a_closed_port_is_not_sent() {
    let api = TestApi::demo().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = ccpayout::api::ClientConfig {
        v2_base_url: format!("http://127.0.0.1:{port}"),
        v1_base_url: format!("http://127.0.0.1:{port}"),
        app_id: "a".into(),
        app_secret: secrecy::SecretString::from("s"),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
    };
    let client = ccpayout::api::Client::new(config, api.clock.clone()).unwrap();
    let err = client
        .apply_app_withdraw_to_network(&trx_withdraw("ns-1", "2"))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NotSent { .. }), "{err}");
    assert_eq!(err.class(), Some(ErrorClass::RetryLater));
}
