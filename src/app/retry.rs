//! `ccpayout retry BATCH`: the rows of a finished batch that ended failed or rejected, as a new
//! batch file of new orders, each under its retry id (`ORDER~r1`, see [`crate::model::retry`])
//! with the id it retries in `original_order_id`.
//!
//! What is retried, and what is not:
//!
//! - **Failed** (CCPayment took the payout and it failed, refunded) and **rejected** (CCPayment
//!   refused it permanently, nothing was created) orders: nothing was paid, and paying again is
//!   what the operator asks for.
//! - Not **refused** rows (the file or the plan refused them: a wrong address, a policy limit)
//!   nor **duplicate** rows (already in an earlier batch): the file must be fixed, or the row was
//!   paid; a retry would repeat the mistake. Not **cancelled** orders: someone cancelled them.
//!   Not **successful** ones, of course.
//! - Not an order that another batch retries already: its retry is retried instead (that is
//!   how `~r2` comes about), so one failed row is never paid by two retries.
//! - Not while the batch has orders that are not final: an order in flight may still succeed.
//!
//! The one operator answers `retry` here for both back ends ([`retry`]: the words and the rows);
//! whoever asked writes the file ([`write_file`]), so a daemon never writes into the operator's
//! folders. The retry file goes through `check`, the preflight, the policy and approval like any
//! other batch file; nothing here sends anything.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::operator::Reply;
use super::reports::{link_lines, links};
use crate::batch::parse::Format;
use crate::batch::retry::{retry_file_name, write_rows};
use crate::model::record::{BatchRecord, InputRow};
use crate::model::retry::{RetryIdError, retry_id};
use crate::model::state::{OrderState, StateKind};
use crate::store::{Store, StoreError};
use crate::util::atomic::write_new_atomic_with;

/// How many rows each list of the answer shows; the file has them all.
const SHOWN: usize = 20;

/// The retry file of a batch: what the operator hands to whoever writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryFile {
    /// The batch retried, by name.
    pub batch: String,
    /// Its format, as its record keeps it (`CSV`, `JSON`, `JSON Lines`): the file's too.
    pub format: String,
    /// The file's name when no other is asked for (`payroll.retry1.csv`).
    pub file_name: String,
    /// The rows, in the batch's order: each failed or rejected row under its retry id, with
    /// the id it retries in `original_order_id`.
    pub rows: Vec<InputRow>,
}

impl RetryFile {
    /// The file's format.
    pub fn format(&self) -> Option<Format> {
        Format::from_name(&self.format)
    }
}

/// A failed or rejected order of the batch, and what becomes of it.
struct Candidate {
    line: u64,
    order_id: String,
    why: String,
}

/// The answer to `retry` for `batch`: the words, and the rows of its retry file when there are
/// any. Refused (exit 1) while the batch has orders that are not final, and when a row could
/// not be given a retry id (the others are still in the file).
pub fn retry(store: &Store, batch: &BatchRecord) -> Result<Reply, StoreError> {
    let counts = store.counts(Some(&batch.batch_id))?;
    let open: u64 = counts.iter().filter(|(k, _)| !k.is_final()).map(|(_, n)| n).sum();
    if open > 0 {
        return Ok(Reply::refused(format!(
            "batch {} is not finished: {} not final yet; retry it once every order has ended (`ccpayout status {}`)\n",
            batch.name,
            plural(open, "of its orders is", "of its orders are"),
            batch.name
        )));
    }
    let links = links(store, batch)?;
    let Some(format) = Format::from_name(&batch.format) else {
        return Ok(Reply::error(format!(
            "batch {} has the format {:?}, which no retry file can be written in\n",
            batch.name, batch.format
        )));
    };

    let mut rows: Vec<InputRow> = Vec::new();
    let mut retried: Vec<String> = Vec::new();
    let mut too_long: Vec<Candidate> = Vec::new();
    let mut already: Vec<String> = Vec::new();
    let (mut failed, mut rejected) = (0u64, 0u64);
    store.for_each_batch_order(&batch.batch_id, &mut |order| {
        let why = match &order.state {
            OrderState::Failed { reason } => format!("failed: {reason}"),
            OrderState::Rejected { code, reason } => match code {
                Some(code) => format!("rejected: {code} {reason}"),
                None => format!("rejected: {reason}"),
            },
            _ => return Ok(()),
        };
        let candidate = Candidate {
            line: order.line,
            order_id: order.order_id.to_string(),
            why,
        };
        if let Some(retry) = links.retried_as.get(order.order_id.as_str()) {
            already.push(format!(
                "  line {} {} → {retry} ({})",
                candidate.line, candidate.order_id, candidate.why
            ));
            return Ok(());
        }
        match retry_id(&order.order_id) {
            Ok(id) => {
                if order.kind() == StateKind::Failed {
                    failed += 1;
                } else {
                    rejected += 1;
                }
                retried.push(format!(
                    "  line {} {} → {id} ({})",
                    candidate.line, candidate.order_id, candidate.why
                ));
                rows.push(InputRow {
                    order_id: id,
                    // The immediate parent: the chain back to the first order is followed
                    // through each batch's reports (`retried_as`, `original_order_id`).
                    original_order_id: order.order_id.to_string(),
                    ..order.input.clone()
                });
            }
            Err(RetryIdError::TooLong { chars, .. }) => too_long.push(Candidate {
                why: format!(
                    "its retry id would have {chars} characters, over CCPayment's 64; pay it again by hand under a shorter order_id ({})",
                    candidate.why
                ),
                ..candidate
            }),
        }
        Ok(())
    })?;

    let mut text = String::new();
    if rows.is_empty() {
        let _ = writeln!(
            text,
            "batch {}: nothing to retry{}",
            batch.name,
            if too_long.is_empty() && already.is_empty() {
                ": no order failed or was rejected"
            } else {
                ""
            }
        );
    } else {
        let _ = writeln!(
            text,
            "batch {}: {} to retry ({failed} failed, {rejected} rejected), each as a new order:",
            batch.name,
            plural(rows.len() as u64, "order", "orders")
        );
        list(&mut text, &retried);
    }
    if !too_long.is_empty() {
        let _ = writeln!(text, "not retried, no retry id fits ({}):", too_long.len());
        let lines: Vec<String> = too_long
            .iter()
            .map(|c| format!("  line {} {}: {}", c.line, c.order_id, c.why))
            .collect();
        list(&mut text, &lines);
    }
    if !already.is_empty() {
        let _ = writeln!(
            text,
            "retried already ({}; retry the batch of the retry instead):",
            already.len()
        );
        list(&mut text, &already);
    }
    let left = left_alone(batch, counts.get(&StateKind::Cancelled).copied().unwrap_or(0));
    if !left.is_empty() {
        let _ = writeln!(text, "left for a person: {left}");
    }
    text.push_str(&link_lines(&links, ""));

    let mut reply = if too_long.is_empty() {
        Reply::ok(text)
    } else {
        Reply::refused(text)
    };
    if !rows.is_empty() {
        reply.retry = Some(Box::new(RetryFile {
            batch: batch.name.clone(),
            format: batch.format.clone(),
            file_name: retry_file_name(&batch.source, format),
            rows,
        }));
    }
    Ok(reply)
}

/// Appends `lines`, the first [`SHOWN`] of them and how many more.
fn list(text: &mut String, lines: &[String]) {
    for line in lines.iter().take(SHOWN) {
        let _ = writeln!(text, "{line}");
    }
    if lines.len() > SHOWN {
        let _ = writeln!(text, "  … and {} more", lines.len() - SHOWN);
    }
}

/// What a retry never takes, counted: refused and duplicate rows, cancelled orders.
fn left_alone(batch: &BatchRecord, cancelled: u64) -> String {
    let duplicates = batch.refused.iter().filter(|r| r.duplicate_of_batch.is_some()).count();
    let refused = batch.refused.len() - duplicates;
    let mut parts = Vec::new();
    if refused > 0 {
        parts.push(format!(
            "{} (fix them in a new file)",
            plural(refused as u64, "refused row", "refused rows")
        ));
    }
    if duplicates > 0 {
        parts.push(format!(
            "{} (paid by an earlier batch)",
            plural(duplicates as u64, "duplicate row", "duplicate rows")
        ));
    }
    if cancelled > 0 {
        parts.push(format!(
            "{} (cancelled on purpose)",
            plural(cancelled, "cancelled order", "cancelled orders")
        ));
    }
    parts.join(", ")
}

/// `n` and the noun in its number.
pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Writes `file` to `path` in its format, atomically, never replacing an existing file
/// ([`io::ErrorKind::AlreadyExists`]).
pub fn write_file(path: &Path, file: &RetryFile) -> io::Result<()> {
    let format = file.format().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no batch file format is called {:?}", file.format),
        )
    })?;
    write_new_atomic_with(path, |out| write_rows(format, &file.rows, out))
}
