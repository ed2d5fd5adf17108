//! JSON (`{"orders": [...]}` or a bare array) and JSON Lines batch files.
//!
//! A JSON document is never held whole: serde_json reads it from the stream and the visitors
//! below take the orders array one element at a time, turn the element into a [`RawRow`] (or its
//! problems) and hand it on before reading the next. Values that are not wanted as text (nested
//! arrays and objects) are walked and dropped, not kept. The line of each element comes from a
//! reader wrapper that counts the line ends serde_json has consumed, and nesting is limited here,
//! below serde_json's own recursion limit, so a deeply nested file is a clear problem rather than
//! a crash.
//!
//! JSON Lines are read line by line with a cap on how much of a line is kept, and each line is
//! parsed on its own, so a broken line is a row problem and the next line is read normally.

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Column, Limits, NameKind, ParseProblem, Presence, RawRow, missing_required, quote, unknown_name_message};

/// Bytes read from the input at a time.
const READ_BUFFER: usize = 64 * 1024;

/// serde_json refuses nesting beyond 128 levels with a terse "recursion limit exceeded"; the
/// configured limit is kept well below that so that ours, with its clear message, always fires
/// first.
const MAX_SUPPORTED_DEPTH: usize = 100;

/// Reads a JSON document batch. See [`super::read_rows`].
pub(super) fn read_document<R: Read>(
    reader: R,
    limits: &Limits,
    row: &mut dyn FnMut(RawRow),
    problem: &mut dyn FnMut(ParseProblem),
) -> u64 {
    let position = Position::default();
    let counting = Counting {
        inner: BufReader::with_capacity(READ_BUFFER, reader),
        position: &position,
    };
    let mut ctx = Ctx::new(Layout::Document, &position, limits, row, problem);
    let mut de = serde_json::Deserializer::from_reader(counting);
    let result = DocumentSeed { ctx: &mut ctx }
        .deserialize(&mut de)
        .and_then(|()| de.end());

    // A problem recorded by a visitor explains the error serde_json passed back up; otherwise the
    // error is serde_json's own (syntax, end of input, I/O).
    match (ctx.fatal.take(), result) {
        (Some(p), _) => (ctx.problem)(p),
        (None, Err(e)) => {
            let p = if e.is_io() {
                // Back to the io::Error, whose message is not suffixed with a JSON position.
                ParseProblem::file(format!("could not read the file: {}", io::Error::from(e)))
            } else if e.is_eof() && !ctx.started {
                ParseProblem::file("the file is empty")
            } else if e.is_eof() {
                ParseProblem::at(line_of(&e), "invalid JSON: the file ends before the JSON is complete")
            } else {
                ParseProblem::at(line_of(&e), syntax_message(&e))
            };
            (ctx.problem)(p);
        }
        (None, Ok(())) if ctx.rows_seen == 0 => (ctx.problem)(ParseProblem::file("the file has no rows")),
        (None, Ok(())) => {}
    }
    ctx.rows_seen
}

/// Reads a JSON Lines batch. See [`super::read_rows`].
pub(super) fn read_lines<R: Read>(
    reader: R,
    limits: &Limits,
    row: &mut dyn FnMut(RawRow),
    problem: &mut dyn FnMut(ParseProblem),
) -> u64 {
    let mut input = BufReader::with_capacity(READ_BUFFER, reader);
    let position = Position::default();
    let mut ctx = Ctx::new(Layout::Lines, &position, limits, row, problem);
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut saw_content = false;
    loop {
        line_no += 1;
        let (length, kept) = match read_line_capped(&mut input, &mut line, limits.max_row_bytes) {
            Ok(Some(read)) => read,
            Ok(None) => break,
            Err(e) => {
                (ctx.problem)(ParseProblem::file(format!("could not read the file: {e}")));
                return ctx.rows_seen;
            }
        };
        if kept && line.iter().all(|b| JSON_WHITESPACE.contains(b)) {
            continue;
        }
        saw_content = true;
        if !kept {
            ctx.rows_seen += 1;
            (ctx.problem)(ParseProblem::at(
                line_no,
                format!("row is {length} bytes long, the limit is {}", limits.max_row_bytes),
            ));
            continue;
        }

        // Each line is its own document, so the line counter is simply set to the line before it.
        position.lines.set(line_no - 1);
        let mut de = serde_json::Deserializer::from_slice(&line);
        let result = ElementSeed {
            ctx: &mut ctx,
            depth: 1,
        }
        .deserialize(&mut de)
        .and_then(|outcome| {
            de.end()?;
            Ok(outcome)
        });
        match (ctx.fatal.take(), result) {
            (Some(p), _) => (ctx.problem)(p),
            (None, Ok(outcome)) => ctx.emit(outcome),
            (None, Err(e)) if e.is_eof() => (ctx.problem)(ParseProblem::at(
                line_no,
                "invalid JSON: the line ends before the JSON is complete",
            )),
            (None, Err(e)) => (ctx.problem)(ParseProblem::at(line_no, syntax_message(&e))),
        }
    }
    if !saw_content {
        (ctx.problem)(ParseProblem::file("the file is empty"));
    }
    ctx.rows_seen
}

const JSON_WHITESPACE: [u8; 4] = [b' ', b'\t', b'\r', b'\n'];

/// Reads one line into `line` without its line end, keeping at most about `cap` bytes of it.
/// Returns the line's length and whether it was kept whole, or `None` at the end of the input.
/// A longer line is read through to its end but not stored, so memory stays bounded.
fn read_line_capped(input: &mut impl BufRead, line: &mut Vec<u8>, cap: usize) -> io::Result<Option<(usize, bool)>> {
    line.clear();
    let mut length = 0usize;
    let mut kept = true;
    let mut any = false;
    let mut last = 0u8;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        length += chunk.len();
        if let Some(&b) = chunk.last() {
            last = b;
        }
        // One byte of slack for the `\r` of a CRLF line end, which is not part of the row.
        if kept && line.len() + chunk.len() <= cap + 1 {
            line.extend_from_slice(chunk);
        } else {
            kept = false;
            line.clear();
        }
        let consumed = chunk.len() + usize::from(done);
        input.consume(consumed);
        if done {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if last == b'\r' {
        length -= 1;
        if kept {
            line.pop();
        }
    }
    if kept && line.len() > cap {
        kept = false;
        line.clear();
    }
    Ok(Some((length, kept)))
}

/// The 1-based line of a serde_json error.
fn line_of(e: &serde_json::Error) -> u64 {
    (e.line() as u64).max(1)
}

/// "invalid JSON at column 7: expected `,` or `]`", from serde_json's "... at line 3 column 7".
fn syntax_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let what = text.rsplit_once(" at line ").map_or(text.as_str(), |(what, _)| what);
    format!("invalid JSON at column {}: {what}", e.column())
}

/// How far serde_json has read, counted by [`Counting`].
#[derive(Default)]
struct Position {
    /// Line ends consumed.
    lines: Cell<u64>,
    /// Bytes consumed.
    bytes: Cell<u64>,
}

/// A reader that counts what serde_json consumes. serde_json reads one byte at a time and looks
/// ahead by at most the one byte it is deciding on, so when an element's visitor starts, the
/// count is exact up to and including the element's first byte. (The buffering is below this
/// wrapper, so read-ahead is not counted.)
struct Counting<'p, R> {
    inner: R,
    position: &'p Position,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let data = &buf[..n];
        self.position.bytes.set(self.position.bytes.get() + n as u64);
        let line_ends = data.iter().filter(|&&b| b == b'\n').count() as u64;
        self.position.lines.set(self.position.lines.get() + line_ends);
        Ok(n)
    }
}

/// How the orders are laid out in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One document, streamed: elements are located and measured by [`Counting`].
    Document,
    /// One document per line: each line is located and measured before it is parsed.
    Lines,
}

/// What the visitors share: where the reader is, the limits, the callbacks, and what they found.
struct Ctx<'a> {
    position: &'a Position,
    limits: &'a Limits,
    max_depth: usize,
    row: &'a mut dyn FnMut(RawRow),
    problem: &'a mut dyn FnMut(ParseProblem),
    rows_seen: u64,
    /// The problem that ends the read, recorded by the visitor that found it. The error it then
    /// returns to serde_json only unwinds the parse; this is what gets reported.
    fatal: Option<ParseProblem>,
    layout: Layout,
    /// serde_json has begun the top-level value: an end of input after this is a truncated
    /// document, before it an empty file.
    started: bool,
}

impl<'a> Ctx<'a> {
    fn new(
        layout: Layout,
        position: &'a Position,
        limits: &'a Limits,
        row: &'a mut dyn FnMut(RawRow),
        problem: &'a mut dyn FnMut(ParseProblem),
    ) -> Self {
        Ctx {
            position,
            limits,
            max_depth: limits.max_json_depth.min(MAX_SUPPORTED_DEPTH),
            row,
            problem,
            rows_seen: 0,
            fatal: None,
            layout,
            started: false,
        }
    }

    /// The line serde_json is reading.
    fn line(&self) -> u64 {
        self.position.lines.get() + 1
    }

    /// Records a problem that ends the read, and the error that makes serde_json stop.
    fn stop<E: de::Error>(&mut self, problem: ParseProblem) -> E {
        self.fatal = Some(problem);
        E::custom("stopped")
    }

    /// Checks that a container opening at `depth` is allowed.
    fn enter<E: de::Error>(&mut self, depth: usize) -> Result<(), E> {
        if depth > self.max_depth {
            let problem = ParseProblem::at(self.line(), format!("nesting deeper than {} levels", self.max_depth));
            return Err(self.stop(problem));
        }
        Ok(())
    }

    fn emit(&mut self, outcome: Outcome) {
        match outcome {
            Ok(row) => (self.row)(row),
            Err(problems) => {
                for p in problems {
                    (self.problem)(p);
                }
            }
        }
    }
}

/// One element of the orders: a row, or everything wrong with it.
type Outcome = Result<RawRow, Vec<ParseProblem>>;

/// The whole document: an object with an `orders` array, or a bare array.
struct DocumentSeed<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl DocumentSeed<'_, '_> {
    fn not_a_document<E: de::Error>(self, found: &str) -> Result<(), E> {
        self.ctx.started = true;
        let problem = ParseProblem::file(format!(
            "the file must hold an array of orders or an object with an \"orders\" array, not {found}"
        ));
        Err(self.ctx.stop(problem))
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of orders or an object with an \"orders\" array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.ctx.started = true;
        self.ctx.enter(1)?;
        read_orders(self.ctx, seq, 2)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        ctx.started = true;
        ctx.enter(1)?;
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            if !key.trim().eq_ignore_ascii_case("orders") {
                // A stray key may be a misspelt "orders" or a sign that this is not a batch, so
                // it is refused rather than ignored.
                let hint = if Column::from_name(&key).is_some() {
                    "; this looks like a single order: put orders in an \"orders\" array, or one per line in a .jsonl file"
                } else {
                    ""
                };
                let message = format!("unknown top-level key {} (expected \"orders\"){hint}", quote(&key));
                let problem = ParseProblem::at(ctx.line(), message);
                return Err(ctx.stop(problem));
            }
            if found {
                let problem = ParseProblem::at(ctx.line(), "the \"orders\" key appears more than once");
                return Err(ctx.stop(problem));
            }
            found = true;
            map.next_value_seed(OrdersSeed { ctx: &mut *ctx })?;
        }
        if !found {
            return Err(ctx.stop(ParseProblem::file("the file has no \"orders\" array")));
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_a_document("a string")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_a_document("a boolean")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_a_document("a number")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_a_document("a number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_a_document("a number")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_a_document("null")
    }
}

/// The value of the `orders` key, which must be an array.
struct OrdersSeed<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
}

impl<'de> DeserializeSeed<'de> for OrdersSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl OrdersSeed<'_, '_> {
    fn not_an_array<E: de::Error>(self, found: &str) -> Result<(), E> {
        let problem = ParseProblem::at(self.ctx.line(), format!("\"orders\" must be an array, not {found}"));
        Err(self.ctx.stop(problem))
    }
}

impl<'de> Visitor<'de> for OrdersSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of orders")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.ctx.enter(2)?;
        read_orders(self.ctx, seq, 3)
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.not_an_array("an object")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_an_array("a string")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_an_array("a boolean")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_an_array("a number")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_an_array("a number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_an_array("a number")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_an_array("null")
    }
}

/// Reads the elements of the orders array one at a time, handing each on before the next.
fn read_orders<'de, A: SeqAccess<'de>>(ctx: &mut Ctx<'_>, mut seq: A, depth: usize) -> Result<(), A::Error> {
    while let Some(outcome) = seq.next_element_seed(ElementSeed { ctx: &mut *ctx, depth })? {
        ctx.emit(outcome);
    }
    Ok(())
}

/// One element of the orders: an object whose keys are columns.
struct ElementSeed<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    /// Nesting level of the element itself.
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_, '_> {
    type Value = Outcome;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Outcome, D::Error> {
        let ctx = self.ctx;
        // serde_json has already consumed the element's first byte (to see that an element
        // follows), and no line end after it.
        let line = ctx.line();
        let start = ctx.position.bytes.get().saturating_sub(1);
        ctx.rows_seen += 1;
        let outcome = de.deserialize_any(ElementVisitor {
            ctx: &mut *ctx,
            depth: self.depth,
            line,
        })?;
        // JSON Lines rows are measured as lines before they are parsed; only a streamed document
        // is measured here, by the bytes serde_json consumed for the element.
        let size = ctx.position.bytes.get().saturating_sub(start);
        if ctx.layout == Layout::Document && size > ctx.limits.max_row_bytes as u64 {
            let message = format!("row is {size} bytes long, the limit is {}", ctx.limits.max_row_bytes);
            return Ok(Err(vec![ParseProblem::at(line, message)]));
        }
        Ok(outcome)
    }
}

struct ElementVisitor<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    depth: usize,
    line: u64,
}

impl ElementVisitor<'_, '_> {
    fn not_an_object<E>(self, found: &str) -> Result<Outcome, E> {
        Ok(Err(vec![ParseProblem::at(
            self.line,
            format!("row is {found}, expected an object"),
        )]))
    }
}

impl<'de> Visitor<'de> for ElementVisitor<'_, '_> {
    type Value = Outcome;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an order object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outcome, A::Error> {
        let ElementVisitor { ctx, depth, line } = self;
        ctx.enter(depth)?;
        let mut raw = RawRow {
            line,
            values: Default::default(),
        };
        let mut presence = [Presence::Absent; Column::ALL.len()];
        // The key as first written, to name it when it comes again.
        let mut first_key: [Option<String>; Column::ALL.len()] = Default::default();
        let mut problems = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed {
                ctx: &mut *ctx,
                depth: depth + 1,
            })?;
            let Some(column) = Column::from_name(&key) else {
                problems.push(ParseProblem::at(line, unknown_name_message(NameKind::Key, &key)));
                continue;
            };
            let i = column as usize;
            if let Some(first) = &first_key[i] {
                let message = format!("duplicate key {} (already given as {})", quote(&key), quote(first));
                problems.push(ParseProblem::field(line, column.name(), message));
                continue;
            }
            first_key[i] = Some(key);
            match value.into_text(column, ctx.limits) {
                Ok(Some(text)) => {
                    presence[i] = Presence::Present;
                    raw.values[i] = Some(text);
                }
                Ok(None) => presence[i] = Presence::Null,
                Err(message) => {
                    // The key is there, only its value is wrong: not also "missing".
                    presence[i] = Presence::Present;
                    problems.push(ParseProblem::field(line, column.name(), message));
                }
            }
        }
        for (column, message) in missing_required(NameKind::Key, |c| presence[c as usize]) {
            problems.push(ParseProblem {
                line: Some(line),
                field: column.map(|c| c.name().to_owned()),
                message,
            });
        }
        Ok(if problems.is_empty() { Ok(raw) } else { Err(problems) })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Outcome, A::Error> {
        self.ctx.enter(self.depth)?;
        while seq
            .next_element_seed(Skip {
                ctx: &mut *self.ctx,
                depth: self.depth + 1,
            })?
            .is_some()
        {}
        self.not_an_object("an array")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Outcome, E> {
        self.not_an_object("a string")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Outcome, E> {
        self.not_an_object("a boolean")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Outcome, E> {
        self.not_an_object("a number")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Outcome, E> {
        self.not_an_object("a number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Outcome, E> {
        self.not_an_object("a number")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Outcome, E> {
        self.not_an_object("null")
    }
}

/// A value of an order's key, reduced to what the rules need.
enum Value {
    Text(String),
    Bool(bool),
    /// An integer, as its decimal text (the same digits as written, for integers in 64 bits).
    Integer(String),
    /// A number with a fraction or exponent, or too large for 64 bits: serde_json has already
    /// turned it into a float, so its written digits are gone.
    OtherNumber,
    Null,
    Array,
    Object,
}

impl Value {
    /// The value as row text (`None` for null), or why it cannot be.
    fn into_text(self, column: Column, limits: &Limits) -> Result<Option<String>, String> {
        let name = column.name();
        let amount = column == Column::Amount;
        match self {
            Value::Text(s) if s.len() > limits.max_field_bytes => Err(format!(
                "value is {} bytes long, the limit is {}",
                s.len(),
                limits.max_field_bytes
            )),
            Value::Text(s) => Ok(Some(s)),
            Value::Null => Ok(None),
            Value::Bool(b) if column == Column::MerchantPaysFee => Ok(Some(b.to_string())),
            Value::Bool(_) => Err(format!("{name} must be a JSON string, not a boolean")),
            // Amounts are exact decimals: a JSON number may already have been rounded by
            // whatever wrote the file, and is refused even when it looks harmless.
            Value::Integer(_) | Value::OtherNumber if amount => {
                Err("amount must be a JSON string such as \"12.5\": numbers can lose digits".to_owned())
            }
            Value::Integer(text) => Ok(Some(text)),
            Value::OtherNumber => Err(format!(
                "{name} must be a JSON string: only whole numbers that fit in 64 bits are read as numbers"
            )),
            Value::Array => Err(format!("{name} must be a JSON string, not an array")),
            Value::Object => Err(format!("{name} must be a JSON string, not an object")),
        }
    }
}

struct ValueSeed<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Text(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Integer(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Integer(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
        Ok(Value::OtherNumber)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        Skip {
            ctx: self.ctx,
            depth: self.depth,
        }
        .visit_seq(seq)?;
        Ok(Value::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        Skip {
            ctx: self.ctx,
            depth: self.depth,
        }
        .visit_map(map)?;
        Ok(Value::Object)
    }
}

/// Walks a value that is not kept, enforcing the nesting limit on the way.
struct Skip<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    /// Nesting level of the value itself, if it is a container.
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Skip<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.ctx.enter(self.depth)?;
        while seq
            .next_element_seed(Skip {
                ctx: &mut *self.ctx,
                depth: self.depth + 1,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.ctx.enter(self.depth)?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip {
                ctx: &mut *self.ctx,
                depth: self.depth + 1,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{Column, Format, Limits};

    fn json(input: &str) -> Outcome {
        run(Format::Json, input.as_bytes())
    }

    fn lines(input: &str) -> Outcome {
        run(Format::JsonLines, input.as_bytes())
    }

    const GOOD: &str = r#"{"order_id": "a", "recipient": "r", "coin": "USDT", "chain": "TRX", "amount": "1"}"#;

    /// A table case: name, format, input, the order_ids delivered with their lines, the problems.
    type Case = (
        &'static str,
        Format,
        String,
        Vec<(&'static str, u64)>,
        Vec<&'static str>,
    );

    #[test]
    fn table_of_json_inputs() {
        let b = |s: &str| s.replace("GOOD", GOOD);
        let cases: Vec<Case> = vec![
            (
                "object form",
                Format::Json,
                b("{\"orders\": [\n  GOOD,\n  {\"order_id\": \"b\", \"recipient\": \"r\", \"token_id\": \"t\", \"amount\": \"2\"}\n]}"),
                vec![("a", 2), ("b", 3)],
                vec![],
            ),
            ("bare array", Format::Json, b("[GOOD,\n\n\nGOOD]"), vec![("a", 1), ("a", 4)], vec![]),
            (
                "line of an element is the line of its opening brace",
                Format::Json,
                b("[\n  GOOD\n  ,\n\n  {\n \"order_id\": \"b\",\n \"recipient\": \"r\", \"token_id\": \"t\", \"amount\": \"2\"}]"),
                vec![("a", 2), ("b", 5)],
                vec![],
            ),
            ("with a bom and crlf", Format::Json, b("\u{feff}{\"orders\":\r\n[\r\nGOOD]}\r\n"), vec![("a", 3)], vec![]),
            (
                "keys ignore case and padding",
                Format::Json,
                r#"[{"ORDER_ID": "a", " Recipient": "r", "Coin": "USDT", "CHAIN": "TRX", "Amount": "1"}]"#.to_owned(),
                vec![("a", 1)],
                vec![],
            ),
            ("empty array", Format::Json, "[]".to_owned(), vec![], vec!["the file has no rows"]),
            ("empty orders", Format::Json, "{\"orders\": []}".to_owned(), vec![], vec!["the file has no rows"]),
            ("empty file", Format::Json, "".to_owned(), vec![], vec!["the file is empty"]),
            ("bom and whitespace only", Format::Json, "\u{feff} \n ".to_owned(), vec![], vec!["the file is empty"]),
            (
                "amount as a number",
                Format::Json,
                b("[GOOD,\n{\"order_id\": \"b\", \"recipient\": \"r\", \"coin\": \"USDT\", \"chain\": \"TRX\", \"amount\": 12.5}]"),
                vec![("a", 1)],
                vec!["line 2, field amount: amount must be a JSON string such as \"12.5\": numbers can lose digits"],
            ),
            (
                "integer amount is refused too",
                Format::Json,
                r#"[{"order_id": "b", "recipient": "r", "coin": "USDT", "chain": "TRX", "amount": 12}]"#.to_owned(),
                vec![],
                vec!["line 1, field amount: amount must be a JSON string such as \"12.5\": numbers can lose digits"],
            ),
            (
                "value as an array or object",
                Format::Json,
                r#"[{"order_id": "b", "recipient": ["r"], "coin": "USDT", "chain": {"x": [1]}, "amount": "1"}]"#.to_owned(),
                vec![],
                vec![
                    "line 1, field recipient: recipient must be a JSON string, not an array",
                    "line 1, field chain: chain must be a JSON string, not an object",
                ],
            ),
            (
                "fractional number in a text field",
                Format::Json,
                r#"[{"order_id": 1.5, "recipient": "r", "coin": "USDT", "chain": "TRX", "amount": "1"}]"#.to_owned(),
                vec![],
                vec![
                    "line 1, field order_id: order_id must be a JSON string: only whole numbers that fit in 64 bits are read as numbers",
                ],
            ),
            (
                "boolean in a text field",
                Format::Json,
                r#"[{"order_id": "a", "recipient": "r", "coin": "USDT", "chain": "TRX", "amount": "1", "memo": true}]"#.to_owned(),
                vec![],
                vec!["line 1, field memo: memo must be a JSON string, not a boolean"],
            ),
            (
                "elements that are not objects",
                Format::Json,
                b("[1,\n\"x\",\nnull,\n[GOOD],\ntrue,\nGOOD]"),
                vec![("a", 6)],
                vec![
                    "line 1: row is a number, expected an object",
                    "line 2: row is a string, expected an object",
                    "line 3: row is null, expected an object",
                    "line 4: row is an array, expected an object",
                    "line 5: row is a boolean, expected an object",
                ],
            ),
            (
                "missing key and null key",
                Format::Json,
                r#"[{"order_id": null, "coin": "USDT", "chain": "TRX", "amount": "1"}]"#.to_owned(),
                vec![],
                vec![
                    "line 1, field order_id: required key \"order_id\" is null",
                    "line 1, field recipient: missing required key \"recipient\"",
                ],
            ),
            (
                "unknown key with and without suggestion",
                Format::Json,
                r#"[{"order_id": "a", "recipient": "r", "coin": "USDT", "chain": "TRX", "ammount": "1", "amount": "1", "note": 1}]"#
                    .to_owned(),
                vec![],
                vec!["line 1: unknown key \"ammount\" (did you mean \"amount\"?)", "line 1: unknown key \"note\""],
            ),
            (
                "duplicate key after case folding",
                Format::Json,
                r#"[{"order_id": "a", "recipient": "r", "coin": "USDT", "chain": "TRX", "amount": "1", "AMOUNT": "2"}]"#.to_owned(),
                vec![],
                vec!["line 1, field amount: duplicate key \"AMOUNT\" (already given as \"amount\")"],
            ),
            (
                "syntax error names its line and column",
                Format::Json,
                b("[GOOD,\nGOOD\n{\"order_id\": \"x\"}]"),
                vec![("a", 1), ("a", 2)],
                vec!["line 3: invalid JSON at column 1: expected `,` or `]`"],
            ),
            (
                "truncated document",
                Format::Json,
                b("{\"orders\": [GOOD,\n"),
                vec![("a", 1)],
                vec!["line 2: invalid JSON: the file ends before the JSON is complete"],
            ),
            (
                "trailing content",
                Format::Json,
                b("[GOOD]\n]"),
                vec![("a", 1)],
                vec!["line 2: invalid JSON at column 1: trailing characters"],
            ),
            (
                "orders is not an array",
                Format::Json,
                "{\"orders\": {\"order_id\": \"a\"}}".to_owned(),
                vec![],
                vec!["line 1: \"orders\" must be an array, not an object"],
            ),
            ("no orders key", Format::Json, "{}".to_owned(), vec![], vec!["the file has no \"orders\" array"]),
            (
                "a single order instead of a batch",
                Format::Json,
                GOOD.to_owned(),
                vec![],
                vec![
                    "line 1: unknown top-level key \"order_id\" (expected \"orders\"); this looks like a single order: put orders in an \"orders\" array, or one per line in a .jsonl file",
                ],
            ),
            (
                "top-level value that is neither",
                Format::Json,
                "\"orders\"".to_owned(),
                vec![],
                vec!["the file must hold an array of orders or an object with an \"orders\" array, not a string"],
            ),
            (
                "orders given twice",
                Format::Json,
                b("{\"orders\": [GOOD],\n\"Orders\": []}"),
                vec![("a", 1)],
                vec!["line 2: the \"orders\" key appears more than once"],
            ),
            (
                "top-level null",
                Format::Json,
                "null".to_owned(),
                vec![],
                vec!["the file must hold an array of orders or an object with an \"orders\" array, not null"],
            ),
            (
                "integer too large for 64 bits",
                Format::Json,
                r#"[{"order_id": 123456789012345678901234, "recipient": "r", "coin": "USDT", "chain": "TRX", "amount": "1"}]"#
                    .to_owned(),
                vec![],
                vec![
                    "line 1, field order_id: order_id must be a JSON string: only whole numbers that fit in 64 bits are read as numbers",
                ],
            ),
            (
                "jsonl with blank lines",
                Format::JsonLines,
                b("GOOD\n\n  \r\nGOOD\r\n\n"),
                vec![("a", 1), ("a", 4)],
                vec![],
            ),
            (
                "jsonl rows problems continue",
                Format::JsonLines,
                b("GOOD\n{\"order_id\": \n[1]\nGOOD x\nGOOD"),
                vec![("a", 1), ("a", 5)],
                vec![
                    "line 2: invalid JSON: the line ends before the JSON is complete",
                    "line 3: row is an array, expected an object",
                    "line 4: invalid JSON at column 84: trailing characters",
                ],
            ),
            ("jsonl empty", Format::JsonLines, "\u{feff}\n\n".to_owned(), vec![], vec!["the file is empty"]),
        ];
        for (name, format, input, want_rows, want_problems) in cases {
            for (how, out) in [
                ("whole", run(format, input.as_bytes())),
                (
                    "one byte at a time",
                    run_reader(format, OneByte(input.as_bytes()), &Limits::default()),
                ),
            ] {
                let got_rows: Vec<(&str, u64)> = out
                    .rows
                    .iter()
                    .map(|r| (r.get(Column::OrderId).unwrap(), r.line))
                    .collect();
                assert_eq!(got_rows, want_rows, "rows of case {name:?}, {how}");
                assert_eq!(out.rendered(), want_problems, "problems of case {name:?}, {how}");
            }
        }
    }

    #[test]
    fn values_keep_their_text_and_null_means_absent() {
        let out = json(
            r#"[{"order_id": "a", "recipient": "r", "coin": 1280, "chain": "TRX", "amount": "0.10",
                 "merchant_pays_fee": true, "memo": null, "reference": "", "token_id": -7}]"#,
        );
        assert_eq!(out.rendered(), Vec::<String>::new());
        let row = &out.rows[0];
        assert_eq!(row.get(Column::Coin), Some("1280"));
        assert_eq!(row.get(Column::Amount), Some("0.10"));
        assert_eq!(row.get(Column::MerchantPaysFee), Some("true"));
        assert_eq!(row.get(Column::Memo), None);
        assert_eq!(row.get(Column::Reference), Some(""));
        assert_eq!(row.get(Column::TokenId), Some("-7"));
    }

    #[test]
    fn deep_nesting_is_a_clear_problem_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        let out = json(&deep);
        assert_eq!(out.rendered(), ["line 1: nesting deeper than 32 levels"]);
        assert_eq!(out.seen, 1);

        let nested_value = format!("{{\"orders\": [\n{{\"memo\": {}", "[".repeat(100_000));
        assert_eq!(
            json(&nested_value).rendered(),
            ["line 2: nesting deeper than 32 levels"]
        );

        // In JSON Lines the next line is still read (the line is kept under the row size limit).
        let out = lines(&format!("{}\n{GOOD}\n", "[".repeat(10_000)));
        assert_eq!(out.rendered(), ["line 1: nesting deeper than 32 levels"]);
        assert_eq!(out.lines(), [2]);
        assert_eq!(out.seen, 2);
    }

    #[test]
    fn nesting_up_to_the_limit_is_fine() {
        // Object (1), orders array (2), element (3), then 29 more levels: exactly 32.
        let value = format!("{}1{}", "[".repeat(29), "]".repeat(29));
        let input = format!(
            "{{\"orders\": [{{\"order_id\": \"a\", \"recipient\": \"r\", \"coin\": \"c\", \"chain\": \"x\", \"amount\": \"1\", \"memo\": {value}}}]}}"
        );
        assert_eq!(
            json(&input).rendered(),
            ["line 1, field memo: memo must be a JSON string, not an array"]
        );
        let one_more = input.replace("\"memo\": [", "\"memo\": [[").replace("]}]}", "]]}]}");
        assert_eq!(json(&one_more).rendered(), ["line 1: nesting deeper than 32 levels"]);
    }

    #[test]
    fn long_values_and_rows_are_refused_without_echoing_them() {
        let big = "x".repeat(5000);
        let input = format!("[{}]", GOOD.replace("\"r\"", &format!("\"{big}\"")));
        assert_eq!(
            json(&input).rendered(),
            ["line 1, field recipient: value is 5000 bytes long, the limit is 4096"]
        );

        let limits = Limits {
            max_row_bytes: 100,
            ..Limits::default()
        };
        let long = GOOD.replace("\"r\"", &format!("\"{}\"", "y".repeat(100)));
        let out = run_with(Format::Json, format!("[{GOOD},\n{long}]").as_bytes(), &limits);
        assert_eq!(
            out.rendered(),
            [format!("line 2: row is {} bytes long, the limit is 100", long.len())]
        );
        assert_eq!(out.lines(), [1]);

        let out = run_with(Format::JsonLines, format!("{long}\r\n{GOOD}\r\n").as_bytes(), &limits);
        assert_eq!(
            out.rendered(),
            [format!("line 1: row is {} bytes long, the limit is 100", long.len())]
        );
        assert_eq!(out.lines(), [2]);
        assert_eq!(out.seen, 2);
    }

    #[test]
    fn non_utf8_in_json_lines_is_a_row_problem() {
        let mut input = GOOD.replace("\"r\"", "\"caf\u{1}\"").into_bytes();
        let at = input.iter().position(|&b| b == 1).unwrap();
        input[at] = 0xE9;
        input.extend_from_slice(format!("\n{GOOD}\n").as_bytes());
        let out = run(Format::JsonLines, &input);
        assert_eq!(
            out.rendered(),
            ["line 1: invalid JSON at column 36: invalid unicode code point"]
        );
        assert_eq!(out.lines(), [2]);
    }

    #[test]
    fn an_io_error_is_reported() {
        let input = format!("[{GOOD},");
        let out = run_reader(Format::Json, FailingAfter(input.as_bytes()), &Limits::default());
        assert_eq!(out.rendered(), ["could not read the file: disk on fire"]);
        assert_eq!(out.lines(), [1]);
        let out = run_reader(
            Format::JsonLines,
            FailingAfter(format!("{GOOD}\n").as_bytes()),
            &Limits::default(),
        );
        assert_eq!(out.rendered(), ["could not read the file: disk on fire"]);
        assert_eq!(out.lines(), [1]);
    }
}
