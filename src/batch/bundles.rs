//! How a batch's accepted rows are grouped into CCPayment batch withdrawals (bundles) when
//! `withdraw_mode = "batch"`: by coin and chain, in file order, at most 500 tasks each; rows
//! held for the recipient review in bundles of their own (they wait for another approval).
//!
//! A row goes on a single create instead when a task cannot carry it:
//! - a Cwallet transfer (the batch family pays chain addresses only);
//! - a memo longer than a task's 16 characters;
//! - a row whose recipient pays the network fee (`merchant_pays_fee = false`): a task has no
//!   fee flag, and how CCPayment charges fees in a batch is undocumented (ccpayment-api.md §5,
//!   R14), so only rows whose fee the merchant pays anyway — which the plan's balance check
//!   already reserves — go into bundles.
//!
//! The plan shows the grouping and the records put each order in its bundle; both walk the rows
//! through the one [`Grouper`], so they agree. Pure.

use std::collections::HashMap;

use serde::Serialize;

use super::catalogue::{Catalogue, ChainRef};
use super::plan::Verdict;
use super::validate::{Row, Validated};
use crate::api::types::{BATCH_RECORD_PAGE_SIZE, MAX_TASK_MEMO_CHARS, MAX_TASKS_PER_REQUEST};
use crate::model::bundle::{BundleSettings, Execution};

/// Why an accepted row stays on a single create in batch mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Single {
    Cwallet,
    LongMemo,
    RecipientPaysFee,
}

/// The bundles of a batch, as the plan shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundlePlan {
    /// What the batch record keeps.
    #[serde(skip)]
    pub settings: BundleSettings,
    /// CCPayment's `mode`: `single` or `batch`.
    pub execution: &'static str,
    pub confirm_delay_secs: u64,
    pub parts: Vec<BundlePart>,
    /// Rows that go in bundles.
    pub bundled_rows: u64,
    /// Accepted rows kept on single creates, and why.
    pub single_cwallet: u64,
    pub single_long_memo: u64,
    pub single_recipient_pays_fee: u64,
}

/// One bundle of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundlePart {
    /// From 1.
    pub part: u32,
    pub coin: String,
    pub coin_id: u64,
    pub chain: String,
    pub tasks: u32,
    /// Its rows wait for the recipient review.
    pub review: bool,
}

/// Where an accepted row goes: a bundle part and its seq there, or a single create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Task { part: u32, seq: u32 },
    Single(Single),
}

/// The group a row belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    coin: usize,
    chain: u16,
    review: bool,
}

/// Walks accepted rows in file order and places each one.
#[derive(Debug, Default)]
pub struct Grouper {
    /// The open part of each group and its tasks so far.
    open: HashMap<Key, (u32, u32)>,
    parts: Vec<BundlePart>,
}

impl Grouper {
    /// Places the next accepted row (call in file order, once per accepted row).
    pub fn place(&mut self, row: &Row, v: &Validated, cat: &Catalogue, verdict: &Verdict) -> Place {
        let (Some(coin), Some(chain)) = (row.coin, row.chain) else {
            return Place::Single(Single::Cwallet);
        };
        let ChainRef::Chain(chain_index) = chain else {
            return Place::Single(Single::Cwallet);
        };
        if v.memo(row).chars().count() > MAX_TASK_MEMO_CHARS {
            return Place::Single(Single::LongMemo);
        }
        if !row.merchant_pays_fee {
            return Place::Single(Single::RecipientPaysFee);
        }
        let key = Key {
            coin: usize::from(coin.0),
            chain: chain_index,
            review: matches!(verdict, Verdict::Review { .. }),
        };
        let next_part = u32::try_from(self.parts.len() + 1).unwrap_or(u32::MAX);
        let entry = self.open.entry(key.clone()).or_insert((0, 0));
        if entry.0 == 0 || entry.1 as usize >= MAX_TASKS_PER_REQUEST {
            *entry = (next_part, 0);
            self.parts.push(BundlePart {
                part: next_part,
                coin: cat.coin(coin).symbol.clone(),
                coin_id: cat.coin(coin).coin_id,
                chain: cat.chain_name(chain).to_owned(),
                tasks: 0,
                review: key.review,
            });
        }
        entry.1 += 1;
        let (part, seq) = *entry;
        if let Some(p) = self.parts.get_mut(part as usize - 1) {
            p.tasks = seq;
        }
        Place::Task { part, seq }
    }

    /// The parts placed so far, in part order.
    pub fn parts(&self) -> &[BundlePart] {
        &self.parts
    }

    /// The plan's view of the grouping.
    pub fn into_plan(self, settings: BundleSettings, singles: &HashMap<Single, u64>) -> BundlePlan {
        let count = |s: Single| singles.get(&s).copied().unwrap_or(0);
        BundlePlan {
            settings,
            execution: settings.execution.as_str(),
            confirm_delay_secs: settings.confirm_delay_secs,
            bundled_rows: self.parts.iter().map(|p| u64::from(p.tasks)).sum(),
            parts: self.parts,
            single_cwallet: count(Single::Cwallet),
            single_long_memo: count(Single::LongMemo),
            single_recipient_pays_fee: count(Single::RecipientPaysFee),
        }
    }
}

/// Whether a verdict makes the row an order (the rows [`Grouper::place`] is called for).
pub fn is_accepted(verdict: &Verdict) -> bool {
    matches!(
        verdict,
        Verdict::Payable | Verdict::Held { .. } | Verdict::Review { .. }
    )
}

/// Groups every accepted row of a batch.
pub fn plan(v: &Validated, cat: &Catalogue, verdicts: &[&Verdict], settings: BundleSettings) -> BundlePlan {
    let mut grouper = Grouper::default();
    let mut singles: HashMap<Single, u64> = HashMap::new();
    for (row, verdict) in v.rows.iter().zip(verdicts) {
        if !is_accepted(verdict) {
            continue;
        }
        if let Place::Single(why) = grouper.place(row, v, cat, verdict) {
            *singles.entry(why).or_default() += 1;
        }
    }
    grouper.into_plan(settings, &singles)
}

/// The requests one bundle of `tasks` takes when nothing goes wrong: the apply, the confirm,
/// about two questions about the batch while it runs, and its task list read once at the end.
pub fn requests_for(tasks: u32) -> u64 {
    let pages = u64::from(tasks).div_ceil(BATCH_RECORD_PAGE_SIZE as u64).max(1);
    2 + 2 + pages
}

/// The settings for `execution` and a delay (clamped to CCPayment's 0–3600).
pub fn settings(execution: Execution, confirm_delay_secs: u64) -> BundleSettings {
    BundleSettings {
        execution,
        confirm_delay_secs: confirm_delay_secs.min(crate::api::types::MAX_CONFIRM_DELAY_SECS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::catalogue::tests::sample;
    use crate::batch::validate::{NoKnownOrders, validate_csv};
    use crate::model::ApiGeneration;

    const TRON: &str = "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K";
    const EVM: &str = "0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d";
    const XRP: &str = "rsGgQno3NYMPso4zJyzxijJCMTEgcQh6nT";

    fn grouped(text: &str) -> BundlePlan {
        let cat = sample("Normal");
        let v = validate_csv(&cat, ApiGeneration::V2, true, text, &NoKnownOrders);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        let verdicts: Vec<Verdict> = v.rows.iter().map(|_| Verdict::Payable).collect();
        let refs: Vec<&Verdict> = verdicts.iter().collect();
        plan(&v, &cat, &refs, settings(Execution::Batch, 60))
    }

    #[test]
    fn rows_group_by_coin_and_chain_in_parts_of_at_most_500() {
        let mut text = String::from("order_id,recipient,coin,chain,amount\n");
        for i in 0..1_201 {
            let (to, chain) = if i % 3 == 0 { (EVM, "POLYGON") } else { (TRON, "TRX") };
            text.push_str(&format!("o-{i:05},{to},USDT,{chain},1\n"));
        }
        let plan = grouped(&text);
        let summary: Vec<(u32, &str, u32)> = plan.parts.iter().map(|p| (p.part, p.chain.as_str(), p.tasks)).collect();
        // 801 TRX rows: 500 + 301; 401 POLYGON rows: 401. Parts are numbered as they open.
        assert_eq!(summary, vec![(1, "POLYGON", 401), (2, "TRX", 500), (3, "TRX", 300)]);
        assert_eq!(plan.bundled_rows, 1_201);
        assert_eq!(plan.execution, "batch");
    }

    #[test]
    fn rows_a_task_cannot_carry_stay_single() {
        let text = format!(
            "order_id,recipient,coin,chain,amount,memo,merchant_pays_fee\n\
             a-001,{TRON},USDT,TRX,1,,true\n\
             a-002,9558861,USDT,CWALLET,1,,true\n\
             a-003,{TRON},USDT,TRX,1,,false\n\
             a-004,{XRP},XRP,XRP,1,12345678901234567,true\n\
             a-005,{XRP},XRP,XRP,1,1234567890123456,true\n"
        );
        let plan = grouped(&text);
        assert_eq!(plan.bundled_rows, 2);
        assert_eq!(plan.parts.len(), 2, "USDT on TRX and XRP on XRP");
        assert_eq!(
            (
                plan.single_cwallet,
                plan.single_recipient_pays_fee,
                plan.single_long_memo
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn the_estimate_counts_pages_of_the_task_list() {
        assert_eq!(requests_for(1), 5);
        assert_eq!(requests_for(100), 5);
        assert_eq!(requests_for(500), 9);
    }
}
