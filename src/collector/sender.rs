//! One endpoint: its buffer, and the loop that sends the buffer's oldest batch until the
//! endpoint answers. Batches go one at a time, so samples arrive in order; a batch that
//! failed is resent as it was (Prometheus 2.42 rolls back a whole request on one
//! out-of-order sample, so a batch merged with newer samples could be refused for good).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::buffer::{Batch, Buffer, Dropped, Stats};
use super::remote_write;
use crate::config::RemoteWriteSettings;
use crate::domain::time::now_ms;
use crate::net::Outcome;
use crate::telemetry::metrics::CollectorMetrics;
use crate::telemetry::Metrics;

/// How often an idle sender refreshes its gauges and applies the age bound.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// One remote-write endpoint: its settings, its on-disk buffer, and the wake-up of the
/// task that sends to it.
pub struct RemoteWriter {
    pub settings: RemoteWriteSettings,
    buffer: Arc<Mutex<Buffer>>,
    wake: Notify,
}

impl RemoteWriter {
    pub fn new(settings: RemoteWriteSettings, buffer: Buffer) -> RemoteWriter {
        RemoteWriter {
            settings,
            buffer: Arc::new(Mutex::new(buffer)),
            wake: Notify::new(),
        }
    }

    /// Runs `f` on the buffer off the async workers (SQLite blocks).
    async fn with_buffer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Buffer) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let buffer = self.buffer.clone();
        tokio::task::spawn_blocking(move || {
            let mut b = buffer.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut b)
        })
        .await
        .map_err(|e| anyhow::anyhow!("buffer task stopped: {e}"))
    }

    /// Stores one scrape; a scrape the buffer cannot take is counted as dropped.
    pub async fn append(&self, at: i64, samples: u64, compressed: Vec<u8>, metrics: &Metrics) {
        let name = &self.settings.name;
        let result = self
            .with_buffer(move |b| {
                let r = b.append(at, samples, &compressed, now_ms());
                (r, b.stats())
            })
            .await;
        match result {
            Ok((Ok(dropped), stats)) => {
                self.count_dropped(dropped, metrics);
                self.gauges(stats, metrics);
            }
            Ok((Err(e), _)) | Err(e) => {
                tracing::error!(endpoint = %name, error = format!("{e:#}"), "cannot buffer a scrape; its samples are dropped");
                metrics
                    .collector
                    .drop_samples(name, "buffer_error", samples);
            }
        }
        self.wake.notify_one();
    }

    fn count_dropped(&self, d: Dropped, metrics: &Metrics) {
        let name = &self.settings.name;
        if d.full + d.too_old > 0 {
            tracing::warn!(endpoint = %name, buffer_full = d.full, too_old = d.too_old, "buffer bound reached: oldest samples dropped");
        }
        metrics.collector.drop_samples(name, "buffer_full", d.full);
        metrics.collector.drop_samples(name, "too_old", d.too_old);
    }

    fn gauges(&self, s: Stats, metrics: &Metrics) {
        let l = CollectorMetrics::endpoint(&self.settings.name);
        let m = &metrics.collector;
        m.buffered.get_or_create(&l).set(s.samples as i64);
        m.buffer_bytes.get_or_create(&l).set(s.bytes as i64);
        let age = s
            .oldest_ts
            .map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
        m.oldest_age.get_or_create(&l).set(age);
    }

    /// Applies the age bound and refreshes the gauges.
    async fn tidy(&self, metrics: &Metrics) {
        match self.with_buffer(|b| (b.enforce(now_ms()), b.stats())).await {
            Ok((Ok(d), stats)) => {
                self.count_dropped(d, metrics);
                self.gauges(stats, metrics);
            }
            Ok((Err(e), _)) | Err(e) => {
                tracing::error!(endpoint = %self.settings.name, error = format!("{e:#}"), "cannot apply the buffer bounds")
            }
        }
    }

    /// Sends the buffer's batches until `stop`.
    pub async fn run(
        self: Arc<Self>,
        client: reqwest::Client,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) {
        let name = self.settings.name.clone();
        metrics.collector.init_endpoint(&name);
        self.tidy(&metrics).await;
        let max = self.settings.batch_size;
        while !stop.is_cancelled() {
            let batch = match self.with_buffer(move |b| b.next_batch(max)).await {
                Ok(Ok(Some(b))) => b,
                Ok(Ok(None)) => {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_TICK) => self.tidy(&metrics).await,
                    }
                    continue;
                }
                Ok(Err(e)) | Err(e) => {
                    tracing::error!(endpoint = %name, error = format!("{e:#}"), "cannot read the buffer");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(IDLE_TICK) => continue,
                    }
                }
            };
            if !self.deliver(&batch, &client, &metrics, &stop).await {
                return;
            }
            self.tidy(&metrics).await;
        }
    }

    /// Sends `batch`, unchanged, until it is answered or the bounds drop it. False when
    /// stopped first.
    async fn deliver(
        &self,
        batch: &Batch,
        client: &reqwest::Client,
        metrics: &Metrics,
        stop: &CancellationToken,
    ) -> bool {
        let name = &self.settings.name;
        let duration = metrics
            .collector
            .send_duration
            .get_or_create(&CollectorMetrics::endpoint(name))
            .clone();
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let outcome = tokio::select! {
                _ = stop.cancelled() => return false,
                o = remote_write::send(client, &self.settings, batch.body.clone()) => o,
            };
            duration.observe(started.elapsed().as_secs_f64());
            metrics.collector.send(name, outcome.kind());
            let retry_after = match outcome {
                Outcome::Delivered => {
                    if failures > 0 {
                        tracing::info!(endpoint = %name, failures, "remote write succeeds again");
                    }
                    let span = batch.span();
                    if let Ok(Ok(true)) = self.with_buffer(move |buf| buf.remove(span)).await {
                        metrics
                            .collector
                            .sent
                            .get_or_create(&CollectorMetrics::endpoint(name))
                            .inc_by(batch.samples);
                    }
                    return true;
                }
                Outcome::Permanent { reason, detail } => {
                    tracing::error!(endpoint = %name, reason, error = %detail, samples = batch.samples, "remote write refused the batch for good; its samples are dropped");
                    let span = batch.span();
                    if let Ok(Ok(true)) = self.with_buffer(move |buf| buf.remove(span)).await {
                        metrics
                            .collector
                            .drop_samples(name, "rejected", batch.samples);
                    }
                    return true;
                }
                Outcome::Retryable {
                    reason,
                    detail,
                    retry_after,
                } => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(endpoint = %name, reason, error = %detail, "remote write failed; the batch is kept and resent");
                    }
                    retry_after
                }
            };
            let wait = remote_write::retry_delay(failures, retry_after, &self.settings);
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
            // The bounds may have dropped the batch while it waited (counted there).
            self.tidy(metrics).await;
            let span = batch.span();
            if !matches!(self.with_buffer(move |buf| buf.holds(span)).await, Ok(true)) {
                return true;
            }
        }
    }
}
