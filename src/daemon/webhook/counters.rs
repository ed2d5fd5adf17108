//! The webhook counters: what the listener did with each webhook it received, for the metrics
//! endpoint.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter of [`WebhookStats`]. Its discriminant is its index in [`COUNTER_NAMES`], so the
/// two lists keep the same order.
#[derive(Debug, Clone, Copy)]
pub(super) enum Counter {
    Accepted,
    Duplicate,
    Ignored,
    Unreadable,
    RefusedMissingHeader,
    RefusedAppId,
    RefusedTimestamp,
    RefusedStale,
    RefusedSignature,
    RefusedTooLarge,
}

const COUNTER_NAMES: [&str; 10] = [
    "accepted",
    "duplicate",
    "ignored",
    "unreadable",
    "refused_missing_header",
    "refused_app_id",
    "refused_timestamp",
    "refused_stale",
    "refused_signature",
    "refused_too_large",
];

/// What the listener did with the webhooks it received, as monotonic counters. Shared with the
/// metrics endpoint through [`Verifier::stats`](super::Verifier::stats).
#[derive(Debug, Default)]
pub struct WebhookStats {
    counters: [AtomicU64; COUNTER_NAMES.len()],
}

impl WebhookStats {
    /// Every counter by name (see "Counters" in the [module documentation](super)); all names are
    /// always present, zeros included.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        COUNTER_NAMES
            .iter()
            .zip(&self.counters)
            .map(|(name, value)| ((*name).to_owned(), value.load(Ordering::Relaxed)))
            .collect()
    }

    pub(super) fn count(&self, counter: Counter) {
        self.counters[counter as usize].fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_names_every_counter() {
        // A new verifier starts from a default `WebhookStats`.
        let stats = WebhookStats::default();
        let names: Vec<String> = stats.snapshot().into_keys().collect();
        let mut expected: Vec<String> = COUNTER_NAMES.iter().map(|s| (*s).to_owned()).collect();
        expected.sort();
        assert_eq!(names, expected);
        assert!(stats.snapshot().values().all(|n| *n == 0));
    }
}
