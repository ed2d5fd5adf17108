//! Local validation of batch rows: every rule that needs no API call beyond the catalogue.
//!
//! Each [`RawRow`] from the parser becomes either a compact [`Row`] or a list of [`Problem`]s,
//! each naming its line and field. Every problem of a row is collected, not just the first, and
//! a bad row never stops the others. Rows keep their text in one [`TextArena`] per batch and
//! refer to coins and chains by index, so a million rows fit in well under 200 MB.
//!
//! This module does no I/O beyond the `Read` it is given, and asks nothing of the network.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::Read;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::parse::{self, Column, Format, Limits, ParseProblem, RawRow};
use crate::batch::catalogue::{CWALLET, Catalogue, ChainRef, CoinEntry, CoinIdx, NetworkEntry};
use crate::model::ApiGeneration;
pub use crate::model::known::{KnownOrder, KnownOrders, NoKnownOrders, RetriedOrder};
use crate::model::state::StateKind;
use crate::rules::address::{self, AddressFamily};
use crate::rules::amount::Amount;

/// Characters allowed in an order_id besides ASCII letters and digits. CCPayment asks for 3–64
/// characters and names no set; these are safe in every report format and shell. `~` marks the
/// retry of an order (`ORDER~r1`, see [`crate::model::retry`]).
pub const ORDER_ID_EXTRA_CHARS: &str = "-_.:~";
/// The longest `reference` carried into reports.
pub const MAX_REFERENCE_CHARS: usize = 256;
/// The longest memo accepted.
pub const MAX_MEMO_CHARS: usize = 128;

/// A problem with the batch, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// 1-based line of the row (the line its record or object starts on); `None` for the file.
    pub line: Option<u64>,
    /// The column or key the problem is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The row's order_id, when it has one, so a report can name the row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub message: String,
}

impl Problem {
    fn at(line: u64, field: Column, message: impl Into<String>) -> Problem {
        Problem {
            line: Some(line),
            field: Some(field.name().to_owned()),
            order_id: None,
            message: message.into(),
        }
    }

    /// `file:line: field: message`, the way compilers point at a place.
    pub fn render(&self, file: &str) -> String {
        match (self.line, &self.field) {
            (Some(line), Some(field)) => format!("{file}:{line}: {field}: {}", self.message),
            (Some(line), None) => format!("{file}:{line}: {}", self.message),
            (None, _) => format!("{file}: {}", self.message),
        }
    }
}

impl From<ParseProblem> for Problem {
    fn from(p: ParseProblem) -> Self {
        Problem {
            line: p.line,
            field: p.field,
            order_id: None,
            message: p.message,
        }
    }
}

/// Where a text lives in the arena: a global offset and a length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    start: u32,
    len: u32,
}

/// The text of all rows of a batch, in chunks of 1 MiB: one allocation per chunk instead of
/// several per row, and no doubling copies as the batch grows. A text never straddles chunks.
#[derive(Debug, Default)]
pub struct TextArena {
    chunks: Vec<String>,
    bytes: usize,
}

const CHUNK_BITS: u32 = 20;
const CHUNK_BYTES: usize = 1 << CHUNK_BITS;

impl TextArena {
    /// Appends the concatenation of `parts` and returns where it starts. Texts longer than a
    /// chunk (impossible for rows, which the parser caps at 64 KiB) get a chunk of their own.
    fn push(&mut self, parts: &[&str]) -> u32 {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let fits = self.chunks.last().is_some_and(|c| c.capacity() - c.len() >= len);
        if !fits {
            self.chunks.push(String::with_capacity(CHUNK_BYTES.max(len)));
        }
        let chunk_idx = self.chunks.len() - 1;
        let chunk = &mut self.chunks[chunk_idx];
        let offset = chunk.len();
        for part in parts {
            chunk.push_str(part);
        }
        self.bytes += len;
        // 4096 chunks of 1 MiB address 4 GiB; a batch that large is refused by its row count
        // long before, so saturating is only a guard.
        u32::try_from((chunk_idx << CHUNK_BITS) | offset).unwrap_or(u32::MAX)
    }

    fn get(&self, slot: Slot) -> &str {
        let chunk = (slot.start >> CHUNK_BITS) as usize;
        let offset = (slot.start as usize) & (CHUNK_BYTES - 1);
        self.chunks
            .get(chunk)
            .and_then(|c| c.get(offset..offset + slot.len as usize))
            .unwrap_or("")
    }

    /// Bytes of text held.
    pub fn len(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

/// A row's seven texts, stored back to back in the arena: order_id, recipient, memo, reference,
/// token_id, payee, original_order_id. Lengths fit the validated limits (order_id and
/// original_order_id ≤ 64 bytes, payee ≤ 64 bytes, token_id a 36-byte UUID, the others ≤ the
/// parser's 4 KiB field limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowText {
    start: u32,
    order_id: u8,
    token_id: u8,
    recipient: u16,
    memo: u16,
    reference: u16,
    payee: u8,
    original_order_id: u8,
}

impl RowText {
    fn slot(self, skip: u32, len: impl Into<u32>) -> Slot {
        Slot {
            start: self.start + skip,
            len: len.into(),
        }
    }

    fn order_id(self) -> Slot {
        self.slot(0, self.order_id)
    }

    fn recipient(self) -> Slot {
        self.slot(u32::from(self.order_id), self.recipient)
    }

    fn memo(self) -> Slot {
        self.slot(u32::from(self.order_id) + u32::from(self.recipient), self.memo)
    }

    fn reference(self) -> Slot {
        self.slot(
            u32::from(self.order_id) + u32::from(self.recipient) + u32::from(self.memo),
            self.reference,
        )
    }

    fn token_id(self) -> Slot {
        let skip =
            u32::from(self.order_id) + u32::from(self.recipient) + u32::from(self.memo) + u32::from(self.reference);
        self.slot(skip, self.token_id)
    }

    fn payee(self) -> Slot {
        let skip = u32::from(self.order_id)
            + u32::from(self.recipient)
            + u32::from(self.memo)
            + u32::from(self.reference)
            + u32::from(self.token_id);
        self.slot(skip, self.payee)
    }

    fn original_order_id(self) -> Slot {
        let skip = u32::from(self.order_id)
            + u32::from(self.recipient)
            + u32::from(self.memo)
            + u32::from(self.reference)
            + u32::from(self.token_id)
            + u32::from(self.payee);
        self.slot(skip, self.original_order_id)
    }
}

/// Why an otherwise valid row cannot be paid right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// The chain is in maintenance.
    ChainMaintenance,
    /// The coin's status is not `Normal`.
    CoinSuspended,
    /// CCPayment does not allow withdrawals of the coin on this chain.
    WithdrawDisabled,
}

/// A row that passed local validation.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based line the row starts on.
    pub line: u32,
    /// The row's texts; read them through [`Validated`]'s accessors.
    pub text: RowText,
    /// The coin paid; v1 rows take it from their token.
    pub coin: Option<CoinIdx>,
    /// Where it is paid: a v1 row's token's network, or Cwallet.
    pub chain: Option<ChainRef>,
    pub amount: Amount,
    pub merchant_pays_fee: bool,
    pub hold: Option<Hold>,
}

/// What validation needs to know besides the rows.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub catalogue: &'a Catalogue,
    pub generation: ApiGeneration,
    /// `merchant_pays_fee` when a row leaves it empty.
    pub default_merchant_pays_fee: bool,
    pub limits: &'a Limits,
}

/// A row from an earlier batch with the same order_id and payload: reported, never paid again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub line: u64,
    pub order_id: String,
    pub earlier_batch: String,
}

/// A validated batch: the good rows, and every problem found.
#[derive(Debug, Default)]
pub struct Validated {
    pub arena: TextArena,
    pub rows: Vec<Row>,
    pub problems: Vec<Problem>,
    pub duplicates: Vec<Duplicate>,
    /// Data rows read, good or not.
    pub rows_seen: u64,
    /// Lines of rows that have at least one problem.
    pub refused_lines: Vec<u64>,
}

impl Validated {
    pub fn order_id(&self, row: &Row) -> &str {
        self.arena.get(row.text.order_id())
    }

    pub fn recipient(&self, row: &Row) -> &str {
        self.arena.get(row.text.recipient())
    }

    /// Empty when the row has none.
    pub fn memo(&self, row: &Row) -> &str {
        self.arena.get(row.text.memo())
    }

    /// Empty when the row has none.
    pub fn reference(&self, row: &Row) -> &str {
        self.arena.get(row.text.reference())
    }

    /// The row's payee id; empty when it has none.
    pub fn payee(&self, row: &Row) -> &str {
        self.arena.get(row.text.payee())
    }

    /// Empty except for v1 rows.
    pub fn token_id(&self, row: &Row) -> &str {
        self.arena.get(row.text.token_id())
    }

    /// The order the row retries; empty when it retries none.
    pub fn original_order_id(&self, row: &Row) -> &str {
        self.arena.get(row.text.original_order_id())
    }

    /// The line of a row, as problems give it.
    pub fn line(row: &Row) -> u64 {
        u64::from(row.line)
    }

    /// The order_id of the good row (kept, or a duplicate of an earlier batch's) on `line`.
    fn order_id_at(&self, line: u32) -> Option<String> {
        if let Ok(i) = self.rows.binary_search_by_key(&line, |r| r.line) {
            return Some(self.order_id(&self.rows[i]).to_owned());
        }
        self.duplicates
            .iter()
            .find(|d| d.line == u64::from(line))
            .map(|d| d.order_id.clone())
    }

    /// Whether the file itself (not a row) has a problem.
    pub fn has_file_problem(&self) -> bool {
        self.problems.iter().any(|p| p.line.is_none())
    }
}

/// Reads and validates a whole batch from `reader`.
pub fn validate<R: Read>(format: Format, reader: R, rules: &Rules<'_>, known: &dyn KnownOrders) -> Validated {
    let mut v = Validator {
        rules,
        known,
        out: Validated::default(),
        ids: Vec::new(),
        originals: Vec::new(),
    };
    let mut parse_problems = Vec::new();
    let rows_seen = parse::read_rows(format, reader, rules.limits, &mut |raw| v.row(&raw), &mut |p| {
        parse_problems.push(Problem::from(p))
    });
    v.refuse_originals_of_this_file();
    v.refuse_duplicate_ids();
    v.refuse_repeated_originals();
    let mut out = v.out;
    out.rows_seen = rows_seen;
    out.refused_lines.extend(parse_problems.iter().filter_map(|p| p.line));
    out.problems.extend(parse_problems);
    out.problems.sort_by_key(|p| p.line.unwrap_or(0));
    out.refused_lines.sort_unstable();
    out.refused_lines.dedup();
    out
}

/// A well-formed order_id seen in the batch. Duplicates are found after reading by sorting
/// these by hash: 24 bytes per row, against about twice that for a hash map of the same ids.
struct IdEntry {
    hash: u64,
    line: u32,
    slot: Slot,
}

struct Validator<'a, 'r> {
    rules: &'a Rules<'r>,
    known: &'a dyn KnownOrders,
    out: Validated,
    ids: Vec<IdEntry>,
    /// The `original_order_id`s of good rows: one order is retried by one row.
    originals: Vec<IdEntry>,
}

impl Validator<'_, '_> {
    /// Validates one row: every field check runs, whatever the others found, so a row reports
    /// all of its problems at once. A row with a problem is refused (its well-formed order_id still takes
    /// part in the duplicate check); a good one is stored compactly and then compared with the
    /// orders of earlier batches.
    fn row(&mut self, raw: &RawRow) {
        let cells = Cells::of(raw);
        let cat = self.rules.catalogue;
        let generation = self.rules.generation;
        let mut problems = RowProblems::new(raw.line);

        // The order of these checks is the order of a row's problems in every report.
        let order_id_ok = check_order_id_cell(cells.order_id, &mut problems);
        check_token_id(generation, cells.token_id, &mut problems);
        let destination = resolve_destination(cat, generation, &cells, &mut problems);
        check_recipient(cat, generation, cells.recipient, destination.chain, &mut problems);
        check_memo(cat, cells.memo, &destination, &mut problems);
        let amount = parse_amount(cells.amount, &mut problems);
        if let Some(amount) = amount {
            check_amount_limits(cat, amount, &destination, &mut problems);
        }
        let merchant_pays_fee = parse_merchant_pays_fee(
            cells.merchant_pays_fee,
            self.rules.default_merchant_pays_fee,
            &mut problems,
        );
        check_reference(cells.reference, &mut problems);
        check_payee(cells.payee, &mut problems);
        check_original_order_id(cells.original_order_id, cells.order_id, self.known, &mut problems);

        if !problems.is_empty() {
            self.refuse(raw.line, cells.order_id, order_id_ok, problems);
            return;
        }
        // A row without problems has an amount; the guard only keeps this free of `unwrap`.
        let Some(amount) = amount else {
            return;
        };
        let row = Row {
            line: line_u32(raw.line),
            text: self.store_texts(&cells),
            coin: destination.coin,
            chain: destination.chain,
            amount,
            merchant_pays_fee,
            hold: hold_of(cat, &destination),
        };
        self.remember_id(cells.order_id, row.line, row.text.order_id());
        if !cells.original_order_id.is_empty() {
            self.originals.push(IdEntry {
                hash: id_hash(cells.original_order_id),
                line: row.line,
                slot: row.text.original_order_id(),
            });
        }
        self.admit(row, cells.order_id, raw.line);
    }

    /// Records a refused row's problems, each naming the row's order_id when it is well-formed,
    /// and keeps that id for the duplicate check: a refused row that shares its id with another
    /// row makes the other row ambiguous too.
    fn refuse(&mut self, line: u64, order_id: &str, order_id_ok: bool, problems: RowProblems) {
        let order_id = order_id_ok.then(|| order_id.to_owned());
        let mut problems = problems.list;
        for p in &mut problems {
            p.order_id.clone_from(&order_id);
        }
        self.out.problems.extend(problems);
        self.out.refused_lines.push(line);
        if let Some(id) = order_id {
            let start = self.out.arena.push(&[&id]);
            let slot = Slot {
                start,
                len: id.len() as u32,
            };
            self.remember_id(&id, line_u32(line), slot);
        }
    }

    /// Puts a good row's seven texts into the arena, back to back in [`RowText`]'s order.
    fn store_texts(&mut self, cells: &Cells<'_>) -> RowText {
        // Validation bounded every length below what these fields hold.
        RowText {
            start: self.out.arena.push(&[
                cells.order_id,
                cells.recipient,
                cells.memo,
                cells.reference,
                cells.token_id,
                cells.payee,
                cells.original_order_id,
            ]),
            order_id: cells.order_id.len() as u8,
            recipient: cells.recipient.len() as u16,
            memo: cells.memo.len() as u16,
            reference: cells.reference.len() as u16,
            token_id: cells.token_id.len() as u8,
            payee: cells.payee.len() as u8,
            original_order_id: cells.original_order_id.len() as u8,
        }
    }

    /// Notes an order_id (stored at `slot`) for [`Validator::refuse_duplicate_ids`].
    fn remember_id(&mut self, order_id: &str, line: u32, slot: Slot) {
        self.ids.push(IdEntry {
            hash: id_hash(order_id),
            line,
            slot,
        });
    }

    /// Keeps a good row unless an earlier batch already used its order_id. Across batches the
    /// same id with the same payload is a duplicate, reported and never paid again; with a
    /// different payload it is a conflict, refused, because an order_id is never reused.
    fn admit(&mut self, row: Row, order_id: &str, line: u64) {
        let Some(known) = self.known.lookup(order_id) else {
            self.out.rows.push(row);
            return;
        };
        if known.payload_digest == payload_digest(&row, &self.out, self.rules.catalogue) {
            self.out.duplicates.push(Duplicate {
                line,
                order_id: order_id.to_owned(),
                earlier_batch: known.batch,
            });
        } else {
            self.out.problems.push(Problem {
                line: Some(line),
                field: Some(Column::OrderId.name().to_owned()),
                order_id: Some(order_id.to_owned()),
                message: format!(
                    "order_id {} was used in batch {} for a different payout; an order_id is never reused",
                    quote(order_id),
                    known.batch
                ),
            });
            self.out.refused_lines.push(line);
        }
    }

    /// Refuses every row whose order_id appears more than once in the file, each naming the
    /// other lines: which of them was meant is for the operator to say, not for us to guess.
    fn refuse_duplicate_ids(&mut self) {
        let ids = std::mem::take(&mut self.ids);
        self.refuse_repeats(ids, Column::OrderId, |text, others| {
            format!(
                "order_id {} is also on line {others}; every row needs its own",
                quote(text)
            )
        });
    }

    /// Refuses every row whose `original_order_id` is the order_id of a row of the same file: a
    /// retry names an order of an earlier batch, and here both rows would be paid.
    fn refuse_originals_of_this_file(&mut self) {
        if self.originals.is_empty() {
            return;
        }
        self.ids.sort_unstable_by_key(|e| (e.hash, e.line));
        let arena = &self.out.arena;
        let mut found: Vec<(u32, String, u32)> = Vec::new();
        for original in &self.originals {
            let text = arena.get(original.slot);
            let first = self.ids.partition_point(|e| e.hash < original.hash);
            if let Some(row) = self.ids[first..]
                .iter()
                .take_while(|e| e.hash == original.hash)
                .find(|e| arena.get(e.slot) == text)
            {
                found.push((original.line, text.to_owned(), row.line));
            }
        }
        if found.is_empty() {
            return;
        }
        let mut refused: Vec<u32> = Vec::new();
        for (line, text, row_line) in found {
            let order_id = self.out.order_id_at(line);
            self.out.problems.push(Problem {
                line: Some(u64::from(line)),
                field: Some(Column::OriginalOrderId.name().to_owned()),
                order_id,
                message: format!(
                    "original_order_id {} is the order_id of line {row_line} of this file; a retry names an order of an earlier batch",
                    quote(&text)
                ),
            });
            refused.push(line);
        }
        refused.sort_unstable();
        self.out.rows.retain(|r| refused.binary_search(&r.line).is_err());
        self.out.refused_lines.extend(refused.iter().map(|&l| u64::from(l)));
    }

    /// Refuses every row whose `original_order_id` another row of the file names too: two
    /// retries of one order would pay it twice.
    fn refuse_repeated_originals(&mut self) {
        let originals = std::mem::take(&mut self.originals);
        self.refuse_repeats(originals, Column::OriginalOrderId, |text, others| {
            format!(
                "original_order_id {} is also on line {others}; an order is retried by one row",
                quote(text)
            )
        });
    }

    /// Refuses every row whose text in `ids` another row has too, with `message(text, other
    /// lines)` in `field`.
    fn refuse_repeats(&mut self, mut ids: Vec<IdEntry>, field: Column, message: impl Fn(&str, &str) -> String) {
        ids.sort_unstable_by_key(|e| (e.hash, e.line));
        let mut refused: Vec<u32> = Vec::new();
        let mut i = 0;
        while i < ids.len() {
            let mut j = i + 1;
            while j < ids.len() && ids[j].hash == ids[i].hash {
                j += 1;
            }
            // Within one hash, group equal texts (different texts are a hash collision).
            let group = &ids[i..j];
            for entry in group {
                let same: Vec<u32> = {
                    let arena = &self.out.arena;
                    let text = arena.get(entry.slot);
                    group
                        .iter()
                        .filter(|e| arena.get(e.slot) == text)
                        .map(|e| e.line)
                        .collect()
                };
                if same.len() < 2 {
                    continue;
                }
                let text = self.out.arena.get(entry.slot).to_owned();
                let text = text.as_str();
                let others: Vec<String> = same.iter().filter(|&&l| l != entry.line).map(u32::to_string).collect();
                // The problem names the row by its own order_id.
                let order_id = match field {
                    Column::OrderId => Some(text.to_owned()),
                    _ => self.out.order_id_at(entry.line),
                };
                self.out.problems.push(Problem {
                    line: Some(u64::from(entry.line)),
                    field: Some(field.name().to_owned()),
                    order_id,
                    message: message(text, &others.join(", ")),
                });
                refused.push(entry.line);
            }
            i = j;
        }
        if refused.is_empty() {
            return;
        }
        refused.sort_unstable();
        self.out.rows.retain(|r| refused.binary_search(&r.line).is_err());
        self.out.refused_lines.extend(refused.iter().map(|&l| u64::from(l)));
    }
}

/// A row's cells by column, each `""` when the column is absent or left empty: every rule
/// treats a missing column and an empty cell alike.
struct Cells<'r> {
    order_id: &'r str,
    recipient: &'r str,
    coin: &'r str,
    chain: &'r str,
    amount: &'r str,
    memo: &'r str,
    merchant_pays_fee: &'r str,
    reference: &'r str,
    token_id: &'r str,
    payee: &'r str,
    original_order_id: &'r str,
}

impl<'r> Cells<'r> {
    fn of(raw: &'r RawRow) -> Cells<'r> {
        let get = |c: Column| raw.get(c).unwrap_or("");
        Cells {
            order_id: get(Column::OrderId),
            recipient: get(Column::Recipient),
            coin: get(Column::Coin),
            chain: get(Column::Chain),
            amount: get(Column::Amount),
            memo: get(Column::Memo),
            merchant_pays_fee: get(Column::MerchantPaysFee),
            reference: get(Column::Reference),
            token_id: get(Column::TokenId),
            payee: get(Column::Payee).trim(),
            original_order_id: get(Column::OriginalOrderId),
        }
    }
}

/// The problems of one row, in the order its checks found them.
struct RowProblems {
    line: u64,
    list: Vec<Problem>,
}

impl RowProblems {
    fn new(line: u64) -> RowProblems {
        RowProblems { line, list: Vec::new() }
    }

    fn fail(&mut self, field: Column, message: impl Into<String>) {
        self.list.push(Problem::at(self.line, field, message));
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Where a row pays to, as far as the catalogue resolved it.
struct Destination<'c> {
    /// `None` when the coin (or a v1 row's token) is unknown.
    coin: Option<CoinIdx>,
    /// `None` when the chain (or a v1 row's token) is unknown.
    chain: Option<ChainRef>,
    /// The coin's network on the chain; `None` for Cwallet transfers and when the coin has none
    /// there.
    network: Option<&'c NetworkEntry>,
}

/// A row's line as rows store it. Lines past `u32::MAX` cannot occur (the parser caps the row
/// count far below), so saturating is only a guard.
fn line_u32(line: u64) -> u32 {
    u32::try_from(line).unwrap_or(u32::MAX)
}

/// The hash [`IdEntry`] sorts by.
fn id_hash(order_id: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(order_id)
}

/// `order_id`: the grammar of [`check_order_id`]. Returns whether the id is well-formed, since
/// only a well-formed id names the row in its problems and takes part in the duplicate check.
fn check_order_id_cell(order_id: &str, problems: &mut RowProblems) -> bool {
    match check_order_id(order_id) {
        Ok(()) => true,
        Err(message) => {
            problems.fail(Column::OrderId, message);
            false
        }
    }
}

/// `token_id`: required and a UUID with the v1 API, which names the coin by token; refused with
/// v2, which has no such field, so a v1 file is not paid by a v2 set-up as if it were v2.
fn check_token_id(generation: ApiGeneration, token_id: &str, problems: &mut RowProblems) {
    match generation {
        ApiGeneration::V2 if !token_id.is_empty() => problems.fail(
            Column::TokenId,
            "token_id is for v1 accounts; this configuration uses the v2 API (api.version)",
        ),
        ApiGeneration::V1 if token_id.is_empty() => {
            problems.fail(Column::TokenId, "token_id is required for the v1 API")
        }
        ApiGeneration::V1 if !is_uuid(token_id) => problems.fail(
            Column::TokenId,
            format!("{} is not a token id (a UUID)", quote(token_id)),
        ),
        _ => {}
    }
}

/// `coin`, `chain` and the network they make together (see [`resolve_coin`], [`resolve_chain`]
/// and [`resolve_network`]). With the v1 API the token_id says what is paid (see
/// [`resolve_token`]), and coin and chain may be left out.
fn resolve_destination<'c>(
    cat: &'c Catalogue,
    generation: ApiGeneration,
    cells: &Cells<'_>,
    problems: &mut RowProblems,
) -> Destination<'c> {
    if generation == ApiGeneration::V1 {
        return resolve_token(cat, cells, problems);
    }
    let coin = resolve_coin(cat, cells.coin, problems);
    let chain = resolve_chain(cat, cells.chain, problems);
    let network = resolve_network(cat, coin, chain, problems);
    Destination { coin, chain, network }
}

/// `token_id` against the v1 catalogue: the token names the coin and the network. The row is
/// a Cwallet transfer when its chain says `CWALLET`, or, with no chain, when the recipient is a
/// Cwallet ID or e-mail (v1 pays those with any token of the coin); otherwise it pays on the
/// token's network. A coin or chain the row also gives must agree with the token, since the
/// operator evidently meant something and the token alone would decide.
fn resolve_token<'c>(cat: &'c Catalogue, cells: &Cells<'_>, problems: &mut RowProblems) -> Destination<'c> {
    let none = Destination {
        coin: None,
        chain: None,
        network: None,
    };
    // An empty or malformed token_id has its problem already (`check_token_id`).
    if !is_uuid(cells.token_id) {
        return none;
    }
    let Some(token) = cat.find_token(cells.token_id) else {
        problems.fail(
            Column::TokenId,
            format!(
                "{} is not a token of this account; its coins are {}",
                quote(cells.token_id),
                coin_list(cat)
            ),
        );
        return none;
    };
    let coin = cat.coin(token.coin);
    let token_chain = &cat.chain(token.chain).symbol;
    if !cells.coin.is_empty() && cat.find_coin(cells.coin) != Some(token.coin) {
        problems.fail(
            Column::Coin,
            format!(
                "{} does not match token_id {}, which is {} on {token_chain}",
                quote(cells.coin),
                quote(cells.token_id),
                coin.symbol
            ),
        );
    }
    let cwallet = if cells.chain.is_empty() {
        address::parse_cwallet_recipient(cells.recipient).is_ok()
    } else if cells.chain.eq_ignore_ascii_case(CWALLET) {
        true
    } else {
        if !cells.chain.eq_ignore_ascii_case(token_chain) {
            problems.fail(
                Column::Chain,
                format!(
                    "{} does not match token_id {}, which is {} on {token_chain}",
                    quote(cells.chain),
                    quote(cells.token_id),
                    coin.symbol
                ),
            );
        }
        false
    };
    if cwallet {
        return Destination {
            coin: Some(token.coin),
            chain: Some(ChainRef::Cwallet),
            network: None,
        };
    }
    Destination {
        coin: Some(token.coin),
        chain: Some(ChainRef::Chain(token.chain)),
        network: cat.token_network(token),
    }
}

/// `coin`: a symbol (any case) or numeric id the catalogue knows. An unknown coin's message
/// lists the known ones, since a typo is the usual cause.
fn resolve_coin(cat: &Catalogue, text: &str, problems: &mut RowProblems) -> Option<CoinIdx> {
    if text.is_empty() {
        problems.fail(Column::Coin, "coin is empty");
        return None;
    }
    let found = cat.find_coin(text);
    if found.is_none() {
        problems.fail(
            Column::Coin,
            format!("unknown coin {}; known coins: {}", quote(text), coin_list(cat)),
        );
    }
    found
}

/// `chain`: a chain symbol (any case) the catalogue knows, or `CWALLET`.
fn resolve_chain(cat: &Catalogue, text: &str, problems: &mut RowProblems) -> Option<ChainRef> {
    if text.is_empty() {
        problems.fail(Column::Chain, "chain is empty");
        return None;
    }
    let found = cat.find_chain(text);
    if found.is_none() {
        problems.fail(Column::Chain, format!("unknown chain {}", quote(text)));
    }
    found
}

/// `chain` again: the coin must have a network on the chain, or CCPayment would refuse the
/// withdrawal. The message lists the coin's chains. Cwallet transfers need no network.
fn resolve_network<'c>(
    cat: &'c Catalogue,
    coin: Option<CoinIdx>,
    chain: Option<ChainRef>,
    problems: &mut RowProblems,
) -> Option<&'c NetworkEntry> {
    let (Some(coin), Some(ChainRef::Chain(chain))) = (coin, chain) else {
        return None;
    };
    let network = cat.coin(coin).network(chain);
    if network.is_none() {
        problems.fail(
            Column::Chain,
            format!(
                "{} cannot be paid on {}; its chains are {}",
                cat.coin(coin).symbol,
                cat.chain(chain).symbol,
                cat.chains_of(coin).join(", ")
            ),
        );
    }
    network
}

/// `recipient`: required, and shaped like what the chain pays to (an address of the chain's
/// family, or a Cwallet ID or e-mail), so a malformed recipient is refused before any money
/// moves. Whether it really exists is for the preflight's remote checks.
fn check_recipient(
    cat: &Catalogue,
    generation: ApiGeneration,
    recipient: &str,
    chain: Option<ChainRef>,
    problems: &mut RowProblems,
) {
    if recipient.is_empty() {
        problems.fail(Column::Recipient, "recipient is empty");
        return;
    }
    match chain {
        Some(ChainRef::Cwallet) => {
            if let Err(e) = address::parse_cwallet_recipient(recipient) {
                problems.fail(
                    Column::Recipient,
                    format!("{} is not a Cwallet ID or e-mail: {e}", quote(recipient)),
                );
            }
        }
        Some(ChainRef::Chain(c)) => {
            let family = cat.chain(c).family;
            if let Err(e) = address::check_address(family, recipient) {
                problems.fail(
                    Column::Recipient,
                    format!("{} is not a {} address: {e}", quote(recipient), cat.chain(c).symbol),
                );
            }
        }
        // v1 rows without a chain: the address is either a Cwallet user or a chain address
        // CCPayment checks; reject only what is neither shaped like one.
        None if generation == ApiGeneration::V1
            && address::parse_cwallet_recipient(recipient).is_err()
            && address::check_address(AddressFamily::Other, recipient).is_err() =>
        {
            problems.fail(
                Column::Recipient,
                format!("{} is not an address or Cwallet user", quote(recipient)),
            );
        }
        None => {}
    }
}

/// `memo`: required where the network (or, without one, the chain) takes a memo, since a
/// deposit without its memo is lost at exchanges; refused where it is not used, since the
/// operator evidently meant something else; and always short and printable.
fn check_memo(cat: &Catalogue, memo: &str, destination: &Destination<'_>, problems: &mut RowProblems) {
    let chain = destination.chain;
    let memo_needed = match chain {
        Some(ChainRef::Chain(c)) => Some(
            destination
                .network
                .map_or(cat.chain(c).supports_memo, |n| n.supports_memo),
        ),
        Some(ChainRef::Cwallet) => Some(false),
        None => None,
    };
    // `memo_needed` is only known with a chain, so the fallback never shows.
    let chain_name = || cat.chain_name(chain.unwrap_or(ChainRef::Cwallet));
    match memo_needed {
        Some(true) if memo.is_empty() => problems.fail(Column::Memo, format!("memo is required on {}", chain_name())),
        Some(false) if !memo.is_empty() => problems.fail(
            Column::Memo,
            format!("memo is not used on {}; leave it empty", chain_name()),
        ),
        _ => {}
    }
    if memo.chars().count() > MAX_MEMO_CHARS || memo.chars().any(char::is_control) {
        problems.fail(
            Column::Memo,
            format!("memo must be at most {MAX_MEMO_CHARS} printable characters"),
        );
    }
}

/// `amount`: a positive plain decimal (see [`Amount::parse`]). The message quotes the cell,
/// except for an empty one, where the parser's own message says so.
fn parse_amount(text: &str, problems: &mut RowProblems) -> Option<Amount> {
    match Amount::parse(text) {
        Ok(amount) => Some(amount),
        Err(e) if text.is_empty() => {
            problems.fail(Column::Amount, e.to_string());
            None
        }
        Err(e) => {
            problems.fail(Column::Amount, format!("{}: {e}", quote(text)));
            None
        }
    }
}

/// `amount` against the coin's limits where it is paid: CCPayment refuses amounts outside
/// them, and knowing before submission keeps a batch from half-failing. Rows whose coin or
/// network is unknown were refused already and are not checked again.
fn check_amount_limits(cat: &Catalogue, amount: Amount, destination: &Destination<'_>, problems: &mut RowProblems) {
    let Some(coin) = destination.coin else {
        return;
    };
    match (destination.chain, destination.network) {
        (Some(ChainRef::Chain(c)), Some(network)) => check_network_amount(cat, amount, coin, c, network, problems),
        (Some(ChainRef::Cwallet), _) => check_cwallet_amount(cat.coin(coin), amount, problems),
        _ => {}
    }
}

/// On a chain: no more decimals than the network's precision, and within its minimum and
/// maximum (`None`: no maximum).
fn check_network_amount(
    cat: &Catalogue,
    amount: Amount,
    coin: CoinIdx,
    chain: u16,
    network: &NetworkEntry,
    problems: &mut RowProblems,
) {
    let symbol = &cat.coin(coin).symbol;
    let on = &cat.chain(chain).symbol;
    if amount.scale() > network.precision {
        problems.fail(
            Column::Amount,
            format!(
                "{amount} has {} decimals; {symbol} on {on} allows {}",
                amount.scale(),
                network.precision
            ),
        );
    }
    if amount.value() < network.minimum {
        problems.fail(
            Column::Amount,
            format!("{amount} is below the minimum of {} {symbol} on {on}", network.minimum),
        );
    }
    if let Some(max) = network.maximum
        && amount.value() > max
    {
        problems.fail(
            Column::Amount,
            format!("{amount} is above the maximum of {max} {symbol} on {on}"),
        );
    }
}

/// To Cwallet: no more decimals than the coin's finest network, and worth at least
/// CCPayment's Cwallet minimum of 0.001 USD (not checked when the price is unknown: the v2
/// reference's coin list has no price field, ccpayment-api.md §5, R13).
fn check_cwallet_amount(coin: &CoinEntry, amount: Amount, problems: &mut RowProblems) {
    let symbol = &coin.symbol;
    let precision = coin.cwallet_precision();
    if amount.scale() > precision {
        problems.fail(
            Column::Amount,
            format!(
                "{amount} has {} decimals; {symbol} to Cwallet allows {precision}",
                amount.scale()
            ),
        );
    }
    if !coin.price.is_zero() && amount.value() * coin.price < Decimal::new(1, 3) {
        problems.fail(
            Column::Amount,
            format!("{amount} {symbol} is worth less than 0.001 USD, the Cwallet minimum"),
        );
    }
}

/// `merchant_pays_fee`: `true` or `false` in any case, or empty for the configured default.
/// Anything else is refused rather than guessed, because it decides who pays the fee.
fn parse_merchant_pays_fee(text: &str, default: bool, problems: &mut RowProblems) -> bool {
    match text.to_ascii_lowercase().as_str() {
        "" => default,
        "true" => true,
        "false" => false,
        _ => {
            problems.fail(Column::MerchantPaysFee, format!("{} is not true or false", quote(text)));
            false
        }
    }
}

/// `reference`: free text for the operator's own bookkeeping, only bounded so that reports
/// stay readable.
fn check_reference(reference: &str, problems: &mut RowProblems) {
    if reference.chars().count() > MAX_REFERENCE_CHARS {
        problems.fail(
            Column::Reference,
            format!("reference is longer than {MAX_REFERENCE_CHARS} characters"),
        );
    }
}

/// The longest `payee` id.
const MAX_PAYEE_BYTES: usize = 64;

/// `payee`: a stable id of the person paid, which the recipient registry keys on: printable,
/// at most 64 bytes (empty: the row names no payee).
fn check_payee(payee: &str, problems: &mut RowProblems) {
    if payee.len() > MAX_PAYEE_BYTES {
        problems.fail(Column::Payee, format!("payee is longer than {MAX_PAYEE_BYTES} bytes"));
    } else if payee.chars().any(char::is_control) {
        problems.fail(Column::Payee, "payee contains a control character".to_owned());
    }
}

/// `original_order_id`: the order this row retries (empty: none). It has the order_id grammar and
/// is not the row's own id. When an earlier batch has that order, it must have ended without
/// paying (failed, rejected or cancelled) and no other order may retry it already: a retry of a
/// paid order, or of one still in flight, or a second retry of one order, could pay it twice.
/// An id no earlier batch has (an order from elsewhere) is only carried into the reports.
fn check_original_order_id(original: &str, order_id: &str, known: &dyn KnownOrders, problems: &mut RowProblems) {
    if original.is_empty() {
        return;
    }
    if let Err(message) = check_order_id(original) {
        problems.fail(Column::OriginalOrderId, message);
        return;
    }
    if original == order_id {
        problems.fail(
            Column::OriginalOrderId,
            "original_order_id is the row's own order_id; it names the order this row retries",
        );
        return;
    }
    let Some(RetriedOrder {
        batch,
        state,
        retried_as,
    }) = known.original(original)
    else {
        return;
    };
    let what = quote(original);
    match state {
        None => problems.fail(
            Column::OriginalOrderId,
            format!("order {what} of batch {batch} cannot be read from the state store; it is not retried blind"),
        ),
        Some(StateKind::Success) => problems.fail(
            Column::OriginalOrderId,
            format!("order {what} of batch {batch} was paid (success); retrying it would pay it twice"),
        ),
        Some(kind) if !kind.is_final() => problems.fail(
            Column::OriginalOrderId,
            format!(
                "order {what} of batch {batch} is still {kind}; retry an order only once it failed or was rejected"
            ),
        ),
        Some(_) => {}
    }
    let others: Vec<&str> = retried_as
        .iter()
        .map(String::as_str)
        .filter(|id| *id != order_id)
        .collect();
    if !others.is_empty() {
        problems.fail(
            Column::OriginalOrderId,
            format!(
                "order {what} of batch {batch} is retried already by {}; retry that order instead",
                others.iter().map(|id| quote(id)).collect::<Vec<_>>().join(", ")
            ),
        );
    }
}

/// Why a valid row cannot be paid right now, if it cannot: the coin suspended, the chain in
/// maintenance, or withdrawals of the coin disabled on the chain, checked in that order.
fn hold_of(cat: &Catalogue, destination: &Destination<'_>) -> Option<Hold> {
    match (destination.coin, destination.chain, destination.network) {
        (Some(coin), _, _) if cat.coin(coin).withdrawals_suspended() => Some(Hold::CoinSuspended),
        (_, Some(ChainRef::Chain(c)), _) if !cat.chain(c).is_normal() => Some(Hold::ChainMaintenance),
        (_, _, Some(network)) if !network.can_withdraw => Some(Hold::WithdrawDisabled),
        _ => None,
    }
}

/// Checks the order_id grammar: 3 to 64 characters from letters, digits and `-_.:`.
pub fn check_order_id(order_id: &str) -> Result<(), String> {
    if order_id.is_empty() {
        return Err("order_id is empty".into());
    }
    let n = order_id.chars().count();
    if !(3..=64).contains(&n) {
        return Err(format!(
            "{} has {n} characters; an order_id has 3 to 64",
            quote(order_id)
        ));
    }
    if let Some(bad) = order_id
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !ORDER_ID_EXTRA_CHARS.contains(*c))
    {
        return Err(format!(
            "{} contains {bad:?}; use letters, digits and {ORDER_ID_EXTRA_CHARS:?}",
            quote(order_id)
        ));
    }
    Ok(())
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn coin_list(cat: &Catalogue) -> String {
    let mut names: Vec<&str> = cat.coins().iter().map(|c| c.symbol.as_str()).collect();
    names.sort_unstable();
    names.join(", ")
}

/// Quotes user input for a message, cut to 40 characters.
pub fn quote(s: &str) -> String {
    let mut cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// SHA-256 over the fields that decide where money goes: coin, chain, recipient, memo, amount,
/// fee mode and token. Two rows with one order_id and equal digests are the same payout.
pub fn payload_digest(row: &Row, v: &Validated, cat: &Catalogue) -> [u8; 32] {
    let mut h = Sha256::new();
    hash_payload(&mut h, row, v, cat);
    h.finalize().into()
}

/// Feeds the payout fields of `row` into `h` in a fixed order (see [`payload_digest`]).
///
/// A v1 row's token already names its coin and network (and the recipient whether it is a
/// Cwallet transfer), so its coin and chain go in empty: the digest of a v1 row stays what it
/// was when v1 rows were not resolved against a catalogue, and an order stored then is still
/// recognised as the same payout.
pub fn hash_payload(h: &mut Sha256, row: &Row, v: &Validated, cat: &Catalogue) {
    let by_token = !v.token_id(row).is_empty();
    let coin = row
        .coin
        .filter(|_| !by_token)
        .map(|c| cat.coin(c).coin_id.to_string())
        .unwrap_or_default();
    let chain = row
        .chain
        .filter(|_| !by_token)
        .map(|c| cat.chain_name(c).to_owned())
        .unwrap_or_default();
    for field in [
        coin.as_str(),
        chain.as_str(),
        v.recipient(row),
        v.memo(row),
        &row.amount.canonical(),
        if row.merchant_pays_fee { "true" } else { "false" },
        v.token_id(row),
    ] {
        hash_field(h, field);
    }
}

/// One field, length-prefixed so no two different sequences of fields share a byte string.
pub fn hash_field(h: &mut Sha256, field: &str) {
    h.update((field.len() as u64).to_be_bytes());
    h.update(field.as_bytes());
}

/// Validates CSV `text` over `cat` with default limits: the set-up every test of the batch
/// pipeline shares.
#[cfg(test)]
pub(crate) fn validate_csv(
    cat: &Catalogue,
    generation: ApiGeneration,
    default_merchant_pays_fee: bool,
    text: &str,
    known: &dyn KnownOrders,
) -> Validated {
    let limits = Limits::default();
    let rules = Rules {
        catalogue: cat,
        generation,
        default_merchant_pays_fee,
        limits: &limits,
    };
    validate(Format::Csv, text.as_bytes(), &rules, known)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::catalogue::tests::sample;

    fn run(text: &str, generation: ApiGeneration) -> Validated {
        validate_csv(&sample("Normal"), generation, true, text, &NoKnownOrders)
    }

    const TRON: &str = "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K";

    #[test]
    fn rows_keep_every_text_field_exactly() {
        let v = run(
            &format!(
                "order_id,recipient,coin,chain,amount,memo,reference\nrow-0001,{TRON},USDT,TRX,5,,\"pay, with comma\"\nrow-0002,rsGgQno3NYMPso4zJyzxijJCMTEgcQh6nT,XRP,XRP,3,12345,\n"
            ),
            ApiGeneration::V2,
        );
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        let (a, b) = (&v.rows[0], &v.rows[1]);
        assert_eq!(
            (v.order_id(a), v.recipient(a), v.memo(a), v.reference(a), v.token_id(a)),
            ("row-0001", TRON, "", "pay, with comma", "")
        );
        assert_eq!((v.order_id(b), v.memo(b), Validated::line(b)), ("row-0002", "12345", 3));
        // The configured default applies to rows that leave merchant_pays_fee out.
        assert!(a.merchant_pays_fee);
    }

    #[test]
    fn every_copy_of_a_duplicated_order_id_is_refused_naming_the_others() {
        let row = |id: &str, amount: &str| format!("{id},{TRON},USDT,TRX,{amount}\n");
        let text = format!(
            "order_id,recipient,coin,chain,amount\n{}{}{}{}",
            row("dup-0001", "5"),
            row("solo-0001", "6"),
            row("dup-0001", "7"),
            row("dup-0001", "x")
        );
        let v = run(&text, ApiGeneration::V2);
        assert_eq!(v.rows.len(), 1);
        assert_eq!(v.order_id(&v.rows[0]), "solo-0001");
        let messages: Vec<(Option<u64>, &str)> = v
            .problems
            .iter()
            .filter(|p| p.message.contains("also on line"))
            .map(|p| (p.line, p.message.as_str()))
            .collect();
        assert_eq!(
            messages,
            [
                (
                    Some(2),
                    "order_id \"dup-0001\" is also on line 4, 5; every row needs its own"
                ),
                (
                    Some(4),
                    "order_id \"dup-0001\" is also on line 2, 5; every row needs its own"
                ),
                (
                    Some(5),
                    "order_id \"dup-0001\" is also on line 2, 4; every row needs its own"
                ),
            ]
        );
        assert_eq!(v.refused_lines, [2, 4, 5]);
    }

    #[test]
    fn v1_rows_need_a_token_of_the_account_and_may_leave_out_coin_and_chain() {
        use crate::batch::catalogue::tests::{V1_USDT_TRX, sample_v1};
        let unknown = "fdf0e8b0-ebf5-44f0-a335-21c121b73fc8";
        let v = validate_csv(
            &sample_v1(),
            ApiGeneration::V1,
            true,
            &format!(
                "order_id,recipient,amount,token_id\nv1-0001,{TRON},5,{V1_USDT_TRX}\nv1-0002,{TRON},5,\nv1-0003,{TRON},5,not-a-uuid\nv1-0004,{TRON},5,{unknown}\n"
            ),
            &NoKnownOrders,
        );
        assert_eq!(v.rows.len(), 1, "{:?}", v.problems);
        assert_eq!(v.token_id(&v.rows[0]), V1_USDT_TRX);
        let messages: Vec<(Option<u64>, &str)> = v.problems.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(
            messages,
            [
                (Some(3), "token_id is required for the v1 API"),
                (Some(4), "\"not-a-uuid\" is not a token id (a UUID)"),
                (
                    Some(5),
                    "\"fdf0e8b0-ebf5-44f0-a335-21c121b73fc8\" is not a token of this account; its coins are DOGE, OLD, USDT, XRP"
                ),
            ]
        );
    }

    #[test]
    fn v1_rows_are_judged_by_what_their_token_is() {
        use crate::batch::catalogue::tests::{V1_DOGE, V1_OLD_TRX, V1_USDT_POLYGON, V1_USDT_TRX, V1_XRP, sample_v1};
        const EVM: &str = "0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d";
        const XRP: &str = "rsGgQno3NYMPso4zJyzxijJCMTEgcQh6nT";
        const DOGE: &str = "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L";
        let cat = sample_v1();
        let text = format!(
            "order_id,recipient,coin,chain,amount,memo,token_id\n\
             v1-ok,{TRON},,,5,,{V1_USDT_TRX}\n\
             v1-named,{TRON},usdt,trx,5,,{V1_USDT_TRX}\n\
             v1-small,{TRON},,,0.5,,{V1_USDT_TRX}\n\
             v1-fine,{TRON},,,1.0000001,,{V1_USDT_TRX}\n\
             v1-nomemo,{XRP},,,5,,{V1_XRP}\n\
             v1-wrongcoin,{TRON},XRP,,5,,{V1_USDT_TRX}\n\
             v1-wrongchain,{TRON},,POLYGON,5,,{V1_USDT_TRX}\n\
             v1-evm,{TRON},,,5,,{V1_USDT_POLYGON}\n\
             v1-paused,{EVM},,,5,,{V1_USDT_POLYGON}\n\
             v1-cwallet,9558861,,,5,,{V1_USDT_POLYGON}\n\
             v1-cwchain,alice@example.com,,CWALLET,5,,{V1_USDT_TRX}\n\
             v1-doge,{DOGE},,,5,,{V1_DOGE}\n\
             v1-old,{TRON},,,5,,{V1_OLD_TRX}\n"
        );
        let v = validate_csv(&cat, ApiGeneration::V1, false, &text, &NoKnownOrders);
        let refused = |id: &str| -> Vec<String> {
            v.problems
                .iter()
                .filter(|p| p.order_id.as_deref() == Some(id))
                .map(|p| format!("{}: {}", p.field.as_deref().unwrap_or(""), p.message))
                .collect()
        };
        assert_eq!(
            refused("v1-small"),
            ["amount: 0.5 is below the minimum of 1 USDT on TRX"]
        );
        assert_eq!(
            refused("v1-fine"),
            ["amount: 1.0000001 has 7 decimals; USDT on TRX allows 6"]
        );
        assert_eq!(refused("v1-nomemo"), ["memo: memo is required on XRP"]);
        assert_eq!(
            refused("v1-wrongcoin"),
            [format!(
                "coin: \"XRP\" does not match token_id \"{V1_USDT_TRX}\", which is USDT on TRX"
            )]
        );
        assert_eq!(
            refused("v1-wrongchain"),
            [format!(
                "chain: \"POLYGON\" does not match token_id \"{V1_USDT_TRX}\", which is USDT on TRX"
            )]
        );
        assert_eq!(refused("v1-evm").len(), 1, "a TRON address on POLYGON");
        let accepted: Vec<(&str, &str, &str, Option<Hold>)> = v
            .rows
            .iter()
            .map(|r| {
                (
                    v.order_id(r),
                    r.coin.map_or("", |c| cat.coin(c).symbol.as_str()),
                    r.chain.map_or("", |c| cat.chain_name(c)),
                    r.hold,
                )
            })
            .collect();
        assert_eq!(
            accepted,
            [
                ("v1-ok", "USDT", "TRX", None),
                ("v1-named", "USDT", "TRX", None),
                ("v1-paused", "USDT", "POLYGON", Some(Hold::WithdrawDisabled)),
                // A Cwallet transfer takes any token of the coin, whatever its network's state.
                ("v1-cwallet", "USDT", "CWALLET", None),
                ("v1-cwchain", "USDT", "CWALLET", None),
                ("v1-doge", "DOGE", "DOGE", Some(Hold::CoinSuspended)),
                // To be delisted: still withdrawable.
                ("v1-old", "OLD", "TRX", None),
            ]
        );
        // The token names coin and chain: rows that also write them are the same payout.
        assert_eq!(
            payload_digest(&v.rows[0], &v, &cat),
            payload_digest(&v.rows[1], &v, &cat)
        );
    }

    #[test]
    fn known_orders_make_duplicates_or_conflicts() {
        struct Known(KnownOrder);
        impl KnownOrders for Known {
            fn lookup(&self, order_id: &str) -> Option<KnownOrder> {
                (order_id == "old-0001").then(|| self.0.clone())
            }
        }
        let cat = sample("Normal");
        let text = format!("order_id,recipient,coin,chain,amount\nold-0001,{TRON},USDT,TRX,5\n");
        let run_with = |known: &dyn KnownOrders| validate_csv(&cat, ApiGeneration::V2, false, &text, known);
        // Learn the payload digest of the row as it would have been stored.
        let first = run_with(&NoKnownOrders);
        let digest = payload_digest(&first.rows[0], &first, &cat);

        let same = Known(KnownOrder {
            batch: "batch-a".into(),
            payload_digest: digest,
        });
        let v = run_with(&same);
        assert!(v.rows.is_empty());
        assert_eq!(
            v.duplicates,
            [Duplicate {
                line: 2,
                order_id: "old-0001".into(),
                earlier_batch: "batch-a".into()
            }]
        );

        let other = Known(KnownOrder {
            batch: "batch-a".into(),
            payload_digest: [0; 32],
        });
        let v = run_with(&other);
        assert!(v.rows.is_empty());
        assert!(
            v.problems[0]
                .message
                .contains("was used in batch batch-a for a different payout")
        );
    }

    #[test]
    fn a_retry_row_names_an_order_that_ended_unpaid_and_is_retried_by_no_other() {
        /// Earlier orders: `gone-1` failed, `paid-1` succeeded, `busy-1` is in flight, `twice-1`
        /// failed and is retried already by `twice-1~r1`, `blind-1` cannot be read.
        struct Earlier;
        impl KnownOrders for Earlier {
            fn lookup(&self, _order_id: &str) -> Option<KnownOrder> {
                None
            }
            fn original(&self, order_id: &str) -> Option<RetriedOrder> {
                let (state, retried_as) = match order_id {
                    "gone-1" => (Some(StateKind::Failed), vec![]),
                    "paid-1" => (Some(StateKind::Success), vec![]),
                    "busy-1" => (Some(StateKind::Submitted), vec![]),
                    "twice-1" => (Some(StateKind::Rejected), vec!["twice-1~r1".to_owned()]),
                    "blind-1" => (None, vec![]),
                    _ => return None,
                };
                Some(RetriedOrder {
                    batch: "batch-a".into(),
                    state,
                    retried_as,
                })
            }
        }
        let row = |id: &str, original: &str| format!("{id},{TRON},USDT,TRX,5,{original}\n");
        let text = format!(
            "order_id,recipient,coin,chain,amount,original_order_id\n{}{}{}{}{}{}{}{}{}{}{}",
            row("gone-1~r1", "gone-1"),
            row("paid-1~r1", "paid-1"),
            row("busy-1~r1", "busy-1"),
            row("twice-1~r1", "twice-1"),
            row("twice-1-again", "twice-1"),
            row("blind-1~r1", "blind-1"),
            row("self-1", "self-1"),
            row("bad-1~r1", "x"),
            row("elsewhere-1", "from-another-system"),
            row("plain-1", ""),
            row("gone-1-again", "gone-1"),
        );
        let v = validate_csv(&sample("Normal"), ApiGeneration::V2, true, &text, &Earlier);
        let problems: Vec<(u64, &str, &str)> = v
            .problems
            .iter()
            .map(|p| (p.line.unwrap(), p.order_id.as_deref().unwrap_or(""), p.message.as_str()))
            .collect();
        let find = |line: u64| -> Vec<&str> { problems.iter().filter(|p| p.0 == line).map(|p| p.2).collect() };
        assert!(
            find(3)[0].contains("was paid (success); retrying it would pay it twice"),
            "{problems:?}"
        );
        assert!(find(4)[0].contains("is still submitted"), "{problems:?}");
        // Its own retry, dropped again, is fine (a duplicate, if it was stored); another is not.
        assert!(find(5).is_empty(), "{problems:?}");
        assert!(find(6)[0].contains("retried already by \"twice-1~r1\""), "{problems:?}");
        assert!(find(7)[0].contains("cannot be read"), "{problems:?}");
        assert!(find(8)[0].contains("the row's own order_id"), "{problems:?}");
        assert!(find(9)[0].contains("has 1 characters"), "{problems:?}");
        // Two rows retrying one order: both refused, each naming the other, by their own ids.
        assert!(find(2)[0].contains("is also on line 12"), "{problems:?}");
        assert_eq!(problems.iter().find(|p| p.0 == 12).unwrap().1, "gone-1-again");
        assert!(find(12)[0].contains("is also on line 2"), "{problems:?}");
        assert!(problems.iter().all(|p| v.problems.iter().any(|q| q.message == p.2)));
        let kept: Vec<(&str, &str)> = v.rows.iter().map(|r| (v.order_id(r), v.original_order_id(r))).collect();
        assert_eq!(
            kept,
            [
                ("twice-1~r1", "twice-1"),
                ("elsewhere-1", "from-another-system"),
                ("plain-1", "")
            ]
        );
        // The texts around the new one are where they were.
        assert_eq!(v.recipient(&v.rows[1]), TRON);
        assert_eq!(v.payee(&v.rows[1]), "");
        // A row retrying a row of the same file: both would be paid.
        let text_in_file = format!(
            "order_id,recipient,coin,chain,amount,original_order_id\n{}{}",
            row("first-1", ""),
            row("first-1~r1", "first-1")
        );
        let v = validate_csv(&sample("Normal"), ApiGeneration::V2, true, &text_in_file, &Earlier);
        assert_eq!(v.rows.len(), 1);
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert!(v.problems[0].message.contains("is the order_id of line 2 of this file"));
        assert_eq!(
            (v.problems[0].line, v.problems[0].order_id.as_deref()),
            (Some(3), Some("first-1~r1"))
        );

        // The same file without a store knows no earlier order: only the file's own rules
        // (lines 5 and 6 now both reach the check of repeats).
        let alone = validate_csv(&sample("Normal"), ApiGeneration::V2, true, &text, &NoKnownOrders);
        let refused: Vec<u64> = alone.problems.iter().filter_map(|p| p.line).collect();
        assert_eq!(refused, [2, 5, 6, 8, 9, 12], "{:?}", alone.problems);
    }

    #[test]
    fn order_id_grammar() {
        assert!(check_order_id("abc").is_ok());
        assert!(check_order_id("payroll-2026_11.001:a").is_ok());
        assert!(check_order_id("payroll-001~r2").is_ok());
        assert!(check_order_id("payroll 001").is_err());
        assert!(check_order_id(&"x".repeat(64)).is_ok());
        assert!(check_order_id("ab").is_err());
        assert!(check_order_id(&"x".repeat(65)).is_err());
        assert!(check_order_id("naïve-id").is_err());
    }

    #[test]
    fn the_arena_never_splits_a_text_across_chunks() {
        let mut arena = TextArena::default();
        let long = "y".repeat(CHUNK_BYTES - 3);
        let first = arena.push(&[&long]);
        let second = arena.push(&["abcdef"]);
        assert_eq!(
            arena.get(Slot {
                start: first,
                len: long.len() as u32
            }),
            long
        );
        assert_eq!(arena.get(Slot { start: second, len: 6 }), "abcdef");
        assert_eq!(second >> CHUNK_BITS, 1, "the second text starts a new chunk");
        assert_eq!(arena.len(), long.len() + 6);
    }
}
