//! `retry BATCH [--out FILE]`: the one operator's answer (from the daemon when one runs, else
//! from the store), then the retry file written here, by the operator's own process, in the
//! batch's format, never over an existing file.

use std::path::{Path, PathBuf};

use super::{CliError, Outcome, load_config, operator_reply};
use crate::app::Verdict;
use crate::app::retry::{RetryFile, write_file};
use crate::batch::parse::Format;
use crate::daemon::socket::Request;

/// `ccpayout retry BATCH [--out FILE]`.
pub async fn retry(
    config_path: Option<PathBuf>,
    state_dir: &Path,
    batch: String,
    out: Option<PathBuf>,
    sandbox: bool,
) -> Result<Outcome, CliError> {
    let reply = operator_reply(state_dir, Request::Retry { batch }, || load_config(config_path)).await?;
    let refused = match reply.verdict {
        Verdict::Done => false,
        Verdict::Refused => true,
        Verdict::Failed => return Err(anyhow::anyhow!("{}", reply.shown().trim_end()).into()),
    };
    let Some(file) = &reply.retry else {
        // Nothing to write: the batch is open, or nothing failed.
        if refused {
            eprint!("error: {}", reply.shown());
            return Ok(Outcome::Refused);
        }
        print!("{}", reply.shown());
        return Ok(Outcome::Success);
    };
    print!("{}", reply.shown());
    let path = target(file, out)?;
    write_file(&path, file).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "{} exists already; nothing was written (name another file with --out)",
            path.display()
        ),
        _ => anyhow::anyhow!("cannot write {}: {e}", path.display()),
    })?;
    let sandbox = if sandbox { " --sandbox" } else { "" };
    println!(
        "wrote {} {} to {} ({})\nnext: ccpayout check {}{sandbox}\n  then ccpayout submit {}{sandbox}, or move it into an inbox the daemon watches; it is checked, planned and approved like any batch file",
        file.rows.len(),
        if file.rows.len() == 1 { "row" } else { "rows" },
        path.display(),
        file.format,
        path.display(),
        path.display()
    );
    Ok(if refused { Outcome::Refused } else { Outcome::Success })
}

/// Where the file goes: `out`, whose extension must name the batch's format (a parser picks the
/// format by it), or the default name in the current folder.
fn target(file: &RetryFile, out: Option<PathBuf>) -> Result<PathBuf, CliError> {
    let Some(out) = out else {
        return Ok(PathBuf::from(&file.file_name));
    };
    let format = file.format();
    if Format::from_path(&out) != format {
        let ext = format.map_or("csv", Format::extension);
        return Err(anyhow::anyhow!(
            "{} does not name a {} file; the retry file keeps batch {}'s format: use a .{ext} name",
            out.display(),
            file.format,
            file.batch
        )
        .into());
    }
    Ok(out)
}
