//! Retrying failed rows under new order ids (`ccpayout retry`, issue 16): the id a retry row
//! gets, and the link the store keeps from an order to the order that retries it.
//!
//! An order_id is never reused (CCPayment knows it forever, and so does the store), so a row
//! that ended failed or rejected can only be paid again as a new order. Its new id is derived,
//! never invented: `ORDER~r1`, and for a retry of a retry the base with the next number
//! (`ORDER~r2`, not `ORDER~r1~r1`), so the same failed row always gets the same retry id and a
//! retry file written twice is the same file (the same batch, paid once). The row keeps the id
//! it retries in its `original_order_id` column.
//!
//! Pure: no I/O.

use serde::{Deserialize, Serialize};

use super::ids::{BatchId, OrderId};

/// The longest order_id CCPayment takes (`orderId`, 3–64 characters).
pub const MAX_ORDER_ID_CHARS: usize = 64;

/// What separates an order_id from its retry number: `~r`. `~` was not allowed in order_ids
/// before retries existed, so no older id can be mistaken for a retry.
pub const RETRY_MARK: &str = "~r";

/// Why a row cannot be retried under a derived id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryIdError {
    /// The retry id would be longer than CCPayment allows; it is never cut short (a shortened
    /// id could be another row's).
    #[error(
        "order_id {order_id:?} cannot be retried automatically: its retry id {retry_id:?} would have {chars} characters, over CCPayment's {MAX_ORDER_ID_CHARS}; pay it again by hand under a shorter order_id"
    )]
    TooLong {
        order_id: String,
        retry_id: String,
        chars: usize,
    },
}

/// The order_id of the retry of `order_id`: `ORDER~r1`, or, when `order_id` already ends in
/// `~rN` (N a positive whole number written without leading zeros), the same base with `~r{N+1}`.
/// Fails, rather than cut anything, when the result would exceed [`MAX_ORDER_ID_CHARS`].
pub fn retry_id(order_id: &str) -> Result<String, RetryIdError> {
    let (base, next) = match split_retry(order_id) {
        Some((base, n)) => (base, n.checked_add(1)),
        None => (order_id, Some(1)),
    };
    // A retry number at u64::MAX (never produced by us) starts a new suffix instead.
    let id = match next {
        Some(n) => format!("{base}{RETRY_MARK}{n}"),
        None => format!("{order_id}{RETRY_MARK}1"),
    };
    let chars = id.chars().count();
    if chars > MAX_ORDER_ID_CHARS {
        return Err(RetryIdError::TooLong {
            order_id: order_id.to_owned(),
            retry_id: id,
            chars,
        });
    }
    Ok(id)
}

/// `order_id` split into its base and retry number when it ends in `~rN` with N a positive whole
/// number without leading zeros and a non-empty base; `None` otherwise.
pub fn split_retry(order_id: &str) -> Option<(&str, u64)> {
    let at = order_id.rfind(RETRY_MARK)?;
    let (base, digits) = (&order_id[..at], &order_id[at + RETRY_MARK.len()..]);
    let canonical = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    if base.is_empty() || !canonical {
        return None;
    }
    digits.parse().ok().map(|n| (base, n))
}

/// An order of an earlier batch retried by an order of a later one: kept by the store, written
/// in the same transaction as the retrying batch, so each batch's reports can name the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryLink {
    /// The batch of the order retried.
    pub original_batch_id: BatchId,
    /// The order retried (the retrying row's `original_order_id`).
    pub original_order_id: OrderId,
    /// The batch of the retry.
    pub batch_id: BatchId,
    /// The order that retries it.
    pub order_id: OrderId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_retry_appends_r1_and_a_retry_of_a_retry_counts_up() {
        let cases = [
            ("pay-001", "pay-001~r1"),
            ("pay-001~r1", "pay-001~r2"),
            ("pay-001~r9", "pay-001~r10"),
            ("pay-001~r41", "pay-001~r42"),
            // Not a retry number: a zero, a leading zero, no digits, letters, no base.
            ("pay-001~r0", "pay-001~r0~r1"),
            ("pay-001~r01", "pay-001~r01~r1"),
            ("pay-001~r", "pay-001~r~r1"),
            ("pay-001~rx", "pay-001~rx~r1"),
            ("~r5", "~r5~r1"),
            // Only the last mark counts.
            ("a~r1~r3", "a~r1~r4"),
            ("a~r1b", "a~r1b~r1"),
        ];
        for (id, want) in cases {
            assert_eq!(retry_id(id).as_deref(), Ok(want), "{id}");
        }
        assert_eq!(split_retry("a~r7"), Some(("a", 7)));
        assert_eq!(split_retry("a-r7"), None);
        // A number past u64 is no retry number; one at the top starts a new suffix.
        let huge = format!("a~r{}", u64::MAX);
        assert_eq!(retry_id(&huge).unwrap(), format!("{huge}~r1"));
        assert_eq!(
            retry_id("a~r99999999999999999999").unwrap(),
            "a~r99999999999999999999~r1"
        );
    }

    #[test]
    fn a_retry_id_over_64_characters_is_refused_never_cut() {
        let fits = "x".repeat(61);
        assert_eq!(retry_id(&fits).unwrap().len(), 64);
        let long = "y".repeat(62);
        let err = retry_id(&long).unwrap_err();
        assert_eq!(
            err,
            RetryIdError::TooLong {
                order_id: long.clone(),
                retry_id: format!("{long}~r1"),
                chars: 65,
            }
        );
        assert!(err.to_string().contains(&long), "{err}");
        // A retry that only grows by a digit at the limit is refused too.
        let at_limit = format!("{}~r9", "z".repeat(61));
        assert_eq!(at_limit.len(), 64);
        assert!(matches!(
            retry_id(&at_limit),
            Err(RetryIdError::TooLong { chars: 65, .. })
        ));
        // Characters, not bytes: CCPayment counts characters.
        assert_eq!(retry_id(&"é".repeat(61)).unwrap().chars().count(), 64);
    }
}
