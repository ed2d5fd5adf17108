//! The outbox: notices (`crate::model::notice`) recorded in the same transaction as the event they
//! report, each with one delivery per target that wants its event, and the dispatcher's record
//! of each delivery's answer. The store learns the targets' subscriptions from the wiring
//! ([`Store::set_subscriptions`]); without any, no notice is recorded.
//!
//! A delivery acknowledged (2xx) is stored before the dispatcher moves on, so it is never sent
//! again; one whose answer was lost in a crash is sent again with the same notice id, which a
//! receiver uses to drop the repeat.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, encode_error};
use crate::model::notice::{Delivery, Notice, Subscription, deliveries_for};

/// seq (from 1) → versioned [`Notice`] JSON.
pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");

/// A settled notice is kept this long after its event, for `status`, then removed.
const KEEP_SETTLED_MS: i64 = 7 * 24 * 3_600_000;

#[derive(Deserialize)]
#[serde(tag = "v")]
enum Stored {
    #[serde(rename = "1")]
    V1(Notice),
}

#[derive(Serialize)]
#[serde(tag = "v")]
enum StoredRef<'a> {
    #[serde(rename = "1")]
    V1(&'a Notice),
}

fn encode(notice: &Notice) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&StoredRef::V1(notice)).map_err(encode_error)
}

fn decode(bytes: &[u8]) -> Result<Notice, serde_json::Error> {
    serde_json::from_slice::<Stored>(bytes).map(|Stored::V1(n)| n)
}

/// The outbox as `status` and the metrics show it: per target, deliveries by state, and the
/// last error of a pending one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxSummary {
    /// Target → its deliveries.
    pub targets: std::collections::BTreeMap<String, TargetSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetSummary {
    pub pending: u64,
    pub delivered: u64,
    pub refused: u64,
    pub dropped: u64,
    /// The last error of the oldest pending delivery, and when it is tried next.
    pub failing: Option<(String, i64)>,
    /// The last refusal (status and detail).
    pub last_refused: Option<String>,
}

impl Store {
    /// Which targets want which events, from the configuration: each notice recorded from now on
    /// gets a delivery per target that wants its event. Empty (the default): no notice is
    /// recorded.
    pub fn set_subscriptions(&self, subscriptions: Vec<Subscription>) {
        *self
            .subscriptions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = subscriptions;
    }

    /// Whether any target is configured (a notice could be recorded).
    pub fn notices_wanted(&self) -> bool {
        !self
            .subscriptions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty()
    }

    /// Wakes the dispatcher when a notice was recorded.
    pub fn notice_signal(&self) -> &tokio::sync::Notify {
        &self.notice_signal
    }

    /// Inserts `notices` in `tx`, each with its deliveries; a notice no target wants is left out.
    /// Returns how many were inserted (the caller signals the dispatcher after its commit).
    pub(super) fn insert_notices(&self, tx: &WriteTransaction, notices: &[Notice]) -> Result<usize, StoreError> {
        if notices.is_empty() {
            return Ok(0);
        }
        let subscriptions = self
            .subscriptions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if subscriptions.is_empty() {
            return Ok(0);
        }
        let mut table = tx.open_table(OUTBOX).map_err(|e| self.db_err(e))?;
        let mut seq = table.last().map_err(|e| self.db_err(e))?.map_or(0, |(k, _)| k.value());
        let mut inserted = 0;
        for notice in notices {
            let deliveries = deliveries_for(notice.event, notice.at_ms, &subscriptions);
            if deliveries.is_empty() {
                continue;
            }
            seq += 1;
            let mut notice = notice.clone();
            notice.seq = seq;
            notice.deliveries = deliveries;
            table
                .insert(seq, encode(&notice)?.as_slice())
                .map_err(|e| self.db_err(e))?;
            inserted += 1;
        }
        Ok(inserted)
    }

    /// Signals the dispatcher after a commit that recorded notices.
    pub(super) fn notices_recorded(&self, inserted: usize) {
        if inserted > 0 {
            self.notice_signal.notify_one();
        }
    }

    /// Records `notices` on their own, durably: for events that are not themselves a change in
    /// the store (the daemon starting, a file refused for its balance).
    pub fn record_notices(&self, notices: &[Notice]) -> Result<(), StoreError> {
        if notices.is_empty() || !self.notices_wanted() {
            return Ok(());
        }
        let tx = self.write(redb::Durability::Immediate)?;
        let inserted = self.insert_notices(&tx, notices)?;
        tx.commit().map_err(|e| self.db_err(e))?;
        self.notices_recorded(inserted);
        Ok(())
    }

    /// Every notice with a pending delivery, in seq order, and the earliest time one is due.
    pub fn pending_notices(&self) -> Result<Vec<Notice>, StoreError> {
        self.read_notices(|n| !n.settled())
    }

    /// Every notice in the outbox, in seq order (for `status` and the tests).
    pub fn notices(&self) -> Result<Vec<Notice>, StoreError> {
        self.read_notices(|_| true)
    }

    fn read_notices(&self, keep: impl Fn(&Notice) -> bool) -> Result<Vec<Notice>, StoreError> {
        let tx = self.read()?;
        let table = match tx.open_table(OUTBOX) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.db_err(e)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.db_err(e))? {
            let (seq, bytes) = entry.map_err(|e| self.db_err(e))?;
            let notice = decode(bytes.value())
                .map_err(|e| self.corrupt(format!("notice {} does not read back: {e}", seq.value())))?;
            if keep(&notice) {
                out.push(notice);
            }
        }
        Ok(out)
    }

    /// Stores the delivery of notice `seq` to `target`, durably. A delivery that is final
    /// already is never changed (a stale writer loses); returns whether it was written.
    pub fn put_delivery(&self, seq: u64, target: &str, delivery: &Delivery) -> Result<bool, StoreError> {
        let tx = self.write(redb::Durability::Immediate)?;
        let written = {
            let mut table = tx.open_table(OUTBOX).map_err(|e| self.db_err(e))?;
            let Some(bytes) = table.get(seq).map_err(|e| self.db_err(e))?.map(|b| b.value().to_vec()) else {
                return Ok(false);
            };
            let mut notice =
                decode(&bytes).map_err(|e| self.corrupt(format!("notice {seq} does not read back: {e}")))?;
            match notice.deliveries.get(target) {
                Some(Delivery::Pending { .. }) => {
                    notice.deliveries.insert(target.to_owned(), delivery.clone());
                    table
                        .insert(seq, encode(&notice)?.as_slice())
                        .map_err(|e| self.db_err(e))?;
                    true
                }
                _ => false,
            }
        };
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(written)
    }

    /// Removes settled notices older than a week; returns how many.
    pub fn prune_notices(&self, now_ms: i64) -> Result<u64, StoreError> {
        let old: Vec<u64> = self
            .read_notices(|n| n.settled() && now_ms - n.at_ms > KEEP_SETTLED_MS)?
            .into_iter()
            .map(|n| n.seq)
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        let tx = self.write(redb::Durability::Immediate)?;
        {
            let mut table = tx.open_table(OUTBOX).map_err(|e| self.db_err(e))?;
            for seq in &old {
                table.remove(seq).map_err(|e| self.db_err(e))?;
            }
        }
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(old.len() as u64)
    }

    /// Per target, the deliveries by state and what a failing one last met.
    pub fn outbox_summary(&self) -> Result<OutboxSummary, StoreError> {
        let mut summary = OutboxSummary::default();
        for notice in self.notices()? {
            for (target, delivery) in &notice.deliveries {
                let t = summary.targets.entry(target.clone()).or_default();
                match delivery {
                    Delivery::Pending {
                        next_ms, last_error, ..
                    } => {
                        t.pending += 1;
                        if t.failing.is_none()
                            && let Some(error) = last_error
                        {
                            t.failing = Some((error.clone(), *next_ms));
                        }
                    }
                    Delivery::Delivered { .. } => t.delivered += 1,
                    Delivery::Refused { status, detail, .. } => {
                        t.refused += 1;
                        t.last_refused = Some(format!("HTTP {status} {detail}").trim_end().to_owned());
                    }
                    Delivery::Dropped { .. } => t.dropped += 1,
                }
            }
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::notice::{Attempt, NoticeEvent, after_attempt};

    fn subs() -> Vec<Subscription> {
        vec![
            Subscription {
                target: "ops".into(),
                events: NoticeEvent::ALL.to_vec(),
            },
            Subscription {
                target: "treasury".into(),
                events: vec![NoticeEvent::ApprovalRequired],
            },
        ]
    }

    #[test]
    fn nothing_is_recorded_without_a_target_and_notices_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .record_notices(&[Notice::new(NoticeEvent::DaemonStarted, 1, "up")])
                .unwrap();
            assert!(store.notices().unwrap().is_empty());
            store.set_subscriptions(subs());
            store
                .record_notices(&[
                    Notice::new(NoticeEvent::DaemonStarted, 2, "up"),
                    Notice::new(NoticeEvent::ApprovalRequired, 3, "approve"),
                ])
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let notices = store.notices().unwrap();
        assert_eq!(notices.len(), 2);
        assert_eq!((notices[0].seq, notices[1].seq), (1, 2));
        assert_eq!(notices[0].deliveries.keys().collect::<Vec<_>>(), ["ops"]);
        assert_eq!(notices[1].deliveries.len(), 2);
        assert_eq!(notices[1].id(), "2-3");
    }

    #[test]
    fn a_final_delivery_is_never_overwritten_and_settled_notices_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_subscriptions(subs());
        store
            .record_notices(&[Notice::new(NoticeEvent::BatchFinished, 0, "done")])
            .unwrap();
        let retry = after_attempt(0, &Attempt::Status(503, String::new()), 0, 10, 100);
        assert!(store.put_delivery(1, "ops", &retry).unwrap());
        let summary = store.outbox_summary().unwrap();
        assert_eq!(summary.targets["ops"].pending, 1);
        assert_eq!(summary.targets["ops"].failing, Some(("HTTP 503".into(), 110)));
        let done = after_attempt(1, &Attempt::Status(200, String::new()), 0, 200, 100);
        assert!(store.put_delivery(1, "ops", &done).unwrap());
        assert!(
            !store.put_delivery(1, "ops", &retry).unwrap(),
            "a delivered notice stays delivered"
        );
        assert!(store.pending_notices().unwrap().is_empty());
        assert_eq!(store.outbox_summary().unwrap().targets["ops"].delivered, 1);
        assert_eq!(store.prune_notices(1000).unwrap(), 0);
        assert_eq!(store.prune_notices(KEEP_SETTLED_MS + 1).unwrap(), 1);
        assert!(store.notices().unwrap().is_empty());
    }
}
