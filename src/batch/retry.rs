//! Batch files written back: the file `ccpayout retry` makes of a batch's failed and rejected
//! rows, in the format of the batch it retries (CSV, JSON or JSON Lines), which the parsers of
//! [`super::parse`] read back to the same rows.
//!
//! Values are written exactly as the store keeps them (an amount is its canonical text, never a
//! number), and only the columns some row uses besides the required ones, so the file is what an
//! operator would have written. It is a batch file, not a report: no cell is altered for
//! spreadsheets (a leading `'` would change the value that is paid).
//!
//! Pure: writes only to the writer given.

use std::io::{self, Write};
use std::path::Path;

use super::parse::{Column, Format};
use crate::model::record::InputRow;

/// The value of column `c` in `row`.
pub fn cell(row: &InputRow, c: Column) -> &str {
    match c {
        Column::OrderId => &row.order_id,
        Column::Recipient => &row.recipient,
        Column::Coin => &row.coin,
        Column::Chain => &row.chain,
        Column::Amount => &row.amount,
        Column::Memo => &row.memo,
        Column::MerchantPaysFee => &row.merchant_pays_fee,
        Column::Reference => &row.reference,
        Column::TokenId => &row.token_id,
        Column::Payee => &row.payee,
        Column::OriginalOrderId => &row.original_order_id,
    }
}

/// The columns a file of `rows` has, in [`Column::ALL`]'s order: the three every row needs,
/// and every other one that some row fills.
pub fn columns(rows: &[InputRow]) -> Vec<Column> {
    Column::ALL
        .into_iter()
        .filter(|&c| {
            matches!(c, Column::OrderId | Column::Recipient | Column::Amount)
                || rows.iter().any(|r| !cell(r, c).is_empty())
        })
        .collect()
}

/// Writes `rows` as a batch file in `format`: CSV with a header row; JSON as
/// `{"orders": [...]}` with one order per line; JSON Lines with one order per line. Every value
/// is a string; a JSON order leaves out the keys it has no value for.
pub fn write_rows(format: Format, rows: &[InputRow], out: &mut dyn Write) -> io::Result<()> {
    let columns = columns(rows);
    match format {
        Format::Csv => write_csv(&columns, rows, out),
        Format::Json => {
            out.write_all(b"{\"orders\":[")?;
            for (i, row) in rows.iter().enumerate() {
                out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
                write_object(&columns, row, out)?;
            }
            out.write_all(b"\n]}\n")
        }
        Format::JsonLines => {
            for row in rows {
                write_object(&columns, row, out)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        }
    }?;
    out.flush()
}

fn write_csv(columns: &[Column], rows: &[InputRow], out: &mut dyn Write) -> io::Result<()> {
    let mut csv = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(out);
    csv.write_record(columns.iter().map(|c| c.name())).map_err(csv_error)?;
    for row in rows {
        csv.write_record(columns.iter().map(|&c| cell(row, c)))
            .map_err(csv_error)?;
    }
    csv.flush()
}

/// One order as a JSON object on one line, its keys in column order.
fn write_object(columns: &[Column], row: &InputRow, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(b"{")?;
    let mut first = true;
    for &c in columns {
        let value = cell(row, c);
        if value.is_empty() && !matches!(c, Column::OrderId | Column::Recipient | Column::Amount) {
            continue;
        }
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        serde_json::to_writer(&mut *out, c.name())?;
        out.write_all(b":")?;
        serde_json::to_writer(&mut *out, value)?;
    }
    out.write_all(b"}")
}

/// Keeps the I/O error's kind when there is one.
fn csv_error(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("writing CSV: {other:?}")),
    }
}

/// The name of the retry file of a batch from `source` in `format`: the source's stem with
/// `.retry1` (`.retry2` for the retry of a `.retry1` file, and so on) and its extension (the
/// format's usual one when the source's names another format).
pub fn retry_file_name(source: &str, format: Format) -> String {
    let path = Path::new(source);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "batch".to_owned());
    let (base, n) = match stem.rsplit_once(".retry") {
        Some((base, digits))
            if !base.is_empty()
                && !digits.is_empty()
                && !digits.starts_with('0')
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            match digits.parse::<u64>().ok().and_then(|n| n.checked_add(1)) {
                Some(next) => (base.to_owned(), next),
                None => (stem.clone(), 1),
            }
        }
        _ => (stem.clone(), 1),
    };
    let extension = match (Format::from_path(path), path.extension()) {
        (Some(f), Some(ext)) if f == format => ext.to_string_lossy().into_owned(),
        _ => format.extension().to_owned(),
    };
    format!("{base}.retry{n}.{extension}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::parse::{Limits, RawRow, read_rows};

    fn rows() -> Vec<InputRow> {
        vec![
            InputRow {
                order_id: "pay-002~r1".into(),
                recipient: "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K".into(),
                coin: "USDT".into(),
                chain: "TRX".into(),
                amount: "1234567890.000000000000000001".into(),
                merchant_pays_fee: "true".into(),
                // Text that needs quoting in CSV and escaping in JSON, and a would-be formula.
                reference: "=SUM(A1), \"quoted\"\nnext line é".into(),
                original_order_id: "pay-002".into(),
                ..InputRow::default()
            },
            InputRow {
                order_id: "pay-005~r3".into(),
                recipient: "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh".into(),
                coin: "XRP".into(),
                chain: "XRP".into(),
                amount: "0.5".into(),
                memo: "12345".into(),
                merchant_pays_fee: "false".into(),
                payee: "emp-7".into(),
                original_order_id: "pay-005~r2".into(),
                ..InputRow::default()
            },
        ]
    }

    /// `rows` written in `format` and read back by the parser, as rows of text.
    fn round_trip(format: Format, rows: &[InputRow]) -> (Vec<RawRow>, Vec<u8>) {
        let mut bytes = Vec::new();
        write_rows(format, rows, &mut bytes).unwrap();
        let mut read = Vec::new();
        let mut problems = Vec::new();
        read_rows(
            format,
            bytes.as_slice(),
            &Limits::default(),
            &mut |r| read.push(r),
            &mut |p| problems.push(p),
        );
        assert!(
            problems.is_empty(),
            "{format:?}: {problems:?}\n{}",
            String::from_utf8_lossy(&bytes)
        );
        (read, bytes)
    }

    #[test]
    fn every_format_reads_back_to_the_same_rows() {
        let rows = rows();
        for format in [Format::Csv, Format::Json, Format::JsonLines] {
            let (read, bytes) = round_trip(format, &rows);
            assert_eq!(read.len(), rows.len(), "{format:?}");
            for (raw, row) in read.iter().zip(&rows) {
                for c in Column::ALL {
                    let want = cell(row, c);
                    // A column the file has but the row leaves empty reads as empty (CSV) or
                    // absent (JSON); validation treats both alike.
                    assert_eq!(raw.get(c).unwrap_or(""), want, "{format:?} {c:?}");
                }
            }
            // Unused optional columns are not written at all.
            let text = String::from_utf8(bytes).unwrap();
            assert!(!text.contains("token_id"), "{format:?}: {text}");
            assert!(text.contains("original_order_id"), "{format:?}: {text}");
        }
    }

    #[test]
    fn the_shapes_are_what_the_parsers_document() {
        let rows = rows();
        let text = |format| {
            let mut out = Vec::new();
            write_rows(format, &rows, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let csv = text(Format::Csv);
        assert!(
            csv.starts_with(
                "order_id,recipient,coin,chain,amount,memo,merchant_pays_fee,reference,payee,original_order_id\n"
            ),
            "{csv}"
        );
        // No `'` before a formula: the batch file keeps the value as it is paid and reported.
        assert!(csv.contains(",\"=SUM(A1), \"\"quoted\"\"\nnext line é\","), "{csv}");
        let json: serde_json::Value = serde_json::from_str(&text(Format::Json)).unwrap();
        assert_eq!(json["orders"][1]["amount"], "0.5");
        assert_eq!(json["orders"][0]["amount"], "1234567890.000000000000000001");
        assert!(json["orders"][0].get("memo").is_none());
        let lines = text(Format::JsonLines);
        assert_eq!(lines.lines().count(), 2);
        let second: serde_json::Value = serde_json::from_str(lines.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second["original_order_id"], "pay-005~r2");
        // No rows: a header (CSV), an empty list (JSON), nothing (JSON Lines).
        let mut empty = Vec::new();
        write_rows(Format::Json, &[], &mut empty).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&empty).unwrap(),
            serde_json::json!({"orders": []})
        );
    }

    #[test]
    fn retry_files_are_named_after_the_source_and_count_up() {
        let cases = [
            ("/in/processing/payroll.csv", Format::Csv, "payroll.retry1.csv"),
            ("payroll.retry1.csv", Format::Csv, "payroll.retry2.csv"),
            ("payroll.retry9.csv", Format::Csv, "payroll.retry10.csv"),
            ("dir/weekly.NDJSON", Format::JsonLines, "weekly.retry1.NDJSON"),
            ("weekly.jsonl", Format::JsonLines, "weekly.retry1.jsonl"),
            ("orders.json", Format::Json, "orders.retry1.json"),
            // A name that is no retry count, or an extension of another format.
            ("a.retry0.csv", Format::Csv, "a.retry0.retry1.csv"),
            ("a.retryx.csv", Format::Csv, "a.retryx.retry1.csv"),
            ("odd.txt", Format::Csv, "odd.retry1.csv"),
            ("", Format::Json, "batch.retry1.json"),
        ];
        for (source, format, want) in cases {
            assert_eq!(retry_file_name(source, format), want, "{source}");
        }
    }
}
