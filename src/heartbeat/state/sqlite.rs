//! The heartbeats' memory in its own SQLite file beside the outbox (`heartbeats.db`),
//! synchronous=FULL: a sighting is on disk before the webhook is answered.

use std::path::Path;

use rusqlite::{params, Connection};

use super::{SourceRow, Told, NO_SOURCE};
use crate::outbox::LocalDb;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS heartbeat_sources (
    name           TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    last_seen      INTEGER,
    since          INTEGER NOT NULL,
    missing_since  INTEGER,
    missing_unsent INTEGER,
    resolve_unsent INTEGER,
    PRIMARY KEY (name, source)
) WITHOUT ROWID;
";

/// The file beside the outbox, created when first needed.
pub(super) fn at(dir: &Path) -> LocalDb {
    LocalDb::at(dir.join("heartbeats.db"), SCHEMA, "heartbeat state")
}

pub(super) fn ensure(
    c: &Connection,
    name: &str,
    placeholder: &str,
    now: i64,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR IGNORE INTO heartbeat_sources (name, source, since)
         SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM heartbeat_sources WHERE name = ?1)",
        params![name, placeholder, now],
    )?;
    Ok(())
}

pub(super) fn seen(
    c: &mut Connection,
    name: &str,
    sources: &[String],
    now: i64,
) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    for source in sources {
        tx.execute(
            "INSERT INTO heartbeat_sources (name, source, last_seen, since) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (name, source) DO UPDATE SET
                 last_seen = max(coalesce(last_seen, 0), excluded.last_seen),
                 resolve_unsent = coalesce(missing_since, resolve_unsent),
                 missing_since = NULL",
            params![name, source, now],
        )?;
    }
    // Seen from some source: "not seen from any" is over.
    tx.execute(
        "UPDATE heartbeat_sources SET last_seen = ?3,
             resolve_unsent = coalesce(missing_since, resolve_unsent), missing_since = NULL
         WHERE name = ?1 AND source = ?2 AND last_seen IS NULL",
        params![name, NO_SOURCE, now],
    )?;
    tx.commit()
}

pub(super) fn declare(
    c: &Connection,
    name: &str,
    deadline: i64,
    now: i64,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare(
        "UPDATE heartbeat_sources SET missing_since = ?3, missing_unsent = ?3
         WHERE name = ?1 AND missing_since IS NULL AND coalesce(last_seen, since) < ?2
           AND NOT (source = ?4 AND last_seen IS NOT NULL)
         RETURNING source",
    )?;
    let rows = stmt.query_map(params![name, deadline, now, NO_SOURCE], |r| r.get(0))?;
    rows.collect()
}

pub(super) fn rows(c: &Connection, name: &str) -> rusqlite::Result<Vec<SourceRow>> {
    let mut stmt = c.prepare(
        "SELECT source, last_seen, since, missing_since, missing_unsent, resolve_unsent
         FROM heartbeat_sources WHERE name = ?1 ORDER BY source",
    )?;
    let rows = stmt.query_map([name], |r| {
        Ok(SourceRow {
            source: r.get(0)?,
            last_seen: r.get(1)?,
            since: r.get(2)?,
            missing_since: r.get(3)?,
            missing_unsent: r.get(4)?,
            resolve_unsent: r.get(5)?,
        })
    })?;
    rows.collect()
}

pub(super) fn told(
    c: &Connection,
    name: &str,
    source: &str,
    silence: i64,
    what: Told,
) -> rusqlite::Result<()> {
    let col = what.column();
    c.execute(
        &format!("UPDATE heartbeat_sources SET {col} = NULL WHERE name = ?1 AND source = ?2 AND {col} = ?3"),
        params![name, source, silence],
    )?;
    Ok(())
}

pub(super) fn forget(c: &Connection, name: &str, before: i64) -> rusqlite::Result<u64> {
    let n = c.execute(
        "DELETE FROM heartbeat_sources WHERE name = ?1 AND last_seen IS NOT NULL
           AND missing_unsent IS NULL
           AND ((missing_since IS NOT NULL AND last_seen < ?2)
                OR (source = ?3 AND resolve_unsent IS NULL))",
        params![name, before, NO_SOURCE],
    )?;
    Ok(n as u64)
}
