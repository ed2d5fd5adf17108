//! The configuration: one TOML file plus environment overrides, resolved once at start-up.
//!
//! Unknown keys are errors (a typo in a payout tool's config must not be silently ignored), and
//! every problem is reported at once with the key it belongs to. The app secret is read into a
//! [`SecretString`] and never printed: `ccpayout config check` says only where it came from.
//!
//! Where each API setting comes from, first match wins:
//!
//! | setting | sources |
//! |---|---|
//! | base URL | `CCPAYOUT_API_BASE_URL` (v1 and v2), then `api.base_url` / `api.v1_base_url`, then the defaults |
//! | app id | `CCPAYOUT_APP_ID`, then `api.app_id` |
//! | app secret | `CCPAYOUT_APP_SECRET`, then the file named by `CCPAYOUT_APP_SECRET_FILE`, then the systemd credential `app_secret` (`$CREDENTIALS_DIRECTORY/app_secret`), then the file `api.app_secret_file` |
//!
//! The environment is passed in as a function so tests never touch the process environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::Deserialize;

use crate::api::client::{ClientConfig, DEFAULT_V1_BASE_URL, DEFAULT_V2_BASE_URL};

/// Environment variable: path of the config file.
pub const ENV_CONFIG: &str = "CCPAYOUT_CONFIG";
/// Environment variable: API base URL (`scheme://host[:port]`) for both API versions.
pub const ENV_API_BASE_URL: &str = "CCPAYOUT_API_BASE_URL";
/// Environment variable: the app id.
pub const ENV_APP_ID: &str = "CCPAYOUT_APP_ID";
/// Environment variable: the app secret itself.
pub const ENV_APP_SECRET: &str = "CCPAYOUT_APP_SECRET";
/// Environment variable: a file holding the app secret.
pub const ENV_APP_SECRET_FILE: &str = "CCPAYOUT_APP_SECRET_FILE";
/// Set by systemd when the unit has `LoadCredential=`.
pub const ENV_CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";
/// The systemd credential name of the app secret.
pub const CREDENTIAL_APP_SECRET: &str = "app_secret";

/// The config file as written. Every section denies unknown keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    api: ApiFile,
    #[serde(default)]
    batch: BatchFile,
    #[serde(default)]
    preflight: PreflightFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    policy: PolicyFile,
    #[serde(default)]
    reports: ReportsFile,
    #[serde(default)]
    daemon: DaemonFile,
    #[serde(default)]
    webhook: WebhookFile,
    #[serde(default)]
    console: ConsoleFile,
    /// `[[notify]]` targets.
    #[serde(default)]
    notify: Vec<NotifyFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyFile {
    name: Option<String>,
    url: Option<String>,
    secret_file: Option<PathBuf>,
    format: Option<String>,
    events: Option<Vec<String>>,
    timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonFile {
    inboxes: Option<Vec<PathBuf>>,
    jobs_dir: Option<PathBuf>,
    settle_secs: Option<u64>,
    rescan_secs: Option<u64>,
    drain_secs: Option<u64>,
    metrics_listen: Option<String>,
    log_format: Option<String>,
    socket_mode: Option<String>,
    max_active_batches: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    enabled: Option<bool>,
    listen: Option<String>,
    path: Option<String>,
    max_body_bytes: Option<usize>,
    window_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleFile {
    enabled: Option<bool>,
    listen: Option<String>,
    behind_proxy: Option<bool>,
    public_url: Option<String>,
    trusted_user_header: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    idle_timeout_mins: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchFile {
    default_merchant_pays_fee: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreflightFile {
    remote_checks: Option<String>,
    remote_checks_max_rows: Option<u64>,
    balance_margin_percent: Option<DecimalSetting>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    rate_per_second: Option<u32>,
    burst: Option<u32>,
    read_rate_per_second: Option<u32>,
    concurrency: Option<u32>,
    max_attempts: Option<u32>,
    daily_request_budget: Option<u64>,
    daily_reset_utc: Option<String>,
    track_first_check_secs: Option<u64>,
    track_max_interval_secs: Option<u64>,
    not_found_confirm_secs: Option<u64>,
    day_length_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportsFile {
    dir: Option<PathBuf>,
}

/// A `[policy]` table as written: in the config file, and as a job's overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyFile {
    allowed_coins: Option<Vec<String>>,
    allowed_chains: Option<Vec<String>>,
    /// Also set by a job file's `approval` shorthand.
    pub(crate) approval: Option<String>,
    #[serde(default)]
    coins: BTreeMap<String, CoinPolicyFile>,
    approvals_required: Option<u32>,
    maker_may_approve: Option<bool>,
    approvers: Option<Vec<String>>,
    approver_signers: Option<PathBuf>,
    require_signature: Option<bool>,
    allowed_signers: Option<PathBuf>,
    new_recipients: Option<String>,
    changed_payee_address: Option<String>,
    deny_lists: Option<Vec<PathBuf>>,
    diff_warn_percent: Option<DecimalSetting>,
}

/// One `approval_tiers` entry: `{ above = "10000", approvals = 2 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalTierFile {
    above: DecimalSetting,
    approvals: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CoinPolicyFile {
    max_per_order: Option<DecimalSetting>,
    max_per_batch: Option<DecimalSetting>,
    max_per_day: Option<DecimalSetting>,
    approval_above: Option<DecimalSetting>,
    approval_tiers: Option<Vec<ApprovalTierFile>>,
}

/// A decimal in the config: a string (`"2500.50"`) or an integer. Floats are refused because
/// they are not exact.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DecimalSetting {
    Text(String),
    Integer(u64),
    Float(f64),
}

impl DecimalSetting {
    /// A percentage: a decimal of 0 or more.
    fn resolve_percent(&self, key: &str, problems: &mut Vec<String>) -> Option<Decimal> {
        use crate::rules::amount::{Amount, AmountError};
        match self {
            DecimalSetting::Integer(0) => Some(Decimal::ZERO),
            DecimalSetting::Text(t) if matches!(Amount::parse(t), Err(AmountError::Zero)) => Some(Decimal::ZERO),
            other => other.resolve(key, problems),
        }
    }

    fn resolve(&self, key: &str, problems: &mut Vec<String>) -> Option<Decimal> {
        let text = match self {
            DecimalSetting::Text(t) => t.clone(),
            DecimalSetting::Integer(i) => i.to_string(),
            DecimalSetting::Float(f) => {
                problems.push(format!(
                    "{key}: write decimals as strings, for example \"{f}\", so they stay exact"
                ));
                return None;
            }
        };
        match crate::rules::amount::Amount::parse(&text) {
            Ok(a) => Some(a.value()),
            Err(e) => {
                problems.push(format!("{key}: {text:?}: {e}"));
                None
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiFile {
    version: Option<String>,
    base_url: Option<String>,
    v1_base_url: Option<String>,
    app_id: Option<String>,
    app_secret_file: Option<PathBuf>,
    connect_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    withdraw_mode: Option<String>,
    batch_execution: Option<String>,
    batch_confirm_delay_secs: Option<u64>,
}

pub use crate::model::ApiGeneration;

/// How network payouts go to CCPayment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WithdrawMode {
    /// One `applyAppWithdrawToNetwork` per row (the default).
    #[default]
    Single,
    /// CCPayment's batch withdrawals: up to 500 rows of one coin and chain per batch.
    Batch(crate::model::bundle::BundleSettings),
}

impl WithdrawMode {
    /// The bundle settings in batch mode.
    pub fn bundles(self) -> Option<crate::model::bundle::BundleSettings> {
        match self {
            WithdrawMode::Single => None,
            WithdrawMode::Batch(settings) => Some(settings),
        }
    }
}

/// Where the app secret came from; shown instead of the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `CCPAYOUT_APP_SECRET`.
    Environment,
    /// A file (from `CCPAYOUT_APP_SECRET_FILE` or `api.app_secret_file`).
    File(PathBuf),
    /// A systemd credential.
    SystemdCredential(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Environment => write!(f, "environment variable {ENV_APP_SECRET}"),
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::SystemdCredential(p) => write!(f, "systemd credential {}", p.display()),
        }
    }
}

/// The resolved API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub generation: ApiGeneration,
    pub v2_base_url: String,
    pub v1_base_url: String,
    pub app_id: Option<String>,
    pub app_secret: Option<(SecretString, SecretSource)>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// `api.withdraw_mode` with `batch_execution` and `batch_confirm_delay_secs`.
    pub withdraw_mode: WithdrawMode,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, if any.
    pub path: Option<PathBuf>,
    pub api: ApiConfig,
    pub batch: BatchConfig,
    pub preflight: PreflightConfig,
    pub limits: LimitsConfig,
    pub policy: Policy,
    pub reports: ReportsConfig,
    pub daemon: DaemonConfig,
    pub webhook: WebhookConfig,
    /// The web console (`[console]`), served by the daemon; off by default.
    pub console: ConsoleConfig,
    /// Where notices go (`[[notify]]`); none by default.
    pub notify: Vec<NotifyTarget>,
}

impl Config {
    /// Which targets want which events, for the store's outbox.
    pub fn notice_subscriptions(&self) -> Vec<crate::model::notice::Subscription> {
        self.notify.iter().map(NotifyTarget::subscription).collect()
    }

    /// What a preflight (`check`, and every batch taken in) needs from the configuration.
    pub fn preflight_settings(&self) -> crate::batch::preflight::Settings {
        crate::batch::preflight::Settings {
            generation: self.api.generation,
            default_merchant_pays_fee: self.batch.default_merchant_pays_fee,
            remote_checks: self.preflight.remote_checks,
            balance_margin: self.preflight.balance_margin,
            rate_per_second: self.limits.rate_per_second,
            policy: self.policy.clone(),
            bundles: self.api.withdraw_mode.bundles(),
            address_check: crate::batch::preflight::AddressCheck::default(),
            compare_with: None,
        }
    }
}

/// How `ccpayout run` logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The daemon (`ccpayout run`).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Inbox folders watched besides the jobs' own.
    pub inboxes: Vec<PathBuf>,
    /// Folder of `*.toml` job definitions; `None`: no jobs.
    pub jobs_dir: Option<PathBuf>,
    /// A file must not have changed for this long before it is read (producers that cannot rename).
    pub settle: Duration,
    /// Inboxes are rescanned this often; file-system events only make it sooner.
    pub rescan: Duration,
    /// After SIGTERM, how long in-flight requests may take before the daemon exits anyway.
    pub drain: Duration,
    /// Prometheus metrics listener (loopback only); `None`: off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub log_format: LogFormat,
    /// Permission bits of the control socket: 0o600 or 0o660.
    pub socket_mode: u32,
    /// Batches sent at the same time (each within the shared rate limits).
    pub max_active_batches: u32,
}

/// The webhook listener (off by default).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub enabled: bool,
    pub listen: std::net::SocketAddr,
    pub path: String,
    pub max_body_bytes: usize,
    /// Accepted distance between a webhook's timestamp and the clock.
    pub window: Duration,
}

/// The web console (`[console]`): served by `ccpayout run`, off by default.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub enabled: bool,
    /// Where it listens: loopback unless `behind_proxy`.
    pub listen: std::net::SocketAddr,
    /// A reverse proxy in front: a non-loopback `listen` is allowed.
    pub behind_proxy: bool,
    /// The address people open (`https://payouts.example.com`), for the sign-in links;
    /// `None`: `http://<listen>`.
    pub public_url: Option<String>,
    /// The header an authenticating proxy puts the signed-in user in; `None`: sign-in links only.
    pub trusted_user_header: Option<String>,
    /// The addresses that header is accepted from (the proxy's); none by default.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A session ends after this long without a request.
    pub idle_timeout: Duration,
}

impl ConsoleConfig {
    /// The console's page of batch `batch_id`, for notices: under `public_url`, or the listen
    /// address (reached through an SSH tunnel); `None` while the console is off or listens on a
    /// port the system picks.
    pub fn batch_url(&self, batch_id: &str) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let base = match &self.public_url {
            Some(url) => url.clone(),
            None if self.listen.port() == 0 => return None,
            None => format!("http://{}", self.listen),
        };
        Some(format!("{base}/batches/{batch_id}"))
    }
}

/// The default console address.
pub const DEFAULT_CONSOLE_LISTEN: &str = "127.0.0.1:8789";

/// The default metrics address.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9187";

/// How batch files are read.
#[derive(Debug, Clone, Default)]
pub struct BatchConfig {
    /// `merchant_pays_fee` for rows that leave it empty.
    pub default_merchant_pays_fee: bool,
}

pub use crate::batch::preflight::RemoteChecks;

/// Preflight settings.
#[derive(Debug, Clone)]
pub struct PreflightConfig {
    pub remote_checks: RemoteChecks,
    /// Extra balance required on top of what the batch needs, as a fraction (0.02 = 2 %).
    pub balance_margin: Decimal,
}

/// Request rates and retry behaviour toward CCPayment.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Requests per second to CCPayment, of every kind: withdrawal creates and reads share it, as
    /// CCPayment's per-IP limit does.
    pub rate_per_second: u32,
    /// Requests (of any kind) that may go out at once after a quiet spell.
    pub burst: u32,
    /// An extra cap on read requests (status queries, lookups) per second, within
    /// `rate_per_second`.
    pub read_rate_per_second: u32,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// Sends allowed for refusals that may clear up (balance, chain paused).
    pub max_attempts: u32,
    /// Stop for the day after this many requests, before CCPayment's own cap (11009).
    pub daily_request_budget: Option<u64>,
    /// When CCPayment's daily cap resets, in milliseconds after 00:00 UTC.
    pub daily_reset_offset_ms: i64,
    /// First status query after a withdrawal is created.
    pub track_first_check_secs: u64,
    /// Longest wait between status queries of one order.
    pub track_max_interval_secs: u64,
    /// An order whose create may have reached CCPayment is sent again only when at least two
    /// lookups found nothing and this long has passed since it was sent (R2/R3 of
    /// ccpayment-api.md §5: lookups may lag behind creates, and a reused orderId may not be
    /// refused). At least the request timeout.
    pub not_found_confirm_secs: u64,
    /// Length of CCPayment's "day" for the daily cap: 86400 s; shorter only in tests and
    /// simulations against the sandbox's shortened days.
    pub day_length_ms: i64,
}

/// Where reports go.
#[derive(Debug, Clone, Default)]
pub struct ReportsConfig {
    /// `None`: `<state-dir>/reports`.
    pub dir: Option<PathBuf>,
}

pub use crate::rules::policy::{
    ApprovalRule, ApprovalTier, ChangedPayee, CoinPolicy, NewRecipients, Policy, SignersFile,
};

/// Every problem found in the configuration, each naming its key or source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: Option<PathBuf>,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "configuration error in {}", p.display())?,
            None => write!(f, "configuration error")?,
        }
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;

impl Config {
    /// Reads the config file (if `path` is given) and applies the environment.
    pub fn load(path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let fail = |problems: Vec<String>| ConfigError {
            path: path.map(Path::to_path_buf),
            problems,
        };
        let file = match path {
            None => FileConfig::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| fail(vec![format!("cannot read the file: {e}")]))?;
                parse_file(&text).map_err(|problem| fail(vec![problem]))?
            }
        };
        resolve(file, path, env).map_err(fail)
    }

    /// The configuration from the real process environment.
    pub fn load_from_process_env(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load(path, &|key| std::env::var(key).ok())
    }

    /// The client settings; fails when the app id or secret is missing.
    pub fn client_config(&self) -> Result<ClientConfig, ConfigError> {
        let mut problems = Vec::new();
        if self.api.app_id.is_none() {
            problems.push(format!("no app id: set {ENV_APP_ID} or api.app_id"));
        }
        if self.api.app_secret.is_none() {
            problems.push(format!(
                "no app secret: set {ENV_APP_SECRET}, {ENV_APP_SECRET_FILE}, a systemd credential \
                 `{CREDENTIAL_APP_SECRET}`, or api.app_secret_file"
            ));
        }
        match (&self.api.app_id, &self.api.app_secret) {
            (Some(app_id), Some((secret, _))) => Ok(ClientConfig {
                v2_base_url: self.api.v2_base_url.clone(),
                v1_base_url: self.api.v1_base_url.clone(),
                app_id: app_id.clone(),
                app_secret: secret.clone(),
                connect_timeout: self.api.connect_timeout,
                request_timeout: self.api.request_timeout,
            }),
            _ => Err(ConfigError {
                path: self.path.clone(),
                problems,
            }),
        }
    }
}

fn parse_file(text: &str) -> Result<FileConfig, String> {
    // toml's message names the key and shows the line; keep it, minus the trailing newline.
    toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', "\n    "))
}

fn resolve(file: FileConfig, path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<String>> {
    let mut problems = Vec::new();
    let env = |key: &str| env(key).filter(|v| !v.is_empty());
    let FileConfig {
        api,
        batch: batch_file,
        preflight: preflight_file,
        limits: limits_file,
        policy: policy_file,
        reports: reports_file,
        daemon: daemon_file,
        webhook: webhook_file,
        console: console_file,
        notify: notify_files,
    } = file;
    let file = Sections {
        batch: batch_file,
        preflight: preflight_file,
        limits: limits_file,
        policy: policy_file,
        reports: reports_file,
    };

    let generation = match api.version.as_deref() {
        None | Some("v2") => ApiGeneration::V2,
        Some("v1") => ApiGeneration::V1,
        Some(other) => {
            problems.push(format!("api.version: expected \"v2\" or \"v1\", got {other:?}"));
            ApiGeneration::V2
        }
    };

    let withdraw_mode = resolve_withdraw_mode(&api, generation, &mut problems);

    let mut base_url = |key: &str, from_file: Option<String>, default: &str| -> String {
        let (value, origin) = match (env(ENV_API_BASE_URL), from_file) {
            (Some(v), _) => (v, ENV_API_BASE_URL.to_owned()),
            (None, Some(v)) => (v, key.to_owned()),
            (None, None) => return default.to_owned(),
        };
        match check_base_url(&value) {
            Ok(url) => url,
            Err(why) => {
                problems.push(format!("{origin}: {why}, got {value:?}"));
                default.to_owned()
            }
        }
    };
    let v2_base_url = base_url("api.base_url", api.base_url, DEFAULT_V2_BASE_URL);
    let v1_base_url = base_url("api.v1_base_url", api.v1_base_url, DEFAULT_V1_BASE_URL);

    let app_id = env(ENV_APP_ID).or(api.app_id).map(|id| id.trim().to_owned());
    if let Some(id) = &app_id
        && (id.is_empty() || id.chars().any(|c| !c.is_ascii_graphic()))
    {
        problems.push("app id: must be printable ASCII without spaces".to_owned());
    }

    // Relative secret paths in the file are relative to the file, not to the working directory,
    // so a service and an operator's shell read the same file.
    let relative_to_config = |p: PathBuf| match path.and_then(Path::parent) {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    };
    let app_secret = if let Some(secret) = env(ENV_APP_SECRET) {
        Some((SecretString::from(secret), SecretSource::Environment))
    } else if let Some(file) = env(ENV_APP_SECRET_FILE) {
        read_secret(&PathBuf::from(file), SecretSource::File, &mut problems)
    } else if let Some(dir) = env(ENV_CREDENTIALS_DIRECTORY)
        && Path::new(&dir).join(CREDENTIAL_APP_SECRET).exists()
    {
        read_secret(
            &Path::new(&dir).join(CREDENTIAL_APP_SECRET),
            SecretSource::SystemdCredential,
            &mut problems,
        )
    } else if let Some(file) = api.app_secret_file {
        read_secret(&relative_to_config(file), SecretSource::File, &mut problems)
    } else {
        None
    };

    let mut timeout = |key: &str, value: Option<u64>, default: u64, max: u64| -> Duration {
        let ms = value.unwrap_or(default);
        if ms == 0 || ms > max {
            problems.push(format!("{key}: expected 1 to {max} milliseconds, got {ms}"));
            return Duration::from_millis(default);
        }
        Duration::from_millis(ms)
    };
    let connect_timeout = timeout(
        "api.connect_timeout_ms",
        api.connect_timeout_ms,
        DEFAULT_CONNECT_TIMEOUT_MS,
        60_000,
    );
    let request_timeout = timeout(
        "api.request_timeout_ms",
        api.request_timeout_ms,
        DEFAULT_REQUEST_TIMEOUT_MS,
        600_000,
    );
    if connect_timeout > request_timeout {
        problems.push("api.connect_timeout_ms: must not exceed api.request_timeout_ms".to_owned());
    }

    let batch = BatchConfig {
        default_merchant_pays_fee: file.batch.default_merchant_pays_fee.unwrap_or(false),
    };
    let preflight = resolve_preflight(file.preflight, &mut problems);
    let limits = resolve_limits(file.limits, request_timeout, &mut problems);
    let reports = ReportsConfig {
        dir: file.reports.dir.map(&relative_to_config),
    };
    let policy = resolve_policy(file.policy, path.and_then(Path::parent), &mut problems);
    let daemon = resolve_daemon(daemon_file, &relative_to_config, &mut problems);
    let webhook = resolve_webhook(webhook_file, &mut problems);
    let console = resolve_console(console_file, &mut problems);
    let notify = resolve_notify(notify_files, &relative_to_config, &mut problems);

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Config {
        path: path.map(Path::to_path_buf),
        api: ApiConfig {
            generation,
            v2_base_url,
            v1_base_url,
            app_id,
            app_secret,
            connect_timeout,
            request_timeout,
            withdraw_mode,
        },
        batch,
        preflight,
        limits,
        policy,
        reports,
        daemon,
        webhook,
        console,
        notify,
    })
}

/// `withdraw_mode`, `batch_execution` and `batch_confirm_delay_secs` of `[api]`.
fn resolve_withdraw_mode(api: &ApiFile, generation: ApiGeneration, problems: &mut Vec<String>) -> WithdrawMode {
    use crate::model::bundle::Execution;
    let execution = match api.batch_execution.as_deref() {
        None | Some("single") => Execution::Single,
        Some("batch") => Execution::Batch,
        Some(other) => {
            problems.push(format!(
                "api.batch_execution: expected \"single\" (a transaction per payout) or \"batch\" (many payouts in one transaction), got {other:?}"
            ));
            Execution::Single
        }
    };
    let delay = api.batch_confirm_delay_secs.unwrap_or(0);
    if delay > crate::api::types::MAX_CONFIRM_DELAY_SECS {
        problems.push(format!(
            "api.batch_confirm_delay_secs: CCPayment takes 0 to {}, got {delay}",
            crate::api::types::MAX_CONFIRM_DELAY_SECS
        ));
    }
    let batch_keys_set = api.batch_execution.is_some() || api.batch_confirm_delay_secs.is_some();
    match api.withdraw_mode.as_deref() {
        None | Some("single") => {
            if batch_keys_set {
                problems.push(
                    "api.batch_execution and api.batch_confirm_delay_secs apply only with api.withdraw_mode = \"batch\""
                        .to_owned(),
                );
            }
            WithdrawMode::Single
        }
        Some("batch") => {
            if generation == ApiGeneration::V1 {
                problems.push(
                    "api.withdraw_mode = \"batch\" needs api.version = \"v2\": v1 accounts have no batch withdrawals"
                        .to_owned(),
                );
            }
            WithdrawMode::Batch(crate::batch::bundles::settings(execution, delay))
        }
        Some(other) => {
            problems.push(format!(
                "api.withdraw_mode: expected \"single\" or \"batch\", got {other:?}"
            ));
            WithdrawMode::Single
        }
    }
}

fn resolve_daemon(file: DaemonFile, relative: &dyn Fn(PathBuf) -> PathBuf, problems: &mut Vec<String>) -> DaemonConfig {
    let mut secs = |key: &str, value: Option<u64>, default: u64, min: u64, max: u64| -> Duration {
        let v = value.unwrap_or(default);
        if !(min..=max).contains(&v) {
            problems.push(format!("daemon.{key}: expected {min} to {max} seconds, got {v}"));
            return Duration::from_secs(default);
        }
        Duration::from_secs(v)
    };
    let settle = secs("settle_secs", file.settle_secs, 2, 0, 3600);
    let rescan = secs("rescan_secs", file.rescan_secs, 30, 1, 3600);
    let drain = secs("drain_secs", file.drain_secs, 60, 1, 3600);
    let metrics_listen = match file.metrics_listen.as_deref().map(str::trim) {
        Some("") => None,
        given => {
            let text = given.unwrap_or(DEFAULT_METRICS_LISTEN);
            match text.parse::<std::net::SocketAddr>() {
                Ok(addr) => match crate::util::net::check_loopback(&addr) {
                    Ok(()) => Some(addr),
                    Err(why) => {
                        problems.push(format!("daemon.metrics_listen: {why}"));
                        None
                    }
                },
                Err(_) => {
                    problems.push(format!(
                        "daemon.metrics_listen: expected IP:PORT such as \"127.0.0.1:9187\", or \"\" for off, got {text:?}"
                    ));
                    None
                }
            }
        }
    };
    let log_format = match file.log_format.as_deref() {
        None | Some("human") => LogFormat::Human,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.push(format!(
                "daemon.log_format: expected \"human\" or \"json\", got {other:?}"
            ));
            LogFormat::Human
        }
    };
    let socket_mode = match file.socket_mode.as_deref() {
        None | Some("0600") => 0o600,
        Some("0660") => 0o660,
        Some(other) => {
            problems.push(format!(
                "daemon.socket_mode: expected \"0600\" or \"0660\", got {other:?}"
            ));
            0o600
        }
    };
    let max_active_batches = match file.max_active_batches {
        None => 4,
        Some(n) if (1..=64).contains(&n) => n,
        Some(n) => {
            problems.push(format!("daemon.max_active_batches: expected 1 to 64, got {n}"));
            4
        }
    };
    DaemonConfig {
        inboxes: file.inboxes.unwrap_or_default().into_iter().map(relative).collect(),
        jobs_dir: file.jobs_dir.map(relative),
        settle,
        rescan,
        drain,
        metrics_listen,
        log_format,
        socket_mode,
        max_active_batches,
    }
}

fn resolve_console(file: ConsoleFile, problems: &mut Vec<String>) -> ConsoleConfig {
    let behind_proxy = file.behind_proxy.unwrap_or(false);
    let listen_text = file.listen.unwrap_or_else(|| DEFAULT_CONSOLE_LISTEN.to_owned());
    let listen = match listen_text.trim().parse::<std::net::SocketAddr>() {
        Ok(addr) => {
            if !behind_proxy && !addr.ip().to_canonical().is_loopback() {
                problems.push(format!(
                    "console.listen: {addr} is not a loopback address; the console lets people approve payouts, \
                     so it answers on loopback only unless console.behind_proxy = true says a reverse proxy \
                     (TLS, and ideally its own sign-in) stands in front of it"
                ));
            }
            addr
        }
        Err(_) => {
            problems.push(format!(
                "console.listen: expected IP:PORT such as \"{DEFAULT_CONSOLE_LISTEN}\", got {listen_text:?}"
            ));
            DEFAULT_CONSOLE_LISTEN.parse().expect("the default parses")
        }
    };
    let public_url = match file.public_url.map(|u| u.trim().trim_end_matches('/').to_owned()) {
        Some(url)
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(char::is_whitespace) =>
        {
            problems.push(format!(
                "console.public_url: expected an http:// or https:// address such as \"https://payouts.example.com\", got {url:?}"
            ));
            None
        }
        other => other.filter(|u| !u.is_empty()),
    };
    let trusted_user_header = match file.trusted_user_header.map(|h| h.trim().to_ascii_lowercase()) {
        Some(h) if h.is_empty() => None,
        Some(h) if axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() => {
            problems.push(format!("console.trusted_user_header: {h:?} is not an HTTP header name"));
            None
        }
        other => other,
    };
    let mut trusted_proxies = Vec::new();
    for (i, text) in file.trusted_proxies.unwrap_or_default().iter().enumerate() {
        match text.trim().parse::<std::net::IpAddr>() {
            Ok(ip) => trusted_proxies.push(ip.to_canonical()),
            Err(_) => problems.push(format!(
                "console.trusted_proxies[{i}]: expected an IP address such as \"127.0.0.1\", got {text:?}"
            )),
        }
    }
    if trusted_user_header.is_some() && trusted_proxies.is_empty() {
        problems.push(
            "console.trusted_proxies: empty, so console.trusted_user_header would never be accepted; list the proxy's address"
                .to_owned(),
        );
    }
    let idle_mins = file.idle_timeout_mins.unwrap_or(30);
    if !(1..=24 * 60).contains(&idle_mins) {
        problems.push(format!(
            "console.idle_timeout_mins: expected 1 to 1440, got {idle_mins}"
        ));
    }
    ConsoleConfig {
        enabled: file.enabled.unwrap_or(false),
        listen,
        behind_proxy,
        public_url,
        trusted_user_header,
        trusted_proxies,
        idle_timeout: Duration::from_secs(idle_mins.clamp(1, 24 * 60) * 60),
    }
}

fn resolve_webhook(file: WebhookFile, problems: &mut Vec<String>) -> WebhookConfig {
    let listen_text = file.listen.unwrap_or_else(|| "127.0.0.1:8787".to_owned());
    let listen = match listen_text.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            problems.push(format!(
                "webhook.listen: expected IP:PORT such as \"127.0.0.1:8787\", got {listen_text:?}"
            ));
            std::net::SocketAddr::from(([127, 0, 0, 1], 8787))
        }
    };
    let path = file.path.unwrap_or_else(|| "/ccpayment/webhook".to_owned());
    if !path.starts_with('/') {
        problems.push(format!("webhook.path: must start with '/', got {path:?}"));
    }
    let max_body_bytes = file.max_body_bytes.unwrap_or(64 * 1024);
    if !(1024..=1024 * 1024).contains(&max_body_bytes) {
        problems.push(format!(
            "webhook.max_body_bytes: expected 1024 to 1048576, got {max_body_bytes}"
        ));
    }
    let window_secs = file.window_secs.unwrap_or(120);
    if !(10..=900).contains(&window_secs) {
        problems.push(format!("webhook.window_secs: expected 10 to 900, got {window_secs}"));
    }
    WebhookConfig {
        enabled: file.enabled.unwrap_or(false),
        listen,
        path,
        max_body_bytes: max_body_bytes.clamp(1024, 1024 * 1024),
        window: Duration::from_secs(window_secs.clamp(10, 900)),
    }
}

/// The sections resolved after the API section.
struct Sections {
    batch: BatchFile,
    preflight: PreflightFile,
    limits: LimitsFile,
    policy: PolicyFile,
    reports: ReportsFile,
}

const DEFAULT_RATE_PER_SECOND: u32 = 10;
/// The default cap on requests in flight (`limits.concurrency`): enough for 100 requests a second
/// at 500 ms each (see `api::pacing::inflight`).
const DEFAULT_MAX_IN_FLIGHT: u32 = 64;
const DEFAULT_REMOTE_CHECKS_MAX_ROWS: u64 = 1_000;

/// The default of `limits.not_found_confirm_secs`.
pub const DEFAULT_NOT_FOUND_CONFIRM_SECS: u64 = 60;

fn resolve_limits(file: LimitsFile, request_timeout: Duration, problems: &mut Vec<String>) -> LimitsConfig {
    let mut positive = |key: &str, value: Option<u32>, default: u32| {
        let v = value.unwrap_or(default);
        if v == 0 {
            problems.push(format!("limits.{key}: must be at least 1"));
            return default.max(1);
        }
        v
    };
    let rate = positive("rate_per_second", file.rate_per_second, DEFAULT_RATE_PER_SECOND);
    let burst = positive("burst", file.burst, rate);
    let read_rate = positive("read_rate_per_second", file.read_rate_per_second, rate);
    let concurrency = positive("concurrency", file.concurrency, DEFAULT_MAX_IN_FLIGHT);
    let max_attempts = positive("max_attempts", file.max_attempts, 8);
    let daily_reset_offset_ms = match file.daily_reset_utc.as_deref().map(parse_hh_mm) {
        None => 0,
        Some(Some(ms)) => ms,
        Some(None) => {
            problems.push(format!(
                "limits.daily_reset_utc: expected HH:MM in UTC such as \"00:00\", got {:?}",
                file.daily_reset_utc.unwrap_or_default()
            ));
            0
        }
    };
    if file.daily_request_budget == Some(0) {
        problems.push("limits.daily_request_budget: must be at least 1 (leave it out for no budget)".to_owned());
    }
    // A lookup made before a request could have timed out says nothing about it.
    let timeout_secs = request_timeout.as_millis().div_ceil(1000) as u64;
    let not_found_confirm_secs = file
        .not_found_confirm_secs
        .unwrap_or(DEFAULT_NOT_FOUND_CONFIRM_SECS.max(timeout_secs));
    if not_found_confirm_secs < timeout_secs {
        problems.push(format!(
            "limits.not_found_confirm_secs: must be at least the request timeout ({timeout_secs} s), got {not_found_confirm_secs}"
        ));
    }
    LimitsConfig {
        rate_per_second: rate,
        burst,
        read_rate_per_second: read_rate,
        concurrency,
        max_attempts,
        daily_request_budget: file.daily_request_budget,
        daily_reset_offset_ms,
        track_first_check_secs: file.track_first_check_secs.unwrap_or(10).max(1),
        track_max_interval_secs: file.track_max_interval_secs.unwrap_or(600).max(1),
        not_found_confirm_secs,
        day_length_ms: i64::try_from(file.day_length_secs.unwrap_or(86_400).max(1)).unwrap_or(86_400) * 1000,
    }
}

/// `HH:MM` → milliseconds after midnight.
fn parse_hh_mm(text: &str) -> Option<i64> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m) && text.len() == 5).then_some((h * 60 + m) * 60_000)
}

fn resolve_preflight(file: PreflightFile, problems: &mut Vec<String>) -> PreflightConfig {
    let max_rows = file.remote_checks_max_rows.unwrap_or(DEFAULT_REMOTE_CHECKS_MAX_ROWS);
    let remote_checks = match file.remote_checks.as_deref() {
        None | Some("auto") => RemoteChecks::UpTo(max_rows),
        Some("always") => RemoteChecks::Always,
        Some("never") => RemoteChecks::Never,
        Some(other) => {
            problems.push(format!(
                "preflight.remote_checks: expected \"auto\", \"always\" or \"never\", got {other:?}"
            ));
            RemoteChecks::UpTo(max_rows)
        }
    };
    let percent = file
        .balance_margin_percent
        .and_then(|d| d.resolve("preflight.balance_margin_percent", problems))
        .unwrap_or_default();
    if percent > Decimal::ONE_HUNDRED {
        problems.push("preflight.balance_margin_percent: expected 0 to 100".to_owned());
    }
    PreflightConfig {
        remote_checks,
        balance_margin: percent / Decimal::ONE_HUNDRED,
    }
}

fn resolve_policy(file: PolicyFile, dir: Option<&Path>, problems: &mut Vec<String>) -> Policy {
    override_policy(&Policy::default(), file, "policy", dir, problems)
}

/// `base` with every setting `file` gives replacing the base's (a coin's limits replace that
/// coin's limits as a whole). Problems name their key under `prefix` (`policy`, or
/// `jobs/payroll.toml: policy`). Relative paths (signers, deny lists) are taken from `dir`, the
/// folder of the file that names them. An allowed-signers or deny-list file that cannot be read
/// is a problem, never "no list".
pub(crate) fn override_policy(
    base: &Policy,
    file: PolicyFile,
    prefix: &str,
    dir: Option<&Path>,
    problems: &mut Vec<String>,
) -> Policy {
    let resolve_path = |p: PathBuf| match dir {
        Some(d) if p.is_relative() => d.join(p),
        _ => p,
    };
    let upper = |list: Option<Vec<String>>| -> Vec<String> {
        list.unwrap_or_default()
            .into_iter()
            .map(|s| s.trim().to_ascii_uppercase())
            .collect()
    };
    let approval = match file.approval.as_deref() {
        None => base.approval,
        Some("never") => ApprovalRule::Never,
        Some("always") => ApprovalRule::Always,
        Some("above") => ApprovalRule::Above,
        Some(other) => {
            problems.push(format!(
                "{prefix}.approval: expected \"never\", \"always\" or \"above\", got {other:?}"
            ));
            base.approval
        }
    };
    let mut coins = base.coins.clone();
    for (symbol, c) in file.coins {
        let key = |name: &str| format!("{prefix}.coins.{symbol}.{name}");
        let coin = CoinPolicy {
            max_per_order: c.max_per_order.and_then(|d| d.resolve(&key("max_per_order"), problems)),
            max_per_batch: c.max_per_batch.and_then(|d| d.resolve(&key("max_per_batch"), problems)),
            max_per_day: c.max_per_day.and_then(|d| d.resolve(&key("max_per_day"), problems)),
            approval_above: c
                .approval_above
                .and_then(|d| d.resolve(&key("approval_above"), problems)),
            approval_tiers: c
                .approval_tiers
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| {
                    if !(1..=10).contains(&t.approvals) {
                        problems.push(format!(
                            "{}: approvals: expected 1 to 10, got {}",
                            key("approval_tiers"),
                            t.approvals
                        ));
                        return None;
                    }
                    let above = t.above.resolve(&key("approval_tiers"), problems)?;
                    Some(ApprovalTier {
                        above,
                        approvals: t.approvals,
                    })
                })
                .collect(),
        };
        coins.insert(symbol.to_ascii_uppercase(), coin);
    }
    if approval == ApprovalRule::Above && coins.values().all(|c| c.approval_above.is_none()) {
        problems.push(format!(
            "{prefix}.approval = \"above\" needs {prefix}.coins.<COIN>.approval_above for at least one coin"
        ));
    }
    let list = |given: Option<Vec<String>>, base: &Vec<String>| match given {
        Some(list) => upper(Some(list)),
        None => base.clone(),
    };
    let approvals_required = match file.approvals_required {
        None => base.approvals_required,
        Some(n) if (1..=10).contains(&n) => n,
        Some(n) => {
            problems.push(format!("{prefix}.approvals_required: expected 1 to 10, got {n}"));
            base.approvals_required
        }
    };
    let mut signers = |key: &str, given: Option<PathBuf>, base: &Option<SignersFile>| match given {
        None => base.clone(),
        Some(p) => read_signers(&resolve_path(p), &format!("{prefix}.{key}"), problems),
    };
    let allowed_signers = signers("allowed_signers", file.allowed_signers, &base.allowed_signers);
    let approver_signers = signers("approver_signers", file.approver_signers, &base.approver_signers);
    let require_signature = file.require_signature.unwrap_or(base.require_signature);
    if require_signature && allowed_signers.is_none() {
        problems.push(format!(
            "{prefix}.require_signature = true needs {prefix}.allowed_signers (an OpenSSH allowed_signers file)"
        ));
    }
    let new_recipients = match file.new_recipients.as_deref().map(str::trim) {
        None => base.new_recipients,
        Some("allow") => NewRecipients::Allow,
        Some("hold") => NewRecipients::Hold,
        Some(other) => match other.strip_prefix("cap:") {
            Some(cap) => DecimalSetting::Text(cap.trim().to_owned())
                .resolve(&format!("{prefix}.new_recipients"), problems)
                .map_or(base.new_recipients, NewRecipients::Cap),
            None => {
                problems.push(format!(
                    "{prefix}.new_recipients: expected \"allow\", \"hold\" or \"cap:AMOUNT\", got {other:?}"
                ));
                base.new_recipients
            }
        },
    };
    let changed_payee_address = match file.changed_payee_address.as_deref() {
        None => base.changed_payee_address,
        Some("allow") => ChangedPayee::Allow,
        Some("hold") => ChangedPayee::Hold,
        Some(other) => {
            problems.push(format!(
                "{prefix}.changed_payee_address: expected \"allow\" or \"hold\", got {other:?}"
            ));
            base.changed_payee_address
        }
    };
    let deny_lists = match file.deny_lists {
        None => base.deny_lists.clone(),
        Some(paths) => paths
            .into_iter()
            .map(|p| {
                let path = resolve_path(p);
                if let Err(e) = std::fs::read(&path) {
                    problems.push(format!("{prefix}.deny_lists: cannot read {}: {e}", path.display()));
                }
                path.display().to_string()
            })
            .collect(),
    };
    let diff_warn_percent = file
        .diff_warn_percent
        .and_then(|d| d.resolve_percent(&format!("{prefix}.diff_warn_percent"), problems))
        .unwrap_or(base.diff_warn_percent);
    Policy {
        allowed_coins: list(file.allowed_coins, &base.allowed_coins),
        allowed_chains: list(file.allowed_chains, &base.allowed_chains),
        approval,
        coins,
        approvals_required,
        maker_may_approve: file.maker_may_approve.unwrap_or(base.maker_may_approve),
        approvers: file
            .approvers
            .map(|a| a.into_iter().map(|s| s.trim().to_owned()).collect())
            .unwrap_or_else(|| base.approvers.clone()),
        approver_signers,
        require_signature,
        allowed_signers,
        new_recipients,
        changed_payee_address,
        deny_lists,
        diff_warn_percent,
    }
}

/// Reads and parses an allowed-signers file; a file that cannot be read or parsed is a problem
/// naming `key`.
fn read_signers(path: &Path, key: &str, problems: &mut Vec<String>) -> Option<SignersFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            problems.push(format!("{key}: cannot read {}: {e}", path.display()));
            return None;
        }
    };
    let shown = path.display().to_string();
    match crate::rules::signature::AllowedSigners::parse(&text, &shown) {
        Ok(signers) if signers.is_empty() => {
            problems.push(format!("{key}: {shown} lists no key"));
            None
        }
        Ok(signers) => Some(SignersFile { path: shown, signers }),
        Err(e) => {
            problems.push(format!("{key}: {e}"));
            None
        }
    }
}

/// Accepts `scheme://host[:port]` with an optional path prefix (for a proxy), http or https,
/// and returns it without a trailing slash.
fn check_base_url(value: &str) -> Result<String, &'static str> {
    let url = reqwest::Url::parse(value).map_err(|_| "expected scheme://host[:port]")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("expected an http or https URL");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("expected a host");
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err("expected no query, fragment or credentials in the URL");
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// The body a notify target receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    /// One JSON object per notice, signed with the target's secret when it has one.
    Json,
    /// Slack's incoming-webhook body (`text` and `blocks`).
    Slack,
}

impl NotifyFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Json => "json",
            NotifyFormat::Slack => "slack",
        }
    }
}

/// A target's URL. A Slack webhook's URL is itself a credential, so only its scheme and host
/// are ever shown (`Display`, `Debug`); [`TargetUrl::as_str`] is for the request alone.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetUrl(String);

impl TargetUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `scheme://host[:port]/…`: what logs, `status` and errors show.
    pub fn shown(&self) -> String {
        let (scheme, rest) = self.split();
        let host = self.host();
        let more = if rest.len() > host.len() { "/…" } else { "" };
        format!("{scheme}://{host}{more}")
    }

    /// The scheme and what follows `://`.
    fn split(&self) -> (&str, &str) {
        self.0.split_once("://").unwrap_or(("", self.0.as_str()))
    }

    /// `host[:port]`, without a `user:password@` (which never shows).
    fn host(&self) -> &str {
        let authority = self.split().1.split(['/', '?', '#']).next().unwrap_or("");
        authority.rsplit('@').next().unwrap_or(authority)
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl fmt::Debug for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TargetUrl({})", self.shown())
    }
}

/// One `[[notify]]` target.
#[derive(Debug, Clone)]
pub struct NotifyTarget {
    /// Its name: the key of its deliveries in the outbox, shown in `status` and the metrics.
    pub name: String,
    pub url: TargetUrl,
    pub format: NotifyFormat,
    /// The HMAC key of `X-Ccpayout-Signature`, from `secret_file`.
    pub secret: Option<SecretString>,
    /// The events it wants (all by default).
    pub events: Vec<crate::model::notice::NoticeEvent>,
    /// How long one delivery may take.
    pub timeout: Duration,
}

impl NotifyTarget {
    /// The events it wants, as the store's outbox is told them.
    pub fn subscription(&self) -> crate::model::notice::Subscription {
        crate::model::notice::Subscription {
            target: self.name.clone(),
            events: self.events.clone(),
        }
    }
}

/// The `[[notify]]` targets: each needs an http(s) URL; names are unique (a name defaults to
/// the URL's host, then `host-2`, …).
fn resolve_notify(
    files: Vec<NotifyFile>,
    relative: &dyn Fn(PathBuf) -> PathBuf,
    problems: &mut Vec<String>,
) -> Vec<NotifyTarget> {
    use crate::model::notice::NoticeEvent;
    let mut targets: Vec<NotifyTarget> = Vec::new();
    for (i, file) in files.into_iter().enumerate() {
        let prefix = format!("notify[{}]", i + 1);
        let Some(url) = file.url else {
            problems.push(format!("{prefix}.url: required (an http:// or https:// URL)"));
            continue;
        };
        let lower = url.to_ascii_lowercase();
        let url = TargetUrl(url);
        if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.host().is_empty() {
            problems.push(format!(
                "{prefix}.url: expected an http:// or https:// URL, got {}",
                url.shown()
            ));
            continue;
        }
        if url.0.chars().any(char::is_whitespace) {
            problems.push(format!("{prefix}.url: must not contain spaces"));
            continue;
        }
        let format = match file.format.as_deref() {
            None | Some("json") => NotifyFormat::Json,
            Some("slack") => NotifyFormat::Slack,
            Some(other) => {
                problems.push(format!(
                    "{prefix}.format: expected \"json\" or \"slack\", got {other:?}"
                ));
                continue;
            }
        };
        let events = match file.events {
            None => NoticeEvent::ALL.to_vec(),
            Some(names) => {
                let mut events = Vec::new();
                for name in &names {
                    match NoticeEvent::parse(name) {
                        Some(e) if !events.contains(&e) => events.push(e),
                        Some(_) => {}
                        None => problems.push(format!(
                            "{prefix}.events: unknown event {name:?}; known: {}",
                            NoticeEvent::ALL.map(NoticeEvent::as_str).join(", ")
                        )),
                    }
                }
                if names.is_empty() {
                    problems.push(format!("{prefix}.events: empty; leave it out for every event"));
                }
                events
            }
        };
        let secret = file.secret_file.map(relative).and_then(|path| {
            let key = format!("{prefix}.secret_file");
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let secret = text.trim_end_matches(['\n', '\r']);
                    if secret.is_empty() {
                        problems.push(format!("{key}: {} is empty", path.display()));
                        None
                    } else {
                        Some(SecretString::from(secret.to_owned()))
                    }
                }
                Err(e) => {
                    problems.push(format!("{key}: cannot read {}: {e}", path.display()));
                    None
                }
            }
        });
        let timeout = match file.timeout_secs.unwrap_or(10) {
            n @ 1..=120 => Duration::from_secs(n),
            n => {
                problems.push(format!("{prefix}.timeout_secs: expected 1 to 120, got {n}"));
                continue;
            }
        };
        let name = match file.name {
            Some(name) => {
                if name.is_empty()
                    || name.len() > 64
                    || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    problems.push(format!(
                        "{prefix}.name: 1 to 64 letters, digits, '-', '_' or '.', got {name:?}"
                    ));
                    continue;
                }
                if targets.iter().any(|t| t.name == name) {
                    problems.push(format!("{prefix}.name: {name:?} names another target too"));
                    continue;
                }
                name
            }
            None => {
                let host = url.host();
                let mut name = host.to_owned();
                let mut n = 1;
                while targets.iter().any(|t| t.name == name) {
                    n += 1;
                    name = format!("{host}-{n}");
                }
                name
            }
        };
        targets.push(NotifyTarget {
            name,
            url,
            format,
            secret,
            events,
            timeout,
        });
    }
    targets
}

/// Reads a secret file: the whole content minus one trailing line break.
fn read_secret(
    path: &Path,
    source: impl FnOnce(PathBuf) -> SecretSource,
    problems: &mut Vec<String>,
) -> Option<(SecretString, SecretSource)> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text
                .strip_suffix('\n')
                .map(|s| s.strip_suffix('\r').unwrap_or(s))
                .unwrap_or(&text);
            if secret.is_empty() {
                problems.push(format!("app secret file {} is empty", path.display()));
                return None;
            }
            Some((SecretString::from(secret.to_owned()), source(path.to_path_buf())))
        }
        Err(e) => {
            problems.push(format!("cannot read the app secret file {}: {e}", path.display()));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| map.get(k).cloned()
    }

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ccpayout.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), &env_of(env))
    }

    #[test]
    fn defaults_point_at_the_real_api() {
        let config = Config::load(None, &env_of(&[])).unwrap();
        assert_eq!(config.api.v2_base_url, "https://ccpayment.com");
        assert_eq!(config.api.v1_base_url, "https://admin.ccpayment.com");
        assert_eq!(config.api.generation, ApiGeneration::V2);
        assert!(config.client_config().is_err());
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = load_text(
            "[api]\nbase_url = \"https://proxy.example\"\napp_id = \"from-file\"\n",
            &[
                (ENV_API_BASE_URL, "http://127.0.0.1:8080/"),
                (ENV_APP_ID, "from-env"),
                (ENV_APP_SECRET, "s3"),
            ],
        )
        .unwrap();
        assert_eq!(config.api.v2_base_url, "http://127.0.0.1:8080");
        assert_eq!(config.api.v1_base_url, "http://127.0.0.1:8080");
        assert_eq!(config.api.app_id.as_deref(), Some("from-env"));
        let client = config.client_config().unwrap();
        assert_eq!(client.app_secret.expose_secret(), "s3");
    }

    #[test]
    fn the_console_is_off_and_on_loopback_by_default_and_checked() {
        let config = Config::load(None, &env_of(&[])).unwrap();
        assert!(!config.console.enabled);
        assert_eq!(config.console.listen, DEFAULT_CONSOLE_LISTEN.parse().unwrap());
        assert!(config.console.listen.ip().is_loopback());
        assert!(
            config.console.trusted_proxies.is_empty(),
            "no proxy is trusted unless listed"
        );
        assert_eq!(config.console.idle_timeout, Duration::from_secs(30 * 60));

        let problems = |text: &str| match load_text(text, &[]) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems,
        };
        let p = problems("[console]\nenabled = true\nlisten = \"0.0.0.0:8789\"\n");
        assert!(
            p[0].starts_with("console.listen: 0.0.0.0:8789 is not a loopback address"),
            "{p:?}"
        );
        assert!(p[0].contains("behind_proxy"), "{p:?}");
        assert!(problems("[console]\nlisten = \"[::]:8789\"\nbehind_proxy = true\n").is_empty());
        let p = problems("[console]\ntrusted_user_header = \"X-Remote-User\"\n");
        assert!(p[0].starts_with("console.trusted_proxies: empty"), "{p:?}");
        let p = problems(
            "[console]\ntrusted_user_header = \"bad header\"\ntrusted_proxies = [\"10.0.0.1\", \"proxy\"]\n\
             public_url = \"payouts.example.com\"\nidle_timeout_mins = 0\n",
        );
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p.iter().any(|p| p.starts_with("console.trusted_user_header:")), "{p:?}");
        assert!(p.iter().any(|p| p.starts_with("console.trusted_proxies[1]:")), "{p:?}");
        assert!(p.iter().any(|p| p.starts_with("console.public_url:")), "{p:?}");
        assert!(p.iter().any(|p| p.starts_with("console.idle_timeout_mins:")), "{p:?}");
        let config = load_text(
            "[console]\nenabled = true\npublic_url = \"https://payouts.example.com/\"\n\
             trusted_user_header = \"X-Remote-User\"\ntrusted_proxies = [\"::ffff:10.0.0.1\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            config.console.public_url.as_deref(),
            Some("https://payouts.example.com")
        );
        assert_eq!(config.console.trusted_user_header.as_deref(), Some("x-remote-user"));
        assert_eq!(
            config.console.trusted_proxies,
            vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(
            config.console.batch_url("b1").as_deref(),
            Some("https://payouts.example.com/batches/b1")
        );
        let on = |extra: &str| {
            load_text(&format!("[console]\nenabled = true\n{extra}"), &[])
                .unwrap()
                .console
        };
        assert_eq!(
            on("").batch_url("b1").as_deref(),
            Some("http://127.0.0.1:8789/batches/b1")
        );
        assert_eq!(
            on("listen = \"127.0.0.1:0\"\n").batch_url("b1"),
            None,
            "a port the system picks"
        );
        assert_eq!(
            Config::load(None, &env_of(&[])).unwrap().console.batch_url("b1"),
            None,
            "off"
        );
    }

    #[test]
    fn notify_targets_are_read_named_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n.secret"), "k3y\n").unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[api]\napp_id = \"x\"\n\
             [[notify]]\nurl = \"https://hooks.slack.com/services/T1/B2/SECRETPART\"\nformat = \"slack\"\n\
             [[notify]]\nname = \"treasury\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret_file = \"n.secret\"\n\
             events = [\"approval_required\", \"rows_failed\"]\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), &env_of(&[])).unwrap();
        let [slack, treasury] = &config.notify[..] else {
            panic!("{:?}", config.notify)
        };
        assert_eq!(slack.name, "hooks.slack.com");
        assert_eq!(slack.format, NotifyFormat::Slack);
        assert_eq!(slack.events.len(), crate::model::notice::NoticeEvent::ALL.len());
        assert_eq!(slack.url.to_string(), "https://hooks.slack.com/…");
        assert!(!format!("{slack:?}").contains("SECRETPART"), "{slack:?}");
        assert_eq!(treasury.secret.as_ref().unwrap().expose_secret(), "k3y");
        assert_eq!(treasury.events.len(), 2);
        assert_eq!(treasury.timeout, Duration::from_secs(10));
        assert_eq!(config.notice_subscriptions()[1].target, "treasury");

        std::fs::write(
            &path,
            "[api]\napp_id = \"x\"\n\
             [[notify]]\nurl = \"ftp://x/y\"\n\
             [[notify]]\nname = \"a\"\nurl = \"http://h\"\nevents = [\"batch_done\"]\nformat = \"xml\"\n\
             [[notify]]\nname = \"b\"\nurl = \"http://h\"\nsecret_file = \"missing\"\n\
             [[notify]]\nname = \"b\"\nurl = \"http://h\"\n\
             [[notify]]\nformat = \"json\"\n",
        )
        .unwrap();
        let problems = Config::load(Some(&path), &env_of(&[])).unwrap_err().problems.join("\n");
        for expected in [
            "notify[1].url: expected an http:// or https:// URL",
            "notify[2].format: expected \"json\" or \"slack\"",
            "notify[3].secret_file: cannot read",
            "notify[4].name: \"b\" names another target too",
            "notify[5].url: required",
        ] {
            assert!(problems.contains(expected), "{expected} in\n{problems}");
        }
    }

    #[test]
    fn secret_file_is_relative_to_the_config_and_loses_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "abc\n").unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[api]\napp_id = \"x\"\napp_secret_file = \"secret\"\n").unwrap();
        let config = Config::load(Some(&path), &env_of(&[])).unwrap();
        let (secret, source) = config.api.app_secret.unwrap();
        assert_eq!(secret.expose_secret(), "abc");
        assert_eq!(source, SecretSource::File(dir.path().join("secret")));
    }

    #[test]
    fn systemd_credential_is_used_when_present() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CREDENTIAL_APP_SECRET), "cred").unwrap();
        let config = Config::load(
            None,
            &env_of(&[(ENV_CREDENTIALS_DIRECTORY, dir.path().to_str().unwrap())]),
        )
        .unwrap();
        let (secret, source) = config.api.app_secret.unwrap();
        assert_eq!(secret.expose_secret(), "cred");
        assert!(matches!(source, SecretSource::SystemdCredential(_)));
    }

    #[test]
    fn withdraw_mode_is_single_by_default_and_batch_takes_its_settings() {
        let config = load_text("", &[]).unwrap();
        assert_eq!(config.api.withdraw_mode, WithdrawMode::Single);
        assert_eq!(config.preflight_settings().bundles, None);
        let config = load_text(
            "[api]\nwithdraw_mode = \"batch\"\nbatch_execution = \"batch\"\nbatch_confirm_delay_secs = 600\n",
            &[],
        )
        .unwrap();
        let settings = config.api.withdraw_mode.bundles().unwrap();
        assert_eq!(settings.execution, crate::model::bundle::Execution::Batch);
        assert_eq!(settings.confirm_delay_secs, 600);
        assert_eq!(config.preflight_settings().bundles, Some(settings));
    }

    #[test]
    fn withdraw_mode_problems_name_the_key() {
        for (text, key) in [
            ("[api]\nwithdraw_mode = \"bulk\"\n", "api.withdraw_mode"),
            (
                "[api]\nwithdraw_mode = \"batch\"\nbatch_execution = \"parallel\"\n",
                "api.batch_execution",
            ),
            (
                "[api]\nwithdraw_mode = \"batch\"\nbatch_confirm_delay_secs = 3601\n",
                "api.batch_confirm_delay_secs",
            ),
            (
                "[api]\nbatch_execution = \"batch\"\n",
                "apply only with api.withdraw_mode",
            ),
            (
                "[api]\nversion = \"v1\"\nwithdraw_mode = \"batch\"\n",
                "needs api.version",
            ),
        ] {
            let err = load_text(text, &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} → {err}");
        }
    }

    #[test]
    fn diff_warn_percent_is_a_decimal_of_0_or_more_and_20_by_default() {
        let percent = |text: &str| load_text(text, &[]).map(|c| c.policy.diff_warn_percent);
        assert_eq!(percent("").unwrap(), Decimal::from(20));
        assert_eq!(percent("[policy]\ndiff_warn_percent = 0\n").unwrap(), Decimal::ZERO);
        assert_eq!(
            percent("[policy]\ndiff_warn_percent = \"0.0\"\n").unwrap(),
            Decimal::ZERO
        );
        assert_eq!(
            percent("[policy]\ndiff_warn_percent = \"12.5\"\n").unwrap(),
            Decimal::new(125, 1)
        );
        assert_eq!(
            percent("[policy]\ndiff_warn_percent = 150\n").unwrap(),
            Decimal::from(150)
        );
        for bad in ["-5", "\"-5\"", "12.5", "\"ten\""] {
            let err = percent(&format!("[policy]\ndiff_warn_percent = {bad}\n")).unwrap_err();
            assert!(err.to_string().contains("policy.diff_warn_percent"), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let err = load_text("[api]\nbase_ulr = \"https://x\"\n", &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("base_ulr"), "{text}");
        let err = load_text("[apy]\n", &[]).unwrap_err();
        assert!(err.to_string().contains("apy"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = load_text(
            "[api]\nversion = \"v3\"\nbase_url = \"ftp://x\"\nconnect_timeout_ms = 0\napp_secret_file = \"/nonexistent/s\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        let text = err.to_string();
        for needle in [
            "api.version",
            "api.base_url",
            "api.connect_timeout_ms",
            "/nonexistent/s",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            check_base_url("https://ccpayment.com/").unwrap(),
            "https://ccpayment.com"
        );
        assert!(check_base_url("ccpayment.com").is_err());
        assert!(check_base_url("https://user:pw@ccpayment.com").is_err());
        assert!(check_base_url("https://ccpayment.com/?a=b").is_err());
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let config = Config::load(None, &env_of(&[(ENV_APP_SECRET, "topsecret-value"), (ENV_APP_ID, "a")])).unwrap();
        assert!(!format!("{config:?}").contains("topsecret-value"));
        assert!(!format!("{:?}", config.client_config().unwrap()).contains("topsecret-value"));
    }
}
