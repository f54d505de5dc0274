//! One writer per trail directory: an exclusive lock on its lock file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use super::private::open_private;
use super::sink::LOCK_FILE;

/// Takes the directory's writer lock: an exclusive lock on its `audit.lock` file, which
/// the kernel releases when the file is closed, so a process that crashed leaves nothing
/// to clean up. A second writer, in this process or another, would fork the chain (or, with
/// preallocation, write over the first one's lines), so it is refused with
/// [`io::ErrorKind::ResourceBusy`]. Where the platform has no file locks
/// ([`io::ErrorKind::Unsupported`]), the sink opens without the lock and warns; any other
/// failure to lock (a network filesystem refusing locks) is an error, found at start-up
/// rather than guessed around.
///
/// The lock belongs to the open file: a child process that another thread of this process
/// is starting shares it from its fork until its exec closes it, and for that instant the
/// lock outlives the sink that took it. So a lock held by this very process is waited for,
/// up to [`OWN_LOCK_WAIT`], before it is refused: a restart in the process that shut the
/// trail down is not refused because a child was being started at the time.
pub(super) fn lock_dir(dir: &Path) -> io::Result<Option<File>> {
    let path = dir.join(LOCK_FILE);
    let mut file = open_private(&path, false)?;
    let waiting_since = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the error the next writer gets.
                file.set_len(0)?;
                writeln!(file, "{}", std::process::id())?;
                return Ok(Some(file));
            }
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let holder_is_us = holder == std::process::id().to_string();
                if holder_is_us && waiting_since.elapsed() < OWN_LOCK_WAIT {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let holder = match holder {
                    pid if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => {
                        format!(" (by process {pid})")
                    }
                    _ => String::new(),
                };
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "{} is held{holder}: another sink is writing this trail directory, and \
                         two writers would fork its chain; give each process a directory of \
                         its own",
                        path.display()
                    ),
                ));
            }
            Err(fs::TryLockError::Error(error)) if error.kind() == io::ErrorKind::Unsupported => {
                tracing::warn!(target: "audit", dir = %dir.display(), %error, "cannot lock the trail directory on this filesystem: make sure one process only writes it");
                return Ok(None);
            }
            Err(fs::TryLockError::Error(error)) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!(
                        "cannot lock the trail directory's {}: {error}",
                        path.display()
                    ),
                ));
            }
        }
    }
}

/// How long a lock held by this process itself is waited for (see [`lock_dir`]): far
/// longer than a child process takes from its fork to its exec.
const OWN_LOCK_WAIT: Duration = Duration::from_millis(250);
