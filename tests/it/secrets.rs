//! The app secret never reaches a log line (at trace level), an error message or stdout.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use ccpayout::api::types::*;
use ccpayout::sandbox::{Faults, SandboxConfig};
use secrecy::SecretString;

use crate::helpers::*;

const SECRET: &str = "s3cr3t-that-must-never-leak-7f2a";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of the whole test process at trace level, captured by a global subscriber.
/// A global one rather than a per-thread default: tracing caches per call site whether anyone
/// listens, and with tests on many threads a thread-local subscriber can miss events.
fn captured_logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in the tests");
        captured
    })
}

#[tokio::test]
async fn the_secret_is_in_no_log_line_and_no_error() {
    let captured = captured_logs();

    let config = SandboxConfig {
        app_secret: SecretString::from(SECRET),
        ..SandboxConfig::default()
    };
    let api = TestApi::start(config).await;
    let mut errors = Vec::new();

    api.client.get_coin_list().await.unwrap();
    let req = NetworkWithdrawRequest {
        order_id: "secret-1".into(),
        coin_id: USDT,
        chain: "TRX".into(),
        address: TRON_ADDRESS.into(),
        memo: None,
        amount: "3".into(),
        merchant_pay_network_fee: None,
        network_fee_inquiry_id: None,
        notify_url: None,
    };
    api.client.apply_app_withdraw_to_network(&req).await.unwrap();
    errors.push(api.client.apply_app_withdraw_to_network(&req).await.unwrap_err());
    api.sandbox.set_faults(Faults {
        drop_after_commit: 1.0,
        ..Faults::default()
    });
    errors.push(
        api.client
            .apply_app_withdraw_to_network(&NetworkWithdrawRequest {
                order_id: "secret-2".into(),
                ..req.clone()
            })
            .await
            .unwrap_err(),
    );
    // A wrong secret on the client side must not leak the right one, nor itself.
    let wrong = api.client_with(api.clock.clone(), api.sandbox.app_id(), "wrong-secret-value-91c");
    errors.push(wrong.get_coin_list().await.unwrap_err());

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("TRACE"), "trace-level logging was captured");
    assert!(logs.contains("secret-1"), "the calls were logged");
    for text in [logs.clone()]
        .into_iter()
        .chain(errors.iter().map(|e| format!("{e} {e:?}")))
        .chain([format!("{:?}", api.client), format!("{:?}", api.sandbox.app_secret())])
    {
        assert!(!text.contains(SECRET), "secret leaked in: {text}");
        assert!(!text.contains("wrong-secret-value-91c"), "secret leaked in: {text}");
    }
}
