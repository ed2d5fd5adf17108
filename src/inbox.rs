//! Inbox folders: which files are batches waiting to be paid, claiming one atomically, and
//! archiving it when it is done or refused.
//!
//! The producer contract: write the batch somewhere else (or under a name the inbox ignores:
//! a dotfile, `*.tmp`, `*.part`, `*~`), then rename it into the inbox. A rename within one
//! filesystem is atomic, so a file that appears under a batch name is complete. For producers
//! that cannot rename, a settle time makes the inbox wait until the file has not changed for
//! that long.
//!
//! A file is claimed by renaming it into `processing/` inside the inbox (same filesystem, so
//! the rename is atomic): when two claimers race, exactly one rename succeeds. After a crash,
//! files left in `processing/` are taken up again; the store recognises their batch by content
//! hash, so nothing is paid twice. Finished files move to `done/`, refused ones to `rejected/`.
//!
//! A batch's detached signature (`FILE.sig`, when the policy asks for signed batches) travels
//! with it: the producer moves the `.sig` in before the batch; a claim takes it along into
//! `processing/`, and the archive into `done/` or `rejected/`. A `.sig` is never a batch.
//!
//! This module does file-system I/O on the inbox only; it knows nothing of batches' contents.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Sub-folders of an inbox.
pub const PROCESSING: &str = "processing";
pub const DONE: &str = "done";
pub const REJECTED: &str = "rejected";

/// Extensions of batch files.
const BATCH_EXTENSIONS: [&str; 4] = ["csv", "json", "jsonl", "ndjson"];

/// Whether a file name is a batch waiting in an inbox: not hidden, not marked as still being
/// written, and with a batch extension.
pub fn is_candidate(name: &str) -> bool {
    if name.starts_with('.') || name.ends_with('~') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".tmp") || lower.ends_with(".part") {
        return false;
    }
    match lower.rsplit_once('.') {
        Some((stem, ext)) => !stem.is_empty() && BATCH_EXTENSIONS.contains(&ext),
        None => false,
    }
}

/// How a claimed file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Paid (or finished with some rows failed): archived in `done/`.
    Done,
    /// Not a valid batch, or blocked: archived in `rejected/`.
    Rejected,
}

/// What a scan found: the files ready to claim, and how long until the first one still being
/// written (or just renamed in) has settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub ready: Vec<PathBuf>,
    pub settling: Option<Duration>,
}

/// An inbox folder with its sub-folders.
#[derive(Debug, Clone)]
pub struct Inbox {
    dir: PathBuf,
    settle: Duration,
}

impl Inbox {
    /// Opens an inbox, creating it and its sub-folders when missing.
    pub fn open(dir: &Path, settle: Duration) -> io::Result<Inbox> {
        for sub in [PROCESSING, DONE, REJECTED] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| with_path(e, &dir.join(sub)))?;
        }
        Ok(Inbox {
            dir: dir.to_path_buf(),
            settle,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long a file must stay unchanged before it is read.
    pub fn settle(&self) -> Duration {
        self.settle
    }

    /// Batch files ready to claim, oldest first: candidates whose last change is at least the
    /// settle time before `now`.
    pub fn scan(&self, now: SystemTime) -> io::Result<Vec<PathBuf>> {
        self.scan_settling(now).map(|scan| scan.ready)
    }

    /// [`Inbox::scan`], also saying how long until the first candidate that is still settling
    /// will be ready, so a watcher can look again then rather than at its next rescan.
    pub fn scan_settling(&self, now: SystemTime) -> io::Result<Scan> {
        let mut ready = Vec::new();
        let mut settling: Option<Duration> = None;
        for entry in std::fs::read_dir(&self.dir).map_err(|e| with_path(e, &self.dir))? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_candidate(name) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(meta) if meta.is_file() => meta,
                // Vanished (claimed by someone else) or not a plain file.
                _ => continue,
            };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let age = now.duration_since(modified).unwrap_or_default();
            if age < self.settle {
                let left = self.settle - age;
                settling = Some(settling.map_or(left, |s| s.min(left)));
                continue;
            }
            ready.push((modified, entry.path()));
        }
        ready.sort();
        Ok(Scan {
            ready: ready.into_iter().map(|(_, path)| path).collect(),
            settling,
        })
    }

    /// Claims a file by renaming it into `processing/`. `None` when it is gone: another claimer
    /// took it first.
    pub fn claim(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        let Some(name) = path.file_name() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no file name", path.display()),
            ));
        };
        let target = unique(&self.dir.join(PROCESSING), &name.to_string_lossy());
        match std::fs::rename(path, &target) {
            Ok(()) => {
                move_signature(path, &target)?;
                Ok(Some(target))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(with_path(e, path)),
        }
    }

    /// Files claimed earlier and not finished (a crash interrupted them), oldest name first.
    pub fn unfinished(&self) -> io::Result<Vec<PathBuf>> {
        let dir = self.dir.join(PROCESSING);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| with_path(e, &dir))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(is_candidate))
            .map(|e| e.path())
            .collect();
        files.sort();
        // A crash between a claim and moving its signature left the `.sig` in the inbox.
        for file in &files {
            if let Some(name) = file.file_name()
                && !signature_of(file).exists()
            {
                move_signature(&self.dir.join(name), file)?;
            }
        }
        Ok(files)
    }

    /// Moves a claimed file into `done/` or `rejected/` and returns where it went. A name that
    /// is already taken there gets a `-1`, `-2`, … suffix: archives are never overwritten.
    pub fn finish(&self, claimed: &Path, how: Finish) -> io::Result<PathBuf> {
        let folder = self.dir.join(match how {
            Finish::Done => DONE,
            Finish::Rejected => REJECTED,
        });
        let name = claimed
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "batch".into());
        let target = unique(&folder, &name);
        std::fs::rename(claimed, &target).map_err(|e| with_path(e, claimed))?;
        move_signature(claimed, &target)?;
        Ok(target)
    }
}

/// The detached signature of a batch file: `FILE.sig`.
pub fn signature_of(batch: &Path) -> PathBuf {
    let mut name = batch.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Moves `from`'s signature, if it has one, to be `to`'s.
fn move_signature(from: &Path, to: &Path) -> io::Result<()> {
    let sig = signature_of(from);
    match std::fs::rename(&sig, signature_of(to)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(with_path(e, &sig)),
    }
}

/// `dir/name`, or `dir/stem-N.ext` for the first N that is free.
fn unique(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    (1..)
        .map(|n| dir.join(format!("{stem}-{n}{ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finished_batch_files_are_candidates() {
        for name in [
            "payroll.csv",
            "PAYROLL.CSV",
            "a.json",
            "weekly.jsonl",
            "w.ndjson",
            "2026-11.payroll.csv",
        ] {
            assert!(is_candidate(name), "{name}");
        }
        for name in [
            ".payroll.csv",
            "payroll.csv.tmp",
            "payroll.csv.part",
            "payroll.csv~",
            "payroll.CSV.PART",
            "payroll.xlsx",
            "payroll",
            ".csv",
            "notes.txt",
        ] {
            assert!(!is_candidate(name), "{name}");
        }
    }

    #[test]
    fn scan_skips_hidden_partial_and_unsettled_files() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path(), Duration::from_secs(5)).unwrap();
        for name in ["a.csv", "b.json", ".hidden.csv", "c.csv.part", "d.txt"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        // Just written: not settled yet.
        assert!(inbox.scan(SystemTime::now()).unwrap().is_empty());
        let later = SystemTime::now() + Duration::from_secs(6);
        let names: Vec<String> = inbox
            .scan(later)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, ["a.csv", "b.json"]);
    }

    #[test]
    fn a_signature_travels_with_its_batch_and_is_never_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path(), Duration::ZERO).unwrap();
        std::fs::write(dir.path().join("pay.csv.sig"), "sig").unwrap();
        std::fs::write(dir.path().join("pay.csv"), "rows").unwrap();
        assert!(!is_candidate("pay.csv.sig"));
        let later = SystemTime::now() + Duration::from_secs(1);
        assert_eq!(inbox.scan(later).unwrap(), [dir.path().join("pay.csv")]);
        let claimed = inbox.claim(&dir.path().join("pay.csv")).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(signature_of(&claimed)).unwrap(), "sig");
        assert!(!dir.path().join("pay.csv.sig").exists());
        let archived = inbox.finish(&claimed, Finish::Rejected).unwrap();
        assert_eq!(std::fs::read_to_string(signature_of(&archived)).unwrap(), "sig");
        // A crash between the claim and the signature's move: resuming takes it along.
        std::fs::write(dir.path().join("b.csv.sig"), "sig b").unwrap();
        std::fs::write(dir.path().join(PROCESSING).join("b.csv"), "rows").unwrap();
        let unfinished = inbox.unfinished().unwrap();
        assert_eq!(std::fs::read_to_string(signature_of(&unfinished[0])).unwrap(), "sig b");
    }

    #[test]
    fn a_scan_says_when_a_settling_file_will_be_ready() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path(), Duration::from_secs(5)).unwrap();
        assert_eq!(inbox.scan_settling(SystemTime::now()).unwrap(), Scan::default());
        std::fs::write(dir.path().join("a.csv"), "x").unwrap();
        let modified = std::fs::metadata(dir.path().join("a.csv")).unwrap().modified().unwrap();
        let scan = inbox.scan_settling(modified + Duration::from_secs(2)).unwrap();
        assert!(scan.ready.is_empty());
        assert_eq!(scan.settling, Some(Duration::from_secs(3)));
        let scan = inbox.scan_settling(modified + Duration::from_secs(5)).unwrap();
        assert_eq!((scan.ready.len(), scan.settling), (1, None));
    }

    #[test]
    fn a_file_is_claimed_once_and_archived_without_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path(), Duration::ZERO).unwrap();
        let file = dir.path().join("pay.csv");
        std::fs::write(&file, "one").unwrap();
        let claimed = inbox.claim(&file).unwrap().expect("claimed");
        assert!(!file.exists());
        assert_eq!(claimed, dir.path().join(PROCESSING).join("pay.csv"));
        assert_eq!(inbox.claim(&file).unwrap(), None, "a second claimer finds nothing");
        assert_eq!(inbox.unfinished().unwrap(), std::slice::from_ref(&claimed));

        let done = inbox.finish(&claimed, Finish::Done).unwrap();
        assert_eq!(done, dir.path().join(DONE).join("pay.csv"));
        // The same name again is archived beside it, not over it.
        std::fs::write(&file, "two").unwrap();
        let again = inbox.claim(&file).unwrap().unwrap();
        let done2 = inbox.finish(&again, Finish::Done).unwrap();
        assert_eq!(done2, dir.path().join(DONE).join("pay-1.csv"));
        assert_eq!(std::fs::read_to_string(done).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(done2).unwrap(), "two");

        std::fs::write(&file, "bad").unwrap();
        let bad = inbox.claim(&file).unwrap().unwrap();
        assert_eq!(
            inbox.finish(&bad, Finish::Rejected).unwrap(),
            dir.path().join(REJECTED).join("pay.csv")
        );
        assert!(inbox.unfinished().unwrap().is_empty());
    }

    #[test]
    fn racing_claimers_get_each_file_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path(), Duration::ZERO).unwrap();
        for i in 0..50 {
            std::fs::write(dir.path().join(format!("f{i:02}.csv")), "x").unwrap();
        }
        let files = inbox.scan(SystemTime::now()).unwrap();
        assert_eq!(files.len(), 50);
        let claims: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| files.iter().filter(|f| inbox.claim(f).unwrap().is_some()).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(claims.iter().sum::<usize>(), 50, "{claims:?}");
        assert_eq!(inbox.unfinished().unwrap().len(), 50);
    }
}
