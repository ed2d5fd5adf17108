//! CSV batch files: RFC 4180 with a header row, read record by record with the `csv` crate.
//!
//! The `csv` crate does the splitting; this module adds what it does not do for us:
//!
//! - the line each record starts on. `csv` records the position *before* a record, which is
//!   before any blank lines it skips and, with CRLF line ends, before the `\n` of the previous
//!   record's terminator; so the start line is worked out from the position *after* the record
//!   instead (see [`record_line`]).
//! - unterminated quotes. `csv` silently runs an unclosed quoted field to the end of the file,
//!   which would swallow every later row into one value; [`Tracker`] follows the quoting of the
//!   raw bytes as they stream past so the last record can be recognised as unterminated.
//! - the header rules, ragged rows, size limits and UTF-8 checks, each reported with its line.
//!
//! Memory is one reused record, a read buffer and a fixed-size window of recent bytes.

use std::io::{self, Read};

use ::csv::{ByteRecord, Reader, ReaderBuilder};

use super::{Column, Limits, NameKind, ParseProblem, Presence, RawRow, count, missing_required, quote, suggest};

/// Bytes `csv` asks for per read. Large reads keep the per-call overhead out of the profile.
const READ_BUFFER: usize = 64 * 1024;

/// Bytes of recent input kept by [`Tracker`]. `csv` buffers at most [`READ_BUFFER`] bytes ahead
/// of what it has parsed, so the byte that ended the record just returned is always inside a
/// window of twice that size.
const WINDOW: usize = 2 * READ_BUFFER;

/// Reads a CSV batch. See [`super::read_rows`].
pub(super) fn read<R: Read>(
    reader: R,
    limits: &Limits,
    row: &mut dyn FnMut(RawRow),
    problem: &mut dyn FnMut(ParseProblem),
) -> u64 {
    // The header is read as an ordinary record so that its line, quoting and encoding are
    // checked the same way as every other row; `flexible` lets ragged rows through to be
    // reported one by one instead of ending the read.
    let mut rdr = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(READ_BUFFER)
        .from_reader(Tracker::new(reader));
    let mut record = ByteRecord::new();

    let Some(columns) = read_header(&mut rdr, &mut record, problem) else {
        return 0;
    };

    let mut rows_seen = 0;
    loop {
        match next_record(&mut rdr, &mut record, problem) {
            Next::Record => {}
            Next::End => break,
            Next::Failed => return rows_seen,
        }
        rows_seen += 1;

        if ends_in_open_quote(&rdr) {
            problem(unterminated(&rdr, &record, &columns));
            return rows_seen;
        }
        let line = record_line(&rdr, &record, false);

        if record.len() != columns.len() {
            problem(ParseProblem::at(
                line,
                format!(
                    "row has {}, the header has {}",
                    count(record.len(), "field"),
                    columns.len()
                ),
            ));
            continue;
        }

        // Sizes first: an oversized value is named once, by its length, and never decoded or
        // copied.
        let mut refused = false;
        for (value, column) in record.iter().zip(&columns) {
            if value.len() > limits.max_field_bytes {
                problem(ParseProblem::field(
                    line,
                    column.name(),
                    format!(
                        "value is {} bytes long, the limit is {}",
                        value.len(),
                        limits.max_field_bytes
                    ),
                ));
                refused = true;
            }
        }
        if refused {
            continue;
        }
        // The row's size as written, without quotes: its values and the commas between them.
        let row_bytes = record.as_slice().len() + record.len().saturating_sub(1);
        if row_bytes > limits.max_row_bytes {
            problem(ParseProblem::at(
                line,
                format!("row is {row_bytes} bytes long, the limit is {}", limits.max_row_bytes),
            ));
            continue;
        }

        let mut raw = RawRow {
            line,
            values: Default::default(),
        };
        for (value, column) in record.iter().zip(&columns) {
            match std::str::from_utf8(value) {
                Ok(text) => raw.values[*column as usize] = Some(text.to_owned()),
                Err(e) => {
                    problem(ParseProblem::field(
                        line,
                        column.name(),
                        format!("value is not valid UTF-8 (byte {})", e.valid_up_to() + 1),
                    ));
                    refused = true;
                }
            }
        }
        if refused {
            continue;
        }
        row(raw);
    }

    if rows_seen == 0 {
        problem(ParseProblem::file("the file has a header but no rows"));
    }
    rows_seen
}

/// Reads and checks the header. Returns the column of each field, or `None` after reporting why
/// the file cannot be read.
fn read_header<R: Read>(
    rdr: &mut Reader<Tracker<R>>,
    record: &mut ByteRecord,
    problem: &mut dyn FnMut(ParseProblem),
) -> Option<Vec<Column>> {
    match next_record(rdr, record, problem) {
        Next::Record => {}
        Next::End => {
            problem(ParseProblem::file("the file is empty"));
            return None;
        }
        Next::Failed => return None,
    }
    if ends_in_open_quote(rdr) {
        problem(unterminated(rdr, record, &[]));
        return None;
    }
    let line = record_line(rdr, record, false);

    // A file of nothing but whitespace is empty; whitespace before a real header is a mistake
    // worth naming, because the first line must be the header.
    if is_blank(record) {
        loop {
            match next_record(rdr, record, problem) {
                Next::Record if is_blank(record) => {}
                Next::Record => {
                    problem(ParseProblem::at(
                        line,
                        "the first line is blank; it must be the header naming the columns",
                    ));
                    return None;
                }
                Next::End => {
                    problem(ParseProblem::file("the file is empty"));
                    return None;
                }
                Next::Failed => return None,
            }
        }
    }

    let mut problems = Vec::new();
    let mut columns = Vec::with_capacity(record.len());
    let mut first_index: [Option<usize>; Column::ALL.len()] = [None; Column::ALL.len()];
    let mut suggested = [false; Column::ALL.len()];
    for (i, raw) in record.iter().enumerate() {
        let Ok(name) = std::str::from_utf8(raw) else {
            problems.push(ParseProblem::at(
                line,
                format!("the header is not valid UTF-8 (column {})", i + 1),
            ));
            continue;
        };
        if name.trim().is_empty() {
            problems.push(ParseProblem::at(line, format!("column {} has no name", i + 1)));
            continue;
        }
        let Some(column) = Column::from_name(name) else {
            if let Some(c) = suggest(name) {
                suggested[c as usize] = true;
            }
            problems.push(ParseProblem::at(
                line,
                super::unknown_name_message(NameKind::Column, name),
            ));
            continue;
        };
        match first_index[column as usize] {
            Some(first) => problems.push(ParseProblem::field(
                line,
                column.name(),
                format!(
                    "duplicate column {} (column {}, already given as column {})",
                    quote(name),
                    i + 1,
                    first + 1
                ),
            )),
            None => first_index[column as usize] = Some(i),
        }
        columns.push(column);
    }
    // A column already named by a suggestion ("did you mean ...") is not reported again as
    // missing: one typo, one problem.
    let state = |c: Column| {
        if first_index[c as usize].is_some() || suggested[c as usize] {
            Presence::Present
        } else {
            Presence::Absent
        }
    };
    for (column, message) in missing_required(NameKind::Column, state) {
        problems.push(ParseProblem {
            line: Some(line),
            field: column.map(|c| c.name().to_owned()),
            message,
        });
    }

    if problems.is_empty() {
        Some(columns)
    } else {
        for p in problems {
            problem(p);
        }
        None
    }
}

/// What reading one record gave.
enum Next {
    Record,
    End,
    /// The input could not be read; the problem has been reported.
    Failed,
}

fn next_record<R: Read>(
    rdr: &mut Reader<Tracker<R>>,
    record: &mut ByteRecord,
    problem: &mut dyn FnMut(ParseProblem),
) -> Next {
    match rdr.read_byte_record(record) {
        Ok(true) => Next::Record,
        Ok(false) => Next::End,
        Err(e) => {
            let message = match e.kind() {
                ::csv::ErrorKind::Io(io) => format!("could not read the file: {io}"),
                _ => format!("could not read the CSV: {e}"),
            };
            problem(ParseProblem::file(message));
            Next::Failed
        }
    }
}

/// Whether a record is a line of nothing but spaces or tabs.
fn is_blank(record: &ByteRecord) -> bool {
    record.len() == 1 && record.as_slice().iter().all(u8::is_ascii_whitespace)
}

/// The line a record just read starts on.
///
/// The position after the record counts every `\n` up to its end, including those inside
/// quoted values and the record's own terminator when that is a `\n` (with CRLF, `csv` stops
/// after the `\r` and skips the `\n` later). Blank lines skipped before the record are not in
/// the subtraction, so they are correctly counted as lines before it. A record that ran into
/// an unterminated quote has no terminator: its last `\n` is part of its value.
fn record_line<R: Read>(rdr: &Reader<Tracker<R>>, record: &ByteRecord, open_quote: bool) -> u64 {
    let end = rdr.position();
    let inside = newlines(record.as_slice());
    let terminator = !open_quote && end.byte() > 0 && rdr.get_ref().byte_at(end.byte() - 1) == Some(b'\n');
    end.line().saturating_sub(inside + u64::from(terminator)).max(1)
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Whether the record just read is the last one and ended inside an open quote.
fn ends_in_open_quote<R: Read>(rdr: &Reader<Tracker<R>>) -> bool {
    let tracker = rdr.get_ref();
    tracker.eof && tracker.in_open_quote() && rdr.position().byte() == tracker.total
}

/// The problem for a record that ran into an unterminated quote. The open field is the record's
/// last, so its first line is the record's line plus the line breaks in the fields before it.
fn unterminated<R: Read>(rdr: &Reader<Tracker<R>>, record: &ByteRecord, columns: &[Column]) -> ParseProblem {
    let line = record_line(rdr, record, true);
    let last = record.len().saturating_sub(1);
    let before: u64 = record.iter().take(last).map(newlines).sum();
    let message = format!("unterminated quoted field starting on line {}", line + before);
    match columns.get(last) {
        Some(column) => ParseProblem::field(line, column.name(), message),
        None => ParseProblem::at(line, message),
    }
}

/// A pass-through reader that watches the raw bytes on their way to `csv`.
///
/// It keeps the last [`WINDOW`] bytes (to see how a record ended) and follows the quoting the
/// way `csv` reads it: a `"` opens a quoted field only at the start of a field (after `,`, a
/// line end, or at the start of the input); inside one, `""` is a literal quote and any other
/// `"` closes it. Only the `"` bytes need looking at, so this costs one scan for quotes.
struct Tracker<R> {
    inner: R,
    window: Vec<u8>,
    /// Bytes handed out so far.
    total: u64,
    /// The inner reader has reported its end.
    eof: bool,
    /// The last byte handed out; a line end before the first byte, since the input starts a field.
    last: u8,
    in_quoted: bool,
    /// Offset of a `"` seen inside a quoted field: it closes the field unless the next byte is
    /// another `"`.
    pending_close: Option<u64>,
}

impl<R: Read> Tracker<R> {
    fn new(inner: R) -> Self {
        Tracker {
            inner,
            window: vec![0; WINDOW],
            total: 0,
            eof: false,
            last: b'\n',
            in_quoted: false,
            pending_close: None,
        }
    }

    /// The byte at `offset`, if it is still in the window.
    fn byte_at(&self, offset: u64) -> Option<u8> {
        if offset < self.total && self.total - offset <= WINDOW as u64 {
            Some(self.window[(offset % WINDOW as u64) as usize])
        } else {
            None
        }
    }

    /// Whether the input so far ends inside a quoted field that was never closed.
    fn in_open_quote(&self) -> bool {
        self.in_quoted && self.pending_close.is_none()
    }

    fn remember(&mut self, data: &[u8]) {
        let skip = data.len().saturating_sub(WINDOW);
        let data = &data[skip..];
        let start = ((self.total + skip as u64) % WINDOW as u64) as usize;
        let first = data.len().min(WINDOW - start);
        self.window[start..start + first].copy_from_slice(&data[..first]);
        self.window[..data.len() - first].copy_from_slice(&data[first..]);
    }

    fn follow_quotes(&mut self, data: &[u8]) {
        let mut from = 0;
        while let Some(found) = data[from..].iter().position(|&b| b == b'"') {
            let i = from + found;
            let previous = if i == 0 { self.last } else { data[i - 1] };
            self.on_quote(self.total + i as u64, previous);
            from = i + 1;
        }
    }

    fn on_quote(&mut self, offset: u64, previous: u8) {
        if self.in_quoted {
            match self.pending_close {
                None => {
                    self.pending_close = Some(offset);
                    return;
                }
                Some(close) if close + 1 == offset => {
                    self.pending_close = None;
                    return;
                }
                // The earlier quote closed the field; this one is outside it.
                Some(_) => {
                    self.in_quoted = false;
                    self.pending_close = None;
                }
            }
        }
        if matches!(previous, b',' | b'\n' | b'\r') {
            self.in_quoted = true;
        }
    }
}

impl<R: Read> Read for Tracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.eof |= !buf.is_empty();
            return Ok(0);
        }
        let data = &buf[..n];
        self.remember(data);
        self.follow_quotes(data);
        self.total += n as u64;
        self.last = data[n - 1];
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{Column, Format, Limits};
    use super::Tracker;
    use proptest::prelude::*;

    const HEADER: &str = "order_id,recipient,coin,chain,amount";

    fn csv(input: &str) -> Outcome {
        run(Format::Csv, input.as_bytes())
    }

    /// A table case: name, input, the order_ids delivered with their lines, the problems.
    type Case = (
        &'static str,
        &'static str,
        &'static [(&'static str, u64)],
        &'static [&'static str],
    );

    #[test]
    fn table_of_csv_inputs() {
        let cases: &[Case] = &[
            (
                "lf",
                "order_id,recipient,coin,chain,amount\na,r,USDT,TRX,1\nb,r,USDT,TRX,2\n",
                &[("a", 2), ("b", 3)],
                &[],
            ),
            (
                "crlf",
                "order_id,recipient,coin,chain,amount\r\na,r,USDT,TRX,1\r\nb,r,USDT,TRX,2\r\n",
                &[("a", 2), ("b", 3)],
                &[],
            ),
            (
                "no final line end",
                "order_id,recipient,coin,chain,amount\na,r,USDT,TRX,1",
                &[("a", 2)],
                &[],
            ),
            (
                "blank lines are skipped and counted",
                "order_id,recipient,coin,chain,amount\n\na,r,USDT,TRX,1\n\n\nb,r,USDT,TRX,2\n\n",
                &[("a", 3), ("b", 6)],
                &[],
            ),
            (
                "blank lines with crlf",
                "order_id,recipient,coin,chain,amount\r\n\r\na,r,USDT,TRX,1\r\n\r\n\r\nb,r,USDT,TRX,2\r\n",
                &[("a", 3), ("b", 6)],
                &[],
            ),
            (
                "blank lines before the header",
                "\n\norder_id,recipient,coin,chain,amount\na,r,USDT,TRX,1\n",
                &[("a", 4)],
                &[],
            ),
            (
                "quoted newline keeps later lines right",
                "order_id,recipient,coin,chain,amount,memo\n\"a\",r,USDT,TRX,1,\"x\ny\r\nz\"\nb,r,USDT,TRX,2,\n",
                &[("a", 2), ("b", 5)],
                &[],
            ),
            (
                "quoted newline in crlf file",
                "order_id,recipient,coin,chain,amount,memo\r\na,r,USDT,TRX,1,\"x\r\ny\"\r\nb,r,USDT,TRX,2,\r\n",
                &[("a", 2), ("b", 4)],
                &[],
            ),
            (
                "header with quoted newline",
                "order_id,recipient,coin,chain,\"amo\nunt\"\na,r,USDT,TRX,1\n",
                &[],
                &["line 1: unknown column \"amo\\nunt\" (did you mean \"amount\"?)"],
            ),
            (
                "more fields than the header",
                "order_id,recipient,coin,chain,amount\na,r,USDT,TRX,1,extra\nb,r,USDT,TRX,2\n",
                &[("b", 3)],
                &["line 2: row has 6 fields, the header has 5"],
            ),
            (
                "fewer fields than the header",
                "order_id,recipient,coin,chain,amount\na,r,USDT,TRX\nb,r,USDT,TRX,2\n",
                &[("b", 3)],
                &["line 2: row has 4 fields, the header has 5"],
            ),
            (
                "whitespace-only line is a one-field row",
                "order_id,recipient,coin,chain,amount\n  \nb,r,USDT,TRX,2\n",
                &[("b", 3)],
                &["line 2: row has 1 field, the header has 5"],
            ),
            (
                "unterminated quote in the last field swallows the rest",
                "order_id,recipient,coin,chain,amount,reference\na,r,USDT,TRX,1,ok\nb,r,USDT,TRX,2,\"note\nc,r,USDT,TRX,3,x\n",
                &[("a", 2)],
                &["line 3, field reference: unterminated quoted field starting on line 3"],
            ),
            (
                "unterminated quote in a middle field",
                "order_id,recipient,coin,chain,amount\na,r,\"USDT,TRX,1\nb,r,USDT,TRX,2\n",
                &[],
                &["line 2, field coin: unterminated quoted field starting on line 2"],
            ),
            (
                "unterminated quote after a closed multi-line field",
                "order_id,recipient,coin,chain,amount,memo,reference\na,r,USDT,TRX,1,\"m\nm\",\"open\n",
                &[],
                &["line 2, field reference: unterminated quoted field starting on line 3"],
            ),
            (
                "unterminated quote on the last line without line end",
                "order_id,recipient,coin,chain,amount\na,r,USDT,TRX,\"1",
                &[],
                &["line 2, field amount: unterminated quoted field starting on line 2"],
            ),
            (
                "unterminated quote ending in an escaped quote",
                "order_id,recipient,coin,chain,amount\na,r,USDT,TRX,\"1\"\"",
                &[],
                &["line 2, field amount: unterminated quoted field starting on line 2"],
            ),
            (
                "a closed quote at the very end is fine",
                "order_id,recipient,coin,chain,amount\na,r,USDT,TRX,\"1\"\"\"",
                &[("a", 2)],
                &[],
            ),
            (
                "a quote inside an unquoted field is literal, not an open quote",
                "order_id,recipient,coin,chain,amount,memo\na,r,USDT,TRX,1,5\"\n",
                &[("a", 2)],
                &[],
            ),
            (
                "unterminated quote in the header",
                "order_id,\"recipient,amount\na,b,c\n",
                &[],
                &["line 1: unterminated quoted field starting on line 1"],
            ),
            ("empty file", "", &[], &["the file is empty"]),
            ("bom only", "\u{feff}", &[], &["the file is empty"]),
            ("whitespace only", "  \n\t\r\n\n", &[], &["the file is empty"]),
            (
                "blank first line before a header",
                "   \norder_id,recipient,coin,chain,amount\na,r,USDT,TRX,1\n",
                &[],
                &["line 1: the first line is blank; it must be the header naming the columns"],
            ),
            (
                "header only",
                "order_id,recipient,coin,chain,amount\n",
                &[],
                &["the file has a header but no rows"],
            ),
            (
                "header only with bom",
                "\u{feff}order_id,recipient,amount,token_id",
                &[],
                &["the file has a header but no rows"],
            ),
            (
                "unknown column with suggestion",
                "order_id,recipient,coin,chain,ammount\na,r,USDT,TRX,1\n",
                &[],
                &["line 1: unknown column \"ammount\" (did you mean \"amount\"?)"],
            ),
            (
                "unknown column without suggestion",
                "order_id,recipient,coin,chain,amount,colour\na,r,USDT,TRX,1,red\n",
                &[],
                &["line 1: unknown column \"colour\""],
            ),
            (
                "duplicated column, differently written",
                "order_id,recipient,coin,chain,amount, AMOUNT \na,r,USDT,TRX,1,2\n",
                &[],
                &["line 1, field amount: duplicate column \" AMOUNT \" (column 6, already given as column 5)"],
            ),
            (
                "column without a name",
                "order_id,recipient,coin,chain,amount,\na,r,USDT,TRX,1,\n",
                &[],
                &["line 1: column 6 has no name"],
            ),
            (
                "missing v2 columns",
                "order_id,amount\na,1\n",
                &[],
                &[
                    "line 1, field recipient: missing required column \"recipient\"",
                    "line 1: missing required columns \"coin\" and \"chain\" (or \"token_id\" for v1 accounts)",
                ],
            ),
            (
                "coin without chain",
                "order_id,recipient,amount,coin\na,r,1,USDT\n",
                &[],
                &[
                    "line 1, field chain: missing required column \"chain\" (it goes with \"coin\"; v1 accounts use \"token_id\" instead)",
                ],
            ),
            (
                "chain without coin",
                "order_id,recipient,amount,chain\na,r,1,TRX\n",
                &[],
                &[
                    "line 1, field coin: missing required column \"coin\" (it goes with \"chain\"; v1 accounts use \"token_id\" instead)",
                ],
            ),
            (
                "v1 token_id set",
                "token_id,amount,recipient,order_id\nt,1,r,a\n",
                &[("a", 2)],
                &[],
            ),
            (
                "missing order_id in the v1 set",
                "token_id,amount,recipient\nt,1,r\n",
                &[],
                &["line 1, field order_id: missing required column \"order_id\""],
            ),
            (
                "header names in any case, order and padding",
                "\u{feff} Amount ,CHAIN,\tCoin,Recipient,ORDER_ID\r\n1,TRX,USDT,r,a\r\n",
                &[("a", 2)],
                &[],
            ),
        ];
        for (name, input, want_rows, want_problems) in cases {
            let out = csv(input);
            let got_rows: Vec<(&str, u64)> = out
                .rows
                .iter()
                .map(|r| (r.get(Column::OrderId).unwrap(), r.line))
                .collect();
            assert_eq!(got_rows, *want_rows, "rows of case {name:?}");
            assert_eq!(out.rendered(), *want_problems, "problems of case {name:?}");
            // Every input also reads the same when handed over one byte at a time.
            let slow = run_reader(Format::Csv, OneByte(input.as_bytes()), &Limits::default());
            assert_eq!(slow.rendered(), out.rendered(), "one byte at a time, case {name:?}");
            assert_eq!(slow.rows, out.rows, "one byte at a time, case {name:?}");
        }
    }

    #[test]
    fn values_are_the_field_text_and_absent_columns_are_none() {
        let out = csv(
            "order_id,recipient,coin,chain,amount,memo\na,\"r,1\",USDT,TRX,\"1.5\",\"say \"\"hi\"\"\"\nb,r,USDT,TRX,2,\n",
        );
        assert_eq!(out.rendered(), Vec::<String>::new());
        assert_eq!(out.column(Column::Recipient), [Some("r,1"), Some("r")]);
        assert_eq!(out.column(Column::Amount), [Some("1.5"), Some("2")]);
        assert_eq!(out.column(Column::Memo), [Some("say \"hi\""), Some("")]);
        assert_eq!(out.column(Column::TokenId), [None, None]);
        assert_eq!(out.seen, 2);
    }

    #[test]
    fn a_bom_is_removed_from_the_first_header_name() {
        let out = csv("\u{feff}order_id,recipient,coin,chain,amount\na,r,USDT,TRX,1\n");
        assert_eq!(out.rendered(), Vec::<String>::new());
        assert_eq!(out.column(Column::OrderId), [Some("a")]);
    }

    #[test]
    fn non_utf8_value_names_line_and_field_and_the_other_rows_survive() {
        let input =
            b"order_id,recipient,coin,chain,amount,memo\na,r,USDT,TRX,1,ok\nb,r,USDT,TRX,2,caf\xE9\nc,r,USDT,TRX,3,\n";
        let out = run(Format::Csv, input);
        assert_eq!(
            out.rendered(),
            ["line 3, field memo: value is not valid UTF-8 (byte 4)"]
        );
        assert_eq!(out.column(Column::OrderId), [Some("a"), Some("c")]);
        assert_eq!(out.lines(), [2, 4]);
        assert_eq!(out.seen, 3);
    }

    #[test]
    fn non_utf8_header_stops_the_read() {
        let out = run(
            Format::Csv,
            b"order_id,recipient,co\xFFin,chain,amount\na,r,USDT,TRX,1\n",
        );
        assert_eq!(
            out.rendered(),
            [
                "line 1: the header is not valid UTF-8 (column 3)",
                "line 1, field coin: missing required column \"coin\" (it goes with \"chain\"; v1 accounts use \"token_id\" instead)",
            ]
        );
        assert!(out.rows.is_empty());
        assert_eq!(out.seen, 0);
    }

    #[test]
    fn a_ten_megabyte_field_is_refused_by_length_without_echoing_it() {
        let mut input = format!("{HEADER},memo\na,r,USDT,TRX,1,").into_bytes();
        input.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
        input.extend_from_slice(b"\nb,r,USDT,TRX,2,\n");
        let out = run(Format::Csv, &input);
        assert_eq!(
            out.rendered(),
            ["line 2, field memo: value is 10485760 bytes long, the limit is 4096"]
        );
        assert_eq!(out.column(Column::OrderId), [Some("b")]);
        assert_eq!(out.lines(), [3]);
    }

    #[test]
    fn every_oversized_field_of_a_row_is_named() {
        let limits = Limits {
            max_field_bytes: 3,
            ..Limits::default()
        };
        let out = run_with(
            Format::Csv,
            format!("{HEADER}\nabcd,r,USDT,TRX,1\nb,r,USD,TRX,1\n").as_bytes(),
            &limits,
        );
        assert_eq!(
            out.rendered(),
            [
                "line 2, field order_id: value is 4 bytes long, the limit is 3",
                "line 2, field coin: value is 4 bytes long, the limit is 3",
            ]
        );
        assert_eq!(out.column(Column::OrderId), [Some("b")]);
        assert_eq!(out.seen, 2);
    }

    #[test]
    fn a_row_over_the_row_limit_is_refused() {
        let limits = Limits {
            max_field_bytes: 10,
            max_row_bytes: 20,
            ..Limits::default()
        };
        let out = run_with(
            Format::Csv,
            format!("{HEADER}\na,r,USDT,TRX,1\nabcdefghij,r,USDT,TRX,1\n").as_bytes(),
            &limits,
        );
        assert_eq!(out.rendered(), ["line 3: row is 23 bytes long, the limit is 20"]);
        assert_eq!(out.column(Column::OrderId), [Some("a")]);
    }

    #[test]
    fn an_io_error_is_reported_and_stops_the_read() {
        let input = format!("{HEADER}\na,r,USDT,TRX,1\n");
        let out = run_reader(Format::Csv, FailingAfter(input.as_bytes()), &Limits::default());
        assert_eq!(out.rendered(), ["could not read the file: disk on fire"]);
        assert_eq!(out.column(Column::OrderId), [Some("a")]);
    }

    #[test]
    fn line_numbers_stay_right_across_read_buffer_boundaries() {
        // Enough rows, some multi-line, to cross the 64 KiB read buffer and the window many times.
        let mut input = format!("{HEADER},memo\r\n");
        let mut want = Vec::new();
        let mut line = 2;
        for i in 0..20_000 {
            want.push(line);
            if i % 7 == 0 {
                input.push_str(&format!("o{i},r,USDT,TRX,1,\"two\r\nlines\"\r\n"));
                line += 2;
            } else {
                input.push_str(&format!("o{i},r,USDT,TRX,1,\r\n"));
                line += 1;
            }
        }
        let out = csv(&input);
        assert_eq!(out.rendered(), Vec::<String>::new());
        assert_eq!(out.lines(), want);
    }

    /// A value that survives a CSV round trip: anything but a lone carriage return, which RFC 4180
    /// readers may take as a line end.
    fn value() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-zA-Z0-9 ,\"\n.é€-]{0,12}").unwrap()
    }

    proptest! {
        #[test]
        fn written_csv_reads_back_to_the_same_values_and_lines(
            rows in proptest::collection::vec((proptest::collection::vec(value(), 6), 0..3usize), 1..20),
            style in 0..3usize,
            crlf: bool,
            bom: bool,
        ) {
            let columns = [Column::Reference, Column::OrderId, Column::Amount, Column::Recipient, Column::Coin, Column::Chain];
            let quote_style = [::csv::QuoteStyle::Always, ::csv::QuoteStyle::Necessary, ::csv::QuoteStyle::NonNumeric][style];
            let terminator = if crlf { ::csv::Terminator::CRLF } else { ::csv::Terminator::Any(b'\n') };
            let line_end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let write = |record: &mut dyn Iterator<Item = &str>| {
                let mut w = ::csv::WriterBuilder::new().quote_style(quote_style).terminator(terminator).from_writer(Vec::new());
                w.write_record(record).unwrap();
                w.into_inner().unwrap()
            };
            let mut file = Vec::new();
            if bom {
                file.extend_from_slice("\u{feff}".as_bytes());
            }
            file.extend(write(&mut columns.iter().map(|c| c.name())));
            let mut want_lines = Vec::new();
            for (values, blank_lines) in &rows {
                // Blank lines between rows are skipped, but still count as lines.
                for _ in 0..*blank_lines {
                    file.extend_from_slice(line_end);
                }
                want_lines.push(file.iter().filter(|&&b| b == b'\n').count() as u64 + 1);
                file.extend(write(&mut values.iter().map(String::as_str)));
            }
            let got = run(Format::Csv, &file);
            prop_assert_eq!(got.rendered(), Vec::<String>::new());
            prop_assert_eq!(got.lines(), want_lines);
            prop_assert_eq!(got.seen, rows.len() as u64);
            for (got_row, (want_row, _)) in got.rows.iter().zip(&rows) {
                for (c, want) in columns.iter().zip(want_row) {
                    prop_assert_eq!(got_row.get(*c), Some(want.as_str()));
                }
            }
        }

        /// The tracker's idea of "the input ends inside a quoted field" matches the csv crate's:
        /// if it does, a line appended to the input is swallowed into that field.
        #[test]
        fn the_quote_tracker_agrees_with_the_csv_crate(
            input in proptest::collection::vec(proptest::sample::select(b"a,\"\n\r ".to_vec()), 0..40),
        ) {
            let mut tracker = Tracker::new(&input[..]);
            std::io::copy(&mut tracker, &mut std::io::sink()).unwrap();
            let mut probe = input.clone();
            probe.extend_from_slice(b"\nzz");
            let mut rdr = ::csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&probe[..]);
            let last = rdr.byte_records().last().unwrap().unwrap();
            prop_assert_eq!(tracker.in_open_quote(), last != vec!["zz"], "{:?}", String::from_utf8_lossy(&input));
        }
    }
}
