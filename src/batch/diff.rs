//! The diff to last time: what changed between a batch and the previous batch of its series —
//! rows added and removed, amounts changed by more than `policy.diff_warn_percent`, payees whose
//! destination changed, and the totals per coin then and now. Information for the approver: it
//! refuses nothing and is not part of the plan digest.
//!
//! **Which rows are the same row.** Order ids change every run, so a row is known across batches
//! by its payee (the `payee` column) and coin when it has one — then another chain, address or
//! memo for that payee is a *destination change* — and otherwise by its destination: coin,
//! chain, recipient (by the address case rule of [`crate::rules::deny::match_key`]: EVM and
//! bech32 case-insensitive, base58 exact; Cwallet e-mails case-insensitive) and memo. Rows with
//! the same identity in one batch are paired in file order; the extras are added or removed.
//!
//! **Which batch is previous** ([`previous_of`]): the one named by `check --compare-with`, else
//! the newest other stored batch of the file's *series* ([`series`]: its name without the
//! extension and a trailing run of digits, dates and separators); a file claimed by an inbox
//! (`INBOX/processing/NAME`) is compared only with batches claimed by the same inbox, which is a
//! job's when the inbox is a job's.
//!
//! **Bounded.** The previous batch is read once into an index of 48 bytes a row (hashes of the
//! identity and the destination, the amount, the seq); the lists carry at most [`MAX_LISTED`]
//! rows of each kind, whose texts are read back by seq ([`Compared::wanted`]), while the counts
//! and totals are always complete. Exact decimals throughout. Pure: no I/O, no clock.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::record::{BatchRecord, InputRow, OrderRecord};
use crate::rules::amount::plain;
use crate::rules::deny::match_key;

/// Rows listed per kind (added, removed, amount changed, destination changed); the counts say
/// how many there are in all.
pub const MAX_LISTED: usize = 100;

/// One row as the diff compares it: a row of this batch, or an order of the previous one.
#[derive(Debug, Clone, Copy)]
pub struct DiffRow<'a> {
    pub line: u64,
    pub order_id: &'a str,
    pub payee: &'a str,
    pub coin: &'a str,
    pub chain: &'a str,
    pub recipient: &'a str,
    pub memo: &'a str,
    pub amount: Decimal,
}

impl<'a> DiffRow<'a> {
    /// A stored row (the amount is the canonical string the batch stored; one that does not
    /// read back counts as 0).
    pub fn of_input(line: u64, input: &'a InputRow) -> DiffRow<'a> {
        DiffRow {
            line,
            order_id: &input.order_id,
            payee: &input.payee,
            coin: &input.coin,
            chain: &input.chain,
            recipient: &input.recipient,
            memo: &input.memo,
            amount: Decimal::from_str_exact(input.amount.trim()).unwrap_or_default(),
        }
    }

    fn payee(&self) -> &str {
        self.payee.trim()
    }

    /// The recipient as it compares: the address case rule, and Cwallet e-mails in lower case.
    fn recipient_key(&self) -> String {
        let recipient = self.recipient.trim();
        if recipient.contains('@') {
            recipient.to_lowercase()
        } else {
            match_key(recipient).into_owned()
        }
    }

    /// Who the row pays, across batches: the payee and coin, or the whole destination.
    fn identity(&self) -> u128 {
        let mut h = Sha256::new();
        if self.payee().is_empty() {
            field(&mut h, "destination");
            field(&mut h, &self.coin.trim().to_ascii_uppercase());
            self.hash_destination(&mut h);
        } else {
            field(&mut h, "payee");
            field(&mut h, self.payee());
            field(&mut h, &self.coin.trim().to_ascii_uppercase());
        }
        let bytes = h.finalize();
        u128::from_be_bytes(bytes[..16].try_into().unwrap_or_default())
    }

    /// Where the row pays: chain, recipient, memo.
    fn destination(&self) -> u64 {
        let mut h = Sha256::new();
        self.hash_destination(&mut h);
        let bytes = h.finalize();
        u64::from_be_bytes(bytes[..8].try_into().unwrap_or_default())
    }

    fn hash_destination(&self, h: &mut Sha256) {
        field(h, &self.chain.trim().to_ascii_uppercase());
        field(h, &self.recipient_key());
        field(h, self.memo.trim());
    }

    /// The identity as a person reads it: `payee emp-7`, or `TRX TXYZ…` / `XRP r… memo 5`.
    pub fn key(&self) -> String {
        if self.payee().is_empty() {
            self.describe_destination()
        } else {
            format!("payee {}", self.payee())
        }
    }

    /// `TRX TXYZ…`, `XRP r… memo 5`, `CWALLET 9558861`.
    pub fn describe_destination(&self) -> String {
        let (chain, recipient, memo) = (self.chain.trim(), self.recipient.trim(), self.memo.trim());
        if memo.is_empty() {
            format!("{chain} {recipient}")
        } else {
            format!("{chain} {recipient} memo {memo}")
        }
    }
}

fn field(h: &mut Sha256, text: &str) {
    h.update((text.len() as u64).to_be_bytes());
    h.update(text.as_bytes());
}

/// The series of a batch file: its name without the extension, in lower case, with a trailing
/// run of digits and separators (`-`, `_`, `.`, space) taken off — `payroll-2026-11.csv`,
/// `Payroll_20261201.csv` and the inbox's `payroll-2026-11-1.csv` are all `payroll`. A name
/// that is all digits is the series `""`, with the other such names.
pub fn series(file_name: &str) -> String {
    let name = Path::new(file_name)
        .file_name()
        .map_or_else(|| file_name.to_owned(), |n| n.to_string_lossy().into_owned());
    let stem = match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name.as_str(),
    };
    stem.trim_end_matches(|c: char| c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | ' '))
        .to_lowercase()
}

/// The inbox that claimed `file` (`INBOX/processing/NAME` → `INBOX`), if one did. A batch whose
/// file the daemon archived has `INBOX/done/NAME` for its source (`inbox::PROCESSING` and
/// `inbox::DONE`, a layer above this one): it is still that inbox's.
fn inbox_of(file: &str) -> Option<&Path> {
    let parent = Path::new(file).parent()?;
    if matches!(parent.file_name()?.to_str(), Some("processing" | "done")) {
        parent.parent()
    } else {
        None
    }
}

/// The batch `file` (with SHA-256 `batch_id`) is compared with when none is named: the newest
/// of `batches` (any order) of the same [`series`] that is not this batch; for a file claimed by
/// an inbox, only batches claimed by the same inbox.
pub fn previous_of<'b>(file: &str, batch_id: &str, batches: &'b [BatchRecord]) -> Option<&'b BatchRecord> {
    let series = series(file);
    let inbox = inbox_of(file);
    batches
        .iter()
        .filter(|b| b.batch_id.as_str() != batch_id)
        .filter(|b| self::series(&b.source) == series)
        .filter(|b| inbox.is_none() || inbox_of(&b.source) == inbox)
        .max_by(|a, b| {
            a.created_ms
                .cmp(&b.created_ms)
                .then_with(|| b.batch_id.as_str().cmp(a.batch_id.as_str()))
        })
}

/// One row of the previous batch, as the index keeps it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    identity: u128,
    destination: u64,
    amount: Decimal,
    seq: u32,
}

/// The previous batch's rows, indexed by identity: fed one order at a time.
#[derive(Debug, Default)]
pub struct Previous {
    entries: Vec<Entry>,
    totals: BTreeMap<String, Total>,
}

/// One coin's total in one batch.
#[derive(Debug, Clone, Copy, Default)]
struct Total {
    rows: u64,
    amount: Decimal,
}

impl Total {
    fn add(&mut self, amount: Decimal) {
        self.rows += 1;
        self.amount = self.amount.checked_add(amount).unwrap_or(Decimal::MAX);
    }
}

impl Previous {
    /// Adds the previous batch's row at `seq` (its position among the batch's orders).
    pub fn push(&mut self, seq: u32, row: &DiffRow<'_>) {
        self.entries.push(Entry {
            identity: row.identity(),
            destination: row.destination(),
            amount: row.amount,
            seq,
        });
        coin_total(&mut self.totals, row.coin).add(row.amount);
    }

    /// Adds a stored order.
    pub fn push_order(&mut self, order: &OrderRecord) {
        self.push(order.seq, &DiffRow::of_input(order.line, &order.input));
    }
}

fn coin_total<'t>(totals: &'t mut BTreeMap<String, Total>, coin: &str) -> &'t mut Total {
    let coin = coin.trim().to_ascii_uppercase();
    totals.entry(coin).or_default()
}

/// A row of this batch the previous one had no match for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddedRow {
    pub line: u64,
    pub order_id: String,
    /// Who it pays: `payee emp-7`, or the destination.
    pub key: String,
    pub coin: String,
    pub amount: String,
}

/// A row of the previous batch this one has no match for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedRow {
    /// Its line in the previous batch's file.
    pub previous_line: u64,
    pub previous_order_id: String,
    pub key: String,
    pub coin: String,
    pub amount: String,
}

/// A matched row whose amount changed by more than the threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AmountChange {
    pub line: u64,
    pub order_id: String,
    pub previous_order_id: String,
    pub key: String,
    pub coin: String,
    pub old: String,
    pub new: String,
    /// The change in percent of the old amount, to two places (`+50`, `-12.5`); absent for a
    /// change from 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<String>,
}

/// A payee paid to another destination than in the previous batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestinationChange {
    pub line: u64,
    pub order_id: String,
    pub previous_order_id: String,
    pub payee: String,
    pub coin: String,
    /// `TRX TXYZ…`, `XRP r… memo 5`.
    pub old: String,
    pub new: String,
}

/// One coin's totals then and now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoinTotals {
    pub coin: String,
    pub previous_rows: u64,
    pub rows: u64,
    pub previous: String,
    pub now: String,
    /// `now - previous`, signed (`+30`, `-5`, `0`).
    pub delta: String,
}

/// How many rows of each kind; always complete, whatever the lists carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiffCounts {
    /// Rows (orders) of the previous batch.
    pub previous_rows: u64,
    /// Accepted rows of this batch.
    pub rows: u64,
    /// Rows matched with a row of the previous batch.
    pub matched: u64,
    /// Matched with the same amount and destination.
    pub unchanged: u64,
    pub added: u64,
    pub removed: u64,
    /// Amounts changed by more than the threshold.
    pub amount_changed: u64,
    /// Amounts changed by the threshold or less (not listed).
    pub amount_changed_within: u64,
    pub destination_changed: u64,
}

/// The batch compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviousBatch {
    pub batch_id: String,
    pub name: String,
    /// The file it came from.
    pub source: String,
    pub created_ms: i64,
    /// `created_ms` in RFC 3339.
    pub created: String,
}

impl PreviousBatch {
    pub fn of(batch: &BatchRecord) -> PreviousBatch {
        PreviousBatch {
            batch_id: batch.batch_id.to_string(),
            name: batch.name.clone(),
            source: batch.source.clone(),
            created_ms: batch.created_ms,
            created: crate::util::time::rfc3339_ms(batch.created_ms),
        }
    }
}

/// How the previous batch was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChosenBy {
    /// Named by `check --compare-with`.
    CompareWith,
    /// The newest earlier batch of the series.
    Series,
}

/// What changed since the previous batch: the `diff` of `check --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchDiff {
    /// This file's series ([`series`]).
    pub series: String,
    pub chosen_by: ChosenBy,
    /// The batch compared with; `None` when the store has no earlier batch of the series (then
    /// every list is empty).
    pub previous: Option<PreviousBatch>,
    /// `policy.diff_warn_percent`: amount changes above it are listed.
    pub warn_percent: String,
    pub counts: DiffCounts,
    /// At most [`MAX_LISTED`] of each, in file order.
    pub added: Vec<AddedRow>,
    pub removed: Vec<RemovedRow>,
    pub amount_changed: Vec<AmountChange>,
    pub destination_changed: Vec<DestinationChange>,
    /// Per coin, in either batch.
    pub totals: Vec<CoinTotals>,
    /// The most rows a list carries.
    pub listed_max: usize,
}

impl BatchDiff {
    /// A diff with no previous batch to compare with.
    pub fn no_previous(series: String, chosen_by: ChosenBy, warn_percent: Decimal) -> BatchDiff {
        BatchDiff {
            series,
            chosen_by,
            previous: None,
            warn_percent: plain(warn_percent),
            counts: DiffCounts::default(),
            added: Vec::new(),
            removed: Vec::new(),
            amount_changed: Vec::new(),
            destination_changed: Vec::new(),
            totals: Vec::new(),
            listed_max: MAX_LISTED,
        }
    }

    /// Whether an approver should look twice: an amount changed beyond the threshold, or a
    /// payee's destination changed.
    pub fn has_warnings(&self) -> bool {
        self.counts.amount_changed > 0 || self.counts.destination_changed > 0
    }
}

/// A matched row that a list shows, waiting for the previous row's texts.
#[derive(Debug)]
struct Pending<T> {
    item: T,
    previous_seq: u32,
}

/// The comparison made, before the texts of the previous rows it lists are read back.
#[derive(Debug)]
pub struct Compared {
    warn_percent: Decimal,
    counts: DiffCounts,
    added: Vec<AddedRow>,
    /// The seqs of the first removed rows, in file order.
    removed: Vec<u32>,
    amount_changed: Vec<Pending<AmountChange>>,
    destination_changed: Vec<Pending<DestinationChange>>,
    then: BTreeMap<String, Total>,
    now: BTreeMap<String, Total>,
}

/// Compares this batch's accepted rows (`current`, in file order) with the previous batch's.
pub fn compare<'a>(
    previous: Previous,
    current: impl IntoIterator<Item = DiffRow<'a>>,
    warn_percent: Decimal,
) -> Compared {
    let Previous { mut entries, totals } = previous;
    entries.sort_unstable_by_key(|e| (e.identity, e.seq));
    let mut taken = vec![false; entries.len()];
    // Where each identity's next unpaired entry is: its run in `entries` is in seq order.
    let mut next: HashMap<u128, usize> = HashMap::new();
    let mut counts = DiffCounts {
        previous_rows: entries.len() as u64,
        ..DiffCounts::default()
    };
    let mut added = Vec::new();
    let mut amount_changed = Vec::new();
    let mut destination_changed = Vec::new();
    let mut now = BTreeMap::new();
    for row in current {
        counts.rows += 1;
        coin_total(&mut now, row.coin).add(row.amount);
        let identity = row.identity();
        let at = match next.get(&identity) {
            Some(&at) => at,
            None => entries.partition_point(|e| e.identity < identity),
        };
        let Some(entry) = entries.get(at).filter(|e| e.identity == identity).copied() else {
            counts.added += 1;
            if added.len() < MAX_LISTED {
                added.push(AddedRow {
                    line: row.line,
                    order_id: row.order_id.to_owned(),
                    key: row.key(),
                    coin: row.coin.trim().to_ascii_uppercase(),
                    amount: plain(row.amount),
                });
            }
            next.insert(identity, at);
            continue;
        };
        taken[at] = true;
        next.insert(identity, at + 1);
        counts.matched += 1;
        let mut same = true;
        if entry.amount != row.amount {
            same = false;
            if exceeds(entry.amount, row.amount, warn_percent) {
                counts.amount_changed += 1;
                if amount_changed.len() < MAX_LISTED {
                    amount_changed.push(Pending {
                        item: AmountChange {
                            line: row.line,
                            order_id: row.order_id.to_owned(),
                            previous_order_id: String::new(),
                            key: row.key(),
                            coin: row.coin.trim().to_ascii_uppercase(),
                            old: plain(entry.amount),
                            new: plain(row.amount),
                            percent: percent_change(entry.amount, row.amount).map(signed),
                        },
                        previous_seq: entry.seq,
                    });
                }
            } else {
                counts.amount_changed_within += 1;
            }
        }
        if entry.destination != row.destination() {
            same = false;
            counts.destination_changed += 1;
            if destination_changed.len() < MAX_LISTED {
                destination_changed.push(Pending {
                    item: DestinationChange {
                        line: row.line,
                        order_id: row.order_id.to_owned(),
                        previous_order_id: String::new(),
                        payee: row.payee().to_owned(),
                        coin: row.coin.trim().to_ascii_uppercase(),
                        old: String::new(),
                        new: row.describe_destination(),
                    },
                    previous_seq: entry.seq,
                });
            }
        }
        if same {
            counts.unchanged += 1;
        }
    }
    let mut removed: Vec<u32> = entries
        .iter()
        .zip(&taken)
        .filter(|(_, taken)| !**taken)
        .map(|(e, _)| e.seq)
        .collect();
    counts.removed = removed.len() as u64;
    removed.sort_unstable();
    removed.truncate(MAX_LISTED);
    Compared {
        warn_percent,
        counts,
        added,
        removed,
        amount_changed,
        destination_changed,
        then: totals,
        now,
    }
}

impl Compared {
    /// The seqs of the previous batch's rows the lists name: read them back and hand them to
    /// [`Compared::finish`].
    pub fn wanted(&self) -> Vec<u32> {
        let mut seqs: Vec<u32> = self
            .removed
            .iter()
            .copied()
            .chain(self.amount_changed.iter().map(|p| p.previous_seq))
            .chain(self.destination_changed.iter().map(|p| p.previous_seq))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs
    }

    /// The diff, with the previous rows' texts from `orders` (the orders at [`Compared::wanted`];
    /// one missing leaves its texts empty).
    pub fn finish(
        self,
        series: String,
        chosen_by: ChosenBy,
        previous: PreviousBatch,
        orders: &[OrderRecord],
    ) -> BatchDiff {
        let by_seq: HashMap<u32, &OrderRecord> = orders.iter().map(|o| (o.seq, o)).collect();
        let row_at = |seq: u32| by_seq.get(&seq).map(|o| DiffRow::of_input(o.line, &o.input));
        let removed = self
            .removed
            .iter()
            .map(|&seq| match row_at(seq) {
                Some(row) => RemovedRow {
                    previous_line: row.line,
                    previous_order_id: row.order_id.to_owned(),
                    key: row.key(),
                    coin: row.coin.trim().to_ascii_uppercase(),
                    amount: plain(row.amount),
                },
                None => RemovedRow {
                    previous_line: 0,
                    previous_order_id: String::new(),
                    key: String::new(),
                    coin: String::new(),
                    amount: String::new(),
                },
            })
            .collect();
        let amount_changed = self
            .amount_changed
            .into_iter()
            .map(|p| {
                let mut item = p.item;
                if let Some(row) = row_at(p.previous_seq) {
                    item.previous_order_id = row.order_id.to_owned();
                }
                item
            })
            .collect();
        let destination_changed = self
            .destination_changed
            .into_iter()
            .map(|p| {
                let mut item = p.item;
                if let Some(row) = row_at(p.previous_seq) {
                    item.previous_order_id = row.order_id.to_owned();
                    item.old = row.describe_destination();
                }
                item
            })
            .collect();
        let mut coins: Vec<&String> = self.then.keys().chain(self.now.keys()).collect();
        coins.sort();
        coins.dedup();
        let totals = coins
            .into_iter()
            .map(|coin| {
                let then = self.then.get(coin).copied().unwrap_or_default();
                let now = self.now.get(coin).copied().unwrap_or_default();
                CoinTotals {
                    coin: coin.clone(),
                    previous_rows: then.rows,
                    rows: now.rows,
                    previous: plain(then.amount),
                    now: plain(now.amount),
                    delta: signed(now.amount.checked_sub(then.amount).unwrap_or_default()),
                }
            })
            .collect();
        BatchDiff {
            series,
            chosen_by,
            previous: Some(previous),
            warn_percent: plain(self.warn_percent),
            counts: self.counts,
            added: self.added,
            removed,
            amount_changed,
            destination_changed,
            totals,
            listed_max: MAX_LISTED,
        }
    }
}

/// Whether a change from `old` to `new` is more than `warn_percent` of `old`. A change from or
/// to 0 always is; no change never is.
pub fn exceeds(old: Decimal, new: Decimal, warn_percent: Decimal) -> bool {
    if old == new {
        return false;
    }
    if old.is_zero() || new.is_zero() {
        return true;
    }
    let change = (new - old).abs();
    // change / |old| * 100 > warn, without a division: change * 100 > warn * |old|. A product
    // too large for a decimal is a change beyond any threshold.
    match (
        change.checked_mul(Decimal::ONE_HUNDRED),
        warn_percent.checked_mul(old.abs()),
    ) {
        (Some(left), Some(right)) => left > right,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// The change from `old` to `new` in percent of `old`, to two places; `None` from 0.
pub fn percent_change(old: Decimal, new: Decimal) -> Option<Decimal> {
    if old.is_zero() {
        return None;
    }
    let ratio = new.checked_sub(old)?.checked_div(old.abs())?;
    Some(ratio.checked_mul(Decimal::ONE_HUNDRED)?.round_dp(2).normalize())
}

/// A decimal with its sign: `+30`, `-5`, `0`.
pub fn signed(value: Decimal) -> String {
    if value > Decimal::ZERO {
        format!("+{}", plain(value))
    } else {
        plain(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    /// (line, order_id, payee, recipient, amount) on USDT TRX.
    fn row<'a>(line: u64, order_id: &'a str, payee: &'a str, recipient: &'a str, amount: &str) -> DiffRow<'a> {
        DiffRow {
            line,
            order_id,
            payee,
            coin: "USDT",
            chain: "TRX",
            recipient,
            memo: "",
            amount: d(amount),
        }
    }

    fn order(seq: u32, line: u64, r: &DiffRow<'_>) -> OrderRecord {
        let mut o: OrderRecord = serde_json::from_value(serde_json::json!({
            "order_id": r.order_id, "batch_id": "b", "seq": seq, "line": line,
            "input": {"order_id": r.order_id, "recipient": r.recipient, "coin": r.coin, "chain": r.chain,
                      "amount": plain(r.amount), "memo": r.memo, "payee": r.payee},
            "call": {"api": "cwallet", "request": {"orderId": r.order_id, "coinId": 1, "cwalletUser": "1", "amount": "1"}},
            "payload_digest": "", "state": {"state": "planned"}, "attempts": 0, "created_ms": 0, "updated_ms": 0
        }))
        .unwrap();
        o.seq = seq;
        o
    }

    fn batch(id: &str, source: &str, created_ms: i64) -> BatchRecord {
        serde_json::from_value(serde_json::json!({
            "batch_id": id, "name": format!("{id}-name"), "source": source, "format": "csv", "api": "v2",
            "plan_digest": "", "created_ms": created_ms, "updated_ms": created_ms, "rows": 1, "orders": 1,
            "refused": [], "approval": {"approval": "not_needed"}, "state": "done"
        }))
        .unwrap()
    }

    /// The diff of `current` against `previous` (each in file order), the previous rows read
    /// back as the store would.
    fn diff(previous: &[DiffRow<'_>], current: &[DiffRow<'_>], warn: &str) -> BatchDiff {
        let orders: Vec<OrderRecord> = previous
            .iter()
            .enumerate()
            .map(|(i, r)| order(i as u32, r.line, r))
            .collect();
        let mut index = Previous::default();
        for o in &orders {
            index.push_order(o);
        }
        let compared = compare(index, current.iter().copied(), d(warn));
        let wanted = compared.wanted();
        let read: Vec<OrderRecord> = orders.iter().filter(|o| wanted.contains(&o.seq)).cloned().collect();
        let prev = PreviousBatch::of(&batch("p", "payroll-2026-11.csv", 0));
        compared.finish("payroll".into(), ChosenBy::Series, prev, &read)
    }

    const A: &str = "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K";
    const B: &str = "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr";
    const C: &str = "TVqoGi64Ad2mSiPNsqVnqB2VkLGi7Mx1vq";

    #[test]
    fn each_kind_is_named_with_its_lines_ids_and_amounts() {
        let previous = [
            row(2, "nov-1", "emp-1", A, "100"),
            row(3, "nov-2", "emp-2", B, "50"),
            row(4, "nov-3", "emp-3", C, "10"),
            row(5, "nov-4", "emp-4", A, "7"),
        ];
        let current = [
            row(2, "dec-1", "emp-1", A, "150"), // +50 %: listed
            row(3, "dec-2", "emp-2", B, "55"),  // +10 %: within 20 %
            row(4, "dec-3", "emp-3", B, "10"),  // another address
            row(5, "dec-5", "emp-5", C, "20"),  // added; emp-4 removed
        ];
        let diff = diff(&previous, &current, "20");
        assert_eq!(
            diff.counts,
            DiffCounts {
                previous_rows: 4,
                rows: 4,
                matched: 3,
                unchanged: 0,
                added: 1,
                removed: 1,
                amount_changed: 1,
                amount_changed_within: 1,
                destination_changed: 1,
            }
        );
        assert_eq!(
            diff.added,
            vec![AddedRow {
                line: 5,
                order_id: "dec-5".into(),
                key: "payee emp-5".into(),
                coin: "USDT".into(),
                amount: "20".into(),
            }]
        );
        assert_eq!(
            diff.removed,
            vec![RemovedRow {
                previous_line: 5,
                previous_order_id: "nov-4".into(),
                key: "payee emp-4".into(),
                coin: "USDT".into(),
                amount: "7".into(),
            }]
        );
        assert_eq!(
            diff.amount_changed,
            vec![AmountChange {
                line: 2,
                order_id: "dec-1".into(),
                previous_order_id: "nov-1".into(),
                key: "payee emp-1".into(),
                coin: "USDT".into(),
                old: "100".into(),
                new: "150".into(),
                percent: Some("+50".into()),
            }]
        );
        assert_eq!(
            diff.destination_changed,
            vec![DestinationChange {
                line: 4,
                order_id: "dec-3".into(),
                previous_order_id: "nov-3".into(),
                payee: "emp-3".into(),
                coin: "USDT".into(),
                old: format!("TRX {C}"),
                new: format!("TRX {B}"),
            }]
        );
        assert_eq!(
            diff.totals,
            vec![CoinTotals {
                coin: "USDT".into(),
                previous_rows: 4,
                rows: 4,
                previous: "167".into(),
                now: "235".into(),
                delta: "+68".into(),
            }]
        );
        assert!(diff.has_warnings());
    }

    #[test]
    fn rows_without_a_payee_are_known_by_their_destination_by_the_case_rule() {
        let evm = "0x52908400098527886E0F7030069857D2E4169EE7";
        let (evm_lower, a_lower) = (evm.to_ascii_lowercase(), A.to_ascii_lowercase());
        let mut previous = [row(2, "a", "", evm, "1"), row(3, "b", "", A, "1")];
        let mut current = [row(2, "c", "", &evm_lower, "1"), row(3, "d", "", &a_lower, "1")];
        for r in previous.iter_mut().chain(current.iter_mut()) {
            r.chain = if r.recipient.starts_with("0x") { "BSC" } else { "TRX" };
        }
        let diff = diff(&previous, &current, "20");
        // EVM hex compares without case; a base58 address in another case is another address.
        assert_eq!((diff.counts.matched, diff.counts.unchanged), (1, 1), "{diff:?}");
        assert_eq!(diff.added.len(), 1);
        assert_eq!(diff.added[0].order_id, "d");
        assert_eq!(diff.removed.len(), 1);
        assert_eq!(diff.removed[0].previous_order_id, "b");
        assert_eq!(diff.removed[0].key, format!("TRX {A}"));
        // Without a payee a new address is a new row, never a destination change.
        assert_eq!(diff.counts.destination_changed, 0);
    }

    #[test]
    fn cwallet_emails_compare_without_case_and_memos_count() {
        let mut prev = row(2, "a", "", "Ann@Example.com", "5");
        prev.chain = "CWALLET";
        let mut cur = row(2, "b", "", "ann@example.com", "5");
        cur.chain = "CWALLET";
        let diff1 = diff(&[prev], &[cur], "20");
        assert_eq!(diff1.counts.unchanged, 1);

        let mut prev = row(2, "a", "emp-1", "rExchange", "5");
        prev.chain = "XRP";
        prev.memo = "111";
        let mut cur = prev;
        cur.order_id = "b";
        cur.memo = "222";
        let diff2 = diff(&[prev], &[cur], "20");
        assert_eq!(diff2.counts.destination_changed, 1);
        assert_eq!(diff2.destination_changed[0].old, "XRP rExchange memo 111");
        assert_eq!(diff2.destination_changed[0].new, "XRP rExchange memo 222");
    }

    #[test]
    fn repeated_identities_pair_in_file_order_and_extras_are_added_or_removed() {
        let previous = [
            row(2, "p1", "", A, "1"),
            row(3, "p2", "", A, "2"),
            row(4, "p3", "", A, "3"),
        ];
        let current = [row(2, "c1", "", A, "1"), row(3, "c2", "", A, "2")];
        let diff1 = diff(&previous, &current, "0");
        assert_eq!((diff1.counts.matched, diff1.counts.unchanged), (2, 2));
        assert_eq!(diff1.removed.len(), 1);
        assert_eq!(diff1.removed[0].previous_order_id, "p3");

        let current = [
            row(2, "c1", "", A, "1"),
            row(3, "c2", "", A, "2"),
            row(4, "c3", "", A, "3"),
            row(5, "c4", "", A, "4"),
        ];
        let diff2 = diff(&previous, &current, "0");
        assert_eq!(
            (diff2.counts.matched, diff2.counts.unchanged, diff2.counts.removed),
            (3, 3, 0)
        );
        assert_eq!(diff2.added.len(), 1);
        assert_eq!(diff2.added[0].order_id, "c4");
    }

    #[test]
    fn a_coin_is_part_of_a_payees_identity() {
        let previous = [row(2, "p", "emp-1", A, "1")];
        let mut cur = row(2, "c", "emp-1", A, "1");
        cur.coin = "usdc";
        let diff = diff(&previous, &[cur], "20");
        assert_eq!((diff.counts.added, diff.counts.removed, diff.counts.matched), (1, 1, 0));
        let coins: Vec<(&str, &str, &str, &str)> = diff
            .totals
            .iter()
            .map(|t| (t.coin.as_str(), t.previous.as_str(), t.now.as_str(), t.delta.as_str()))
            .collect();
        assert_eq!(coins, vec![("USDC", "0", "1", "+1"), ("USDT", "1", "0", "-1")]);
    }

    #[test]
    fn percent_edges_are_exact() {
        // Exactly at the threshold is not more than it.
        assert!(!exceeds(d("100"), d("120"), d("20")));
        assert!(exceeds(d("100"), d("120.000000001"), d("20")));
        assert!(!exceeds(d("100"), d("80"), d("20")));
        assert!(exceeds(d("100"), d("79.99"), d("20")));
        // From and to 0 always count; no change never does, not even at 0 %.
        assert!(exceeds(d("0"), d("0.01"), d("1000")));
        assert!(exceeds(d("5"), d("0"), d("1000")));
        assert!(!exceeds(d("5"), d("5.000"), d("0")));
        // 0 % lists every change.
        assert!(exceeds(d("1"), d("1.00000001"), d("0")));
        // Products too large for a decimal.
        assert!(exceeds(Decimal::MAX, d("1"), d("20")));
        assert_eq!(percent_change(d("3"), d("4")), Some(d("33.33")));
        assert_eq!(percent_change(d("200"), d("150")), Some(d("-25")));
        assert_eq!(percent_change(d("0"), d("1")), None);
        assert_eq!(percent_change(d("5"), d("0")), Some(d("-100")));
        assert_eq!(signed(d("1.50")), "+1.5");
        assert_eq!(signed(d("-2")), "-2");
        assert_eq!(signed(d("0")), "0");
    }

    #[test]
    fn lists_are_capped_and_counts_are_not() {
        let ids: Vec<String> = (0..250).map(|i| format!("o{i}")).collect();
        let addresses: Vec<String> = (0..250).map(|i| format!("T{i:033}")).collect();
        let previous: Vec<DiffRow<'_>> = (0..250)
            .map(|i| row(i as u64 + 2, &ids[i], "", &addresses[i], "1"))
            .collect();
        let current: Vec<DiffRow<'_>> = (0..250).map(|i| row(i as u64 + 2, &ids[i], &ids[i], A, "1")).collect();
        let diff = diff(&previous, &current, "20");
        assert_eq!((diff.counts.added, diff.counts.removed), (250, 250));
        assert_eq!((diff.added.len(), diff.removed.len()), (MAX_LISTED, MAX_LISTED));
        // The first rows of the file are the ones listed, with their texts read back.
        assert_eq!(diff.removed[0].previous_order_id, "o0");
        assert_eq!(diff.removed[99].previous_order_id, "o99");
        assert_eq!(diff.added[99].line, 101);
    }

    #[test]
    fn series_strips_dates_counters_and_extensions() {
        for (name, expected) in [
            ("payroll-2026-11.csv", "payroll"),
            ("payroll-2026-12.csv", "payroll"),
            ("/srv/inbox/processing/payroll-2026-11-1.csv", "payroll"),
            ("Payroll_20261201.json", "payroll"),
            ("payroll.csv", "payroll"),
            ("payroll-1.csv", "payroll"),
            ("affiliates week 47.jsonl", "affiliates week"),
            // Digits glued to letters are part of the run too: the rule is simple to predict.
            ("bonus-q4-2026.csv", "bonus-q"),
            ("2026-11-01.csv", ""),
            ("noext", "noext"),
        ] {
            assert_eq!(series(name), expected, "{name}");
        }
    }

    #[test]
    fn the_previous_batch_is_the_newest_other_of_the_series_and_of_the_same_inbox() {
        let batches = vec![
            batch("aaa", "payroll-2026-10.csv", 10),
            batch("bbb", "/in/pay/processing/payroll-2026-11.csv", 20),
            batch("ccc", "/in/other/processing/payroll-2026-11.csv", 30),
            batch("ddd", "bonus-2026-11.csv", 40),
            batch("eee", "payroll-2026-12.csv", 50),
        ];
        let id = |b: Option<&BatchRecord>| b.map(|b| b.batch_id.to_string());
        // By hand: the newest of the series, not this batch itself.
        assert_eq!(
            id(previous_of("payroll-2027-01.csv", "zzz", &batches)),
            Some("eee".into())
        );
        assert_eq!(
            id(previous_of("payroll-2026-12.csv", "eee", &batches)),
            Some("ccc".into())
        );
        // Claimed by an inbox: that inbox's batches only.
        assert_eq!(
            id(previous_of("/in/pay/processing/payroll-2026-12.csv", "zzz", &batches)),
            Some("bbb".into())
        );
        assert_eq!(
            id(previous_of("/in/new/processing/payroll-2026-12.csv", "zzz", &batches)),
            None
        );
        // Once paid, the daemon archives the file in done/: it is still that inbox's batch.
        let archived = vec![
            batch("bbb", "/in/pay/done/payroll-2026-11.csv", 20),
            batch("ccc", "/in/other/done/payroll-2026-11.csv", 30),
        ];
        assert_eq!(
            id(previous_of("/in/pay/processing/payroll-2026-12.csv", "zzz", &archived)),
            Some("bbb".into())
        );
        assert_eq!(id(previous_of("rent-2026-12.csv", "zzz", &batches)), None);
    }
}
