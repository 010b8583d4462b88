//! The durable outbox, the source of truth: a webhook is acknowledged only once its
//! deliveries are committed here, and a delivery leaves only when its channel took it.
//!
//! Everything above talks to [`Outbox`], whose operations are the pipeline's verbs:
//! enqueue (deduplicated by key), claim due deliveries, complete an attempt, requeue,
//! list dead letters, stats, and a channel owner's term (acquire, renew, release). Which
//! database holds the rows is the backend's business: `sqlite/`, the embedded default
//! for one process, or `postgres/`, shared by several instances; nothing above this
//! module names one.

mod local;
mod made_here;
mod postgres;
mod sqlite;
pub(crate) mod stored;
mod types;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::{StorageBackend, StorageSettings};
use crate::domain::time::now_ms;

pub(crate) use local::LocalDb;
pub(crate) use types::*;

/// How long readiness stays false after a webhook's commit failed, unless one succeeds.
const NOT_READY_AFTER_REFUSAL_MS: i64 = 10_000;

/// Who opens the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `amrelay serve`: creates the store when missing and owns the deliveries in it.
    Serve,
    /// A command (`amrelay dead-letters`): opens only a store that exists, and leaves
    /// deliveries in flight to the server that holds them.
    Tool,
}

/// A cheap, cloneable handle to the outbox.
#[derive(Clone)]
pub(crate) struct Outbox {
    backend: Backend,
    /// When a webhook's commit last failed (ms; 0 once one succeeds): readiness turns
    /// false with that first failure, not at the next probe, whose small write may still
    /// fit where a webhook does not.
    failed_at: Arc<AtomicI64>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// What a store said about itself when it opened, for logs and `check-config`.
#[derive(Debug, Clone)]
pub(crate) struct Opened {
    pub backend: &'static str,
    pub schema_version: i64,
}

impl Outbox {
    /// Opens the store `[storage]` names: creates or migrates its schema (`Access::Serve`
    /// only creates a SQLite store), and for a server, takes the store's work up.
    pub(crate) async fn open(
        storage: &StorageSettings,
        instance: &str,
        limits: Limits,
        access: Access,
    ) -> Result<(Outbox, Opened), StoreError> {
        let (backend, opened) = match &storage.backend {
            StorageBackend::Sqlite => (
                Backend::Sqlite(sqlite::Sqlite::open(&storage.path, limits, access)?),
                Opened {
                    backend: "sqlite",
                    schema_version: sqlite::SCHEMA_VERSION,
                },
            ),
            StorageBackend::Postgres(pg) => {
                let serve = access == Access::Serve;
                let (p, version) = postgres::Postgres::open(pg, instance, limits, serve).await?;
                (
                    Backend::Postgres(p),
                    Opened {
                        backend: "postgres",
                        schema_version: i64::from(version),
                    },
                )
            }
        };
        Ok((
            Outbox {
                backend,
                failed_at: Arc::default(),
            },
            opened,
        ))
    }

    /// What `check-config` says of the store: for a database, that it answers and which
    /// schema it holds. Changes nothing.
    pub(crate) async fn check(storage: &StorageSettings) -> Result<String, StoreError> {
        match &storage.backend {
            StorageBackend::Sqlite => Ok(format!("SQLite store under {}", storage.path.display())),
            StorageBackend::Postgres(pg) => {
                let (found, known) = postgres::Postgres::check(pg).await?;
                Ok(match found {
                    0 => format!("PostgreSQL reachable, empty: schema version {known} is created at the first start"),
                    v if v > known => return Err(StoreError::Refused(format!(
                        "the database's schema version {v} is newer than this binary's {known}: upgrade amrelay"
                    ))),
                    v if v < known => format!("PostgreSQL reachable, schema version {v}: migrated to {known} at the next start"),
                    v => format!("PostgreSQL reachable, schema version {v}"),
                })
            }
        }
    }

    /// The shared database, for the state that must live beside the outbox (the failover
    /// caller's); None for the SQLite store.
    pub(crate) fn database(&self) -> Option<deadpool_postgres::Pool> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(p.pool()),
        }
    }

    /// Bumped after every commit that made deliveries due now; workers watch it.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.subscribe(),
            Backend::Postgres(p) => p.subscribe(),
        }
    }

    /// Stores a notification for its channels, unless its key was accepted within the
    /// dedup window or the outbox is full. Committed durably before it returns.
    pub(crate) async fn enqueue(&self, new: NewNotification) -> Result<Enqueued, StoreError> {
        let done = match &self.backend {
            Backend::Sqlite(s) => s.enqueue(new).await,
            Backend::Postgres(p) => p.enqueue(new).await,
        };
        let failed_at = if done.is_err() { now_ms().max(1) } else { 0 };
        self.failed_at.store(failed_at, Ordering::Relaxed);
        done
    }

    /// Up to `limit` due deliveries of `channel`, oldest first, now in flight under
    /// `epoch` (the caller's term as the channel's owner); never one whose group has an
    /// earlier delivery still open on the channel. None once the term has ended.
    pub(crate) async fn claim(
        &self,
        channel: &str,
        epoch: Epoch,
        limit: usize,
    ) -> Result<Claim, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.claim(channel, limit).await,
            Backend::Postgres(p) => p.claim(channel, epoch, limit).await,
        }
    }

    /// Records what came of a delivery taken in flight under `epoch`. Nothing changes
    /// when the channel has had a new owner since: that owner has the delivery now.
    pub(crate) async fn complete(
        &self,
        id: i64,
        epoch: Epoch,
        completion: Completion,
    ) -> Result<(), StoreError> {
        match &self.backend {
            // One process, one term: nothing to fence.
            Backend::Sqlite(s) => s.complete(id, completion).await,
            Backend::Postgres(p) => p.complete(id, epoch, completion).await,
        }
    }

    /// How long a channel's owner keeps it without renewing: Some for a store that
    /// several instances share, None when this process has the store to itself (then it
    /// owns every channel, for good, under epoch 0).
    pub(crate) fn lease(&self) -> Option<std::time::Duration> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(p.lease()),
        }
    }

    /// Takes `channel` for this instance if nobody holds it (its owner's lease lapsed):
    /// the new term's epoch, after the deliveries left in flight under earlier terms went
    /// back to pending. None when another instance holds it.
    pub(crate) async fn acquire(&self, channel: &str) -> Result<Option<Epoch>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(0)),
            Backend::Postgres(p) => p.acquire(channel).await,
        }
    }

    /// Extends this instance's term on `channel`; false when it has ended.
    pub(crate) async fn renew(&self, channel: &str, epoch: Epoch) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(true),
            Backend::Postgres(p) => p.renew(channel, epoch).await,
        }
    }

    /// Gives up this instance's term on `channel` (stopping, or reloading), so that the
    /// next owner need not wait for the lease to lapse.
    pub(crate) async fn release(&self, channel: &str, epoch: Epoch) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => p.release(channel, epoch).await,
        }
    }

    pub(crate) async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.dead_letters(limit).await,
            Backend::Postgres(p) => p.dead_letters(limit).await,
        }
    }

    /// Dead letters back to pending, their attempts and `max_age` started afresh.
    pub(crate) async fn requeue(&self, which: Requeue) -> Result<Requeued, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.requeue(which).await,
            Backend::Postgres(p) => p.requeue(which).await,
        }
    }

    /// The states of these deliveries (`pending`, `inflight`, `delivered`, `dead`, ...):
    /// how a drill confirms that its messages went out. Pruned ones are missing.
    pub(crate) async fn delivery_states(
        &self,
        ids: &[i64],
    ) -> Result<Vec<(i64, String)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.delivery_states(ids.to_vec()).await,
            Backend::Postgres(p) => p.delivery_states(ids).await,
        }
    }

    /// Queue depth and oldest row per channel, and dead letters.
    pub(crate) async fn stats(&self) -> Result<Stats, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.stats().await,
            Backend::Postgres(p) => p.stats().await,
        }
    }

    /// Recounts the undelivered rows that `max_pending` is checked against (another
    /// process may have requeued some).
    pub(crate) async fn count_open(&self) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.count_open().await,
            Backend::Postgres(p) => p.count_open().await,
        }
    }

    /// After workers were aborted: their rows in flight go back to pending.
    pub(crate) async fn recover_inflight(&self) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.recover_inflight().await,
            // The rows stay with this instance's terms; the next term on each channel
            // (a reload's new workers take the channels afresh) sends them back.
            Backend::Postgres(_) => Ok(0),
        }
    }

    /// Proves the store takes a write.
    pub(crate) async fn probe(&self) -> Result<(), StoreError> {
        let failed_at = self.failed_at.load(Ordering::Relaxed);
        if failed_at != 0 && now_ms() - failed_at < NOT_READY_AFTER_REFUSAL_MS {
            // Not ready until a webhook is stored again, or a while has passed (then the
            // probe decides: a router that sends no traffic to a not-ready instance
            // would otherwise keep it so for ever).
            return Err(StoreError::Refused(
                "the store refused the last webhook (see the log)".into(),
            ));
        }
        match &self.backend {
            Backend::Sqlite(s) => s.probe().await,
            Backend::Postgres(p) => p.probe().await,
        }
    }

    /// Deletes finished deliveries past the retention and dedup keys past the window.
    pub(crate) async fn prune(&self) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.prune().await,
            Backend::Postgres(p) => p.prune().await,
        }
    }
}
