//! Local validation of batch rows: every rule that needs no API call beyond the catalogue.
//!
//! Each [`RawRow`] from the parser becomes either a compact [`Row`] or a list of [`Problem`]s,
//! each naming its line and field. Every problem of a row is collected, not just the first, and
//! a bad row never stops the others. Rows keep their text in one [`TextArena`] per batch and
//! refer to coins and chains by index, so a million rows fit in well under 200 MB.
//!
//! This module does no I/O beyond the `Read` it is given, and asks nothing of the network.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::Read;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::parse::{self, Column, Format, Limits, ParseProblem, RawRow};
use crate::address::{self, AddressFamily};
use crate::amount::Amount;
use crate::catalogue::{Catalogue, ChainRef, CoinIdx};
use crate::config::ApiGeneration;

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

/// A slice of the batch's text arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    pub fn is_empty(self) -> bool {
        self.len == 0
    }
}

/// All text of a batch's rows in one buffer: one allocation instead of several per row.
#[derive(Debug, Default)]
pub struct TextArena {
    text: String,
}

impl TextArena {
    fn push(&mut self, s: &str) -> Span {
        // A batch's text beyond 4 GiB is refused long before this by the row limit of the
        // caller; saturate rather than wrap if it ever happens.
        let start = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.text.push_str(s);
        Span { start, len }
    }

    /// The text of a span.
    pub fn get(&self, span: Span) -> &str {
        let start = span.start as usize;
        self.text.get(start..start + span.len as usize).unwrap_or("")
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
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
    pub line: u64,
    pub order_id: Span,
    pub recipient: Span,
    pub memo: Span,
    pub reference: Span,
    /// v1 only.
    pub token_id: Span,
    /// `None` only for v1 rows that give a token_id without a coin.
    pub coin: Option<CoinIdx>,
    /// `None` only for v1 rows that give a token_id without a chain.
    pub chain: Option<ChainRef>,
    pub amount: Amount,
    pub merchant_pays_fee: bool,
    pub hold: Option<Hold>,
}

/// What the store knows about an order_id from an earlier batch. The store arrives with the
/// engine; until then [`NoKnownOrders`] knows nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownOrder {
    /// The batch it was first seen in.
    pub batch: String,
    /// [`payload_digest`] of the row there.
    pub payload_digest: [u8; 32],
}

/// Looks up order_ids from earlier batches.
pub trait KnownOrders {
    fn lookup(&self, order_id: &str) -> Option<KnownOrder>;
}

/// A store that knows no orders.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoKnownOrders;

impl KnownOrders for NoKnownOrders {
    fn lookup(&self, _order_id: &str) -> Option<KnownOrder> {
        None
    }
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
    pub fn text(&self, span: Span) -> &str {
        self.arena.get(span)
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
        seen: SeenIds::default(),
    };
    let mut parse_problems = Vec::new();
    let rows_seen = parse::read_rows(format, reader, rules.limits, &mut |raw| v.row(&raw), &mut |p| {
        parse_problems.push(Problem::from(p))
    });
    let mut out = v.out;
    out.rows_seen = rows_seen;
    for p in &parse_problems {
        if let Some(line) = p.line {
            out.refused_lines.push(line);
        }
    }
    out.problems.extend(parse_problems);
    out.problems.sort_by_key(|p| p.line.unwrap_or(0));
    out.refused_lines.sort_unstable();
    out.refused_lines.dedup();
    out
}

/// order_ids seen so far in this batch, to name both lines of a duplicate. Keys are 64-bit
/// hashes of the id (8 bytes per row instead of the string); equal hashes are confirmed against
/// the text, and the astronomically rare collision of different ids falls back to a string map.
#[derive(Default)]
struct SeenIds {
    by_hash: HashMap<u64, (Span, u64), BuildHasherDefault<IdentityHasher>>,
    collisions: HashMap<String, u64>,
}

/// The keys are already hashes.
#[derive(Default)]
struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Validator<'a, 'r> {
    rules: &'a Rules<'r>,
    known: &'a dyn KnownOrders,
    out: Validated,
    seen: SeenIds,
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

        // Duplicates within the file name both lines; only well-formed ids take part.
        let order_span = if order_id_ok {
            Some(self.note_order_id(order_id, line, &mut problems))
        } else {
            None
        };

        if !problems.is_empty() {
            let order_id = order_id_ok.then(|| order_id.to_owned());
            for p in &mut problems {
                p.order_id.clone_from(&order_id);
            }
            self.out.problems.extend(problems);
            self.out.refused_lines.push(line);
            return;
        }
        let (Some(order_id_span), Some(amount)) = (order_span, amount) else {
            return;
        };

        let hold = match (coin, chain, network) {
            (Some(coin), _, _) if !cat.coin(coin).is_normal() => Some(Hold::CoinSuspended),
            (_, Some(ChainRef::Chain(c)), _) if !cat.chain(c).is_normal() => Some(Hold::ChainMaintenance),
            (_, _, Some(network)) if !network.can_withdraw => Some(Hold::WithdrawDisabled),
            _ => None,
        };
        let arena = &mut self.out.arena;
        let row = Row {
            line,
            order_id: order_id_span,
            recipient: arena.push(recipient),
            memo: arena.push(memo),
            reference: arena.push(reference),
            token_id: arena.push(token_id),
            coin,
            chain,
            amount,
            merchant_pays_fee,
            hold,
        };

        // Across batches: the same id with the same payload is a duplicate, never paid again;
        // with a different payload it is a conflict.
        if let Some(known) = self.known.lookup(order_id) {
            if known.payload_digest == payload_digest(&row, &self.out.arena, cat) {
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

    /// Records an order_id; adds a problem when an earlier line has it.
    fn note_order_id(&mut self, order_id: &str, line: u64, problems: &mut Vec<Problem>) -> Span {
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(order_id);
        let arena = &mut self.out.arena;
        let earlier = match self.seen.by_hash.entry(hash) {
            Entry::Vacant(slot) => {
                let span = arena.push(order_id);
                slot.insert((span, line));
                return span;
            }
            Entry::Occupied(slot) => {
                let (span, first_line) = *slot.get();
                if arena.get(span) == order_id {
                    Some(first_line)
                } else {
                    match self.seen.collisions.entry(order_id.to_owned()) {
                        Entry::Occupied(e) => Some(*e.get()),
                        Entry::Vacant(e) => {
                            e.insert(line);
                            None
                        }
                    }
                }
            }
        };
        if let Some(first_line) = earlier {
            problems.push(Problem::at(
                line,
                Column::OrderId,
                format!(
                    "order_id {} is also on line {first_line}; every row needs its own",
                    quote(order_id)
                ),
            ));
        }
        arena.push(order_id)
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
pub fn payload_digest(row: &Row, arena: &TextArena, cat: &Catalogue) -> [u8; 32] {
    let mut h = Sha256::new();
    let coin = row.coin.map(|c| cat.coin(c).coin_id.to_string()).unwrap_or_default();
    let chain = row.chain.map(|c| cat.chain_name(c).to_owned()).unwrap_or_default();
    for field in [
        coin.as_str(),
        chain.as_str(),
        arena.get(row.recipient),
        arena.get(row.memo),
        &row.amount.canonical(),
        if row.merchant_pays_fee { "true" } else { "false" },
        arena.get(row.token_id),
    ] {
        // Length-prefixed so no two different payloads share a byte string.
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().into()
}
