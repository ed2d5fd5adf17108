//! The operator's payout policy: which coins and chains may be paid, how much per order, per
//! batch and per day, when a batch needs approval and how many approvers, who may sign batch
//! files and approvals, and what happens to a payout to a new or changed recipient.
//!
//! The policy is data from the config; this module only evaluates it. It does no I/O: how much
//! was paid today comes in as a number from whoever knows it, the allowed-signers files come in
//! parsed, and the deny lists are read by the caller (`crate::app::controls`).

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::signature::AllowedSigners;

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

/// A batch total of one coin above `above` needs `approvals` distinct approvers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalTier {
    pub above: Decimal,
    pub approvals: u32,
}

/// Limits for one coin. `None` means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoinPolicy {
    pub max_per_order: Option<Decimal>,
    pub max_per_batch: Option<Decimal>,
    pub max_per_day: Option<Decimal>,
    pub approval_above: Option<Decimal>,
    /// Larger totals need more approvers; each tier also makes approval needed.
    pub approval_tiers: Vec<ApprovalTier>,
}

/// What happens to a row paying a destination no earlier payout went to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NewRecipients {
    /// Paid like any other (the default).
    #[default]
    Allow,
    /// Held for its own approval; the rest of the batch proceeds.
    Hold,
    /// Paid up to this amount (in the row's coin); a larger first payout is held.
    Cap(Decimal),
}

/// What happens to a row whose `payee` was paid to another destination before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChangedPayee {
    #[default]
    Allow,
    Hold,
}

/// An allowed-signers file as the configuration names it, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignersFile {
    /// The path as configured (resolved against the config file's folder).
    pub path: String,
    pub signers: AllowedSigners,
}

/// The whole policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Upper-case coin symbols; empty allows every coin.
    pub allowed_coins: Vec<String>,
    /// Upper-case chain symbols (`CWALLET` included); empty allows every chain.
    pub allowed_chains: Vec<String>,
    pub approval: ApprovalRule,
    /// Keyed by upper-case coin symbol.
    pub coins: BTreeMap<String, CoinPolicy>,
    /// Distinct approvers a batch that needs approval must have (tiers may ask more); at least 1.
    pub approvals_required: u32,
    /// Whether the signer of a batch file may approve it (maker and checker).
    pub maker_may_approve: bool,
    /// Who may approve (OS users or signers' principals); empty: anyone who can reach the
    /// control socket or the store.
    pub approvers: Vec<String>,
    /// The keys whose signed approvals (`approve --sign-with KEY`) are accepted.
    pub approver_signers: Option<SignersFile>,
    /// Batch files are taken only with a valid detached signature (`FILE.sig`).
    pub require_signature: bool,
    /// The keys that may sign batch files.
    pub allowed_signers: Option<SignersFile>,
    pub new_recipients: NewRecipients,
    pub changed_payee_address: ChangedPayee,
    /// Deny-list files, read by the caller at each preflight.
    pub deny_lists: Vec<String>,
    /// The diff to last time lists amounts changed by more than this percentage of the
    /// previous amount (0: every change).
    pub diff_warn_percent: Decimal,
}

/// `policy.diff_warn_percent` when the configuration does not say.
pub const DEFAULT_DIFF_WARN_PERCENT: u32 = 20;

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            allowed_coins: Vec::new(),
            allowed_chains: Vec::new(),
            approval: ApprovalRule::Never,
            coins: BTreeMap::new(),
            approvals_required: 1,
            maker_may_approve: true,
            approvers: Vec::new(),
            approver_signers: None,
            require_signature: false,
            allowed_signers: None,
            new_recipients: NewRecipients::Allow,
            changed_payee_address: ChangedPayee::Allow,
            deny_lists: Vec::new(),
            diff_warn_percent: Decimal::from(DEFAULT_DIFF_WARN_PERCENT),
        }
    }
}

/// What the policy says about a whole batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchVerdict {
    /// Reasons the batch may not be paid as it is.
    pub blockers: Vec<String>,
    /// Reasons the batch needs approval (empty: it does not).
    pub approval_reasons: Vec<String>,
    /// Distinct approvers needed: 0 when no approval is needed.
    pub approvals_needed: u32,
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
        let mut tier_needs = 0u32;
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
            // The highest tier the total is above says how many approvers.
            if let Some(tier) = limits
                .approval_tiers
                .iter()
                .filter(|t| total > t.above)
                .max_by_key(|t| t.approvals)
            {
                tier_needs = tier_needs.max(tier.approvals);
                verdict.approval_reasons.push(format!(
                    "the batch pays {total} {coin}, above {} {coin}, which needs {} approver{}",
                    tier.above,
                    tier.approvals,
                    if tier.approvals == 1 { "" } else { "s" }
                ));
            }
        }
        if !verdict.approval_reasons.is_empty() {
            verdict.approvals_needed = self.approvals_required.max(1).max(tier_needs);
        }
        verdict
    }

    /// Why a row to a destination the registry does not know waits for approval, if it does.
    pub fn holds_new_recipient(&self, amount: Decimal) -> bool {
        match self.new_recipients {
            NewRecipients::Allow => false,
            NewRecipients::Hold => true,
            NewRecipients::Cap(cap) => amount > cap,
        }
    }

    /// Whether `who` may approve at all (the `approvers` list; empty lets anyone).
    pub fn may_approve(&self, who: &str) -> bool {
        self.approvers.is_empty() || self.approvers.iter().any(|a| a == who)
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
                    approval_tiers: Vec::new(),
                },
            )]
            .into(),
            ..Policy::default()
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
        assert_eq!(always.approvals_needed, 1);
    }

    #[test]
    fn tiers_and_the_quorum_say_how_many_approvers() {
        let mut p = usdt_policy(ApprovalRule::Never);
        p.coins.get_mut("USDT").unwrap().approval_tiers = vec![
            ApprovalTier {
                above: d("100"),
                approvals: 2,
            },
            ApprovalTier {
                above: d("500"),
                approvals: 3,
            },
        ];
        let totals = |t: &str| BTreeMap::from([("USDT".to_owned(), d(t))]);
        let nothing_today = |_: &str| Decimal::ZERO;
        assert_eq!(p.check_batch(&totals("100"), &nothing_today).approvals_needed, 0);
        let v = p.check_batch(&totals("101"), &nothing_today);
        assert_eq!(v.approvals_needed, 2, "{v:?}");
        assert!(v.approval_reasons[0].contains("needs 2 approvers"), "{v:?}");
        assert_eq!(p.check_batch(&totals("600"), &nothing_today).approvals_needed, 3);
        // The quorum is the floor whenever approval is needed.
        p.approval = ApprovalRule::Always;
        p.approvals_required = 2;
        assert_eq!(p.check_batch(&totals("1"), &nothing_today).approvals_needed, 2);
        p.approvals_required = 4;
        assert_eq!(p.check_batch(&totals("600"), &nothing_today).approvals_needed, 4);
    }

    #[test]
    fn new_recipients_are_held_as_configured() {
        let mut p = Policy::default();
        assert!(!p.holds_new_recipient(d("1000000")));
        p.new_recipients = NewRecipients::Hold;
        assert!(p.holds_new_recipient(d("0.01")));
        p.new_recipients = NewRecipients::Cap(d("50"));
        assert!(!p.holds_new_recipient(d("50")));
        assert!(p.holds_new_recipient(d("50.01")));
        assert!(p.may_approve("anyone"));
        p.approvers = vec!["alice".into()];
        assert!(p.may_approve("alice") && !p.may_approve("bob"));
    }
}
