//! Keeping the sandbox's durable state in a file ([`super::SandboxConfig::persist_path`]), so a
//! restarted simulator still knows every payout it committed.
//!
//! The format is [`Snapshot`] as JSON (see the module documentation of [`super`]). This module
//! does the file side: [`load`] at start, and the persister, which writes snapshots
//! atomically (temporary file in the same folder, fsync, rename) and never replaces a later
//! snapshot by an earlier one: it holds one mutex across "take the snapshot, write it", and
//! skips the write when a snapshot at least as recent as the one asked for is already on disk.
//! Concurrent saves therefore coalesce: whoever waited on the mutex finds its change already
//! written by the previous holder, or writes everything up to now in one go.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::world::World;
use super::{CreateAttempt, LedgerPayout};

/// The snapshot version this build writes. Version 2 added batch withdrawals (`batches`, and
/// the batch fields of a ledger payout); a build that knows only version 1 refuses it rather
/// than forget the batches.
pub const SNAPSHOT_VERSION: u32 = 2;

/// The oldest version this build reads: a version 1 file is a state without batches.
pub const OLDEST_SNAPSHOT_VERSION: u32 = 1;

/// The durable state of a sandbox: everything needed to keep serving, settling and refunding
/// the payouts it committed. Amounts are exact decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`] (or, as read from an older file, [`OLDEST_SNAPSHOT_VERSION`] up).
    pub version: u32,
    /// The sequence number of the next record id (the last six or more digits of a record id).
    pub next_seq: u64,
    /// How many fee quotes were given (the fee inquiry ids derive from it).
    pub fee_quotes: u64,
    /// The seeded PRNG: the seed it started from and its current state. A sandbox restarted
    /// with the same seed continues the stream; with another seed it starts that seed afresh.
    pub rng: RngSnapshot,
    /// The daily counters of the current day.
    pub day: DaySnapshot,
    /// Balances by coin id.
    pub balances: BTreeMap<u64, String>,
    /// Payouts in creation order (the order is the cursor of the record list).
    pub payouts: Vec<PayoutSnapshot>,
    /// Every create attempt, in arrival order.
    pub attempts: Vec<CreateAttempt>,
    /// Batch withdrawals in creation order (absent from a version 1 file: none).
    #[serde(default)]
    pub batches: Vec<BatchSnapshot>,
}

/// One batch withdrawal: what was applied and appended, where its run is, and its tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSnapshot {
    pub batch_order_id: String,
    pub bill_id: String,
    pub coin_id: u64,
    pub chain: String,
    pub product_name: String,
    /// `Single` or `Batch`.
    pub mode: String,
    pub notify_url: String,
    /// `Init`, `Reviewing`, `Pending`, `Processing` or `Completed`.
    pub status: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The confirm's delay.
    pub delay_ms: i64,
    /// When `Reviewing` ends.
    pub review_until_ms: Option<i64>,
    /// When the run starts.
    pub start_ms: Option<i64>,
    /// When the batch's next step is due (review over, run start, next task).
    pub next_event_ms: Option<i64>,
    /// The seq of the task executed last.
    pub exec_seq: u32,
    /// `Batch` mode: whether the batch's one network fee has been debited.
    pub fee_charged: bool,
    /// In arrival order.
    pub tasks: Vec<TaskSnapshot>,
}

/// One task of a batch, as the merchant sent it, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    pub seq: u32,
    pub address: String,
    pub memo: String,
    pub amount: String,
    pub remark: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// `waiting`, `canceled` or `executed`.
    pub state: String,
    /// The recordId of its payout (among `payouts`) once executed; empty before.
    pub record_id: String,
}

/// The PRNG behind faults and `fail_rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngSnapshot {
    pub seed: u64,
    pub state: u64,
}

/// The daily counters: the day index (on the configured day length and offset) and what was
/// counted in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySnapshot {
    pub day: i64,
    pub requests: u64,
    pub creates: u64,
}

/// One committed payout with what the sandbox needs beyond the ledger view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutSnapshot {
    /// The payout as the ledger shows it (status `Processing` until settled).
    pub ledger: LedgerPayout,
    pub from_address: String,
    pub contract: String,
    /// CCPayment's own order id (v1 `order_id`).
    pub ccp_order_id: String,
    /// Everything debited on commit, refunded if the payout fails.
    pub debits: Vec<DebitSnapshot>,
    /// When the payout settles (Unix ms).
    pub due_ms: i64,
    /// Whether it settles `Failed`.
    pub will_fail: bool,
    /// Where its webhooks go.
    pub webhook_url: Option<String>,
}

/// One debit of a payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebitSnapshot {
    pub coin_id: u64,
    pub amount: String,
}

/// An `InvalidData` error naming the state file.
pub(crate) fn invalid_state(path: &Path, reason: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("sandbox state file {}: {reason}", path.display()),
    )
}

/// Reads the state file: `Ok(None)` when it does not exist.
///
/// # Errors
///
/// `InvalidData` naming the file when it cannot be read, is not JSON, has another version or
/// does not have the shape of a [`Snapshot`].
pub fn load(path: &Path) -> io::Result<Option<Snapshot>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(invalid_state(path, format!("cannot be read: {e}"))),
    };
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid_state(path, format!("is not valid JSON: {e}")))?;
    match value.get("version").and_then(Value::as_u64) {
        Some(v) if (u64::from(OLDEST_SNAPSHOT_VERSION)..=u64::from(SNAPSHOT_VERSION)).contains(&v) => {}
        Some(v) => {
            return Err(invalid_state(
                path,
                format!("has version {v}; this build reads versions {OLDEST_SNAPSHOT_VERSION} to {SNAPSHOT_VERSION}"),
            ));
        }
        None => return Err(invalid_state(path, "has no numeric \"version\"")),
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| invalid_state(path, format!("is not a sandbox snapshot: {e}")))
}

/// Writes the state atomically with the same helper the reports use (temp file, fsync, rename,
/// directory fsync), naming the file in the error.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    crate::util::atomic::write_atomic(path, bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write sandbox state {}: {e}", path.display())))
}

/// Writes snapshots of one world to one file, latest state always wins.
#[derive(Debug)]
pub(crate) struct Persister {
    path: PathBuf,
    /// The world generation on disk; `None` before the first write. Held across taking the
    /// snapshot and writing it, which is what orders the writes.
    written: Mutex<Option<u64>>,
}

impl Persister {
    /// A persister for `path`; creates the parent folder if needed.
    pub(crate) fn new(path: &Path) -> io::Result<Persister> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", parent.display())))?;
        }
        Ok(Persister {
            path: path.to_owned(),
            written: Mutex::new(None),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Makes sure the file holds the world at generation `generation` or later. Returns at
    /// once when it already does; otherwise snapshots the world as it is now (under its lock,
    /// briefly) and writes that. Blocking: call it off the async workers.
    ///
    /// # Errors
    ///
    /// The file could not be written; the next save tries again.
    pub(crate) fn save(&self, world: &Mutex<World>, generation: u64) -> io::Result<()> {
        self.write(world, Some(generation))
    }

    /// Writes the world as it is now, even when no change that forces a save happened since
    /// the last write (refused create attempts and the daily counters ride along).
    ///
    /// # Errors
    ///
    /// The file could not be written.
    pub(crate) fn save_now(&self, world: &Mutex<World>) -> io::Result<()> {
        self.write(world, None)
    }

    fn write(&self, world: &Mutex<World>, at_least: Option<u64>) -> io::Result<()> {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some(written), Some(wanted)) = (*written, at_least)
            && written >= wanted
        {
            return Ok(());
        }
        let (current, snapshot) = {
            let world = world.lock().unwrap_or_else(PoisonError::into_inner);
            (world.generation(), world.snapshot())
        };
        let bytes = serde_json::to_vec(&snapshot).map_err(io::Error::other)?;
        write_atomic(&self.path, &bytes)?;
        *written = Some(current);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::method;
    use crate::sandbox::SandboxConfig;
    use crate::sandbox::world::Route;

    const T0: i64 = 1_700_000_000_000;
    const TRX_ADDR: &str = "TPSFu3gV4D7SwHS3HkXs3S8QZauZpyQtWH";

    fn create(w: &mut World, order: &str, address: &str, now_ms: i64) -> i64 {
        let body = serde_json::json!({
            "orderId": order, "coinId": 1280, "chain": "TRX", "address": address, "amount": "5",
        })
        .to_string();
        w.handle(
            Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK),
            body.as_bytes(),
            now_ms,
        )
        .code
    }

    fn world(config: &SandboxConfig) -> World {
        World::new(config).expect("world")
    }

    #[test]
    fn a_snapshot_round_trips_through_json_and_restores_the_same_world() {
        let config = SandboxConfig {
            fail_rate: 0.5,
            seed: 7,
            ..SandboxConfig::default()
        };
        let mut a = world(&config);
        for i in 0..6 {
            assert_eq!(create(&mut a, &format!("rt-{i}"), TRX_ADDR, T0), 10000);
        }
        assert_eq!(create(&mut a, "rt-0", TRX_ADDR, T0), 11011);
        a.settle_due(T0 + 2000);
        for i in 6..9 {
            assert_eq!(create(&mut a, &format!("rt-{i}"), TRX_ADDR, T0 + 2000), 10000);
        }
        let snapshot = a.snapshot();
        let json = serde_json::to_string(&snapshot).expect("json");
        let value: Value = serde_json::from_str(&json).expect("value");
        assert_eq!(value["version"], SNAPSHOT_VERSION);
        let back: Snapshot = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, snapshot);

        let mut b = world(&config);
        b.restore(back).expect("restore");
        assert_eq!(b.ledger(), a.ledger());
        assert_eq!(b.snapshot(), snapshot);
        // Both go on identically: same record ids, same PRNG draws, same settlements.
        for w in [&mut a, &mut b] {
            for i in 9..15 {
                assert_eq!(create(w, &format!("rt-{i}"), TRX_ADDR, T0 + 3000), 10000);
            }
            assert_eq!(create(w, "rt-3", TRX_ADDR, T0 + 3000), 11011);
            w.settle_due(T0 + 10_000);
        }
        assert_eq!(b.ledger(), a.ledger());
        assert_eq!(b.balance("USDT"), a.balance("USDT"));
        let statuses: std::collections::HashSet<_> = a.ledger().payouts.iter().map(|p| p.status.clone()).collect();
        assert_eq!(statuses.len(), 2, "fail_rate 0.5 gives both outcomes: {statuses:?}");
    }

    #[test]
    fn restore_refuses_an_inconsistent_snapshot() {
        let config = SandboxConfig::default();
        let mut a = world(&config);
        assert_eq!(create(&mut a, "dup-1", TRX_ADDR, T0), 10000);
        assert_eq!(create(&mut a, "dup-2", TRX_ADDR, T0), 10000);
        let good = a.snapshot();

        let mut same_order = good.clone();
        same_order.payouts[1].ledger.order_id = "dup-1".into();
        let mut same_record = good.clone();
        same_record.payouts[1].ledger.record_id = good.payouts[0].ledger.record_id.clone();
        let mut bad_balance = good.clone();
        bad_balance.balances.insert(1280, "lots".into());
        let mut bad_debit = good.clone();
        bad_debit.payouts[0].debits[0].amount = "-".into();
        let mut final_without_time = good.clone();
        final_without_time.payouts[0].ledger.status = crate::api::types::RecordStatus::Success;
        for (name, snapshot) in [
            ("same order", same_order),
            ("same record", same_record),
            ("bad balance", bad_balance),
            ("bad debit", bad_debit),
            ("final without settled time", final_without_time),
        ] {
            assert!(world(&config).restore(snapshot).is_err(), "{name}");
        }
        // The record-id sequence never goes back, even if next_seq was lost.
        let mut low_seq = good.clone();
        low_seq.next_seq = 0;
        let mut b = world(&config);
        b.restore(low_seq).expect("restore");
        assert_eq!(create(&mut b, "dup-3", TRX_ADDR, T0), 10000);
        let ids: Vec<String> = b.ledger().payouts.iter().map(|p| p.record_id.clone()).collect();
        assert!(ids[2].ends_with("000002"), "{ids:?}");
    }

    #[test]
    fn a_version_1_file_without_batches_still_loads_and_restores() {
        let config = SandboxConfig::default();
        let mut a = world(&config);
        assert_eq!(create(&mut a, "old-1", TRX_ADDR, T0), 10000);
        a.settle_due(T0 + 2000);
        // What the previous build wrote: version 1, no batches, no batch fields in the ledger.
        let mut value = serde_json::to_value(a.snapshot()).expect("value");
        value["version"] = 1.into();
        value.as_object_mut().expect("object").remove("batches");
        for payout in value["payouts"].as_array_mut().expect("payouts") {
            let ledger = payout["ledger"].as_object_mut().expect("ledger");
            for field in ["batch_order_id", "seq", "remark"] {
                assert!(ledger.remove(field).is_some(), "{field}");
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        fs::write(&path, serde_json::to_vec(&value).expect("json")).expect("write");
        let old = load(&path).expect("loads").expect("exists");
        assert_eq!((old.version, old.batches.len()), (1, 0));
        assert_eq!(old.payouts[0].ledger.merchant_ref(), "old-1");
        let mut b = world(&config);
        b.restore(old).expect("restores");
        assert_eq!(b.ledger(), a.ledger());
        // It is written back as the current version.
        assert_eq!(b.snapshot().version, SNAPSHOT_VERSION);
        assert_eq!(create(&mut b, "old-1", TRX_ADDR, T0 + 3000), 11011);
    }

    #[test]
    fn load_tells_missing_from_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        assert_eq!(load(&path).expect("missing is fine"), None);
        for (name, content) in [
            ("empty", ""),
            ("not json", "{not json"),
            ("no version", r#"{"payouts": []}"#),
            ("future version", r#"{"version": 3}"#),
            ("wrong shape", r#"{"version": 1, "payouts": 3}"#),
        ] {
            fs::write(&path, content).expect("write");
            let err = load(&path).expect_err(name);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{name}");
            assert!(err.to_string().contains("state.json"), "{name}: {err}");
        }
        // A folder where the file should be cannot be read.
        let folder = dir.path().join("folder");
        fs::create_dir(&folder).expect("mkdir");
        assert_eq!(load(&folder).expect_err("folder").kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_persister_writes_atomically_and_skips_what_is_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("state.json");
        let persister = Persister::new(&path).expect("persister");
        let world = Mutex::new(world(&SandboxConfig::default()));
        let generation = world.lock().expect("lock").generation();
        persister.save(&world, generation).expect("save");
        let first = load(&path).expect("load").expect("written");
        assert!(first.payouts.is_empty());
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("read dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "the temporary file was renamed");
        let generation = {
            let mut w = world.lock().expect("lock");
            assert_eq!(create(&mut w, "p-1", TRX_ADDR, T0), 10000);
            w.generation()
        };
        // Up to date already: no write (the file is removed to prove it is not rewritten).
        persister.save(&world, generation - 1).expect("noop");
        persister.save(&world, generation).expect("save");
        fs::remove_file(&path).expect("remove");
        persister.save(&world, generation).expect("noop");
        assert!(!path.exists());
        world.lock().expect("lock").set_balance("USDT", "1").expect("set");
        let generation = world.lock().expect("lock").generation();
        persister.save(&world, generation).expect("save");
        let last = load(&path).expect("load").expect("written");
        assert_eq!(last.payouts.len(), 1);
        assert_eq!(last.balances.get(&1280).map(String::as_str), Some("1"));
    }
}
