//! Committing groups of order changes: records, state index, counters and hash-chained audit lines
//! in one durable transaction, then the lines to the audit file; and verifying the trail.

use std::collections::BTreeMap;
use std::sync::MutexGuard;

use redb::{Durability, ReadableTable, WriteTransaction};

use super::audit::AuditMirror;
use super::codec::{
    AUDIT, AuditLine, BATCHES, BY_STATE, COUNTS, ORDERS, decode_head, encode_order, line_hash, state_key, state_key_of,
};
use super::{Change, ControlEvent, Store, StoreError, encode_error};
use crate::model::notice::Notice;
use crate::model::state::StateKind;

/// The audit line of a control event (no order changes state): a batch's signer checked, a
/// deny-list hit, an approval given. Field order is the line's text order, which the hash chain
/// covers.
#[derive(serde::Serialize)]
struct ControlLine<'a> {
    seq: u64,
    at_ms: i64,
    batch_id: &'a str,
    control: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<&'a str>,
    detail: &'a str,
    prev: &'a str,
}

impl Store {
    /// Writes the new versions of the given orders in one durable write transaction: the
    /// records, the state index (old key from the stored record out, new key in), the per-batch
    /// counters and one audit line per change. Returns after the commit is on disk, and after
    /// appending the same lines to `audit.jsonl` (a failure there is logged and repaired later:
    /// the table holds the lines).
    ///
    /// Nothing is written if any change names an order that does not exist (or whose batch is
    /// not created yet), changes an order's batch_id or seq, or expects (`from`) a state the
    /// order is no longer in.
    pub fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        self.commit_noticed(changes, &[])
    }

    /// [`Store::commit`], with `notices` recorded in the outbox in the same transaction.
    pub fn commit_noticed(&self, changes: &[Change], notices: &[Notice]) -> Result<(), StoreError> {
        if changes.is_empty() && notices.is_empty() {
            return Ok(());
        }
        let tx = self.write(Durability::Immediate)?;
        // On error the transaction is dropped, which aborts it: nothing of this group lands.
        let lines = self.apply_changes(&tx, changes)?;
        let inserted = self.insert_notices(&tx, notices)?;
        tx.commit().map_err(|e| self.db_err(e))?;
        self.notices_recorded(inserted);
        // Only now, with the lines durable in the table, does the file get them: it never holds
        // a line the table lacks. The file's lock is taken after the commit, so the next commit
        // proceeds while this one's lines are written; should a later commit reach the file
        // first, it appends the earlier lines too (from the table), and the earlier one finds
        // nothing left to write.
        self.lock_audit().append(self, &lines);
        Ok(())
    }

    pub(super) fn apply_changes(
        &self,
        tx: &WriteTransaction,
        changes: &[Change],
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let mut orders = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        let mut by_state = tx.open_table(BY_STATE).map_err(|e| self.db_err(e))?;
        let mut counts = tx.open_table(COUNTS).map_err(|e| self.db_err(e))?;
        let mut audit = tx.open_table(AUDIT).map_err(|e| self.db_err(e))?;
        let (mut seq, mut prev) = match audit.last().map_err(|e| self.db_err(e))? {
            Some((k, v)) => (k.value(), line_hash(v.value())),
            None => (0, String::new()),
        };
        let mut lines = Vec::with_capacity(changes.len());
        // Batches known to have their record, and the counter changes of the group, written
        // once per (batch, state) at the end.
        let mut created: Vec<&str> = Vec::new();
        let mut deltas: BTreeMap<(&str, StateKind), i64> = BTreeMap::new();
        for change in changes {
            let new = &change.order;
            let order_id = new.order_id.as_str();
            let unknown = || StoreError::Db(format!("cannot commit order_id {order_id:?}: no such order"));
            // Read from the transaction, so a second change of one order sees the first.
            let old = match orders.get(order_id).map_err(|e| self.db_err(e))? {
                Some(bytes) => decode_head(bytes.value())
                    .map_err(|e| self.corrupt(format!("order {order_id:?} does not read back: {e}")))?,
                None => return Err(unknown()),
            };
            if old.batch_id != new.batch_id || old.seq != new.seq {
                return Err(StoreError::Db(format!(
                    "cannot commit order_id {order_id:?}: batch and seq are fixed ({} #{}, not {} #{})",
                    old.batch_id, old.seq, new.batch_id, new.seq
                )));
            }
            if !created.contains(&new.batch_id.as_str()) {
                // An order of a batch still being created (or interrupted) does not exist yet.
                if batches
                    .get(old.batch_id.as_str())
                    .map_err(|e| self.db_err(e))?
                    .is_none()
                {
                    return Err(unknown());
                }
                created.push(&new.batch_id);
            }
            let (old_kind, new_kind) = (old.kind(), new.kind());
            if let Some(from) = change.from
                && from != old_kind
            {
                return Err(StoreError::Db(format!(
                    "cannot commit order_id {order_id:?} from {from}: it is {old_kind} now"
                )));
            }

            // Index: out with the key of the stored record, in with the new one.
            if by_state
                .remove(state_key(old_kind, old.due_ms(), order_id).as_slice())
                .map_err(|e| self.db_err(e))?
                .is_none()
            {
                return Err(self.corrupt(format!("order {order_id:?} is missing from the state index")));
            }
            by_state
                .insert(state_key_of(new).as_slice(), new.batch_id.as_str())
                .map_err(|e| self.db_err(e))?;
            if old_kind != new_kind {
                *deltas.entry((new.batch_id.as_str(), old_kind)).or_default() -= 1;
                *deltas.entry((new.batch_id.as_str(), new_kind)).or_default() += 1;
            }
            let bytes = encode_order(new).map_err(encode_error)?;
            orders.insert(order_id, bytes.as_slice()).map_err(|e| self.db_err(e))?;
            // A payout that succeeded joins the recipient registry in the same transaction.
            if new_kind == StateKind::Success && old_kind != StateKind::Success {
                self.record_payout(tx, new)?;
            }

            seq += 1;
            let line = serde_json::to_string(&AuditLine {
                seq,
                at_ms: new.updated_ms,
                order_id: order_id.into(),
                batch_id: new.batch_id.as_str().into(),
                from: Some(old_kind),
                to: new_kind,
                event: change.event.into(),
                attempt: new.attempts,
                detail: change.detail.as_deref().map(Into::into),
                prev: prev.as_str().into(),
            })
            .map_err(encode_error)?;
            audit.insert(seq, line.as_str()).map_err(|e| self.db_err(e))?;
            prev = line_hash(&line);
            lines.push((seq, line));
        }
        for ((batch_id, kind), delta) in deltas {
            if delta != 0 {
                self.add_count(&mut counts, batch_id, kind, delta)?;
            }
        }
        Ok(lines)
    }

    /// Writes control events to the audit trail on their own (a decision about a batch that is
    /// not stored, such as a deny-list hit in a blocked file), durably.
    pub fn audit(&self, events: &[ControlEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let tx = self.write(Durability::Immediate)?;
        let lines = self.control_lines(&tx, events)?;
        tx.commit().map_err(|e| self.db_err(e))?;
        self.lock_audit().append(self, &lines);
        Ok(())
    }

    /// Appends one audit line per control event inside `tx` (after any order lines of the same
    /// transaction), hash-chained like every line; returns them for the file mirror.
    pub(super) fn control_lines(
        &self,
        tx: &WriteTransaction,
        events: &[ControlEvent],
    ) -> Result<Vec<(u64, String)>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut audit = tx.open_table(AUDIT).map_err(|e| self.db_err(e))?;
        let (mut seq, mut prev) = match audit.last().map_err(|e| self.db_err(e))? {
            Some((k, v)) => (k.value(), line_hash(v.value())),
            None => (0, String::new()),
        };
        let mut lines = Vec::with_capacity(events.len());
        for event in events {
            seq += 1;
            let line = serde_json::to_string(&ControlLine {
                seq,
                at_ms: event.at_ms,
                batch_id: &event.batch_id,
                control: event.event,
                by: event.by.as_deref(),
                detail: &event.detail,
                prev: &prev,
            })
            .map_err(encode_error)?;
            audit.insert(seq, line.as_str()).map_err(|e| self.db_err(e))?;
            prev = line_hash(&line);
            lines.push((seq, line));
        }
        Ok(lines)
    }

    fn add_count(
        &self,
        counts: &mut redb::Table<'_, (&'static str, u8), u64>,
        batch_id: &str,
        kind: StateKind,
        delta: i64,
    ) -> Result<(), StoreError> {
        let current = counts
            .get((batch_id, kind.code()))
            .map_err(|e| self.db_err(e))?
            .map_or(0, |n| n.value());
        let next = current
            .checked_add_signed(delta)
            .ok_or_else(|| self.corrupt(format!("the {kind} counter of batch {batch_id} would go below zero")))?;
        if next == 0 {
            counts.remove((batch_id, kind.code())).map_err(|e| self.db_err(e))?;
        } else {
            counts
                .insert((batch_id, kind.code()), next)
                .map_err(|e| self.db_err(e))?;
        }
        Ok(())
    }

    /// Checks the audit trail: the file and the table hold the same lines, seqs run from 1
    /// without gaps, and every line's `prev` is the SHA-256 of the line before. Brings the file
    /// up to date with the table first (as `open` does). Returns the number of entries.
    pub fn verify_audit(&self) -> Result<u64, StoreError> {
        let mut mirror = self.lock_audit();
        mirror.verify(self)
    }

    /// The audit file's mirror, which commits and verification take in turn.
    pub(super) fn lock_audit(&self) -> MutexGuard<'_, AuditMirror> {
        self.audit.lock().unwrap_or_else(|poisoned| {
            // A panic mid-append may have left a partial line: have the next append repair it.
            let mut mirror = poisoned.into_inner();
            mirror.mark_dirty();
            mirror
        })
    }
}
