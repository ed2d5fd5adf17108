//! The `ccpayout` command line: argument parsing, logging set-up, dispatch, and the mapping of
//! outcomes to exit codes. Each command is a small function over the library.
//!
//! Exit codes (also in `--help`): 0 success; 1 the work finished but something was refused or
//! failed (for `api`: CCPayment answered an error code); 2 usage or runtime error; 78
//! configuration error.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use crate::api::types::{Envelope, method};
use crate::api::{CallError, Client, Endpoint};
use crate::config::{self, Config, ConfigError};
use crate::daemon::shutdown_signal;
use crate::daemon::socket::Request;
use crate::sandbox::{self, Faults, RateLimit, Readings, Sandbox, SandboxConfig};
use crate::util::clock;

mod doctor;
pub mod manual;
mod retry;
mod run;
mod submit;

const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   finished, but CCPayment refused a call or rows failed or were refused
  2   usage or runtime error (network, files, a reply that cannot be trusted)
  78  configuration error (config file, job files, credentials, environment)
  130 `run` stopped by a second signal (without waiting for requests in flight)

Credentials come from the environment (CCPAYOUT_API_BASE_URL, CCPAYOUT_APP_ID,
CCPAYOUT_APP_SECRET or CCPAYOUT_APP_SECRET_FILE) or the config file; the app secret
is never printed or logged.";

/// ccpayout pays batches of people through the CCPayment API, exactly once each.
#[derive(Debug, Parser)]
#[command(name = "ccpayout", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = config::ENV_CONFIG, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Folder of the state store and the reports. Default: $STATE_DIRECTORY under systemd, else
    /// $XDG_STATE_HOME/ccpayout or ~/.local/state/ccpayout (with a `sandbox` subfolder for
    /// --sandbox runs).
    #[arg(long, global = true, env = "CCPAYOUT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// More log output on stderr: -v info, -vv debug, -vvv trace. RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a batch file and show what paying it would do. Moves no money.
    ///
    /// Reads the file (.csv, .json or .jsonl), checks every row, asks CCPayment for the coin and
    /// chain lists, fee quotes, balances and (for batches up to preflight.remote_checks_max_rows)
    /// each recipient, applies the policy, and prints the plan with its digest. Exit 0 when
    /// every row is payable, 1 when some rows are refused or held or the file is not a valid
    /// batch.
    #[command(after_help = EXIT_CODES)]
    Check(CheckArgs),

    /// Pay a batch file: check it, send every payable row exactly once, follow each payout to
    /// its final status, and write the reports.
    ///
    /// The same file again (same contents) resumes its batch instead of paying twice; Ctrl-C
    /// stops new sends and leaves a resumable state. Exit 0 when every row succeeded, 1 when
    /// some failed or were refused, 2 when interrupted or stopped by an error every order would
    /// meet (credentials, IP whitelist, clock).
    #[command(after_help = EXIT_CODES)]
    Submit(SubmitArgs),

    /// Run the daemon: watch inbox folders, run scheduled jobs, pay, track, report.
    ///
    /// Resumes every open batch in the store (after reconciling anything in flight), then
    /// claims each batch file renamed into an inbox, pays it exactly once and archives it in
    /// `done/` beside its reports (or in `rejected/` with an error report). `status`,
    /// `approve`, `cancel`, `pause` and `resume` reach it through its control socket. SIGTERM
    /// or Ctrl-C drains and exits 0; a second signal exits at once.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),

    /// Show batches, one batch (by name or id prefix) or one order (by order_id).
    Status {
        /// A batch name or id prefix, or an order_id.
        target: Option<String>,
        /// Look at the state of `--sandbox` runs.
        #[arg(long)]
        sandbox: bool,
    },

    /// Approve a batch that needs approval, binding to the exact plan digest `check`/`status` showed
    /// (or its recipient review's digest). The approval is your OS user's, or the key's with --sign-with.
    Approve {
        /// A batch name or id prefix.
        batch: String,
        /// The plan digest (or recipient review digest) being approved; any other digest is refused.
        #[arg(long)]
        digest: String,
        /// Sign the approval with this OpenSSH private key (namespace ccpayout-approval); it counts
        /// for the key's principal in policy.approver_signers. A key with a passphrase is signed by
        /// ssh-keygen, which asks for it.
        #[arg(long, value_name = "KEY")]
        sign_with: Option<PathBuf>,
        /// A batch of `--sandbox` runs.
        #[arg(long)]
        sandbox: bool,
    },

    /// List the recipient registry: every destination a payout succeeded to, and each payee's.
    Recipients {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: RecipientsFormat,
        /// The registry of `--sandbox` runs.
        #[arg(long)]
        sandbox: bool,
    },

    /// Cancel every order of a batch that has not been sent. Orders already sent finish.
    Cancel {
        /// A batch name or id prefix.
        batch: String,
        /// A batch of `--sandbox` runs.
        #[arg(long)]
        sandbox: bool,
    },

    /// Stop all submission (kill switch); persisted until `ccpayout resume`.
    Pause {
        /// Why, shown by `status`.
        #[arg(long)]
        reason: Option<String>,
        /// The state of `--sandbox` runs.
        #[arg(long)]
        sandbox: bool,
    },

    /// Lift the kill switch set by `ccpayout pause`.
    Resume {
        /// The state of `--sandbox` runs.
        #[arg(long)]
        sandbox: bool,
    },

    /// Print a one-time sign-in link to the running daemon's web console, for your OS user.
    ///
    /// The daemon serves the console when its configuration has `[console] enabled = true`.
    /// The link works once, within 5 minutes, and starts a session that ends after
    /// console.idle_timeout_mins without a request. Approvals and other actions in the console
    /// are recorded under the OS user who ran this command.
    Console {
        /// Also open the link in the desktop's browser (xdg-open, or open on macOS).
        #[arg(long)]
        open: bool,
        /// The daemon of `--sandbox` runs.
        #[arg(long)]
        sandbox: bool,
    },

    /// Write a batch's reports again from the store (result CSV and JSON, summary JSON).
    Report {
        /// A batch name or id prefix.
        batch: String,
        /// A batch of `--sandbox` runs.
        #[arg(long)]
        sandbox: bool,
    },

    /// Write a new batch file of a finished batch's failed and rejected rows, each under a new
    /// order_id, to check and submit like any other file.
    ///
    /// Each row keeps its columns and gets the order_id ORDER~r1 (ORDER~r2 for a retry of
    /// ORDER~r1), with the id it retries in the original_order_id column. Refused and duplicate
    /// rows and cancelled orders are left for a person. The file has the batch's format and is
    /// written in the current folder (payroll.csv gives payroll.retry1.csv) unless --out names
    /// it; an existing file is never replaced. Nothing is sent. Exit 0 when the file was written
    /// or nothing failed, 1 when the batch is not finished or a row's retry id would be too long
    /// (the others are written), 2 when the file exists.
    #[command(after_help = EXIT_CODES)]
    Retry {
        /// A batch name or id prefix.
        batch: String,
        /// Where to write the retry file (its extension must match the batch's format).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// A batch of `--sandbox` runs.
        #[arg(long)]
        sandbox: bool,
    },

    /// Make one signed call to the CCPayment API and print the reply.
    ///
    /// The way to check credentials, the IP whitelist and the clock. METHOD is a v2 method
    /// (getCoinList, getAppCoinAssetList, getAppWithdrawRecord, ...) or a v1 path (v1/withdraw,
    /// v1/bill/info). JSON is the exact body to sign and send (default {}); `-` reads it from
    /// stdin. On an error code, says what it means and what to check, and exits 1.
    #[command(after_help = EXIT_CODES)]
    Api(ApiArgs),

    /// Probe the configured CCPayment account, read-only, before trusting it with a batch.
    ///
    /// One line per check (ok / warn / FAIL, what was seen, what to do): reachability and TLS,
    /// the clock (the server's Date header, 11006), the credentials (11005, 12001), the IP
    /// whitelist (12002), the API generation (11013), which body parameter-less calls accept, what
    /// a lookup of a never-used orderId returns, whether coin, chain, fee and record replies
    /// decode, the balances, and the coins and chains the policy allows. Never creates a payout.
    /// What it learns is kept in the state store and shown by `status`. Exit 0 when every check
    /// passed (warnings included), 1 when one failed, 2 when CCPayment could not be reached,
    /// 78 on a configuration error.
    #[command(after_help = EXIT_CODES)]
    Doctor {
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
        /// Probe the built-in sandbox instead of the configured account.
        #[arg(long)]
        sandbox: bool,
    },

    /// Run the built-in CCPayment simulator on loopback.
    ///
    /// Prints its address and demo credentials, then serves the v2 and v1 API until Ctrl-C.
    /// Its ledger of payouts and create attempts is at GET /sandbox/ledger, its request counts
    /// (by endpoint and result code, and per second) at GET /sandbox/stats.
    // Boxed: its many flags would make every other command as large.
    Sandbox(Box<SandboxArgs>),

    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Print a completion script for a shell.
    ///
    /// bash: `source <(ccpayout completions bash)` (or save it as
    /// /usr/share/bash-completion/completions/ccpayout); zsh: save it as `_ccpayout` in a folder
    /// of $fpath; fish: save it as ~/.config/fish/completions/ccpayout.fish. The Debian package
    /// installs all three.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: manual::Shell,
    },

    /// Print the manual page ccpayout(1) in roff, generated from these definitions (for
    /// packaging: `packaging/deb.sh`).
    #[command(hide = true)]
    Manpage,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The batch file.
    pub file: PathBuf,
    /// Use the built-in CCPayment simulator with demo credentials and balances.
    #[arg(long)]
    pub sandbox: bool,
    /// Print the plan as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Compare with this stored batch (an id, a unique id prefix or a name) instead of the
    /// previous batch of the file's series.
    #[arg(long, value_name = "BATCH")]
    pub compare_with: Option<String>,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The batch file.
    pub file: PathBuf,
    /// Use the built-in CCPayment simulator with demo credentials and balances.
    #[arg(long)]
    pub sandbox: bool,
    /// Return once every order is submitted, without waiting for final statuses.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// An inbox folder to watch (repeatable), besides daemon.inboxes and the jobs' inboxes.
    #[arg(long, value_name = "DIR")]
    pub inbox: Vec<PathBuf>,
    /// Use the built-in CCPayment simulator; without --inbox, a temporary inbox with a demo
    /// batch in it.
    #[arg(long)]
    pub sandbox: bool,
    /// Log format: human lines or one JSON object per line (default: daemon.log_format).
    #[arg(long, value_name = "FORMAT", value_parser = ["human", "json"])]
    pub log_format: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// v2 method name, or v1/withdraw, v1/bill/info.
    pub method: String,
    /// Request body as JSON, sent byte for byte as given; `-` reads stdin.
    pub json: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the configuration and credentials; print a summary without secrets.
    Check,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// App id the simulator accepts.
    #[arg(long, default_value = sandbox::DEMO_APP_ID)]
    pub app_id: String,
    /// App secret the simulator verifies signatures with (a demo value by default).
    #[arg(long, default_value = sandbox::DEMO_APP_SECRET, hide_default_value = false)]
    pub app_secret: String,
    /// Seed for failures and fault injection.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Milliseconds from Processing to a final status.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub settle_delay_ms: u64,
    /// Milliseconds between two tasks of a batch withdrawal in `Single` mode, where each task is
    /// its own transaction, run one after another (0: without a pause).
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub batch_task_interval_ms: u64,
    /// Share of payouts that end Failed (refunded), 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub fail_rate: f64,
    /// Requests per second before 11004 RateLimit; unlimited when absent.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate_limit: Option<f64>,
    /// Burst size of the rate limit.
    #[arg(long, default_value_t = 10, requires = "rate_limit")]
    pub burst: u32,
    /// Withdrawal creates per day before 11009 ReqDailyLimit.
    #[arg(long, value_name = "N")]
    pub daily_create_limit: Option<u64>,
    /// Requests of any kind per day before 11009 ReqDailyLimit.
    #[arg(long, value_name = "N")]
    pub daily_request_limit: Option<u64>,
    /// Length of the simulated day in seconds (shorten it to see the daily reset).
    #[arg(long, default_value_t = 86_400, value_name = "SECS")]
    pub day_length_secs: u64,
    /// Probability that a create is committed and its reply dropped.
    #[arg(long, default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_drop_after_commit: f64,
    /// Probability that a request is dropped before anything is committed.
    #[arg(long, default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_drop_before_commit: f64,
    /// Probability of an HTTP 502 (nothing committed).
    #[arg(long, default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_5xx: f64,
    /// Probability of code 11002 Internal (nothing committed).
    #[arg(long, default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_11002: f64,
    /// Probability that a committed create is answered late.
    #[arg(long, default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_slow: f64,
    /// How late a slow reply is, in milliseconds.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    pub slow_ms: u64,
    /// Apply faults to read calls too, not only to withdrawal creates.
    #[arg(long)]
    pub faults_on_reads: bool,
    /// URL that receives signed withdrawal webhooks.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Factor on the webhook retry schedule (30 s, 90 s, 210 s, ...); 0.01 makes it 100 times faster.
    #[arg(long, default_value_t = 1.0)]
    pub webhook_time_scale: f64,
    /// Sets a coin's starting balance, e.g. `--balance USDT=5000000` (repeatable).
    #[arg(long, value_name = "SYMBOL=AMOUNT", value_parser = balance_setting)]
    pub balance: Vec<(String, String)>,
    /// Network latency added to every API request, round trip, in milliseconds: `150`, or
    /// `100..200` for a uniform draw (seeded) — a CCPayment far away, as from Europe or America.
    #[arg(long, value_name = "MS|MIN..MAX", value_parser = latency_setting)]
    pub latency_ms: Option<sandbox::direct::Latency>,
    /// Runs the simulator's clock this many seconds ahead (negative: behind) of this machine's,
    /// as a server with a wrong clock would: its Date header shows it and timestamps more than
    /// 120 s off its clock get 11006 (try `ccpayout doctor` against it).
    #[arg(long, default_value_t = 0, value_name = "SECS", allow_negative_numbers = true)]
    pub clock_offset_secs: i64,
    /// Takes a reading of the API where its documentation is silent, e.g. `--reading
    /// lookup-lag=5000` (repeatable; the names are listed by --help).
    #[arg(
        long = "reading",
        value_name = "NAME",
        value_parser = Readings::parse,
        long_help = sandbox::readings::HELP
    )]
    pub readings: Vec<Readings>,
}

/// `MS` or `MIN..MAX` milliseconds of round trip.
fn latency_setting(s: &str) -> Result<sandbox::direct::Latency, String> {
    let ms = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| format!("expected milliseconds like 150 or 100..200, got {s:?}"))
    };
    let (min, max) = match s.split_once("..") {
        Some((a, b)) => (ms(a)?, ms(b)?),
        None => (ms(s)?, ms(s)?),
    };
    if min > max || max > 60_000 {
        return Err(format!("expected MIN..MAX with MIN ≤ MAX ≤ 60000, got {s:?}"));
    }
    Ok(sandbox::direct::Latency {
        min: Duration::from_millis(min),
        max: Duration::from_millis(max),
    })
}

/// `SYMBOL=AMOUNT`; the sandbox checks the coin and the amount.
fn balance_setting(s: &str) -> Result<(String, String), String> {
    let (symbol, amount) = s
        .split_once('=')
        .ok_or_else(|| format!("expected SYMBOL=AMOUNT (like USDT=5000000), got {s:?}"))?;
    let symbol = symbol.trim().to_ascii_uppercase();
    if symbol.is_empty() || amount.is_empty() {
        return Err(format!("expected SYMBOL=AMOUNT (like USDT=5000000), got {s:?}"));
    }
    Ok((symbol, amount.to_owned()))
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .parse()
        .map_err(|_| format!("expected a number from 0 to 1, got {s:?}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("expected a number from 0 to 1, got {s}"))
    }
}

/// The outcome of a command, mapped to the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1.
    Refused,
    /// Exit 2, after the command said why (`doctor` could not reach CCPayment).
    Unreachable,
}

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Exit 78.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Exit 2.
    #[error("{0:#}")]
    Runtime(#[from] anyhow::Error),
}

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon sets up its logging once its config (log format) is read.
    if !matches!(cli.command, Command::Run(_)) {
        init_logging(cli.verbose, false, "warn");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Refused) => ExitCode::from(1),
        Ok(Outcome::Unreachable) => ExitCode::from(2),
        Err(CliError::Config(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(78)
        }
        Err(CliError::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// An operator command: to the daemon when one runs on `state_dir` (it holds the store), else
/// to the store directly; the one operator answers either way.
async fn operate(
    config_path: Option<PathBuf>,
    state_dir: &std::path::Path,
    request: Request,
) -> Result<Outcome, CliError> {
    submit::show(operator_reply(state_dir, request, || load_config(config_path)).await?)
}

/// The one operator's reply to `request`: from the daemon when one runs on `state_dir`, else
/// from the store directly (with the configuration `config` gives, read only then).
async fn operator_reply(
    state_dir: &std::path::Path,
    request: Request,
    config: impl FnOnce() -> Result<Config, ConfigError>,
) -> Result<crate::app::Reply, CliError> {
    match crate::daemon::socket::call(state_dir, &request).await {
        Ok(Some(reply)) => return Ok(reply),
        Ok(None) => {}
        Err(e) => return Err(anyhow::anyhow!("{e}").into()),
    }
    let config = config()?;
    let store = submit::open_store(state_dir)?;
    // A command on the store may record a notice (the kill switch); it is sent before the
    // command returns, or left for the next `submit` or `run`.
    let notices = crate::app::wiring::notices(&config, &store, clock::system())?;
    let pending = |store: &crate::store::Store| store.pending_notices().map(|n| n.len()).unwrap_or(0);
    let before = pending(&store);
    let operator = crate::app::Operator::new(
        store,
        state_dir.to_path_buf(),
        crate::app::reports_dir(&config, state_dir),
        clock::system(),
        crate::app::Offline,
    )
    .with_policy(config.policy.clone());
    let reply = operator.handle(request).await;
    if let Some(dispatcher) = notices
        && pending(dispatcher.store()) > before
    {
        submit::flush_notices(&dispatcher).await;
    }
    Ok(reply)
}

/// `ccpayout console`: a sign-in link from the daemon that runs on `state_dir` (only a running
/// daemon serves the console), opened in the desktop's browser with `--open`.
async fn console_link(state_dir: &std::path::Path, open: bool) -> Result<Outcome, CliError> {
    let reply = match crate::daemon::socket::call(state_dir, &Request::ConsoleLink).await {
        Ok(Some(reply)) => reply,
        Ok(None) => crate::app::Reply::refused(format!(
            "no daemon runs for {}: the web console is served by `ccpayout run` (systemctl start ccpayout) with\n\n  [console]\n  enabled = true\n\nin its configuration\n",
            state_dir.display()
        )),
        Err(e) => return Err(anyhow::anyhow!("{e}").into()),
    };
    if open && reply.verdict == crate::app::Verdict::Done {
        let link = reply
            .text
            .lines()
            .rev()
            .find(|l| l.starts_with("http"))
            .unwrap_or("")
            .trim();
        let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
        let spawned = std::process::Command::new(opener)
            .arg(link)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            eprintln!("cannot run {opener} ({e}); open the link above by hand");
        }
    }
    submit::show(reply)
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<Outcome, CliError> {
    match cli.command {
        Command::Check(args) => check_command(cli.config, cli.state_dir, args).await,
        Command::Submit(args) => {
            let config = load_config(cli.config)?;
            let dir = state_dir_or_default(cli.state_dir, args.sandbox)?;
            submit::submit(&config, &dir, &args.file, args.sandbox, !args.no_wait).await
        }
        Command::Run(args) => run::run(cli.config, cli.state_dir, cli.verbose, args).await,
        // Operator commands go to the daemon when one runs (it holds the store), else to the
        // store directly.
        Command::Status { target, sandbox } => {
            let dir = state_dir_or_default(cli.state_dir, sandbox)?;
            operate(cli.config, &dir, Request::Status { target }).await
        }
        Command::Approve {
            batch,
            digest,
            sign_with,
            sandbox,
        } => {
            let dir = state_dir_or_default(cli.state_dir, sandbox)?;
            let signature = match sign_with {
                None => None,
                Some(key) => {
                    // The signature binds the batch's full id and the digest.
                    let config_path = cli.config.clone();
                    let reply = operator_reply(&dir, Request::Resolve { batch: batch.clone() }, || {
                        load_config(config_path)
                    })
                    .await?;
                    if reply.verdict != crate::app::Verdict::Done {
                        return submit::show(reply);
                    }
                    Some(sign_approval(&key, reply.text.trim(), &digest)?)
                }
            };
            operate(
                cli.config,
                &dir,
                Request::Approve {
                    batch,
                    digest,
                    signature,
                },
            )
            .await
        }
        Command::Recipients { format, sandbox } => {
            let dir = state_dir_or_default(cli.state_dir, sandbox)?;
            let format = match format {
                RecipientsFormat::Table => "table",
                RecipientsFormat::Csv => "csv",
                RecipientsFormat::Json => "json",
            };
            operate(
                cli.config,
                &dir,
                Request::Recipients {
                    format: format.to_owned(),
                },
            )
            .await
        }
        Command::Cancel { batch, sandbox } => {
            let dir = state_dir_or_default(cli.state_dir, sandbox)?;
            operate(cli.config, &dir, Request::Cancel { batch }).await
        }
        Command::Pause { reason, sandbox } => {
            let dir = state_dir_or_default(cli.state_dir, sandbox)?;
            operate(cli.config, &dir, Request::Pause { reason }).await
        }
        Command::Resume { sandbox } => {
            let dir = state_dir_or_default(cli.state_dir, sandbox)?;
            operate(cli.config, &dir, Request::Resume).await
        }
        Command::Report { batch, sandbox } => {
            let dir = state_dir_or_default(cli.state_dir, sandbox)?;
            operate(cli.config, &dir, Request::Report { batch }).await
        }
        Command::Console { open, sandbox } => {
            let dir = state_dir_or_default(cli.state_dir, sandbox)?;
            console_link(&dir, open).await
        }
        Command::Retry { batch, out, sandbox } => {
            let dir = state_dir_or_default(cli.state_dir, sandbox)?;
            retry::retry(cli.config, &dir, batch, out, sandbox).await
        }
        Command::Api(args) => api_command(cli.config, args).await,
        Command::Doctor { json, sandbox } => match doctor::doctor(cli.config, cli.state_dir, json, sandbox).await? {
            0 => Ok(Outcome::Success),
            1 => Ok(Outcome::Refused),
            _ => Ok(Outcome::Unreachable),
        },
        Command::Sandbox(args) => sandbox_command(*args).await,
        Command::Config(ConfigCommand::Check) => config_check(cli.config),
        Command::Completions { shell } => {
            manual::completions(shell, &mut std::io::stdout().lock());
            Ok(Outcome::Success)
        }
        Command::Manpage => {
            manual::manpage(&mut std::io::stdout().lock()).map_err(anyhow::Error::from)?;
            Ok(Outcome::Success)
        }
    }
}

/// `ccpayout recipients --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecipientsFormat {
    Table,
    Csv,
    Json,
}

/// Signs an approval of `digest` for batch `batch_id` with the OpenSSH private key at `key`: in
/// process for a key without a passphrase, else by `ssh-keygen -Y sign` (which asks for it or
/// uses the agent).
fn sign_approval(key: &std::path::Path, batch_id: &str, digest: &str) -> Result<String, CliError> {
    use crate::rules::signature::{self, APPROVAL_NAMESPACE};
    let message = signature::approval_message(batch_id, digest.trim());
    let text =
        std::fs::read_to_string(key).map_err(|e| anyhow::anyhow!("cannot read the key {}: {e}", key.display()))?;
    match signature::sign(&text, APPROVAL_NAMESPACE, &message) {
        Ok(sig) => Ok(sig),
        Err(e) if e.falls_back_to_ssh_keygen() => {
            let mut child = std::process::Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", APPROVAL_NAMESPACE, "-f"])
                .arg(key)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{} has a passphrase and ssh-keygen cannot be run to sign with it: {e}",
                        key.display()
                    )
                })?;
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write as _;
                stdin
                    .write_all(&message)
                    .map_err(|e| anyhow::anyhow!("cannot hand the approval to ssh-keygen: {e}"))?;
            }
            let out = child
                .wait_with_output()
                .map_err(|e| anyhow::anyhow!("ssh-keygen failed: {e}"))?;
            if !out.status.success() {
                return Err(
                    anyhow::anyhow!("ssh-keygen could not sign with {} ({})", key.display(), out.status).into(),
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(e) => Err(anyhow::anyhow!("cannot sign with {}: {e}", key.display()).into()),
    }
}

/// Logs to stderr: human lines (colour on a terminal) or JSON lines. `quiet` is the level with
/// no `-v`; each `-v` is one level more. RUST_LOG overrides.
fn init_logging(verbose: u8, json: bool, quiet: &str) {
    use tracing_subscriber::EnvFilter;
    let levels = ["error", "warn", "info", "debug", "trace"];
    let base = levels.iter().position(|l| *l == quiet).unwrap_or(1);
    let default = levels[(base + usize::from(verbose)).min(levels.len() - 1)];
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

fn state_dir_or_default(given: Option<PathBuf>, sandbox: bool) -> Result<PathBuf, CliError> {
    match given {
        Some(dir) => Ok(dir),
        None => submit::default_state_dir(sandbox),
    }
}

fn load_config(path: Option<PathBuf>) -> Result<Config, ConfigError> {
    Config::load_from_process_env(path.as_deref())
}

/// A client for the configured API, or for an in-process sandbox with demo credentials. The
/// sandbox lives as long as the returned handle.
///
/// `persist` keeps the sandbox's state (balances, payouts, ledger) in a file, so a resumed
/// `submit --sandbox` talks to the same simulated account as the run it resumes.
async fn api_client(
    config: &Config,
    sandbox: bool,
    persist: Option<PathBuf>,
) -> Result<(Client, Option<Sandbox>), CliError> {
    if !sandbox {
        return Ok((Client::new(config.client_config()?, clock::system())?, None));
    }
    // A short settle delay keeps a demo snappy; everything else is the demo default.
    let sandbox_config = SandboxConfig {
        settle_delay: Duration::from_secs(1),
        persist_path: persist,
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::start(sandbox_config, clock::system())
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the built-in sandbox: {e}"))?;
    eprintln!(
        "using the built-in sandbox at {} (demo balances; nothing real is paid)",
        sandbox.base_url()
    );
    let client_config = crate::api::ClientConfig {
        v2_base_url: sandbox.base_url(),
        v1_base_url: sandbox.base_url(),
        app_id: sandbox.app_id().to_owned(),
        app_secret: sandbox.app_secret().clone(),
        connect_timeout: config.api.connect_timeout,
        request_timeout: config.api.request_timeout,
    };
    Ok((Client::new(client_config, clock::system())?, Some(sandbox)))
}

/// `ccpayout check FILE`.
async fn check_command(
    config_path: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    args: CheckArgs,
) -> Result<Outcome, CliError> {
    use crate::batch::{preflight, render, validate::NoKnownOrders};
    let config = load_config(config_path)?;
    let (mut client, _sandbox) = api_client(&config, args.sandbox, None).await?;
    // Order ids of earlier batches come from the store, when there is one to read; and so does
    // the body form `doctor` found for parameter-less calls.
    let dir = match state_dir {
        Some(dir) => Some(dir),
        None => submit::default_state_dir(args.sandbox).ok(),
    };
    let mut settings = config.preflight_settings();
    let known: std::sync::Arc<dyn crate::model::recipient::Known + Send + Sync> = match dir
        .filter(|d| d.join(crate::store::DB_FILE).exists())
        .map(|d| (crate::store::Store::open(&d), d))
    {
        Some((Ok(store), dir)) => {
            if let Ok(Some(form)) = crate::app::wiring::stored_body_form(&store) {
                client = client.sending_no_params_as(form);
            }
            if let Some(key) = &args.compare_with {
                // Resolved as the operator commands resolve a batch.
                match store.find_batch(key) {
                    Ok(Some(batch)) => settings.compare_with = Some(batch.batch_id.to_string()),
                    Ok(None) => {
                        return Err(
                            anyhow::anyhow!("--compare-with: no batch matches {key:?} in {}", dir.display()).into(),
                        );
                    }
                    Err(e) => return Err(anyhow::anyhow!("--compare-with: {e}").into()),
                }
            }
            std::sync::Arc::new(store).known_orders()
        }
        Some((Err(e), dir)) => {
            if let Some(key) = &args.compare_with {
                return Err(anyhow::anyhow!(
                    "--compare-with {key:?}: cannot open the store in {}: {e}",
                    dir.display()
                )
                .into());
            }
            eprintln!("warning: order ids of earlier batches not checked: {e}");
            std::sync::Arc::new(crate::model::history::NoHistory(format!(
                "the store in {} cannot be opened ({e})",
                dir.display()
            )))
        }
        None => {
            if let Some(key) = &args.compare_with {
                return Err(anyhow::anyhow!(
                    "--compare-with {key:?}: no state directory with earlier batches (give --state-dir)"
                )
                .into());
            }
            std::sync::Arc::new(NoKnownOrders)
        }
    };
    // Every request passes the one pacing, a check's too.
    let client = crate::app::wiring::paced_client(&config, client, clock::system());
    let started = std::time::Instant::now();
    let report = match preflight::check_file(&client, &settings, &args.file, known).await {
        Ok(report) => report,
        Err(preflight::CheckError::NotABatch(message) | preflight::CheckError::Signature(message)) => {
            eprintln!("error: {message}");
            return Ok(Outcome::Refused);
        }
        Err(preflight::CheckError::DenyList(message)) => {
            return Err(ConfigError {
                path: config.path.clone(),
                problems: vec![message],
            }
            .into());
        }
        Err(preflight::CheckError::Api(CallError::Api(e))) => {
            let hint = e.hint().map(|h| format!("\n  check: {h}")).unwrap_or_default();
            return Err(anyhow::anyhow!("preflight failed: {e}{hint}").into());
        }
        Err(e) => return Err(anyhow::Error::from(e).into()),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(anyhow::Error::from)?;
        writeln!(out).map_err(anyhow::Error::from)?;
    } else {
        out.write_all(render::check_report(&report).as_bytes())
            .map_err(anyhow::Error::from)?;
        writeln!(
            out,
            "checked in {:.2} s ({} requests to CCPayment{})",
            started.elapsed().as_secs_f64(),
            report.preflight_requests,
            client
                .pacing()
                .and_then(|p| p.latency_ms())
                .map(|ms| format!(", {ms:.0} ms a round trip"))
                .unwrap_or_default()
        )
        .map_err(anyhow::Error::from)?;
    }
    Ok(if report.plan.payable {
        Outcome::Success
    } else {
        Outcome::Refused
    })
}

/// `ccpayout api METHOD [JSON]`.
async fn api_command(config_path: Option<PathBuf>, args: ApiArgs) -> Result<Outcome, CliError> {
    let config = load_config(config_path)?;
    // A raw call passes the same pacing as everything else: no side door to the API.
    let client = crate::app::wiring::paced_client(
        &config,
        Client::new(config.client_config()?, clock::system())?,
        clock::system(),
    );
    let endpoint = parse_endpoint(&args.method)?;
    let body = request_body(args.json)?;

    let stdout = std::io::stdout();
    let reply = match client.send_raw(endpoint, body).await {
        Ok(reply) => reply,
        Err(e) => return Err(explain_transport(&client, endpoint, e).into()),
    };

    // Print what came back: pretty JSON when it is JSON, the text otherwise.
    let printable = match serde_json::from_slice::<serde_json::Value>(&reply.body) {
        Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&reply.body).into_owned(),
    };
    let mut out = stdout.lock();
    writeln!(out, "{printable}").map_err(anyhow::Error::from)?;
    drop(out);

    match client.interpret::<serde_json::Value>(endpoint, &reply) {
        Ok(_) => Ok(Outcome::Success),
        Err(CallError::Api(e)) => {
            eprintln!("error: CCPayment answered {} {}", e.code, e.name());
            match e.meaning() {
                Some(meaning) => eprintln!("  meaning: {meaning}"),
                None => eprintln!("  meaning: undocumented code; CCPayment's message was {:?}", e.msg),
            }
            if let Some(hint) = e.hint() {
                eprintln!("  check:   {hint}");
            }
            eprintln!("  class:   {}", e.class);
            Ok(Outcome::Refused)
        }
        Err(e) => {
            let mut message = e.to_string();
            if reply.http_status == 404 && serde_json::from_slice::<Envelope<serde_json::Value>>(&reply.body).is_err() {
                message.push_str(&format!(
                    "\n  check: is {:?} a CCPayment method? known v2 methods: {}; v1: v1/withdraw, v1/bill/info",
                    args.method,
                    method::ALL.join(", ")
                ));
            }
            Err(anyhow::anyhow!(message).into())
        }
    }
}

fn parse_endpoint(name: &str) -> Result<Endpoint<'_>, anyhow::Error> {
    if let Some(path) = name.strip_prefix("v1/") {
        if path.is_empty()
            || !path
                .split('/')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        {
            anyhow::bail!("invalid v1 path {name:?}: expected v1/withdraw or v1/bill/info");
        }
        return Ok(Endpoint::v1(path));
    }
    let valid =
        name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) && name.bytes().all(|b| b.is_ascii_alphanumeric());
    if !valid {
        anyhow::bail!("invalid method {name:?}: expected a v2 method name such as getCoinList, or v1/withdraw");
    }
    Ok(Endpoint::v2(name))
}

fn request_body(json: Option<String>) -> Result<Vec<u8>, anyhow::Error> {
    let text = match json.as_deref() {
        None => "{}".to_owned(),
        Some("-") => {
            let mut buf = String::new();
            std::io::stdin().read_to_string(&mut buf)?;
            buf.trim_end_matches(['\n', '\r']).to_owned()
        }
        Some(text) => text.to_owned(),
    };
    // The body is sent exactly as given (that is the point of a raw call), but a body that is
    // not JSON would only earn an 11000 from CCPayment, so say so here.
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
        anyhow::bail!("the request body is not valid JSON: {e}");
    }
    Ok(text.into_bytes())
}

fn explain_transport(client: &Client, endpoint: Endpoint<'_>, e: CallError) -> anyhow::Error {
    let url = client.url(endpoint);
    match e {
        CallError::NotSent { .. } => anyhow::anyhow!(
            "{e}\n  check: that {url} is reachable from this machine ({} sets the base URL)",
            config::ENV_API_BASE_URL
        ),
        other => anyhow::anyhow!("{other}"),
    }
}

/// `ccpayout config check`.
fn config_check(config_path: Option<PathBuf>) -> Result<Outcome, CliError> {
    let config = load_config(config_path)?;
    // Missing credentials are a configuration error for a payout tool.
    config.client_config()?;
    let source = config
        .api
        .app_secret
        .as_ref()
        .map(|(_, source)| source.to_string())
        .unwrap_or_default();
    match &config.path {
        Some(p) => println!("configuration ok: {}", p.display()),
        None => println!("configuration ok: no config file, defaults and environment"),
    }
    println!("  api version:  {:?}", config.api.generation);
    println!("  v2 base url:  {}", config.api.v2_base_url);
    println!("  v1 base url:  {}", config.api.v1_base_url);
    println!("  app id:       {}", config.api.app_id.as_deref().unwrap_or(""));
    println!("  app secret:   set, from {source}");
    println!(
        "  timeouts:     connect {} ms, request {} ms",
        config.api.connect_timeout.as_millis(),
        config.api.request_timeout.as_millis()
    );
    for inbox in &config.daemon.inboxes {
        println!("  inbox:        {}", inbox.display());
    }
    // Job files are part of the configuration: a broken one stops the service before it starts.
    if let Some(dir) = &config.daemon.jobs_dir {
        let jobs = crate::jobs::load_jobs(dir, &config.policy).map_err(|e| ConfigError {
            path: config.path.clone(),
            problems: e.problems,
        })?;
        let now = clock::system().now_ms();
        println!("  jobs:         {} in {}", jobs.len(), dir.display());
        for job in &jobs {
            println!("    {}", crate::jobs::describe(job, now));
        }
    }
    match config.daemon.metrics_listen {
        Some(addr) => println!("  metrics:      http://{addr}/metrics"),
        None => println!("  metrics:      off"),
    }
    if config.webhook.enabled {
        println!(
            "  webhooks:     http://{}{}",
            config.webhook.listen, config.webhook.path
        );
    }
    let console = &config.console;
    if console.enabled {
        println!(
            "  console:      {}{}{} (sessions idle out after {} min)",
            console
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", console.listen)),
            if console.public_url.is_some() {
                format!(", listening on {}", console.listen)
            } else {
                String::new()
            },
            match &console.trusted_user_header {
                Some(h) => format!("; the user from {h} sent by {:?}", console.trusted_proxies),
                None => "; sign in with `ccpayout console`".to_owned(),
            },
            console.idle_timeout.as_secs() / 60
        );
    } else {
        println!("  console:      off ([console] enabled = true serves it)");
    }
    for target in &config.notify {
        let events = if target.events.len() == crate::model::notice::NoticeEvent::ALL.len() {
            "every event".to_owned()
        } else {
            target.events.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
        };
        println!(
            "  notify {}:  {} ({}{}; {events})",
            target.name,
            target.url,
            target.format.as_str(),
            if target.secret.is_some() { ", signed" } else { "" }
        );
    }
    Ok(Outcome::Success)
}

/// `ccpayout sandbox`.
async fn sandbox_command(args: SandboxArgs) -> Result<Outcome, CliError> {
    let mut readings = Readings::NONE;
    for reading in &args.readings {
        readings.merge(reading).map_err(|e| anyhow::anyhow!("--reading: {e}"))?;
    }
    let config = SandboxConfig {
        app_id: args.app_id,
        app_secret: SecretString::from(args.app_secret),
        seed: args.seed,
        settle_delay: Duration::from_millis(args.settle_delay_ms),
        batch_task_interval: Duration::from_millis(args.batch_task_interval_ms),
        fail_rate: args.fail_rate,
        rate_limit: args.rate_limit.map(|per_second| RateLimit {
            per_second,
            burst: args.burst.max(1),
        }),
        daily_create_limit: args.daily_create_limit,
        daily_request_limit: args.daily_request_limit,
        day_length: Duration::from_secs(args.day_length_secs.max(1)),
        faults: Faults {
            drop_after_commit: args.fault_drop_after_commit,
            drop_before_commit: args.fault_drop_before_commit,
            http_5xx: args.fault_5xx,
            internal_11002: args.fault_11002,
            slow: args.fault_slow,
            slow_delay_ms: args.slow_ms,
            on_reads: args.faults_on_reads,
        },
        webhook_url: args.webhook_url,
        webhook_time_scale: args.webhook_time_scale,
        readings,
        latency: args.latency_ms.unwrap_or(sandbox::direct::Latency::NONE),
        ..SandboxConfig::default()
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let sandbox_clock: clock::SharedClock = if args.clock_offset_secs == 0 {
        clock::system()
    } else {
        clock::OffsetClock::new(clock::system(), args.clock_offset_secs.saturating_mul(1000))
    };
    let sandbox = Sandbox::start_on(addr, config, sandbox_clock)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    for (symbol, amount) in &args.balance {
        sandbox
            .try_set_balance(symbol, amount)
            .map_err(|e| anyhow::anyhow!("--balance {symbol}={amount}: {e}"))?;
    }
    let url = sandbox.base_url();
    // The first line is stable so scripts can read the address from it.
    println!("ccpayout sandbox listening on {url}");
    println!("  app id:     {}", sandbox.app_id());
    println!(
        "  app secret: {}   (this simulator's own credential, not a real secret)",
        secrecy::ExposeSecret::expose_secret(sandbox.app_secret())
    );
    if let Some(latency) = args.latency_ms {
        println!(
            "  latency:    {}..{} ms round trip on every API request",
            latency.min.as_millis(),
            latency.max.as_millis()
        );
    }
    if args.clock_offset_secs != 0 {
        println!("  clock:      {:+} s from this machine's", args.clock_offset_secs);
    }
    if readings.is_none() {
        println!("  readings:   none (the API as documented)");
    } else {
        println!("  readings:   {readings}");
    }
    println!();
    println!("point ccpayout at it:");
    println!("  export {}={url}", config::ENV_API_BASE_URL);
    println!("  export {}={}", config::ENV_APP_ID, sandbox.app_id());
    println!(
        "  export {}={}",
        config::ENV_APP_SECRET,
        secrecy::ExposeSecret::expose_secret(sandbox.app_secret())
    );
    println!("ledger: {url}/sandbox/ledger   stats: {url}/sandbox/stats   stop: Ctrl-C");
    std::io::stdout().flush().map_err(anyhow::Error::from)?;

    tokio::select! {
        _ = shutdown_signal() => {
            eprintln!("stopping the sandbox");
            sandbox.shutdown().await;
        }
        _ = sandbox.stopped() => {}
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn endpoints_are_parsed_strictly() {
        assert_eq!(parse_endpoint("getCoinList").unwrap(), Endpoint::v2("getCoinList"));
        assert_eq!(parse_endpoint("v1/bill/info").unwrap(), Endpoint::v1("bill/info"));
        for bad in ["", "get/../x", "v1/", "v1/Withdraw", "get coin", "1abc", "v1//x"] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn request_bodies_must_be_json_and_are_kept_verbatim() {
        assert_eq!(request_body(None).unwrap(), b"{}");
        assert_eq!(
            request_body(Some("{ \"coinId\" : 1280 }".into())).unwrap(),
            b"{ \"coinId\" : 1280 }"
        );
        assert!(request_body(Some("{coinId:1280}".into())).is_err());
    }

    #[test]
    fn sandbox_readings_are_named_on_the_command_line_and_listed_in_its_help() {
        let cli = Cli::try_parse_from([
            "ccpayout",
            "sandbox",
            "--reading",
            "lookup-lag=5000",
            "--reading",
            "string-ids,v1-only",
        ])
        .expect("parses");
        let Command::Sandbox(args) = cli.command else {
            panic!("not the sandbox command");
        };
        let mut readings = Readings::NONE;
        for r in &args.readings {
            readings.merge(r).expect("compatible");
        }
        assert_eq!(readings.to_string(), "lookup-lag=5000 string-ids v1-only");
        let err = Cli::try_parse_from(["ccpayout", "sandbox", "--reading", "lookup-lag=soon"]).expect_err("bad lag");
        assert!(err.to_string().contains("lookup-lag wants milliseconds"), "{err}");
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("sandbox")
            .expect("the sandbox command")
            .render_long_help()
            .to_string();
        for name in Readings::ALL_NAMES {
            let line = help
                .lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap_or_else(|| panic!("{name} is not listed in:\n{help}"));
            assert!(line.contains(": "), "{line}");
        }
    }

    #[test]
    fn latencies_are_milliseconds_or_a_range() {
        let fixed = latency_setting("150").unwrap();
        assert_eq!(
            (fixed.min, fixed.max),
            (Duration::from_millis(150), Duration::from_millis(150))
        );
        let range = latency_setting("100..200").unwrap();
        assert_eq!(
            (range.min, range.max),
            (Duration::from_millis(100), Duration::from_millis(200))
        );
        for bad in ["", "x", "200..100", "1..99999999"] {
            assert!(latency_setting(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn probabilities_are_bounded() {
        assert_eq!(probability("0.5"), Ok(0.5));
        assert!(probability("1.5").is_err());
        assert!(probability("x").is_err());
    }
}
