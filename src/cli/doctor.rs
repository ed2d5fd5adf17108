//! `ccpayout doctor`: probe the configured account (read-only), print one line per check, and
//! keep what was learnt in the state store.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{CliError, api_client, load_config};
use crate::app::doctor::{self, AccountFindings, Diagnosis};
use crate::app::{Request, Verdict};
use crate::util::clock;

/// How `doctor` ended, as an exit code: 0 every check passed (warnings included), 1 a check
/// failed, 2 CCPayment could not be reached at all. (78, a configuration error, comes from
/// loading the configuration.)
pub fn exit_code(diagnosis: &Diagnosis) -> u8 {
    if !diagnosis.reached {
        2
    } else if diagnosis.failed() {
        1
    } else {
        0
    }
}

/// `ccpayout doctor [--json] [--sandbox]`.
pub async fn doctor(
    config_path: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    json: bool,
    sandbox: bool,
) -> Result<u8, CliError> {
    let config = load_config(config_path)?;
    let (client, _sandbox) = api_client(&config, sandbox, None).await?;
    // The doctor's requests pass the same pacing as everything else.
    let client = crate::app::wiring::paced_client(&config, client, clock::system());
    let diagnosis = doctor::examine(&config, &client, &clock::system()).await;
    let code = exit_code(&diagnosis);

    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "checks": diagnosis.checks,
            "findings": diagnosis.findings,
            "reached": diagnosis.reached,
            "exit_code": code,
        });
        serde_json::to_writer_pretty(&mut out, &value).map_err(anyhow::Error::from)?;
        writeln!(out).map_err(anyhow::Error::from)?;
    } else {
        out.write_all(doctor::render(&diagnosis).as_bytes())
            .map_err(anyhow::Error::from)?;
    }
    drop(out);

    // What was learnt goes to the store (through the daemon when one holds it), unless nothing
    // could be asked.
    if diagnosis.reached {
        let dir = match state_dir {
            Some(dir) => dir,
            None => super::submit::default_state_dir(sandbox)?,
        };
        match record(&config, &dir, diagnosis.findings.clone()).await {
            Ok(text) => eprint!("{text}"),
            Err(e) => eprintln!("warning: the findings were not recorded in {}: {e}", dir.display()),
        }
    }
    Ok(code)
}

/// Hands the findings to the one operator: the running daemon's, or one over the store.
async fn record(config: &crate::config::Config, dir: &Path, findings: AccountFindings) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let reply = super::operator_reply(dir, Request::Learned { findings }, || Ok(config.clone()))
        .await
        .map_err(|e| e.to_string())?;
    match reply.verdict {
        Verdict::Done => Ok(reply.shown()),
        _ => Err(reply.shown().trim_end().to_owned()),
    }
}
