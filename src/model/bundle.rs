//! A bundle: one of CCPayment's batch withdrawals (`applyBatchWithdraw` … `confirmBatchWithdraw`),
//! made of up to 500 orders of one ccpayout batch with the same coin and chain
//! (`withdraw_mode = "batch"`).
//!
//! ccpayout calls it a *bundle* so it is never confused with a ccpayout batch (a file). Its
//! identity at CCPayment is its `batchOrderId`, derived from the ccpayout batch, the coin, the
//! chain and the part number ([`bundle_id`]), never minted again; each of its orders is a task
//! named by a stable `seq` (1..=n, in file order) and carries the row's order_id in the task's
//! `remark`, so a task is recognised by seq *and* content.
//!
//! The phases, each change of which is durable before the request it announces:
//!
//! ```text
//!  Waiting ─apply intent─▶ Applying ─created─▶ Open ─(verify: list tasks, append missing)─▶ Confirming ─▶ Confirmed ─▶ Done
//!     ▲                       │ lost / ambiguous       ▲   │ Appending ◀─┘                    │ lost: look up     │ every task final
//!     │  absence confirmed    ▼                        │   └─────────────▶ Open               ▼ (Init: confirm again)
//!     └──────────────────── Unknown ─found─────────────┘                                 Aborting ─▶ Confirmed / Done
//!  Waiting / Applying ─refused for good─▶ Refused                  (cancel, or a task list that is not what was sent)
//! ```
//!
//! Pure data; the engine (`engine::bundle`) drives it.

use serde::{Deserialize, Serialize};

use super::ids::BatchId;
use super::record::Absent;

/// CCPayment's `mode`: how the tasks of a batch are executed on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Execution {
    /// One on-chain transaction per task.
    #[default]
    Single,
    /// Many tasks in one on-chain transaction.
    Batch,
}

impl Execution {
    /// The wire spelling (`Single`, `Batch`).
    pub fn wire(self) -> &'static str {
        match self {
            Execution::Single => "Single",
            Execution::Batch => "Batch",
        }
    }

    /// The configuration spelling (`single`, `batch`).
    pub fn as_str(self) -> &'static str {
        match self {
            Execution::Single => "single",
            Execution::Batch => "batch",
        }
    }
}

/// How a ccpayout batch's orders go to CCPayment, fixed when the batch is taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSettings {
    pub execution: Execution,
    /// `delaySeconds` of the confirm (0–3600): the window in which a cancel still aborts.
    pub confirm_delay_secs: u64,
}

/// An order's place in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    /// The bundle's `batchOrderId`.
    pub bundle: String,
    /// The task's `seq` in it, from 1.
    pub seq: u32,
    /// CCPayment's own orderId for the task, once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ccp_order_id: Option<String>,
}

/// Where a bundle is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum BundlePhase {
    /// Not applied: its orders wait to be sendable (approval, a hold, a deferral).
    Waiting,
    /// The intent to apply (attempt `attempt`) is durable; the request may be in flight.
    Applying { attempt: u32 },
    /// The apply may have reached CCPayment; resolved by looking the batch up, never by
    /// applying again blind.
    Unknown { attempt: u32, detail: String },
    /// CCPayment has the batch, not yet confirmed. `verify`: its task list must be read and
    /// matched against what was sent before anything else (after any ambiguity).
    Open { verify: bool },
    /// The intent to append these seqs is durable.
    Appending { seqs: Vec<u32> },
    /// The intent to confirm (attempt `attempt`) is durable.
    Confirming { attempt: u32 },
    /// Confirmed: CCPayment runs it; followed until every task is final.
    Confirmed,
    /// The intent to abort these seqs (none: the whole batch) is durable.
    Aborting { seqs: Vec<u32>, cause: AbortCause },
    /// Every task is final, or nothing was left to send.
    Done,
    /// CCPayment refused the apply for good: nothing exists there.
    Refused { code: Option<i64>, reason: String },
}

impl BundlePhase {
    /// The snake_case name shown by `status` and the reports.
    pub fn name(&self) -> &'static str {
        match self {
            BundlePhase::Waiting => "waiting",
            BundlePhase::Applying { .. } => "applying",
            BundlePhase::Unknown { .. } => "unknown",
            BundlePhase::Open { .. } => "open",
            BundlePhase::Appending { .. } => "appending",
            BundlePhase::Confirming { .. } => "confirming",
            BundlePhase::Confirmed => "confirmed",
            BundlePhase::Aborting { .. } => "aborting",
            BundlePhase::Done => "done",
            BundlePhase::Refused { .. } => "refused",
        }
    }

    /// Nothing more happens to the bundle.
    pub fn is_final(&self) -> bool {
        matches!(self, BundlePhase::Done | BundlePhase::Refused { .. })
    }

    /// A request of this bundle may have reached CCPayment without its answer being recorded:
    /// resolved before anything new is sent.
    pub fn is_uncertain(&self) -> bool {
        matches!(
            self,
            BundlePhase::Applying { .. }
                | BundlePhase::Unknown { .. }
                | BundlePhase::Appending { .. }
                | BundlePhase::Confirming { .. }
        )
    }
}

/// Why a bundle's tasks are aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortCause {
    /// The operator cancelled the batch.
    Cancel,
    /// CCPayment's task list is not what was sent (a task ccpayout did not send, a seq twice, a
    /// changed amount or address): the bundle is never confirmed, and what it holds is aborted.
    Mismatch,
    /// CCPayment refused the confirm for good.
    Refused,
}

/// What an abort answered: which tasks CCPayment cancelled and which it would not (already
/// run or handed to its fund service).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortOutcome {
    pub canceled: Vec<u32>,
    pub ignored: Vec<u32>,
    pub at_ms: i64,
}

/// What CCPayment last said about the batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteView {
    /// `Init`, `Reviewing`, `Rejected`, `Pending`, `Processing`, `Completed` (verbatim).
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bill_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_fee: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_fee_coin: String,
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub canceled: i64,
    pub processing: i64,
    pub at_ms: i64,
}

impl RemoteView {
    /// Tasks CCPayment counts as final.
    pub fn ended(&self) -> i64 {
        self.succeeded + self.failed + self.canceled
    }
}

/// One bundle, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRecord {
    /// The `batchOrderId`.
    pub id: String,
    pub batch_id: BatchId,
    /// From 1, in the order of the plan's grouping.
    pub part: u32,
    pub coin_id: u64,
    pub coin: String,
    pub chain: String,
    pub settings: BundleSettings,
    /// The order_ids of its tasks; task `seq` is the index plus one.
    pub orders: Vec<String>,
    pub phase: BundlePhase,
    /// Applies sent so far.
    #[serde(default)]
    pub attempts: u32,
    /// When a request that may change the batch last left (the apply, an append, the confirm):
    /// absence is confirmed from here (R2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_ms: Option<i64>,
    /// Lookups that found no batch since the last apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absent: Option<Absent>,
    /// When the engine should ask about it next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_ms: Option<i64>,
    /// Status questions asked since the last change.
    #[serde(default)]
    pub checks: u32,
    /// Final tasks the last reading of the task list found (listing again only pays when
    /// CCPayment counts more).
    #[serde(default)]
    pub listed_final: i64,
    /// When the task list was last read while the bundle ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_ms: Option<i64>,
    /// The operator cancelled the batch after the bundle was applied: abort at the first
    /// moment the bundle is settled.
    #[serde(default)]
    pub cancel_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortOutcome>,
    /// Why the bundle ended without paying (a mismatch, a refusal), for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl BundleRecord {
    /// A bundle of `orders` (in seq order) waiting to be applied, named by [`bundle_id`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch_id: BatchId,
        part: u32,
        coin_id: u64,
        coin: &str,
        chain: &str,
        settings: BundleSettings,
        orders: Vec<String>,
        now_ms: i64,
    ) -> BundleRecord {
        BundleRecord {
            id: bundle_id(batch_id.as_str(), coin, chain, part),
            batch_id,
            part,
            coin_id,
            coin: coin.to_owned(),
            chain: chain.to_owned(),
            settings,
            orders,
            phase: BundlePhase::Waiting,
            attempts: 0,
            last_sent_ms: None,
            absent: None,
            next_check_ms: None,
            checks: 0,
            listed_final: 0,
            listed_ms: None,
            remote: None,
            confirmed_ms: None,
            cancel_requested: false,
            abort: None,
            problem: None,
            created_ms: now_ms,
            updated_ms: now_ms,
        }
    }

    /// The order_id of task `seq`.
    pub fn order_of(&self, seq: u32) -> Option<&str> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.orders.get(index).map(String::as_str)
    }

    /// The seq of `order_id`'s task.
    pub fn seq_of(&self, order_id: &str) -> Option<u32> {
        let index = self.orders.iter().position(|o| o == order_id)?;
        u32::try_from(index + 1).ok()
    }
}

/// The longest `batchOrderId` CCPayment takes.
pub const MAX_BUNDLE_ID_LEN: usize = 64;

/// The `batchOrderId` of part `part` of a ccpayout batch for `coin` on `chain`: the first 16 hex
/// digits of the batch id, the coin, the chain and the part, in characters CCPayment takes
/// everywhere (letters, digits, `-`), at most 64. The same inputs give the same id forever, so
/// a re-apply after a lost reply names the same batch.
pub fn bundle_id(batch_id: &str, coin: &str, chain: &str, part: u32) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect::<String>()
    };
    let head: String = batch_id.chars().take(16).collect();
    let id = format!("cpo-{head}-{}-{}-{part}", clean(coin), clean(chain));
    id.chars().take(MAX_BUNDLE_ID_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_ids_are_stable_short_and_plain() {
        let id = bundle_id(&"ab".repeat(32), "USDT", "POLYGON", 3);
        assert_eq!(id, "cpo-abababababababab-USDT-POLYGON-3");
        assert_eq!(id, bundle_id(&"ab".repeat(32), "USDT", "POLYGON", 3));
        assert_ne!(id, bundle_id(&"ab".repeat(32), "USDT", "POLYGON", 4));
        let odd = bundle_id("x", "U S/D-T", "Cwallet OS", 1);
        assert_eq!(odd, "cpo-x-USDT-CwalletOS-1");
        let long = bundle_id(&"f".repeat(64), &"C".repeat(40), &"N".repeat(40), u32::MAX);
        assert!(long.len() <= MAX_BUNDLE_ID_LEN && long.len() >= 3);
    }

    #[test]
    fn seqs_count_from_one() {
        let settings = BundleSettings {
            execution: Execution::Single,
            confirm_delay_secs: 0,
        };
        let b = BundleRecord::new(
            "x".to_owned().into(),
            1,
            1280,
            "USDT",
            "TRX",
            settings,
            vec!["a".into(), "b".into()],
            0,
        );
        assert_eq!(b.id, "cpo-x-USDT-TRX-1");
        assert_eq!(b.phase, BundlePhase::Waiting);
        assert_eq!(b.order_of(1), Some("a"));
        assert_eq!(b.order_of(2), Some("b"));
        assert_eq!(b.order_of(0), None);
        assert_eq!(b.order_of(3), None);
        assert_eq!(b.seq_of("b"), Some(2));
        assert_eq!(b.seq_of("c"), None);
        assert!(BundlePhase::Confirming { attempt: 1 }.is_uncertain());
        assert!(!BundlePhase::Confirmed.is_uncertain());
        assert!(
            BundlePhase::Refused {
                code: None,
                reason: String::new()
            }
            .is_final()
        );
    }
}
