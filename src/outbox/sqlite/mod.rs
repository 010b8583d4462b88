//! The embedded backend: one SQLite file under `storage.path`, one process at a time.
//!
//! One writer thread owns the connection and commits requests in groups, so a burst of
//! webhooks shares one fsync instead of paying one each (`writer.rs`). WAL checkpoints
//! run on a thread of their own (`checkpoint.rs`), so a commit never waits for one. The
//! queue's figures are read on a connection of their own, beside the writer.

mod checkpoint;
mod lock;
mod request;
mod schema;
pub(super) use schema::SCHEMA_VERSION;
mod seen;
mod store;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use super::types::*;
use super::Access;
use request::{Request, Responder};
use store::Store;

/// Requests queued for the writer before callers wait to queue theirs.
const QUEUE: usize = 16 * 1024;

/// A cheap, cloneable handle to the writer thread.
#[derive(Clone)]
pub(super) struct Sqlite {
    tx: mpsc::Sender<Request>,
    /// For the queue's figures: a scan of the backlog on the writer's thread stalled
    /// every commit behind it, longer the deeper the backlog.
    reader: Arc<Mutex<Connection>>,
    /// Bumped after every commit that made deliveries due now; workers watch it.
    wake: watch::Receiver<u64>,
    /// A server's hold on the store, against a second server on it.
    _lock: Option<Arc<lock::StoreLock>>,
}

impl Sqlite {
    /// Opens the store in `dir` and starts its writer. For `Access::Serve` the store is
    /// created when missing and deliveries left in flight go back to pending; a tool
    /// (`amrelay dead-letters`) opens only a store that exists and leaves rows alone.
    pub(super) fn open(dir: &Path, limits: Limits, access: Access) -> Result<Sqlite, StoreError> {
        let lock = match access {
            Access::Serve => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::io(dir.display().to_string(), e))?;
                Some(Arc::new(lock::take(dir)?))
            }
            Access::Tool => None,
        };
        let mut store = Store::open(dir, &limits, access)?;
        let reader = Arc::new(Mutex::new(Store::open_reader(dir)?));
        let checkpointer = match access {
            Access::Serve => {
                let recovered = store.recover_inflight()?;
                if recovered > 0 {
                    tracing::warn!(
                        recovered,
                        "deliveries were in flight when amrelay last stopped; trying them again"
                    );
                }
                Some(store.checkpoint_elsewhere()?)
            }
            Access::Tool => None,
        };
        let open = store.count_open()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (wake_tx, wake) = watch::channel(0);
        thread::Builder::new()
            .name("amrelay-outbox".into())
            .spawn(move || writer::run(store, checkpointer, rx, limits, open, wake_tx))
            .map_err(|e| StoreError::io("starting the outbox writer thread", e))?;
        Ok(Sqlite {
            tx,
            reader,
            wake,
            _lock: lock,
        })
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.clone()
    }

    /// Queues a request made with its reply slot and waits for the answer.
    async fn call<T>(&self, make: impl FnOnce(Responder<T>) -> Request) -> Result<T, StoreError> {
        let (reply, rx) = Responder::new();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await
            .map_err(|_: oneshot::error::RecvError| StoreError::Closed)?
    }

    pub(super) async fn enqueue(&self, new: NewNotification) -> Result<Enqueued, StoreError> {
        self.call(|r| Request::Enqueue(new, r)).await
    }

    pub(super) async fn claim(&self, channel: &str, limit: usize) -> Result<Claim, StoreError> {
        let channel = channel.to_owned();
        self.call(|reply| Request::Claim {
            channel,
            limit,
            reply,
        })
        .await
    }

    pub(super) async fn complete(&self, id: i64, completion: Completion) -> Result<(), StoreError> {
        self.call(|reply| Request::Complete {
            id,
            completion,
            reply,
        })
        .await
        .map(|_| ())
    }

    pub(super) async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.call(|reply| Request::DeadLetters { limit, reply })
            .await
    }

    pub(super) async fn requeue(&self, which: Requeue) -> Result<Requeued, StoreError> {
        self.call(|r| Request::Requeue(which, r)).await
    }

    pub(super) async fn stats(&self) -> Result<Stats, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
            store::stats(&conn)
        })
        .await
        .map_err(|e| StoreError::io("the stats task", std::io::Error::other(e)))?
    }

    pub(super) async fn delivery_states(
        &self,
        ids: Vec<i64>,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
            store::delivery_states(&conn, &ids)
        })
        .await
        .map_err(|e| StoreError::io("the delivery states task", std::io::Error::other(e)))?
    }

    pub(super) async fn count_open(&self) -> Result<usize, StoreError> {
        self.call(Request::CountOpen).await
    }

    pub(super) async fn recover_inflight(&self) -> Result<usize, StoreError> {
        self.call(Request::RecoverInflight).await
    }

    pub(super) async fn probe(&self) -> Result<(), StoreError> {
        self.call(Request::Probe).await
    }

    pub(super) async fn prune(&self) -> Result<usize, StoreError> {
        self.call(Request::Prune).await
    }
}
