//! The CCPayment API client.
//!
//! - [`sign`]: v2 HMAC-SHA256 and v1 SHA-256 signatures over exact bytes (pure).
//! - [`codes`]: the result-code table and the [`ErrorClass`] the engine acts on (pure).
//! - [`types`]: wire types of requests and replies, shared with the sandbox.
//! - [`error`]: [`CallError`], which separates "not sent" from "may have been processed".
//! - [`lenient`]: tolerant decoding of replies: numbers or numeric strings, one odd record left out.
//! - [`client`]: [`Client`], the paced, signed calls over a [`Transport`] (HTTP, or the
//!   sandbox's world in process).
//! - [`payouts`]: [`Payouts`], what the engine asks, implemented by the client.
//! - [`pacing`]: the one [`Pacing`] every request passes: pause gate, quotas, daily budget.

pub mod client;
pub mod codes;
pub mod error;
pub mod lenient;
pub mod pacing;
pub mod payouts;
pub mod sign;
pub mod types;

pub use client::{ApiVersion, Client, ClientConfig, Endpoint, HttpTransport, NoParams, RawReply, Transport};
pub use codes::ErrorClass;
pub use error::{ApiError, CallError};
pub use pacing::Pacing;
pub use payouts::{BatchAnswer, BatchCall, Payouts};

/// Installs the process-wide rustls crypto provider (ring) once. Every HTTP client in the crate
/// is built after calling this; a second call is a no-op.
pub fn ensure_crypto_provider() {
    // `install_default` fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
