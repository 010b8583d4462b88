//! The shared store's SQL: the SQLite store's statements (`outbox/sqlite/store.rs`)
//! made safe for several instances at once. Dedup is the `dedup` table's primary key;
//! a group's deliveries are stored one notification at a time (an advisory lock on the
//! group), so that the order check sees the earlier one; claims and outcomes carry the
//! channel owner's epoch.

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::connect::WORK_CHANNEL;
use crate::outbox::stored;
use crate::outbox::types::*;

const INTERRUPTED: &str =
    "interrupted: the instance delivering the channel stopped while the delivery was sending or ready to send";

/// Accepts a webhook: `amrelay_enqueue` (the schema) in one round trip. In order: the
/// dedup key (one of two instances that take the same notification at once waits for
/// the other's commit, then finds the key: stored once); an advisory lock on the group,
/// so that a group's deliveries are stored one notification at a time and the order
/// check below sees the earlier one; a resolve's calling off of held promotions (kept
/// even when the outbox is too full to take the resolve, as in the SQLite store); the
/// `max_pending` bound; then each delivery, in flight for a hand-off only under the
/// channel's current term (its owner row share-locked, so a takeover waits for this
/// commit and then recovers the row) and never ahead of an earlier delivery of its
/// group. `makes_work`: set when a delivery was stored pending, for a worker to claim.
pub(super) async fn enqueue(
    c: &impl GenericClient,
    new: &NewNotification,
    limits: &Limits,
    now: i64,
    open: u64,
    makes_work: &mut bool,
) -> Result<Enqueued, StoreError> {
    let window_start = now - limits.dedup_window.as_millis() as i64;
    let n = new.channels.len();
    let hold = |i: usize| new.holds.get(i).copied().unwrap_or_default();
    let not_before: Vec<i64> = (0..n).map(|i| hold(i).not_before).collect();
    let cancel: Vec<bool> = (0..n).map(|i| hold(i).cancel_unstarted).collect();
    let epochs: Vec<i64> = (0..n)
        .map(|i| new.fast.get(i).copied().flatten().unwrap_or(0))
        .collect();
    let rows = query(
        c,
        "SELECT outcome, pending, delivery_id, handed_off
         FROM amrelay_enqueue($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            &new.key.as_str(),
            &new.received_at,
            &window_start,
            &(stored::FORMAT as i32),
            &new.payload,
            &new.group_key,
            &now,
            &(open as i64),
            &(limits.max_pending as i64),
            &new.channels,
            &not_before,
            &cancel,
            &epochs,
        ],
    )
    .await?;
    let outcome = |r: &Row| r.get::<_, String>(0);
    match rows.first().map(outcome).as_deref() {
        Some("duplicate") => return Ok(Enqueued::Duplicate),
        Some("full") => {
            return Ok(Enqueued::Full {
                pending: rows[0].get::<_, i64>(1).max(0) as u64,
                max: limits.max_pending,
            })
        }
        _ => {}
    }
    let deliveries: Vec<Stored> = rows
        .iter()
        .map(|r| Stored {
            id: r.get(2),
            handed_off: r.get(3),
        })
        .collect();
    *makes_work = deliveries.iter().any(|d| !d.handed_off);
    Ok(Enqueued::Accepted {
        deliveries,
        enqueued_at: now,
    })
}

/// Tells the other instances' workers that there is work. Sent on its own, after the
/// commit it is about: a transaction that notifies takes a lock that serialises every
/// such commit in the database.
pub(super) async fn notify(c: &impl GenericClient) -> Result<(), StoreError> {
    execute(c, "SELECT pg_notify($1, '')", &[&WORK_CHANNEL]).await?;
    Ok(())
}

pub(super) async fn claim(
    c: &impl GenericClient,
    channel: &str,
    epoch: Epoch,
    limit: usize,
    now: i64,
) -> Result<Claim, StoreError> {
    let rows = query(c, "WITH due AS (
                 SELECT d.id FROM deliveries d
                 WHERE d.channel = $1 AND d.state = 'pending' AND d.next_attempt_at <= $2
                   AND NOT EXISTS (
                     SELECT 1 FROM deliveries e
                     WHERE e.channel = $1 AND e.group_key = d.group_key
                       AND e.state IN ('pending', 'inflight') AND e.notification_id < d.notification_id)
                   AND EXISTS (SELECT 1 FROM channel_owners o WHERE o.channel = $1 AND o.epoch = $4
                                 AND o.lease_until > clock_timestamp())
                 ORDER BY d.next_attempt_at, d.id
                 LIMIT $3
                 FOR UPDATE OF d SKIP LOCKED)
             UPDATE deliveries d
             SET state = 'inflight', attempts = d.attempts + 1, updated_at = $2, claim_epoch = $4
             FROM due, notifications n
             WHERE d.id = due.id AND n.id = d.notification_id
             RETURNING d.id, d.attempts, d.created_at, d.enqueued_at, n.format, n.payload,
                       d.next_attempt_at",
            &[&channel, &now, &(limit as i64), &epoch],
        )
        .await?;
    let mut claimed: Vec<(i64, Claimed)> = rows
        .into_iter()
        .map(|r| {
            (
                r.get::<_, i64>(6),
                Claimed {
                    id: r.get(0),
                    epoch,
                    attempts: r.get::<_, i32>(1) as u32,
                    created_at: r.get(2),
                    enqueued_at: r.get(3),
                    format: i64::from(r.get::<_, i32>(4)),
                    payload: r.get(5),
                },
            )
        })
        .collect();
    claimed.sort_by_key(|(due, d)| (*due, d.id));
    let deliveries: Vec<Claimed> = claimed.into_iter().map(|(_, d)| d).collect();
    let next_due_at = if deliveries.len() < limit {
        query_one(
            c,
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE channel = $1 AND state = 'pending'",
            &[&channel],
        )
        .await?
        .get(0)
    } else {
        Some(now)
    };
    Ok(Claim {
        deliveries,
        next_due_at,
    })
}

/// Records an outcome under `epoch`, in one statement; nothing when the row is no
/// longer this term's. True when the change may give a worker something to claim: a row
/// back to pending or a new one (retry, release, fallback), or a finished row whose
/// group has another open delivery on its channel (the statement sees the rows as they
/// were before it, so the row itself is left out of that check).
pub(super) async fn complete(
    c: &impl GenericClient,
    id: i64,
    epoch: Epoch,
    completion: &Completion,
    now: i64,
) -> Result<bool, StoreError> {
    const MINE: &str = "id = $1 AND state = 'inflight' AND claim_epoch = $2";
    const ENDED: &str =
        "SELECT EXISTS (SELECT 1 FROM done), EXISTS (SELECT 1 FROM done, deliveries e
             WHERE e.channel = done.channel AND e.group_key = done.group_key AND e.id <> $1
               AND e.state IN ('pending', 'inflight'))";
    const REOPENED: &str = "SELECT EXISTS (SELECT 1 FROM done), EXISTS (SELECT 1 FROM done)";
    let row = match completion {
        Completion::Delivered => {
            query_one(
                c,
                &format!("WITH done AS (UPDATE deliveries SET state = 'delivered', last_error = NULL, updated_at = $3 WHERE {MINE} RETURNING channel, group_key) {ENDED}"),
                &[&id, &epoch, &now],
            )
            .await?
        }
        Completion::Dead { error } => {
            query_one(
                c,
                &format!("WITH done AS (UPDATE deliveries SET state = 'dead', last_error = $3, updated_at = $4 WHERE {MINE} RETURNING channel, group_key) {ENDED}"),
                &[&id, &epoch, error, &now],
            )
            .await?
        }
        Completion::RetryAt { at, error } => {
            query_one(
                c,
                &format!("WITH done AS (UPDATE deliveries SET state = 'pending', next_attempt_at = $3, last_error = $4, updated_at = $5 WHERE {MINE} RETURNING id) {REOPENED}"),
                &[&id, &epoch, at, error, &now],
            )
            .await?
        }
        Completion::Release => {
            query_one(
                c,
                &format!("WITH done AS (UPDATE deliveries SET state = 'pending', attempts = GREATEST(attempts - 1, 0), updated_at = $3 WHERE {MINE} RETURNING id) {REOPENED}"),
                &[&id, &epoch, &now],
            )
            .await?
        }
        Completion::FailOver { to, error } => {
            query_one(
                c,
                &format!(
                    "WITH done AS (UPDATE deliveries SET state = 'failed_over', last_error = $3, updated_at = $4 WHERE {MINE}
                                   RETURNING id, notification_id, group_key, created_at),
                          fallback AS (INSERT INTO deliveries (notification_id, channel, group_key, state, next_attempt_at,
                                                               created_at, enqueued_at, updated_at, fallback_of)
                                       SELECT notification_id, $5, group_key, 'pending', $4, created_at, $4, $4, id FROM done
                                       RETURNING id)
                     SELECT EXISTS (SELECT 1 FROM fallback), EXISTS (SELECT 1 FROM fallback)"
                ),
                &[&id, &epoch, error, &now, to],
            )
            .await?
        }
    };
    let (changed, wakes): (bool, bool) = (row.get(0), row.get(1));
    Ok(changed && wakes)
}

/// Each delivery's state (`pending`, `inflight`, `delivered`, ...), of those that exist.
pub(super) async fn delivery_states(
    c: &impl GenericClient,
    ids: &[i64],
) -> Result<Vec<(i64, String)>, StoreError> {
    let rows = query(
        c,
        "SELECT id, state FROM deliveries WHERE id = ANY($1)",
        &[&ids],
    )
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(super) async fn stats(c: &impl GenericClient) -> Result<Stats, StoreError> {
    let channels = query(
        c,
        "SELECT channel, COUNT(*), MIN(created_at) FROM deliveries
             WHERE state IN ('pending', 'inflight') GROUP BY channel",
        &[],
    )
    .await?
    .into_iter()
    .map(|r| ChannelStats {
        channel: r.get(0),
        open: r.get::<_, i64>(1) as u64,
        oldest_created_at: r.get(2),
    })
    .collect();
    let dead: i64 = query_one(
        c,
        "SELECT COUNT(*) FROM deliveries WHERE state = 'dead'",
        &[],
    )
    .await?
    .get(0);
    let owners = query(c, "SELECT channel, instance FROM channel_owners WHERE lease_until > clock_timestamp() ORDER BY channel",
            &[],
        )
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Stats {
        channels,
        dead: dead as u64,
        owners,
    })
}

pub(super) async fn count_open(c: &impl GenericClient) -> Result<u64, StoreError> {
    let n: i64 = query_one(
        c,
        "SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'inflight')",
        &[],
    )
    .await?
    .get(0);
    Ok(n as u64)
}

pub(super) async fn dead_letters(
    c: &impl GenericClient,
    limit: usize,
) -> Result<Vec<DeadLetter>, StoreError> {
    Ok(query(c, "SELECT d.id, d.channel, d.attempts, d.created_at, d.updated_at, COALESCE(d.last_error, ''),
                    n.format, n.payload
             FROM deliveries d JOIN notifications n ON n.id = d.notification_id
             WHERE d.state = 'dead' ORDER BY d.id LIMIT $1",
            &[&(limit as i64)],
        )
        .await?
        .into_iter()
        .map(|r| DeadLetter {
            id: r.get(0),
            channel: r.get(1),
            attempts: r.get::<_, i32>(2) as u32,
            created_at: r.get(3),
            died_at: r.get(4),
            last_error: r.get(5),
            format: i64::from(r.get::<_, i32>(6)),
            payload: r.get(7),
        })
        .collect())
}

pub(super) async fn requeue(
    tx: &Transaction<'_>,
    which: &Requeue,
    now: i64,
) -> Result<Requeued, StoreError> {
    let sql = "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1, enqueued_at = $1,
                                     updated_at = $1
               WHERE state = 'dead'";
    let done = match which {
        Requeue::All => Requeued {
            count: execute(tx, sql, &[&now]).await? as usize,
            not_dead: Vec::new(),
        },
        Requeue::Ids(ids) => {
            let sql = format!("{sql} AND id = $2");
            let mut done = Requeued::default();
            for id in ids {
                match execute(tx, sql.as_str(), &[&now, id]).await? {
                    0 => done.not_dead.push(*id),
                    n => done.count += n as usize,
                }
            }
            done
        }
    };
    Ok(done)
}

/// Retention, once a minute for all instances: the first to come runs it.
pub(super) async fn prune(
    tx: &Transaction<'_>,
    limits: &Limits,
    now: i64,
    every_ms: i64,
) -> Result<usize, StoreError> {
    let due = query_opt(
        tx,
        "INSERT INTO jobs (name, last_run) VALUES ('prune', $1)
             ON CONFLICT (name) DO UPDATE SET last_run = EXCLUDED.last_run
             WHERE jobs.last_run <= $2
             RETURNING name",
        &[&now, &(now - every_ms)],
    )
    .await?;
    if due.is_none() {
        return Ok(0);
    }
    let keep_done = now - limits.retention.as_millis() as i64;
    let keep_keys = now - limits.dedup_window.as_millis() as i64;
    let mut n = execute(
        tx,
        "DELETE FROM deliveries WHERE state IN ('delivered', 'failed_over', 'dead', 'cancelled')
             AND updated_at < $1",
        &[&keep_done],
    )
    .await?;
    n += execute(
        tx,
        "DELETE FROM dedup WHERE accepted_at < $1",
        &[&keep_keys],
    )
    .await?;
    n += execute(tx, "DELETE FROM notifications WHERE received_at < $1
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = notifications.id)",
            &[&keep_keys.min(keep_done)],
        )
        .await?;
    Ok(n as usize)
}

pub(super) async fn probe(
    c: &impl GenericClient,
    instance: &str,
    now: i64,
) -> Result<(), StoreError> {
    execute(
        c,
        "INSERT INTO probe (instance, at) VALUES ($1, $2)
         ON CONFLICT (instance) DO UPDATE SET at = EXCLUDED.at",
        &[&instance, &now],
    )
    .await?;
    Ok(())
}

/// Takes a channel whose lease lapsed (or that nobody held yet), and sends the rows
/// left in flight under earlier terms back to pending: the new term's epoch.
pub(super) async fn acquire(
    tx: &Transaction<'_>,
    channel: &str,
    instance: &str,
    lease_ms: i64,
) -> Result<Option<Epoch>, StoreError> {
    let row = query_opt(
        tx,
        "INSERT INTO channel_owners (channel, instance, epoch, lease_until)
             VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond')
             ON CONFLICT (channel) DO UPDATE
               SET instance = EXCLUDED.instance, epoch = channel_owners.epoch + 1,
                   lease_until = EXCLUDED.lease_until
             WHERE channel_owners.lease_until <= clock_timestamp()
             RETURNING epoch",
        &[&channel, &instance, &(lease_ms as f64)],
    )
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let epoch: i64 = row.get(0);
    let recovered = execute(
        tx,
        "UPDATE deliveries SET state = 'pending', last_error = $3
             WHERE channel = $1 AND state = 'inflight' AND claim_epoch < $2",
        &[&channel, &epoch, &INTERRUPTED],
    )
    .await?;
    if recovered > 0 {
        tracing::warn!(
            channel,
            recovered,
            "deliveries were in flight with the channel's last owner; trying them again"
        );
    }
    Ok(Some(epoch))
}

pub(super) async fn renew(
    c: &impl GenericClient,
    channel: &str,
    instance: &str,
    epoch: Epoch,
    lease_ms: i64,
) -> Result<bool, StoreError> {
    let n = execute(c, "UPDATE channel_owners SET lease_until = clock_timestamp() + $4 * interval '1 millisecond'
             WHERE channel = $1 AND instance = $2 AND epoch = $3 AND lease_until > clock_timestamp()",
            &[&channel, &instance, &epoch, &(lease_ms as f64)],
        )
        .await?;
    Ok(n == 1)
}

/// Ends a term early; only this term (another instance of the same name, or a later
/// term of this one, keeps its own).
pub(super) async fn release(
    c: &impl GenericClient,
    channel: &str,
    instance: &str,
    epoch: Epoch,
) -> Result<(), StoreError> {
    execute(
        c,
        "UPDATE channel_owners SET lease_until = clock_timestamp()
         WHERE channel = $1 AND instance = $2 AND epoch = $3",
        &[&channel, &instance, &epoch],
    )
    .await?;
    Ok(())
}

// Every statement is prepared once per connection (deadpool's statement cache), so that
// PostgreSQL neither parses nor plans it again: most of its CPU per webhook otherwise.

async fn execute(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.execute(&st, params).await
}

async fn query(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.query(&st, params).await
}

async fn query_one(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.query_one(&st, params).await
}

async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.query_opt(&st, params).await
}
