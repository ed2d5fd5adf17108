//! Named jobs of the `ccpayout run` daemon: `jobs/*.toml` files, each an inbox folder and,
//! optionally, a cron schedule in an IANA time zone with what a firing does.
//!
//! - [`load_jobs`] reads and validates a jobs folder, reporting every problem at once as
//!   `FILE: key: message` (a file with a key serde cannot read reports only that key, as the
//!   config file does).
//! - [`schedule`] is the pure cron maths: next fire times across daylight-saving changes, the
//!   start-up catch-up decision, coalescing of instants that passed during a run.
//! - [`fire`] is the I/O edge: releasing staged files into the inbox, or running a producer
//!   command with a filtered environment.
//! - [`driver`] is the loop of one scheduled job on tokio time: it persists each run before it
//!   fires, never overlaps runs, and stops on cancellation.
//!
//! A firing never pays anything itself: it only puts batch files into the job's inbox, where the
//! daemon picks them up like any other file (so a scheduled batch gets the same claim, content-hash
//! dedupe, validation, policy and approval as a file dropped by hand).
//!
//! See `jobs/README.md` for the file format as users see it.

pub mod driver;
pub mod fire;
pub mod schedule;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_path_to_error::Segment;
use toml::Table;

use crate::config::{PolicyFile, override_policy};
use crate::rules::policy::Policy;

pub use driver::{FireFn, JobError, LastRun, LastRuns, describe, fire_fn, next_fires, run_job};
pub use fire::execute;
pub use schedule::{Missed, Schedule};

/// The default time limit of a `[command]`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// The placeholders a `[command]` argument may contain.
pub const PLACEHOLDERS: [&str; 4] = ["inbox", "job", "scheduled", "date"];

/// One job, validated.
#[derive(Debug, Clone)]
pub struct Job {
    /// The file stem, `[a-z0-9][a-z0-9_-]*`.
    pub name: String,
    /// The job file it came from.
    pub file: PathBuf,
    /// Free text for `status`.
    pub description: Option<String>,
    /// The folder the daemon watches for this job's batches (resolved against the job file's
    /// folder when written relative).
    pub inbox: PathBuf,
    /// When the job fires; `None` for an inbox-only job.
    pub schedule: Option<Schedule>,
    /// What to do with runs missed while the daemon was down.
    pub missed: Missed,
    /// What a firing does; `Some` exactly when there is a schedule.
    pub action: Option<Action>,
    /// How long a file in the inbox must stay unchanged before it is taken (for producers that
    /// cannot rename); `None` takes files at once.
    pub settle: Option<Duration>,
    /// A disabled job is validated but neither fires nor has its inbox watched.
    pub enabled: bool,
    /// The config's policy with this job's overrides applied.
    pub policy: Policy,
}

impl Job {
    /// The job's time zone: its schedule's, or UTC for an inbox-only job.
    pub fn tz(&self) -> chrono_tz::Tz {
        self.schedule.as_ref().map_or(chrono_tz::Tz::UTC, Schedule::tz)
    }
}

/// What a scheduled job does when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Move every batch file from `staging` into the inbox.
    Release {
        /// The folder files are staged in until the scheduled time.
        staging: PathBuf,
    },
    /// Run a command that writes a batch into the inbox.
    Command {
        /// Program and arguments, placeholders not yet substituted.
        argv: Vec<String>,
        /// The command is killed when it runs longer.
        timeout: Duration,
    },
}

/// Every problem found in a jobs folder, each `FILE: key: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct JobsError {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl fmt::Display for JobsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{n} problem{} in the job files:", if n == 1 { "" } else { "s" })?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Reads every `*.toml` file in `dir` (sorted by name; dotfiles and other files are ignored) as a
/// job whose name is the file stem, applying its `[policy]` overrides on top of `base_policy`.
///
/// Every problem in every file is collected before failing (see [`parse_job`] for what one file
/// reports), and two jobs that share an inbox, or a job that stages files in another job's inbox,
/// are refused too.
pub fn load_jobs(dir: &Path, base_policy: &Policy) -> Result<Vec<Job>, JobsError> {
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return Err(JobsError {
                problems: vec![format!("{}: cannot read the jobs folder: {e}", dir.display())],
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && name.ends_with(".toml") && p.is_file()
        })
        .collect();
    files.sort();

    let mut jobs = Vec::new();
    for file in files {
        let label = file.display().to_string();
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                if let Some(job) = parse_job(&file, &text, base_policy, &mut problems) {
                    jobs.push(job);
                }
            }
            Err(e) => problems.push(format!("{label}: cannot read: {e}")),
        }
    }
    check_folders(&jobs, &mut problems);
    if problems.is_empty() {
        Ok(jobs)
    } else {
        Err(JobsError { problems })
    }
}

/// Inboxes and staging folders across jobs: no inbox shared, no staging folder that is an inbox
/// (staged files would be paid at once) or an inbox's working sub-folder.
fn check_folders(jobs: &[Job], problems: &mut Vec<String>) {
    let mut inboxes: BTreeMap<PathBuf, &Job> = BTreeMap::new();
    for job in jobs {
        let inbox = normalize(&job.inbox);
        if let Some(other) = inboxes.get(&inbox) {
            problems.push(format!(
                "{}: inbox: {} is also the inbox of job {:?} ({}); each job needs its own inbox",
                job.file.display(),
                job.inbox.display(),
                other.name,
                other.file.display()
            ));
        } else {
            inboxes.insert(inbox, job);
        }
    }
    for job in jobs {
        let Some(Action::Release { staging }) = &job.action else {
            continue;
        };
        let staging_n = normalize(staging);
        for (inbox, owner) in &inboxes {
            let working = [crate::inbox::PROCESSING, crate::inbox::DONE, crate::inbox::REJECTED];
            let clash = if staging_n == *inbox {
                Some("is the inbox of job")
            } else if working.iter().any(|sub| staging_n == inbox.join(sub)) {
                Some("is a working folder of the inbox of job")
            } else {
                None
            };
            if let Some(what) = clash {
                problems.push(format!(
                    "{}: release.staging: {} {what} {:?}; staged files must wait in a folder the daemon does not watch",
                    job.file.display(),
                    staging.display(),
                    owner.name
                ));
            }
        }
    }
}

/// A path with `.` components and trailing separators removed and `..` folded lexically, for
/// comparing folders named in different spellings.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Whether `name` is a valid job name: `[a-z0-9][a-z0-9_-]*`.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A job file as written. Unknown keys are errors, as in the config file: a misspelt key must
/// not leave a job silently without its schedule or its limits. The field order is the order
/// serde lists the keys in when it refuses an unknown one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    description: Option<String>,
    inbox: Option<String>,
    schedule: Option<String>,
    timezone: Option<String>,
    missed: Option<String>,
    settle_secs: Option<u64>,
    enabled: Option<bool>,
    /// Shorthand for `policy.approval`.
    approval: Option<String>,
    release: Option<ReleaseFile>,
    command: Option<CommandFile>,
    #[serde(default, deserialize_with = "policy_table")]
    policy: PolicyFile,
}

/// `[release]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a map")]
struct ReleaseFile {
    staging: Option<String>,
}

/// `[command]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a map")]
struct CommandFile {
    argv: Option<Vec<String>>,
    timeout_secs: Option<u64>,
}

/// Reads `[policy]` as the config's [`PolicyFile`], but refuses a value that is not a table
/// with "expected a map" like the job's other tables, rather than with the Rust type's name.
/// The config's own messages are left as they are.
fn policy_table<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PolicyFile, D::Error> {
    struct TableOnly;
    impl<'de> Visitor<'de> for TableOnly {
        type Value = PolicyFile;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PolicyFile, A::Error> {
            PolicyFile::deserialize(MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_map(TableOnly)
}

/// Parses one job file's text. Does no I/O: `file` only names the job, labels the problems and
/// anchors relative paths. Problems are appended; `None` when there was at least one.
///
/// A file that is not valid TOML, or that serde cannot read into `JobFile` (an unknown key, a
/// value of the wrong type), gives that one problem; otherwise every value is checked and every
/// problem reported.
pub fn parse_job(file: &Path, text: &str, base_policy: &Policy, problems: &mut Vec<String>) -> Option<Job> {
    let label = file.display().to_string();
    let before = problems.len();
    let mut p = Problems {
        label: &label,
        problems,
    };
    // The name is checked first and on its own, so a bad name is reported even with bad TOML.
    let name = job_name(file, &mut p);
    let (job_file, set_aside) = match read_job_file(text) {
        Ok(read) => read,
        Err(message) => {
            p.problems.push(format!("{label}: {message}"));
            return None;
        }
    };
    for (key, message) in &set_aside {
        p.push(key, message);
    }
    let job_file = job_file?;
    // A key set aside above is not reported again as missing.
    let resolved_from = p.problems.len();
    let job = resolve(file, name, job_file, base_policy, &mut p);
    let mut index = 0;
    p.problems.retain(|problem| {
        index += 1;
        index <= resolved_from
            || !set_aside
                .iter()
                .any(|(key, _)| problem.starts_with(&format!("{label}: {key}: required")))
    });
    if p.problems.len() > before {
        return None;
    }
    job
}

/// The job's name: the file stem, which must match `[a-z0-9][a-z0-9_-]*` because it names the
/// job in the store, in logs and in command placeholders.
fn job_name(file: &Path, p: &mut Problems<'_>) -> String {
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_owned();
    if !is_valid_name(&name) {
        p.push(
            "name",
            format!("the job name is the file name without .toml and must match [a-z0-9][a-z0-9_-]*, got {name:?}"),
        );
    }
    name
}

/// A key serde could not read, as the file writes it, and serde's message.
type SetAside = (String, String);

/// Keys serde could not read that are set aside before the file is read again; more than this
/// and the file is not worth reading on.
const MAX_SET_ASIDE: usize = 32;

/// Reads a job file's text into a [`JobFile`], reporting every key serde cannot read — unknown,
/// or of the wrong type — rather than only the first: each such key is set aside with its
/// message and the rest is read again, so the resolve step can still report the file's other
/// problems. `Err` is invalid TOML (one line with its position); `Ok((None, …))` a file that
/// still does not read once the keys are set aside.
fn read_job_file(text: &str) -> Result<(Option<JobFile>, Vec<SetAside>), String> {
    let mut table: Table = text.parse().map_err(|e: toml::de::Error| {
        // One line with the position, rather than the parser's multi-line snippet.
        let at = e.span().map_or(String::new(), |span| {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: ")
        });
        let message = e.message().trim().replace('\n', "; ");
        format!("invalid TOML: {at}{message}")
    })?;
    let mut set_aside = Vec::new();
    loop {
        let error = match serde_path_to_error::deserialize::<_, JobFile>(table.clone()) {
            Ok(job_file) => return Ok((Some(job_file), set_aside)),
            Err(e) => e,
        };
        // The key as the file writes it (`command.argv`, `policy.coins.USDT.max`): the path's
        // table keys, without the position inside an array.
        let path: Vec<String> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                Segment::Map { key } => Some(key.clone()),
                _ => None,
            })
            .collect();
        let message = error.inner().message().trim().replace('\n', "; ");
        let removed = !path.is_empty() && set_aside.len() < MAX_SET_ASIDE && remove_key(&mut table, &path);
        set_aside.push((path.join("."), message));
        if !removed {
            return Ok((None, set_aside));
        }
    }
}

/// Removes the key at `path` from `table`; false when there is none to remove.
fn remove_key(table: &mut Table, path: &[String]) -> bool {
    match path {
        [] => false,
        [key] => table.remove(key).is_some(),
        [key, rest @ ..] => match table.get_mut(key) {
            Some(toml::Value::Table(inner)) => remove_key(inner, rest),
            _ => false,
        },
    }
}

/// Checks every value of a job file that serde read, reporting every problem. Returns the job
/// when its required parts resolved; the caller refuses it anyway if any problem was reported.
fn resolve(file: &Path, name: String, f: JobFile, base_policy: &Policy, p: &mut Problems<'_>) -> Option<Job> {
    let base_dir = file.parent().unwrap_or(Path::new(""));
    // The order of these steps is the order of a file's problems.
    let inbox = resolve_inbox(f.inbox, base_dir, p);
    let has_schedule = f.schedule.is_some();
    let schedule = resolve_schedule(f.schedule, f.timezone, p);
    let missed = resolve_missed(f.missed.as_deref(), p);
    let release = f.release.map(|release| resolve_release(release, base_dir, p));
    let command = f.command.map(|command| resolve_command(command, base_dir, p));
    let action = resolve_action(has_schedule, release, command, p);
    check_staging_is_not_the_inbox(action.as_ref(), inbox.as_deref(), p);
    let policy = resolve_policy(f.approval, f.policy, base_policy, base_dir, p);
    Some(Job {
        name,
        file: file.to_path_buf(),
        description: f.description,
        inbox: inbox?,
        schedule,
        missed,
        action,
        settle: f.settle_secs.filter(|&s| s > 0).map(Duration::from_secs),
        enabled: f.enabled.unwrap_or(true),
        policy,
    })
}

/// `inbox`: required and not blank; relative to the job file's folder when written relative.
fn resolve_inbox(inbox: Option<String>, base_dir: &Path, p: &mut Problems<'_>) -> Option<PathBuf> {
    match inbox {
        Some(s) if !s.trim().is_empty() => Some(base_dir.join(s)),
        Some(_) => {
            p.push("inbox", "must name a folder");
            None
        }
        None => {
            p.missing("inbox", "the folder the daemon watches for this job's batches");
            None
        }
    }
}

/// `schedule` and `timezone`, which come together: a cron expression in an IANA zone (an
/// abbreviation or offset would ignore daylight saving), and one that fires at least once.
fn resolve_schedule(schedule: Option<String>, timezone: Option<String>, p: &mut Problems<'_>) -> Option<Schedule> {
    match (schedule, timezone) {
        (Some(expr), Some(tz)) => {
            if let Err(e) = schedule::parse_tz(&tz) {
                p.push("timezone", e);
                return None;
            }
            match Schedule::parse(&expr, &tz) {
                // A pattern that matches no real date (the 30th of February) parses, but would
                // leave the job silently idle.
                Ok(s) if s.next_after(0).is_none() => {
                    p.push("schedule", format!("{expr:?} never fires: it matches no real date"));
                    None
                }
                Ok(s) => Some(s),
                Err(e) => {
                    p.push("schedule", e);
                    None
                }
            }
        }
        (Some(_), None) => {
            p.push(
                "timezone",
                "required with schedule: an IANA time zone name such as \"UTC\" or \"Europe/Berlin\"",
            );
            None
        }
        (None, Some(_)) => {
            p.push("timezone", "only meaningful with schedule");
            None
        }
        (None, None) => None,
    }
}

/// `missed`: `catch-up` (the default) or `skip`.
fn resolve_missed(missed: Option<&str>, p: &mut Problems<'_>) -> Missed {
    match missed {
        None | Some("catch-up") => Missed::CatchUp,
        Some("skip") => Missed::Skip,
        Some(other) => {
            p.push("missed", format!("expected \"catch-up\" or \"skip\", got {other:?}"));
            Missed::CatchUp
        }
    }
}

/// `[release]`: its `staging` folder is required and not blank; relative to the job file's
/// folder when written relative.
fn resolve_release(release: ReleaseFile, base_dir: &Path, p: &mut Problems<'_>) -> Option<PathBuf> {
    match release.staging {
        Some(s) if !s.trim().is_empty() => Some(base_dir.join(s)),
        Some(_) => {
            p.push("release.staging", "must name a folder");
            None
        }
        None => {
            p.missing("release.staging", "the folder files wait in until the scheduled time");
            None
        }
    }
}

/// `[command]`: `argv` is required and starts with the program; every placeholder in it is a
/// known one, so a typo fails here rather than reaching the producer; `timeout_secs` is at least
/// 1 (default [`DEFAULT_COMMAND_TIMEOUT`]).
fn resolve_command(command: CommandFile, base_dir: &Path, p: &mut Problems<'_>) -> Option<Action> {
    let timeout = match command.timeout_secs {
        None => DEFAULT_COMMAND_TIMEOUT,
        Some(0) => {
            p.push("command.timeout_secs", "must be at least 1");
            DEFAULT_COMMAND_TIMEOUT
        }
        Some(s) => Duration::from_secs(s),
    };
    let mut argv = match command.argv {
        None => {
            p.missing(
                "command.argv",
                "the program and its arguments, such as [\"/usr/local/bin/export\", \"{inbox}\"]",
            );
            return None;
        }
        Some(argv) if argv.first().is_none_or(|a| a.trim().is_empty()) => {
            p.push("command.argv", "must start with the program to run");
            return None;
        }
        Some(argv) => argv,
    };
    let mut ok = true;
    for arg in &argv {
        for unknown in fire::placeholders(arg).filter(|ph| !PLACEHOLDERS.contains(ph)) {
            p.push(
                "command.argv",
                format!(
                    "unknown placeholder {{{unknown}}} in {arg:?}; known: {{inbox}}, {{job}}, {{scheduled}}, {{date}}"
                ),
            );
            ok = false;
        }
    }
    // A relative program path with a folder in it is relative to the job file's folder, like
    // every other path in the file; a bare name is looked up in PATH.
    if argv[0].contains('/') && Path::new(&argv[0]).is_relative() {
        argv[0] = base_dir.join(&argv[0]).display().to_string();
    }
    ok.then_some(Action::Command { argv, timeout })
}

/// What a firing does: a scheduled job needs exactly one of `[release]` and `[command]`, and
/// neither means anything without a schedule. `release` and `command` are `Some` when the table
/// was given, holding what it resolved to.
fn resolve_action(
    has_schedule: bool,
    release: Option<Option<PathBuf>>,
    command: Option<Option<Action>>,
    p: &mut Problems<'_>,
) -> Option<Action> {
    match (has_schedule, release, command) {
        (_, Some(_), Some(_)) => {
            p.push("release", "a job has either [release] or [command], not both");
            None
        }
        (true, Some(staging), None) => staging.map(|staging| Action::Release { staging }),
        (true, None, Some(command)) => command,
        (true, None, None) => {
            p.push(
                "schedule",
                "a scheduled job needs [release] (staged files to move into the inbox) or [command] (a program that writes a batch into it)",
            );
            None
        }
        (false, Some(_), None) => {
            p.push("release", "needs schedule: when should the staged files be released?");
            None
        }
        (false, None, Some(_)) => {
            p.push("command", "needs schedule: when should the command run?");
            None
        }
        (false, None, None) => None,
    }
}

/// The staging folder must not be the job's own inbox: staged files would be paid at once
/// instead of at the scheduled time. Clashes with other jobs' inboxes are for
/// [`check_folders`], which sees every job.
fn check_staging_is_not_the_inbox(action: Option<&Action>, inbox: Option<&Path>, p: &mut Problems<'_>) {
    if let (Some(Action::Release { staging }), Some(inbox)) = (action, inbox)
        && normalize(staging) == normalize(inbox)
    {
        p.push(
            "release.staging",
            "must not be the inbox itself: staged files would be paid at once",
        );
    }
}

/// The job's policy: the base policy with the file's `[policy]` overrides applied (see
/// [`override_policy`]). The `approval` shorthand is `policy.approval`; giving both is
/// ambiguous and refused.
fn resolve_policy(
    approval: Option<String>,
    mut policy_file: PolicyFile,
    base_policy: &Policy,
    base_dir: &Path,
    p: &mut Problems<'_>,
) -> Policy {
    if let Some(approval) = approval {
        if policy_file.approval.is_some() {
            p.push("approval", "given both here and as policy.approval; keep one of them");
        } else if !matches!(approval.as_str(), "never" | "always" | "above") {
            p.push(
                "approval",
                format!("expected \"never\", \"always\" or \"above\", got {approval:?}"),
            );
        } else {
            policy_file.approval = Some(approval);
        }
    }
    // Keys under `policy`, each problem then prefixed with the file like the others.
    let mut policy_problems = Vec::new();
    let policy = override_policy(base_policy, policy_file, "policy", Some(base_dir), &mut policy_problems);
    p.problems
        .extend(policy_problems.into_iter().map(|m| format!("{}: {m}", p.label)));
    policy
}

/// Collects problems for one file, each prefixed `FILE: key: `.
struct Problems<'a> {
    label: &'a str,
    problems: &'a mut Vec<String>,
}

impl Problems<'_> {
    fn push(&mut self, key: &str, message: impl fmt::Display) {
        self.problems.push(format!("{}: {key}: {message}", self.label));
    }

    /// Reports a missing required key.
    fn missing(&mut self, key: &str, message: &str) {
        self.push(key, format!("required: {message}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::policy::ApprovalRule;
    use rust_decimal::Decimal;

    const FILE: &str = "/etc/ccpayout/jobs/payroll.toml";

    fn parse(text: &str) -> Result<Job, Vec<String>> {
        parse_named(FILE, text)
    }

    fn parse_named(file: &str, text: &str) -> Result<Job, Vec<String>> {
        let mut problems = Vec::new();
        match parse_job(Path::new(file), text, &Policy::default(), &mut problems) {
            Some(job) => {
                assert!(problems.is_empty());
                Ok(job)
            }
            None => {
                assert!(!problems.is_empty(), "None without a problem");
                Err(problems)
            }
        }
    }

    /// Asserts that parsing fails with a problem for `key` whose message contains `needle`.
    #[track_caller]
    fn fails(text: &str, key: &str, needle: &str) {
        let problems = parse(text).expect_err("should fail");
        let prefix = format!("{FILE}: {key}: ");
        assert!(
            problems.iter().any(|m| m.starts_with(&prefix) && m.contains(needle)),
            "no problem `{prefix}…{needle}…` in {problems:#?}"
        );
    }

    const SCHEDULED: &str = "inbox = \"in\"\nschedule = \"0 0 9 1 * *\"\ntimezone = \"Europe/Berlin\"\n";

    #[test]
    fn a_full_release_job_parses() {
        let job = parse(
            r#"
description = "Monthly payroll"
inbox = "/srv/ccpayout/payroll"
schedule = "0 0 9 1 * *"
timezone = "Europe/Berlin"
missed = "catch-up"
settle_secs = 5
enabled = true
approval = "always"
[release]
staging = "/srv/ccpayout/payroll/staged"
[policy]
allowed_coins = ["usdt"]
coins.USDT.max_per_order = "2500"
"#,
        )
        .unwrap();
        assert_eq!(job.name, "payroll");
        assert_eq!(job.description.as_deref(), Some("Monthly payroll"));
        assert_eq!(job.inbox, PathBuf::from("/srv/ccpayout/payroll"));
        assert_eq!(job.schedule.as_ref().unwrap().expr(), "0 0 9 1 * *");
        assert_eq!(job.tz(), chrono_tz::Tz::Europe__Berlin);
        assert_eq!(job.missed, Missed::CatchUp);
        assert_eq!(
            job.action,
            Some(Action::Release {
                staging: PathBuf::from("/srv/ccpayout/payroll/staged")
            })
        );
        assert_eq!(job.settle, Some(Duration::from_secs(5)));
        assert!(job.enabled);
        assert_eq!(job.policy.approval, ApprovalRule::Always);
        assert_eq!(job.policy.allowed_coins, ["USDT"]);
        assert_eq!(job.policy.coins["USDT"].max_per_order, Some(Decimal::from(2500)));
    }

    #[test]
    fn a_command_job_gets_defaults_and_relative_paths_resolve_against_the_job_folder() {
        let job = parse(&format!(
            "{SCHEDULED}missed = \"skip\"\n[command]\nargv = [\"./export.sh\", \"--out\", \"{{inbox}}\", \"{{date}}\"]\n"
        ))
        .unwrap();
        assert_eq!(job.inbox, PathBuf::from("/etc/ccpayout/jobs/in"));
        assert_eq!(job.missed, Missed::Skip);
        assert_eq!(
            job.action,
            Some(Action::Command {
                argv: vec![
                    "/etc/ccpayout/jobs/./export.sh".into(),
                    "--out".into(),
                    "{inbox}".into(),
                    "{date}".into()
                ],
                timeout: DEFAULT_COMMAND_TIMEOUT
            })
        );
        assert_eq!(job.settle, None);
        assert_eq!(job.policy, Policy::default());
    }

    #[test]
    fn an_inbox_only_job_needs_only_an_inbox() {
        let job = parse("inbox = \"/srv/ccpayout/manual\"\nsettle_secs = 0\nenabled = false\n").unwrap();
        assert!(job.schedule.is_none() && job.action.is_none());
        assert_eq!(job.settle, None);
        assert!(!job.enabled);
        assert_eq!(job.tz(), chrono_tz::Tz::UTC);
    }

    #[test]
    fn overrides_apply_on_top_of_the_base_policy() {
        let base = Policy {
            allowed_chains: vec!["TRX".into()],
            ..Policy::default()
        };
        let mut problems = Vec::new();
        let job = parse_job(
            Path::new(FILE),
            "inbox = \"x\"\n[policy]\napproval = \"above\"\ncoins.USDT.approval_above = \"10000\"\n",
            &base,
            &mut problems,
        )
        .unwrap();
        assert_eq!(job.policy.allowed_chains, ["TRX"]);
        assert_eq!(job.policy.approval, ApprovalRule::Above);
        assert_eq!(job.policy.coins["USDT"].approval_above, Some(Decimal::from(10000)));
    }

    #[test]
    fn every_error_names_the_file_and_the_key() {
        fails(
            "schedule = \"0 0 9 * * *\"\ntimezone = \"UTC\"\n[release]\nstaging = \"s\"\n",
            "inbox",
            "required",
        );
        fails("inbox = \"\"\n", "inbox", "must name a folder");
        fails("inbox = 5\n", "inbox", "invalid type: integer `5`, expected a string");
        fails(
            "inbox = \"x\"\nschedul = \"0 0 9 * * *\"\n",
            "schedul",
            "unknown field `schedul`, expected one of `description`, `inbox`, `schedule`",
        );
        fails(
            "inbox = \"x\"\nschedule = \"0 0 9 * * *\"\n[release]\nstaging = \"s\"\n",
            "timezone",
            "required with schedule",
        );
        fails(
            "inbox = \"x\"\ntimezone = \"UTC\"\n",
            "timezone",
            "only meaningful with schedule",
        );
        fails(
            "inbox = \"x\"\nschedule = \"0 0 9 * * *\"\ntimezone = \"CET\"\n[release]\nstaging = \"s\"\n",
            "timezone",
            "IANA",
        );
        fails(
            "inbox = \"x\"\nschedule = \"0 0 25 * * *\"\ntimezone = \"UTC\"\n[release]\nstaging = \"s\"\n",
            "schedule",
            "not a cron expression",
        );
        fails(
            "inbox = \"x\"\nschedule = \"0 0 0 30 2 *\"\ntimezone = \"UTC\"\n[release]\nstaging = \"s\"\n",
            "schedule",
            "never fires",
        );
        fails(SCHEDULED, "schedule", "needs [release]");
        fails(
            &format!("{SCHEDULED}missed = \"later\"\n[release]\nstaging = \"s\"\n"),
            "missed",
            "\"catch-up\" or \"skip\"",
        );
        fails("inbox = \"x\"\nsettle_secs = -1\n", "settle_secs", "");
        fails("inbox = \"x\"\nenabled = \"yes\"\n", "enabled", "expected a boolean");
        fails(
            "inbox = \"x\"\n[release]\nstaging = \"s\"\n",
            "release",
            "needs schedule",
        );
        fails(
            "inbox = \"x\"\n[command]\nargv = [\"true\"]\n",
            "command",
            "needs schedule",
        );
        fails(
            &format!("{SCHEDULED}[release]\nstaging = \"s\"\n[command]\nargv = [\"true\"]\n"),
            "release",
            "not both",
        );
        fails(&format!("{SCHEDULED}[release]\n"), "release.staging", "required");
        fails(
            &format!("{SCHEDULED}[release]\nstaging = \"s\"\nmode = 1\n"),
            "release.mode",
            "unknown field `mode`, expected `staging`",
        );
        fails(
            &format!("{SCHEDULED}[release]\nstaging = \"in\"\n"),
            "release.staging",
            "not be the inbox",
        );
        fails(
            &format!("{SCHEDULED}[command]\ntimeout_secs = 5\n"),
            "command.argv",
            "required",
        );
        fails(
            &format!("{SCHEDULED}[command]\nargv = []\n"),
            "command.argv",
            "must start with the program",
        );
        fails(
            &format!("{SCHEDULED}[command]\nargv = [\"x\", 5]\n"),
            "command.argv",
            "",
        );
        fails(
            &format!("{SCHEDULED}[command]\nargv = [\"x\"]\ntimeout_secs = 0\n"),
            "command.timeout_secs",
            "at least 1",
        );
        fails(
            &format!("{SCHEDULED}[command]\nargv = [\"x\", \"{{indox}}\"]\n"),
            "command.argv",
            "unknown placeholder {indox}",
        );
        fails(
            &format!("{SCHEDULED}[command]\nargv = [\"x\"]\nenv = {{}}\n"),
            "command.env",
            "unknown field `env`",
        );
        fails(
            "inbox = \"x\"\napproval = \"sometimes\"\n",
            "approval",
            "\"never\", \"always\" or \"above\"",
        );
        fails(
            "inbox = \"x\"\napproval = \"always\"\n[policy]\napproval = \"never\"\n",
            "approval",
            "both",
        );
        fails(
            "inbox = \"x\"\n[policy]\napproval = \"sometimes\"\n",
            "policy.approval",
            "\"never\"",
        );
        fails(
            "inbox = \"x\"\n[policy]\ncoins.USDT.max_per_order = 1.5\n",
            "policy.coins.USDT.max_per_order",
            "strings",
        );
        let problems = parse("inbox = \"x\"\n[policy]\napproval = \"above\"\n").unwrap_err();
        assert_eq!(
            problems,
            [format!(
                "{FILE}: policy.approval = \"above\" needs policy.coins.<COIN>.approval_above for at least one coin"
            )]
        );
        fails(
            "inbox = \"x\"\n[policy]\nmax = 1\n",
            "policy.max",
            "unknown field `max`",
        );
        fails(
            "inbox = \"x\"\n[policy]\ncoins.USDT.max = 1\n",
            "policy.coins.USDT.max",
            "unknown field `max`",
        );
        fails(
            "inbox = \"x\"\n[policy]\ncoins.USDT = 1\n",
            "policy.coins.USDT",
            "invalid type",
        );
        fails("inbox = \"x\"\npolicy = 3\n", "policy", "expected a map");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = parse(
            "inbox = \"\"\nschedule = \"0 0 9 * * *\"\nmissed = \"x\"\napproval = \"sometimes\"\n\
             [policy]\ncoins.USDT.max_per_order = 1.5\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = problems
            .iter()
            .map(|m| m.strip_prefix(&format!("{FILE}: ")).unwrap().split(':').next().unwrap())
            .collect();
        // One problem per mistake, none repeated.
        assert_eq!(
            keys,
            [
                "inbox",
                "timezone",
                "missed",
                "schedule",
                "approval",
                "policy.coins.USDT.max_per_order"
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn keys_serde_cannot_read_are_reported_with_every_other_problem() {
        // An unknown key and a value of the wrong type are set aside with their messages, and the
        // rest of the file is still read and checked: every problem at once, none reported twice
        // (a required key set aside for its type is not also "required").
        let problems = parse(
            "inbox = 5
schedul = \"x\"\nschedule = \"0 0 9 * * *\"\nmissed = \"x\"\n",
        )
        .unwrap_err();
        assert_eq!(
            problems,
            [
                format!("{FILE}: inbox: invalid type: integer `5`, expected a string"),
                format!(
                    "{FILE}: schedul: unknown field `schedul`, expected one of `description`, `inbox`, `schedule`, `timezone`, `missed`, `settle_secs`, `enabled`, `approval`, `release`, `command`, `policy`"
                ),
                format!(
                    "{FILE}: timezone: required with schedule: an IANA time zone name such as \"UTC\" or \"Europe/Berlin\""
                ),
                format!("{FILE}: missed: expected \"catch-up\" or \"skip\", got \"x\""),
                format!(
                    "{FILE}: schedule: a scheduled job needs [release] (staged files to move into the inbox) or [command] (a program that writes a batch into it)"
                ),
            ]
        );
    }

    #[test]
    fn invalid_toml_and_bad_names_are_reported_with_the_file() {
        let problems = parse("description = \"x\"\ninbox = \n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with(&format!("{FILE}: invalid TOML: line 2, column 9: ")),
            "{problems:?}"
        );
        assert!(!problems[0].contains('\n'), "{problems:?}");
        let problems = parse_named("/jobs/Pay Roll.toml", "inbox = \"x\"\n").unwrap_err();
        assert!(problems[0].starts_with("/jobs/Pay Roll.toml: name: "), "{problems:?}");
        for good in ["payroll", "a", "0x", "weekly_affiliates-2"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "-x", "_x", "Payroll", "pay roll", "pay.roll", "é"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    fn job(name: &str, inbox: &str, staging: Option<&str>) -> Job {
        Job {
            name: name.into(),
            file: PathBuf::from(format!("/jobs/{name}.toml")),
            description: None,
            inbox: inbox.into(),
            schedule: staging.map(|_| Schedule::parse("0 0 9 * * *", "UTC").unwrap()),
            missed: Missed::CatchUp,
            action: staging.map(|s| Action::Release { staging: s.into() }),
            settle: None,
            enabled: true,
            policy: Policy::default(),
        }
    }

    #[test]
    fn jobs_may_not_share_an_inbox_or_stage_into_one() {
        let mut problems = Vec::new();
        check_folders(
            &[
                job("a", "/srv/in", None),
                job("b", "/srv/./in/", None),
                job("c", "/srv/c", Some("/srv/in")),
                job("d", "/srv/d", Some("/srv/c/processing")),
                job("e", "/srv/e", Some("/srv/e/staged")),
            ],
            &mut problems,
        );
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with("/jobs/b.toml: inbox: /srv/./in/ is also the inbox of job \"a\""));
        assert!(problems[1].starts_with("/jobs/c.toml: release.staging: /srv/in is the inbox of job \"a\""));
        assert!(problems[2].starts_with("/jobs/d.toml: release.staging: /srv/c/processing is a working folder"));
    }

    #[test]
    fn load_jobs_reads_toml_files_sorted_and_reports_all_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.toml"), "inbox = \"b\"\n").unwrap();
        std::fs::write(dir.path().join("a.toml"), "inbox = \"a\"\n").unwrap();
        std::fs::write(dir.path().join("README.md"), "not a job").unwrap();
        std::fs::write(dir.path().join(".hidden.toml"), "broken").unwrap();
        let jobs = load_jobs(dir.path(), &Policy::default()).unwrap();
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(jobs[0].inbox, dir.path().join("a"));

        std::fs::write(dir.path().join("c.toml"), "inbox = \"a\"\n").unwrap();
        std::fs::write(dir.path().join("d.toml"), "inbox = 1\n").unwrap();
        let err = load_jobs(dir.path(), &Policy::default()).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.problems[0].contains("d.toml: inbox: invalid type"), "{err}");
        assert!(err.problems[1].contains("c.toml: inbox: ") && err.problems[1].contains("also the inbox of job \"a\""));
        assert!(err.to_string().starts_with("2 problems in the job files:\n  "));

        let missing = load_jobs(&dir.path().join("nope"), &Policy::default()).unwrap_err();
        assert!(missing.problems[0].contains("cannot read the jobs folder"));
    }
}
