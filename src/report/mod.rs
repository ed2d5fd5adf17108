//! Per-batch reports, what accounting reconciles against: a result CSV and a result JSON with
//! one row per row of the batch file (accepted or refused, in line order), and a summary with
//! counts and exact totals per coin and status.
//!
//! - [`row`]: report rows from order records and refused rows, and their line-order merge, and
//!   the [`Links`] that retries make between batches (pure).
//! - [`result`]: the result CSV and JSON, streamed to any writer.
//! - [`summary`]: counts and exact decimal totals, and their JSON.
//!
//! [`write_batch_reports`] ties them together and is the only code here that touches the file
//! system (through [`crate::util::atomic`]). It makes one pass over the batch's orders, feeding both result files
//! and the summary at once, so a batch of a million orders is never in memory; it checks that
//! the orders it is shown are the batch's orders, all of them, in order, and replaces no file
//! unless they are.

pub mod result;
pub mod row;
pub mod summary;

#[cfg(test)]
mod fixture;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::util::atomic::AtomicFile;
pub use result::{CsvRows, Extra, JsonRows, result_csv, result_json};
pub use row::{
    COLUMNS, CoinKey, LinkedBatch, Links, ORIGINAL_COLUMN, RETRIED_AS_COLUMN, ReportRow, RowStatus, TASK_COLUMNS,
    explorer_link, report_rows,
};
pub use summary::{Summary, summary_json, summary_json_linked};

use crate::model::record::{BatchRecord, OrderRecord};
use row::Interleave;

/// Where a batch's reports are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPaths {
    pub result_csv: PathBuf,
    pub result_json: PathBuf,
    pub summary_json: PathBuf,
}

impl ReportPaths {
    /// `<dir>/<batch name>.result.csv`, `.result.json` and `.summary.json`.
    pub fn new(dir: &Path, batch_name: &str) -> ReportPaths {
        ReportPaths {
            result_csv: dir.join(format!("{batch_name}.result.csv")),
            result_json: dir.join(format!("{batch_name}.result.json")),
            summary_json: dir.join(format!("{batch_name}.summary.json")),
        }
    }
}

/// Visits a batch's orders in seq order, calling the visitor for each; stops at the first error.
pub type OrderVisitor<'a> = dyn FnMut(&mut dyn FnMut(&OrderRecord) -> io::Result<()>) -> io::Result<()> + 'a;

/// Writes `<dir>/<batch.name>.result.csv`, `.result.json`, `.summary.json`, each atomically.
/// `orders` is called to visit the batch's orders in seq order (it may be called up to three
/// times, once per file; this implementation calls it once and feeds all three files from that
/// pass), so 1,000,000-order batches never sit in memory at once.
///
/// Fails with `InvalidData`, replacing no file, when the visited orders are not exactly the
/// batch's `orders` in seq order (another batch's order, a gap, a repeat, lines out of order):
/// an incomplete report must never look like a complete one. `now_ms` is the summary's
/// `generated_at`. `links` says how retries link the batch with others (empty: not at all, and
/// the files are exactly what they were before retries existed).
pub fn write_batch_reports(
    dir: &Path,
    batch: &BatchRecord,
    orders: &mut OrderVisitor<'_>,
    explorers: &BTreeMap<String, String>,
    links: &Links,
    now_ms: i64,
) -> io::Result<ReportPaths> {
    check_name(&batch.name)?;
    let paths = ReportPaths::new(dir, &batch.name);
    let mut csv_file = AtomicFile::create(&paths.result_csv)?;
    let mut json_file = AtomicFile::create(&paths.result_json)?;
    let mut summary_file = AtomicFile::create(&paths.summary_json)?;

    let mut summary = Summary::new();
    {
        let mut csv = CsvRows::begin_linked(batch, links, csv_file.writer())?;
        let mut json = JsonRows::begin_linked(batch, links, json_file.writer())?;
        let mut emit = |row: ReportRow| -> io::Result<()> {
            csv.row(&row)?;
            json.row(&row)?;
            summary.add(&row);
            Ok(())
        };
        let mut refused = Interleave::new(batch);
        let mut seen: u32 = 0;
        let mut last_line: Option<u64> = None;
        orders(&mut |order: &OrderRecord| {
            check_order(batch, order, seen, last_line)?;
            while let Some(row) = refused.next_before(Some(order.line)) {
                emit(ReportRow::from_refused(row))?;
            }
            let mut row = ReportRow::from_order(order, explorers);
            if let Some(retry) = links.retried_as.get(order.order_id.as_str()) {
                row.retried_as.clone_from(retry);
            }
            emit(row)?;
            seen += 1;
            last_line = Some(order.line);
            Ok(())
        })?;
        if seen != batch.orders {
            return Err(invalid(format!(
                "batch {} has {} orders but {seen} were visited; no report written",
                batch.name, batch.orders
            )));
        }
        while let Some(row) = refused.next_before(None) {
            emit(ReportRow::from_refused(row))?;
        }
        csv.finish()?;
        json.finish()?;
    }
    summary_json_linked(batch, links, &summary, now_ms, summary_file.writer())?;

    // Everything is written and synced only on commit; commit last the summary, whose
    // presence says the batch's reports are complete.
    csv_file.commit()?;
    json_file.commit()?;
    summary_file.commit()?;
    Ok(paths)
}

/// The next visited order must be the batch's order number `seen` (seq counts from 0 without
/// gaps) and come after the previous one in the file.
fn check_order(batch: &BatchRecord, order: &OrderRecord, seen: u32, last_line: Option<u64>) -> io::Result<()> {
    if order.batch_id != batch.batch_id {
        return Err(invalid(format!(
            "order {} belongs to batch {}, not {}; no report written",
            order.order_id, order.batch_id, batch.batch_id
        )));
    }
    if order.seq != seen {
        return Err(invalid(format!(
            "order {} has seq {} where seq {seen} was expected; no report written",
            order.order_id, order.seq
        )));
    }
    if last_line.is_some_and(|last| order.line <= last) {
        return Err(invalid(format!(
            "order {} (line {}) is out of line order; no report written",
            order.order_id, order.line
        )));
    }
    Ok(())
}

/// The batch name becomes part of file names: it must be one plain path component.
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("batch name {name:?} cannot be used in a file name"),
        ));
    }
    Ok(())
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// Writes the fixture batch's reports from `orders`.
    fn write(dir: &Path, batch: &BatchRecord, orders: &[OrderRecord]) -> io::Result<ReportPaths> {
        let mut visits = 0;
        let result = write_batch_reports(
            dir,
            batch,
            &mut |visit| {
                visits += 1;
                orders.iter().try_for_each(&mut *visit)
            },
            &fixture::explorers(),
            &Links::default(),
            fixture::CREATED_MS + 120_000,
        );
        assert!(visits <= 3);
        result
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_the_three_reports_matching_the_pure_functions() {
        let dir = tempfile::tempdir().unwrap();
        let batch = fixture::batch();
        let orders = fixture::orders();
        let paths = write(dir.path(), &batch, &orders).unwrap();
        assert_eq!(paths, ReportPaths::new(dir.path(), "payroll-abababababab"));
        assert_eq!(
            names(dir.path()),
            [
                "payroll-abababababab.result.csv",
                "payroll-abababababab.result.json",
                "payroll-abababababab.summary.json"
            ]
        );

        // The files are exactly what the pure functions produce from the same rows.
        let explorers = fixture::explorers();
        let rows = || report_rows(&batch, &orders, &explorers);
        let mut csv = Vec::new();
        result_csv(&batch, rows(), &mut csv).unwrap();
        assert_eq!(fs::read(&paths.result_csv).unwrap(), csv);
        let mut json = Vec::new();
        result_json(&batch, rows(), &mut json).unwrap();
        assert_eq!(fs::read(&paths.result_json).unwrap(), json);
        let mut summary = Vec::new();
        summary_json(
            &batch,
            &Summary::of(rows()),
            fixture::CREATED_MS + 120_000,
            &mut summary,
        )
        .unwrap();
        assert_eq!(fs::read(&paths.summary_json).unwrap(), summary);

        let value: serde_json::Value = serde_json::from_slice(&fs::read(&paths.summary_json).unwrap()).unwrap();
        assert_eq!(value["counts"]["total"], 9);
        assert_eq!(value["coins"][1]["by_status"]["success"]["amount"], "0.5");
    }

    #[test]
    fn retries_add_their_columns_and_name_the_linked_batches_only_when_there_are_any() {
        let dir = tempfile::tempdir().unwrap();
        let plain = tempfile::tempdir().unwrap();
        let mut batch = fixture::batch();
        let orders = fixture::orders();
        let unlinked = write(plain.path(), &batch, &orders).unwrap();

        // The original's side: one of its orders was retried by a later batch.
        let links = Links {
            retry_of: Vec::new(),
            retried_by: vec![LinkedBatch {
                batch: "payroll.retry1-cdcdcdcdcdcd".into(),
                batch_id: "cd".repeat(32),
                orders: 1,
            }],
            retried_as: BTreeMap::from([(orders[2].order_id.to_string(), format!("{}~r1", orders[2].order_id))]),
        };
        let write_linked = |dir: &Path, batch: &BatchRecord, links: &Links| {
            write_batch_reports(
                dir,
                batch,
                &mut |visit| orders.iter().try_for_each(&mut *visit),
                &fixture::explorers(),
                links,
                fixture::CREATED_MS + 120_000,
            )
            .unwrap()
        };
        let paths = write_linked(dir.path(), &batch, &links);
        let csv = fs::read_to_string(&paths.result_csv).unwrap();
        let plain_csv = fs::read_to_string(&unlinked.result_csv).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next().unwrap(), format!("{},retried_as", COLUMNS.join(",")));
        for (linked, plain) in lines.zip(plain_csv.lines().skip(1)) {
            let retried = linked.strip_prefix(plain).expect("the same row with one more cell");
            if plain.starts_with(&format!("{},{},", orders[2].line, orders[2].order_id)) {
                assert_eq!(retried, format!(",{}~r1", orders[2].order_id));
            } else {
                assert_eq!(retried, ",");
            }
        }
        let summary: serde_json::Value = serde_json::from_slice(&fs::read(&paths.summary_json).unwrap()).unwrap();
        assert_eq!(
            summary["batch"]["retried_by"][0]["batch"],
            "payroll.retry1-cdcdcdcdcdcd"
        );
        assert_eq!(summary["batch"]["retried_by"][0]["orders"], 1);
        assert!(summary["batch"].get("retry_of").is_none());
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&paths.result_json).unwrap()).unwrap();
        assert_eq!(json["batch"]["retried_by"][0]["orders"], 1);
        assert!(
            json["rows"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r.get("retried_as").is_some())
        );
        assert!(json["rows"][0].get("original_order_id").is_none());

        // The retry's side: its rows name what they retry.
        batch.retry_of = Some(crate::model::record::RetryOf {
            orders: 1,
            batches: Vec::new(),
        });
        let mut retry_orders = orders.clone();
        retry_orders[0].input.original_order_id = "pay-000".into();
        let links = Links {
            retry_of: vec![LinkedBatch {
                batch: "payroll-efefefefefef".into(),
                batch_id: "ef".repeat(32),
                orders: 1,
            }],
            ..Links::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let paths = write_batch_reports(
            dir.path(),
            &batch,
            &mut |visit| retry_orders.iter().try_for_each(&mut *visit),
            &fixture::explorers(),
            &links,
            0,
        )
        .unwrap();
        let csv = fs::read_to_string(&paths.result_csv).unwrap();
        assert!(
            csv.starts_with(&format!("{},original_order_id\n", COLUMNS.join(","))),
            "{csv}"
        );
        assert!(csv.lines().nth(1).unwrap().ends_with(",pay-000"), "{csv}");
        let summary: serde_json::Value = serde_json::from_slice(&fs::read(&paths.summary_json).unwrap()).unwrap();
        assert_eq!(summary["batch"]["retry_of"][0]["batch_id"], "ef".repeat(32));
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&paths.result_json).unwrap()).unwrap();
        assert_eq!(json["rows"][0]["original_order_id"], "pay-000");
        assert!(json["rows"][1]["original_order_id"].is_null());
    }

    #[test]
    fn rewriting_replaces_the_reports() {
        let dir = tempfile::tempdir().unwrap();
        let batch = fixture::batch();
        let mut orders = fixture::orders();
        write(dir.path(), &batch, &orders).unwrap();
        orders[4].state = crate::model::state::OrderState::Success;
        let paths = write(dir.path(), &batch, &orders).unwrap();
        let summary: serde_json::Value = serde_json::from_slice(&fs::read(&paths.summary_json).unwrap()).unwrap();
        assert_eq!(summary["final"], true);
        assert_eq!(names(dir.path()).len(), 3);
    }

    #[test]
    fn an_incomplete_or_foreign_order_sequence_replaces_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let batch = fixture::batch();
        let orders = fixture::orders();
        let paths = write(dir.path(), &batch, &orders).unwrap();
        let before = fs::read(&paths.result_csv).unwrap();

        let mut missing_last = orders.clone();
        missing_last.pop();
        let mut gap = orders.clone();
        gap.remove(2);
        let mut foreign = orders.clone();
        foreign[1].batch_id = "other".into();
        let mut out_of_order = orders.clone();
        out_of_order[3].line = 3;
        for (what, bad) in [
            ("missing", missing_last),
            ("gap", gap),
            ("foreign", foreign),
            ("lines", out_of_order),
        ] {
            let err = write(dir.path(), &batch, &bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
            assert_eq!(fs::read(&paths.result_csv).unwrap(), before, "{what}");
            assert_eq!(names(dir.path()).len(), 3, "{what}: no temporary file is left behind");
        }
    }

    #[test]
    fn an_error_from_the_store_replaces_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let batch = fixture::batch();
        let orders = fixture::orders();
        let err = write_batch_reports(
            dir.path(),
            &batch,
            &mut |visit| {
                visit(&orders[0])?;
                Err(io::Error::other("store read failed"))
            },
            &BTreeMap::new(),
            &Links::default(),
            0,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "store read failed");
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn a_batch_name_that_is_not_a_plain_file_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["", ".", "..", "../escape", "a/b", "a\\b"] {
            let mut batch = fixture::batch();
            batch.name = name.into();
            let err = write(dir.path(), &batch, &fixture::orders()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        assert!(names(dir.path()).is_empty());
    }
}
