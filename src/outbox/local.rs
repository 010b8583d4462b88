//! A feature's own SQLite file beside the outbox (the failover caller's
//! `promotion-caller.db`, the heartbeats' `heartbeats.db`): opened when first needed,
//! WAL with synchronous=FULL (a decision is on disk before anything acts on it), its
//! schema created at open, every call off the async threads. With the PostgreSQL
//! backend those features keep their tables in the shared database instead.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

#[derive(Clone)]
pub(crate) struct LocalDb(Arc<Inner>);

struct Inner {
    path: PathBuf,
    /// `CREATE TABLE IF NOT EXISTS ...`, run at every open.
    schema: &'static str,
    /// What errors are prefixed with ("promotion state").
    what: &'static str,
    conn: Mutex<Option<Connection>>,
}

impl LocalDb {
    /// Where the file lives; `open_now` or the first `with` opens it.
    pub(crate) fn at(path: PathBuf, schema: &'static str, what: &'static str) -> Self {
        LocalDb(Arc::new(Inner {
            path,
            schema,
            what,
            conn: Mutex::new(None),
        }))
    }

    /// Opens (or creates) the file now, so that start-up fails on one it cannot use.
    pub(crate) fn open_now(&self) -> Result<(), String> {
        let mut conn = self.0.conn.lock().unwrap_or_else(|e| e.into_inner());
        open_into(&self.0, &mut conn).map(|_| ())
    }

    /// Runs `f` on the connection off the async threads.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let inner = self.0.clone();
        let what = inner.what;
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(|e| e.into_inner());
            let c = open_into(&inner, &mut conn)?;
            f(c).map_err(|e| format!("{}: {e}", inner.what))
        })
        .await
        .map_err(|e| format!("{what}: {e}"))?
    }
}

/// The connection in `slot`, opened into it first if it is not there yet.
fn open_into<'c>(
    db: &Inner,
    slot: &'c mut Option<Connection>,
) -> Result<&'c mut Connection, String> {
    let conn = match slot.take() {
        Some(c) => c,
        None => open(&db.path, db.schema)?,
    };
    Ok(slot.insert(conn))
}

fn open(path: &Path, schema: &str) -> Result<Connection, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let init = || -> rusqlite::Result<()> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(schema)
    };
    init().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(conn)
}
