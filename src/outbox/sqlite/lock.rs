//! One server per SQLite store: a second `amrelay serve` on the same `storage.path`
//! would claim and deliver the same rows. The lock is `flock(2)` on a file beside the
//! store, held as long as the process lives (the kernel drops it when the process dies,
//! however it dies); the file names the holder's pid for the refusal message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::outbox::StoreError;

const LOCK_FILE: &str = "amrelay.lock";

/// Held for as long as the server has the store.
pub(super) struct StoreLock {
    _held: File,
}

pub(super) fn take(dir: &Path) -> Result<StoreLock, StoreError> {
    // An earlier server in this same process (a restart in place, as the tests do) may
    // still be letting go of its last handles: wait for it a moment. A holder with
    // another pid is refused at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match try_take(dir) {
            Err(Held(pid)) if pid == std::process::id() && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(Held(pid)) => {
                return Err(StoreError::Refused(format!(
                    "the SQLite store under {} is in use by another amrelay (pid {pid}); one server per SQLite store: for several instances, use [storage] backend = \"postgres\"",
                    dir.display()
                )))
            }
            Ok(r) => return r,
        }
    }
}

/// The lock is held by the process with this pid (0 when the file does not say).
struct Held(u32);

fn try_take(dir: &Path) -> Result<Result<StoreLock, StoreError>, Held> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) => return Ok(Err(StoreError::io(path.display().to_string(), e))),
    };
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(Held(holder.trim().parse().unwrap_or(0)));
    }
    let write = |f: &mut File| -> std::io::Result<()> {
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "{}", std::process::id())
    };
    Ok(write(&mut file)
        .map(|()| StoreLock { _held: file })
        .map_err(|e| StoreError::io(path.display().to_string(), e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_may_take_it_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = take(dir.path()).unwrap();
        // flock locks belong to the open file, so a second open in this process is
        // refused just as another process's would be.
        assert!(matches!(try_take(dir.path()), Err(Held(pid)) if pid == std::process::id()));
        drop(first);
        assert!(take(dir.path()).is_ok());
    }
}
