//! What a scheduled job does when it fires: the only part of the jobs module that touches files
//! and processes.
//!
//! - **Release** moves every batch file waiting in the staging folder into the inbox. Each move is
//!   atomic (a hard link under a free name, then the staged name is removed; across filesystems a
//!   copy to a hidden `.NAME.part` file in the inbox, fsync, then the same link step), so the
//!   inbox only ever sees complete files, and a file already in the inbox is never overwritten: a
//!   taken name gets a `-1`, `-2`, … suffix.
//! - **Command** runs a producer program with placeholders substituted, no stdin, its output
//!   captured (the last [`OUTPUT_CAP`] bytes of each stream) and logged, a time limit, and an
//!   environment that never contains the app secret.
//!
//! Either way a firing pays nothing: the daemon's inbox watcher picks the files up.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::schedule::{local_date, local_rfc3339};
use super::{Action, Job};
use crate::config::{ENV_APP_SECRET, ENV_APP_SECRET_FILE, ENV_CREDENTIALS_DIRECTORY};
use crate::inbox::is_candidate;

/// How much of a command's stdout and of its stderr is kept (the end of each).
pub const OUTPUT_CAP: usize = 64 * 1024;

/// Environment variables a command never sees: the app secret and every way to reach it.
pub const SECRET_ENV: [&str; 3] = [ENV_APP_SECRET, ENV_APP_SECRET_FILE, ENV_CREDENTIALS_DIRECTORY];

/// Environment variable given to a command: the job's name.
pub const ENV_JOB: &str = "CCPAYOUT_JOB";
/// Environment variable given to a command: the job's inbox folder.
pub const ENV_INBOX: &str = "CCPAYOUT_INBOX";
/// Environment variable given to a command: the scheduled instant, RFC 3339 in the job's zone.
pub const ENV_SCHEDULED_AT: &str = "CCPAYOUT_SCHEDULED_AT";

/// How long the output readers may run on after the command exited (a background child of the
/// command can hold its pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// Fires `job` for the instant `scheduled_ms`: releases its staged files or runs its command.
/// `Ok` carries a one-line summary, `Err` a one-line reason. A job without an action has nothing
/// to fire and is an error.
pub async fn execute(job: &Job, scheduled_ms: i64) -> Result<String, String> {
    // Collected first: the std iterator is not Send and the future must be.
    let parent_env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    execute_with_env(job, scheduled_ms, parent_env).await
}

/// [`execute`] with the parent environment passed in, so tests can check what a command sees
/// without touching the process environment.
pub async fn execute_with_env(
    job: &Job,
    scheduled_ms: i64,
    parent_env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<String, String> {
    match &job.action {
        Some(Action::Release { staging }) => {
            let (staging, inbox) = (staging.clone(), job.inbox.clone());
            // Blocking file moves run off the async threads. If the caller stops waiting (the
            // daemon is shutting down), the moves still finish: a half-done release would leave
            // files staged until the next firing.
            let result = tokio::task::spawn_blocking(move || release(&staging, &inbox))
                .await
                .map_err(|e| format!("the release task failed: {e}"))?;
            match result {
                Ok(report) => {
                    if report.moved.is_empty() {
                        tracing::warn!(job = %job.name, staging = %report.staging.display(), "nothing staged to release");
                    }
                    Ok(report.summary())
                }
                Err(e) => Err(format!("release failed: {e}")),
            }
        }
        Some(Action::Command { argv, timeout }) => {
            let values = Values::new(job, scheduled_ms);
            let argv: Vec<String> = argv.iter().map(|a| substitute(a, &values)).collect();
            let env = child_env(parent_env, &values);
            run_command(&job.name, &argv, env, job.file.parent(), *timeout).await
        }
        None => Err(format!("job {:?} has no [release] or [command] to fire", job.name)),
    }
}

/// The placeholder values of one firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values {
    /// `{inbox}`: the inbox folder.
    pub inbox: String,
    /// `{job}`: the job name.
    pub job: String,
    /// `{scheduled}`: the scheduled instant, RFC 3339 in the job's zone.
    pub scheduled: String,
    /// `{date}`: the scheduled instant's date in the job's zone, `YYYY-MM-DD`.
    pub date: String,
}

impl Values {
    /// The values for firing `job` at `scheduled_ms`.
    pub fn new(job: &Job, scheduled_ms: i64) -> Values {
        Values {
            inbox: job.inbox.display().to_string(),
            job: job.name.clone(),
            scheduled: local_rfc3339(job.tz(), scheduled_ms),
            date: local_date(job.tz(), scheduled_ms),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        match name {
            "inbox" => Some(&self.inbox),
            "job" => Some(&self.job),
            "scheduled" => Some(&self.scheduled),
            "date" => Some(&self.date),
            _ => None,
        }
    }
}

/// The placeholder names in an argument: every `{name}` whose name is lower-case letters and
/// underscores. Other braces (`${HOME}`, `{}`, JSON) are literal text.
pub fn placeholders(arg: &str) -> impl Iterator<Item = &str> {
    arg.match_indices('{').filter_map(move |(start, _)| {
        let rest = &arg[start + 1..];
        let end = rest.find('}')?;
        let name = &rest[..end];
        (!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')).then_some(name)
    })
}

/// `arg` with every known placeholder replaced by its value. Unknown names are left as written
/// (job loading refuses them, so none reach here).
pub fn substitute(arg: &str, values: &Values) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after
            .find('}')
            .and_then(|end| values.get(&after[..end]).map(|v| (end, v)))
        {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The environment of a command: the parent's without [`SECRET_ENV`], plus [`ENV_JOB`],
/// [`ENV_INBOX`] and [`ENV_SCHEDULED_AT`].
pub fn child_env(
    parent_env: impl IntoIterator<Item = (OsString, OsString)>,
    values: &Values,
) -> Vec<(OsString, OsString)> {
    let ours = [ENV_JOB, ENV_INBOX, ENV_SCHEDULED_AT];
    let mut env: Vec<(OsString, OsString)> = parent_env
        .into_iter()
        .filter(|(k, _)| {
            let k = k.as_os_str();
            !SECRET_ENV.iter().chain(ours.iter()).any(|s| k == OsStr::new(s))
        })
        .collect();
    env.push((ENV_JOB.into(), values.job.clone().into()));
    env.push((ENV_INBOX.into(), values.inbox.clone().into()));
    env.push((ENV_SCHEDULED_AT.into(), values.scheduled.clone().into()));
    env
}

/// Runs a command to completion or its time limit and turns the outcome into a summary or an
/// error. The environment is replaced as a whole (`env_clear`), so nothing reaches the child that
/// `env` does not list.
async fn run_command(
    job: &str,
    argv: &[String],
    env: Vec<(OsString, OsString)>,
    dir: Option<&Path>,
    timeout: Duration,
) -> Result<String, String> {
    let program = &argv[0];
    let mut command = tokio::process::Command::new(program);
    command
        .args(&argv[1..])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropping the run (daemon aborted the job task) kills the child rather than leaving it.
        .kill_on_drop(true);
    if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
        command.current_dir(dir);
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let stdout = tokio::spawn(read_tail(child.stdout.take()));
    let stderr = tokio::spawn(read_tail(child.stderr.take()));

    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => Some(status),
        Ok(Err(e)) => return Err(format!("waiting for {program:?} failed: {e}")),
        Err(_) => {
            // start_kill sends SIGKILL; wait reaps the child so no zombie is left behind.
            let _ = child.start_kill();
            let _ = child.wait().await;
            None
        }
    };
    let stdout = collect(stdout).await;
    let stderr = collect(stderr).await;
    let elapsed = started.elapsed().as_secs_f64();
    if !stdout.is_empty() {
        tracing::info!(job, stream = "stdout", output = %stdout, "command output");
    }
    if !stderr.is_empty() {
        tracing::info!(job, stream = "stderr", output = %stderr, "command output");
    }
    match status {
        None => Err(format!(
            "{program} timed out after {} s and was killed{}",
            timeout.as_secs_f64(),
            tail_note(&stderr)
        )),
        Some(status) if status.success() => Ok(format!("{program} succeeded in {elapsed:.1} s")),
        Some(status) => Err(format!("{program} failed ({status}){}", tail_note(&stderr))),
    }
}

/// The output readers finish when the pipes close; a background child of the command may keep
/// them open, so they get a short grace and are then abandoned.
async fn collect(reader: tokio::task::JoinHandle<Vec<u8>>) -> String {
    let abort = reader.abort_handle();
    match tokio::time::timeout(OUTPUT_GRACE, reader).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).trim_end().to_owned(),
        Ok(Err(_)) => String::new(),
        Err(_) => {
            abort.abort();
            "(output not collected: the pipe stayed open after the command ended)".to_owned()
        }
    }
}

/// Reads a stream to its end, keeping its last [`OUTPUT_CAP`] bytes.
async fn read_tail(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                // Trim in batches rather than on every read.
                if kept.len() > 2 * OUTPUT_CAP {
                    kept.drain(..kept.len() - OUTPUT_CAP);
                }
            }
        }
    }
    if kept.len() > OUTPUT_CAP {
        kept.drain(..kept.len() - OUTPUT_CAP);
    }
    kept
}

/// `: <last lines of stderr>` for an error message, or nothing.
fn tail_note(stderr: &str) -> String {
    const MAX_CHARS: usize = 1_000;
    let stderr = stderr.trim();
    if stderr.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = stderr.lines().rev().take(5).collect();
    let mut tail: String = lines.into_iter().rev().collect::<Vec<_>>().join(" | ");
    if tail.chars().count() > MAX_CHARS {
        let skip = tail.chars().count() - MAX_CHARS;
        tail = format!("…{}", tail.chars().skip(skip).collect::<String>());
    }
    format!("; stderr: {tail}")
}

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The staging folder.
    pub staging: PathBuf,
    /// The inbox folder.
    pub inbox: PathBuf,
    /// `(staged name, name in the inbox)` per file moved, in name order.
    pub moved: Vec<(String, String)>,
    /// Files left in staging because they are not batch files (dotfiles, `*.tmp`, `*.part`, …).
    pub left: usize,
}

impl Released {
    /// One line for logs and the run record.
    pub fn summary(&self) -> String {
        let left = match self.left {
            0 => String::new(),
            n => format!(" ({n} other file(s) left in staging: not batch files or still being written)"),
        };
        if self.moved.is_empty() {
            return format!("nothing staged in {}{left}", self.staging.display());
        }
        let names: Vec<String> = self
            .moved
            .iter()
            .map(|(from, to)| {
                if from == to {
                    from.clone()
                } else {
                    format!("{from} as {to}")
                }
            })
            .collect();
        format!(
            "released {} file(s) into {}: {}{left}",
            self.moved.len(),
            self.inbox.display(),
            names.join(", ")
        )
    }
}

/// Moves every batch file in `staging` into `inbox`, never overwriting a file there. Blocking.
pub fn release(staging: &Path, inbox: &Path) -> io::Result<Released> {
    let with = |e: io::Error, path: &Path| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    std::fs::create_dir_all(inbox).map_err(|e| with(e, inbox))?;
    let mut names = Vec::new();
    let mut left = 0;
    for entry in std::fs::read_dir(staging).map_err(|e| with(e, staging))? {
        let entry = entry.map_err(|e| with(e, staging))?;
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        match entry.file_name().into_string() {
            Ok(name) if is_file && is_candidate(&name) => names.push(name),
            _ if is_file => left += 1,
            _ => {}
        }
    }
    names.sort();
    let mut moved = Vec::with_capacity(names.len());
    for name in names {
        let source = staging.join(&name);
        let target = move_no_clobber(&source, inbox, &name).map_err(|e| with(e, &source))?;
        let target_name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        moved.push((name, target_name));
    }
    if !moved.is_empty() {
        // The new names in the inbox and the removals from staging survive a power cut.
        sync_dir(inbox).map_err(|e| with(e, inbox))?;
        sync_dir(staging).map_err(|e| with(e, staging))?;
    }
    Ok(Released {
        staging: staging.to_path_buf(),
        inbox: inbox.to_path_buf(),
        moved,
        left,
    })
}

/// Moves `source` into `dir` under `name`, or `stem-1.ext`, `stem-2.ext`, … when taken. Returns
/// the new path.
fn move_no_clobber(source: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    match place_no_clobber(source, dir, name) {
        Ok(Placed::Linked(target)) => {
            std::fs::remove_file(source)?;
            Ok(target)
        }
        Ok(Placed::Renamed(target)) => Ok(target),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            // Another filesystem: copy under a name the inbox ignores, make it durable, then
            // put it in place with the same no-clobber step, and only then drop the source.
            let part = dir.join(format!(".{name}.part"));
            std::fs::copy(source, &part)?;
            std::fs::File::open(&part)?.sync_all()?;
            let target = match place_no_clobber(&part, dir, name)? {
                Placed::Linked(target) => {
                    std::fs::remove_file(&part)?;
                    target
                }
                Placed::Renamed(target) => target,
            };
            std::fs::remove_file(source)?;
            Ok(target)
        }
        Err(e) => Err(e),
    }
}

/// How a file got its name in the inbox.
enum Placed {
    /// A second name: the source name still exists and is the caller's to remove.
    Linked(PathBuf),
    /// Renamed: the source name is gone.
    Renamed(PathBuf),
}

/// Gives `source` a name in `dir` that no file has yet. A hard link never replaces an existing
/// file (unlike `rename`), so even a file dropped into the inbox at the same moment is safe.
/// Where linking is not possible on the same filesystem (no hard links, or Linux's
/// `protected_hardlinks` refusing a file owned by someone else), it falls back to checking that
/// the name is free and renaming.
fn place_no_clobber(source: &Path, dir: &Path, name: &str) -> io::Result<Placed> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, Some(ext)),
        _ => (name, None),
    };
    for n in 0..10_000u32 {
        let candidate = match (n, ext) {
            (0, _) => name.to_owned(),
            (n, Some(ext)) => format!("{stem}-{n}.{ext}"),
            (n, None) => format!("{stem}-{n}"),
        };
        let target = dir.join(&candidate);
        match std::fs::hard_link(source, &target) {
            Ok(()) => return Ok(Placed::Linked(target)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied) => {
                if std::fs::symlink_metadata(&target).is_ok() {
                    continue;
                }
                std::fs::rename(source, &target)?;
                return Ok(Placed::Renamed(target));
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for {name} in {}", dir.display()),
    ))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values {
            inbox: "/srv/in".into(),
            job: "affiliates".into(),
            scheduled: "2026-03-30T06:00:00Z".into(),
            date: "2026-03-30".into(),
        }
    }

    #[test]
    fn placeholders_are_substituted_and_other_braces_kept() {
        let v = values();
        assert_eq!(
            substitute("{inbox}/{job}-{date}.csv", &v),
            "/srv/in/affiliates-2026-03-30.csv"
        );
        assert_eq!(substitute("--at={scheduled}", &v), "--at=2026-03-30T06:00:00Z");
        assert_eq!(
            substitute("${HOME} {} {\"a\":1} {other} {", &v),
            "${HOME} {} {\"a\":1} {other} {"
        );
        assert_eq!(substitute("{{job}}", &v), "{affiliates}");
        assert_eq!(substitute("plain", &v), "plain");
    }

    #[test]
    fn placeholder_names_are_found() {
        let found: Vec<&str> = placeholders("{inbox}/{jbo}_{date} ${HOME} {} {A} {x-y}").collect();
        assert_eq!(found, ["inbox", "jbo", "date"]);
    }

    #[test]
    fn values_are_in_the_jobs_zone() {
        let mut problems = Vec::new();
        let job = crate::jobs::parse_job(
            Path::new("/jobs/payroll.toml"),
            "inbox = \"/srv/in\"\nschedule = \"0 0 9 1 * *\"\ntimezone = \"Europe/Berlin\"\n[release]\nstaging = \"/srv/st\"\n",
            &crate::rules::policy::Policy::default(),
            &mut problems,
        )
        .unwrap();
        // 2026-03-31T22:30Z is already April 1st in Berlin.
        let at = chrono::DateTime::parse_from_rfc3339("2026-03-31T22:30:00Z")
            .unwrap()
            .timestamp_millis();
        let v = Values::new(&job, at);
        assert_eq!(v.scheduled, "2026-04-01T00:30:00+02:00");
        assert_eq!(v.date, "2026-04-01");
        assert_eq!(v.job, "payroll");
        assert_eq!(v.inbox, "/srv/in");
    }

    #[test]
    fn the_child_environment_has_no_secret_and_names_the_run() {
        let parent: Vec<(OsString, OsString)> = [
            ("PATH", "/usr/bin"),
            ("CCPAYOUT_APP_SECRET", "s3cr3t"),
            ("CCPAYOUT_APP_SECRET_FILE", "/run/secret"),
            ("CREDENTIALS_DIRECTORY", "/run/credentials/ccpayout.service"),
            ("CCPAYOUT_JOB", "spoofed"),
            ("CCPAYOUT_APP_ID", "app"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        let env = child_env(parent, &values());
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.to_str().unwrap());
        assert_eq!(get("PATH"), Some("/usr/bin"));
        assert_eq!(get("CCPAYOUT_APP_ID"), Some("app"));
        for secret in SECRET_ENV {
            assert_eq!(get(secret), None, "{secret}");
        }
        assert_eq!(get("CCPAYOUT_JOB"), Some("affiliates"));
        assert_eq!(env.iter().filter(|(k, _)| k == "CCPAYOUT_JOB").count(), 1);
        assert_eq!(get("CCPAYOUT_INBOX"), Some("/srv/in"));
        assert_eq!(get("CCPAYOUT_SCHEDULED_AT"), Some("2026-03-30T06:00:00Z"));
    }

    #[test]
    fn stderr_tail_is_short_and_on_one_line() {
        assert_eq!(tail_note(""), "");
        assert_eq!(tail_note("a\nb\nc\nd\ne\nf\ng\n"), "; stderr: c | d | e | f | g");
        assert!(tail_note(&"x".repeat(5_000)).chars().count() < 1_020);
    }

    #[test]
    fn release_moves_candidates_only_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let (staging, inbox) = (dir.path().join("staged"), dir.path().join("inbox"));
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::create_dir_all(&inbox).unwrap();
        std::fs::write(staging.join("payroll.csv"), "new").unwrap();
        std::fs::write(staging.join("extra.jsonl"), "x").unwrap();
        std::fs::write(staging.join("half.csv.part"), "...").unwrap();
        std::fs::create_dir(staging.join("sub.csv")).unwrap();
        std::fs::write(inbox.join("payroll.csv"), "old").unwrap();
        std::fs::write(inbox.join("payroll-1.csv"), "older").unwrap();

        let r = release(&staging, &inbox).unwrap();
        assert_eq!(
            r.moved,
            [
                ("extra.jsonl".to_owned(), "extra.jsonl".to_owned()),
                ("payroll.csv".to_owned(), "payroll-2.csv".to_owned())
            ]
        );
        assert_eq!(r.left, 1);
        assert_eq!(std::fs::read_to_string(inbox.join("payroll.csv")).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(inbox.join("payroll-1.csv")).unwrap(), "older");
        assert_eq!(std::fs::read_to_string(inbox.join("payroll-2.csv")).unwrap(), "new");
        assert!(!staging.join("payroll.csv").exists() && !staging.join("extra.jsonl").exists());
        assert!(staging.join("half.csv.part").exists());
        assert!(r.summary().contains("payroll.csv as payroll-2.csv"), "{}", r.summary());

        let again = release(&staging, &inbox).unwrap();
        assert!(again.moved.is_empty());
        assert!(again.summary().starts_with("nothing staged in "), "{}", again.summary());
    }

    #[test]
    fn release_across_filesystems_copies_then_renames_and_never_overwrites() {
        use std::os::unix::fs::MetadataExt;
        // /dev/shm is a tmpfs on Linux, usually another filesystem than the temp folder; where it
        // is not, the same-filesystem path runs and the outcome must be the same.
        let shm = Path::new("/dev/shm");
        let staging_root = if shm.is_dir() {
            tempfile::tempdir_in(shm).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        let inbox_root = tempfile::tempdir().unwrap();
        let (staging, inbox) = (staging_root.path(), inbox_root.path());
        let crosses = std::fs::metadata(staging).unwrap().dev() != std::fs::metadata(inbox).unwrap().dev();
        std::fs::write(staging.join("a.csv"), "staged a").unwrap();
        std::fs::write(staging.join("b.csv"), "staged b").unwrap();
        std::fs::write(inbox.join("b.csv"), "waiting b").unwrap();

        let r = release(staging, inbox).unwrap();
        assert_eq!(
            r.moved,
            [
                ("a.csv".to_owned(), "a.csv".to_owned()),
                ("b.csv".to_owned(), "b-1.csv".to_owned())
            ],
            "crosses filesystems: {crosses}"
        );
        assert_eq!(std::fs::read_to_string(inbox.join("a.csv")).unwrap(), "staged a");
        assert_eq!(std::fs::read_to_string(inbox.join("b.csv")).unwrap(), "waiting b");
        assert_eq!(std::fs::read_to_string(inbox.join("b-1.csv")).unwrap(), "staged b");
        let mut left: Vec<String> = std::fs::read_dir(inbox)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["a.csv", "b-1.csv", "b.csv"], "no .part file left behind");
        assert_eq!(std::fs::read_dir(staging).unwrap().count(), 0);
    }

    #[test]
    fn release_from_a_missing_staging_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = release(&dir.path().join("nope"), &dir.path().join("in")).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
