//! The audit trail's file mirror, `audit.jsonl`: one line per order change, hash-chained.
//!
//! The `audit` table is the truth and is written in the commit's transaction; the file follows
//! it. Lines reach the file only after their commit is durable, so the file can lag the table
//! (a crash between the two, or a failed append) but must never lead it or disagree with it.
//! `open` and every append catch a lagging file up from the table; an append that fails is
//! undone (the file is cut back to its last whole line) and retried with the next commit.
//!
//! Because the table is the truth, the file is not fsynced with every append (that would be a
//! second fsync per commit on the engine's path): it is synced when at least [`SYNC_EVERY`] has
//! passed since the last sync, and when the store closes. A power loss can therefore cost the
//! file its last moments of lines, which the next `open` copies again from the table. A
//! SIGKILL costs nothing: written lines are in the page cache.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use redb::{ReadTransaction, ReadableTable};

use super::codec::{AUDIT, AuditLinks, line_hash};
use super::{Store, StoreError, private_options};

/// The file side of the audit trail. Lives in the store's mutex; every method is called with it
/// held. Commits reach it after their own commit, not necessarily in seq order: each append
/// writes what the file lacks, in seq order, from the table when its own lines are not next.
#[derive(Debug)]
pub(super) struct AuditMirror {
    path: PathBuf,
    file: Option<File>,
    /// Bytes of whole lines known to be in the file.
    len: u64,
    /// The seq of the next line the file must receive.
    next_seq: u64,
    /// An append failed or was interrupted: cut the file back to `len` before writing.
    dirty: bool,
    /// When the file was last synced (`None`: never by this process).
    last_sync: Option<Instant>,
    /// Lines were written since the last sync.
    unsynced: bool,
}

/// The longest the mirror's written lines wait for an fsync while appends keep coming.
pub(super) const SYNC_EVERY: Duration = Duration::from_secs(1);

impl Drop for AuditMirror {
    fn drop(&mut self) {
        if let Some(file) = &self.file
            && self.unsynced
            && let Err(error) = file.sync_data()
        {
            tracing::warn!(path = %self.path.display(), %error, "cannot sync the audit file; the next open catches it up from the store");
        }
    }
}

impl AuditMirror {
    /// A mirror with no file yet, for the moments before `open` has checked it.
    pub(super) fn detached(path: PathBuf) -> AuditMirror {
        AuditMirror {
            path,
            file: None,
            len: 0,
            next_seq: 1,
            dirty: true,
            last_sync: None,
            unsynced: false,
        }
    }

    /// Opens (creating) the file, drops a torn last line (a crash mid-append), checks that its
    /// last line is the table's line of that seq, and appends the lines the table has beyond it.
    pub(super) fn open(path: PathBuf, store: &Store) -> Result<AuditMirror, StoreError> {
        let io_error = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = private_options()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_error)?;
        let file_len = file.metadata().map_err(io_error)?.len();
        let tail = read_tail(&mut file, file_len).map_err(io_error)?;
        if tail.whole_len < file_len {
            tracing::warn!(path = %path.display(), bytes = file_len - tail.whole_len, "dropping a torn last line of the audit file");
            file.set_len(tail.whole_len).map_err(io_error)?;
        }
        let mut mirror = AuditMirror {
            path,
            file: Some(file),
            len: tail.whole_len,
            next_seq: 1,
            dirty: false,
            last_sync: None,
            unsynced: false,
        };
        if let Some(line) = tail.last_line {
            let line = String::from_utf8(line).map_err(|_| mirror.corrupt("its last line is not UTF-8".into()))?;
            let seq = serde_json::from_str::<AuditLinks>(&line)
                .map_err(|e| mirror.corrupt(format!("its last line does not parse: {e}")))?
                .seq;
            let tx = store.read()?;
            let table = tx.open_table(AUDIT).map_err(|e| store.db_err(e))?;
            match table.get(seq).map_err(|e| store.db_err(e))? {
                Some(stored) if stored.value() == line => {}
                Some(_) => return Err(mirror.corrupt(format!("line {seq} differs from the store's"))),
                None => return Err(mirror.corrupt(format!("it has line {seq}, which the store lacks"))),
            }
            mirror.next_seq = seq + 1;
        }
        let tx = store.read()?;
        mirror.catch_up(store, &tx).map_err(|e| mirror.lift(e))?;
        Ok(mirror)
    }

    pub(super) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Appends the lines of a commit that has just landed. Never fails the commit: it is durable
    /// already, and the table holds these lines; on failure the file is repaired by a later
    /// append, by `verify`, or by the next `open`.
    pub(super) fn append(&mut self, store: &Store, lines: &[(u64, String)]) {
        let contiguous = lines.first().is_some_and(|(seq, _)| *seq == self.next_seq) && !self.dirty;
        let result = if contiguous {
            self.write_lines(lines.iter().map(|(s, l)| (*s, l.as_str())))
        } else {
            // Behind (a failed append, or a later commit got here first) or already past these
            // lines: write whatever the table has beyond the file.
            match store.read() {
                Ok(tx) => self.catch_up(store, &tx),
                Err(e) => Err(CatchUpError::Store(e)),
            }
        };
        if let Err(error) = result {
            self.dirty = true;
            tracing::warn!(path = %self.path.display(), %error, "cannot append to the audit file; it will be caught up from the store");
        }
    }

    /// Brings the file up to the table, then checks that both hold the same hash-chained
    /// lines. Returns the number of lines.
    pub(super) fn verify(&mut self, store: &Store) -> Result<u64, StoreError> {
        // One snapshot for the catch-up and the comparison. Appends wait for the lock we hold,
        // so the file cannot gain lines beyond this snapshot meanwhile.
        let tx = store.read()?;
        self.catch_up(store, &tx).map_err(|e| self.lift(e))?;
        let file = File::open(&self.path).map_err(|source| StoreError::Io {
            path: self.path.display().to_string(),
            source,
        })?;
        let table = tx.open_table(AUDIT).map_err(|e| store.db_err(e))?;
        let mut stored = table.iter().map_err(|e| store.db_err(e))?;
        let mut prev = String::new();
        let mut n = 0u64;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|source| StoreError::Io {
                path: self.path.display().to_string(),
                source,
            })?;
            n += 1;
            let links = serde_json::from_str::<AuditLinks>(&line)
                .map_err(|e| self.corrupt(format!("line {n} does not parse: {e}")))?;
            if links.seq != n {
                return Err(self.corrupt(format!("line {n} has seq {}", links.seq)));
            }
            if links.prev != prev {
                return Err(self.corrupt(format!(
                    "line {n} does not follow from line {}: the chain is broken",
                    n - 1
                )));
            }
            match stored.next() {
                Some(entry) => {
                    let (seq, text) = entry.map_err(|e| store.db_err(e))?;
                    if seq.value() != n || text.value() != line {
                        return Err(self.corrupt(format!("line {n} differs from the store's")));
                    }
                }
                None => return Err(self.corrupt(format!("it has line {n}, which the store lacks"))),
            }
            prev = line_hash(&line);
        }
        if let Some(entry) = stored.next() {
            let (seq, _) = entry.map_err(|e| store.db_err(e))?;
            return Err(self.corrupt(format!("it lacks line {} of the store", seq.value())));
        }
        Ok(n)
    }

    /// Appends every line of the snapshot `tx` from `next_seq` on, repairing a failed append
    /// first.
    fn catch_up(&mut self, store: &Store, tx: &ReadTransaction) -> Result<(), CatchUpError> {
        let table = tx.open_table(AUDIT).map_err(|e| CatchUpError::Store(store.db_err(e)))?;
        let lines = table
            .range(self.next_seq..)
            .map_err(|e| CatchUpError::Store(store.db_err(e)))?;
        let mut pending = Vec::new();
        let mut pending_bytes = 0usize;
        for entry in lines {
            let (seq, line) = entry.map_err(|e| CatchUpError::Store(store.db_err(e)))?;
            pending_bytes += line.value().len();
            pending.push((seq.value(), line.value().to_owned()));
            // Bounded batches: a file far behind (rebuilt after deletion) can be millions of lines.
            if pending_bytes >= 4 << 20 {
                self.write_lines(pending.iter().map(|(s, l)| (*s, l.as_str())))?;
                pending.clear();
                pending_bytes = 0;
            }
        }
        if !pending.is_empty() || self.dirty {
            self.write_lines(pending.iter().map(|(s, l)| (*s, l.as_str())))?;
        }
        Ok(())
    }

    /// Writes whole lines after `len`, then fsyncs. On error the file may hold part of them;
    /// `dirty` stays set so the next write cuts them off first.
    fn write_lines<'a>(&mut self, lines: impl Iterator<Item = (u64, &'a str)>) -> Result<(), CatchUpError> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self
                .file
                .insert(private_options().read(true).append(true).open(&self.path)?),
        };
        // Append mode writes at the end, so cutting back to the last whole line is enough to
        // undo a partial write.
        if self.dirty && file.metadata()?.len() != self.len {
            file.set_len(self.len)?;
        }
        self.dirty = true;
        let mut next_seq = self.next_seq;
        let mut added = 0u64;
        {
            let mut out = BufWriter::with_capacity(256 * 1024, &*file);
            for (seq, line) in lines {
                if seq != next_seq {
                    return Err(CatchUpError::Io(io::Error::other(format!(
                        "audit line {seq} would follow line {}",
                        next_seq - 1
                    ))));
                }
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
                added += line.len() as u64 + 1;
                next_seq += 1;
            }
            out.flush()?;
        }
        // Written lines wait for the next append after SYNC_EVERY, or the drop, to be synced.
        self.unsynced |= added > 0;
        if self.unsynced && self.last_sync.is_none_or(|at| at.elapsed() >= SYNC_EVERY) {
            file.sync_data()?;
            self.last_sync = Some(Instant::now());
            self.unsynced = false;
        }
        self.len += added;
        self.next_seq = next_seq;
        self.dirty = false;
        Ok(())
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.display().to_string(),
            detail: format!("the audit file: {detail}"),
        }
    }

    fn lift(&self, error: CatchUpError) -> StoreError {
        match error {
            CatchUpError::Store(e) => e,
            CatchUpError::Io(source) => StoreError::Io {
                path: self.path.display().to_string(),
                source,
            },
        }
    }
}

/// A catch-up fails on the store's side or the file's.
#[derive(Debug, thiserror::Error)]
enum CatchUpError {
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The end of the file: where its last whole line ends, and that line.
struct Tail {
    whole_len: u64,
    last_line: Option<Vec<u8>>,
}

/// Reads backwards from the end until the last whole line is in view: the file can be millions
/// of lines, and `open` needs only the last.
fn read_tail(file: &mut File, len: u64) -> io::Result<Tail> {
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        let mut buf = vec![0u8; usize::try_from(len - start).map_err(io::Error::other)?];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            if start == 0 {
                return Ok(Tail {
                    whole_len: 0,
                    last_line: None,
                });
            }
            window = window.saturating_mul(2);
            continue;
        };
        let line_start = match buf[..end].iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None if start == 0 => 0,
            None => {
                window = window.saturating_mul(2);
                continue;
            }
        };
        return Ok(Tail {
            whole_len: start + end as u64 + 1,
            last_line: Some(buf[line_start..end].to_vec()),
        });
    }
}
