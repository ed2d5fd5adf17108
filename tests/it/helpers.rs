//! Shared set-up: a sandbox on loopback and a client pointed at it.

use std::sync::Arc;
use std::time::Duration;

use ccpayout::api::{Client, ClientConfig};
use ccpayout::sandbox::{Sandbox, SandboxConfig};
use ccpayout::util::clock::{ManualClock, SharedClock};
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

impl TestApi {
    /// A sandbox on the real clock, for tests that run the `ccpayout` binary against it: the
    /// binary signs with the real time and the sandbox settles payouts as time passes.
    pub async fn start_live(config: SandboxConfig) -> TestApi {
        let clock = ManualClock::starting_now();
        let sandbox = Sandbox::start(config, ccpayout::util::clock::system())
            .await
            .expect("sandbox starts");
        let client = client_for(
            &sandbox,
            ccpayout::util::clock::system(),
            sandbox.app_id(),
            sandbox.app_secret().clone(),
        );
        TestApi { sandbox, client, clock }
    }

    /// The environment that points the binary at this sandbox.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CCPAYOUT_API_BASE_URL".into(), self.sandbox.base_url()),
            ("CCPAYOUT_APP_ID".into(), self.sandbox.app_id().to_owned()),
            (
                "CCPAYOUT_APP_SECRET".into(),
                secrecy::ExposeSecret::expose_secret(self.sandbox.app_secret()).to_owned(),
            ),
        ]
    }
}

/// Runs the `ccpayout` binary with `args`, the sandbox's credentials and a clean environment.
pub fn run_ccpayout(api: &TestApi, args: &[&str]) -> std::process::Output {
    command(api, args).output().expect("ccpayout runs")
}

/// The `ccpayout` command with the sandbox's credentials, not yet started.
pub fn command(api: &TestApi, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ccpayout"));
    cmd.args(args)
        .env_remove("CCPAYOUT_CONFIG")
        .env_remove("CCPAYOUT_STATE_DIR")
        .env_remove("CCPAYOUT_APP_SECRET_FILE")
        .env_remove("RUST_LOG")
        .envs(api.env());
    cmd
}

/// A USDT withdrawal on TRX to [`TRON_ADDRESS`].
pub fn trx_withdraw(order_id: &str, amount: &str) -> ccpayout::api::types::NetworkWithdrawRequest {
    ccpayout::api::types::NetworkWithdrawRequest {
        order_id: order_id.into(),
        coin_id: USDT,
        chain: "TRX".into(),
        address: TRON_ADDRESS.into(),
        memo: None,
        amount: amount.into(),
        merchant_pay_network_fee: None,
        network_fee_inquiry_id: None,
        notify_url: None,
    }
}
