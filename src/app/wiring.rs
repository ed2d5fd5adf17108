//! Wiring: the one pacing, the client through it and the engine over the store, built from the
//! configuration and what the store kept of the last run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::doctor::ACCOUNT;
use crate::api::pacing::backoff::{Backoff, Jitter};
use crate::api::pacing::gate::DayClock;
use crate::api::pacing::{PacingSettings, Restored};
use crate::api::{Client, Pacing};
use crate::config::Config;
use crate::engine::outcome::RetryPolicy;
use crate::engine::{BUDGET, Engine, EngineSettings, PAUSE};
use crate::store::{Store, StoreError};
use crate::util::clock::SharedClock;

/// The simulated account of `--sandbox` runs, kept beside their state store.
pub const SANDBOX_STATE_FILE: &str = "sandbox-account.json";

/// The pace of `[limits]`.
pub fn pacing_settings(config: &Config) -> PacingSettings {
    let limits = &config.limits;
    PacingSettings {
        rate_per_second: limits.rate_per_second,
        burst: limits.burst,
        read_rate_per_second: limits.read_rate_per_second,
        daily_budget: limits.daily_request_budget,
        day: DayClock {
            reset_offset_ms: limits.daily_reset_offset_ms,
            day_length_ms: limits.day_length_ms,
        },
        max_in_flight: limits.concurrency,
    }
}

/// What the store kept of the last run's pacing: the pause (11009 until the reset, the kill
/// switch) and the daily budget's counter.
pub fn restored_pacing(store: &Store) -> Result<Restored, StoreError> {
    Ok(Restored {
        pause: store.get(&PAUSE)?.unwrap_or_default(),
        budget: store.get(&BUDGET)?,
    })
}

/// A seed from the system's time, for the jitter of one process.
pub fn entropy_seed() -> u64 {
    Jitter::from_entropy().next_u64()
}

/// The engine's schedules for `config`. `sandbox` shortens the first status check to suit the
/// simulator, which settles payouts in seconds.
pub fn engine_settings(config: &Config, sandbox: bool, seed: u64) -> EngineSettings {
    let limits = &config.limits;
    let first_check = if sandbox {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(limits.track_first_check_secs)
    };
    EngineSettings {
        retry: RetryPolicy {
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(300),
            },
            max_attempts: limits.max_attempts,
        },
        track_first_delay: first_check,
        track_backoff: Backoff {
            base: first_check,
            cap: Duration::from_secs(limits.track_max_interval_secs),
        },
        reconcile_backoff: Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        },
        not_found_confirm: Duration::from_secs(limits.not_found_confirm_secs),
        seed,
    }
}

/// One process's connection to CCPayment and the engine: every request of the process, the
/// engine's and every preflight's, passes `pacing`.
pub struct Wired {
    pub pacing: Arc<Pacing>,
    /// The client through the pacing.
    pub client: Client,
    pub engine: Arc<Engine>,
}

/// Wires `client` (not yet paced) to a pacing resumed from `store` and builds the engine.
/// `seed` seeds every random draw of the pacing and the engine ([`entropy_seed`] in the
/// product; the simulation's own seed there, so a run replays exactly).
pub fn wire(
    config: &Config,
    store: &Arc<Store>,
    client: Client,
    clock: SharedClock,
    sandbox: bool,
    seed: u64,
) -> Result<Wired, StoreError> {
    let pacing = Arc::new(Pacing::new(
        &pacing_settings(config),
        restored_pacing(store)?,
        clock.clone(),
        seed,
    ));
    let client = match stored_body_form(store)? {
        Some(form) => client.sending_no_params_as(form),
        None => client,
    };
    let client = client.paced(pacing.clone());
    let engine = Arc::new(Engine::new(
        store.clone(),
        Arc::new(client.clone()),
        pacing.clone(),
        clock,
        engine_settings(config, sandbox, seed.rotate_left(17)),
    ));
    Ok(Wired { pacing, client, engine })
}

/// The form `doctor` found the account accepts for parameter-less calls (R5), when the store
/// has one: every process sends them so.
pub fn stored_body_form(store: &Store) -> Result<Option<crate::api::NoParams>, StoreError> {
    Ok(store.get(&ACCOUNT)?.and_then(|found| found.no_params))
}

/// A client paced by `config` alone, for work without a store (`check`): a fresh pacing, no
/// pause restored.
pub fn paced_client(config: &Config, client: Client, clock: SharedClock) -> Client {
    let pacing = Pacing::new(&pacing_settings(config), Restored::default(), clock, entropy_seed());
    client.paced(Arc::new(pacing))
}

/// The notice dispatcher of `[[notify]]`, when a target is configured: from here on the store
/// records notices for the targets, and the dispatcher sends them. `None` without targets (the
/// store records nothing).
pub fn notices(
    config: &Config,
    store: &Arc<Store>,
    clock: SharedClock,
) -> anyhow::Result<Option<Arc<crate::notify::Dispatcher>>> {
    if config.notify.is_empty() {
        return Ok(None);
    }
    let reports = reports_dir(config, store.state_dir());
    crate::notify::Dispatcher::new(
        store.clone(),
        config.notify.clone(),
        clock,
        Some(reports),
        config.console.clone(),
    )
    .map(|d| Some(Arc::new(d)))
}

/// Where reports go: `reports.dir`, else `<state dir>/reports`.
pub fn reports_dir(config: &Config, state_dir: &Path) -> PathBuf {
    config.reports.dir.clone().unwrap_or_else(|| state_dir.join("reports"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClientConfig, NoParams};
    use crate::app::doctor::AccountFindings;
    use crate::util::clock::ManualClock;

    fn client() -> Client {
        let config = ClientConfig {
            v2_base_url: "http://127.0.0.1:9".into(),
            v1_base_url: "http://127.0.0.1:9".into(),
            app_id: "app".into(),
            app_secret: secrecy::SecretString::from("secret"),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        };
        Client::new(config, ManualClock::new(0)).expect("a client")
    }

    /// R5: the body form `doctor` recorded is the one every wired request uses.
    #[test]
    fn the_body_form_doctor_found_is_what_the_wired_client_sends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let config = Config::load(None, &|_| None).unwrap();
        let wired = wire(&config, &store, client(), ManualClock::new(0), false, 1).unwrap();
        assert_eq!(wired.client.no_params(), NoParams::Empty, "the default");
        store
            .put(
                &ACCOUNT,
                &AccountFindings {
                    no_params: Some(NoParams::Braces),
                    ..AccountFindings::default()
                },
            )
            .unwrap();
        let wired = wire(&config, &store, client(), ManualClock::new(0), false, 1).unwrap();
        assert_eq!(wired.client.no_params(), NoParams::Braces);
    }
}
