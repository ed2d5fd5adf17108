//! The recipient registry: every destination a payout succeeded to, with when it was first and
//! last paid, and which destination each payee (the optional `payee` column, a stable id of the
//! person) was last paid to. The store writes it in the same transaction as the order's success;
//! the preflight reads it to tell a new destination or a changed payee address from a known one.
//!
//! The trait lives here, below both, so that `batch` never imports `store` (as with
//! [`super::known::KnownOrders`]). Pure data.

use serde::{Deserialize, Serialize};

use crate::rules::deny::match_key;

/// Where a payout goes: a chain and an address (with its memo), or a Cwallet user
/// (chain `CWALLET`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub chain: String,
    pub address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memo: String,
}

impl Destination {
    pub fn new(chain: &str, address: &str, memo: &str) -> Destination {
        Destination {
            chain: chain.trim().to_ascii_uppercase(),
            address: address.trim().to_owned(),
            memo: memo.trim().to_owned(),
        }
    }

    /// The registry's key: the chain, the address by its chain's case rule
    /// ([`match_key`]), and the memo, so `0xABC…` and `0xabc…` are one destination and two
    /// memos on one exchange address are two.
    pub fn key(&self) -> String {
        format!("{}\t{}\t{}", self.chain, match_key(&self.address), self.memo)
    }

    /// As an operator reads it: `TRX TXYZ…`, `XRP r… memo 123`, `CWALLET 9558861`.
    pub fn describe(&self) -> String {
        if self.memo.is_empty() {
            format!("{} {}", self.chain, self.address)
        } else {
            format!("{} {} memo {}", self.chain, self.address, self.memo)
        }
    }
}

/// A destination the registry knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientEntry {
    pub destination: Destination,
    pub first_paid_ms: i64,
    pub last_paid_ms: i64,
    /// Successful payouts to it.
    pub payouts: u64,
    /// The order that paid it last.
    pub last_order_id: String,
    /// Payees paid to it, in the order first seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payees: Vec<String>,
}

/// Where a payee was last paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayeeEntry {
    pub payee: String,
    pub destination: Destination,
    /// When this destination was first paid for the payee.
    pub since_ms: i64,
    pub last_paid_ms: i64,
    /// Destinations the payee was paid to before, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<Destination>,
}

/// What the registry says about a row's destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "recipient", rename_all = "snake_case")]
pub enum RecipientStatus {
    /// Paid before.
    Known,
    /// Never paid before.
    New,
    /// The row's payee was last paid to another destination.
    Changed { previous: Destination },
}

/// Looks destinations and payees up in the registry.
pub trait KnownRecipients {
    fn destination(&self, key: &str) -> Option<RecipientEntry>;
    fn payee(&self, payee: &str) -> Option<PayeeEntry>;

    /// What the registry says about paying `destination` for `payee` (empty: no payee).
    fn status(&self, destination: &Destination, payee: &str) -> RecipientStatus {
        if !payee.is_empty()
            && let Some(entry) = self.payee(payee)
            && entry.destination.key() != destination.key()
        {
            return RecipientStatus::Changed {
                previous: entry.destination,
            };
        }
        if self.destination(&destination.key()).is_some() {
            RecipientStatus::Known
        } else {
            RecipientStatus::New
        }
    }
}

/// What the store knows from earlier batches: their order_ids, the destinations they paid, and
/// their rows (for the diff to last time).
pub trait Known: super::known::KnownOrders + KnownRecipients + super::history::BatchHistory {}

impl<T: super::known::KnownOrders + KnownRecipients + super::history::BatchHistory> Known for T {}

impl KnownRecipients for super::known::NoKnownOrders {
    fn destination(&self, _key: &str) -> Option<RecipientEntry> {
        None
    }

    fn payee(&self, _payee: &str) -> Option<PayeeEntry> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Registry(HashMap<String, RecipientEntry>, HashMap<String, PayeeEntry>);

    impl KnownRecipients for Registry {
        fn destination(&self, key: &str) -> Option<RecipientEntry> {
            self.0.get(key).cloned()
        }
        fn payee(&self, payee: &str) -> Option<PayeeEntry> {
            self.1.get(payee).cloned()
        }
    }

    #[test]
    fn a_destination_is_known_new_or_changed_for_its_payee() {
        let old = Destination::new("eth", "0xAbCdEf0000000000000000000000000000000001", "");
        let entry = RecipientEntry {
            destination: old.clone(),
            first_paid_ms: 1,
            last_paid_ms: 2,
            payouts: 1,
            last_order_id: "a".into(),
            payees: vec!["emp-1".into()],
        };
        let reg = Registry(
            HashMap::from([(old.key(), entry)]),
            HashMap::from([(
                "emp-1".to_owned(),
                PayeeEntry {
                    payee: "emp-1".into(),
                    destination: old.clone(),
                    since_ms: 1,
                    last_paid_ms: 2,
                    previous: vec![],
                },
            )]),
        );
        // The same EVM address in another case is the same destination.
        let same = Destination::new("ETH", "0xabcdef0000000000000000000000000000000001", "");
        assert_eq!(reg.status(&same, "emp-1"), RecipientStatus::Known);
        assert_eq!(reg.status(&same, ""), RecipientStatus::Known);
        let other = Destination::new("ETH", "0x0000000000000000000000000000000000000002", "");
        assert_eq!(reg.status(&other, ""), RecipientStatus::New);
        assert_eq!(
            reg.status(&other, "emp-1"),
            RecipientStatus::Changed { previous: old.clone() }
        );
        // A memo makes another destination.
        let memo = Destination::new("ETH", "0xabcdef0000000000000000000000000000000001", "7");
        assert_eq!(reg.status(&memo, ""), RecipientStatus::New);
        assert_eq!(memo.describe(), "ETH 0xabcdef0000000000000000000000000000000001 memo 7");
    }
}
