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
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io(path.display().to_string(), e))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let holder = if holder.is_empty() { "unknown" } else { holder };
        return Err(StoreError::Refused(format!(
            "the SQLite store under {} is in use by another amrelay (pid {holder}); one server per SQLite store: for several instances, use [storage] backend = \"postgres\"",
            dir.display()
        )));
    }
    let write = |f: &mut File| -> std::io::Result<()> {
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "{}", std::process::id())
    };
    write(&mut file).map_err(|e| StoreError::io(path.display().to_string(), e))?;
    Ok(StoreLock { _held: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_may_take_it_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = take(dir.path()).unwrap();
        // flock locks belong to the open file, so a second open in this process is
        // refused just as another process would be.
        let e = take(dir.path()).err().unwrap().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        drop(first);
        assert!(take(dir.path()).is_ok());
    }
}
