//! De-duplicating withdrawal notices: the (recordId, status) pairs recently passed on, so that a
//! burst of re-pushes of one notice costs one record query.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// How many (recordId, status) pairs the de-duplication remembers.
pub const DEDUP_CAPACITY: usize = 1024;
/// How long the de-duplication remembers a pair.
pub const DEDUP_TTL: Duration = Duration::from_secs(600);

/// A notice's (recordId, status); the orderId stands in for a missing recordId.
pub(super) type DedupKey = (String, String);

/// The last `capacity` keys passed on, each remembered for `ttl_ms`. Keys are never refreshed by
/// a duplicate, so a key is let through again at most once per `ttl_ms`.
#[derive(Debug)]
pub(super) struct Dedup {
    capacity: usize,
    ttl_ms: i64,
    seen: HashMap<DedupKey, i64>,
    order: VecDeque<(DedupKey, i64)>,
}

impl Dedup {
    pub(super) fn new(capacity: usize, ttl: Duration) -> Dedup {
        Dedup {
            capacity,
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `key` was not passed on within the last `ttl_ms`; remembers it if so.
    pub(super) fn first_sighting(&mut self, key: DedupKey, now_ms: i64) -> bool {
        while let Some((_, at)) = self.order.front()
            && now_ms.saturating_sub(*at) >= self.ttl_ms
        {
            self.evict_front();
        }
        if let Some(at) = self.seen.get(&key)
            && now_ms.saturating_sub(*at) < self.ttl_ms
        {
            return false;
        }
        self.seen.insert(key.clone(), now_ms);
        self.order.push_back((key, now_ms));
        while self.order.len() > self.capacity {
            self.evict_front();
        }
        true
    }

    fn evict_front(&mut self) {
        if let Some((key, at)) = self.order.pop_front()
            && self.seen.get(&key) == Some(&at)
        {
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_remembers_pairs_for_the_ttl_and_up_to_the_capacity() {
        let key = |r: &str, s: &str| (r.to_owned(), s.to_owned());
        let mut d = Dedup::new(3, Duration::from_secs(600));
        assert!(d.first_sighting(key("1", "Processing"), 0));
        assert!(!d.first_sighting(key("1", "Processing"), 1_000));
        assert!(d.first_sighting(key("1", "Success"), 1_000), "another status is news");
        assert!(!d.first_sighting(key("1", "Processing"), 599_999));
        // Expired: passed on again, and remembered from then.
        assert!(d.first_sighting(key("1", "Processing"), 600_000));
        assert!(!d.first_sighting(key("1", "Processing"), 600_001));
        // The capacity bounds the memory: the oldest pair is forgotten first.
        assert!(d.first_sighting(key("2", "Success"), 600_002));
        assert!(d.first_sighting(key("3", "Success"), 600_003));
        assert!(d.order.len() <= 3 && d.seen.len() <= 3);
        // (1, Success) was the oldest of four and is forgotten although its time is not up.
        assert!(d.first_sighting(key("1", "Success"), 600_004), "evicted by capacity");
        assert!(!d.first_sighting(key("3", "Success"), 600_005));
        for i in 0..10_000 {
            d.first_sighting(key(&i.to_string(), "Success"), 700_000 + i);
        }
        assert_eq!((d.order.len(), d.seen.len()), (3, 3));
    }
}
