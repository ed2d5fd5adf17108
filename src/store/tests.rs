//! The store's tests: each opens a store in its own temporary directory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::line_hash;
use super::*;
use crate::model::call::NetworkWithdrawal;
use crate::model::call::WithdrawCall;
use crate::model::record::{Approval, BatchState, InputRow};
use crate::model::state::OrderState;

fn batch_id(seed: &str) -> String {
    line_hash(seed)
}

fn batch(seed: &str, created_ms: i64, orders: u32) -> BatchRecord {
    let batch_id = batch_id(seed);
    BatchRecord {
        name: format!("{seed}-{}", &batch_id[..12]),
        batch_id: batch_id.into(),
        source: format!("/inbox/{seed}.csv"),
        format: "csv".into(),
        api: crate::model::ApiGeneration::V2,
        plan_digest: line_hash(&format!("plan {seed}")),
        created_ms,
        updated_ms: created_ms,
        rows: u64::from(orders),
        orders,
        refused: Vec::new(),
        approval: Approval::NotNeeded,
        state: BatchState::Open,
        signer: None,
        maker_may_approve: true,
        recipients: None,
        bundles: None,
        retry_of: None,
    }
}

fn order(batch: &BatchRecord, seq: u32, order_id: &str) -> OrderRecord {
    let amount = format!("{}.5", seq + 1);
    OrderRecord {
        order_id: order_id.into(),
        batch_id: batch.batch_id.clone(),
        seq,
        line: u64::from(seq) + 2,
        input: InputRow {
            order_id: order_id.into(),
            recipient: "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K".into(),
            coin: "USDT".into(),
            chain: "TRX".into(),
            amount: amount.clone(),
            ..InputRow::default()
        },
        call: WithdrawCall::Network(NetworkWithdrawal {
            order_id: order_id.into(),
            coin_id: 1280,
            chain: "TRX".into(),
            address: "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K".into(),
            memo: None,
            amount,
            merchant_pay_network_fee: None,
            network_fee_inquiry_id: None,
            notify_url: None,
        }),
        payload_digest: line_hash(&format!("payload {order_id}")),
        state: OrderState::Planned,
        attempts: 0,
        record_id: None,
        tx_id: None,
        fee: None,
        error: None,
        created_ms: batch.created_ms,
        updated_ms: batch.created_ms,
        first_sent_ms: None,
        last_sent_ms: None,
        final_ms: None,
        next_check_ms: None,
        checks: 0,
        absent: None,
        review: None,
        task: None,
    }
}

fn orders(batch: &BatchRecord, prefix: &str) -> Vec<OrderRecord> {
    (0..batch.orders)
        .map(|seq| order(batch, seq, &format!("{prefix}-{seq:04}")))
        .collect()
}

/// `order` moved to `state` at `at_ms`, as a change from the state it is in.
fn moved(order: &OrderRecord, state: OrderState, at_ms: i64, event: &'static str) -> Change {
    let mut next = order.clone();
    next.state = state;
    next.updated_ms = at_ms;
    Change {
        from: Some(order.kind()),
        order: next,
        event,
        detail: None,
    }
}

fn ids(orders: &[OrderRecord]) -> Vec<&str> {
    orders.iter().map(|o| o.order_id.as_str()).collect()
}

fn open(dir: &Path) -> Store {
    Store::open(dir).unwrap_or_else(|e| panic!("{e}"))
}

fn audit_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(AUDIT_FILE)).unwrap()
}

fn count(store: &Store, batch_id: Option<&str>, kind: StateKind) -> u64 {
    store.counts(batch_id).unwrap()[&kind]
}

#[test]
fn the_store_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Store>();
    shareable::<StoreError>();
}

#[test]
fn a_created_batch_and_its_orders_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let older = batch("march", 1_000, 3);
    let newer = batch("april", 2_000, 4);
    store.create_batch(&older, &orders(&older, "mar")).unwrap();
    // Orders given out of seq order still come back in seq order.
    let mut april = orders(&newer, "apr");
    april.reverse();
    store.create_batch(&newer, &april).unwrap();

    assert_eq!(store.batch(&older.batch_id).unwrap(), Some(older.clone()));
    assert_eq!(store.batch(&batch_id("nope")).unwrap(), None);
    assert_eq!(
        store.batches().unwrap(),
        vec![newer.clone(), older.clone()],
        "newest first"
    );
    assert_eq!(
        ids(&store.batch_orders(&newer.batch_id).unwrap()),
        ["apr-0000", "apr-0001", "apr-0002", "apr-0003"]
    );
    assert_eq!(store.order("mar-0001").unwrap(), Some(order(&older, 1, "mar-0001")));
    assert_eq!(store.order("mar-0009").unwrap(), None);

    let mut seen = Vec::new();
    store
        .for_each_batch_order(&older.batch_id, &mut |o| {
            seen.push(o.seq);
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, [0, 1, 2]);
    // The visitor's error stops the walk and comes back.
    let mut visits = 0;
    let stopped = store.for_each_batch_order(&older.batch_id, &mut |_| {
        visits += 1;
        Err(StoreError::Db("enough".into()))
    });
    assert!(matches!(stopped, Err(StoreError::Db(m)) if m == "enough"));
    assert_eq!(visits, 1);

    // By id, unique prefix (any case), and name.
    let find = |key: &str| store.find_batch(key).unwrap().map(|b| b.batch_id);
    assert_eq!(find(&older.batch_id), Some(older.batch_id.clone()));
    assert_eq!(find(&newer.batch_id[..6]), Some(newer.batch_id.clone()));
    assert_eq!(
        find(&newer.batch_id[..10].to_ascii_uppercase()),
        Some(newer.batch_id.clone())
    );
    assert_eq!(find(&older.name), Some(older.batch_id.clone()));
    assert_eq!(find(&older.batch_id[..5]), None, "a prefix needs six digits");
    assert_eq!(
        find("april"),
        Some(newer.batch_id.clone()),
        "the file's stem, when unique"
    );
    assert_eq!(find("apri"), None, "a stem is whole");
    assert_eq!(find("may"), None);

    assert_eq!(count(&store, Some(&newer.batch_id), StateKind::Planned), 4);
    assert_eq!(count(&store, None, StateKind::Planned), 7);
    assert_eq!(
        count(&store, None, StateKind::Queued),
        0,
        "every state is present, zeros included"
    );
    assert_eq!(store.counts(None).unwrap().len(), StateKind::ALL.len());
}

#[test]
fn an_ambiguous_prefix_is_an_error_naming_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Two ids that share their first six hex digits.
    let mut a = batch("a", 1, 0);
    let mut b = batch("b", 2, 0);
    a.batch_id = format!("abcdef{}", &a.batch_id[6..]).into();
    b.batch_id = format!("abcdef{}", &b.batch_id[6..]).into();
    store.create_batch(&a, &[]).unwrap();
    store.create_batch(&b, &[]).unwrap();
    let err = store.find_batch("abcdef").unwrap_err().to_string();
    assert!(
        err.contains(a.batch_id.as_str()) && err.contains(b.batch_id.as_str()),
        "{err}"
    );
    assert_eq!(
        store.find_batch(&a.batch_id[..8]).unwrap().map(|x| x.batch_id),
        Some(a.batch_id)
    );
}

#[test]
fn create_batch_refuses_an_existing_batch_and_an_order_id_of_another_batch_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = batch("first", 1_000, 3);
    store.create_batch(&first, &orders(&first, "pay")).unwrap();

    let again = store.create_batch(&first, &orders(&first, "other"));
    assert!(
        matches!(&again, Err(StoreError::BatchExists(id)) if *id == first.batch_id),
        "{again:?}"
    );
    assert_eq!(store.order("other-0000").unwrap(), None);

    // The second batch reuses pay-0002 at its end: nothing of it may be written.
    let second = batch("second", 2_000, 3);
    let mut rows = orders(&second, "new");
    rows[2] = order(&second, 2, "pay-0002");
    let err = store.create_batch(&second, &rows).unwrap_err();
    match &err {
        StoreError::OrderExists { order_id, batch_id } => {
            assert_eq!(
                (order_id.as_str(), batch_id.as_str()),
                ("pay-0002", first.batch_id.as_str())
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("\"pay-0002\""), "{err}");
    assert_eq!(store.batch(&second.batch_id).unwrap(), None);
    assert_eq!(store.order("new-0000").unwrap(), None);
    assert_eq!(
        store.order("pay-0002").unwrap().map(|o| o.batch_id),
        Some(first.batch_id.clone())
    );
    assert_eq!(count(&store, None, StateKind::Planned), 3);
    assert_eq!(
        store
            .orders_by_state(StateKind::Planned, None, None, 100)
            .unwrap()
            .len(),
        3
    );

    // A caller's repeated order_id or seq, or an order of another batch, is refused too.
    let mut twice = orders(&second, "dup");
    twice[1].order_id = "dup-0000".into();
    assert!(matches!(store.create_batch(&second, &twice), Err(StoreError::Db(m)) if m.contains("twice")));
    let mut same_seq = orders(&second, "seq");
    same_seq[1].seq = 0;
    assert!(matches!(store.create_batch(&second, &same_seq), Err(StoreError::Db(m)) if m.contains("twice")));
    let foreign = vec![order(&first, 9, "foreign")];
    assert!(matches!(store.create_batch(&second, &foreign), Err(StoreError::Db(m)) if m.contains("belongs to")));
}

#[test]
fn an_interrupted_creation_is_invisible_and_removed_on_retry_and_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let big = batch("big", 1_000, 10);
    let rows = orders(&big, "big");
    // Chunks of 3: the crash lands after four committed chunks and before the batch record.
    store.create_batch_interrupted(&big, &rows[..], 3).unwrap();
    assert_eq!(store.batch(&big.batch_id).unwrap(), None);
    assert_eq!(store.order("big-0000").unwrap(), None, "leftovers are not orders");
    assert!(store.batch_orders(&big.batch_id).unwrap().is_empty());
    assert!(
        store
            .orders_by_state(StateKind::Planned, None, None, 100)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_due(StateKind::Planned, None).unwrap(), None);
    assert_eq!(count(&store, None, StateKind::Planned), 0);

    // The retry has fewer rows (the file was fixed): the old tail must not survive.
    let fixed = BatchRecord {
        orders: 6,
        ..big.clone()
    };
    store.create_batch_chunked(&fixed, &rows[..6], 4).unwrap();
    assert_eq!(store.batch_orders(&big.batch_id).unwrap().len(), 6);
    assert_eq!(store.order("big-0007").unwrap(), None);
    assert_eq!(
        store
            .orders_by_state(StateKind::Planned, None, None, 100)
            .unwrap()
            .len(),
        6
    );
    assert_eq!(count(&store, None, StateKind::Planned), 6);

    // Another interrupted creation, this time cleaned by the next open.
    let other = batch("other", 2_000, 5);
    store
        .create_batch_interrupted(&other, &orders(&other, "oth"), 2)
        .unwrap();
    drop(store);
    let store = open(dir.path());
    assert!(store.leftover_batches().unwrap().is_empty());
    let index_entries = store.orders_by_state(StateKind::Planned, None, None, 100).unwrap();
    assert_eq!(index_entries.len(), 6, "the leftovers' index entries are gone too");

    // An order_id held only by an interrupted creation of another batch does not block.
    let third = batch("third", 3_000, 2);
    store
        .create_batch_interrupted(&third, &orders(&third, "shared"), 1)
        .unwrap();
    let fourth = batch("fourth", 4_000, 2);
    store.create_batch(&fourth, &orders(&fourth, "shared")).unwrap();
    assert_eq!(
        store.order("shared-0001").unwrap().map(|o| o.batch_id),
        Some(fourth.batch_id.clone())
    );
    assert!(store.leftover_batches().unwrap().is_empty());
}

/// Entries of the orders, batch_orders, by_state and counts tables, read raw: leftovers that
/// every read ignores are counted too.
fn raw_entries(store: &Store) -> [u64; 4] {
    use redb::ReadableTableMetadata;
    let tx = store.db.begin_read().unwrap();
    [
        tx.open_table(ORDERS).unwrap().len().unwrap(),
        tx.open_table(BATCH_ORDERS).unwrap().len().unwrap(),
        tx.open_table(BY_STATE).unwrap().len().unwrap(),
        tx.open_table(COUNTS).unwrap().len().unwrap(),
    ]
}

#[test]
fn a_clash_found_in_a_later_chunk_stops_the_creation_and_leaves_nothing_visible_or_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = batch("first", 1_000, 3);
    store.create_batch(&first, &orders(&first, "pay")).unwrap();
    let before = raw_entries(&store);
    assert_eq!(before, [3, 3, 3, 1]);

    // Ten orders in chunks of 3: each fault is met after three chunks were committed.
    let second = batch("second", 2_000, 10);
    let faults = [
        "an order_id of another batch",
        "an order_id repeated from an earlier chunk",
        "a seq repeated from an earlier chunk",
        "an order of another batch",
        "fewer orders than the record says",
        "more orders than the record says",
    ];
    for fault in faults {
        let mut rows = orders(&second, "new");
        match fault {
            "an order_id of another batch" => rows[9] = order(&second, 9, "pay-0001"),
            "an order_id repeated from an earlier chunk" => rows[9].order_id = "new-0001".into(),
            "a seq repeated from an earlier chunk" => rows[9].seq = 2,
            "an order of another batch" => rows[9].batch_id = first.batch_id.clone(),
            "fewer orders than the record says" => drop(rows.pop()),
            _ => rows.push(order(&second, 10, "new-0010")),
        }
        let err = store.create_batch_chunked(&second, rows, 3).unwrap_err();
        match (fault, &err) {
            ("an order_id of another batch", StoreError::OrderExists { order_id, batch_id }) => {
                assert_eq!(
                    (order_id.as_str(), batch_id.as_str()),
                    ("pay-0001", first.batch_id.as_str())
                );
            }
            ("an order_id repeated from an earlier chunk", StoreError::Db(m)) => {
                assert!(m.contains("\"new-0001\" appears twice"), "{m}");
            }
            ("a seq repeated from an earlier chunk", StoreError::Db(m)) => {
                assert!(m.contains("seq 2 appears twice"), "{m}")
            }
            ("an order of another batch", StoreError::Db(m)) => assert!(m.contains("belongs to"), "{m}"),
            ("fewer orders than the record says", StoreError::Db(m)) => assert!(m.contains("but fewer"), "{m}"),
            ("more orders than the record says", StoreError::Db(m)) => assert!(m.contains("but more"), "{m}"),
            _ => panic!("{fault}: {err:?}"),
        }
        // Nothing visible...
        assert_eq!(store.batch(&second.batch_id).unwrap(), None, "{fault}");
        assert_eq!(store.order("new-0000").unwrap(), None, "{fault}");
        assert!(store.batch_orders(&second.batch_id).unwrap().is_empty(), "{fault}");
        assert_eq!(count(&store, None, StateKind::Planned), 3, "{fault}");
        // ...and nothing behind: the three committed chunks were removed.
        assert!(store.leftover_batches().unwrap().is_empty(), "{fault}");
        assert_eq!(raw_entries(&store), before, "{fault}");
        // The other batch's order is untouched.
        let kept = store.order("pay-0001").unwrap().unwrap();
        assert_eq!(
            (kept.batch_id.as_str(), kept.seq),
            (first.batch_id.as_str(), 1),
            "{fault}"
        );
    }

    // The same batch, without the fault, goes in whole.
    store.create_batch_chunked(&second, orders(&second, "new"), 3).unwrap();
    assert_eq!(store.batch_orders(&second.batch_id).unwrap().len(), 10);
    assert_eq!(raw_entries(&store), [13, 13, 13, 2]);
}

#[test]
fn a_creation_dropped_midway_leaves_leftovers_that_reads_ignore_and_open_removes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let kept = batch("kept", 1_000, 2);
    store.create_batch(&kept, &orders(&kept, "kept")).unwrap();
    let big = batch("dropped", 2_000, 10);
    let rows = orders(&big, "drop");

    // The order source dies after seven orders (chunks of 3): as a crash would, the unwinding
    // skips every clean-up, and two committed chunks stay behind without a batch record.
    let dying = rows
        .clone()
        .into_iter()
        .enumerate()
        .map(|(i, order)| if i == 7 { panic!("the order source died") } else { order });
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.create_batch_chunked(&big, dying, 3)
    }));
    assert!(unwound.is_err());
    assert_eq!(store.leftover_batches().unwrap(), vec![big.batch_id.clone()]);
    assert_eq!(
        raw_entries(&store)[0],
        2 + 6,
        "two chunks of the dropped batch were committed"
    );
    assert_eq!(store.batch(&big.batch_id).unwrap(), None);
    assert_eq!(store.order("drop-0000").unwrap(), None, "leftovers are not orders");
    assert!(store.batch_orders(&big.batch_id).unwrap().is_empty());
    assert_eq!(
        store
            .orders_by_state(StateKind::Planned, None, None, 100)
            .unwrap()
            .len(),
        2,
        "only the kept batch's orders are in the index's answers"
    );
    assert_eq!(count(&store, None, StateKind::Planned), 2);

    drop(store);
    let store = open(dir.path());
    assert!(store.leftover_batches().unwrap().is_empty());
    assert_eq!(raw_entries(&store), [2, 2, 2, 1], "open removed every leftover");
    assert_eq!(store.batch_orders(&kept.batch_id).unwrap().len(), 2);

    // The file comes again: the batch goes in whole.
    store.create_batch_streamed(&big, rows).unwrap();
    assert_eq!(store.batch_orders(&big.batch_id).unwrap().len(), 10);
    assert_eq!(count(&store, Some(&big.batch_id), StateKind::Planned), 10);
}

#[test]
fn commit_moves_orders_and_the_index_and_counters_follow() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = batch("a", 1_000, 6);
    let b = batch("b", 2_000, 2);
    let a_orders = orders(&a, "a");
    let b_orders = orders(&b, "b");
    store.create_batch(&a, &a_orders).unwrap();
    store.create_batch(&b, &b_orders).unwrap();

    // Release everything; then defer four of a's with different due times, and one of b's.
    let release: Vec<Change> = a_orders
        .iter()
        .chain(&b_orders)
        .map(|o| moved(o, OrderState::Queued, 5_000, "release"))
        .collect();
    store.commit(&release).unwrap();
    assert_eq!(count(&store, None, StateKind::Planned), 0);
    assert_eq!(count(&store, None, StateKind::Queued), 8);
    let queued = |id: &str| store.order(id).unwrap().unwrap();
    let defer = |id: &str, until_ms: i64| {
        moved(
            &queued(id),
            OrderState::Deferred {
                until_ms,
                reason: "11004".into(),
            },
            6_000,
            "retry",
        )
    };
    store
        .commit(&[
            defer("a-0003", 9_000),
            defer("a-0001", 7_000),
            defer("a-0004", 7_000),
            defer("b-0000", 8_000),
        ])
        .unwrap();
    store.commit(&[defer("a-0005", -50)]).unwrap();

    let deferred = |batch_id: Option<&str>, due_by: Option<i64>, limit: usize| {
        let found = store
            .orders_by_state(StateKind::Deferred, batch_id, due_by, limit)
            .unwrap();
        found.iter().map(|o| o.order_id.clone()).collect::<Vec<_>>()
    };
    // Due order, then order_id; negative due times sort first.
    assert_eq!(
        deferred(None, None, 100),
        ["a-0005", "a-0001", "a-0004", "b-0000", "a-0003"]
    );
    assert_eq!(
        deferred(None, Some(7_000), 100),
        ["a-0005", "a-0001", "a-0004"],
        "the bound is inclusive"
    );
    assert_eq!(deferred(None, Some(6_999), 100), ["a-0005"]);
    assert_eq!(deferred(None, Some(i64::MAX), 2), ["a-0005", "a-0001"]);
    assert_eq!(deferred(Some(&b.batch_id), None, 100), ["b-0000"]);
    assert_eq!(
        deferred(Some(&a.batch_id), Some(8_500), 100),
        ["a-0005", "a-0001", "a-0004"]
    );
    assert!(deferred(None, None, 0).is_empty());
    assert_eq!(store.next_due(StateKind::Deferred, None).unwrap(), Some(-50));
    assert_eq!(
        store.next_due(StateKind::Deferred, Some(&b.batch_id)).unwrap(),
        Some(8_000)
    );
    assert_eq!(store.next_due(StateKind::Submitted, None).unwrap(), None);
    // Queued orders are due at once (0).
    assert_eq!(store.next_due(StateKind::Queued, None).unwrap(), Some(0));
    let queued_a = store
        .orders_by_state(StateKind::Queued, Some(&a.batch_id), Some(0), 100)
        .unwrap();
    assert_eq!(ids(&queued_a), ["a-0000", "a-0002"]);

    // Counters per batch and overall.
    let a_counts = store.counts(Some(&a.batch_id)).unwrap();
    assert_eq!((a_counts[&StateKind::Queued], a_counts[&StateKind::Deferred]), (2, 4));
    let all = store.counts(None).unwrap();
    assert_eq!((all[&StateKind::Queued], all[&StateKind::Deferred]), (3, 5));
    assert_eq!(all.values().sum::<u64>(), 8);

    // A change that keeps the state but moves the due time moves the index key.
    let mut later = store.order("a-0005").unwrap().unwrap();
    later.state = OrderState::Deferred {
        until_ms: 10_000,
        reason: "11009".into(),
    };
    store
        .commit(&[Change {
            order: later,
            from: Some(StateKind::Deferred),
            event: "retry",
            detail: None,
        }])
        .unwrap();
    assert_eq!(
        deferred(None, None, 100),
        ["a-0001", "a-0004", "b-0000", "a-0003", "a-0005"]
    );
    assert_eq!(count(&store, None, StateKind::Deferred), 5);

    // Two changes of one order in one commit apply in order.
    let start = store.order("a-0000").unwrap().unwrap();
    let sending = moved(&start, OrderState::Submitting { attempt: 1 }, 11_000, "send");
    let mut submitted = moved(&sending.order, OrderState::Submitted, 11_500, "created");
    submitted.order.next_check_ms = Some(20_000);
    store.commit(&[sending, submitted]).unwrap();
    assert_eq!(store.order("a-0000").unwrap().unwrap().state, OrderState::Submitted);
    assert_eq!(store.next_due(StateKind::Submitted, None).unwrap(), Some(20_000));
    assert_eq!(count(&store, Some(&a.batch_id), StateKind::Submitting), 0);
    assert_eq!(count(&store, Some(&a.batch_id), StateKind::Submitted), 1);
    assert!(
        store
            .orders_by_state(StateKind::Submitting, None, None, 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_commit_with_an_unknown_or_stale_order_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = batch("a", 1_000, 2);
    let rows = orders(&a, "a");
    store.create_batch(&a, &rows).unwrap();
    let audit_before = audit_text(dir.path());

    let good = moved(&rows[0], OrderState::Queued, 2_000, "release");
    let ghost = moved(&order(&a, 7, "ghost"), OrderState::Queued, 2_000, "release");
    let err = store.commit(&[good.clone(), ghost]).unwrap_err();
    assert!(err.to_string().contains("\"ghost\""), "{err}");
    // The stored state is Planned; a change that expects Queued is stale.
    let stale = Change {
        from: Some(StateKind::Queued),
        ..moved(&rows[1], OrderState::Cancelled, 2_000, "cancel")
    };
    assert!(store.commit(&[good.clone(), stale]).is_err());
    // batch_id and seq are fixed.
    let mut moved_seq = moved(&rows[1], OrderState::Queued, 2_000, "release");
    moved_seq.order.seq = 5;
    assert!(store.commit(&[good, moved_seq]).is_err());

    assert_eq!(store.order("a-0000").unwrap().unwrap().state, OrderState::Planned);
    assert_eq!(count(&store, None, StateKind::Planned), 2);
    assert!(
        store
            .orders_by_state(StateKind::Queued, None, None, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(audit_text(dir.path()), audit_before);
    assert_eq!(store.verify_audit().unwrap(), 0);
    store.commit(&[]).unwrap();
}

#[test]
fn meta_values_round_trip_and_survive_reopening() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Pause {
        until_ms: i64,
        reason: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.meta_get::<Pause>("pause").unwrap(), None);
    let pause = Pause {
        until_ms: 86_400_000,
        reason: "11009 ReqDailyLimit".into(),
    };
    store.meta_put("pause", &pause).unwrap();
    store.meta_put("budget", &vec![("USDT", "1000.5")]).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.meta_get::<Pause>("pause").unwrap(), Some(pause));
    assert_eq!(
        store.meta_get::<Vec<(String, String)>>("budget").unwrap(),
        Some(vec![("USDT".into(), "1000.5".into())])
    );
    // A value of another shape is damage, not a silent default.
    assert!(matches!(
        store.meta_get::<u64>("pause"),
        Err(StoreError::Corrupt { .. })
    ));
}

/// A value with a typed key, as the callers declare them: the key is a constant next to its type.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Budget {
    day: i64,
    used: u64,
}

const BUDGET: Key<Budget> = Key::new("budget");

#[test]
fn a_typed_key_round_trips_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(BUDGET.name(), "budget");
    assert_eq!(store.get(&BUDGET).unwrap(), None);
    let budget = Budget { day: 20_000, used: 7 };
    store.put(&BUDGET, &budget).unwrap();
    assert_eq!(store.get(&BUDGET).unwrap(), Some(budget.clone()));
    // A dynamic key with the same name is the same value.
    let same: Key<Budget> = Key::dynamic(format!("bud{}", "get"));
    assert_eq!(store.get(&same).unwrap(), Some(budget.clone()));
    let next = Budget { day: 20_001, used: 0 };
    store.put(&same, &next).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.get(&BUDGET).unwrap(), Some(next));
    // Dynamic keys of one family are separate values.
    let first: Key<u64> = Key::dynamic("job:first".to_owned());
    let second: Key<u64> = Key::dynamic("job:second".to_owned());
    store.put(&first, &1).unwrap();
    assert_eq!(
        (store.get(&first).unwrap(), store.get(&second).unwrap()),
        (Some(1), None)
    );
}

#[test]
fn a_value_written_by_the_previous_release_reads_back_through_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // The previous release wrote its values with `meta_put` and a bare name.
    let budget = Budget { day: 20_000, used: 7 };
    store.meta_put("budget", &budget).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.get(&BUDGET).unwrap(), Some(budget.clone()));
    // And the other way round, while both ways exist.
    let next = Budget { day: 20_001, used: 3 };
    store.put(&BUDGET, &next).unwrap();
    assert_eq!(store.meta_get::<Budget>("budget").unwrap(), Some(next));
    // A stored value of another shape is damage, not a silent default, through a key too.
    store.meta_put("budget", &"not a budget").unwrap();
    assert!(matches!(store.get(&BUDGET), Err(StoreError::Corrupt { .. })));
}

#[test]
fn a_second_open_of_the_same_state_is_locked_and_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // redb's lock is per open file, so a second Store in this process is refused like another
    // process would be (the crash test below checks another process).
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Locked { path } if path == &dir.path().display().to_string()),
        "{err:?}"
    );
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
    assert!(err.to_string().contains("in use by another ccpayout process"), "{err}");
    drop(store);
    open(dir.path());
}

#[cfg(unix)]
#[test]
fn the_state_directory_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("state").join("ccpayout");
    let store = open(&dir);
    assert_eq!(store.state_dir(), dir.as_path());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
    assert_eq!(mode(&dir.join(AUDIT_FILE)), 0o600);
}

#[test]
fn everything_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let a = batch("a", 1_000, 3);
    let rows = orders(&a, "a");
    {
        let store = open(dir.path());
        store.create_batch(&a, &rows).unwrap();
        store
            .commit(&[moved(
                &rows[2],
                OrderState::Deferred {
                    until_ms: 77,
                    reason: "r".into(),
                },
                9,
                "hold",
            )])
            .unwrap();
        let approved = BatchRecord {
            approval: Approval::Approved {
                at_ms: 5,
                digest: "d".into(),
                by: Vec::new(),
            },
            ..a.clone()
        };
        store.put_batch(&approved).unwrap();
        // put_batch never creates a batch.
        assert!(store.put_batch(&batch("unknown", 1, 0)).is_err());
    }
    let store = open(dir.path());
    assert!(matches!(
        store.batch(&a.batch_id).unwrap().unwrap().approval,
        Approval::Approved { at_ms: 5, .. }
    ));
    assert_eq!(store.batch_orders(&a.batch_id).unwrap().len(), 3);
    assert_eq!(store.next_due(StateKind::Deferred, None).unwrap(), Some(77));
    assert_eq!(count(&store, None, StateKind::Planned), 2);
    assert_eq!(store.verify_audit().unwrap(), 1);
    assert_eq!(store.batches().unwrap().len(), 1);
}

/// A store with one batch of `n` orders and `n` released orders: `n` audit lines.
fn store_with_audit(dir: &Path, n: u32) -> Store {
    let store = open(dir);
    let a = batch("audited", 1_000, n);
    let rows = orders(&a, "aud");
    store.create_batch(&a, &rows).unwrap();
    for (i, row) in rows.iter().enumerate() {
        let mut change = moved(row, OrderState::Queued, 2_000 + i as i64, "release");
        change.detail = Some(format!("line {i}"));
        store.commit(&[change]).unwrap();
    }
    store
}

#[test]
fn the_audit_chain_verifies_and_a_tampered_line_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_audit(dir.path(), 5);
    assert_eq!(store.verify_audit().unwrap(), 5);

    let text = audit_text(dir.path());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5);
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev"], "");
    assert_eq!(first["order_id"], "aud-0000");
    assert_eq!(first["from"], "planned");
    assert_eq!(first["to"], "queued");
    assert_eq!(first["event"], "release");
    assert_eq!(first["at_ms"], 2_000);
    assert_eq!(first["attempt"], 0);
    assert_eq!(first["detail"], "line 0");
    let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["prev"], line_hash(lines[0]).as_str());

    // Change an amount-free detail in the middle: the file no longer matches the store.
    let tampered = text.replace("\"line 2\"", "\"line X\"");
    std::fs::write(dir.path().join(AUDIT_FILE), tampered).unwrap();
    let err = store.verify_audit().unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { detail, .. } if detail.contains("line 3")),
        "{err}"
    );

    // Put it back: whole again.
    std::fs::write(dir.path().join(AUDIT_FILE), &text).unwrap();
    assert_eq!(store.verify_audit().unwrap(), 5);
}

#[test]
fn an_audit_file_behind_the_store_is_caught_up_and_one_ahead_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_audit(dir.path(), 6);
    drop(store);
    let whole = audit_text(dir.path());
    let path = dir.path().join(AUDIT_FILE);

    // A crash between the commit and the append: the last lines never reached the file.
    let kept: String = whole.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, &kept).unwrap();
    drop(open(dir.path()));
    assert_eq!(audit_text(dir.path()), whole);

    // A crash mid-append: a torn last line is dropped and rewritten.
    let torn = format!("{kept}{}", &whole.lines().nth(3).unwrap()[..20]);
    std::fs::write(&path, torn).unwrap();
    let store = open(dir.path());
    assert_eq!(audit_text(dir.path()), whole);
    assert_eq!(store.verify_audit().unwrap(), 6);
    drop(store);

    // A deleted file is rebuilt from the table.
    std::fs::remove_file(&path).unwrap();
    drop(open(dir.path()));
    assert_eq!(audit_text(dir.path()), whole);

    // A line the table lacks, or a last line that differs, is damage.
    let extra = whole.lines().last().unwrap().replace("\"seq\":6", "\"seq\":7");
    std::fs::write(&path, format!("{whole}{extra}\n")).unwrap();
    assert!(matches!(Store::open(dir.path()), Err(StoreError::Corrupt { .. })));
    std::fs::write(&path, whole.replace("\"line 5\"", "\"line X\"")).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("audit"), "{err}");
}

#[test]
fn the_audit_file_is_caught_up_after_a_failed_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_audit(dir.path(), 2);
    let whole = audit_text(dir.path());
    {
        // As if an append had failed after writing half a line.
        let mut mirror = store.lock_audit();
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(AUDIT_FILE))
            .unwrap();
        std::io::Write::write_all(&mut file, b"{\"seq\":3,\"at").unwrap();
        mirror.mark_dirty();
    }
    let row = store.order("aud-0001").unwrap().unwrap();
    store
        .commit(&[moved(&row, OrderState::Cancelled, 3_000, "cancel")])
        .unwrap();
    let now = audit_text(dir.path());
    assert!(now.starts_with(&whole) && now.lines().count() == 3, "{now}");
    assert_eq!(store.verify_audit().unwrap(), 3);
}

#[test]
fn concurrent_commits_reach_the_audit_file_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let a = batch("busy", 1_000, 40);
    store.create_batch(&a, &orders(&a, "t")).unwrap();
    // Four threads, ten orders each, ten commits per order: their appends race for the file.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for round in 0..10 {
                    let changes: Vec<Change> = (0..10)
                        .map(|i| {
                            let current = store.order(&format!("t-{:04}", t * 10 + i)).unwrap().unwrap();
                            let next = match current.state {
                                OrderState::Queued => OrderState::Deferred {
                                    until_ms: round,
                                    reason: "r".into(),
                                },
                                _ => OrderState::Queued,
                            };
                            moved(&current, next, round, "retry")
                        })
                        .collect();
                    store.commit(&changes).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(store.verify_audit().unwrap(), 400);
    let seqs: Vec<u64> = audit_text(dir.path())
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    // Ten commits per order, alternating from Planned: Queued, Deferred, ..., Deferred.
    assert_eq!(count(&store, None, StateKind::Deferred), 40);
}

#[test]
fn known_orders_answer_with_the_batch_and_the_digest_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let a = batch("a", 1_000, 2);
    let rows = orders(&a, "a");
    store.create_batch(&a, &rows).unwrap();
    let known = store.known_orders();
    let found = known.lookup("a-0001").unwrap();
    assert_eq!(found.batch, a.batch_id);
    assert_eq!(hex::encode(found.payload_digest), rows[1].payload_digest);
    assert!(known.lookup("a-0002").is_none());
    // Orders of a creation that never finished are not known.
    let cut = batch("cut", 2_000, 2);
    store.create_batch_interrupted(&cut, &orders(&cut, "cut"), 1).unwrap();
    assert!(known.lookup("cut-0001").is_none());
}

#[test]
fn records_are_stored_versioned_and_read_either_way() {
    let a = batch("a", 1_000, 1);
    let row = order(&a, 0, "v-1");
    let bytes = codec::encode_order(&row).unwrap();
    assert!(
        bytes.starts_with(br#"{"v":"1","order_id":"v-1""#),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(codec::decode_order(&bytes).unwrap(), row);
    // The same record with its tag elsewhere takes the general path.
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let object = value.as_object_mut().unwrap();
    let tag = object.remove("v").unwrap();
    object.insert("v".into(), tag);
    assert_eq!(codec::decode_order(&serde_json::to_vec(&value).unwrap()).unwrap(), row);
    let identity = codec::decode_identity(&bytes).unwrap();
    assert_eq!(
        (identity.batch_id, identity.payload_digest),
        (row.batch_id.clone(), row.payload_digest.clone())
    );
    let identity = codec::decode_identity(&serde_json::to_vec(&value).unwrap()).unwrap();
    assert_eq!(identity.payload_digest, row.payload_digest);
    assert!(
        codec::decode_order(br#"{"v":"2","order_id":"x"}"#).is_err(),
        "an unknown version is refused"
    );
    let batch_bytes = codec::encode_batch(&a).unwrap();
    assert!(batch_bytes.starts_with(br#"{"v":"1","#));
    assert_eq!(codec::decode_batch(&batch_bytes).unwrap(), a);
}

// ----- SIGKILL -----

/// Set in the child process of the SIGKILL test: the state directory it commits into.
const CRASH_CHILD_ENV: &str = "CCPAYOUT_STORE_CRASH_CHILD";
const CRASH_ORDERS: u32 = 40;

/// A small xorshift generator seeded from the clock: kill delays need spread, not quality.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos());
        Jitter((nanos as u64) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The parent: runs this test binary as a child that commits in a loop and prints each
/// acknowledged commit, SIGKILLs it at a random moment (a quarter of them within 20 ms, so some
/// land while it opens the store), reopens the store and checks that every acknowledged commit is
/// there and the index, counters and audit trail agree with the records. Twenty times.
#[test]
fn every_acknowledged_commit_survives_sigkill() {
    if let Ok(dir) = std::env::var(CRASH_CHILD_ENV) {
        crash_child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = batch("crash", 1_000, CRASH_ORDERS);
    open(dir.path()).create_batch(&a, &orders(&a, "k")).unwrap();

    let test_name = format!("{}::every_acknowledged_commit_survives_sigkill", module_path!());
    let test_name = test_name
        .split_once("::")
        .map_or(test_name.as_str(), |(_, rest)| rest)
        .to_owned();
    let exe = std::env::current_exe().unwrap();
    let mut jitter = Jitter::new();
    // The highest acknowledged `checks` value of each order.
    let mut acked: HashMap<String, u32> = HashMap::new();
    let mut total_acks = 0usize;
    let started = Instant::now();
    for iteration in 0..20 {
        let mut child = Command::new(&exe)
            .args(["--exact", &test_name, "--nocapture", "--test-threads=1", "-q"])
            .env(CRASH_CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        if iteration == 0 {
            // Once, while the child is certainly running: another process holds the lock.
            while !first.starts_with("ACK ") {
                first.clear();
                assert!(stdout.read_line(&mut first).unwrap() > 0, "the child ended early");
            }
            let err = Store::open(dir.path()).unwrap_err();
            assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        }
        let delay = if jitter.below(4) == 0 {
            jitter.below(20)
        } else {
            20 + jitter.below(180)
        };
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        for line in first.lines().chain(rest.lines()).filter_map(|l| l.strip_prefix("ACK ")) {
            let mut words = line.split(' ');
            let value: u32 = words.next().unwrap().parse().unwrap();
            for id in words {
                let best = acked.entry(id.to_owned()).or_default();
                *best = (*best).max(value);
            }
            total_acks += 1;
        }

        let store = open(dir.path());
        let stored = store.batch_orders(&a.batch_id).unwrap();
        assert_eq!(stored.len(), CRASH_ORDERS as usize);
        for order in &stored {
            let want = acked.get(order.order_id.as_str()).copied().unwrap_or(0);
            assert!(
                order.checks >= want,
                "iteration {iteration}: {} lost commit {want}",
                order.order_id
            );
        }
        // The index and the counters agree with the records.
        let counts = store.counts(Some(&a.batch_id)).unwrap();
        for kind in StateKind::ALL {
            let in_index = store.orders_by_state(kind, None, None, usize::MAX).unwrap();
            let in_records = stored.iter().filter(|o| o.kind() == kind).count();
            assert_eq!(in_index.len(), in_records, "iteration {iteration}: {kind} index");
            assert_eq!(
                counts[&kind] as usize, in_records,
                "iteration {iteration}: {kind} counter"
            );
        }
        assert!(store.verify_audit().unwrap() as usize >= total_acks);
    }
    assert!(total_acks > 0, "no commit was acknowledged in 20 runs");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// The child: commits forever (until killed), printing `ACK <value> <order_id>...` after each
/// commit returns. Each commit moves three orders between Queued and Deferred and sets their
/// `checks` to a value that grows across runs.
fn crash_child(dir: &Path) {
    let store = open(dir);
    let batch_id = store.batches().unwrap()[0].batch_id.clone();
    let mut value = store
        .batch_orders(&batch_id)
        .unwrap()
        .iter()
        .map(|o| o.checks)
        .max()
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(20); // if the parent is gone
    let mut next = 0u32;
    while Instant::now() < deadline {
        value += 1;
        let mut changes = Vec::new();
        for _ in 0..3 {
            let id = format!("k-{:04}", next % CRASH_ORDERS);
            next += 1;
            let current = store.order(&id).unwrap().unwrap();
            let mut new = current.clone();
            new.state = match current.state {
                OrderState::Deferred { .. } => OrderState::Queued,
                _ => OrderState::Deferred {
                    until_ms: i64::from(value),
                    reason: "retry".into(),
                },
            };
            new.checks = value;
            new.updated_ms = i64::from(value);
            changes.push(Change {
                order: new,
                from: Some(current.kind()),
                event: "retry",
                detail: None,
            });
        }
        store.commit(&changes).unwrap();
        let names: Vec<&str> = changes.iter().map(|c| c.order.order_id.as_str()).collect();
        println!("ACK {value} {}", names.join(" "));
    }
}

#[test]
fn a_store_with_the_first_index_layout_is_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let a = batch("a", 1_000, 3);
    let b = batch("b", 1_000, 2);
    let (rows_a, rows_b) = (orders(&a, "a"), orders(&b, "b"));
    {
        let store = open(dir.path());
        store.create_batch(&a, &rows_a).unwrap();
        store.create_batch(&b, &rows_b).unwrap();
        store
            .commit(&[moved(
                &rows_b[1],
                OrderState::Deferred {
                    until_ms: 77,
                    reason: "r".into(),
                },
                9,
                "hold",
            )])
            .unwrap();
    }
    // Turn the file back into the first layout: the index keyed the same, without the batch.
    {
        let db = Database::create(dir.path().join(DB_FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let index = tx.open_table(BY_STATE).unwrap();
            let mut legacy = tx.open_table(LEGACY_BY_STATE).unwrap();
            for entry in index.iter().unwrap() {
                let (key, _) = entry.unwrap();
                legacy.insert(key.value(), ()).unwrap();
            }
        }
        tx.delete_table(BY_STATE).unwrap();
        tx.commit().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(
        ids(&store
            .orders_by_state(StateKind::Planned, Some(&a.batch_id), None, 10)
            .unwrap()),
        ["a-0000", "a-0001", "a-0002"]
    );
    assert_eq!(
        ids(&store
            .orders_by_state(StateKind::Planned, Some(&b.batch_id), None, 10)
            .unwrap()),
        ["b-0000"]
    );
    assert_eq!(
        store.next_due(StateKind::Deferred, Some(&b.batch_id)).unwrap(),
        Some(77)
    );
    assert_eq!(store.next_due(StateKind::Deferred, Some(&a.batch_id)).unwrap(), None);
    drop(store);
    // The old table is gone: the next open has nothing to migrate.
    let db = Database::create(dir.path().join(DB_FILE)).unwrap();
    let tx = db.begin_read().unwrap();
    let names: Vec<String> = tx.list_tables().unwrap().map(|t| t.name().to_owned()).collect();
    assert!(!names.iter().any(|n| n == "by_state"), "{names:?}");
}

#[test]
fn due_keys_and_orders_pick_one_batch_without_other_batches_or_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = batch("a", 1_000, 3);
    let b = batch("b", 1_000, 3);
    let c = batch("c", 1_000, 2);
    let (rows_a, rows_b) = (orders(&a, "a"), orders(&b, "b"));
    store.create_batch(&a, &rows_a).unwrap();
    store.create_batch(&b, &rows_b).unwrap();
    // An interrupted creation: its orders are in the tables but invisible.
    store
        .create_batch_with(&c, orders(&c, "c"), 1, false, &super::batches::Extras::default())
        .unwrap();
    let keys = store.due_keys(StateKind::Planned, Some(&b.batch_id), None, 2).unwrap();
    assert_eq!(
        keys.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(),
        ["b-0000", "b-0001"]
    );
    let all = store.due_keys(StateKind::Planned, None, None, 100).unwrap();
    assert_eq!(all.len(), 6, "leftovers of batch c are not listed: {all:?}");
    let wanted: Vec<String> = ["b-0002", "c-0000", "nope", "a-0001"].map(String::from).to_vec();
    assert_eq!(ids(&store.orders(&wanted).unwrap()), ["b-0002", "a-0001"]);
}

#[test]
fn retry_links_are_written_with_their_batch_and_read_from_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let original = batch("payroll", 1_000, 3);
    let original_orders = orders(&original, "p");
    store.create_batch(&original, &original_orders).unwrap();
    let failed = OrderState::Failed { reason: "chain".into() };
    store
        .commit(&[moved(&original_orders[1], failed, 2_000, "final")])
        .unwrap();

    let retry = batch("payroll.retry1", 3_000, 1);
    let mut retry_order = order(&retry, 0, "p-0001~r1");
    retry_order.input.original_order_id = "p-0001".into();
    let link = |batch: &BatchRecord| crate::model::retry::RetryLink {
        original_batch_id: original.batch_id.clone(),
        original_order_id: "p-0001".into(),
        batch_id: batch.batch_id.clone(),
        order_id: "p-0001~r1".into(),
    };
    // A link of another batch is refused before anything is written.
    let err = store
        .create_batch_retrying(&retry, [&retry_order], &[], &[], &[link(&original)], &[])
        .unwrap_err();
    assert!(err.to_string().contains("belongs to batch"), "{err}");
    assert!(store.batch(&retry.batch_id).unwrap().is_none());

    // Before the retry batch exists, the original order is known and retried by nothing.
    let known = store.known_orders();
    let asked = known.original("p-0001").expect("a known order");
    assert_eq!(
        (asked.batch.as_str(), asked.state, asked.retried_as.len()),
        (original.batch_id.as_str(), Some(StateKind::Failed), 0)
    );
    assert!(known.original("nobody").is_none());

    store
        .create_batch_retrying(&retry, [&retry_order], &[], &[], &[link(&retry)], &[])
        .unwrap();
    assert_eq!(store.retries_of_batch(&original.batch_id).unwrap(), [link(&retry)]);
    assert_eq!(
        store.retries_of_order(&original.batch_id, "p-0001").unwrap(),
        [link(&retry)]
    );
    assert!(store.retries_of_order(&original.batch_id, "p-0000").unwrap().is_empty());
    assert!(store.retries_of_batch(&retry.batch_id).unwrap().is_empty());
    assert_eq!(known.original("p-0001").unwrap().retried_as, ["p-0001~r1"]);
    // The retry's own input keeps the column.
    assert_eq!(
        store.order("p-0001~r1").unwrap().unwrap().input.original_order_id,
        "p-0001"
    );

    // Links survive a reopen.
    drop(known);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.retries_of_batch(&original.batch_id).unwrap().len(), 1);
}

/// A SIGKILL while redb was creating the file leaves a header whose magic number is still zero
/// (found by crash chaos: every later open failed with "Not a redb database"). It never held a
/// commit, so the store is created afresh; the same header in a directory opened before, and a
/// file that is not redb's at all, are still refused and left untouched.
#[test]
fn a_store_whose_creation_was_killed_opens_and_a_foreign_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(super::DB_FILE);
    // What the interrupted creation left: zeros where the magic number goes, then the rest of
    // a header (the god byte and the region sizes), 1 MiB long.
    let mut bytes = vec![0u8; 1_056_768];
    bytes[9] = 0x04;
    bytes[12..16].copy_from_slice(&[0x00, 0x10, 0x00, 0x00]);
    bytes[0x40] = 0x03;
    std::fs::write(&path, &bytes).unwrap();
    {
        let store = Store::open(dir.path()).expect("an interrupted creation is created again");
        let b = batch("after-repair", 1, 2);
        store.create_batch(&b, &orders(&b, "r")).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let id = batch_id("after-repair");
    assert!(
        store.batch(&id).unwrap().is_some(),
        "the new store keeps what it was given"
    );
    drop(store);

    // The same header in a state directory that was opened before (its audit file exists) is
    // damage to a store that held data: refused, never emptied.
    let opened = tempfile::tempdir().unwrap();
    let damaged = opened.path().join(super::DB_FILE);
    std::fs::write(&damaged, &bytes).unwrap();
    std::fs::write(opened.path().join(super::AUDIT_FILE), b"").unwrap();
    assert!(
        Store::open(opened.path()).is_err(),
        "a store that was opened before is refused"
    );
    assert_eq!(std::fs::read(&damaged).unwrap(), bytes, "and left as it is");

    let other = tempfile::tempdir().unwrap();
    let foreign = other.path().join(super::DB_FILE);
    std::fs::write(&foreign, b"SQLite format 3\0 not ours").unwrap();
    assert!(
        Store::open(other.path()).is_err(),
        "a file that is not a redb database is refused"
    );
    assert_eq!(
        std::fs::read(&foreign).unwrap(),
        b"SQLite format 3\0 not ours",
        "and never touched"
    );
}

#[test]
fn every_order_in_a_state_is_visited_without_a_limit_and_an_error_stops_the_walk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (batch("visit-a", 1_000, 7), batch("visit-b", 2_000, 5));
    store.create_batch(&a, &orders(&a, "a")).unwrap();
    store.create_batch(&b, &orders(&b, "b")).unwrap();
    let visited = |batch_id: Option<&str>| {
        let mut ids = Vec::new();
        store
            .for_each_order_in_state(StateKind::Planned, batch_id, &mut |o| {
                ids.push(o.order_id.to_string());
                Ok(())
            })
            .unwrap();
        ids
    };
    let listed = |batch_id: Option<&str>| -> Vec<String> {
        store
            .orders_by_state(StateKind::Planned, batch_id, None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|o| o.order_id.to_string())
            .collect()
    };
    assert_eq!(visited(None).len(), 12);
    assert_eq!(visited(None), listed(None));
    assert_eq!(visited(Some(a.batch_id.as_str())), listed(Some(a.batch_id.as_str())));
    assert_eq!(visited(Some(b.batch_id.as_str())).len(), 5);
    assert!(visited(Some("no-such-batch")).is_empty());
    let mut seen = 0;
    let err = store
        .for_each_order_in_state(StateKind::Planned, None, &mut |_| {
            seen += 1;
            if seen == 3 {
                Err(StoreError::Db("stop here".into()))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert!(err.to_string().contains("stop here") && seen == 3, "{err} after {seen}");
}
