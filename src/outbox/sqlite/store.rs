//! The outbox's SQL: every state change of a delivery, run inside a caller's transaction.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OpenFlags, Row, Transaction};

use super::checkpoint::{self, Checkpointer};
use super::request::{Completed, Request};
use super::schema;
use super::seen::Seen;
use crate::domain::dedup;
use crate::domain::time::now_ms;
use crate::outbox::stored;
use crate::outbox::types::*;
use crate::outbox::Access;

/// The store's file under `storage.path`.
const DB_FILE: &str = "amrelay.db";

pub(super) struct Store {
    conn: Connection,
    durability: Durability,
    /// The dedup keys of the current window, indexed in memory.
    seen: Seen,
}

/// How far a commit goes before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// `synchronous = FULL`: on disk, survives a power loss.
    Fsync,
    /// `synchronous = NORMAL` in WAL mode: survives a crash of amrelay, not of the OS.
    CrashSafe,
}

impl Store {
    /// Opens the store and indexes the dedup keys accepted within the window. Only the
    /// server creates a store; a command refuses one that is not there.
    pub(super) fn open(dir: &Path, limits: &Limits, access: Access) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        let conn = match access {
            Access::Serve => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::io(dir.display().to_string(), e))?;
                Connection::open(&path)?
            }
            Access::Tool if !path.is_file() => {
                return Err(StoreError::Refused(format!(
                "no store at {} (storage.path): has `amrelay serve` run with this configuration?",
                path.display()
            )))
            }
            Access::Tool => Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)?,
        };
        schema::open(&conn)?;
        let since = now_ms() - limits.dedup_window.as_millis() as i64;
        let seen = Seen::load(&conn, since)?;
        Ok(Store {
            conn,
            durability: Durability::Fsync,
            seen,
        })
    }

    /// A read-only connection to the store in `dir`, for queries that must not hold up
    /// the writer (WAL readers and the writer do not block each other).
    pub(super) fn open_reader(dir: &Path) -> Result<Connection, StoreError> {
        let conn = Connection::open(dir.join(DB_FILE))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(conn)
    }

    /// Hands this connection's WAL checkpoints to a thread of their own.
    pub(super) fn checkpoint_elsewhere(&mut self) -> Result<Checkpointer, StoreError> {
        Checkpointer::start(&mut self.conn)
    }

    /// A checkpoint on this connection, for when the checkpointer is behind.
    pub(super) fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(checkpoint::checkpoint(&self.conn)?)
    }

    pub(super) fn set_durability(&mut self, d: Durability) -> Result<(), StoreError> {
        if d != self.durability {
            let level = match d {
                Durability::Fsync => "FULL",
                Durability::CrashSafe => "NORMAL",
            };
            self.conn.pragma_update(None, "synchronous", level)?;
            self.durability = d;
        }
        Ok(())
    }

    /// Runs requests in one transaction, in order, each holding its answer. Err means
    /// nothing was committed: the answers, the dedup index and `open` (the count of
    /// undelivered rows) are left as they were.
    pub(super) fn transact(
        &mut self,
        reqs: &mut [Request],
        limits: &Limits,
        now: i64,
        open: &mut u64,
    ) -> Result<(), StoreError> {
        let mut scratch = *open;
        let Store { conn, seen, .. } = self;
        let result = (|| {
            let tx = conn.transaction()?;
            for req in reqs.iter_mut() {
                exec(&tx, req, limits, now, &mut scratch, seen)?;
            }
            tx.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                seen.commit();
                *open = scratch;
                Ok(())
            }
            Err(e) => {
                seen.rollback();
                reqs.iter_mut().for_each(Request::forget);
                Err(e)
            }
        }
    }

    /// After a crash or stop nothing is in flight: those attempts' outcomes are unknown,
    /// so they are tried again (the only source of duplicates).
    pub(super) fn recover_inflight(&mut self) -> Result<usize, StoreError> {
        recover_inflight(&self.conn)
    }

    pub(super) fn count_open(&self) -> Result<u64, StoreError> {
        count_open(&self.conn)
    }
}

fn recover_inflight(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE deliveries SET state = 'pending', last_error = 'interrupted: amrelay stopped while the delivery was sending or ready to send' WHERE state = 'inflight'",
        [],
    )?)
}

fn count_open(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'inflight')",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// Executes one request, holding its answer in it. `open` is the count of undelivered
/// rows, updated as rows open and close, so that `max_pending` holds within a batch.
fn exec(
    tx: &Transaction,
    req: &mut Request,
    limits: &Limits,
    now: i64,
    open: &mut u64,
    seen: &mut Seen,
) -> Result<(), StoreError> {
    match req {
        Request::Enqueue(new, reply) => reply.hold(enqueue(tx, new, limits, now, open, seen)?),
        Request::Claim {
            channel,
            limit,
            reply,
        } => reply.hold(claim(tx, channel, *limit, now)?),
        Request::Complete {
            id,
            completion,
            reply,
        } => {
            let wakes = complete(tx, *id, completion, now, open)?;
            reply.hold(Completed { wakes });
        }
        Request::CountOpen(reply) => {
            *open = count_open(tx)?;
            reply.hold(*open as usize);
        }
        Request::Probe(reply) => {
            tx.execute(
                "INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?1)",
                [now],
            )?;
            reply.hold(());
        }
        Request::DeadLetters { limit, reply } => reply.hold(dead_letters(tx, *limit)?),
        Request::Requeue(which, reply) => {
            let done = requeue(tx, which, now)?;
            *open += done.count as u64;
            reply.hold(done);
        }
        Request::Prune(reply) => reply.hold(prune(tx, limits, now, seen)?),
        Request::RecoverInflight(reply) => reply.hold(recover_inflight(tx)?),
    }
    Ok(())
}

fn enqueue(
    tx: &Transaction,
    new: &NewNotification,
    limits: &Limits,
    now: i64,
    open: &mut u64,
    seen: &mut Seen,
) -> Result<Enqueued, StoreError> {
    let first = seen.find(tx, &new.key)?;
    if dedup::is_duplicate(first, now, limits.dedup_window) {
        return Ok(Enqueued::Duplicate);
    }
    // A resolve calls off its group's held promotions first, even when the outbox is too
    // full to take the resolve itself: Alertmanager retries the resolve, but a held
    // promotion must not fall due against a primary that is back.
    let mut cancel = tx.prepare_cached(
        "UPDATE deliveries SET state = 'cancelled', last_error = 'cancelled: resolved before its first attempt', updated_at = ?3
         WHERE channel = ?1 AND group_key = ?2 AND state = 'pending' AND attempts = 0",
    )?;
    for (i, channel) in new.channels.iter().enumerate() {
        if new.holds.get(i).is_some_and(|h| h.cancel_unstarted) {
            let cancelled = cancel.execute(params![channel, new.group_key, now])?;
            *open = open.saturating_sub(cancelled as u64);
        }
    }
    let n = new.channels.len() as u64;
    if *open + n > limits.max_pending {
        return Ok(Enqueued::Full {
            pending: *open,
            max: limits.max_pending,
        });
    }
    tx.prepare_cached(
        "INSERT INTO notifications (dedup_key, received_at, format, payload) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![new.key.as_str(), new.received_at, stored::FORMAT, &new.payload[..]])?;
    let notification_id = tx.last_insert_rowid();
    seen.stage(&new.key, notification_id);
    let mut insert = tx.prepare_cached(
        "INSERT INTO deliveries (notification_id, channel, group_key, state, attempts, next_attempt_at, created_at, enqueued_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?8, ?7, ?6, ?6)",
    )?;
    let mut group_open = tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE channel = ?1 AND group_key = ?2 AND state IN ('pending', 'inflight'))",
    )?;
    let mut deliveries = Vec::with_capacity(new.channels.len());
    for (i, channel) in new.channels.iter().enumerate() {
        let hold = new.holds.get(i).copied().unwrap_or_default();
        // A hand-off may not overtake an earlier delivery of its group (order within a group).
        let handed_off = new.fast.get(i).copied().flatten().is_some()
            && hold.not_before <= now
            && !group_open.query_row(params![channel, new.group_key], |r| r.get::<_, bool>(0))?;
        let (state, attempts) = if handed_off {
            ("inflight", 1)
        } else {
            ("pending", 0)
        };
        insert.execute(params![
            notification_id,
            channel,
            new.group_key,
            state,
            attempts,
            now,
            new.received_at,
            hold.not_before.max(now)
        ])?;
        deliveries.push(Stored {
            id: tx.last_insert_rowid(),
            handed_off,
        });
    }
    *open += n;
    Ok(Enqueued::Accepted {
        deliveries,
        enqueued_at: now,
    })
}

/// Claims up to `limit` due deliveries of one channel, oldest first, never one whose
/// group has an open delivery of an earlier notification on this channel (a resolve
/// waits for its firing, also when the firing arrives later as a fallback).
fn claim(tx: &Transaction, channel: &str, limit: usize, now: i64) -> Result<Claim, StoreError> {
    let ids: Vec<i64> = tx
        .prepare_cached(
            "SELECT d.id FROM deliveries d
             WHERE d.channel = ?1 AND d.state = 'pending' AND d.next_attempt_at <= ?2
               AND NOT EXISTS (
                 SELECT 1 FROM deliveries e
                 WHERE e.channel = ?1 AND e.group_key = d.group_key
                   AND e.state IN ('pending', 'inflight') AND e.notification_id < d.notification_id)
             ORDER BY d.next_attempt_at, d.id
             LIMIT ?3",
        )?
        .query_map(params![channel, now, limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut mark = tx.prepare_cached(
        "UPDATE deliveries SET state = 'inflight', attempts = attempts + 1, updated_at = ?2 WHERE id = ?1",
    )?;
    let mut load = tx.prepare_cached(
        "SELECT d.attempts, d.created_at, d.enqueued_at, n.format, n.payload
         FROM deliveries d JOIN notifications n ON n.id = d.notification_id WHERE d.id = ?1",
    )?;
    let mut deliveries = Vec::with_capacity(ids.len());
    for id in ids {
        mark.execute(params![id, now])?;
        deliveries.push(load.query_row([id], |r| {
            Ok(Claimed {
                id,
                epoch: 0,
                attempts: r.get(0)?,
                created_at: r.get(1)?,
                enqueued_at: r.get(2)?,
                format: r.get(3)?,
                payload: bytes_of(r, 4)?,
            })
        })?);
    }
    // Fewer than asked for means every claimable row was taken: the worker waits for a
    // wake-up or for the next row to fall due. A full claim may have left more.
    let next_due_at = if deliveries.len() < limit {
        tx.prepare_cached(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE channel = ?1 AND state = 'pending'",
        )?
        .query_row([channel], |r| r.get(0))?
    } else {
        Some(now)
    };
    Ok(Claim {
        deliveries,
        next_due_at,
    })
}

/// Records an attempt's outcome. True when the change may give a worker something to
/// claim: a row back to pending or a new one (retry, release, fallback), or a finished
/// row that held up a later delivery of its group on its channel.
fn complete(
    tx: &Transaction,
    id: i64,
    completion: &Completion,
    now: i64,
    open: &mut u64,
) -> Result<bool, StoreError> {
    let changed = match completion {
        Completion::Delivered => tx
            .prepare_cached(
                "UPDATE deliveries SET state = 'delivered', last_error = NULL, updated_at = ?2 WHERE id = ?1 AND state = 'inflight'",
            )?
            .execute(params![id, now])?,
        Completion::RetryAt { at, error } => tx
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?2, last_error = ?3, updated_at = ?4 WHERE id = ?1 AND state = 'inflight'",
            )?
            .execute(params![id, at, error, now])?,
        Completion::FailOver { to, error } => {
            let changed = tx.execute(
                "UPDATE deliveries SET state = 'failed_over', last_error = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'inflight'",
                params![id, error, now],
            )?;
            if changed == 1 {
                tx.execute(
                    "INSERT INTO deliveries (notification_id, channel, group_key, state, next_attempt_at, created_at, enqueued_at, updated_at, fallback_of)
                     SELECT notification_id, ?2, group_key, 'pending', ?3, created_at, ?3, ?3, id FROM deliveries WHERE id = ?1",
                    params![id, to, now],
                )?;
                *open += 1;
            }
            changed
        }
        Completion::Release => tx.execute(
            "UPDATE deliveries SET state = 'pending', attempts = MAX(attempts - 1, 0), updated_at = ?2 WHERE id = ?1 AND state = 'inflight'",
            params![id, now],
        )?,
        Completion::Dead { error } => tx.execute(
            "UPDATE deliveries SET state = 'dead', last_error = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'inflight'",
            params![id, error, now],
        )?,
    };
    if changed != 1 {
        return Ok(false);
    }
    if matches!(completion, Completion::RetryAt { .. } | Completion::Release) {
        return Ok(true);
    }
    *open = open.saturating_sub(1);
    if matches!(completion, Completion::FailOver { .. }) {
        return Ok(true);
    }
    Ok(tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM deliveries d JOIN deliveries e
                 ON e.channel = d.channel AND e.group_key = d.group_key
                 AND e.state IN ('pending', 'inflight')
             WHERE d.id = ?1)",
        )?
        .query_row([id], |r| r.get(0))?)
}

/// The queue's figures. A scan of every undelivered row, so it runs on a reader
/// connection (`Store::open_reader`), never in the writer's transactions.
/// Each delivery's state (`pending`, `inflight`, `delivered`, ...), of those that exist.
pub(super) fn delivery_states(
    c: &Connection,
    ids: &[i64],
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut stmt = c.prepare_cached("SELECT id, state FROM deliveries WHERE id = ?1")?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if let Some(row) = rows.next() {
            out.push(row?);
        }
    }
    Ok(out)
}

pub(super) fn stats(tx: &Connection) -> Result<Stats, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT channel, COUNT(*), MIN(created_at) FROM deliveries
         WHERE state IN ('pending', 'inflight') GROUP BY channel",
    )?;
    let channels = stmt
        .query_map([], |r| {
            Ok(ChannelStats {
                channel: r.get(0)?,
                open: r.get::<_, i64>(1)? as u64,
                oldest_created_at: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let dead: i64 = tx.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE state = 'dead'",
        [],
        |r| r.get(0),
    )?;
    Ok(Stats {
        channels,
        dead: dead as u64,
        owners: Vec::new(),
    })
}

fn dead_letters(tx: &Transaction, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT d.id, d.channel, d.attempts, d.created_at, d.updated_at, COALESCE(d.last_error, ''), n.format, n.payload
         FROM deliveries d JOIN notifications n ON n.id = d.notification_id
         WHERE d.state = 'dead' ORDER BY d.id LIMIT ?1",
    )?;
    let rows = stmt
        .query_map([limit as i64], |r| {
            Ok(DeadLetter {
                id: r.get(0)?,
                channel: r.get(1)?,
                attempts: r.get(2)?,
                created_at: r.get(3)?,
                died_at: r.get(4)?,
                last_error: r.get(5)?,
                format: r.get(6)?,
                payload: bytes_of(r, 7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn requeue(tx: &Transaction, which: &Requeue, now: i64) -> Result<Requeued, StoreError> {
    let sql = "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?1, enqueued_at = ?1, updated_at = ?1
               WHERE state = 'dead'";
    Ok(match which {
        Requeue::All => Requeued {
            count: tx.execute(sql, [now])?,
            not_dead: Vec::new(),
        },
        Requeue::Ids(ids) => {
            let mut stmt = tx.prepare_cached(&format!("{sql} AND id = ?2"))?;
            let mut done = Requeued::default();
            for id in ids {
                match stmt.execute(params![now, id])? {
                    0 => done.not_dead.push(*id),
                    n => done.count += n,
                }
            }
            done
        }
    })
}

/// Deletes finished deliveries older than the retention, dedup keys past the window, and
/// notifications nothing refers to any more.
fn prune(
    tx: &Transaction,
    limits: &Limits,
    now: i64,
    seen: &mut Seen,
) -> Result<usize, StoreError> {
    let keep_done = now - limits.retention.as_millis() as i64;
    let keep_keys = now - limits.dedup_window.as_millis() as i64;
    let mut n = tx.execute(
        "DELETE FROM deliveries WHERE state IN ('delivered', 'failed_over', 'dead', 'cancelled') AND updated_at < ?1",
        [keep_done],
    )?;
    let first_kept: Option<i64> = tx.query_row(
        "SELECT MIN(id) FROM notifications WHERE received_at >= ?1",
        [keep_keys],
        |r| r.get(0),
    )?;
    seen.forget_before(first_kept.unwrap_or(i64::MAX));
    n += tx.execute(
        "DELETE FROM notifications WHERE received_at < ?1
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = notifications.id)",
        [keep_keys.min(keep_done)],
    )?;
    Ok(n)
}

/// A stored payload: TEXT in format 1, BLOB in format 2.
fn bytes_of(r: &Row, i: usize) -> rusqlite::Result<Vec<u8>> {
    match r.get_ref(i)? {
        ValueRef::Text(b) | ValueRef::Blob(b) => Ok(b.to_vec()),
        other => Err(rusqlite::Error::InvalidColumnType(
            i,
            "payload".into(),
            other.data_type(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire;
    use crate::domain::DedupKey;

    /// One request in its own transaction, as the writer runs a batch of one.
    fn run<T>(
        store: &mut Store,
        make: impl FnOnce(super::super::request::Responder<T>) -> Request,
    ) -> T {
        let (reply, mut rx) = super::super::request::Responder::new();
        let mut reqs = [make(reply)];
        let mut open = store.count_open().unwrap();
        store
            .transact(&mut reqs, &limits(), now_ms(), &mut open)
            .unwrap();
        let [req] = reqs;
        req.answer(None);
        rx.try_recv().unwrap().unwrap()
    }

    fn limits() -> Limits {
        Limits {
            max_pending: 100,
            dedup_window: Duration::from_secs(600),
            retention: Duration::from_secs(3600),
        }
    }

    #[test]
    fn new_rows_are_stored_compressed_and_rows_of_an_earlier_version_still_deliver() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), &limits(), Access::Serve).unwrap();
        // A row as an earlier version wrote it: format 1, the body as TEXT.
        let old = wire::fixture_bytes("primary-down-firing");
        store
            .conn
            .execute(
                "INSERT INTO notifications (id, dedup_key, received_at, format, payload) VALUES (1, 'old', 1, 1, ?1)",
                [std::str::from_utf8(&old).unwrap()],
            )
            .unwrap();
        store
            .conn
            .execute(
                "INSERT INTO deliveries (notification_id, channel, group_key, state, next_attempt_at, created_at, enqueued_at, updated_at)
                 VALUES (1, 'c', 'g-old', 'pending', 1, 1, 1, 1)",
                [],
            )
            .unwrap();
        let body = wire::fixture_bytes("group-firing-3-alerts");
        let n = wire::parse(&body).unwrap();
        let new = NewNotification {
            key: DedupKey::of(&n),
            group_key: n.group_key.clone(),
            received_at: now_ms(),
            payload: stored::encode(&body).unwrap(),
            channels: vec!["c".into()],
            fast: vec![None],
            holds: vec![Hold::default()],
        };
        let Enqueued::Accepted { .. } = run(&mut store, |r| Request::Enqueue(new, r)) else {
            panic!("not accepted");
        };
        let (kind, len): (String, usize) = store
            .conn
            .query_row(
                "SELECT typeof(payload), length(payload) FROM notifications WHERE id = 2",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(kind, "blob");
        assert!(
            len * 2 < body.len(),
            "{len} bytes for a {}-byte body",
            body.len()
        );

        let c = run(&mut store, |reply| Request::Claim {
            channel: "c".into(),
            limit: 10,
            reply,
        });
        let read: Vec<_> = c
            .deliveries
            .iter()
            .map(|d| stored::parse(d.format, &d.payload).unwrap())
            .collect();
        assert_eq!(read, vec![wire::parse(&old).unwrap(), n]);
    }
}
