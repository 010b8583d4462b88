//! Delivery: one worker per channel claims due deliveries from the outbox, waits for the
//! channel's rate limit, sends through the sink, and records what came of it: delivered,
//! retry later (backoff, or the far side's Retry-After), fallback, or dead letter.

mod circuit;
mod ownership;
pub(crate) mod retry;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::Notification;
use crate::outbox::{Epoch, Outbox, Stored};
use crate::sinks::{Sink, SinkContext};
use crate::telemetry::Metrics;
use worker::ChannelWorker;
use worker::{Handoff, Job};

/// Deliveries a worker may hold per attempt it may have in flight (`concurrency`): the
/// rest wait in memory for a free sending slot, stored as in flight. A slot that also had
/// to cover the wait for the outbox's commit (a hand-off is reserved before its webhook is
/// committed) or for a claim spent most of its time waiting on the store, and under load
/// deliveries fell behind with the channel idle.
const HELD_PER_SENDING: usize = 4;

/// The running workers of one configuration.
pub(crate) struct Deliverer {
    stop: CancellationToken,
    workers: Vec<JoinHandle<()>>,
    /// Keeps this instance's claims on its channels (`ownership`); told to give them up
    /// only after the workers stopped, so that no attempt of ours outlives our term.
    terms: JoinHandle<()>,
    release: CancellationToken,
    lanes: Lanes,
}

/// Each worker's slots and hand-off queue, for ingest's fast path.
#[derive(Clone, Default)]
pub(crate) struct Lanes(Arc<HashMap<String, Lane>>);

#[derive(Clone)]
struct Lane {
    /// Deliveries the worker holds: sending, or waiting for one of its sending slots.
    permits: Arc<Semaphore>,
    /// Slots hand-offs leave to the worker's own claims, so retries and backlog are
    /// not starved by a steady stream of fresh notifications.
    keep_free: usize,
    tx: mpsc::UnboundedSender<Handoff>,
    /// The term under which this instance owns the channel now, if it does: only the
    /// owner's worker takes hand-offs (`ownership`).
    term: Arc<AtomicI64>,
}

/// Sending slots a fresh notification reserved before its commit, one per channel that
/// had one free ([`Lanes::reserve`]).
pub(crate) struct Reservation(Vec<Option<(OwnedSemaphorePermit, Epoch)>>);

impl Reservation {
    /// Per channel: the owner's term under which the delivery may be stored in flight
    /// and handed over, if it may.
    pub(crate) fn fast(&self) -> Vec<Option<Epoch>> {
        self.0.iter().map(|r| r.as_ref().map(|(_, e)| *e)).collect()
    }
}

impl Lanes {
    /// A free slot on each channel's worker that has one now. A delivery with a slot
    /// skips the outbox's claim and the re-parse of its payload.
    pub(crate) fn reserve(&self, channels: &[String]) -> Reservation {
        Reservation(channels.iter().map(|c| self.try_reserve(c)).collect())
    }

    fn try_reserve(&self, channel: &str) -> Option<(OwnedSemaphorePermit, Epoch)> {
        let lane = self.0.get(channel)?;
        let epoch = ownership::lane_epoch(&lane.term)?;
        if lane.permits.available_permits() <= lane.keep_free {
            return None;
        }
        let permit = lane.permits.clone().try_acquire_owned().ok()?;
        Some((permit, epoch))
    }

    /// After the commit: gives each delivery the outbox stored in flight to its worker.
    /// Returns the deliveries (id, term) no worker took (it went away in a reload or shutdown): the caller
    /// must release them to pending.
    pub(crate) fn hand_off(
        &self,
        reserved: Reservation,
        channels: &[String],
        stored: &[Stored],
        notification: Arc<Notification>,
        created_at: i64,
        enqueued_at: i64,
    ) -> Vec<(i64, Epoch)> {
        let mut orphans = Vec::new();
        for ((channel, stored), permit) in channels.iter().zip(stored).zip(reserved.0) {
            let (true, Some((permit, epoch))) = (stored.handed_off, permit) else {
                continue;
            };
            let job = Job {
                id: stored.id,
                epoch,
                attempts: 1,
                created_at,
                enqueued_at,
                notification: notification.clone(),
            };
            let sent = match self.0.get(channel) {
                Some(lane) => lane.tx.send(Handoff { job, permit }).is_ok(),
                None => false,
            };
            if !sent {
                orphans.push((stored.id, epoch));
            }
        }
        orphans
    }
}

impl Deliverer {
    /// Every channel's sink, built before any worker starts, so that a channel that
    /// cannot be built leaves the running configuration as it was.
    pub(crate) fn build_sinks(settings: &Settings, ctx: &SinkContext) -> anyhow::Result<Vec<Sink>> {
        settings
            .channels
            .iter()
            .map(|c| Sink::build(c, ctx).map_err(|e| anyhow::anyhow!("channels.{}: {e}", c.name)))
            .collect()
    }

    /// One worker per channel; `sinks` from [`Deliverer::build_sinks`], in channel order.
    pub(crate) fn start(
        settings: &Settings,
        sinks: Vec<Sink>,
        outbox: &Outbox,
        metrics: &Arc<Metrics>,
    ) -> Self {
        let stop = CancellationToken::new();
        let mut lanes = HashMap::new();
        let mut workers = Vec::new();
        let mut terms = Vec::new();
        for (c, sink) in settings.channels.iter().zip(sinks) {
            let (kind, provider) = c.kind.describe();
            metrics.init_channel(&c.name, kind, provider);
            if let crate::config::ChannelKind::Promotion(p) = &c.kind {
                metrics.init_target(&p.target);
            }
            let held = c.policy.concurrency as usize * HELD_PER_SENDING;
            let permits = Arc::new(Semaphore::new(held));
            let (tx, rx) = mpsc::unbounded_channel();
            let here = metrics
                .delivered_here
                .get_or_create(&Metrics::channel(&c.name))
                .clone();
            let (term, owned, lane_term) = ownership::Term::new(&c.name, here);
            terms.push(term);
            lanes.insert(
                c.name.clone(),
                Lane {
                    permits: permits.clone(),
                    keep_free: held / 4,
                    tx,
                    term: lane_term,
                },
            );
            let w = ChannelWorker::new(c, sink, outbox.clone(), owned.clone(), metrics.clone());
            workers.push(tokio::spawn(Arc::new(w).run(
                permits,
                rx,
                owned,
                stop.clone(),
            )));
        }
        let release = CancellationToken::new();
        let terms = tokio::spawn(ownership::keep(outbox.clone(), terms, release.clone()));
        Deliverer {
            stop,
            workers,
            terms,
            release,
            lanes: Lanes(Arc::new(lanes)),
        }
    }

    pub(crate) fn lanes(&self) -> Lanes {
        self.lanes.clone()
    }

    /// Stops claiming, lets attempts in flight finish within `grace`, then abandons the
    /// rest: they stay in flight in the store and are tried again at the next start.
    /// Returns true when workers had to be aborted (their rows are still in flight).
    pub(crate) async fn shutdown(self, grace: Duration) -> bool {
        self.stop.cancel();
        let aborts: Vec<_> = self.workers.iter().map(|w| w.abort_handle()).collect();
        let all = futures_join_all(self.workers);
        let finished = tokio::time::timeout(grace, all).await.is_ok();
        if !finished {
            tracing::warn!(?grace, "deliveries still in flight at the end of the grace period were abandoned; they will be tried again");
            for a in aborts {
                a.abort();
            }
        }
        self.release.cancel();
        let _ = self.terms.await;
        !finished
    }
}

async fn futures_join_all(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
