//! `ccpayout run`: start-up checks and hand-over to [`crate::daemon`].

use std::path::PathBuf;
use std::sync::Arc;

use super::{CliError, Outcome, api_client, init_logging, load_config, state_dir_or_default};
use crate::app;
use crate::config::LogFormat;
use crate::daemon::{self, DaemonError, Options};
use crate::store::Store;
use crate::util::clock;

/// The demo batch `run --sandbox` drops into its temporary inbox.
const DEMO_BATCH: &str = include_str!("../../examples/payroll.csv");

/// `ccpayout run [--inbox DIR]... [--sandbox]`.
pub async fn run(
    config_path: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    verbose: u8,
    args: super::RunArgs,
) -> Result<Outcome, CliError> {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(e) => {
            init_logging(verbose, false, "info");
            return Err(e.into());
        }
    };
    let json = match args.log_format.as_deref() {
        Some(format) => format == "json",
        None => config.daemon.log_format == LogFormat::Json,
    };
    init_logging(verbose, json, "info");

    let state_dir = state_dir_or_default(state_dir, args.sandbox)?;
    std::fs::create_dir_all(&state_dir)
        .map_err(|e| anyhow::anyhow!("cannot create the state directory {}: {e}", state_dir.display()))?;
    // The store first: a second daemon on the same state stops here, before binding anything.
    let store = Arc::new(Store::open(&state_dir).map_err(anyhow::Error::from)?);
    if !args.sandbox {
        // Missing credentials are a configuration error, found before anything starts.
        config.client_config()?;
    }
    let persist = args.sandbox.then(|| state_dir.join(app::SANDBOX_STATE_FILE));
    let (client, _sandbox) = api_client(&config, args.sandbox, persist).await?;

    let mut inboxes = args.inbox.clone();
    if args.sandbox && inboxes.is_empty() && config.daemon.inboxes.is_empty() {
        let dir = std::env::temp_dir().join(format!("ccpayout-inbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        // Written beside the inbox under an ignored name, then renamed in: the producer contract.
        let part = dir.join(".payroll.csv.part");
        std::fs::write(&part, DEMO_BATCH).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", part.display()))?;
        std::fs::rename(&part, dir.join("payroll.csv")).map_err(|e| anyhow::anyhow!("cannot rename: {e}"))?;
        eprintln!(
            "sandbox inbox: {}\n  a demo batch (examples/payroll.csv) is in it; drop more with:\n  cp FILE {}/.x.part && mv {}/.x.part {}/NAME.csv",
            dir.display(),
            dir.display(),
            dir.display(),
            dir.display()
        );
        inboxes.push(dir);
    }
    let mut config = config;
    if args.sandbox
        && let Some(addr) = config.daemon.metrics_listen.as_mut()
        && addr.to_string() == crate::config::DEFAULT_METRICS_LISTEN
    {
        // A demo must not fail because the production port is taken; the log says which port.
        addr.set_port(0);
    }
    let options = Options {
        inboxes,
        sandbox: args.sandbox,
    };
    // The signal handlers are in place before the daemon says READY=1: a SIGTERM right after it
    // stops the daemon cleanly instead of killing it. A second signal quits at once.
    let first = daemon::shutdown_signal();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        first.await;
        let _ = stop_tx.send(());
        daemon::shutdown_signal().await;
        eprintln!("second signal: quitting at once; the next start reconciles what was in flight");
        std::process::exit(130);
    });
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    match daemon::run(config, store, &state_dir, client, clock::system(), options, shutdown).await {
        Ok(()) => Ok(Outcome::Success),
        Err(DaemonError::Config(message)) => Err(crate::config::ConfigError {
            path: None,
            problems: vec![message],
        }
        .into()),
        Err(e) => Err(anyhow::Error::from(e).into()),
    }
}
