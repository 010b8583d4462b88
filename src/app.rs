//! Builds every part from the settings, binds, and runs until the shutdown future fires.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::collector::Collector;
use crate::config::Settings;
use crate::deliver::Deliverer;
use crate::ingest::{self, AppState, Pipeline};
use crate::outbox::{now_ms, Limits, Outbox};
use crate::pipeline::Router as Routes;
use crate::sinks;
use crate::telemetry::Metrics;

const STATS_EVERY: Duration = Duration::from_secs(2);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub struct App {
    listener: TcpListener,
    settings: Settings,
    state: Arc<AppState>,
    deliverer: Arc<Mutex<Option<Deliverer>>>,
    client: reqwest::Client,
    /// The metric collection sidecar, when `[collector]` has targets.
    collector: Option<Collector>,
}

/// Applies a new configuration to a running app (SIGHUP).
#[derive(Clone)]
pub struct Reloader {
    current: Arc<Mutex<Settings>>,
    state: Arc<AppState>,
    deliverer: Arc<Mutex<Option<Deliverer>>>,
    client: reqwest::Client,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let limits = Limits::of(&settings);
        let (outbox, _writer) =
            Outbox::open(&settings.storage.path, limits).with_context(|| {
                format!(
                    "opening the store under {}",
                    settings.storage.path.display()
                )
            })?;
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding server.listen {}", settings.server.listen))?;
        let metrics = Arc::new(Metrics::new());
        let client = sinks::http_client();
        let deliverer = Deliverer::start(&settings, &outbox, &metrics, &client);
        let collector = if settings.collector.enabled() {
            Some(Collector::start(&settings, &metrics, &client)?)
        } else {
            None
        };
        let state = Arc::new(AppState::new(
            pipeline(&settings, &deliverer),
            outbox,
            metrics,
        ));
        Ok(App {
            listener,
            settings,
            state,
            deliverer: Arc::new(Mutex::new(Some(deliverer))),
            client,
            collector,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.settings.server.listen)
    }

    pub fn reloader(&self) -> Reloader {
        Reloader {
            current: Arc::new(Mutex::new(self.settings.clone())),
            state: self.state.clone(),
            deliverer: self.deliverer.clone(),
            client: self.client.clone(),
        }
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes requests in flight,
    /// and gives deliveries in flight `server.shutdown_grace` to finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        tracing::info!(%addr, store = %self.settings.storage.path.display(), channels = self.settings.channels.len(), "amrelay listening");
        warn_unconfigured(&self.state, &self.settings).await;
        let housekeeping = tokio::spawn(housekeeping(self.state.clone()));
        axum::serve(self.listener, ingest::router(self.state.clone()))
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")?;
        tracing::info!("stopped accepting webhooks; finishing deliveries in flight");
        housekeeping.abort();
        if let Some(d) = self.deliverer.lock().await.take() {
            d.shutdown(self.settings.server.shutdown_grace).await;
        }
        if let Some(c) = self.collector {
            c.shutdown().await;
        }
        tracing::info!("amrelay stopped");
        Ok(())
    }
}

impl Reloader {
    /// Swaps routes, auth and channels. The listen address and the store need a restart.
    pub async fn reload(&self, new: Settings) {
        let mut current = self.current.lock().await;
        let mut slot = self.deliverer.lock().await;
        let Some(old) = slot.take() else {
            tracing::warn!("SIGHUP during shutdown: reload skipped");
            return;
        };
        for (key, changed) in [
            ("server.listen", new.server.listen != current.server.listen),
            ("storage.path", new.storage.path != current.storage.path),
            (
                "storage.max_pending",
                new.storage.max_pending != current.storage.max_pending,
            ),
            (
                "storage.retention",
                new.storage.retention != current.storage.retention,
            ),
            ("dedup.window", new.dedup_window != current.dedup_window),
        ] {
            if changed {
                tracing::warn!(key, "changed, but takes effect only at the next start");
            }
        }
        if old.shutdown(current.server.shutdown_grace).await {
            // The aborted attempts' rows are in flight with nobody attempting them.
            if let Err(e) = self.state.outbox.recover_inflight().await {
                tracing::error!(error = %e, "cannot return abandoned deliveries to pending; they are retried at the next start");
            }
        }
        let started = Deliverer::start(&new, &self.state.outbox, &self.state.metrics, &self.client);
        self.state.replace_pipeline(pipeline(&new, &started));
        *slot = Some(started);
        tracing::info!(
            channels = new.channels.len(),
            routes = new.routes.len(),
            "configuration reloaded"
        );
        warn_unconfigured(&self.state, &new).await;
        *current = new;
    }
}

/// Deliveries waiting for a channel the configuration no longer has are never sent.
async fn warn_unconfigured(state: &AppState, settings: &Settings) {
    if let Ok(stats) = state.outbox.stats().await {
        for c in stats
            .channels
            .iter()
            .filter(|c| settings.channel(&c.channel).is_none())
        {
            tracing::warn!(channel = %c.channel, undelivered = c.open, "deliveries wait for a channel that is not configured; add it back to deliver them");
        }
    }
}

fn pipeline(s: &Settings, d: &Deliverer) -> Pipeline {
    Pipeline {
        auth: s.server.auth.clone(),
        routes: Routes::new(s.routes.clone()),
        max_body: s.server.max_body,
        lanes: d.lanes(),
    }
}

/// Refreshes the queue gauges and prunes old rows.
async fn housekeeping(state: Arc<AppState>) {
    let mut stats = tokio::time::interval(STATS_EVERY);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut seen: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            _ = stats.tick() => match state.outbox.stats().await {
                Ok(s) => {
                    let m = &state.metrics;
                    let now = now_ms();
                    // Channels that emptied read 0, not their last value.
                    for c in seen.drain(..) {
                        m.queue_depth.get_or_create(&Metrics::channel(&c)).set(0);
                        m.oldest_pending_age.get_or_create(&Metrics::channel(&c)).set(0.0);
                    }
                    for c in &s.channels {
                        let l = Metrics::channel(&c.channel);
                        m.queue_depth.get_or_create(&l).set(c.open as i64);
                        let age = c.oldest_created_at.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
                        m.oldest_pending_age.get_or_create(&l).set(age);
                        seen.push(c.channel.clone());
                    }
                    m.dead_letters.set(s.dead as i64);
                }
                Err(e) => tracing::error!(error = %e, "cannot read outbox stats"),
            },
            _ = prune.tick() => match state.outbox.prune().await {
                Ok(n) if n > 0 => tracing::debug!(rows = n, "pruned old rows"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot prune the outbox"),
            },
        }
    }
}
