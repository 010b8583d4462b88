//! The writer thread: owns the SQLite connection and commits requests in groups.

use std::thread;

use tokio::sync::{mpsc, watch};

use super::checkpoint::{After, Checkpointer};
use super::request::Request;
use super::store::{Durability, Store};
use crate::domain::time::now_ms;
use crate::outbox::Limits;
use crate::telemetry::LogEvery;

/// Most requests one transaction takes; enough to amortise the fsync, small enough to
/// keep the first request's wait short.
const MAX_BATCH: usize = 512;
/// An fsynced batch this large means webhooks arrive faster than commits finish...
const BUSY_BATCH: usize = 8;
/// ...so the next such batch waits this long for company before it commits.
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

pub(super) fn run(
    mut store: Store,
    checkpointer: Option<Checkpointer>,
    mut rx: mpsc::Receiver<Request>,
    limits: Limits,
    mut open: u64,
    wake: watch::Sender<u64>,
) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    // A full disk fails every checkpoint; one line per 10 s says so, with a count.
    let checkpoint_failed = LogEvery::new(10_000);
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
        let now = now_ms();
        let mut woke = false;
        match exec_batch(&mut store, &mut batch, &limits, now, &mut open) {
            Ok(()) => {
                for req in batch.drain(..) {
                    woke |= req.makes_work();
                    req.answer(None);
                }
            }
            // One bad request must not fail its neighbours: run each alone.
            Err(_) => {
                for mut req in batch.drain(..) {
                    let alone = std::slice::from_mut(&mut req);
                    let failed = exec_batch(&mut store, alone, &limits, now, &mut open).err();
                    woke |= failed.is_none() && req.makes_work();
                    req.answer(failed);
                }
            }
        }
        if woke {
            wake.send_modify(|g| *g = g.wrapping_add(1));
        }
        // After the replies: a checkpoint here delays the next batch, not this one.
        let behind = checkpointer
            .as_ref()
            .is_some_and(|c| c.after_commit() == After::CheckpointHere);
        if behind {
            if let Err(e) = store.checkpoint() {
                if let Some(suppressed) = checkpoint_failed.allow(now_ms()) {
                    tracing::error!(error = %e, suppressed, "WAL checkpoint failed");
                }
            }
        }
    }
}

/// Runs a batch in one transaction, fsynced when it must be. Err means nothing was
/// committed, and no request holds an answer.
fn exec_batch(
    store: &mut Store,
    batch: &mut [Request],
    limits: &Limits,
    now: i64,
    open: &mut u64,
) -> Result<(), crate::outbox::StoreError> {
    store.set_durability(durability(batch))?;
    store.transact(batch, limits, now, open)
}

/// An acknowledgement promises the notification survives a power loss, so a batch that
/// accepts webhooks is fsynced before its replies go out. Claims and outcomes survive a
/// crash of amrelay without an fsync (WAL); after a power loss the worst case is one
/// more attempt of a delivery, the same as for an attempt in flight.
fn durability(batch: &[Request]) -> Durability {
    if batch.iter().any(Request::needs_fsync) {
        Durability::Fsync
    } else {
        Durability::CrashSafe
    }
}

fn drain(rx: &mut mpsc::Receiver<Request>, batch: &mut Vec<Request>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(req) => batch.push(req),
            Err(_) => break,
        }
    }
}
