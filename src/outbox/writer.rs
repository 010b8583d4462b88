//! The writer thread and the async handle the rest of amrelay talks to.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::Connection;

use tokio::sync::{mpsc, oneshot, watch};

use super::checkpoint::{After, Checkpointer};
use super::store::{self, Durability, Limits, Store};
use super::types::*;

/// Most requests one transaction takes; enough to amortise the fsync, small enough to
/// keep the first request's wait short.
const MAX_BATCH: usize = 512;
const QUEUE: usize = 16 * 1024;
/// An fsynced batch this large means webhooks arrive faster than commits finish...
const BUSY_BATCH: usize = 8;
/// ...so the next such batch waits this long for company before it commits.
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

struct Cmd {
    req: Request,
    reply: oneshot::Sender<Result<Response, StoreError>>,
}

/// A cheap, cloneable handle to the outbox.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Cmd>,
    /// For the queue's figures: a scan of the backlog on the writer's thread stalled
    /// every commit behind it, longer the deeper the backlog.
    reader: Arc<Mutex<Connection>>,
    /// Bumped after every commit that made deliveries due now; workers watch it.
    wake: watch::Receiver<u64>,
}

impl Outbox {
    /// Opens the store, returns interrupted attempts to pending and starts the writer.
    pub fn open(
        dir: &Path,
        limits: Limits,
    ) -> Result<(Outbox, thread::JoinHandle<()>), StoreError> {
        let mut store = Store::open(dir, &limits)?;
        let reader = Arc::new(Mutex::new(Store::open_reader(dir)?));
        let recovered = store.recover_inflight()?;
        if recovered > 0 {
            tracing::warn!(
                recovered,
                "deliveries were in flight when amrelay last stopped; trying them again"
            );
        }
        let open = store.count_open()?;
        let checkpointer = store.checkpoint_elsewhere()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (wake_tx, wake) = watch::channel(0);
        let handle = thread::Builder::new()
            .name("amrelay-outbox".into())
            .spawn(move || run(store, checkpointer, rx, limits, open, wake_tx))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok((Outbox { tx, reader, wake }, handle))
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.clone()
    }

    async fn call(&self, req: Request) -> Result<Response, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd { req, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn enqueue(&self, new: NewNotification) -> Result<Enqueued, StoreError> {
        match self.call(Request::Enqueue(new)).await? {
            Response::Enqueued(e) => Ok(e),
            other => unreachable_response(other),
        }
    }

    pub async fn claim(&self, channel: &str, limit: usize) -> Result<Claim, StoreError> {
        match self
            .call(Request::Claim {
                channel: channel.to_owned(),
                limit,
            })
            .await?
        {
            Response::Claimed(c) => Ok(c),
            other => unreachable_response(other),
        }
    }

    pub async fn complete(&self, id: i64, completion: Completion) -> Result<(), StoreError> {
        self.call(Request::Complete { id, completion })
            .await
            .map(|_| ())
    }

    /// Queue depth and oldest row per channel, and dead letters; read beside the writer.
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
            store::stats(&conn)
        })
        .await
        .map_err(|e| StoreError::Io(format!("stats task failed: {e}")))?
    }

    /// Recounts the undelivered rows that `max_pending` is checked against.
    pub async fn count_open(&self) -> Result<usize, StoreError> {
        match self.call(Request::CountOpen).await? {
            Response::Count(n) => Ok(n),
            other => unreachable_response(other),
        }
    }

    /// After workers were aborted: their rows in flight go back to pending.
    pub async fn recover_inflight(&self) -> Result<usize, StoreError> {
        match self.call(Request::RecoverInflight).await? {
            Response::Count(n) => Ok(n),
            other => unreachable_response(other),
        }
    }

    /// Proves the store takes a write.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.call(Request::Probe).await.map(|_| ())
    }

    pub async fn prune(&self) -> Result<usize, StoreError> {
        match self.call(Request::Prune).await? {
            Response::Count(n) => Ok(n),
            other => unreachable_response(other),
        }
    }
}

fn unreachable_response<T>(other: Response) -> Result<T, StoreError> {
    Err(StoreError::Io(format!(
        "outbox answered with the wrong response: {other:?}"
    )))
}

fn run(
    mut store: Store,
    checkpointer: Checkpointer,
    mut rx: mpsc::Receiver<Cmd>,
    limits: Limits,
    mut open: u64,
    wake: watch::Sender<u64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut busy = false;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        drain(&mut rx, &mut batch);
        // Group commit under load (PostgreSQL's commit_delay): when the last fsynced batch
        // was large, webhooks are arriving fast, and a moment's wait lets one fsync and
        // one write of the shared pages serve many more of them.
        if busy && batch.len() < MAX_BATCH && durability(&batch) == Durability::Fsync {
            thread::sleep(GATHER);
            drain(&mut rx, &mut batch);
        }
        busy = durability(&batch) == Durability::Fsync && batch.len() >= BUSY_BATCH;
        let now = crate::domain::time::now_ms();
        let results: Vec<Result<Response, StoreError>> =
            match exec_batch(&mut store, &batch, &limits, now, &mut open) {
                Ok(responses) => responses.into_iter().map(Ok).collect(),
                // One bad request must not fail its neighbours: run each alone.
                Err(_) => batch
                    .iter()
                    .map(|cmd| {
                        exec_batch(
                            &mut store,
                            std::slice::from_ref(cmd),
                            &limits,
                            now,
                            &mut open,
                        )?
                        .pop()
                        .ok_or(StoreError::Closed)
                    })
                    .collect(),
            };
        let mut woke = false;
        for (cmd, result) in batch.drain(..).zip(results) {
            woke |= makes_work(&cmd.req, &result);
            let _ = cmd.reply.send(result);
        }
        if woke {
            wake.send_modify(|g| *g = g.wrapping_add(1));
        }
        // After the replies: a checkpoint here delays the next batch, not this one.
        if checkpointer.after_commit() == After::CheckpointHere {
            if let Err(e) = store.checkpoint() {
                tracing::error!(error = %e, "WAL checkpoint failed");
            }
        }
    }
}

/// Runs a batch in one transaction, fsynced when it must be. Err means nothing was
/// committed.
fn exec_batch(
    store: &mut Store,
    batch: &[Cmd],
    limits: &Limits,
    now: i64,
    open: &mut u64,
) -> Result<Vec<Response>, StoreError> {
    store.set_durability(durability(batch))?;
    store.transact(batch.iter().map(|c| &c.req), limits, now, open)
}

/// An acknowledgement promises the notification survives a power loss, so a batch that
/// accepts webhooks is fsynced before its replies go out. Claims and outcomes survive a
/// crash of amrelay without an fsync (WAL); after a power loss the worst case is one
/// more attempt of a delivery, the same as for an attempt in flight.
fn durability(batch: &[Cmd]) -> Durability {
    if batch
        .iter()
        .any(|c| matches!(c.req, Request::Enqueue(_) | Request::Requeue(_)))
    {
        Durability::Fsync
    } else {
        Durability::CrashSafe
    }
}

/// Whether workers should look at the store again. A delivery handed straight to its
/// worker gives them nothing to claim, so waking them for it would only cost a claim.
fn drain(rx: &mut mpsc::Receiver<Cmd>, batch: &mut Vec<Cmd>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(cmd) => batch.push(cmd),
            Err(_) => break,
        }
    }
}

fn makes_work(req: &Request, result: &Result<Response, StoreError>) -> bool {
    match (req, result) {
        (Request::Enqueue(_), Ok(Response::Enqueued(Enqueued::Accepted { deliveries, .. }))) => {
            deliveries.iter().any(|d| !d.handed_off)
        }
        (Request::Complete { .. }, Ok(Response::Completed { wakes })) => *wakes,
        (Request::Requeue(_) | Request::RecoverInflight, Ok(Response::Count(n))) => *n > 0,
        _ => false,
    }
}
