//! The metric collection sidecar: scrape targets, buffer every scrape on disk per
//! remote-write endpoint, and send it there in order, so that a Prometheus that was down
//! gets the samples it missed when it comes back.
//!
//! ```text
//! scrape (per target: fetch, parse, label, health series)
//!     -> buffer (per endpoint: SQLite, bounded by bytes and age)
//!     -> sender (per endpoint: one batch at a time, resent unchanged until answered)
//! ```
//!
//! Runs inside `amrelay serve` when `[collector]` has targets, or alone with
//! `amrelay collect`.

pub mod buffer;
pub mod parse;
pub mod remote_write;
pub mod scrape;
pub mod sender;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::telemetry::Metrics;
use buffer::{Bounds, Buffer};
use scrape::Scraper;
use sender::RemoteWriter;

/// The running collector: one task per target and one per endpoint.
pub struct Collector {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Collector {
    /// Opens every endpoint's buffer and starts scraping and sending.
    pub fn start(
        settings: &Settings,
        metrics: &Arc<Metrics>,
        client: &reqwest::Client,
    ) -> anyhow::Result<Collector> {
        let c = &settings.collector;
        let dir = c.buffer_dir(&settings.storage.path);
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut endpoints = Vec::new();
        for e in &c.remote_write {
            let path = dir.join(format!("{}.db", e.name));
            let buffer = Buffer::open(
                &path,
                Bounds {
                    max_bytes: e.max_bytes,
                    max_age: e.max_age,
                },
            )
            .with_context(|| format!("opening the buffer of remote_write {:?}", e.name))?;
            let stats = buffer.stats();
            if stats.samples > 0 {
                tracing::info!(endpoint = %e.name, samples = stats.samples, bytes = stats.bytes, "buffered samples from an earlier run will be sent");
            }
            let ep = Arc::new(RemoteWriter::new(e.clone(), buffer));
            tasks.spawn(
                ep.clone()
                    .run(client.clone(), metrics.clone(), stop.clone()),
            );
            endpoints.push(ep);
        }
        for t in &c.targets {
            let scraper = Scraper {
                target: t.clone(),
                extra_labels: c.labels.clone(),
                client: client.clone(),
                metrics: metrics.clone(),
                endpoints: endpoints.clone(),
            };
            tasks.spawn(scraper.run(stop.clone()));
        }
        tracing::info!(
            targets = c.targets.len(),
            endpoints = c.remote_write.len(),
            buffer = %dir.display(),
            "collector started"
        );
        Ok(Collector { stop, tasks })
    }

    /// Stops scraping and sending. Whatever was not sent stays buffered for the next run.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        tracing::info!("collector stopped");
    }
}

/// `amrelay collect`: the collector alone, with `/metrics` and `/healthz` on
/// `server.listen`, until `shutdown` resolves.
pub async fn run_alone(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if !settings.collector.enabled() {
        anyhow::bail!("collector.targets: `amrelay collect` needs at least one target");
    }
    // Bound first: a taken port stops it before anything says it started.
    let listener = crate::net::listen("server.listen", settings.server.listen).await?;
    let metrics = Arc::new(Metrics::new());
    let collector = Collector::start(&settings, &metrics, &crate::net::client()?)?;
    tracing::info!(addr = %settings.server.listen, "collector serving /metrics");
    let m = metrics.clone();
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| async move {
                let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
                let (content_type, body) = m.exposition(accept);
                ([(header::CONTENT_TYPE, content_type)], body).into_response()
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP");
    collector.shutdown().await;
    served
}
