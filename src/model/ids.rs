//! The two identities of the model as types of their own, so an order's id and a batch's id can
//! never be passed one for the other.
//!
//! - [`OrderId`]: the merchant's `order_id`, sent as CCPayment's `orderId` on every attempt; the
//!   key of an order record, unique forever.
//! - [`BatchId`]: the SHA-256 of a batch file's bytes, hex: the same contents are the same batch.
//!
//! Both are stored as plain JSON strings (`serde(transparent)`), exactly as the strings they
//! replace were, so stores written before them read back unchanged. They dereference to `str`
//! for reading; making one takes an explicit `From`.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

id_type! {
    /// The merchant's id of one payout, sent as CCPayment's `orderId`: the key of its record.
    OrderId
}

id_type! {
    /// A batch's id: the SHA-256 of its file's bytes, hex.
    BatchId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stored_as_the_plain_strings_they_replace() {
        let order = OrderId::from("payroll-2026-11-001");
        assert_eq!(serde_json::to_string(&order).unwrap(), r#""payroll-2026-11-001""#);
        let back: OrderId = serde_json::from_str(r#""payroll-2026-11-001""#).unwrap();
        assert_eq!(back, order);
        let batch = BatchId::from("ab".repeat(32));
        assert_eq!(
            serde_json::to_string(&batch).unwrap(),
            format!("\"{}\"", "ab".repeat(32))
        );
        assert_eq!(&batch[..4], "abab");
        assert_eq!(order, "payroll-2026-11-001");
        assert_eq!(order.to_string(), "payroll-2026-11-001");
    }
}
