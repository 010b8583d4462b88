//! Which channels this instance delivers. In a shared store one instance at a time owns a
//! channel, under a lease it renews (a third of the lease apart); that is how a channel's
//! rate limit, concurrency, Retry-After pause, circuit and per-group order hold for the
//! channel as a whole, with no limiter shared between instances. A lapsed lease (an
//! instance that died, or lost the database) is taken over by another instance, whose
//! new epoch fences the old one's outcomes. With the SQLite store this instance owns
//! every channel for good, under epoch 0. docs/high-availability.md has the failure
//! modes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::outbox::{Epoch, Outbox};

/// `Term::lane` while the channel is not this instance's.
const NOT_OWNED: i64 = -1;

/// One channel's term as this instance sees it: the worker watches `watch`, ingest's
/// fast path reads `lane` (no lock on the hot path).
pub(super) struct Term {
    pub(super) channel: String,
    watch: watch::Sender<Option<Epoch>>,
    lane: Arc<AtomicI64>,
    /// `amrelay_channel_delivered_here` for the channel.
    gauge: Gauge,
}

impl Term {
    pub(super) fn new(
        channel: &str,
        gauge: Gauge,
    ) -> (Term, watch::Receiver<Option<Epoch>>, Arc<AtomicI64>) {
        let (watch, rx) = watch::channel(None);
        let lane = Arc::new(AtomicI64::new(NOT_OWNED));
        let term = Term {
            channel: channel.to_owned(),
            watch,
            lane: lane.clone(),
            gauge,
        };
        (term, rx, lane)
    }

    fn set(&self, epoch: Option<Epoch>) {
        self.lane
            .store(epoch.unwrap_or(NOT_OWNED), Ordering::Release);
        self.watch.send_replace(epoch);
        self.gauge.set(i64::from(epoch.is_some()));
    }

    fn get(&self) -> Option<Epoch> {
        *self.watch.borrow()
    }
}

/// The epoch a lane's worker owns its channel under, if it does now.
pub(super) fn lane_epoch(lane: &AtomicI64) -> Option<Epoch> {
    Some(lane.load(Ordering::Acquire)).filter(|e| *e != NOT_OWNED)
}

/// Keeps the terms until `stop`, then gives the channels up so that another instance
/// takes them over at once instead of after the lease.
pub(super) async fn keep(outbox: Outbox, terms: Vec<Term>, stop: CancellationToken) {
    let Some(lease) = outbox.lease() else {
        // One process on its own store: every channel is ours, for good.
        for t in &terms {
            t.set(Some(0));
        }
        stop.cancelled().await;
        return;
    };
    // Renewed a third of the lease apart, so that two renewals may fail before it lapses;
    // a lapsed lease is looked for twice as often, for a quick takeover.
    let renew_every = lease / 3;
    let look_every = lease / 6;
    // Trusted until 90% of the lease after the renewal was sent: the database counts its
    // lease from when it ran the renewal, which is later, so the owner always stops
    // before anyone else may start (clocks only need to run at about the same rate).
    let trust = lease * 9 / 10;
    let mut deadlines: Vec<Option<Instant>> = vec![None; terms.len()];
    // The first pass renews at once.
    let mut renewed_at = Instant::now()
        .checked_sub(renew_every)
        .unwrap_or_else(Instant::now);
    loop {
        let now = Instant::now();
        let renew = now.duration_since(renewed_at) >= renew_every;
        if renew {
            renewed_at = now;
        }
        for (t, deadline) in terms.iter().zip(deadlines.iter_mut()) {
            match t.get() {
                Some(epoch) if renew => {
                    let sent = Instant::now();
                    match outbox.renew(&t.channel, epoch).await {
                        Ok(true) => *deadline = Some(sent + trust),
                        Ok(false) => {
                            tracing::warn!(channel = %t.channel, epoch, "channel taken over by another instance; stopping its deliveries here");
                            lose(t, deadline);
                        }
                        Err(e) => {
                            tracing::warn!(channel = %t.channel, error = %e, "cannot renew the claim on the channel");
                        }
                    }
                }
                Some(_) => {}
                None => {
                    let sent = Instant::now();
                    match outbox.acquire(&t.channel).await {
                        Ok(Some(epoch)) => {
                            tracing::info!(channel = %t.channel, epoch, "delivering this channel from this instance");
                            *deadline = Some(sent + trust);
                            t.set(Some(epoch));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!(channel = %t.channel, error = %e, "cannot claim the channel")
                        }
                    }
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                tracing::warn!(channel = %t.channel, "claim on the channel not renewed in time (database unreachable?); stopping its deliveries here");
                lose(t, deadline);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(look_every.min(renew_every)) => {}
        }
    }
    for t in &terms {
        let Some(epoch) = t.get() else { continue };
        t.set(None);
        if let Err(e) = outbox.release(&t.channel, epoch).await {
            tracing::warn!(channel = %t.channel, error = %e, "cannot give the channel up; another instance takes it over when the lease ends");
        }
    }
}

fn lose(t: &Term, deadline: &mut Option<Instant>) {
    *deadline = None;
    t.set(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_reads_the_term_it_was_given() {
        let gauge = Gauge::default();
        let (t, rx, lane) = Term::new("c", gauge.clone());
        assert_eq!(lane_epoch(&lane), None);
        t.set(Some(7));
        assert_eq!(lane_epoch(&lane), Some(7));
        assert_eq!(*rx.borrow(), Some(7));
        assert_eq!(gauge.get(), 1);
        t.set(None);
        assert_eq!(gauge.get(), 0);
        assert_eq!(lane_epoch(&lane), None);
        assert_eq!(*rx.borrow(), None);
    }
}
