//! The store's tables. `PRAGMA user_version` carries the schema version, and each
//! notification row its payload format, so a newer binary can read an older store.

use rusqlite::Connection;

/// 2: `cancelled` deliveries (a promotion a resolve called off before its first attempt).
/// 3: no `dedup` table; the dedup index is kept in memory over `notifications.dedup_key`
/// (`outbox::seen`).
pub(crate) const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    id          INTEGER PRIMARY KEY,
    dedup_key   TEXT    NOT NULL,
    received_at INTEGER NOT NULL,           -- ms since the epoch
    format      INTEGER NOT NULL,
    payload     TEXT    NOT NULL        -- TEXT or BLOB, by format (outbox::stored)
);
CREATE INDEX IF NOT EXISTS notifications_received ON notifications (received_at);


-- One row per (notification, channel); the worker moves it
-- pending -> inflight -> delivered | pending (retry) | failed_over | dead, and
-- pending (never attempted) -> cancelled when a resolve calls a held promotion off.
-- AUTOINCREMENT: an id is never reused after pruning, so `webhook-id` stays unique.
CREATE TABLE IF NOT EXISTS deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id INTEGER NOT NULL REFERENCES notifications (id),
    channel         TEXT    NOT NULL,
    group_key       TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,        -- when the notification was accepted
    enqueued_at     INTEGER NOT NULL,        -- start of max_age: reset by fallback and requeue
    updated_at      INTEGER NOT NULL,
    fallback_of     INTEGER,
    last_error      TEXT
);
-- Partial indexes: a delivered row leaves the hot indexes, so they stay small.
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (channel, next_attempt_at, id)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_group ON deliveries (channel, group_key, notification_id)
    WHERE state IN ('pending', 'inflight');
CREATE INDEX IF NOT EXISTS deliveries_done ON deliveries (updated_at)
    WHERE state IN ('delivered', 'failed_over', 'dead', 'cancelled');
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (id) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS deliveries_notification ON deliveries (notification_id);

-- One row, rewritten by the readiness probe to prove the store takes writes.
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);
";

pub(super) fn open(conn: &Connection) -> rusqlite::Result<()> {
    // WAL with synchronous=FULL: a commit is on disk when it returns.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // 8 MiB of page cache (the default is 2 MiB): the hot indexes stay in memory.
    conn.pragma_update(None, "cache_size", -8192)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "store schema version {version} is newer than this binary's {SCHEMA_VERSION}"
        )));
    }
    if version == 1 {
        // Version 2 widened the partial index of finished rows to `cancelled`.
        conn.execute_batch("DROP INDEX IF EXISTS deliveries_done")?;
    }
    if (1..3).contains(&version) {
        // Version 3 keeps the dedup index in memory; every key is in `notifications`.
        conn.execute_batch("DROP TABLE IF EXISTS dedup")?;
    }
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_2_store_drops_its_dedup_table_and_keeps_every_key_in_notifications() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE notifications (id INTEGER PRIMARY KEY, dedup_key TEXT NOT NULL,
                 received_at INTEGER NOT NULL, format INTEGER NOT NULL, payload TEXT NOT NULL);
             CREATE TABLE dedup (key TEXT PRIMARY KEY, first_accepted_at INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO notifications VALUES (1, 'k', 1000, 1, '{}');
             INSERT INTO dedup VALUES ('k', 1000);
             PRAGMA user_version = 2;",
        )
        .unwrap();
        open(&conn).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let dedup_tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'dedup'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(dedup_tables, 0);
        let seen = super::super::seen::Seen::load(&conn, 0).unwrap();
        let key = crate::domain::DedupKey::from_stored("k".into());
        assert_eq!(seen.find(&conn, &key).unwrap(), Some(1000));
    }

    #[test]
    fn a_store_from_a_newer_binary_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let e = open(&conn).unwrap_err().to_string();
        assert!(e.contains("newer than this binary"), "{e}");
    }
}
