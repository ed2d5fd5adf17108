//! Retry spacing: capped exponential backoff with full jitter, and the small seedable PRNG that
//! supplies the jitter.
//!
//! This module does no I/O and keeps no clock: [`Backoff::delay`] takes its random number as an
//! argument, so every caller (and every test) decides where randomness comes from. The one
//! exception is [`Jitter::from_entropy`], which reads the system time once to pick a seed for
//! production use; tests use [`Jitter::new`] with a fixed seed.
//!
//! Full jitter (a uniform delay between zero and the exponential ceiling) is used rather than
//! "ceiling plus a little noise" because it spreads the retries of many senders that failed at the
//! same moment over the whole window, so they do not come back in lockstep and fail together again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Capped exponential backoff with full jitter: a uniformly random delay in
/// `[0, min(cap, base * 2^(attempt-1))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Backoff {
    /// The ceiling of the first attempt's delay.
    pub base: Duration,
    /// The largest ceiling any attempt gets.
    pub cap: Duration,
}

impl Backoff {
    /// The jittered delay before retry number `attempt` (starting at 1; 0 is treated as 1).
    ///
    /// `unit` is a random number in `[0, 1)` supplied by the caller, so tests are deterministic.
    /// Values outside that range (or NaN) are clamped into it rather than trusted: a bad random
    /// source must never produce a delay above the ceiling or a panic.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.0 };
        // `try_from_secs_f64` instead of `mul_f64`: the latter panics if the float product rounds
        // above `Duration::MAX`, which a huge configured cap could provoke.
        Duration::try_from_secs_f64(ceiling.as_secs_f64() * unit).map_or(ceiling, |d| d.min(ceiling))
    }

    /// The upper bound of [`Backoff::delay`] before jitter: `min(cap, base * 2^(attempt-1))`.
    ///
    /// Saturates at `cap` for attempts so large that the doubling would overflow.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.max(1) - 1;
        // `checked_shl` fails from 2^32 on, and `checked_mul` fails when the product leaves
        // `Duration`'s range; both mean "far beyond any sensible cap".
        1u32.checked_shl(exponent)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.cap, |d| d.min(self.cap))
    }
}

/// A tiny deterministic PRNG (splitmix64) for jitter.
///
/// Jitter only needs to decorrelate senders, not to be unpredictable, so a 64-bit mixer is enough
/// and keeps the crate free of a random-number dependency. The same seed always gives the same
/// sequence, which is what makes the pacing simulations in the tests reproducible.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Jitter {
        Jitter { state: seed }
    }

    /// A generator seeded from the system time's nanoseconds mixed with the process id, so two
    /// daemons started in the same instant still jitter differently.
    pub fn from_entropy() -> Jitter {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            // Only the low bits matter for a seed; truncation is intended.
            .map_or(0, |d| d.as_nanos() as u64);
        let pid = u64::from(std::process::id());
        // Spread the pid over the high bits so it does not only disturb the low, fast-changing ones.
        Jitter::new(nanos ^ pid.rotate_left(32))
    }

    /// The next raw 64-bit output (splitmix64, Steele, Lea and Flood 2014).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly, so the result is never 1.0.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: Backoff = Backoff {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(30),
    };

    #[test]
    fn delay_stays_within_the_ceiling_for_many_attempts_and_units() {
        let units = [0.0, 1e-12, 0.25, 0.5, 0.75, 0.999_999, 1.0 - f64::EPSILON];
        for attempt in 0..=200 {
            let ceiling = STANDARD.ceiling(attempt);
            assert!(ceiling <= STANDARD.cap);
            for unit in units {
                let delay = STANDARD.delay(attempt, unit);
                assert!(
                    delay <= ceiling,
                    "attempt {attempt} unit {unit}: {delay:?} > {ceiling:?}"
                );
            }
        }
    }

    #[test]
    fn ceiling_doubles_from_base_until_the_cap() {
        assert_eq!(STANDARD.ceiling(1), Duration::from_millis(500));
        assert_eq!(STANDARD.ceiling(2), Duration::from_secs(1));
        assert_eq!(STANDARD.ceiling(3), Duration::from_secs(2));
        assert_eq!(STANDARD.ceiling(7), Duration::from_secs(30));
        assert_eq!(STANDARD.ceiling(8), Duration::from_secs(30));
        // Attempt 0 is read as the first attempt, not as half the base.
        assert_eq!(STANDARD.ceiling(0), STANDARD.ceiling(1));
    }

    #[test]
    fn huge_attempts_saturate_at_the_cap_without_overflow() {
        for attempt in [31, 32, 33, 64, 65, 1_000, u32::MAX] {
            assert_eq!(STANDARD.ceiling(attempt), STANDARD.cap);
        }
        let unbounded = Backoff {
            base: Duration::from_secs(u64::MAX / 2),
            cap: Duration::MAX,
        };
        assert_eq!(unbounded.ceiling(3), Duration::MAX);
        assert!(unbounded.delay(3, 0.999_999_999) <= Duration::MAX);
    }

    #[test]
    fn unit_zero_gives_no_delay_and_unit_near_one_gives_nearly_the_ceiling() {
        assert_eq!(STANDARD.delay(5, 0.0), Duration::ZERO);
        let near = STANDARD.delay(5, 0.999);
        assert!(near > STANDARD.ceiling(5).mul_f64(0.998));
    }

    #[test]
    fn out_of_range_units_are_clamped() {
        assert_eq!(STANDARD.delay(3, -1.0), Duration::ZERO);
        assert_eq!(STANDARD.delay(3, f64::NAN), Duration::ZERO);
        assert_eq!(STANDARD.delay(3, 7.0), STANDARD.ceiling(3));
        assert_eq!(STANDARD.delay(3, f64::INFINITY), Duration::ZERO);
    }

    #[test]
    fn ceiling_never_decreases_with_the_attempt() {
        let odd = Backoff {
            base: Duration::from_nanos(3),
            cap: Duration::from_secs(3600),
        };
        for backoff in [STANDARD, odd] {
            let mut previous = Duration::ZERO;
            for attempt in 1..=100 {
                let ceiling = backoff.ceiling(attempt);
                assert!(ceiling >= previous, "{backoff:?} attempt {attempt}");
                previous = ceiling;
            }
        }
    }

    #[test]
    fn jitter_is_deterministic_for_a_seed() {
        let mut a = Jitter::new(42);
        let mut b = Jitter::new(42);
        let mut c = Jitter::new(43);
        let from_a: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let from_b: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let from_c: Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(from_a, from_b);
        assert_ne!(from_a, from_c);
        // The published splitmix64 reference output for seed 0.
        assert_eq!(Jitter::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn jitter_units_are_in_range_and_roughly_uniform() {
        let mut jitter = Jitter::new(7);
        let draws: Vec<f64> = (0..10_000).map(|_| jitter.next_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        // The standard error of the mean of 10k uniforms is about 0.003; 0.02 is a wide margin.
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        // Each tenth of the interval gets its share (1,000 expected, sd about 30).
        let mut deciles = [0u32; 10];
        for u in &draws {
            deciles[(u * 10.0) as usize] += 1;
        }
        assert!(deciles.iter().all(|n| (850..1150).contains(n)), "{deciles:?}");
    }

    #[test]
    fn entropy_seeds_produce_units_in_range() {
        let mut jitter = Jitter::from_entropy();
        assert!((0.0..1.0).contains(&jitter.next_unit()));
    }

    #[test]
    fn backoff_round_trips_through_serde() {
        let json = serde_json::to_string(&STANDARD).expect("serialize");
        let back: Backoff = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, STANDARD);
    }
}
