//! The shared backend: one PostgreSQL database that several amrelays use at once
//! (docs/high-availability.md).
//!
//! Two pools: webhooks, requeues and channel leases commit with `synchronous_commit = on`
//! (an acknowledged notification survives the database's crash, and a lease is never
//! shorter than its owner believes); claims and outcomes with it off, as the SQLite
//! store does with `synchronous = NORMAL`: after a crash of the database the worst case
//! is one more attempt, the same as for an attempt in flight.

mod connect;
mod schema;
mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{watch, Notify};

use super::types::*;
use crate::config::PostgresSettings;
use crate::domain::time::now_ms;

/// How often retention runs, whichever instance runs it.
const PRUNE_EVERY_MS: i64 = 55_000;

#[derive(Clone)]
pub(super) struct Postgres {
    /// Webhooks, requeues and leases: on disk before they return.
    durable: Pool,
    /// Claims, outcomes and reads.
    fast: Pool,
    limits: Limits,
    instance: Arc<str>,
    lease: Duration,
    /// Undelivered rows, as last counted plus what this instance added since: the
    /// `max_pending` bound is approximate across instances (docs/high-availability.md).
    open: Arc<OpenCount>,
    /// This instance's workers: woken at once after a commit that made work, and by
    /// other instances' notifications.
    wake: Arc<watch::Sender<u64>>,
    /// Asks the notifier to tell the other instances (coalesced).
    poke: Arc<Notify>,
}

impl Postgres {
    /// Connects, migrates the schema under a lock, and starts listening for other
    /// instances' work. The schema version it runs on.
    pub(super) async fn open(
        s: &PostgresSettings,
        instance: &str,
        limits: Limits,
        listen: bool,
    ) -> Result<(Postgres, i32), StoreError> {
        let cfg = connect::config(s)?;
        let tls = connect::tls(s)?;
        let (mut client, conn) = connect::connect_one(&cfg, &tls).await?;
        let driver = tokio::spawn(connect::drive(conn));
        let version = schema::migrate(&mut client).await;
        drop(client);
        let _ = driver.await;
        let version = version?;
        let mut durable_cfg = cfg.clone();
        durable_cfg.options("-c synchronous_commit=on");
        let mut fast_cfg = cfg.clone();
        fast_cfg.options("-c synchronous_commit=off");
        let durable = connect::pool(durable_cfg, &tls, s.pool_size)?;
        let fast = connect::pool(fast_cfg, &tls, s.pool_size)?;
        let wake = Arc::new(watch::Sender::new(0));
        let poke = Arc::new(Notify::new());
        if listen {
            tokio::spawn(connect::listen(cfg, tls, wake.clone()));
        }
        tokio::spawn(notifier(fast.clone(), poke.clone()));
        let pg = Postgres {
            durable,
            fast,
            limits,
            instance: instance.into(),
            lease: s.lease,
            open: Arc::new(OpenCount::default()),
            wake,
            poke,
        };
        pg.count_open().await?;
        Ok((pg, version))
    }

    /// Connects once and reads the schema version (0 for an empty database), changing
    /// nothing: for `check-config`.
    pub(super) async fn check(s: &PostgresSettings) -> Result<(i32, i32), StoreError> {
        let cfg = connect::config(s)?;
        let tls = connect::tls(s)?;
        let (client, conn) = connect::connect_one(&cfg, &tls).await?;
        let driver = tokio::spawn(connect::drive(conn));
        let version = client
            .query_opt(
                "SELECT version FROM amrelay_schema WHERE id = 1 AND to_regclass('amrelay_schema') IS NOT NULL",
                &[],
            )
            .await;
        let version = match version {
            Ok(row) => row.map_or(0, |r| r.get(0)),
            // No such table yet: an empty database, created at the first start.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => 0,
            Err(e) => return Err(e.into()),
        };
        drop(client);
        let _ = driver.await;
        Ok((version, schema::SCHEMA_VERSION))
    }

    /// The pool for durable writes, for state that lives beside the outbox.
    pub(super) fn pool(&self) -> Pool {
        self.durable.clone()
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// After a commit that gave workers something to claim.
    fn made_work(&self) {
        self.wake.send_modify(|g| *g = g.wrapping_add(1));
        self.poke.notify_one();
    }

    pub(super) fn lease(&self) -> Duration {
        self.lease
    }

    pub(super) async fn enqueue(&self, new: NewNotification) -> Result<Enqueued, StoreError> {
        // One statement, its own transaction: committed (synchronous_commit on) when it
        // returns, the refusal of a full outbox included (its calling-off of held
        // promotions stands).
        let c = self.durable.get().await?;
        let open = self.open.now();
        let mut work = false;
        let done = store::enqueue(&c, &new, &self.limits, now_ms(), open, &mut work).await?;
        if let Enqueued::Accepted { deliveries, .. } = &done {
            self.open.add(deliveries.len() as u64);
            if work {
                self.made_work();
            }
        }
        Ok(done)
    }

    pub(super) async fn claim(
        &self,
        channel: &str,
        epoch: Epoch,
        limit: usize,
    ) -> Result<Claim, StoreError> {
        let c = self.fast.get().await?;
        store::claim(&c, channel, epoch, limit, now_ms()).await
    }

    pub(super) async fn complete(
        &self,
        id: i64,
        epoch: Epoch,
        completion: Completion,
    ) -> Result<(), StoreError> {
        let c = self.fast.get().await?;
        let work = store::complete(&c, id, epoch, &completion, now_ms()).await?;
        if work {
            self.made_work();
        }
        Ok(())
    }

    pub(super) async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let c = self.fast.get().await?;
        store::dead_letters(&c, limit).await
    }

    pub(super) async fn requeue(&self, which: Requeue) -> Result<Requeued, StoreError> {
        let mut c = self.durable.get().await?;
        let tx = c.transaction().await?;
        let done = store::requeue(&tx, &which, now_ms()).await?;
        tx.commit().await?;
        if done.count > 0 {
            self.made_work();
        }
        Ok(done)
    }

    pub(super) async fn delivery_states(
        &self,
        ids: &[i64],
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let c = self.fast.get().await?;
        store::delivery_states(&c, ids).await
    }

    pub(super) async fn stats(&self) -> Result<Stats, StoreError> {
        let c = self.fast.get().await?;
        let mark = self.open.mark();
        let stats = store::stats(&c).await?;
        self.open
            .counted(stats.channels.iter().map(|c| c.open).sum(), mark);
        Ok(stats)
    }

    pub(super) async fn count_open(&self) -> Result<usize, StoreError> {
        let c = self.fast.get().await?;
        let mark = self.open.mark();
        let n = store::count_open(&c).await?;
        self.open.counted(n, mark);
        Ok(n as usize)
    }

    pub(super) async fn probe(&self) -> Result<(), StoreError> {
        let c = self.durable.get().await?;
        store::probe(&c, &self.instance, now_ms()).await
    }

    pub(super) async fn prune(&self) -> Result<usize, StoreError> {
        let mut c = self.fast.get().await?;
        let tx = c.transaction().await?;
        let n = store::prune(&tx, &self.limits, now_ms(), PRUNE_EVERY_MS).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub(super) async fn acquire(&self, channel: &str) -> Result<Option<Epoch>, StoreError> {
        let mut c = self.durable.get().await?;
        let tx = c.transaction().await?;
        let lease_ms = self.lease.as_millis() as i64;
        let epoch = store::acquire(&tx, channel, &self.instance, lease_ms).await?;
        tx.commit().await?;
        Ok(epoch)
    }

    pub(super) async fn renew(&self, channel: &str, epoch: Epoch) -> Result<bool, StoreError> {
        let c = self.durable.get().await?;
        let lease_ms = self.lease.as_millis() as i64;
        store::renew(&c, channel, &self.instance, epoch, lease_ms).await
    }

    pub(super) async fn release(&self, channel: &str, epoch: Epoch) -> Result<(), StoreError> {
        let c = self.durable.get().await?;
        store::release(&c, channel, &self.instance, epoch).await
    }
}

/// Sends the `NOTIFY`s this instance owes, one per wake-up however many commits asked
/// for it meanwhile, each on its own after the commits it is about.
async fn notifier(pool: Pool, poke: Arc<Notify>) {
    loop {
        poke.notified().await;
        match pool.get().await {
            Ok(c) => {
                if let Err(e) = store::notify(&c).await {
                    tracing::debug!(error = %e, "cannot notify the other instances; they look again within a second");
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot notify the other instances; they look again within a second")
            }
        }
        // Commits in the next moment share the next notification.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The undelivered rows `max_pending` is checked against: the last count, plus what
/// this instance added since that count began. A count's snapshot may miss rows whose
/// commit it raced; those were added after its mark, so they are still counted (twice
/// at worst, which errs on refusing early), never lost.
#[derive(Default)]
struct OpenCount {
    /// Deliveries this instance has stored, ever.
    added: AtomicU64,
    /// The last count, and `added` when it began.
    last: std::sync::Mutex<(u64, u64)>,
}

impl OpenCount {
    fn now(&self) -> u64 {
        let (count, mark) = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        count + self.added.load(Ordering::Acquire).saturating_sub(mark)
    }

    fn add(&self, n: u64) {
        self.added.fetch_add(n, Ordering::AcqRel);
    }

    /// Taken before a count's query starts.
    fn mark(&self) -> u64 {
        self.added.load(Ordering::Acquire)
    }

    fn counted(&self, count: u64, mark: u64) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // A slow count that began before the last one must not replace it.
        if mark >= last.1 {
            *last = (count, mark);
        }
    }
}

#[cfg(test)]
mod open_count_tests {
    use super::OpenCount;

    #[test]
    fn a_count_that_raced_an_enqueue_does_not_lose_it() {
        let o = OpenCount::default();
        o.add(2);
        let mark = o.mark();
        // Stored after the count began; its snapshot did not see it.
        o.add(1);
        o.counted(2, mark);
        assert_eq!(o.now(), 3);
        // An older count arriving late changes nothing.
        o.counted(0, 0);
        assert_eq!(o.now(), 3);
        // The next count sees every row.
        let mark = o.mark();
        o.counted(3, mark);
        assert_eq!(o.now(), 3);
    }
}
