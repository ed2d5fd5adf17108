//! Reading batch files (CSV, JSON, JSON Lines) into raw rows, before any validation.
//!
//! This module owns the file formats: the header and key rules (names are case-insensitive, an
//! unknown name is an error with a suggestion, a duplicated name is an error, the required set
//! must be present), the shape of JSON documents, and the limits that keep a hostile file from
//! exhausting memory. It does not judge values: an amount is still text here, and the validator
//! decides what an empty or malformed value means.
//!
//! Streaming contract: [`read_rows`] hands each row to a callback as soon as it has been read and
//! keeps nothing afterwards, so memory does not grow with the file. What is held at any moment is
//! one row (bounded by the size of that row; rows above [`Limits::max_row_bytes`] are refused but
//! are still read through once), a fixed-size read buffer, and for JSON the path of open
//! containers (bounded by [`Limits::max_json_depth`]).
//!
//! Problems never panic and never abort silently: each one names its line and, when it belongs to
//! one, the column. A problem in one row is reported and reading goes on with the next row; a
//! problem that leaves the rest of the file unreadable is reported and reading stops.
//!
//! This module does no I/O beyond the `Read` it is given.

mod csv;
mod json;

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

/// A column of a batch file (a key of a JSON order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    OrderId,
    Recipient,
    Coin,
    Chain,
    Amount,
    Memo,
    MerchantPaysFee,
    Reference,
    TokenId,
    Payee,
    /// The order a retry row retries (written by `ccpayout retry`).
    OriginalOrderId,
}

impl Column {
    /// Every column, in the order of their indexes in [`RawRow::values`].
    pub const ALL: [Column; 11] = [
        Column::OrderId,
        Column::Recipient,
        Column::Coin,
        Column::Chain,
        Column::Amount,
        Column::Memo,
        Column::MerchantPaysFee,
        Column::Reference,
        Column::TokenId,
        Column::Payee,
        Column::OriginalOrderId,
    ];

    /// The name as written in files: `order_id`, `merchant_pays_fee`, ...
    pub fn name(self) -> &'static str {
        match self {
            Column::OrderId => "order_id",
            Column::Recipient => "recipient",
            Column::Coin => "coin",
            Column::Chain => "chain",
            Column::Amount => "amount",
            Column::Memo => "memo",
            Column::MerchantPaysFee => "merchant_pays_fee",
            Column::Reference => "reference",
            Column::TokenId => "token_id",
            Column::Payee => "payee",
            Column::OriginalOrderId => "original_order_id",
        }
    }

    /// The column named `s`, ignoring ASCII case and surrounding whitespace.
    pub fn from_name(s: &str) -> Option<Column> {
        let s = s.trim();
        Column::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(s))
    }
}

/// The format of a batch file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    JsonLines,
}

impl Format {
    /// The format named by the file's extension (ignoring case): `csv`, `json`, `jsonl`, `ndjson`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?;
        [
            ("csv", Format::Csv),
            ("json", Format::Json),
            ("jsonl", Format::JsonLines),
            ("ndjson", Format::JsonLines),
        ]
        .into_iter()
        .find(|(name, _)| ext.eq_ignore_ascii_case(name))
        .map(|(_, format)| format)
    }

    /// A human name for messages; also what a batch record keeps as its `format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Json => "JSON",
            Format::JsonLines => "JSON Lines",
        }
    }

    /// The format whose [`Format::name`] is `name` (a batch record's `format`).
    pub fn from_name(name: &str) -> Option<Format> {
        [Format::Csv, Format::Json, Format::JsonLines]
            .into_iter()
            .find(|f| f.name() == name)
    }

    /// The usual file extension: `csv`, `json`, `jsonl`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::JsonLines => "jsonl",
        }
    }
}

/// One row as written, before validation. Values are the raw text (CSV field text; JSON string
/// values; a JSON bool for merchant_pays_fee becomes "true"/"false"). A column absent from the row
/// is None; an empty CSV field is Some("") (the validator decides what empty means).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRow {
    /// 1-based line where the row (CSV record or JSON object) starts.
    pub line: u64,
    /// Indexed by `Column as usize`.
    pub values: [Option<String>; Column::ALL.len()],
}

impl RawRow {
    /// The value of column `c`, if the row has it.
    pub fn get(&self, c: Column) -> Option<&str> {
        self.values[c as usize].as_deref()
    }
}

/// A problem found while reading: where (line, 1-based, of the start of the row/object; None for
/// whole-file problems such as an empty file), which field (column name) if any, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseProblem {
    pub line: Option<u64>,
    pub field: Option<String>,
    pub message: String,
}

impl ParseProblem {
    /// A problem with the whole file.
    fn file(message: impl Into<String>) -> ParseProblem {
        ParseProblem {
            line: None,
            field: None,
            message: message.into(),
        }
    }

    /// A problem on a line, in no particular field.
    fn at(line: u64, message: impl Into<String>) -> ParseProblem {
        ParseProblem {
            line: Some(line),
            field: None,
            message: message.into(),
        }
    }

    /// A problem on a line, in one field.
    fn field(line: u64, field: impl Into<String>, message: impl Into<String>) -> ParseProblem {
        ParseProblem {
            line: Some(line),
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, &self.field) {
            (Some(line), Some(field)) => write!(f, "line {line}, field {field}: {}", self.message),
            (Some(line), None) => write!(f, "line {line}: {}", self.message),
            (None, Some(field)) => write!(f, "field {field}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// Bounds on what one row may hold, so a hostile or broken file costs bounded work per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest value, in bytes.
    pub max_field_bytes: usize,
    /// Longest row, in bytes.
    pub max_row_bytes: usize,
    /// Deepest nesting of JSON arrays and objects, counting the outermost one as level 1.
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_field_bytes: 4096,
            max_row_bytes: 65536,
            max_json_depth: 32,
        }
    }
}

/// Reads every row of `reader` in `format`, calling `row` for each row that was read (its values
/// may still be invalid) and `problem` for each problem. Row-level problems are reported and
/// reading continues with the next row; a problem that makes the rest unreadable (bad header,
/// broken JSON syntax, I/O error, non-UTF-8 header) is reported and reading stops. Returns the
/// number of data rows seen (including rows with problems).
pub fn read_rows<R: Read>(
    format: Format,
    reader: R,
    limits: &Limits,
    row: &mut dyn FnMut(RawRow),
    problem: &mut dyn FnMut(ParseProblem),
) -> u64 {
    // A UTF-8 byte order mark is legal at the start of every format (spreadsheet exports write
    // one) and means nothing, so it is removed once here rather than by each format.
    let reader = BomStripped::new(reader);
    match format {
        Format::Csv => csv::read(reader, limits, row, problem),
        Format::Json => json::read_document(reader, limits, row, problem),
        Format::JsonLines => json::read_lines(reader, limits, row, problem),
    }
}

/// How a name in the file (a CSV header or a JSON key) is called in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameKind {
    Column,
    Key,
}

impl NameKind {
    fn noun(self) -> &'static str {
        match self {
            NameKind::Column => "column",
            NameKind::Key => "key",
        }
    }
}

/// The longest piece of the user's input quoted in a message: enough to recognise it, never a
/// wall of text (a 10 MB field must not be echoed).
const QUOTE_MAX_CHARS: usize = 40;

/// `s` quoted for a message, cut to [`QUOTE_MAX_CHARS`] characters.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((cut, _)) => format!("{:?}", format!("{}…", &s[..cut])),
        None => format!("{s:?}"),
    }
}

/// The problem for a name that is not a column, with a suggestion when it is close to one.
fn unknown_name_message(kind: NameKind, name: &str) -> String {
    match suggest(name) {
        Some(c) => format!("unknown {} {} (did you mean {:?}?)", kind.noun(), quote(name), c.name()),
        None => format!("unknown {} {}", kind.noun(), quote(name)),
    }
}

/// The known column closest to `name` by edit distance, when it is at most 2 edits away.
fn suggest(name: &str) -> Option<Column> {
    let name = name.trim().to_ascii_lowercase();
    // Longer names cannot be within 2 edits of a column name (the longest is 17 bytes); skipping
    // them also keeps a huge key from costing a quadratic comparison.
    if name.is_empty() || name.len() > 24 {
        return None;
    }
    Column::ALL
        .into_iter()
        .map(|c| (edit_distance(name.as_bytes(), c.name().as_bytes()), c))
        .filter(|&(d, _)| d <= 2)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over bytes (names are ASCII; anything else is simply far away).
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The problems for required columns (or keys) that are missing. `state(c)` says whether `c` is
/// there; a JSON key that is there but `null` counts as missing and is named as null.
fn missing_required(kind: NameKind, state: impl Fn(Column) -> Presence) -> Vec<(Option<Column>, String)> {
    let noun = kind.noun();
    let absent = |c: Column| state(c) != Presence::Present;
    let describe = |c: Column| match state(c) {
        Presence::Null => format!("required {noun} {:?} is null", c.name()),
        _ => format!("missing required {noun} {:?}", c.name()),
    };
    let mut out = Vec::new();
    for c in [Column::OrderId, Column::Recipient, Column::Amount] {
        if absent(c) {
            out.push((Some(c), describe(c)));
        }
    }
    // v2 rows name the coin and the chain; v1 rows name a token_id instead. Which API the account
    // uses is the validator's business: here either set is enough.
    if absent(Column::TokenId) {
        match (absent(Column::Coin), absent(Column::Chain)) {
            (true, true) => out.push((
                None,
                format!("missing required {noun}s \"coin\" and \"chain\" (or \"token_id\" for v1 accounts)"),
            )),
            (true, false) => out.push((
                Some(Column::Coin),
                format!(
                    "{} (it goes with \"chain\"; v1 accounts use \"token_id\" instead)",
                    describe(Column::Coin)
                ),
            )),
            (false, true) => out.push((
                Some(Column::Chain),
                format!(
                    "{} (it goes with \"coin\"; v1 accounts use \"token_id\" instead)",
                    describe(Column::Chain)
                ),
            )),
            (false, false) => {}
        }
    }
    out
}

/// Whether a row or header has a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    Absent,
    Null,
    Present,
}

/// `n` followed by `noun`, pluralised with "s" when `n` is not 1.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A reader that drops a UTF-8 byte order mark at the very start of the input.
///
/// The first three bytes are collected before deciding, because a reader may hand them over in
/// pieces; everything after them passes through untouched.
struct BomStripped<R> {
    inner: R,
    head: [u8; 3],
    head_len: usize,
    head_pos: usize,
    checked: bool,
}

const UTF8_BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

impl<R: Read> BomStripped<R> {
    fn new(inner: R) -> Self {
        BomStripped {
            inner,
            head: [0; 3],
            head_len: 0,
            head_pos: 0,
            checked: false,
        }
    }
}

impl<R: Read> Read for BomStripped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.checked {
            while self.head_len < UTF8_BOM.len() {
                match self.inner.read(&mut self.head[self.head_len..]) {
                    Ok(0) => break,
                    Ok(n) => self.head_len += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            self.checked = true;
            if self.head[..self.head_len] == UTF8_BOM {
                self.head_pos = self.head_len;
            }
        }
        if self.head_pos < self.head_len {
            let pending = &self.head[self.head_pos..self.head_len];
            let n = pending.len().min(buf.len());
            buf[..n].copy_from_slice(&pending[..n]);
            self.head_pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
pub(super) mod test_support {
    //! Helpers shared by the format tests: run the parser over bytes and collect what it says.

    use super::*;

    /// Everything one run of [`read_rows`] reported.
    #[derive(Debug)]
    pub struct Outcome {
        pub rows: Vec<RawRow>,
        pub problems: Vec<ParseProblem>,
        pub seen: u64,
    }

    impl Outcome {
        /// The problems as rendered strings, the easiest thing to compare in a table.
        pub fn rendered(&self) -> Vec<String> {
            self.problems.iter().map(ToString::to_string).collect()
        }

        /// The value of `c` in each delivered row.
        pub fn column(&self, c: Column) -> Vec<Option<&str>> {
            self.rows.iter().map(|r| r.get(c)).collect()
        }

        /// The line of each delivered row.
        pub fn lines(&self) -> Vec<u64> {
            self.rows.iter().map(|r| r.line).collect()
        }
    }

    pub fn run_with(format: Format, input: &[u8], limits: &Limits) -> Outcome {
        run_reader(format, input, limits)
    }

    pub fn run(format: Format, input: &[u8]) -> Outcome {
        run_with(format, input, &Limits::default())
    }

    pub fn run_reader(format: Format, reader: impl Read, limits: &Limits) -> Outcome {
        let mut rows = Vec::new();
        let mut problems = Vec::new();
        let seen = read_rows(format, reader, limits, &mut |r| rows.push(r), &mut |p| problems.push(p));
        Outcome { rows, problems, seen }
    }

    /// A reader that hands out at most one byte per call, to prove that nothing depends on how
    /// the input is split into reads.
    pub struct OneByte<'a>(pub &'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    /// A reader that fails after handing out its bytes.
    pub struct FailingAfter<'a>(pub &'a [u8]);

    impl Read for FailingAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::other("disk on fire"));
            }
            let n = self.0.len().min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn column_names_round_trip_and_ignore_case_and_whitespace() {
        for (i, c) in Column::ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i);
            assert_eq!(Column::from_name(c.name()), Some(c));
            assert_eq!(Column::from_name(&format!("  {}\t", c.name().to_uppercase())), Some(c));
        }
        assert_eq!(Column::from_name("orderid"), None);
        assert_eq!(Column::from_name(""), None);
    }

    #[test]
    fn format_from_path_uses_the_extension_ignoring_case() {
        let cases = [
            ("a.csv", Some(Format::Csv)),
            ("dir/B.CSV", Some(Format::Csv)),
            ("x.json", Some(Format::Json)),
            ("x.Jsonl", Some(Format::JsonLines)),
            ("x.ndjson", Some(Format::JsonLines)),
            ("x.txt", None),
            ("csv", None),
            ("x.csv.gz", None),
        ];
        for (path, want) in cases {
            assert_eq!(Format::from_path(Path::new(path)), want, "{path}");
        }
        assert_eq!(Format::JsonLines.name(), "JSON Lines");
        for format in [Format::Csv, Format::Json, Format::JsonLines] {
            assert_eq!(Format::from_name(format.name()), Some(format));
            let file = format!("x.{}", format.extension());
            assert_eq!(Format::from_path(Path::new(&file)), Some(format));
        }
        assert_eq!(Format::from_name("csv"), None);
    }

    #[test]
    fn problems_render_with_line_and_field() {
        let p = ParseProblem::field(7, "amount", "bad");
        assert_eq!(p.to_string(), "line 7, field amount: bad");
        assert_eq!(ParseProblem::at(7, "bad").to_string(), "line 7: bad");
        assert_eq!(ParseProblem::file("the file is empty").to_string(), "the file is empty");
    }

    #[test]
    fn suggestions_are_offered_within_two_edits() {
        let cases = [
            ("ammount", Some(Column::Amount)),
            ("Order ID", Some(Column::OrderId)),
            ("orderId", Some(Column::OrderId)),
            ("merchantPaysFee", Some(Column::MerchantPaysFee)),
            ("tokenid", Some(Column::TokenId)),
            ("address", None),
            ("", None),
            ("x", None),
        ];
        for (name, want) in cases {
            assert_eq!(suggest(name), want, "{name}");
        }
    }

    #[test]
    fn quoted_input_is_cut_to_forty_characters() {
        assert_eq!(quote("abc"), "\"abc\"");
        let long = "é".repeat(50);
        assert_eq!(quote(&long), format!("\"{}…\"", "é".repeat(40)));
    }

    proptest::proptest! {
        /// Whatever the bytes, every format answers with rows and problems, never a panic, and
        /// never delivers more rows than it counted.
        #[test]
        fn arbitrary_input_never_panics(
            input in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"{}[]\",:\n\r a1\\".to_vec()),
                    proptest::num::u8::ANY,
                ],
                0..200,
            ),
            header: bool,
        ) {
            let mut bytes = if header { b"order_id,recipient,amount,token_id\n".to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&input);
            for format in [Format::Csv, Format::Json, Format::JsonLines] {
                let out = run(format, &bytes);
                proptest::prop_assert!(out.rows.len() as u64 <= out.seen);
                proptest::prop_assert!(out.rows.len() as u64 == out.seen || !out.problems.is_empty());
            }
        }
    }

    #[test]
    fn a_bom_split_across_reads_is_still_removed() {
        let out = run_reader(
            Format::Csv,
            OneByte(b"\xEF\xBB\xBForder_id,recipient,amount,token_id\n1,r,5,t\n"),
            &Limits::default(),
        );
        assert_eq!(out.rendered(), Vec::<String>::new());
        assert_eq!(out.column(Column::OrderId), [Some("1")]);
    }
}
