//! WAL checkpoints on a thread and connection of their own.
//!
//! SQLite's automatic checkpoint runs inside the commit that grows the WAL past its
//! threshold: the writer copies a thousand pages into the database file and fsyncs it
//! while every webhook waiting for an ack waits with it. Here the writer only notes how
//! long the WAL has grown (a WAL hook, which also turns the automatic checkpoint off) and
//! wakes the checkpointer, whose `PASSIVE` checkpoints never block the writer. The
//! checkpointer catches up between commits and the writer then starts the WAL again from
//! its beginning, as before. If the checkpointer falls far behind (or died), the writer
//! runs the same `PASSIVE` checkpoint itself, as SQLite's automatic one would; like that
//! one, it cannot copy pages an open reader still needs.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread;

use rusqlite::hooks::Wal;
use rusqlite::Connection;

use crate::outbox::StoreError;

/// WAL pages after which the checkpointer is woken (SQLite's own default threshold).
const WAKE_AT: c_int = 1000;
/// WAL pages (64 MiB) after which the writer stops waiting for the checkpointer.
const WRITER_AT: c_int = 16 * 1024;

thread_local! {
    /// Pages in the WAL after the last commit on this thread. Per thread, not per
    /// connection: only the writer's connection has the hook, and only the writer
    /// thread commits on it.
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

/// Installed on the writer's connection; runs on the writer thread after each commit.
fn note_pages(_: &mut Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

/// What the writer does after a commit.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum After {
    Nothing,
    /// The checkpointer is behind: checkpoint on the writer's own connection.
    CheckpointHere,
}

/// The writer's side: a wake-up that never blocks.
pub(super) struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Starts the thread and hooks `conn` (the writer's connection) to it.
    pub(super) fn start(conn: &mut Connection) -> Result<Checkpointer, StoreError> {
        let (wake, rx) = mpsc::sync_channel(1);
        let db = PathBuf::from(conn.path().unwrap_or_default());
        // Open here, not on the thread, so that a store we cannot open fails start-up.
        let own = open(&db)?;
        thread::Builder::new()
            .name("amrelay-checkpoint".into())
            .spawn(move || run(own, &db, rx))
            .map_err(|e| StoreError::io("starting the WAL checkpointer thread", e))?;
        conn.wal_hook(Some(note_pages))?;
        Ok(Checkpointer { wake })
    }

    /// Called by the writer after each commit.
    pub(super) fn after_commit(&self) -> After {
        let pages = WAL_PAGES.with(Cell::get);
        if pages >= WRITER_AT {
            // Asked once per crossing, not again after every batch until a commit
            // reports the WAL started over.
            WAL_PAGES.with(|p| p.set(0));
            return After::CheckpointHere;
        }
        if pages >= WAKE_AT {
            // Full means a wake-up is already pending; Disconnected means the thread
            // died (logged there), and the writer's own checkpoint takes over.
            if let Err(TrySendError::Disconnected(_)) = self.wake.try_send(()) {
                return After::CheckpointHere;
            }
        }
        After::Nothing
    }
}

fn open(db: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // The checkpoint fsyncs the database file before the WAL may be reused.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

fn run(conn: Connection, db: &Path, wake: Receiver<()>) {
    while wake.recv().is_ok() {
        if let Err(e) = checkpoint(&conn) {
            tracing::error!(error = %e, store = %db.display(), "WAL checkpoint failed; the writer checkpoints instead");
            return;
        }
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: copies what it can without waiting for anyone.
pub(super) fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn pages() -> c_int {
        WAL_PAGES.with(Cell::get)
    }

    #[test]
    fn the_checkpointer_lets_the_wal_start_over_while_commits_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn.execute_batch("CREATE TABLE t (b BLOB)").unwrap();
        let checkpointer = Checkpointer::start(&mut conn).unwrap();
        let blob = vec![7u8; 64 * 1024];
        // The hook replaced SQLite's own checkpoint: the WAL grows past its threshold.
        let mut last = 0;
        while pages() < WAKE_AT {
            conn.execute("INSERT INTO t (b) VALUES (?1)", [&blob])
                .unwrap();
            assert!(pages() > last, "the commit checkpointed by itself");
            last = pages();
            assert_eq!(checkpointer.after_commit(), After::Nothing);
        }
        // Commits go on, spaced like traffic; once the checkpointer has copied the WAL
        // back, the next commit writes it again from its beginning.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            conn.execute("INSERT INTO t (b) VALUES (x'00')", [])
                .unwrap();
            if pages() < last {
                break;
            }
            last = pages();
            assert_eq!(checkpointer.after_commit(), After::Nothing);
            assert!(
                Instant::now() < deadline,
                "the WAL never started over: {last} pages"
            );
            thread::sleep(Duration::from_millis(2));
        }
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert!(rows > 60);
    }

    #[test]
    fn the_writer_checkpoints_itself_when_the_checkpointer_is_far_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        let checkpointer = Checkpointer::start(&mut conn).unwrap();
        WAL_PAGES.with(|p| p.set(WRITER_AT - 1));
        assert_eq!(checkpointer.after_commit(), After::Nothing);
        WAL_PAGES.with(|p| p.set(WRITER_AT));
        assert_eq!(checkpointer.after_commit(), After::CheckpointHere);
    }
}
