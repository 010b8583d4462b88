//! The durable outbox, the source of truth: a webhook is acknowledged only once its
//! deliveries are committed here, and a delivery leaves only when its channel took it.
//!
//! Everything above talks to [`Outbox`], whose operations are the pipeline's verbs:
//! enqueue (deduplicated by key), claim due deliveries, complete an attempt, requeue,
//! list dead letters, stats. Which database holds the rows is the backend's business
//! (today `sqlite/`, the embedded default); nothing above this module names one.

mod made_here;
mod sqlite;
pub mod stored;
mod types;

use std::path::Path;

use tokio::sync::watch;

pub use types::*;

/// Who opens the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `amrelay serve`: creates the store when missing and owns the deliveries in it.
    Serve,
    /// A command (`amrelay dead-letters`): opens only a store that exists, and leaves
    /// deliveries in flight to the server that holds them.
    Tool,
}

/// A cheap, cloneable handle to the outbox.
#[derive(Clone)]
pub struct Outbox {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
}

impl Outbox {
    /// Opens the SQLite store under `dir`.
    pub fn open_sqlite(dir: &Path, limits: Limits, access: Access) -> Result<Outbox, StoreError> {
        Ok(Outbox {
            backend: Backend::Sqlite(sqlite::Sqlite::open(dir, limits, access)?),
        })
    }

    /// Bumped after every commit that made deliveries due now; workers watch it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.subscribe(),
        }
    }

    /// Stores a notification for its channels, unless its key was accepted within the
    /// dedup window or the outbox is full. Committed durably before it returns.
    pub async fn enqueue(&self, new: NewNotification) -> Result<Enqueued, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.enqueue(new).await,
        }
    }

    /// Up to `limit` due deliveries of `channel`, oldest first, now in flight; never one
    /// whose group has an earlier delivery still open on the channel.
    pub async fn claim(&self, channel: &str, limit: usize) -> Result<Claim, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.claim(channel, limit).await,
        }
    }

    /// Records what came of a delivery in flight.
    pub async fn complete(&self, id: i64, completion: Completion) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.complete(id, completion).await,
        }
    }

    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.dead_letters(limit).await,
        }
    }

    /// Dead letters back to pending, their attempts and `max_age` started afresh.
    pub async fn requeue(&self, which: Requeue) -> Result<Requeued, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.requeue(which).await,
        }
    }

    /// Queue depth and oldest row per channel, and dead letters.
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.stats().await,
        }
    }

    /// Recounts the undelivered rows that `max_pending` is checked against (another
    /// process may have requeued some).
    pub async fn count_open(&self) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.count_open().await,
        }
    }

    /// After workers were aborted: their rows in flight go back to pending.
    pub async fn recover_inflight(&self) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.recover_inflight().await,
        }
    }

    /// Proves the store takes a write.
    pub async fn probe(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.probe().await,
        }
    }

    /// Deletes finished deliveries past the retention and dedup keys past the window.
    pub async fn prune(&self) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.prune().await,
        }
    }
}
