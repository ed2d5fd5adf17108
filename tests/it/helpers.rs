//! Shared set-up: a sandbox on loopback and a client pointed at it.

use std::sync::Arc;
use std::time::Duration;

use ccpayout::api::{Client, ClientConfig};
use ccpayout::clock::{ManualClock, SharedClock};
use ccpayout::sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;

/// A running sandbox with a client for it, both on one manual clock that starts at the real
/// time (so the clock only moves when a test says so).
pub struct TestApi {
    pub sandbox: Sandbox,
    pub client: Client,
    pub clock: Arc<ManualClock>,
}

impl TestApi {
    /// A sandbox with the demo catalogue and `config`, and a client with the right credentials.
    pub async fn start(config: SandboxConfig) -> TestApi {
        let clock = ManualClock::starting_now();
        let sandbox = Sandbox::start(config, clock.clone()).await.expect("sandbox starts");
        let client = client_for(&sandbox, clock.clone(), sandbox.app_id(), sandbox.app_secret().clone());
        TestApi { sandbox, client, clock }
    }

    /// The demo sandbox.
    pub async fn demo() -> TestApi {
        TestApi::start(SandboxConfig::default()).await
    }

    /// A client for this sandbox with other credentials or another clock.
    pub fn client_with(&self, clock: SharedClock, app_id: &str, secret: &str) -> Client {
        client_for(&self.sandbox, clock, app_id, SecretString::from(secret.to_owned()))
    }

    /// Moves time past the settle delay and settles everything due.
    pub fn settle(&self, by: Duration) {
        self.clock.advance(by);
        self.sandbox.settle_due();
    }
}

pub fn client_for(sandbox: &Sandbox, clock: SharedClock, app_id: &str, secret: SecretString) -> Client {
    let config = ClientConfig {
        v2_base_url: sandbox.base_url(),
        v1_base_url: sandbox.base_url(),
        app_id: app_id.to_owned(),
        app_secret: secret,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    };
    Client::new(config, clock).expect("client builds")
}

/// A valid POLYGON (EVM) address.
pub const EVM_ADDRESS: &str = "0xBb9C4e7F3687aca1AE2828c18f9E3ae067F569FE";
/// A valid TRON address.
pub const TRON_ADDRESS: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
/// A valid XRP address.
pub const XRP_ADDRESS: &str = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh";
/// Coin ids of the demo catalogue.
pub const USDT: u64 = 1280;
pub const MATIC: u64 = 1329;
