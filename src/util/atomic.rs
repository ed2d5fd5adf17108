//! Atomic file replacement: a report is either the old file or the complete new one, never a
//! torn mixture, even if the process is killed or the machine loses power mid-write.
//!
//! The recipe: write a temporary file in the destination's own directory (so the rename stays
//! on one file system), fsync it, rename it over the destination, fsync the directory so the
//! rename itself is durable. A temporary file that is never committed is removed when dropped.
//! On Unix every file is mode 0600: reports carry payout addresses and amounts.
//!
//! All of this module is I/O.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes the temporary files of concurrent writers in one process; the process id
/// distinguishes processes.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// How many temporary names are tried before giving up (only collisions with stale files left by
/// an earlier process with the same pid make a retry necessary).
const TEMP_NAME_TRIES: u32 = 64;

/// Writes `bytes` to `path` atomically (see the module doc).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |out| out.write_all(bytes))
}

/// Streams a file to `path` atomically: `f` writes through a buffered writer; when it returns
/// `Ok` the file is synced and renamed into place. When `f` fails, `path` is left untouched and
/// the temporary file is removed.
pub fn write_atomic_with(path: &Path, f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    f(file.writer())?;
    file.commit()
}

/// Streams a new file to `path` atomically, as [`write_atomic_with`] does, but never replaces
/// one: when `path` exists (or appears while the file is written) it is left as it is and the
/// error is [`io::ErrorKind::AlreadyExists`].
pub fn write_new_atomic_with(path: &Path, f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(exists(path));
    }
    let mut file = AtomicFile::create(path)?;
    f(file.writer())?;
    file.commit_new()
}

fn exists(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{} exists already", path.display()),
    )
}

/// A file being written that replaces its destination only on [`AtomicFile::commit`].
///
/// Several can be open at once, which lets one pass over a batch's orders feed several reports.
#[derive(Debug)]
pub struct AtomicFile {
    dest: PathBuf,
    temp: PathBuf,
    /// `None` once committed (or after a failed commit, which has already cleaned up).
    out: Option<BufWriter<File>>,
    /// What [`AtomicFile::writer`] hands out if `out` is gone (cannot happen: commit consumes).
    closed: ClosedWriter,
}

impl AtomicFile {
    /// Creates the temporary file next to `dest`: `.<file name>.<pid>.<n>.tmp`. The leading dot
    /// hides it from inbox scans and `ls`; the `.tmp` suffix marks it as garbage if a crash
    /// leaves it behind.
    pub fn create(dest: &Path) -> io::Result<AtomicFile> {
        let name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no file", dest.display())))?;
        let dir = parent_dir(dest);
        let pid = std::process::id();
        let mut last_error = None;
        for _ in 0..TEMP_NAME_TRIES {
            let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
            let mut temp_name = std::ffi::OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(".{pid}.{n}.tmp"));
            let temp = dir.join(temp_name);
            match open_new(&temp) {
                Ok(file) => {
                    return Ok(AtomicFile {
                        dest: dest.to_path_buf(),
                        temp,
                        out: Some(BufWriter::with_capacity(256 * 1024, file)),
                        closed: ClosedWriter,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary file name")))
    }

    /// The buffered writer of the temporary file.
    pub fn writer(&mut self) -> &mut dyn Write {
        match self.out.as_mut() {
            Some(out) => out,
            // Unreachable (commit consumes self); kept total without a panic.
            None => &mut self.closed,
        }
    }

    /// Flushes and syncs the temporary file, renames it over the destination and syncs the
    /// directory. On error the destination is unchanged (unless the error comes from the final
    /// directory sync, when the new file is in place but its durability is not confirmed).
    pub fn commit(mut self) -> io::Result<()> {
        let Some(out) = self.out.take() else {
            return Err(io::Error::other("atomic file already committed"));
        };
        let result = finish(out, &self.temp, &self.dest);
        if result.is_err() {
            // Best effort: the caller gets the original error either way.
            let _ = fs::remove_file(&self.temp);
        }
        result
    }
}

impl AtomicFile {
    /// [`AtomicFile::commit`] for a destination that must not exist: the complete file is linked
    /// into place (a hard link fails when the name is taken, where a rename would replace it),
    /// then its temporary name is removed. On a file system without hard links, the name is
    /// checked just before the rename instead.
    pub fn commit_new(mut self) -> io::Result<()> {
        let Some(out) = self.out.take() else {
            return Err(io::Error::other("atomic file already committed"));
        };
        let result = finish_new(out, &self.temp, &self.dest);
        let _ = fs::remove_file(&self.temp);
        result
    }
}

fn finish_new(out: BufWriter<File>, temp: &Path, dest: &Path) -> io::Result<()> {
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    match fs::hard_link(temp, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists(dest)),
        Err(_) if fs::symlink_metadata(dest).is_ok() => return Err(exists(dest)),
        Err(_) => fs::rename(temp, dest)?,
    }
    sync_dir(&parent_dir(dest))
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed: the temporary file is garbage. Close it, then remove it.
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

fn finish(out: BufWriter<File>, temp: &Path, dest: &Path) -> io::Result<()> {
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    fs::rename(temp, dest)?;
    sync_dir(&parent_dir(dest))
}

/// The directory a path lives in; `.` for a bare file name.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(unix)]
fn open_new(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    // The umask can only clear bits of 0600, but an odd umask (0o400 ...) could leave the owner
    // unable to rewrite the report later; set the mode exactly.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn open_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Directories cannot be opened for syncing here; the rename is as durable as the platform
    // makes it.
    Ok(())
}

/// A writer whose every write fails.
#[derive(Debug)]
struct ClosedWriter;

impl Write for ClosedWriter {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("atomic file already committed"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_a_new_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.result.csv");
        write_atomic(&path, b"hello\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello\n");
        assert_eq!(names(dir.path()), ["a.result.csv"]);
    }

    #[test]
    fn a_new_file_is_written_once_and_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payroll.retry1.csv");
        write_new_atomic_with(&path, |out| out.write_all(b"first\n")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first\n");
        let err = write_new_atomic_with(&path, |out| out.write_all(b"second\n")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"first\n");
        // A name taken while the file was written is not replaced either.
        let late = dir.path().join("late.csv");
        let err = write_new_atomic_with(&late, |out| {
            fs::write(&late, b"someone else's")?;
            out.write_all(b"mine")
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&late).unwrap(), b"someone else's");
        assert_eq!(
            names(dir.path()),
            ["late.csv", "payroll.retry1.csv"],
            "no temporary file is left"
        );
    }

    #[test]
    fn replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        fs::write(&path, b"old contents that are longer than the new ones").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn a_failing_writer_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        fs::write(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |out| {
            out.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "boom");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn the_temporary_file_is_hidden_and_marked_and_dropping_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.csv");
        let mut file = AtomicFile::create(&path).unwrap();
        file.writer().write_all(b"x").unwrap();
        let temp = names(dir.path());
        assert_eq!(temp.len(), 1);
        assert!(temp[0].starts_with(".b.csv.") && temp[0].ends_with(".tmp"), "{temp:?}");
        drop(file);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn streams_large_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        write_atomic_with(&path, |out| {
            for i in 0..100_000 {
                writeln!(out, "{i}")?;
            }
            Ok(())
        })
        .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 100_000);
        assert_eq!(text.lines().last(), Some("99999"));
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        assert_eq!(
            write_atomic(Path::new("/"), b"x").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
