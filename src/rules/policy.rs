//! The operator's payout policy: which coins and chains may be paid, how much per order, per
//! batch and per day, and when a batch needs someone's approval.
//!
//! The policy is data from the config; this module only evaluates it. It does no I/O: how much
//! was paid today comes in as a number from whoever knows it (the store, once it exists).

use std::collections::BTreeMap;

use rust_decimal::Decimal;

/// When a batch needs approval before anything is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalRule {
    /// Never; batches go straight to submission.
    #[default]
    Never,
    /// Every batch.
    Always,
    /// Batches whose total in some coin is above that coin's `approval_above`.
    Above,
}

/// Limits for one coin. `None` means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoinPolicy {
    pub max_per_order: Option<Decimal>,
    pub max_per_batch: Option<Decimal>,
    pub max_per_day: Option<Decimal>,
    pub approval_above: Option<Decimal>,
}

/// The whole policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Upper-case coin symbols; empty allows every coin.
    pub allowed_coins: Vec<String>,
    /// Upper-case chain symbols (`CWALLET` included); empty allows every chain.
    pub allowed_chains: Vec<String>,
    pub approval: ApprovalRule,
    /// Keyed by upper-case coin symbol.
    pub coins: BTreeMap<String, CoinPolicy>,
}

/// What the policy says about a whole batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchVerdict {
    /// Reasons the batch may not be paid as it is.
    pub blockers: Vec<String>,
    /// Reasons the batch needs approval (empty: it does not).
    pub approval_reasons: Vec<String>,
}

impl Policy {
    fn coin(&self, symbol: &str) -> Option<&CoinPolicy> {
        self.coins.get(&symbol.to_ascii_uppercase())
    }

    /// Problems with one row: coin or chain not allowed, amount above the per-order limit.
    pub fn check_row(&self, coin: &str, chain: &str, amount: Decimal) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.allowed_coins.is_empty() && !self.allowed_coins.iter().any(|c| c.eq_ignore_ascii_case(coin)) {
            problems.push(format!(
                "the policy does not allow paying {coin} (allowed: {})",
                self.allowed_coins.join(", ")
            ));
        }
        if !self.allowed_chains.is_empty() && !self.allowed_chains.iter().any(|c| c.eq_ignore_ascii_case(chain)) {
            problems.push(format!(
                "the policy does not allow paying on {chain} (allowed: {})",
                self.allowed_chains.join(", ")
            ));
        }
        if let Some(max) = self.coin(coin).and_then(|c| c.max_per_order)
            && amount > max
        {
            problems.push(format!(
                "{amount} {coin} is above the policy's maximum of {max} {coin} per order"
            ));
        }
        problems
    }

    /// The batch-level verdict from the batch's total per coin and what was already paid today
    /// per coin.
    pub fn check_batch(
        &self,
        totals: &BTreeMap<String, Decimal>,
        paid_today: &dyn Fn(&str) -> Decimal,
    ) -> BatchVerdict {
        let mut verdict = BatchVerdict::default();
        if self.approval == ApprovalRule::Always {
            verdict
                .approval_reasons
                .push("the policy requires approval of every batch".to_owned());
        }
        for (coin, &total) in totals {
            let Some(limits) = self.coin(coin) else { continue };
            if let Some(max) = limits.max_per_batch
                && total > max
            {
                verdict.blockers.push(format!(
                    "the batch pays {total} {coin}, above the policy's maximum of {max} {coin} per batch"
                ));
            }
            if let Some(max) = limits.max_per_day {
                let today = paid_today(coin);
                if today + total > max {
                    verdict.blockers.push(format!(
                        "{today} {coin} paid today plus {total} {coin} in this batch is above the policy's maximum of {max} {coin} per day"
                    ));
                }
            }
            if self.approval == ApprovalRule::Above
                && let Some(threshold) = limits.approval_above
                && total > threshold
            {
                verdict.approval_reasons.push(format!(
                    "the batch pays {total} {coin}, above the approval threshold of {threshold} {coin}"
                ));
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn usdt_policy(approval: ApprovalRule) -> Policy {
        Policy {
            allowed_coins: vec!["USDT".into()],
            allowed_chains: vec!["TRX".into(), "CWALLET".into()],
            approval,
            coins: [(
                "USDT".to_owned(),
                CoinPolicy {
                    max_per_order: Some(d("500")),
                    max_per_batch: Some(d("1000")),
                    max_per_day: Some(d("1500")),
                    approval_above: Some(d("800")),
                },
            )]
            .into(),
        }
    }

    #[test]
    fn rows_outside_the_allow_lists_or_above_the_order_limit_are_named() {
        let p = usdt_policy(ApprovalRule::Never);
        assert!(p.check_row("USDT", "TRX", d("500")).is_empty());
        assert_eq!(p.check_row("usdt", "cwallet", d("1")).len(), 0);
        let problems = p.check_row("ETH", "POLYGON", d("1"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(p.check_row("USDT", "TRX", d("500.01"))[0].contains("maximum of 500 USDT per order"));
        assert!(
            Policy::default()
                .check_row("ANY", "ANY", d("1e6".replace("1e6", "1000000").as_str()))
                .is_empty()
        );
    }

    #[test]
    fn batch_and_day_limits_block_and_thresholds_ask_for_approval() {
        let p = usdt_policy(ApprovalRule::Above);
        let totals = |t: &str| BTreeMap::from([("USDT".to_owned(), d(t))]);
        let nothing_today = |_: &str| Decimal::ZERO;
        assert_eq!(p.check_batch(&totals("800"), &nothing_today), BatchVerdict::default());
        let v = p.check_batch(&totals("900"), &nothing_today);
        assert!(v.blockers.is_empty());
        assert_eq!(v.approval_reasons.len(), 1);
        let v = p.check_batch(&totals("1001"), &nothing_today);
        assert_eq!(v.blockers.len(), 1, "{v:?}");
        let v = p.check_batch(&totals("600"), &|_| d("1000"));
        assert!(v.blockers[0].contains("per day"), "{v:?}");
        let always = usdt_policy(ApprovalRule::Always).check_batch(&totals("1"), &nothing_today);
        assert_eq!(always.approval_reasons.len(), 1);
    }
}
