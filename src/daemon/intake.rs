//! Inbox intake: watching folders, claiming files, taking them into the store, archiving them.
//!
//! File-system events (notify) are only hints that make a scan happen sooner: every inbox is
//! scanned at start and every `daemon.rescan_secs`, so a lost event (or a folder on a file
//! system without events) delays a batch but never loses it. A file is claimed by renaming it
//! into `processing/` (see [`crate::inbox`]); claimed files go one at a time through
//! [`crate::app::ingest()`]; a file that is not a valid batch, or is blocked, moves to
//! `rejected/` with an error report; a paid one moves to `done/` beside its reports.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::app::{self, IngestError, Ingested};
use crate::config::Config;
use crate::inbox::{Finish, Inbox};

/// How long a file whose preflight could not reach the API waits before it is tried again.
const RETRY_PREFLIGHT: Duration = Duration::from_secs(30);

/// One watched inbox and how its batches are judged.
#[derive(Debug)]
pub struct InboxSpec {
    pub inbox: Inbox,
    /// The job it belongs to, if any.
    pub job: Option<String>,
    /// The config with the job's policy overrides applied.
    pub config: Arc<Config>,
}

/// A claimed file on its way into the store.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub spec: usize,
    pub path: PathBuf,
    /// Found in `processing/` at start: claimed before the last stop.
    pub recovered: bool,
}

/// Watches one inbox until `cancel`: claims every ready file and hands it to the intake.
pub async fn watch(
    shared: Arc<Shared>,
    index: usize,
    rescan: Duration,
    tx: mpsc::Sender<Claimed>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let spec = &shared.inboxes[index];
    let inbox = &spec.inbox;
    // Files claimed before a crash or a stop come first; the store knows their batch by content.
    for path in inbox.unfinished()? {
        tracing::info!(file = %path.display(), "taking up a file claimed before the last stop");
        if tx
            .send(Claimed {
                spec: index,
                path,
                recovered: true,
            })
            .await
            .is_err()
        {
            return Ok(());
        }
    }
    let wake = Arc::new(Notify::new());
    let _watcher = start_watcher(inbox.dir(), wake.clone());
    let settle = spec.inbox.settle();
    // After an event, scan again once the settle time has passed, so a file that was still
    // settling at the first scan is not left waiting for the next rescan.
    let mut settle_scan: Option<tokio::time::Instant> = None;
    loop {
        let scan = inbox.scan_settling(SystemTime::now())?;
        if let Some(left) = scan.settling {
            // A file still settling (one renamed in just before the daemon started, say) is
            // looked at again when it is ready, not at the next rescan.
            let at = tokio::time::Instant::now() + left + Duration::from_millis(50);
            settle_scan = Some(settle_scan.map_or(at, |t| t.min(at)));
        }
        for path in scan.ready {
            match inbox.claim(&path) {
                Ok(Some(claimed)) => {
                    shared.stats.count_inbox("claimed");
                    tracing::info!(file = %path.display(), "claimed a batch file");
                    if tx
                        .send(Claimed {
                            spec: index,
                            path: claimed,
                            recovered: false,
                        })
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot claim a batch file"),
            }
        }
        let next_settle = settle_scan.take();
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = wake.notified() => {
                settle_scan = Some(tokio::time::Instant::now() + settle + Duration::from_millis(50));
            }
            _ = tokio::time::sleep_until(next_settle.unwrap_or_else(|| tokio::time::Instant::now() + rescan)) => {}
        }
    }
}

/// Whether a file-system event in an inbox can mean a file arrived, changed or finished being
/// written. Reads, opens and read-only closes cannot, and must not wake the scanner: the scan
/// itself opens the folder, so waking on those would make every scan trigger the next one (an
/// idle daemon spinning a core).
fn wakes_scanner(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other => true,
    }
}

/// A notify watcher that wakes the scanner on events in `dir` that can bring a file (see
/// [`wakes_scanner`]). `None` (with a warning) when the platform refuses (inotify limits): the
/// rescans still find every file.
fn start_watcher(dir: &Path, wake: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| wakes_scanner(&e.kind)) {
            wake.notify_one();
        }
    };
    match notify::recommended_watcher(handler) {
        Ok(mut watcher) => match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => Some(watcher),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "no file-system events for this inbox; relying on rescans");
                None
            }
        },
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "no file-system events; relying on rescans");
            None
        }
    }
}

/// Takes claimed files into the store one at a time until `cancel` or the channel closes.
pub async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Claimed>,
    tx: mpsc::Sender<Claimed>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let claimed = tokio::select! {
            c = rx.recv() => match c { Some(c) => c, None => return Ok(()) },
            _ = cancel.cancelled() => return Ok(()),
        };
        take(&shared, &claimed, &tx, &cancel).await?;
    }
}

async fn take(
    shared: &Arc<Shared>,
    claimed: &Claimed,
    tx: &mpsc::Sender<Claimed>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let spec = &shared.inboxes[claimed.spec];
    let path = &claimed.path;
    if !path.exists() {
        return Ok(());
    }
    let now = shared.clock.now_ms();
    let ingested = tokio::select! {
        r = app::ingest(&shared.client, &spec.config, &shared.store, path, now) => r,
        _ = cancel.cancelled() => return Ok(()),
    };
    match ingested {
        Ok(Ingested::Created { batch, .. }) => {
            tracing::info!(
                batch = %batch.name,
                orders = batch.orders,
                refused_rows = batch.refused.len(),
                digest = %batch.plan_digest,
                job = spec.job.as_deref().unwrap_or(""),
                "stored a new batch from {}",
                path.display()
            );
            shared.register_origin(&batch.batch_id, claimed.spec, path)?;
            shared.batches().launch(&batch.batch_id);
        }
        Ok(Ingested::Known(batch)) => {
            if !claimed.recovered || shared.has_origin(&batch.batch_id) || !is_processing_of(path, &batch.source) {
                // The same contents under another name while the first copy is (or was) paid.
                let text = format!(
                    "{}: the same contents as batch {} (from {}); nothing is paid twice\n",
                    path.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    batch.name,
                    batch.source
                );
                tracing::warn!(file = %path.display(), batch = %batch.name, "duplicate batch file rejected");
                reject(shared, claimed.spec, path, &text, None)?;
            } else {
                tracing::info!(batch = %batch.name, "resuming the batch of a file claimed before the last stop");
                shared.register_origin(&batch.batch_id, claimed.spec, path)?;
                shared.batches().launch(&batch.batch_id);
            }
        }
        Ok(Ingested::NotABatch { message }) => {
            tracing::warn!(file = %path.display(), "not a batch file: {message}");
            reject(shared, claimed.spec, path, &format!("{message}\n"), None)?;
        }
        Ok(Ingested::Blocked { plan }) => {
            tracing::warn!(file = %path.display(), "batch blocked; nothing was submitted");
            let text = format!("{plan}\nnothing was submitted: the batch is blocked (see above)\n");
            reject(shared, claimed.spec, path, &text, None)?;
        }
        Ok(Ingested::NothingPayable { batch, plan }) => {
            tracing::warn!(file = %path.display(), "no row of the batch is payable");
            let text = format!("{plan}\nnothing was submitted: no row of the batch is payable\n");
            reject(shared, claimed.spec, path, &text, Some(&batch))?;
        }
        Err(e) if e.retry_later() => {
            tracing::warn!(
                file = %path.display(),
                "cannot take the batch in now ({e}); trying again in {} s",
                RETRY_PREFLIGHT.as_secs()
            );
            let tx = tx.clone();
            let again = claimed.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_PREFLIGHT) => { let _ = tx.send(again).await; }
                    _ = cancel.cancelled() => {}
                }
            });
        }
        Err(IngestError::Store(e)) => {
            // Nothing can be trusted to be recorded: stop the daemon (exit 2) for a person.
            return Err(anyhow::Error::from(e).context(format!("taking {} in", path.display())));
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), "cannot take the batch in: {e}");
            reject(shared, claimed.spec, path, &format!("{e}\n"), None)?;
        }
    }
    Ok(())
}

/// Whether `path` is the claimed file a batch was created from (`source`).
fn is_processing_of(path: &Path, source: &str) -> bool {
    Path::new(source) == path
}

/// Moves a claimed file to `rejected/` with `<name>.error.txt` beside it (and the batch's
/// reports when there is a batch record).
fn reject(
    shared: &Shared,
    spec: usize,
    path: &Path,
    text: &str,
    batch: Option<&crate::model::record::BatchRecord>,
) -> anyhow::Result<()> {
    let inbox = &shared.inboxes[spec].inbox;
    if let Some(batch) = batch {
        app::write_reports(
            &inbox.dir().join(crate::inbox::REJECTED),
            &shared.store,
            batch,
            shared.clock.now_ms(),
        )?;
    }
    let archived = inbox.finish(path, Finish::Rejected)?;
    let mut error_path = archived.clone().into_os_string();
    error_path.push(".error.txt");
    crate::util::atomic::write_atomic(Path::new(&error_path), text.as_bytes())?;
    shared.stats.count_inbox("rejected");
    tracing::warn!(file = %archived.display(), "rejected; the reason is in {}", Path::new(&error_path).display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};

    #[test]
    fn only_events_that_can_bring_a_file_wake_the_scanner() {
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
        ] {
            assert!(wakes_scanner(&kind), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Any),
        ] {
            assert!(!wakes_scanner(&kind), "{kind:?}");
        }
    }

    /// The loop the filter prevents: listing the folder (what a scan does) must not wake the
    /// scanner, while a file arriving must.
    #[tokio::test]
    async fn scanning_the_inbox_does_not_wake_its_own_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let wake = Arc::new(Notify::new());
        let _watcher = start_watcher(dir.path(), wake.clone()).expect("inotify works here");
        for _ in 0..3 {
            let _ = std::fs::read_dir(dir.path()).unwrap().count();
        }
        let woken = tokio::time::timeout(Duration::from_millis(300), wake.notified()).await;
        assert!(woken.is_err(), "a directory listing woke the scanner");
        std::fs::write(dir.path().join("batch.csv"), "order_id\n").unwrap();
        let woken = tokio::time::timeout(Duration::from_secs(5), wake.notified()).await;
        assert!(woken.is_ok(), "a new file did not wake the scanner");
    }
}
