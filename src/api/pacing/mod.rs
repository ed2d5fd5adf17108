//! One pacing for every request to CCPayment.
//!
//! - [`backoff`]: capped exponential backoff with full jitter (pure).
//! - [`limiter`]: the governor quota every request shares, the extra cap on reads, and the
//!   daily request budget.
//! - [`gate`]: the pause gate for 11004 backoff, 11009 daily pauses and the kill switch.

pub mod backoff;
pub mod gate;
pub mod limiter;
