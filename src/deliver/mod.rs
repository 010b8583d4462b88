//! Delivery: one worker per channel claims due deliveries from the outbox, waits for the
//! channel's rate limit, sends through the sink, and records what came of it: delivered,
//! retry later (backoff, or the far side's Retry-After), fallback, or dead letter.

pub mod retry;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::outbox::Outbox;
use crate::sinks::Sink;
use crate::telemetry::Metrics;
use worker::ChannelWorker;

/// The running workers of one configuration.
pub struct Deliverer {
    stop: CancellationToken,
    workers: Vec<JoinHandle<()>>,
}

impl Deliverer {
    pub fn start(
        settings: &Settings,
        outbox: &Outbox,
        metrics: &Arc<Metrics>,
        client: &reqwest::Client,
    ) -> Self {
        let stop = CancellationToken::new();
        let workers = settings
            .channels
            .iter()
            .map(|c| {
                metrics.init_channel(&c.name);
                let w =
                    ChannelWorker::new(c, Sink::build(c, client), outbox.clone(), metrics.clone());
                tokio::spawn(Arc::new(w).run(stop.clone()))
            })
            .collect();
        Deliverer { stop, workers }
    }

    /// Stops claiming, lets attempts in flight finish within `grace`, then abandons the
    /// rest: they stay in flight in the store and are tried again at the next start.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        let aborts: Vec<_> = self.workers.iter().map(|w| w.abort_handle()).collect();
        let all = futures_join_all(self.workers);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(?grace, "deliveries still in flight at the end of the grace period; they will be retried at the next start");
            for a in aborts {
                a.abort();
            }
        }
    }
}

async fn futures_join_all(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
