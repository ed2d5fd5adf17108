//! Child processes and what the benchmark reads about them: a guard that kills a child on every
//! exit path, `wait4` for its CPU time and peak memory, `/proc` for the CPU time, memory and
//! context switches of a child that is still running, the `ccpayout sandbox` process with its
//! ledger and statistics, and `ccpayout` commands pointed at it. Linux only.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ccpayout::sandbox::{DEMO_APP_ID, DEMO_APP_SECRET, Ledger, SandboxStats};

/// A child process that is killed (SIGKILL) and reaped when dropped, unless it was reaped already.
pub struct Proc {
    child: Option<Child>,
    what: String,
    log: Option<PathBuf>,
    started: Instant,
    /// This process's resident memory when it spawned the child: the floor of the child's
    /// `ru_maxrss` (see [`lower_own_peak`]).
    parent_rss_mb: f64,
}

/// How a child ended, with its own resource use (`wait4`).
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub status: ExitStatus,
    pub cpu_seconds: f64,
    pub max_rss_mb: f64,
}

impl Exit {
    /// `exit 0`, or how it was killed.
    pub fn describe(&self) -> String {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => self.status.to_string(),
        }
    }
}

impl Proc {
    /// Spawns `cmd`; `what` names it in errors, `log` (its stderr) is quoted in them.
    pub fn spawn(cmd: &mut Command, what: impl Into<String>, log: Option<&Path>) -> anyhow::Result<Proc> {
        let what = what.into();
        let parent_rss_mb = lower_own_peak();
        let started = Instant::now();
        let child = cmd.spawn().with_context(|| format!("cannot start {what}"))?;
        Ok(Proc {
            child: Some(child),
            what,
            log: log.map(Path::to_path_buf),
            started,
            parent_rss_mb,
        })
    }

    /// When the child was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// This process's resident memory at the spawn, in MB: a child's peak RSS from `wait4` is
    /// never below it.
    pub fn parent_rss_mb(&self) -> f64 {
        self.parent_rss_mb
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    /// The child's stdout, once (for processes spawned with a piped stdout).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    /// Reaps the child if it has ended.
    pub fn try_exit(&mut self) -> anyhow::Result<Option<Exit>> {
        self.reap(libc::WNOHANG)
    }

    /// Waits for the child to end, at most `limit`; then it is killed and this is an error.
    pub fn wait(&mut self, limit: Duration) -> anyhow::Result<Exit> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(exit) = self.try_exit()? {
                return Ok(exit);
            }
            if Instant::now() >= deadline {
                self.signal(libc::SIGKILL)?;
                bail!(
                    "{} did not end within {} s; killed it{}",
                    self.what,
                    limit.as_secs(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends `signal` (a no-op once the child is reaped, so no recycled pid is hit).
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        if self.child.is_some() && unsafe { libc::kill(self.pid(), signal) } != 0 {
            bail!("cannot signal {}: {}", self.what, std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGTERM, then waits at most `limit`.
    pub fn terminate(&mut self, limit: Duration) -> anyhow::Result<Exit> {
        self.signal(libc::SIGTERM)?;
        self.wait(limit)
    }

    /// An error unless the child is still running: a child that died on its own is a finding.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.try_exit()? {
            None => Ok(()),
            Some(exit) => bail!(
                "{} ended unexpectedly ({}){}",
                self.what,
                exit.describe(),
                self.log_tail()
            ),
        }
    }

    /// The last lines of the child's log, for error messages.
    pub fn log_tail(&self) -> String {
        self.log.as_deref().map_or_else(String::new, log_tail)
    }

    fn reap(&mut self, flags: i32) -> anyhow::Result<Option<Exit>> {
        if self.child.is_none() {
            bail!("{} was already reaped", self.what);
        }
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = loop {
            // SAFETY: plain system call on our own child with valid pointers.
            let pid = unsafe { libc::wait4(self.pid(), &mut status, flags, &mut usage) };
            if pid < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break pid;
        };
        match pid {
            0 => Ok(None),
            p if p < 0 => bail!("cannot wait for {}: {}", self.what, std::io::Error::last_os_error()),
            _ => {
                // Reaped: the Child must not be killed or waited for again.
                self.child = None;
                let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                Ok(Some(Exit {
                    status: ExitStatus::from_raw(status),
                    cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
                    // Linux gives ru_maxrss in KiB.
                    max_rss_mb: usage.ru_maxrss as f64 / 1024.0,
                }))
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// On Linux a child's `ru_maxrss` includes the peak resident memory of the process that spawned
/// it (exec keeps the old memory's high-water mark), so before each spawn this process gives its
/// freed heap back (`malloc_trim`) and resets its own peak (`5` into `/proc/self/clear_refs`).
/// A child's peak is then its own, or this process's resident memory at most, which this returns
/// (MB; 0 if unknown).
fn lower_own_peak() -> f64 {
    // SAFETY: malloc_trim only releases free memory of glibc's allocator.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    rss_mb(std::process::id() as i32).unwrap_or(0.0)
}

/// The last 15 lines of a log file, indented, for an error message.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(15)..];
    if tail.is_empty() {
        return format!(" (log {} is empty)", path.display());
    }
    format!("; last lines of {}:\n    {}", path.display(), tail.join("\n    "))
}

// ---------------------------------------------------------------------------------------------
// sd_notify

/// A fake systemd notify socket (a Unix datagram socket), to pass as `NOTIFY_SOCKET`.
pub struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    pub path: PathBuf,
}

impl NotifySocket {
    pub fn bind(path: &Path) -> anyhow::Result<NotifySocket> {
        let socket =
            std::os::unix::net::UnixDatagram::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok(NotifySocket {
            socket,
            path: path.to_path_buf(),
        })
    }

    /// Waits for `READY=1`; the time since `since`. An error if the daemon ends or `limit` passes.
    pub fn wait_ready(&self, daemon: &mut Proc, since: Instant, limit: Duration) -> anyhow::Result<Duration> {
        let mut buf = [0u8; 4096];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1") => {
                    return Ok(since.elapsed());
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e).context("reading the notify socket"),
            }
            daemon.ensure_running()?;
            if since.elapsed() > limit {
                bail!("no READY=1 within {} s{}", limit.as_secs(), daemon.log_tail());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// Clock ticks per second of /proc's CPU times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// User plus system CPU seconds of a running process (all its threads), from /proc/PID/stat.
pub fn cpu_seconds(pid: i32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("no /proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces: field 3
    // (state) is index 0, utime (14) index 11, stime (15) index 12.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .with_context(|| format!("unreadable /proc/{pid}/stat"))
    };
    Ok((field(11)? + field(12)?) / ticks_per_second())
}

/// A `kB` line of a /proc status file, in MB.
fn status_mb(text: &str, key: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resident memory of a running process (VmRSS), in MB.
pub fn rss_mb(pid: i32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status_mb(&status, "VmRSS:").with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Peak resident memory of this process (VmHWM), in MB.
pub fn own_peak_rss_mb() -> Option<f64> {
    status_mb(&std::fs::read_to_string("/proc/self/status").ok()?, "VmHWM:")
}

/// Voluntary plus involuntary context switches of each thread of a running process, by thread
/// id: every switch is a wake-up of that thread (or a preemption of a busy one).
pub fn context_switches(pid: i32) -> anyhow::Result<std::collections::BTreeMap<u32, u64>> {
    let mut per_thread = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A thread may end between the listing and the read.
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let switches: u64 = status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        per_thread.insert(tid, switches);
    }
    Ok(per_thread)
}

// ---------------------------------------------------------------------------------------------
// HTTP for the sandbox's debug endpoints

/// A blocking GET of a JSON document.
fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> anyhow::Result<T> {
    ccpayout::api::ensure_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let bytes = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()?;
        client.get(url).send().await?.error_for_status()?.bytes().await
    });
    let bytes = bytes.with_context(|| format!("GET {url}"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("unreadable reply from {url}"))
}

// ---------------------------------------------------------------------------------------------
// The sandbox process

/// `ccpayout sandbox --port 0 FLAGS` as its own process.
pub struct SandboxProc {
    pub url: String,
    proc: Proc,
}

impl SandboxProc {
    /// Starts it with `flags`, logging to `dir/sandbox.log`, and reads its address.
    pub fn start(bin: &Path, dir: &Path, flags: &[String]) -> anyhow::Result<SandboxProc> {
        let log = dir.join("sandbox.log");
        let stderr = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(["sandbox", "--port", "0"])
            .args(flags)
            .env_remove("RUST_LOG")
            .env_remove("CCPAYOUT_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut proc = Proc::spawn(&mut cmd, "the sandbox", Some(&log))?;
        let stdout = proc.take_stdout().context("the sandbox's stdout is not piped")?;
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        lines
            .read_line(&mut first)
            .context("cannot read the sandbox's first line")?;
        let url = first
            .trim()
            .strip_prefix("ccpayout sandbox listening on ")
            .with_context(|| format!("the sandbox did not announce its address: {first:?}{}", proc.log_tail()))?
            .trim_end_matches('/')
            .to_owned();
        // Drain the rest, so the sandbox never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
        Ok(SandboxProc { url, proc })
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// `GET /sandbox/stats`.
    pub fn stats(&self) -> anyhow::Result<SandboxStats> {
        get_json(&format!("{}/sandbox/stats", self.url))
    }

    /// `GET /sandbox/ledger`.
    pub fn ledger(&self) -> anyhow::Result<Ledger> {
        get_json(&format!("{}/sandbox/ledger", self.url))
    }

    /// Its CPU seconds so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(self.pid())
    }

    /// An error if it died.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.proc.ensure_running()
    }
}

// ---------------------------------------------------------------------------------------------
// ccpayout commands

/// `ccpayout --config DIR/ccpayout.toml --state-dir DIR/state …` against one sandbox.
pub struct Ccpayout {
    bin: PathBuf,
    dir: PathBuf,
    pub config: PathBuf,
    pub state: PathBuf,
    url: String,
}

impl Ccpayout {
    /// Writes `config_toml` into `dir`; the state goes to `dir/state`.
    pub fn new(bin: &Path, dir: &Path, url: &str, config_toml: &str) -> anyhow::Result<Ccpayout> {
        let config = dir.join("ccpayout.toml");
        std::fs::write(&config, config_toml).with_context(|| format!("cannot write {}", config.display()))?;
        Ok(Ccpayout {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            config,
            state: dir.join("state"),
            url: url.to_owned(),
        })
    }

    /// The command with the config, the state folder and the sandbox's credentials.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("CCPAYOUT_CONFIG")
            .env_remove("CCPAYOUT_STATE_DIR")
            .env_remove("CCPAYOUT_APP_SECRET_FILE")
            .env_remove("NOTIFY_SOCKET")
            .env("CCPAYOUT_API_BASE_URL", &self.url)
            .env("CCPAYOUT_APP_ID", DEMO_APP_ID)
            .env("CCPAYOUT_APP_SECRET", DEMO_APP_SECRET)
            .stdin(Stdio::null());
        cmd
    }

    /// Spawns `ccpayout ARGS` with stdout and stderr in `DIR/NAME.out` and `DIR/NAME.log`.
    pub fn spawn(&self, name: &str, args: &[&str]) -> anyhow::Result<Proc> {
        self.spawn_with(name, &mut self.command(args))
    }

    /// Spawns a command made by [`Ccpayout::command`], logging like [`Ccpayout::spawn`].
    pub fn spawn_with(&self, name: &str, cmd: &mut Command) -> anyhow::Result<Proc> {
        let out = self.dir.join(format!("{name}.out"));
        let log = self.dir.join(format!("{name}.log"));
        cmd.stdout(File::create(&out)?).stderr(File::create(&log)?);
        Proc::spawn(cmd, format!("ccpayout ({name})"), Some(&log))
    }

    /// What `NAME` printed on stdout.
    pub fn stdout_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.out"))).unwrap_or_default()
    }
}

/// A minimal config: `[limits]` and `[daemon]` lines as given, no approval, no metrics port.
pub fn config_toml(limits: &[&str], policy_approval: &str) -> String {
    let mut text = String::from("[limits]\n");
    for line in limits {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!(
        "[policy]\napproval = \"{policy_approval}\"\n[daemon]\nmetrics_listen = \"\"\n"
    ));
    text
}

/// A temporary folder for one scenario.
pub fn temp_dir(scenario: &str) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("ccpayout-perf-{scenario}-"))
        .tempdir()
        .context("cannot create a temporary folder")
}

/// Seconds since the Unix epoch, as a float.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
