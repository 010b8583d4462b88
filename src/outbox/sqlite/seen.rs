//! Which dedup keys the outbox accepted lately: an index in memory over
//! `notifications.dedup_key`, rebuilt from those rows at start.
//!
//! A table keyed by the dedup hash cost a random B-tree page per webhook, written to the
//! WAL and again at each checkpoint: the largest single cost of the writer at a few
//! thousand webhooks/s. The key is stored once, with its notification; here each key
//! maps from a 64-bit digest to that notification's row. A hit is confirmed against the
//! row's full key and time, so a clash of digests never drops a notification (at worst
//! the older key's entry is replaced, and a later repeat of it is delivered again).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use rusqlite::{Connection, OptionalExtension};

use crate::domain::DedupKey;

/// The map is `digest -> notification id`; entries the current transaction added wait
/// in `staged` until it commits.
#[derive(Default)]
pub(super) struct Seen {
    committed: HashMap<u64, i64>,
    staged: Vec<(u64, i64)>,
}

impl Seen {
    /// Every key accepted at or after `since` (ms since the epoch).
    pub(super) fn load(conn: &Connection, since: i64) -> rusqlite::Result<Seen> {
        let mut seen = Seen::default();
        let mut stmt = conn.prepare(
            "SELECT id, dedup_key FROM notifications WHERE received_at >= ?1 ORDER BY id",
        )?;
        let mut rows = stmt.query([since])?;
        while let Some(r) = rows.next()? {
            // Ascending ids: a key accepted again after its window ends up at its newest row.
            seen.committed
                .insert(digest(r.get_ref(1)?.as_str()?), r.get(0)?);
        }
        Ok(seen)
    }

    /// When the notification last accepted with `key` was received (ms since the epoch),
    /// read back from its row (`conn` sees this transaction's own rows).
    pub(super) fn find(&self, conn: &Connection, key: &DedupKey) -> rusqlite::Result<Option<i64>> {
        let d = digest(key.as_str());
        let id = self
            .staged
            .iter()
            .rev()
            .find(|(k, _)| *k == d)
            .map(|(_, id)| *id)
            .or_else(|| self.committed.get(&d).copied());
        let Some(id) = id else {
            return Ok(None);
        };
        let row: Option<(String, i64)> = conn
            .prepare_cached("SELECT dedup_key, received_at FROM notifications WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(row
            .filter(|(k, _)| k == key.as_str())
            .map(|(_, accepted_at)| accepted_at))
    }

    /// Records a notification stored in the transaction under way.
    pub(super) fn stage(&mut self, key: &DedupKey, notification_id: i64) {
        self.staged.push((digest(key.as_str()), notification_id));
    }

    /// The transaction committed.
    pub(super) fn commit(&mut self) {
        self.committed.extend(self.staged.drain(..));
    }

    /// The transaction rolled back.
    pub(super) fn rollback(&mut self) {
        self.staged.clear();
    }

    /// Drops entries of notifications older than the first kept (ids grow with time).
    pub(super) fn forget_before(&mut self, first_kept_id: i64) {
        self.committed.retain(|_, id| *id >= first_kept_id);
        // Give memory back after a burst, not on every prune.
        if self.committed.len() < self.committed.capacity() / 4 {
            self.committed.shrink_to_fit();
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.committed.len()
    }
}

/// 8 bytes stand for the 64-character key in the map. Any hash does: the map is rebuilt
/// at every start, and a hit is confirmed against the stored key.
fn digest(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        super::super::schema::open(&conn).unwrap();
        conn
    }

    fn insert(conn: &Connection, key: &str, at: i64) -> i64 {
        conn.execute(
            "INSERT INTO notifications (dedup_key, received_at, format, payload) VALUES (?1, ?2, 1, '{}')",
            rusqlite::params![key, at],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    fn key(s: &str) -> DedupKey {
        DedupKey::from_stored(s.to_owned())
    }

    #[test]
    fn a_staged_key_is_found_until_rolled_back_and_kept_once_committed() {
        let conn = store();
        let mut seen = Seen::default();
        let id = insert(&conn, "k1", 1_000);
        seen.stage(&key("k1"), id);
        assert_eq!(seen.find(&conn, &key("k1")).unwrap().unwrap(), 1_000);
        seen.rollback();
        assert!(seen.find(&conn, &key("k1")).unwrap().is_none());
        seen.stage(&key("k1"), id);
        seen.commit();
        assert!(seen.find(&conn, &key("k1")).unwrap().is_some());
        assert!(seen.find(&conn, &key("k2")).unwrap().is_none());
    }

    #[test]
    fn load_keeps_each_keys_newest_row_from_the_given_time_on() {
        let conn = store();
        insert(&conn, "old", 100);
        insert(&conn, "k", 1_000);
        insert(&conn, "k", 5_000);
        let seen = Seen::load(&conn, 500).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen.find(&conn, &key("k")).unwrap().unwrap(), 5_000);
        assert!(seen.find(&conn, &key("old")).unwrap().is_none());
    }

    #[test]
    fn a_digest_that_points_at_another_keys_row_is_not_a_hit() {
        let conn = store();
        let mut seen = Seen::default();
        let id = insert(&conn, "other", 1_000);
        // As if "k" and "other" had the same digest.
        seen.committed.insert(digest("k"), id);
        assert!(seen.find(&conn, &key("k")).unwrap().is_none());
    }

    #[test]
    fn forget_before_drops_older_rows_only() {
        let conn = store();
        let mut seen = Seen::default();
        let a = insert(&conn, "a", 1);
        let b = insert(&conn, "b", 2);
        seen.stage(&key("a"), a);
        seen.stage(&key("b"), b);
        seen.commit();
        seen.forget_before(b);
        assert!(seen.find(&conn, &key("a")).unwrap().is_none());
        assert!(seen.find(&conn, &key("b")).unwrap().is_some());
    }
}
