//! What can go wrong with one API call, sorted by what the caller must do about it.
//!
//! The distinction that matters for money is whether the request may have reached CCPayment:
//! - [`CallError::NotSent`]: it certainly did not (no connection was made, the request could not
//!   be built). Sending again is safe.
//! - [`CallError::Ambiguous`]: it may have been processed (timeout or reset after sending, HTTP
//!   5xx, a reply that is not a CCPayment envelope, a v1 reply whose signature does not verify).
//!   For a withdrawal the order must be reconciled by its orderId before anything is resent.
//! - [`CallError::Api`]: CCPayment answered with an error code; [`ApiError::class`] says what to
//!   do.
//!
//! No variant ever carries the app secret, a signature or request headers.

use std::fmt;

use super::codes::{self, ErrorClass};

/// CCPayment answered with a code other than 10000.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The method or path that was called (`getCoinList`, `v1/withdraw`).
    pub endpoint: String,
    /// The result code.
    pub code: i64,
    /// CCPayment's message, verbatim. Shown to people, never compared.
    pub msg: String,
    /// What the engine does about the code.
    pub class: ErrorClass,
}

impl ApiError {
    /// An error for `code` on `endpoint`, classified from the code table.
    pub fn new(endpoint: impl Into<String>, code: i64, msg: impl Into<String>) -> ApiError {
        ApiError {
            endpoint: endpoint.into(),
            code,
            msg: msg.into(),
            class: codes::classify(code),
        }
    }

    /// CCPayment's name for the code (`VerifySignFailed`), or `unknown`.
    pub fn name(&self) -> &'static str {
        codes::name(self.code)
    }

    /// What the code means, in our words, when it is documented.
    pub fn meaning(&self) -> Option<&'static str> {
        codes::lookup(self.code).map(|c| c.meaning)
    }

    /// What an operator should check, when there is something to check.
    pub fn hint(&self) -> Option<&'static str> {
        codes::lookup(self.code).and_then(|c| c.hint)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} answered {} {}", self.endpoint, self.code, self.name())?;
        match self.meaning() {
            Some(meaning) => write!(f, ": {meaning}")?,
            None => write!(f, ": undocumented code")?,
        }
        if !self.msg.is_empty() {
            write!(f, " (msg {:?})", self.msg)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// The failure of one API call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The request certainly did not reach CCPayment.
    #[error("{endpoint}: request not sent: {detail}")]
    NotSent { endpoint: String, detail: String },
    /// The request may have reached CCPayment, but no usable reply came back.
    #[error("{endpoint}: no usable reply, the request may have been processed: {detail}")]
    Ambiguous { endpoint: String, detail: String },
    /// CCPayment answered with an error code.
    #[error(transparent)]
    Api(ApiError),
}

impl CallError {
    /// The class the engine acts on. Transport failures are [`ErrorClass::RetryLater`] when
    /// nothing was sent; ambiguous ones have no code class and return `None`: the caller must
    /// reconcile first.
    pub fn class(&self) -> Option<ErrorClass> {
        match self {
            CallError::NotSent { .. } => Some(ErrorClass::RetryLater),
            CallError::Ambiguous { .. } => None,
            CallError::Api(e) => Some(e.class),
        }
    }

    /// Whether the request may have been processed by CCPayment.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, CallError::Ambiguous { .. })
    }

    /// The API error, if CCPayment answered with a code.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            CallError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The result code, if CCPayment answered with one.
    pub fn code(&self) -> Option<i64> {
        self.api().map(|e| e.code)
    }
}

impl From<ApiError> for CallError {
    fn from(e: ApiError) -> Self {
        CallError::Api(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_message_names_code_meaning_and_msg() {
        let e = ApiError::new("getCoinList", 11005, "VerifySignFailed");
        assert_eq!(
            e.to_string(),
            r#"getCoinList answered 11005 VerifySignFailed: the request signature did not verify (msg "VerifySignFailed")"#
        );
        assert_eq!(e.class, ErrorClass::OperatorAction);
        assert!(e.hint().is_some());
    }

    #[test]
    fn unknown_codes_keep_their_message_and_are_never_success() {
        let e = ApiError::new("v1/withdraw", 224099, "something else");
        assert_eq!(e.class, ErrorClass::Unknown);
        assert!(e.to_string().contains("224099 unknown: undocumented code"));
        assert!(e.to_string().contains("something else"));
        // A documented v1 code is named, and still never taken for success or failure.
        let e = ApiError::new("v1/withdraw", 224066, "service err, please try again");
        assert_eq!(e.class, ErrorClass::Unknown);
        assert!(
            e.to_string().contains("224066 V1ServiceErr: the v1 service failed"),
            "{e}"
        );
        assert!(e.to_string().contains("service err"));
    }

    #[test]
    fn transport_failures_classify_by_whether_they_were_sent() {
        let not_sent = CallError::NotSent {
            endpoint: "x".into(),
            detail: "refused".into(),
        };
        let ambiguous = CallError::Ambiguous {
            endpoint: "x".into(),
            detail: "reset".into(),
        };
        assert_eq!(not_sent.class(), Some(ErrorClass::RetryLater));
        assert!(!not_sent.is_ambiguous());
        assert_eq!(ambiguous.class(), None);
        assert!(ambiguous.is_ambiguous());
        let api: CallError = ApiError::new("x", 11004, "").into();
        assert_eq!(api.class(), Some(ErrorClass::RateLimited));
        assert_eq!(api.code(), Some(11004));
    }
}
