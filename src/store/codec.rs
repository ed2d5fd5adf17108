//! The store's on-disk layout: table definitions, key encodings and the versioned record
//! envelopes. Nothing here does I/O; the other files of the module do the reading and writing.

use std::borrow::Cow;

use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::ids::BatchId;
use crate::model::record::{BatchRecord, OrderRecord};
use crate::model::state::{OrderState, StateKind};

/// order_id → versioned [`OrderRecord`] JSON.
pub(super) const ORDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("orders");
/// batch_id → versioned [`BatchRecord`] JSON. A batch's record is the commit marker of the batch:
/// orders whose batch has no record are leftovers of an interrupted `create_batch`.
pub(super) const BATCHES: TableDefinition<&str, &[u8]> = TableDefinition::new("batches");
/// (batch_id, seq) → order_id: a batch's orders in file order.
pub(super) const BATCH_ORDERS: TableDefinition<(&str, u32), &str> = TableDefinition::new("batch_orders");
/// [state code][due_ms, sign bit flipped, big-endian][order_id] → batch_id: the orders of each
/// state in due order, so the engine finds what to do next without scanning every order, and
/// picks one batch's orders out of it without reading their records.
pub(super) const BY_STATE: TableDefinition<&[u8], &str> = TableDefinition::new("state_index");
/// The first layout's index: the same keys without the batch. [`super::Store::open`] replaces it
/// with [`BY_STATE`], rebuilt from the orders.
pub(super) const LEGACY_BY_STATE: TableDefinition<&[u8], ()> = TableDefinition::new("by_state");
/// (batch_id, state code) → number of the batch's orders in that state.
pub(super) const COUNTS: TableDefinition<(&str, u8), u64> = TableDefinition::new("counts");
/// Small typed values (pause state, daily budget, last runs of jobs), as JSON.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// seq (from 1) → one audit line, exactly as `audit.jsonl` holds it. The truth of the trail.
pub(super) const AUDIT: TableDefinition<u64, &str> = TableDefinition::new("audit");

/// A due time as 8 bytes that sort like the signed number: flipping the sign bit maps
/// `i64::MIN..=i64::MAX` onto `0..=u64::MAX` in order, and big-endian bytes sort like the number.
pub(super) fn due_bytes(due_ms: i64) -> [u8; 8] {
    ((due_ms as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`due_bytes`].
pub(super) fn due_from_bytes(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The `by_state` key of an order record.
pub(super) fn state_key_of(order: &OrderRecord) -> Vec<u8> {
    state_key(order.kind(), order.due_ms(), &order.order_id)
}

pub(super) fn state_key(kind: StateKind, due_ms: i64, order_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + order_id.len());
    key.push(kind.code());
    key.extend_from_slice(&due_bytes(due_ms));
    key.extend_from_slice(order_id.as_bytes());
    key
}

/// A `by_state` key split into its due time and order_id; `None` for a key too short to be one.
pub(super) fn split_state_key(key: &[u8]) -> Option<(i64, &str)> {
    let due: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    let order_id = std::str::from_utf8(key.get(9..)?).ok()?;
    Some((due_from_bytes(due), order_id))
}

/// The `by_state` key range of `kind` with due times up to `due_by_ms` (inclusive; `None`: all).
pub(super) fn state_range(kind: StateKind, due_by_ms: Option<i64>) -> (Vec<u8>, Vec<u8>) {
    let code = kind.code();
    let start = vec![code];
    let end = match due_by_ms {
        // Every key of this state with a due time <= due_by sorts before [code][due_by + 1].
        Some(due_by) if due_by < i64::MAX => {
            let mut end = vec![code];
            end.extend_from_slice(&due_bytes(due_by + 1));
            end
        }
        // Codes are at most 11, so code + 1 cannot overflow.
        _ => vec![code + 1],
    };
    (start, end)
}

/// An order record as stored: tagged with its schema version, so a later schema can be read
/// alongside this one.
#[derive(Deserialize)]
#[serde(tag = "v")]
enum StoredOrder {
    #[serde(rename = "1")]
    V1(OrderRecord),
}

#[derive(Serialize)]
#[serde(tag = "v")]
enum StoredOrderRef<'a> {
    #[serde(rename = "1")]
    V1(&'a OrderRecord),
}

/// A batch record as stored, versioned like orders.
#[derive(Deserialize)]
#[serde(tag = "v")]
enum StoredBatch {
    #[serde(rename = "1")]
    V1(BatchRecord),
}

#[derive(Serialize)]
#[serde(tag = "v")]
enum StoredBatchRef<'a> {
    #[serde(rename = "1")]
    V1(&'a BatchRecord),
}

/// The first bytes of every version-1 record: serde writes the tag first.
const V1_PREFIX: &[u8] = br#"{"v":"1","#;

pub(super) fn encode_order(order: &OrderRecord) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(1024);
    encode_order_into(order, &mut out)?;
    Ok(out)
}

/// [`encode_order`] appended to `out`, so a loop over many orders reuses one buffer.
pub(super) fn encode_order_into(order: &OrderRecord, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    serde_json::to_writer(out, &StoredOrderRef::V1(order))
}

pub(super) fn decode_order(bytes: &[u8]) -> Result<OrderRecord, serde_json::Error> {
    // Fast path for the current version: the record's own fields follow the tag, and
    // OrderRecord ignores the unknown `v` key, so it can be read directly instead of through
    // serde's buffered internally-tagged path (about twice as slow, and reports read 1M orders).
    // Should OrderRecord ever deny unknown fields, the tagged path below still reads it.
    if bytes.starts_with(V1_PREFIX)
        && let Ok(order) = serde_json::from_slice(bytes)
    {
        return Ok(order);
    }
    serde_json::from_slice::<StoredOrder>(bytes).map(|StoredOrder::V1(order)| order)
}

/// What a commit needs of the stored version of an order it changes: which batch and seq it
/// belongs to, and its state and due time (for its state index key and counter).
#[derive(Deserialize)]
pub(super) struct OrderHead {
    pub batch_id: BatchId,
    pub seq: u32,
    pub state: OrderState,
    #[serde(default)]
    pub next_check_ms: Option<i64>,
    /// Only whether there is one: a bundled order's index key.
    #[serde(default)]
    pub task: Option<serde::de::IgnoredAny>,
}

impl OrderHead {
    pub fn kind(&self) -> StateKind {
        self.state.kind()
    }

    pub fn due_ms(&self) -> i64 {
        crate::model::record::due_ms(&self.state, self.next_check_ms, self.task.is_some())
    }
}

/// Reads only an order's [`OrderHead`]: a commit changes each order it names, and reading the
/// whole record (input row, call, strings) costs several times as much.
pub(super) fn decode_head(bytes: &[u8]) -> Result<OrderHead, serde_json::Error> {
    if bytes.starts_with(V1_PREFIX)
        && let Ok(head) = serde_json::from_slice(bytes)
    {
        return Ok(head);
    }
    decode_order(bytes).map(|o| OrderHead {
        batch_id: o.batch_id,
        seq: o.seq,
        state: o.state,
        next_check_ms: o.next_check_ms,
        task: o.task.map(|_| serde::de::IgnoredAny),
    })
}

/// What a cross-batch duplicate check needs of an order.
#[derive(Deserialize)]
pub(super) struct OrderIdentity {
    pub batch_id: BatchId,
    pub payload_digest: String,
}

/// Reads only the batch and digest of a stored order: validating a re-dropped million-row file
/// looks up every row, and a full decode costs about three times as much.
pub(super) fn decode_identity(bytes: &[u8]) -> Result<OrderIdentity, serde_json::Error> {
    if bytes.starts_with(V1_PREFIX)
        && let Ok(identity) = serde_json::from_slice(bytes)
    {
        return Ok(identity);
    }
    decode_order(bytes).map(|o| OrderIdentity {
        batch_id: o.batch_id,
        payload_digest: o.payload_digest,
    })
}

pub(super) fn encode_batch(batch: &BatchRecord) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&StoredBatchRef::V1(batch))
}

pub(super) fn decode_batch(bytes: &[u8]) -> Result<BatchRecord, serde_json::Error> {
    serde_json::from_slice::<StoredBatch>(bytes).map(|StoredBatch::V1(batch)| batch)
}

/// One line of the audit trail. Field order is the line's text order, which the hash chain
/// covers, so it must never change for version 1 lines.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AuditLine<'a> {
    pub seq: u64,
    pub at_ms: i64,
    pub order_id: Cow<'a, str>,
    pub batch_id: Cow<'a, str>,
    pub from: Option<StateKind>,
    pub to: StateKind,
    pub event: Cow<'a, str>,
    pub attempt: u32,
    pub detail: Option<Cow<'a, str>>,
    /// Hex SHA-256 of the previous line's exact text; empty for the first line.
    pub prev: Cow<'a, str>,
}

/// What verification and catch-up read back from a line.
#[derive(Debug, Deserialize)]
pub(super) struct AuditLinks {
    pub seq: u64,
    pub prev: String,
}

/// The `prev` of the line after `line`.
pub(super) fn line_hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_bytes_sort_like_the_numbers() {
        let values = [i64::MIN, -5_000, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for pair in values.windows(2) {
            assert!(due_bytes(pair[0]) < due_bytes(pair[1]), "{pair:?}");
        }
        for v in values {
            assert_eq!(due_from_bytes(due_bytes(v)), v);
        }
    }

    #[test]
    fn state_range_includes_the_bound_and_nothing_after() {
        let (start, end) = state_range(StateKind::Queued, Some(100));
        let at = state_key(StateKind::Queued, 100, "zzzz");
        let after = state_key(StateKind::Queued, 101, "");
        let other = state_key(StateKind::Deferred, i64::MIN, "");
        assert!(start <= at && at < end);
        assert!(after >= end);
        let (_, all_end) = state_range(StateKind::Queued, Some(i64::MAX));
        assert!(state_key(StateKind::Queued, i64::MAX, "x") < all_end && other >= all_end);
        assert_eq!(split_state_key(&at), Some((100, "zzzz")));
    }
}
