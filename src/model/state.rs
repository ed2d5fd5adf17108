//! The order state machine: every state an order can be in, every event that moves it, and one
//! pure transition function that is the only way from one to the other.
//!
//! ```text
//!            Release{approval}                      Approve
//!  Planned ──────────────────▶ AwaitingApproval ─────────────┐
//!     │ Release{no approval}          │ Cancel               ▼
//!     └───────────────────────────────┼──────────────────▶ Queued ◀──────── Wake (due) ── Deferred
//!                                     ▼                  │  │  ▲ NotFound                  ▲
//!                                 Cancelled ◀── Cancel ──┘  │  │ (resend, same orderId)   │ Retry (not created:
//!                                                     Send  │  │                          │ 11004, 11009, 14004,
//!                                                           ▼  │                          │ not sent, ...)
//!   Rejected ◀── Refuse (permanent code, ── Submitting{attempt} ──────────────────────────┘
//!                or attempts exhausted)        │        │ Ambiguous (timeout, reset, 5xx,
//!                                     Created  │        │ 11002, 11007, 11011, unknown code)
//!                                              ▼        ▼
//!                                       Submitted ◀── Unknown{attempt} ── Found (reconciled by orderId)
//!                                          │
//!                          Final(Success)  │  Final(Failed / Rejected on the dashboard)
//!                                 ▼        ▼
//!                              Success   Failed
//!
//!  Submitted, Unknown ── Aborted (CCPayment cancelled the task of a batch withdrawal) ──▶ Cancelled
//! ```
//!
//! Rules the function enforces (the money-safety rules in code):
//! - an order leaves `Submitting` or `Unknown` only on an answer about *that* orderId: created,
//!   refused without creation, found, or not found;
//! - `Unknown` goes back to `Queued` (and so to a resend with the same orderId) only on
//!   `NotFound`; nothing else makes an ambiguous order sendable again;
//! - an order that may exist at CCPayment (`Submitting`, `Unknown`, `Submitted`) can never be
//!   cancelled or rejected locally — only CCPayment cancelling its task (`Aborted`) cancels it;
//! - final states (`Success`, `Failed`, `Rejected`, `Cancelled`) accept no event.
//!
//! Pure: no I/O, no clock (times come in the events).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an order is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OrderState {
    /// Accepted into a batch; not yet released for sending.
    Planned,
    /// Waiting for someone to approve the batch's plan.
    AwaitingApproval,
    /// Ready to send.
    Queued,
    /// Not created at CCPayment; sendable again from `until_ms`.
    Deferred { until_ms: i64, reason: String },
    /// The intent to send attempt `attempt` is durable; the request may be in flight.
    Submitting { attempt: u32 },
    /// A request may have reached CCPayment but the outcome is not known; resolved by orderId.
    Unknown { attempt: u32, detail: String },
    /// CCPayment has the withdrawal; followed until it is final.
    Submitted,
    /// Paid.
    Success,
    /// CCPayment reports it failed (funds refunded) or it was rejected on the dashboard.
    Failed { reason: String },
    /// Never created: CCPayment refused it permanently, or every allowed attempt was refused.
    Rejected { code: Option<i64>, reason: String },
    /// Cancelled before anything was sent.
    Cancelled,
}

/// The kind of a state, without data: for indexes, counts and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    Planned = 1,
    AwaitingApproval = 2,
    Queued = 3,
    Deferred = 4,
    Submitting = 5,
    Unknown = 6,
    Submitted = 7,
    Success = 8,
    Failed = 9,
    Rejected = 10,
    Cancelled = 11,
}

impl StateKind {
    /// Every kind, in lifecycle order.
    pub const ALL: [StateKind; 11] = [
        StateKind::Planned,
        StateKind::AwaitingApproval,
        StateKind::Queued,
        StateKind::Deferred,
        StateKind::Submitting,
        StateKind::Unknown,
        StateKind::Submitted,
        StateKind::Success,
        StateKind::Failed,
        StateKind::Rejected,
        StateKind::Cancelled,
    ];

    /// The snake_case name used in reports, logs and the store's index.
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Planned => "planned",
            StateKind::AwaitingApproval => "awaiting_approval",
            StateKind::Queued => "queued",
            StateKind::Deferred => "deferred",
            StateKind::Submitting => "submitting",
            StateKind::Unknown => "unknown",
            StateKind::Submitted => "submitted",
            StateKind::Success => "success",
            StateKind::Failed => "failed",
            StateKind::Rejected => "rejected",
            StateKind::Cancelled => "cancelled",
        }
    }

    /// The byte the store's index uses.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind for an index byte.
    pub fn from_code(code: u8) -> Option<StateKind> {
        StateKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// No event changes a final order.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StateKind::Success | StateKind::Failed | StateKind::Rejected | StateKind::Cancelled
        )
    }

    /// How many of `counts` (orders by state) are final.
    pub fn finals(counts: &std::collections::BTreeMap<StateKind, u64>) -> u64 {
        counts.iter().filter(|(k, _)| k.is_final()).map(|(_, n)| n).sum()
    }

    /// The order may exist at CCPayment, so it must be resolved there before anything else.
    pub fn may_exist_remotely(self) -> bool {
        matches!(self, StateKind::Submitting | StateKind::Unknown | StateKind::Submitted)
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OrderState {
    pub fn kind(&self) -> StateKind {
        match self {
            OrderState::Planned => StateKind::Planned,
            OrderState::AwaitingApproval => StateKind::AwaitingApproval,
            OrderState::Queued => StateKind::Queued,
            OrderState::Deferred { .. } => StateKind::Deferred,
            OrderState::Submitting { .. } => StateKind::Submitting,
            OrderState::Unknown { .. } => StateKind::Unknown,
            OrderState::Submitted => StateKind::Submitted,
            OrderState::Success => StateKind::Success,
            OrderState::Failed { .. } => StateKind::Failed,
            OrderState::Rejected { .. } => StateKind::Rejected,
            OrderState::Cancelled => StateKind::Cancelled,
        }
    }

    pub fn is_final(&self) -> bool {
        self.kind().is_final()
    }
}

/// The final status CCPayment reports for a withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinalStatus {
    Success,
    Failed { reason: String },
}

/// Something that happened to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The batch is released: to approval, or straight to the queue.
    Release { needs_approval: bool },
    /// The batch's plan was approved.
    Approve,
    /// The operator cancelled what has not been sent.
    Cancel,
    /// About to send the next attempt; the resulting state is persisted before the request.
    Send,
    /// CCPayment created the withdrawal.
    Created,
    /// The outcome of a send is unknown: the request may have been processed.
    Ambiguous { detail: String },
    /// Not created, and trying again later may work (rate limit, daily cap, chain paused, not
    /// sent at all). `attempts_left` false turns this into a rejection.
    Retry {
        until_ms: i64,
        reason: String,
        attempts_left: bool,
        code: Option<i64>,
    },
    /// Not created, and it never will be as it is.
    Refuse { code: Option<i64>, reason: String },
    /// Reconciliation found the withdrawal at CCPayment.
    Found,
    /// Reconciliation: CCPayment has no withdrawal with this orderId.
    NotFound,
    /// A deferred order's time has come.
    Wake,
    /// CCPayment reports a final status.
    Final(FinalStatus),
    /// The order is being held back without having been sent (chain in maintenance at release).
    Hold { until_ms: i64, reason: String },
    /// CCPayment cancelled the order's task in a batch withdrawal (`abortBatchWithdraw` listed
    /// it as cancelled, or the batch's task list shows it cancelled): CCPayment's own answer
    /// that it will not be paid.
    Aborted,
}

impl Event {
    /// A short name for logs and the audit trail.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Release { .. } => "release",
            Event::Approve => "approve",
            Event::Cancel => "cancel",
            Event::Send => "send",
            Event::Created => "created",
            Event::Ambiguous { .. } => "ambiguous",
            Event::Retry { .. } => "retry",
            Event::Refuse { .. } => "refuse",
            Event::Found => "found",
            Event::NotFound => "not_found",
            Event::Wake => "wake",
            Event::Final(_) => "final",
            Event::Hold { .. } => "hold",
            Event::Aborted => "aborted",
        }
    }
}

/// An event that does not apply to the state it was given. Reaching this is a bug in the
/// caller; the state is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event} does not apply to an order in state {state}")]
pub struct InvalidTransition {
    pub state: StateKind,
    pub event: &'static str,
}

/// The transition function. `attempts` is the number of sends so far; it is returned updated.
pub fn transition(state: &OrderState, attempts: u32, event: &Event) -> Result<(OrderState, u32), InvalidTransition> {
    use OrderState as S;
    let invalid = || InvalidTransition {
        state: state.kind(),
        event: event.name(),
    };
    let next = match (state, event) {
        (S::Planned, Event::Release { needs_approval: true }) => S::AwaitingApproval,
        (S::Planned, Event::Release { needs_approval: false }) | (S::AwaitingApproval, Event::Approve) => S::Queued,

        (S::Planned | S::AwaitingApproval | S::Queued | S::Deferred { .. }, Event::Cancel) => S::Cancelled,

        (S::Queued, Event::Hold { until_ms, reason }) => S::Deferred {
            until_ms: *until_ms,
            reason: reason.clone(),
        },
        (S::Deferred { .. }, Event::Wake) => S::Queued,

        (S::Queued, Event::Send) => return Ok((S::Submitting { attempt: attempts + 1 }, attempts + 1)),

        (S::Submitting { .. }, Event::Created) | (S::Unknown { .. }, Event::Found) => S::Submitted,
        (S::Submitting { attempt }, Event::Ambiguous { detail }) => S::Unknown {
            attempt: *attempt,
            detail: detail.clone(),
        },
        (
            S::Submitting { .. },
            Event::Retry {
                until_ms,
                reason,
                attempts_left: true,
                ..
            },
        ) => S::Deferred {
            until_ms: *until_ms,
            reason: reason.clone(),
        },
        (
            S::Submitting { .. },
            Event::Retry {
                reason,
                attempts_left: false,
                code,
                ..
            },
        ) => S::Rejected {
            code: *code,
            reason: format!("gave up after {attempts} attempts: {reason}"),
        },
        (S::Submitting { .. }, Event::Refuse { code, reason }) => S::Rejected {
            code: *code,
            reason: reason.clone(),
        },
        // Only CCPayment saying it has no such order makes an ambiguous order sendable again.
        (S::Unknown { .. }, Event::NotFound) => S::Queued,
        // A later ambiguous answer while reconciling keeps the order unknown.
        (S::Unknown { attempt, .. }, Event::Ambiguous { detail }) => S::Unknown {
            attempt: *attempt,
            detail: detail.clone(),
        },

        (S::Submitted, Event::Final(FinalStatus::Success)) => S::Success,
        (S::Submitted, Event::Final(FinalStatus::Failed { reason })) => S::Failed { reason: reason.clone() },
        // A status query that already shows the final state of an order we had not yet seen
        // created (reconciliation found it finished).
        (S::Unknown { .. }, Event::Final(FinalStatus::Success)) => S::Success,
        (S::Unknown { .. }, Event::Final(FinalStatus::Failed { reason })) => S::Failed { reason: reason.clone() },
        // A task of a batch withdrawal that CCPayment itself cancelled.
        (S::Submitted | S::Unknown { .. }, Event::Aborted) => S::Cancelled,
        _ => return Err(invalid()),
    };
    Ok((next, attempts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_states() -> Vec<OrderState> {
        vec![
            OrderState::Planned,
            OrderState::AwaitingApproval,
            OrderState::Queued,
            OrderState::Deferred {
                until_ms: 5,
                reason: "r".into(),
            },
            OrderState::Submitting { attempt: 2 },
            OrderState::Unknown {
                attempt: 2,
                detail: "d".into(),
            },
            OrderState::Submitted,
            OrderState::Success,
            OrderState::Failed { reason: "f".into() },
            OrderState::Rejected {
                code: Some(14007),
                reason: "r".into(),
            },
            OrderState::Cancelled,
        ]
    }

    fn all_events() -> Vec<Event> {
        vec![
            Event::Release { needs_approval: true },
            Event::Release { needs_approval: false },
            Event::Approve,
            Event::Cancel,
            Event::Send,
            Event::Created,
            Event::Ambiguous {
                detail: "timeout".into(),
            },
            Event::Retry {
                until_ms: 9,
                reason: "11004".into(),
                attempts_left: true,
                code: Some(11004),
            },
            Event::Retry {
                until_ms: 9,
                reason: "11004".into(),
                attempts_left: false,
                code: Some(11004),
            },
            Event::Refuse {
                code: Some(14007),
                reason: "bad address".into(),
            },
            Event::Found,
            Event::NotFound,
            Event::Wake,
            Event::Final(FinalStatus::Success),
            Event::Final(FinalStatus::Failed { reason: "chain".into() }),
            Event::Hold {
                until_ms: 9,
                reason: "maintenance".into(),
            },
            Event::Aborted,
        ]
    }

    /// The expected kind after each (state, event), or None when the event must be refused.
    fn expected(state: StateKind, event: &Event) -> Option<StateKind> {
        use StateKind as K;
        Some(match (state, event) {
            (K::Planned, Event::Release { needs_approval: true }) => K::AwaitingApproval,
            (K::Planned, Event::Release { needs_approval: false }) => K::Queued,
            (K::AwaitingApproval, Event::Approve) => K::Queued,
            (K::Planned | K::AwaitingApproval | K::Queued | K::Deferred, Event::Cancel) => K::Cancelled,
            (K::Queued, Event::Hold { .. }) => K::Deferred,
            (K::Deferred, Event::Wake) => K::Queued,
            (K::Queued, Event::Send) => K::Submitting,
            (K::Submitting, Event::Created) => K::Submitted,
            (K::Submitting, Event::Ambiguous { .. }) => K::Unknown,
            (
                K::Submitting,
                Event::Retry {
                    attempts_left: true, ..
                },
            ) => K::Deferred,
            (
                K::Submitting,
                Event::Retry {
                    attempts_left: false, ..
                },
            ) => K::Rejected,
            (K::Submitting, Event::Refuse { .. }) => K::Rejected,
            (K::Unknown, Event::Found) => K::Submitted,
            (K::Unknown, Event::NotFound) => K::Queued,
            (K::Unknown, Event::Ambiguous { .. }) => K::Unknown,
            (K::Unknown, Event::Final(FinalStatus::Success)) => K::Success,
            (K::Unknown, Event::Final(FinalStatus::Failed { .. })) => K::Failed,
            (K::Submitted, Event::Final(FinalStatus::Success)) => K::Success,
            (K::Submitted, Event::Final(FinalStatus::Failed { .. })) => K::Failed,
            (K::Submitted | K::Unknown, Event::Aborted) => K::Cancelled,
            _ => return None,
        })
    }

    #[test]
    fn every_state_and_event_pair_is_decided_exactly_as_drawn() {
        let mut checked = 0;
        for state in all_states() {
            for event in all_events() {
                let result = transition(&state, 2, &event);
                match expected(state.kind(), &event) {
                    Some(kind) => {
                        let (next, _) = result.unwrap_or_else(|e| panic!("{e}"));
                        assert_eq!(next.kind(), kind, "{state:?} + {event:?}");
                    }
                    None => assert_eq!(
                        result,
                        Err(InvalidTransition {
                            state: state.kind(),
                            event: event.name()
                        }),
                        "{state:?} + {event:?} must be refused"
                    ),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 11 * 17);
    }

    #[test]
    fn final_states_accept_nothing() {
        for state in all_states().into_iter().filter(OrderState::is_final) {
            for event in all_events() {
                assert!(transition(&state, 1, &event).is_err(), "{state:?} + {event:?}");
            }
        }
    }

    #[test]
    fn an_order_that_may_exist_remotely_is_never_cancelled_or_resent_without_not_found() {
        for state in all_states().into_iter().filter(|s| s.kind().may_exist_remotely()) {
            assert!(transition(&state, 1, &Event::Cancel).is_err());
            assert!(transition(&state, 1, &Event::Send).is_err());
            assert!(transition(&state, 1, &Event::Wake).is_err());
        }
        // Once CCPayment may have it, only CCPayment's own answers can end it: a refusal is an
        // answer to a send (Submitting), never a local decision about an unknown or submitted
        // order.
        for state in [
            OrderState::Unknown {
                attempt: 1,
                detail: String::new(),
            },
            OrderState::Submitted,
        ] {
            assert!(
                transition(
                    &state,
                    1,
                    &Event::Refuse {
                        code: None,
                        reason: String::new()
                    }
                )
                .is_err()
            );
            let give_up = Event::Retry {
                until_ms: 0,
                reason: String::new(),
                attempts_left: false,
                code: None,
            };
            assert!(transition(&state, 1, &give_up).is_err());
        }
        // The one way back to the queue from an ambiguous send.
        let unknown = OrderState::Unknown {
            attempt: 1,
            detail: "reset".into(),
        };
        assert_eq!(transition(&unknown, 1, &Event::NotFound).unwrap().0, OrderState::Queued);
    }

    #[test]
    fn sends_count_attempts_and_exhaustion_rejects_with_the_count() {
        let (s1, n) = transition(&OrderState::Queued, 0, &Event::Send).unwrap();
        assert_eq!((s1.clone(), n), (OrderState::Submitting { attempt: 1 }, 1));
        let retry = Event::Retry {
            until_ms: 100,
            reason: "11004 RateLimit".into(),
            attempts_left: true,
            code: Some(11004),
        };
        let (s2, n) = transition(&s1, n, &retry).unwrap();
        assert_eq!(
            s2,
            OrderState::Deferred {
                until_ms: 100,
                reason: "11004 RateLimit".into()
            }
        );
        let (s3, n) = transition(&s2, n, &Event::Wake).unwrap();
        let (s4, n) = transition(&s3, n, &Event::Send).unwrap();
        assert_eq!((s4.clone(), n), (OrderState::Submitting { attempt: 2 }, 2));
        let give_up = Event::Retry {
            until_ms: 0,
            reason: "14000 balance".into(),
            attempts_left: false,
            code: Some(14000),
        };
        let (s5, _) = transition(&s4, n, &give_up).unwrap();
        assert_eq!(
            s5,
            OrderState::Rejected {
                code: Some(14000),
                reason: "gave up after 2 attempts: 14000 balance".into()
            }
        );
    }

    #[test]
    fn kinds_round_trip_through_their_codes_and_serde() {
        for kind in StateKind::ALL {
            assert_eq!(StateKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(StateKind::from_code(0), None);
        for state in all_states() {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(serde_json::from_str::<OrderState>(&json).unwrap(), state);
        }
    }
}
