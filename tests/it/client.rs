//! Every client method round-trips against the sandbox.

use std::time::Duration;

use ccpayout::api::types::*;
use ccpayout::api::{CallError, ErrorClass};
use ccpayout::sandbox::SandboxConfig;

use crate::helpers::*;

fn network_withdraw(order_id: &str, chain: &str, address: &str, amount: &str) -> NetworkWithdrawRequest {
    NetworkWithdrawRequest {
        order_id: order_id.into(),
        coin_id: USDT,
        chain: chain.into(),
        address: address.into(),
        memo: None,
        amount: amount.into(),
        merchant_pay_network_fee: None,
        network_fee_inquiry_id: None,
        notify_url: None,
    }
}

#[tokio::test]
async fn catalogue_methods_round_trip() {
    let api = TestApi::demo().await;
    let c = &api.client;

    let coins = c.get_coin_list().await.unwrap();
    let usdt = coins.iter().find(|coin| coin.symbol == "USDT").expect("USDT listed");
    assert_eq!(usdt.coin_id, USDT);
    let polygon = &usdt.networks["POLYGON"];
    assert_eq!(polygon.chain, "POLYGON");
    assert!(polygon.precision > 0 && polygon.can_withdraw);

    assert_eq!(c.get_coin(USDT).await.unwrap(), *usdt);

    let prices = c.get_coin_usdt_price(&[USDT, MATIC]).await.unwrap();
    assert_eq!(prices.get("1280").map(String::as_str), Some("1"));
    assert!(prices.contains_key("1329"));

    let fee = c.get_withdraw_fee(USDT, "POLYGON").await.unwrap();
    assert_eq!(
        (fee.fee.coin_id, fee.fee.coin_symbol.as_str(), fee.fee.amount.as_str()),
        (MATIC, "MATIC", "0.0213814")
    );

    assert!(
        c.check_withdrawal_address_validity("POLYGON", EVM_ADDRESS)
            .await
            .unwrap()
    );
    assert!(
        !c.check_withdrawal_address_validity("POLYGON", TRON_ADDRESS)
            .await
            .unwrap()
    );
    assert!(c.check_withdrawal_address_validity("TRX", TRON_ADDRESS).await.unwrap());

    let user = c.get_cwallet_user_id("9558861").await.unwrap();
    assert_eq!(user.cwallet_user_id, "9558861");
    assert!(
        user.cwallet_user_name.contains("***"),
        "masked: {}",
        user.cwallet_user_name
    );

    let all_chains = c.get_chain_list(&[]).await.unwrap();
    assert!(
        all_chains.iter().any(|ch| ch.chain == "ARBITRUM" && !ch.is_normal()),
        "a chain in maintenance"
    );
    let some = c
        .get_chain_list(&["TRX".to_owned(), "POLYGON".to_owned()])
        .await
        .unwrap();
    let mut names: Vec<_> = some.iter().map(|ch| ch.chain.as_str()).collect();
    names.sort();
    assert_eq!(names, ["POLYGON", "TRX"]);
    let polygon_chain = some.iter().find(|ch| ch.chain == "POLYGON").unwrap();
    assert_eq!(
        polygon_chain.tx_url("0xabc").as_deref(),
        Some("https://polygonscan.com/tx/0xabc")
    );

    assert!(!c.get_fiat_list().await.unwrap().is_empty());
    assert!(!c.get_swap_coin_list().await.unwrap().is_empty());

    let asset = c.get_app_coin_asset(USDT).await.unwrap();
    assert_eq!(
        (asset.coin_symbol.as_str(), asset.available.as_str()),
        ("USDT", "1000000")
    );
    let assets = c.get_app_coin_asset_list().await.unwrap();
    assert!(assets.iter().any(|a| a.coin_id == MATIC));
}

#[tokio::test]
async fn a_network_withdrawal_is_created_queried_and_settled() {
    let api = TestApi::demo().await;
    let c = &api.client;

    // USDT on TRX: the fee (1 USDT) is in the coin itself and the receiver pays it by default.
    let receipt = c
        .apply_app_withdraw_to_network(&network_withdraw("rt-0001", "TRX", TRON_ADDRESS, "25.5"))
        .await
        .unwrap();
    assert!(!receipt.record_id.is_empty());
    assert_eq!(c.get_app_coin_asset(USDT).await.unwrap().available, "999974.5");

    let by_order = c
        .get_app_withdraw_record(&WithdrawRecordQuery {
            order_id: Some("rt-0001".into()),
            record_id: None,
        })
        .await
        .unwrap();
    assert_eq!(by_order.record_id, receipt.record_id);
    assert_eq!(by_order.status, RecordStatus::Processing);
    assert_eq!(
        (by_order.amount.as_str(), by_order.withdraw_type.as_str()),
        ("25.5", "Network")
    );

    api.settle(Duration::from_secs(3));
    let by_record = c
        .get_app_withdraw_record(&WithdrawRecordQuery {
            record_id: Some(receipt.record_id.clone()),
            order_id: None,
        })
        .await
        .unwrap();
    assert_eq!(by_record.status, RecordStatus::Success);
    assert!(!by_record.tx_id.is_empty());
    let fee = by_record.fee.expect("network withdrawals carry their fee");
    assert_eq!((fee.coin_symbol.as_str(), fee.amount.as_str()), ("USDT", "1"));

    // USDT on POLYGON: the fee is charged in MATIC, the native coin.
    let mut req = network_withdraw("rt-0002", "POLYGON", EVM_ADDRESS, "10");
    req.merchant_pay_network_fee = Some(true);
    c.apply_app_withdraw_to_network(&req).await.unwrap();
    assert_eq!(c.get_app_coin_asset(MATIC).await.unwrap().available, "4999.9786186");

    let page = c
        .get_app_withdraw_record_list(&WithdrawRecordListQuery {
            order_ids: vec!["rt-0001".into(), "rt-0002".into(), "never-sent".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut ids: Vec<_> = page.records.iter().map(|r| r.order_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["rt-0001", "rt-0002"]);
    assert_eq!(page.next_id, "");
}

#[tokio::test]
async fn record_lists_page_by_twenty() {
    let api = TestApi::demo().await;
    for i in 0..45 {
        api.client
            .apply_app_withdraw_to_network(&network_withdraw(&format!("page-{i:03}"), "TRX", TRON_ADDRESS, "2"))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut next_id = None;
    let mut pages = 0;
    loop {
        let page = api
            .client
            .get_app_withdraw_record_list(&WithdrawRecordListQuery {
                coin_id: Some(USDT),
                next_id,
                ..Default::default()
            })
            .await
            .unwrap();
        pages += 1;
        assert!(page.records.len() <= RECORD_LIST_PAGE_SIZE);
        seen.extend(page.records.into_iter().map(|r| r.order_id));
        if page.next_id.is_empty() {
            break;
        }
        next_id = Some(page.next_id);
    }
    assert_eq!(pages, 3);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 45);
}

#[tokio::test]
async fn a_cwallet_transfer_has_no_fee_and_no_webhook_txid() {
    let api = TestApi::demo().await;
    let receipt = api
        .client
        .apply_app_withdraw_to_cwallet(&CwalletWithdrawRequest {
            order_id: "cw-0001".into(),
            coin_id: USDT,
            cwallet_user: "alice@example.com".into(),
            amount: "12.34".into(),
        })
        .await
        .unwrap();
    api.settle(Duration::from_secs(3));
    let record = api
        .client
        .get_app_withdraw_record(&WithdrawRecordQuery {
            record_id: Some(receipt.record_id),
            order_id: None,
        })
        .await
        .unwrap();
    assert_eq!(record.withdraw_type, "Cwallet");
    assert_eq!(record.status, RecordStatus::Success);
    assert_eq!(record.tx_id, "");
    assert!(record.fee.is_none());
    assert_eq!(
        api.client.get_app_coin_asset(USDT).await.unwrap().available,
        "999987.66"
    );

    // An unknown Cwallet user is refused, and nothing is paid.
    let err = api
        .client
        .apply_app_withdraw_to_cwallet(&CwalletWithdrawRequest {
            order_id: "cw-0002".into(),
            coin_id: USDT,
            cwallet_user: "99999999".into(),
            amount: "1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(11015));
    assert_eq!(api.sandbox.ledger().payouts_for("cw-0002").len(), 0);
}

#[tokio::test]
async fn a_failed_payout_is_refunded() {
    let config = SandboxConfig {
        failing_recipients: vec![TRON_ADDRESS.to_owned()],
        ..SandboxConfig::default()
    };
    let api = TestApi::start(config).await;
    api.client
        .apply_app_withdraw_to_network(&network_withdraw("fail-1", "TRX", TRON_ADDRESS, "100"))
        .await
        .unwrap();
    assert_eq!(api.client.get_app_coin_asset(USDT).await.unwrap().available, "999900");
    api.settle(Duration::from_secs(3));
    let record = api
        .client
        .get_app_withdraw_record(&WithdrawRecordQuery {
            order_id: Some("fail-1".into()),
            record_id: None,
        })
        .await
        .unwrap();
    assert_eq!(record.status, RecordStatus::Failed);
    assert!(!record.reason.is_empty());
    assert_eq!(api.client.get_app_coin_asset(USDT).await.unwrap().available, "1000000");
}

#[tokio::test]
async fn v1_withdraw_and_bill_info_round_trip_with_signed_replies() {
    let api = TestApi::demo().await;
    let token_id = api
        .sandbox
        .v1_token_id("USDT", "TRX")
        .expect("USDT on TRX has a v1 token id");
    let receipt = api
        .client
        .v1_withdraw(&V1WithdrawRequest {
            merchant_order_id: "v1-0001".into(),
            address: TRON_ADDRESS.into(),
            token_id,
            value: "5".into(),
            memo: None,
            merchant_pays_fee: Some(false),
        })
        .await
        .unwrap();
    assert!(!receipt.record_id.is_empty());
    assert_eq!(receipt.net_receivable, "4");

    api.settle(Duration::from_secs(3));
    let bills = api
        .client
        .v1_bill_info(&["v1-0001".to_owned(), "unknown".to_owned()])
        .await
        .unwrap();
    assert_eq!(bills.len(), 1);
    assert_eq!(bills[0].order_detail.merchant_order_id, "v1-0001");
    assert_eq!(v1_status(&bills[0].order_detail.status), RecordStatus::Success);

    // orderIds are unique across v1 and v2.
    let err = api
        .client
        .apply_app_withdraw_to_network(&network_withdraw("v1-0001", "TRX", TRON_ADDRESS, "5"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), Some(ErrorClass::DuplicateReconcile));
}

#[tokio::test]
async fn v1_reads_round_trip_with_signed_replies_and_name_coins_by_uuid() {
    let api = TestApi::demo().await;
    let c = &api.client;
    let token = |coin: &str, chain: &str| api.sandbox.v1_token_id(coin, chain).expect("token");

    let coins = c.v1_coin_all().await.unwrap();
    let usdt = coins.iter().find(|coin| coin.symbol == "USDT").expect("USDT listed");
    assert_eq!(usdt.coin_id.len(), 36, "a UUID: {}", usdt.coin_id);
    assert_eq!(usdt.status, Some(1));
    let on_trx = usdt.tokens.iter().find(|t| t.chain == "TRX").expect("USDT on TRX");
    assert_eq!(on_trx.token_id, token("USDT", "TRX"));
    assert_eq!(c.v1_support_token().await.unwrap(), coins);

    let networks = c.v1_token_chain(&token("USDT", "POLYGON")).await.unwrap();
    let polygon = networks.iter().find(|n| n.chain == "POLYGON").expect("POLYGON");
    assert_eq!(polygon.network_fee_crypto, "MATIC");
    // The fee coin is a token UUID of the list, not the v2 number 1329 (R8).
    assert_eq!(polygon.network_coin_id, token("MATIC", "POLYGON"));
    assert!(
        coins
            .iter()
            .any(|coin| coin.symbol == "MATIC" && coin.tokens.iter().any(|t| t.token_id == polygon.network_coin_id))
    );

    let fee = c
        .v1_network_fee(&V1NetworkFeeQuery {
            token_id: token("USDT", "POLYGON"),
            address: Some(EVM_ADDRESS.into()),
            memo: None,
        })
        .await
        .unwrap();
    assert_eq!((fee.crypto.as_str(), fee.fee.as_str()), ("MATIC", "0.0213814"));

    let assets = c.v1_assets(None).await.unwrap();
    let usdt_balance = assets.iter().find(|a| a.crypto == "USDT").expect("USDT balance");
    assert_eq!(
        (usdt_balance.coin_id.as_str(), usdt_balance.value.as_str()),
        (usdt.coin_id.as_str(), "1000000")
    );
    let one = c.v1_assets(Some(&usdt.coin_id)).await.unwrap();
    assert_eq!(one, std::slice::from_ref(usdt_balance));

    let user = c.v1_check_user("9558861").await.unwrap();
    assert_eq!(user.c_id, "9558861");
    assert!(user.nickname.contains("***"), "masked: {}", user.nickname);
    let err = c.v1_check_user("777777").await.unwrap_err();
    assert_eq!(err.code(), Some(11015));

    // Every reply above was a signed v1 success (the client verifies them), and nothing went to
    // v2.
    let counts = c.request_counts();
    assert!(counts.keys().all(|endpoint| endpoint.starts_with("v1/")), "{counts:?}");
    assert_eq!(counts.get("v1/coin/all"), Some(&1));
    assert!(
        api.sandbox
            .stats()
            .requests
            .iter()
            .all(|r| r.endpoint.starts_with("v1/")),
        "{:?}",
        api.sandbox.stats()
    );
}

#[tokio::test]
async fn concurrent_duplicate_creates_make_exactly_one_payout() {
    let api = TestApi::demo().await;
    let request = network_withdraw("dup-0001", "TRX", TRON_ADDRESS, "3");
    let calls = (0..16).map(|_| {
        let client = api.client.clone();
        let request = request.clone();
        tokio::spawn(async move { client.apply_app_withdraw_to_network(&request).await })
    });
    let mut created = 0;
    let mut duplicates = 0;
    for call in calls.collect::<Vec<_>>() {
        match call.await.unwrap() {
            Ok(_) => created += 1,
            Err(CallError::Api(e)) if e.class == ErrorClass::DuplicateReconcile => duplicates += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((created, duplicates), (1, 15));
    let ledger = api.sandbox.ledger();
    assert_eq!(ledger.payouts_for("dup-0001").len(), 1);
    assert_eq!(ledger.attempts_for("dup-0001").len(), 16);
    assert_eq!(api.client.get_app_coin_asset(USDT).await.unwrap().available, "999997");
}

// ---------------------------------------------------------------------------------------------
// Request statistics, counted by the client against a real sandbox

mod stats {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use ccpayout::api::client::RequestStats;
    use ccpayout::api::types::*;
    use ccpayout::api::{CallError, Client, ClientConfig, Endpoint};
    use ccpayout::sandbox::{Sandbox, SandboxConfig};
    use ccpayout::util::clock::{Clock, ManualClock};

    fn counts(entries: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
        entries
            .iter()
            .map(|&(endpoint, code, n)| ((endpoint.to_owned(), code.to_owned()), n))
            .collect()
    }

    /// Per endpoint, the outcomes add up to the requests sent.
    fn assert_outcomes_add_up(c: &Client) {
        let mut answered: BTreeMap<String, u64> = BTreeMap::new();
        for ((endpoint, _), n) in c.request_stats().by_endpoint_and_code {
            *answered.entry(endpoint).or_insert(0) += n;
        }
        assert_eq!(answered, c.request_counts());
    }

    const T0: i64 = 1_700_000_000_000;

    async fn sandbox_client() -> (Sandbox, Client, Arc<ManualClock>) {
        let clock = ManualClock::new(T0);
        let sandbox = Sandbox::start(SandboxConfig::default(), clock.clone())
            .await
            .expect("sandbox starts");
        let config = ClientConfig {
            v2_base_url: sandbox.base_url(),
            v1_base_url: sandbox.base_url(),
            app_id: sandbox.app_id().to_owned(),
            app_secret: sandbox.app_secret().clone(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        };
        let client = Client::new(config, clock.clone()).expect("client builds");
        (sandbox, client, clock)
    }

    #[tokio::test]
    async fn requests_are_counted_once_by_endpoint_and_code() {
        let (sandbox, c, clock) = sandbox_client().await;
        assert_eq!(c.request_stats(), RequestStats::default());

        // Two successes, the second through a clone: clones share the counts.
        c.get_coin_list().await.expect("coin list");
        clock.advance(Duration::from_secs(5));
        c.clone().get_coin_list().await.expect("coin list");
        let last_success = clock.now_ms();

        // An API error code.
        clock.advance(Duration::from_secs(5));
        sandbox.force_error(method::GET_COIN_LIST, 11004, "RateLimit", 1);
        let err = c.get_coin_list().await.unwrap_err();
        assert_eq!(err.code(), Some(11004), "{err}");

        // A v1 call: its success reply is a signed envelope, counted by its code too.
        clock.advance(Duration::from_secs(5));
        let bills = c.v1_bill_info(&["none".to_owned()]).await.expect("bill info");
        assert!(bills.is_empty());
        let v1_success = clock.now_ms();

        // An HTTP error without a CCPayment reply counts by its status.
        clock.advance(Duration::from_secs(5));
        sandbox.set_faults(ccpayout::sandbox::Faults {
            http_5xx: 1.0,
            on_reads: true,
            ..Default::default()
        });
        let err = c.get_fiat_list().await.unwrap_err();
        assert!(err.is_ambiguous(), "{err}");
        sandbox.set_faults(ccpayout::sandbox::Faults::default());

        let stats = c.request_stats();
        assert_eq!(
            stats.by_endpoint_and_code,
            counts(&[
                ("getCoinList", "10000", 2),
                ("getCoinList", "11004", 1),
                ("getFiatList", "http_502", 1),
                ("v1/bill/info", "10000", 1),
            ])
        );
        // The time of the last accepted success, not of the later failures.
        assert!(v1_success > last_success);
        assert_eq!(stats.last_success_ms, Some(v1_success));
        assert_outcomes_add_up(&c);

        // A transport failure: the sandbox is gone. (A pooled connection the server closed may
        // fail after the request was written, which is ambiguous; either way no reply came.)
        sandbox.shutdown().await;
        let err = c.get_coin_list().await.unwrap_err();
        assert!(
            matches!(err, CallError::NotSent { .. } | CallError::Ambiguous { .. }),
            "{err}"
        );
        let stats = c.request_stats();
        assert_eq!(
            stats.by_endpoint_and_code[&("getCoinList".to_owned(), "transport".to_owned())],
            1
        );
        assert_eq!(stats.last_success_ms, Some(v1_success));
        assert_outcomes_add_up(&c);
    }

    #[tokio::test]
    async fn send_raw_then_interpret_is_one_request() {
        let (sandbox, c, _clock) = sandbox_client().await;
        let ep = Endpoint::v2(method::GET_COIN_LIST);
        let reply = c.send_raw(ep, b"{}".to_vec()).await.expect("reply");
        let coins: CoinList = c.interpret(ep, &reply).expect("coins");
        assert!(!coins.coins.is_empty());
        sandbox.force_error(method::GET_COIN_LIST, 11009, "ReqDailyLimit", 1);
        let reply = c.send_raw(ep, b"{}".to_vec()).await.expect("reply");
        let err = c.interpret::<CoinList>(ep, &reply).unwrap_err();
        assert_eq!(err.code(), Some(11009), "{err}");
        let stats = c.request_stats();
        assert_eq!(
            stats.by_endpoint_and_code,
            counts(&[("getCoinList", "10000", 1), ("getCoinList", "11009", 1)])
        );
        assert_eq!(stats.last_success_ms, Some(T0));
        // interpret alone counts nothing.
        let _ = c.interpret::<CoinList>(ep, &reply);
        assert_eq!(c.request_stats(), stats);
        sandbox.shutdown().await;
    }
}

/// Reports build explorer links themselves (they may not import the client's types); they
/// must agree with what the client reads from CCPayment's chain list.
#[test]
fn report_explorer_links_follow_chain_info_tx_url() {
    for (base, tx) in [
        ("https://polygonscan.com/tx/%s", "0xabc"),
        ("https://tronscan.org/#/transaction/", "abc"),
        ("https://x/%s?again=%s", "t"),
        ("", "t"),
        ("https://x/%s", ""),
    ] {
        let chain = ChainInfo {
            base_url: base.into(),
            ..ChainInfo::default()
        };
        assert_eq!(
            ccpayout::report::explorer_link(base, tx),
            chain.tx_url(tx).unwrap_or_default(),
            "{base} {tx}"
        );
    }
}

/// R5 (ccpayment-api.md §5): a call without parameters is sent with an empty body, signed over
/// exactly the bytes sent, as CCPayment's own examples do; `{}` remains available for accounts
/// that want it.
#[tokio::test]
async fn parameter_less_calls_send_an_empty_body_by_default() {
    use ccpayout::api::NoParams;
    let api = TestApi::demo().await;
    assert_eq!(api.client.no_params(), NoParams::Empty);
    assert_eq!(NoParams::Empty.body(), b"");
    assert!(!api.client.get_coin_list().await.unwrap().is_empty());
    assert!(!api.client.get_app_coin_asset_list().await.unwrap().is_empty());
    let braces = api.client.clone().sending_no_params_as(NoParams::Braces);
    assert_eq!(NoParams::Braces.body(), b"{}");
    assert!(!braces.get_coin_list().await.unwrap().is_empty());
}

/// The sandbox's added latency is what the client measures: its round-trip histogram and the
/// pacing's average see it, nothing is left counted as in flight, and the connections are reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_are_measured_and_connections_reused() {
    let api = crate::helpers::TestApi::start_live(ccpayout::sandbox::SandboxConfig {
        latency: ccpayout::sandbox::direct::Latency {
            min: std::time::Duration::from_millis(120),
            max: std::time::Duration::from_millis(120),
        },
        ..ccpayout::sandbox::SandboxConfig::default()
    })
    .await;
    let pacing = std::sync::Arc::new(ccpayout::api::Pacing::new(
        &ccpayout::api::pacing::PacingSettings {
            rate_per_second: 100,
            burst: 100,
            read_rate_per_second: 100,
            daily_budget: None,
            day: ccpayout::api::pacing::gate::DayClock::UTC_MIDNIGHT,
            max_in_flight: 64,
        },
        ccpayout::api::pacing::Restored::default(),
        ccpayout::util::clock::system(),
        1,
    ));
    let client = api.client.clone().paced(pacing.clone());
    for _ in 0..6 {
        client.get_coin_list().await.expect("coins");
    }
    let stats = client.request_stats();
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.latency_buckets.iter().sum::<u64>(), 6);
    // 120 ms falls in the (0.1, 0.25] bucket.
    let bucket = ccpayout::api::client::LATENCY_BOUNDS_SECS
        .iter()
        .position(|b| *b == 0.25)
        .unwrap();
    assert_eq!(stats.latency_buckets[bucket], 6, "{:?}", stats.latency_buckets);
    let avg = pacing.latency_ms().expect("measured");
    assert!((115.0..400.0).contains(&avg), "{avg}");
    // 100/s at about 120 ms: about 16 in flight (never the initial 8 once measured).
    assert!(pacing.in_flight_limit() >= 16, "{}", pacing.in_flight_limit());
    // One client, sequential calls: connections are kept alive and reused (one, or a second
    // when a call starts before the previous one's connection is back in the pool on a loaded
    // machine), never one per request.
    let connections = api.sandbox.stats().connections;
    assert!(
        (1..=3).contains(&connections),
        "{connections} connections for 6 requests"
    );
}
