//! The batch summary: how many rows ended how, and exact totals per coin and status.
//!
//! Totals are sums of the canonical amount strings (`amount_sent`) and of the fees, in
//! [`Decimal`], never floats, and printed with [`crate::rules::amount::plain`]. A sum that `Decimal`
//! could only round (more than 28 significant digits) or a fee CCPayment wrote in a form that is
//! not a plain decimal is not guessed at: the row is listed under `unsummed`, so a total is
//! either exact or visibly incomplete. Refused and duplicate rows are counted but have no amount
//! (the batch record keeps none for them).
//!
//! [`Summary`] is built from the same [`ReportRow`]s as the result files, so the summary cannot
//! disagree with them. Building it is pure; [`summary_json`] writes only to the writer given.

use std::collections::BTreeMap;
use std::io::{self, Write};

use rust_decimal::Decimal;
use serde::Serialize;
use serde::ser::SerializeMap;

use super::result::BatchHeader;
use super::row::{CoinKey, Links, ReportRow, RowStatus};
use crate::model::record::BatchRecord;
use crate::rules::amount::{parse_api_decimal, plain};
use crate::util::time::rfc3339_ms;

/// At most this many unsummed rows are listed (all are counted): a systematic problem must not
/// turn the summary into a second copy of the result file.
pub const MAX_UNSUMMED_LISTED: usize = 100;

/// Counts and totals over a batch's report rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    counts: [u64; RowStatus::ALL.len()],
    coins: BTreeMap<CoinKey, CoinTotals>,
    unsummed_count: u64,
    unsummed: Vec<Unsummed>,
}

/// One coin's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoinTotals {
    /// The coin's symbol as the file wrote it (upper-cased), or its id or token id if no row named
    /// it by symbol.
    pub label: String,
    label_is_symbol: bool,
    pub by_status: BTreeMap<RowStatus, StatusTotals>,
}

/// Rows, amount and fees of one coin in one status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusTotals {
    pub rows: u64,
    /// Sum of `amount_sent`.
    pub amount: Decimal,
    /// Sum of fees by fee coin.
    pub fees: BTreeMap<String, Decimal>,
}

/// A value that is not in the totals, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsummed {
    pub line: u64,
    pub order_id: String,
    pub status: RowStatus,
    /// `amount_sent` or `fee`.
    pub field: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl Summary {
    pub fn new() -> Summary {
        Summary::default()
    }

    /// The summary of `rows`.
    pub fn of(rows: impl IntoIterator<Item = impl std::borrow::Borrow<ReportRow>>) -> Summary {
        let mut summary = Summary::new();
        for row in rows {
            summary.add(row.borrow());
        }
        summary
    }

    /// Counts a row and adds its amount and fee to its coin and status.
    pub fn add(&mut self, row: &ReportRow) {
        self.counts[row.status.index()] += 1;
        let Some(key) = &row.coin_key else {
            return;
        };
        let coin = self.coins.entry(key.clone()).or_insert_with(|| CoinTotals {
            label: match key {
                CoinKey::Id(id) => id.to_string(),
                CoinKey::Token(token) => token.clone(),
            },
            ..CoinTotals::default()
        });
        if !coin.label_is_symbol
            && let Some(symbol) = symbol_of(&row.coin)
        {
            coin.label = symbol;
            coin.label_is_symbol = true;
        }
        let totals = coin.by_status.entry(row.status).or_default();
        totals.rows += 1;

        let mut problems: Vec<(&'static str, &str, &'static str)> = Vec::new();
        match parse_api_decimal(&row.amount_sent) {
            Some(amount) if !row.amount_sent.is_empty() => {
                if !add_exact(&mut totals.amount, amount) {
                    problems.push((
                        "amount_sent",
                        &row.amount_sent,
                        "the total would exceed exact decimal precision",
                    ));
                }
            }
            _ => problems.push(("amount_sent", &row.amount_sent, "not a plain decimal")),
        }
        if !row.fee.is_empty() || !row.fee_coin.is_empty() {
            match parse_api_decimal(&row.fee) {
                // A zero fee in no named coin adds nothing anywhere.
                Some(fee) if row.fee_coin.is_empty() && fee.is_zero() => {}
                Some(_) if row.fee_coin.is_empty() => problems.push(("fee", &row.fee, "the fee names no coin")),
                Some(fee) => {
                    let total = totals.fees.entry(row.fee_coin.clone()).or_default();
                    if !add_exact(total, fee) {
                        problems.push(("fee", &row.fee, "the total would exceed exact decimal precision"));
                    }
                }
                None => problems.push(("fee", &row.fee, "not a plain decimal")),
            }
        }
        for (field, value, reason) in problems {
            self.unsummed_count += 1;
            if self.unsummed.len() < MAX_UNSUMMED_LISTED {
                self.unsummed.push(Unsummed {
                    line: row.line,
                    order_id: row.order_id.clone(),
                    status: row.status,
                    field,
                    value: value.to_owned(),
                    reason,
                });
            }
        }
    }

    /// Rows with `status`.
    pub fn count(&self, status: RowStatus) -> u64 {
        self.counts[status.index()]
    }

    /// All rows.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Every row is final: nothing in the batch will change any more.
    pub fn is_final(&self) -> bool {
        RowStatus::ALL.into_iter().all(|s| s.is_final() || self.count(s) == 0)
    }

    /// The coins, ordered by label.
    pub fn coins(&self) -> Vec<(&CoinKey, &CoinTotals)> {
        let mut coins: Vec<_> = self.coins.iter().collect();
        coins.sort_by(|a, b| a.1.label.cmp(&b.1.label).then_with(|| a.0.cmp(b.0)));
        coins
    }

    /// The totals of one coin, by key.
    pub fn coin(&self, key: &CoinKey) -> Option<&CoinTotals> {
        self.coins.get(key)
    }

    /// How many values are missing from the totals, and the first [`MAX_UNSUMMED_LISTED`].
    pub fn unsummed(&self) -> (u64, &[Unsummed]) {
        (self.unsummed_count, &self.unsummed)
    }
}

/// Adds `x` to `total` if the result is exact. `Decimal` rounds silently when a sum needs more
/// than 28 significant digits, which shows as a result scale below the operands'.
fn add_exact(total: &mut Decimal, x: Decimal) -> bool {
    match total.checked_add(x) {
        Some(sum) if sum.scale() >= total.scale().max(x.scale()) => {
            *total = sum;
            true
        }
        _ => false,
    }
}

/// A coin symbol from the file's `coin` cell; numeric coin ids and empty cells are not symbols.
fn symbol_of(coin: &str) -> Option<String> {
    let coin = coin.trim();
    (!coin.is_empty() && !coin.bytes().all(|b| b.is_ascii_digit())).then(|| coin.to_ascii_uppercase())
}

/// Writes the summary JSON (pretty-printed: it is small and read by people too).
pub fn summary_json(batch: &BatchRecord, summary: &Summary, now_ms: i64, out: &mut dyn Write) -> io::Result<()> {
    summary_json_linked(batch, &Links::default(), summary, now_ms, out)
}

/// [`summary_json`] of a batch linked to others by retries as `links` says: its `batch` object
/// names the batches it retries (`retry_of`) and the batches that retry it (`retried_by`).
pub fn summary_json_linked(
    batch: &BatchRecord,
    links: &Links,
    summary: &Summary,
    now_ms: i64,
    out: &mut dyn Write,
) -> io::Result<()> {
    let view = SummaryView {
        batch: BatchHeader::linked(batch, links),
        generated_at: rfc3339_ms(now_ms),
        counts: CountsView(summary),
        r#final: summary.is_final(),
        coins: summary
            .coins()
            .into_iter()
            .map(|(key, totals)| CoinView {
                coin: &totals.label,
                coin_id: match key {
                    CoinKey::Id(id) => Some(*id),
                    CoinKey::Token(_) => None,
                },
                token_id: match key {
                    CoinKey::Id(_) => None,
                    CoinKey::Token(token) => Some(token),
                },
                by_status: totals
                    .by_status
                    .iter()
                    .map(|(status, t)| {
                        let fees = t.fees.iter().map(|(coin, fee)| (coin.as_str(), plain(*fee))).collect();
                        (
                            *status,
                            StatusView {
                                rows: t.rows,
                                amount: plain(t.amount),
                                fees,
                            },
                        )
                    })
                    .collect(),
            })
            .collect(),
        unsummed: UnsummedView {
            count: summary.unsummed_count,
            rows: &summary.unsummed,
        },
    };
    serde_json::to_writer_pretty(&mut *out, &view)?;
    out.write_all(b"\n")?;
    out.flush()
}

#[derive(Serialize)]
struct SummaryView<'a> {
    batch: BatchHeader<'a>,
    generated_at: String,
    counts: CountsView<'a>,
    r#final: bool,
    coins: Vec<CoinView<'a>>,
    unsummed: UnsummedView<'a>,
}

/// Every status with its count, zeros included (so scripts can read `.counts.failed` without a
/// default), in report order, then `total`.
struct CountsView<'a>(&'a Summary);

impl Serialize for CountsView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(RowStatus::ALL.len() + 1))?;
        for status in RowStatus::ALL {
            map.serialize_entry(status.as_str(), &self.0.count(status))?;
        }
        map.serialize_entry("total", &self.0.total())?;
        map.end()
    }
}

#[derive(Serialize)]
struct CoinView<'a> {
    coin: &'a str,
    coin_id: Option<u64>,
    token_id: Option<&'a str>,
    by_status: BTreeMap<RowStatus, StatusView<'a>>,
}

#[derive(Serialize)]
struct StatusView<'a> {
    rows: u64,
    amount: String,
    fees: BTreeMap<&'a str, String>,
}

#[derive(Serialize)]
struct UnsummedView<'a> {
    count: u64,
    rows: &'a [Unsummed],
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::report::fixture;
    use crate::report::row::report_rows;

    fn summary() -> Summary {
        Summary::of(report_rows(&fixture::batch(), fixture::orders(), &fixture::explorers()))
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn counts_every_row_by_status() {
        let s = summary();
        let expected = [
            (RowStatus::Success, 3),
            (RowStatus::Failed, 1),
            (RowStatus::Rejected, 1),
            (RowStatus::Refused, 2),
            (RowStatus::Duplicate, 1),
            (RowStatus::Submitted, 1),
        ];
        for status in RowStatus::ALL {
            let n = expected.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
            assert_eq!(s.count(status), n, "{status}");
        }
        assert_eq!(s.total(), 9);
        assert!(!s.is_final(), "one order is still submitted");
    }

    #[test]
    fn totals_are_exact_per_coin_and_status_with_fees_in_their_own_coin() {
        let s = summary();
        let usdt = s.coin(&CoinKey::Id(1280)).unwrap();
        // `USDT`, `usdt` and `1280` in the file are one coin, named by its symbol.
        assert_eq!(usdt.label, "USDT");
        let success = &usdt.by_status[&RowStatus::Success];
        assert_eq!(success.rows, 3);
        // 0.1 + 0.2 + 0.2: exactly 0.5, which binary floats do not give.
        assert_eq!(plain(success.amount), "0.5");
        assert_eq!(
            success.fees,
            BTreeMap::from([("MATIC".to_owned(), dec("0.000123")), ("USDT".to_owned(), dec("2"))])
        );
        let failed = &usdt.by_status[&RowStatus::Failed];
        assert_eq!((failed.rows, plain(failed.amount)), (1, "5".to_owned()));
        let rejected = &usdt.by_status[&RowStatus::Rejected];
        assert_eq!(
            (rejected.rows, plain(rejected.amount), rejected.fees.len()),
            (1, "2.5".to_owned(), 0)
        );
        assert!(!usdt.by_status.contains_key(&RowStatus::Refused));

        let eth = s.coin(&CoinKey::Id(1)).unwrap();
        assert_eq!(eth.label, "ETH");
        assert_eq!(
            plain(eth.by_status[&RowStatus::Submitted].amount),
            "0.000000000000000001"
        );
        assert_eq!(
            s.coins().iter().map(|(_, c)| c.label.as_str()).collect::<Vec<_>>(),
            ["ETH", "USDT"]
        );
        assert_eq!(s.unsummed(), (0, &[][..]));
    }

    #[test]
    fn a_batch_is_final_when_no_row_can_change() {
        let mut orders = fixture::orders();
        orders[4].state = crate::model::state::OrderState::Success;
        let s = Summary::of(report_rows(&fixture::batch(), orders, &BTreeMap::new()));
        assert!(s.is_final());
        assert!(Summary::new().is_final());
    }

    #[test]
    fn a_sum_that_would_round_is_not_taken() {
        let mut total = dec("12345678901234567890123456");
        assert!(!add_exact(&mut total, dec("0.123456789")));
        assert_eq!(total, dec("12345678901234567890123456"));
        assert!(add_exact(&mut total, dec("4")));
        assert_eq!(total, dec("12345678901234567890123460"));
        let mut max = Decimal::MAX;
        assert!(!add_exact(&mut max, Decimal::ONE));
    }

    #[test]
    fn values_that_cannot_be_summed_are_listed_not_guessed() {
        let rows: Vec<ReportRow> = report_rows(&fixture::batch(), fixture::orders(), &BTreeMap::new()).collect();
        let mut big = rows[0].clone();
        big.amount_sent = "99999999999999999999.12345678".into();
        let mut small = rows[0].clone();
        small.amount_sent = "0.000000001".into();
        small.fee = "1e-3".into();
        let mut nameless = rows[0].clone();
        nameless.fee_coin = String::new();
        let mut zero = rows[0].clone();
        zero.fee = "0".into();
        zero.fee_coin = String::new();
        let s = Summary::of([big, small, nameless, zero]);
        let (count, listed) = s.unsummed();
        assert_eq!(count, 3);
        let what: Vec<(&str, &str, &str)> = listed.iter().map(|u| (u.field, u.value.as_str(), u.reason)).collect();
        assert_eq!(
            what,
            [
                (
                    "amount_sent",
                    "0.000000001",
                    "the total would exceed exact decimal precision"
                ),
                ("fee", "1e-3", "not a plain decimal"),
                ("fee", "0.000123", "the fee names no coin"),
            ]
        );
        let success = &s.coin(&CoinKey::Id(1280)).unwrap().by_status[&RowStatus::Success];
        assert_eq!(success.rows, 4);
        // `nameless` and `zero` add 0.1 each; `small` would have made the total round.
        assert_eq!(plain(success.amount), "99999999999999999999.32345678");
    }

    #[test]
    fn the_summary_json_has_counts_final_coins_and_exact_strings() {
        let batch = fixture::batch();
        let mut out = Vec::new();
        summary_json(&batch, &summary(), fixture::CREATED_MS + 120_000, &mut out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["batch"]["batch_id"], fixture::BATCH_ID);
        assert_eq!(json["batch"]["plan_digest"], "d".repeat(64));
        assert_eq!(json["generated_at"], "2026-11-21T10:34:40.123Z");
        assert_eq!(json["final"], false);
        let counts = &json["counts"];
        assert_eq!(
            (counts["success"].as_u64(), counts["refused"].as_u64()),
            (Some(3), Some(2))
        );
        assert_eq!(
            (counts["cancelled"].as_u64(), counts["total"].as_u64()),
            (Some(0), Some(9))
        );
        assert_eq!(counts.as_object().unwrap().len(), RowStatus::ALL.len() + 1);

        let coins = json["coins"].as_array().unwrap();
        assert_eq!(coins.len(), 2);
        assert_eq!(
            (coins[0]["coin"].as_str(), coins[0]["coin_id"].as_u64()),
            (Some("ETH"), Some(1))
        );
        let usdt = &coins[1];
        assert_eq!(usdt["coin"], "USDT");
        assert!(usdt["token_id"].is_null());
        assert_eq!(
            usdt["by_status"]["success"],
            serde_json::json!({"rows": 3, "amount": "0.5", "fees": {"MATIC": "0.000123", "USDT": "2"}})
        );
        assert_eq!(
            usdt["by_status"]["failed"],
            serde_json::json!({"rows": 1, "amount": "5", "fees": {"USDT": "1"}})
        );
        assert_eq!(
            usdt["by_status"]["rejected"],
            serde_json::json!({"rows": 1, "amount": "2.5", "fees": {}})
        );
        assert_eq!(json["unsummed"], serde_json::json!({"count": 0, "rows": []}));
        // Amounts are JSON strings, never numbers.
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""amount": "0.000000000000000001""#), "{text}");
    }
}
