//! `ccpayout recipients`: the recipient registry as a table for a person, or CSV and JSON for
//! a spreadsheet or a script. The CSV is formula-safe like the result CSV.

use std::fmt::Write as _;

use crate::report::result::formula_safe;
use crate::store::{Store, StoreError};
use crate::util::time::rfc3339_ms;

/// Why the registry could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no recipients format {0:?}")]
    Format(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The registry in `format` (`table`, `csv` or `json`).
pub fn render(store: &Store, format: &str) -> Result<String, RenderError> {
    let recipients = store.recipients()?;
    let payees = store.payees()?;
    match format {
        "json" => {
            let value = serde_json::json!({ "recipients": recipients, "payees": payees });
            Ok(format!(
                "{}\n",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            ))
        }
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let header = [
                "chain",
                "address",
                "memo",
                "first_paid",
                "last_paid",
                "payouts",
                "last_order_id",
                "payees",
            ];
            let _ = w.write_record(header);
            for r in &recipients {
                let cells = [
                    r.destination.chain.clone(),
                    r.destination.address.clone(),
                    r.destination.memo.clone(),
                    rfc3339_ms(r.first_paid_ms),
                    rfc3339_ms(r.last_paid_ms),
                    r.payouts.to_string(),
                    r.last_order_id.clone(),
                    r.payees.join(" "),
                ];
                let _ = w.write_record(cells.iter().map(|c| formula_safe(c).into_owned()));
            }
            let bytes = w.into_inner().map_err(|e| StoreError::Db(e.to_string()))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        "table" => {
            let mut out = String::new();
            if recipients.is_empty() {
                out.push_str("the recipient registry is empty: no payout has succeeded yet\n");
                return Ok(out);
            }
            let _ = writeln!(out, "{} destinations paid:", recipients.len());
            for r in &recipients {
                let _ = writeln!(
                    out,
                    "  {}  first {}  last {}  {} payout(s){}",
                    r.destination.describe(),
                    rfc3339_ms(r.first_paid_ms),
                    rfc3339_ms(r.last_paid_ms),
                    r.payouts,
                    if r.payees.is_empty() {
                        String::new()
                    } else {
                        format!("  payees: {}", r.payees.join(", "))
                    }
                );
            }
            if !payees.is_empty() {
                let _ = writeln!(out, "{} payees:", payees.len());
                for p in &payees {
                    let before: Vec<String> = p.previous.iter().map(|d| d.describe()).collect();
                    let _ = writeln!(
                        out,
                        "  {}  → {} since {}{}",
                        p.payee,
                        p.destination.describe(),
                        rfc3339_ms(p.since_ms),
                        if before.is_empty() {
                            String::new()
                        } else {
                            format!("  (before: {})", before.join("; "))
                        }
                    );
                }
            }
            Ok(out)
        }
        other => Err(RenderError::Format(other.to_owned())),
    }
}
