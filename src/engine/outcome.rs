//! What the answer to a withdrawal send means for the order, and for everyone else.
//!
//! One pure function turns the client's result into the state-machine [`Event`] for the order
//! and a [`Signal`] for the engine (back off, pause for the day, stop for the operator). The
//! money-safety rule it encodes: anything that may have created the withdrawal — a transport
//! failure after sending, HTTP 5xx, 11002, 11007, 11011, or a code we do not know — is
//! ambiguous and is resolved by orderId; only answers that certainly created nothing (not sent,
//! 11004, 11009, a refusal code) defer or reject the order.
//!
//! Pure: no I/O, no clock; `now_ms` and the jitter come in.

use std::time::Duration;

use crate::api::pacing::backoff::Backoff;
use crate::api::{CallError, ErrorClass};
use crate::model::state::Event;

/// What the engine as a whole must do after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Nothing beyond the order.
    None,
    /// 11004: every sender backs off.
    RateLimited,
    /// 11009: submission pauses until the daily reset.
    DailyLimit,
    /// A problem no retry fixes without a person (credentials, IP whitelist, clock, account):
    /// stop sending and say what to check.
    Stop { code: i64, message: String },
}

/// Codes that stop the whole run: every other order would meet them too.
const STOP_CODES: &[i64] = &[
    11001, 11005, 11006, 11013, 11014, 12000, 12001, 12002, 12003, 14014, 14018,
];

/// Retry settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// Sends allowed for refusals that may clear up (balance, chain paused); rate limits, daily
    /// caps and unsent requests do not count against it.
    pub max_attempts: u32,
}

/// The event for the order and the signal for the engine. `attempts` counts sends including
/// this one; `unit` is a jitter draw in [0, 1).
pub fn classify<T>(
    result: &Result<T, CallError>,
    attempts: u32,
    policy: &RetryPolicy,
    now_ms: i64,
    unit: f64,
) -> (Event, Signal) {
    let later = |reason: String, code: Option<i64>, counts: bool| {
        let delay = policy
            .backoff
            .delay(attempts.max(1), unit)
            .max(Duration::from_millis(100));
        Event::Retry {
            until_ms: now_ms + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4),
            reason,
            attempts_left: !counts || attempts < policy.max_attempts,
            code,
        }
    };
    let e = match result {
        Ok(_) => return (Event::Created, Signal::None),
        Err(CallError::NotSent { detail, .. }) => {
            return (later(format!("not sent: {detail}"), None, false), Signal::None);
        }
        Err(CallError::Ambiguous { detail, .. }) => return (Event::Ambiguous { detail: detail.clone() }, Signal::None),
        Err(CallError::Api(e)) => e,
    };
    let reason = format!("{} {}: {}", e.code, e.name(), e.meaning().unwrap_or(e.msg.as_str()));
    if STOP_CODES.contains(&e.code) {
        let event = later(reason.clone(), Some(e.code), false);
        return (
            event,
            Signal::Stop {
                code: e.code,
                message: e.to_string(),
            },
        );
    }
    match e.class {
        // 11002 after a withdrawal may have created it; so may a code we do not know.
        ErrorClass::DuplicateReconcile | ErrorClass::Unknown | ErrorClass::NotFound => {
            (Event::Ambiguous { detail: reason }, Signal::None)
        }
        ErrorClass::RetryLater if e.code == 11002 => (Event::Ambiguous { detail: reason }, Signal::None),
        // The gate paces every sender after an 11004; the order itself may go again as soon as
        // the gate lets it, so it is not pushed further back.
        ErrorClass::RateLimited => (
            Event::Retry {
                until_ms: now_ms,
                reason,
                attempts_left: true,
                code: Some(e.code),
            },
            Signal::RateLimited,
        ),
        // The deferral time is set by the engine to the daily reset.
        ErrorClass::DailyLimit => (later(reason, Some(e.code), false), Signal::DailyLimit),
        ErrorClass::RetryLater | ErrorClass::Clock | ErrorClass::OperatorAction => {
            (later(reason, Some(e.code), true), Signal::None)
        }
        ErrorClass::Permanent => (
            Event::Refuse {
                code: Some(e.code),
                reason,
            },
            Signal::None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiError;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
            },
            max_attempts: 3,
        }
    }

    fn api(code: i64) -> Result<(), CallError> {
        Err(CallError::Api(ApiError::new("applyAppWithdrawToNetwork", code, "msg")))
    }

    #[test]
    fn answers_that_may_have_created_the_withdrawal_are_ambiguous() {
        for result in [
            api(11002),
            api(11007),
            api(11011),
            api(10001),
            api(19999),
            api(11003),
            Err(CallError::Ambiguous {
                endpoint: "x".into(),
                detail: "timed out".into(),
            }),
        ] {
            let (event, signal) = classify(&result, 1, &policy(), 0, 0.5);
            assert!(matches!(event, Event::Ambiguous { .. }), "{result:?} gave {event:?}");
            assert_eq!(signal, Signal::None);
        }
    }

    #[test]
    fn answers_that_created_nothing_defer_or_reject() {
        let (event, signal) = classify(&api(11004), 9, &policy(), 1000, 0.5);
        assert!(
            matches!(
                event,
                Event::Retry {
                    attempts_left: true,
                    ..
                }
            ),
            "rate limits never exhaust attempts"
        );
        assert_eq!(signal, Signal::RateLimited);
        let (event, signal) = classify(&api(11009), 9, &policy(), 1000, 0.5);
        assert!(matches!(
            event,
            Event::Retry {
                attempts_left: true,
                ..
            }
        ));
        assert_eq!(signal, Signal::DailyLimit);
        let not_sent: Result<(), CallError> = Err(CallError::NotSent {
            endpoint: "x".into(),
            detail: "refused".into(),
        });
        assert!(matches!(
            classify(&not_sent, 9, &policy(), 0, 0.5).0,
            Event::Retry {
                attempts_left: true,
                ..
            }
        ));

        // A chain pause or a short balance may clear up, within the attempt budget.
        assert!(matches!(
            classify(&api(14004), 2, &policy(), 0, 0.5).0,
            Event::Retry {
                attempts_left: true,
                ..
            }
        ));
        assert!(matches!(
            classify(&api(14000), 3, &policy(), 0, 0.5).0,
            Event::Retry {
                attempts_left: false,
                ..
            }
        ));

        let (event, _) = classify(&api(14007), 1, &policy(), 0, 0.5);
        assert!(matches!(event, Event::Refuse { code: Some(14007), .. }), "{event:?}");
    }

    #[test]
    fn account_problems_stop_the_run() {
        for code in [11005, 12002, 11006, 12001] {
            let (event, signal) = classify(&api(code), 1, &policy(), 0, 0.5);
            assert!(matches!(signal, Signal::Stop { code: c, .. } if c == code), "{code}");
            assert!(
                matches!(
                    event,
                    Event::Retry {
                        attempts_left: true,
                        ..
                    }
                ),
                "the order itself waits"
            );
        }
    }

    #[test]
    fn retry_times_grow_with_attempts_and_stay_capped() {
        let at = |attempts| match classify(&api(14004), attempts, &policy(), 0, 0.999).0 {
            Event::Retry { until_ms, .. } => until_ms,
            other => panic!("{other:?}"),
        };
        assert!(at(1) <= 1000 && at(3) > at(1) && at(30) <= 60_000);
    }
}
