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
use crate::batch::catalogue::{Catalogue, ChainRef, CoinIdx};
use crate::model::ApiGeneration;
pub use crate::model::known::{KnownOrder, KnownOrders, NoKnownOrders};
use crate::rules::address::{self, AddressFamily};
use crate::rules::amount::Amount;

/// Characters allowed in an order_id besides ASCII letters and digits. CCPayment asks for 3–64
/// characters and names no set; these are safe in every report format and shell.
pub const ORDER_ID_EXTRA_CHARS: &str = "-_.:";
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

/// A row's five texts, stored back to back in the arena: order_id, recipient, memo, reference,
/// token_id. Lengths fit the validated limits (order_id ≤ 64 bytes, token_id a 36-byte UUID,
/// the others ≤ the parser's 4 KiB field limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowText {
    start: u32,
    order_id: u8,
    token_id: u8,
    recipient: u16,
    memo: u16,
    reference: u16,
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
    /// `None` only for v1 rows that give a token_id without a coin.
    pub coin: Option<CoinIdx>,
    /// `None` only for v1 rows that give a token_id without a chain.
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

    /// Empty except for v1 rows.
    pub fn token_id(&self, row: &Row) -> &str {
        self.arena.get(row.text.token_id())
    }

    /// The line of a row, as problems give it.
    pub fn line(row: &Row) -> u64 {
        u64::from(row.line)
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
    };
    let mut parse_problems = Vec::new();
    let rows_seen = parse::read_rows(format, reader, rules.limits, &mut |raw| v.row(&raw), &mut |p| {
        parse_problems.push(Problem::from(p))
    });
    v.refuse_duplicate_ids();
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
}

impl Validator<'_, '_> {
    fn row(&mut self, raw: &RawRow) {
        let line = raw.line;
        let mut problems: Vec<Problem> = Vec::new();
        let mut fail = |field: Column, message: String| problems.push(Problem::at(line, field, message));
        let cat = self.rules.catalogue;
        let get = |c: Column| raw.get(c).unwrap_or("");

        // order_id
        let order_id = get(Column::OrderId);
        let order_id_ok = match check_order_id(order_id) {
            Ok(()) => true,
            Err(message) => {
                fail(Column::OrderId, message);
                false
            }
        };

        // token_id belongs to v1 accounts only.
        let token_id = get(Column::TokenId);
        match self.rules.generation {
            ApiGeneration::V2 if !token_id.is_empty() => fail(
                Column::TokenId,
                "token_id is for v1 accounts; this configuration uses the v2 API (api.version)".into(),
            ),
            ApiGeneration::V1 if token_id.is_empty() => {
                fail(Column::TokenId, "token_id is required for the v1 API".into())
            }
            ApiGeneration::V1 if !is_uuid(token_id) => fail(
                Column::TokenId,
                format!("{} is not a token id (a UUID)", quote(token_id)),
            ),
            _ => {}
        }
        let v1_token_only = self.rules.generation == ApiGeneration::V1;

        // coin and chain
        let coin_text = get(Column::Coin);
        let chain_text = get(Column::Chain);
        let coin = if coin_text.is_empty() {
            if !v1_token_only {
                fail(Column::Coin, "coin is empty".into());
            }
            None
        } else {
            let found = cat.find_coin(coin_text);
            if found.is_none() {
                fail(
                    Column::Coin,
                    format!("unknown coin {}; known coins: {}", quote(coin_text), coin_list(cat)),
                );
            }
            found
        };
        let chain = if chain_text.is_empty() {
            if !v1_token_only {
                fail(Column::Chain, "chain is empty".into());
            }
            None
        } else {
            let found = cat.find_chain(chain_text);
            if found.is_none() {
                fail(Column::Chain, format!("unknown chain {}", quote(chain_text)));
            }
            found
        };
        let network = match (coin, chain) {
            (Some(coin), Some(ChainRef::Chain(chain))) => {
                let network = cat.coin(coin).network(chain);
                if network.is_none() {
                    fail(
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
            _ => None,
        };

        // recipient
        let recipient = get(Column::Recipient);
        if recipient.is_empty() {
            fail(Column::Recipient, "recipient is empty".into());
        } else {
            match chain {
                Some(ChainRef::Cwallet) => {
                    if let Err(e) = address::parse_cwallet_recipient(recipient) {
                        fail(
                            Column::Recipient,
                            format!("{} is not a Cwallet ID or e-mail: {e}", quote(recipient)),
                        );
                    }
                }
                Some(ChainRef::Chain(c)) => {
                    let family = cat.chain(c).family;
                    if let Err(e) = address::check_address(family, recipient) {
                        fail(
                            Column::Recipient,
                            format!("{} is not a {} address: {e}", quote(recipient), cat.chain(c).symbol),
                        );
                    }
                }
                // v1 rows without a chain: the address is either a Cwallet user or a chain
                // address CCPayment checks; reject only what is neither shaped like one.
                None if v1_token_only
                    && address::parse_cwallet_recipient(recipient).is_err()
                    && address::check_address(AddressFamily::Other, recipient).is_err() =>
                {
                    fail(
                        Column::Recipient,
                        format!("{} is not an address or Cwallet user", quote(recipient)),
                    );
                }
                None => {}
            }
        }

        // memo
        let memo = get(Column::Memo);
        let memo_needed = match chain {
            Some(ChainRef::Chain(c)) => Some(network.map_or(cat.chain(c).supports_memo, |n| n.supports_memo)),
            Some(ChainRef::Cwallet) => Some(false),
            None => None,
        };
        match memo_needed {
            Some(true) if memo.is_empty() => fail(
                Column::Memo,
                format!(
                    "memo is required on {}",
                    cat.chain_name(chain.unwrap_or(ChainRef::Cwallet))
                ),
            ),
            Some(false) if !memo.is_empty() => fail(
                Column::Memo,
                format!(
                    "memo is not used on {}; leave it empty",
                    cat.chain_name(chain.unwrap_or(ChainRef::Cwallet))
                ),
            ),
            _ => {}
        }
        if memo.chars().count() > MAX_MEMO_CHARS || memo.chars().any(char::is_control) {
            fail(
                Column::Memo,
                format!("memo must be at most {MAX_MEMO_CHARS} printable characters"),
            );
        }

        // amount
        let amount_text = get(Column::Amount);
        let amount = match Amount::parse(amount_text) {
            Ok(amount) => Some(amount),
            Err(e) if amount_text.is_empty() => {
                fail(Column::Amount, e.to_string());
                None
            }
            Err(e) => {
                fail(Column::Amount, format!("{}: {e}", quote(amount_text)));
                None
            }
        };
        if let (Some(amount), Some(coin)) = (amount, coin) {
            let entry = cat.coin(coin);
            let symbol = &entry.symbol;
            match (chain, network) {
                (Some(ChainRef::Chain(c)), Some(network)) => {
                    let on = &cat.chain(c).symbol;
                    if amount.scale() > network.precision {
                        fail(
                            Column::Amount,
                            format!(
                                "{amount} has {} decimals; {symbol} on {on} allows {}",
                                amount.scale(),
                                network.precision
                            ),
                        );
                    }
                    if amount.value() < network.minimum {
                        fail(
                            Column::Amount,
                            format!("{amount} is below the minimum of {} {symbol} on {on}", network.minimum),
                        );
                    }
                    if let Some(max) = network.maximum
                        && amount.value() > max
                    {
                        fail(
                            Column::Amount,
                            format!("{amount} is above the maximum of {max} {symbol} on {on}"),
                        );
                    }
                }
                (Some(ChainRef::Cwallet), _) => {
                    let precision = entry.cwallet_precision();
                    if amount.scale() > precision {
                        fail(
                            Column::Amount,
                            format!(
                                "{amount} has {} decimals; {symbol} to Cwallet allows {precision}",
                                amount.scale()
                            ),
                        );
                    }
                    // CCPayment's minimum for Cwallet transfers is 0.001 USD worth.
                    if !entry.price.is_zero() && amount.value() * entry.price < Decimal::new(1, 3) {
                        fail(
                            Column::Amount,
                            format!("{amount} {symbol} is worth less than 0.001 USD, the Cwallet minimum"),
                        );
                    }
                }
                _ => {}
            }
        }

        // merchant_pays_fee
        let fee_text = get(Column::MerchantPaysFee);
        let merchant_pays_fee = match fee_text.to_ascii_lowercase().as_str() {
            "" => self.rules.default_merchant_pays_fee,
            "true" => true,
            "false" => false,
            _ => {
                fail(
                    Column::MerchantPaysFee,
                    format!("{} is not true or false", quote(fee_text)),
                );
                false
            }
        };

        // reference: free text, only bounded.
        let reference = get(Column::Reference);
        if reference.chars().count() > MAX_REFERENCE_CHARS {
            fail(
                Column::Reference,
                format!("reference is longer than {MAX_REFERENCE_CHARS} characters"),
            );
        }

        let line32 = u32::try_from(line).unwrap_or(u32::MAX);
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(order_id);
        if !problems.is_empty() {
            let order_id = order_id_ok.then(|| order_id.to_owned());
            for p in &mut problems {
                p.order_id.clone_from(&order_id);
            }
            self.out.problems.extend(problems);
            self.out.refused_lines.push(line);
            // A refused row's id still takes part in the duplicate check.
            if let Some(id) = order_id {
                let start = self.out.arena.push(&[&id]);
                self.ids.push(IdEntry {
                    hash,
                    line: line32,
                    slot: Slot {
                        start,
                        len: id.len() as u32,
                    },
                });
            }
            return;
        }
        let Some(amount) = amount else {
            return;
        };

        let hold = match (coin, chain, network) {
            (Some(coin), _, _) if !cat.coin(coin).is_normal() => Some(Hold::CoinSuspended),
            (_, Some(ChainRef::Chain(c)), _) if !cat.chain(c).is_normal() => Some(Hold::ChainMaintenance),
            (_, _, Some(network)) if !network.can_withdraw => Some(Hold::WithdrawDisabled),
            _ => None,
        };
        // Validation bounded every length below what these fields hold.
        let text = RowText {
            start: self.out.arena.push(&[order_id, recipient, memo, reference, token_id]),
            order_id: order_id.len() as u8,
            recipient: recipient.len() as u16,
            memo: memo.len() as u16,
            reference: reference.len() as u16,
            token_id: token_id.len() as u8,
        };
        self.ids.push(IdEntry {
            hash,
            line: line32,
            slot: text.order_id(),
        });
        let row = Row {
            line: line32,
            text,
            coin,
            chain,
            amount,
            merchant_pays_fee,
            hold,
        };

        // Across batches: the same id with the same payload is a duplicate, never paid again;
        // with a different payload it is a conflict.
        if let Some(known) = self.known.lookup(order_id) {
            if known.payload_digest == payload_digest(&row, &self.out, cat) {
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
            return;
        }
        self.out.rows.push(row);
    }

    /// Refuses every row whose order_id appears more than once in the file, each naming the
    /// other lines: which of them was meant is for the operator to say, not for us to guess.
    fn refuse_duplicate_ids(&mut self) {
        let mut ids = std::mem::take(&mut self.ids);
        ids.sort_unstable_by_key(|e| (e.hash, e.line));
        let arena = &self.out.arena;
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
                let text = arena.get(entry.slot);
                let same: Vec<u32> = group
                    .iter()
                    .filter(|e| arena.get(e.slot) == text)
                    .map(|e| e.line)
                    .collect();
                if same.len() < 2 {
                    continue;
                }
                let others: Vec<String> = same.iter().filter(|&&l| l != entry.line).map(u32::to_string).collect();
                self.out.problems.push(Problem {
                    line: Some(u64::from(entry.line)),
                    field: Some(Column::OrderId.name().to_owned()),
                    order_id: Some(text.to_owned()),
                    message: format!(
                        "order_id {} is also on line {}; every row needs its own",
                        quote(text),
                        others.join(", ")
                    ),
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
pub fn hash_payload(h: &mut Sha256, row: &Row, v: &Validated, cat: &Catalogue) {
    let coin = row.coin.map(|c| cat.coin(c).coin_id.to_string()).unwrap_or_default();
    let chain = row.chain.map(|c| cat.chain_name(c).to_owned()).unwrap_or_default();
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
    fn v1_rows_need_a_token_id_and_may_leave_out_coin_and_chain() {
        let v = run(
            &format!(
                "order_id,recipient,amount,token_id\nv1-0001,{TRON},5,fdf0e8b0-ebf5-44f0-a335-21c121b73fc8\nv1-0002,{TRON},5,\nv1-0003,{TRON},5,not-a-uuid\n"
            ),
            ApiGeneration::V1,
        );
        assert_eq!(v.rows.len(), 1);
        assert_eq!(v.token_id(&v.rows[0]), "fdf0e8b0-ebf5-44f0-a335-21c121b73fc8");
        assert!(
            v.problems
                .iter()
                .any(|p| p.line == Some(3) && p.message.contains("token_id is required"))
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.line == Some(4) && p.message.contains("not a token id"))
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
    fn order_id_grammar() {
        assert!(check_order_id("abc").is_ok());
        assert!(check_order_id("payroll-2026_11.001:a").is_ok());
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
