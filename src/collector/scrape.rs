//! One target's scrape loop: fetch within the timeout and the body limit, parse, label,
//! add the health series Prometheus would (`up`, `scrape_duration_seconds`,
//! `scrape_samples_scraped`), and append the scrape to every endpoint's buffer.
//!
//! A failed scrape (refused, timed out, too large, not the format) still records its
//! health series with `up` 0; nothing a target sends can make amrelay hold more than
//! `max_body` of it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::parse::{self, Format};
use super::remote_write::{self, Label, TimeSeries, WriteRequest};
use super::sender::RemoteWriter;
use crate::config::TargetSettings;
use crate::domain::time::now_ms;
use crate::telemetry::metrics::CollectorMetrics;
use crate::telemetry::Metrics;

/// What Prometheus 2.42 asks for: OpenMetrics first, then the text format.
const ACCEPT_VALUE: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

pub struct Scraper {
    pub target: TargetSettings,
    /// The collector's labels, added to every series.
    pub extra_labels: Vec<(String, String)>,
    pub client: reqwest::Client,
    pub metrics: Arc<Metrics>,
    pub endpoints: Vec<Arc<RemoteWriter>>,
}

/// Why a scrape failed: the metric's reason label and a message for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeError {
    pub reason: &'static str,
    pub detail: String,
}

impl Scraper {
    pub fn name(&self) -> String {
        self.target.url.to_string()
    }

    pub async fn run(self, stop: CancellationToken) {
        let name = self.name();
        self.metrics.collector.init_target(&name);
        let mut ticks = tokio::time::interval(self.target.interval);
        // A slow scrape delays the next one rather than bunching them up.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut last_error: Option<&'static str> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let at = now_ms();
            let started = Instant::now();
            let result = self.fetch_and_parse().await;
            let duration = started.elapsed();
            match (&result, last_error) {
                (Ok(_), Some(_)) => tracing::info!(target = %name, "scrape succeeds again"),
                (Err(e), prev) if prev != Some(e.reason) => {
                    tracing::warn!(target = %name, reason = e.reason, error = %e.detail, "scrape failed; up = 0 until it succeeds")
                }
                _ => {}
            }
            last_error = result.as_ref().err().map(|e| e.reason);
            if let Err(e) = &result {
                self.metrics.collector.scrape_failed(&name, e.reason);
            }
            let request = self.request(result, at, duration);
            let n = count(&request);
            self.metrics
                .collector
                .scraped
                .get_or_create(&CollectorMetrics::target(&name))
                .inc_by(n);
            let compressed = match remote_write::compress(&request.encode_to_vec()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(target = %name, error = %e, "cannot compress a scrape");
                    continue;
                }
            };
            for ep in &self.endpoints {
                ep.append(at, n, compressed.clone(), &self.metrics).await;
            }
        }
    }

    async fn fetch_and_parse(&self) -> Result<Vec<parse::Sample>, ScrapeError> {
        let t = &self.target;
        let (body, format) = tokio::time::timeout(t.timeout, self.fetch())
            .await
            .map_err(|_| ScrapeError {
                reason: "timeout",
                detail: format!("no complete answer within {:?}", t.timeout),
            })??;
        tokio::task::spawn_blocking(move || {
            let text = std::str::from_utf8(&body).map_err(|e| ScrapeError {
                reason: "parse",
                detail: format!("the body is not UTF-8: {e}"),
            })?;
            parse::parse(text, format).map_err(|e| ScrapeError {
                reason: "parse",
                detail: e.to_string(),
            })
        })
        .await
        .map_err(|e| ScrapeError {
            reason: "parse",
            detail: format!("the parser stopped: {e}"),
        })?
    }

    /// The body, read chunk by chunk and abandoned once past `max_body`.
    async fn fetch(&self) -> Result<(Vec<u8>, Format), ScrapeError> {
        let t = &self.target;
        let mut resp = self
            .client
            .get(t.url.clone())
            .header(ACCEPT, ACCEPT_VALUE)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", t.timeout.as_secs_f64()),
            )
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(ScrapeError {
                reason: "http_status",
                detail: format!("HTTP {}", resp.status()),
            });
        }
        let too_large = || ScrapeError {
            reason: "too_large",
            detail: format!("the body is larger than max_body ({} bytes)", t.max_body),
        };
        if resp.content_length().is_some_and(|n| n > t.max_body as u64) {
            return Err(too_large());
        }
        let format = Format::from_content_type(
            resp.headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > t.max_body {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, format))
    }

    /// The scrape as a remote-write request: every sample at the scrape's time, then the
    /// health series (`up` is 0 when `samples` is an error).
    pub fn request(
        &self,
        samples: Result<Vec<parse::Sample>, ScrapeError>,
        at: i64,
        duration: Duration,
    ) -> WriteRequest {
        let own: Vec<&(String, String)> = self
            .target
            .labels
            .iter()
            .chain(self.extra_labels.iter())
            .collect();
        let up = samples.is_ok();
        let samples = samples.unwrap_or_default();
        let scraped = samples.len();
        let health: Vec<(Vec<Label>, f64)> = [
            ("up", if up { 1.0 } else { 0.0 }),
            ("scrape_duration_seconds", duration.as_secs_f64()),
            ("scrape_samples_scraped", scraped as f64),
        ]
        .into_iter()
        .map(|(name, value)| {
            let mut labels = vec![label("__name__", name)];
            labels.extend(own.iter().map(|(n, v)| label(n, v)));
            labels.sort();
            (labels, value)
        })
        .collect();
        // The health series win over a scraped series with the same labels.
        let mut seen: HashSet<Vec<Label>> = health.iter().map(|(l, _)| l.clone()).collect();
        let mut timeseries = Vec::with_capacity(scraped + 3);
        for s in samples {
            let mut labels = Vec::with_capacity(s.labels.len() + own.len() + 1);
            labels.push(label("__name__", &s.name));
            for (name, value) in s.labels {
                // Like Prometheus with honor_labels off: a scraped label that the target
                // or the collector sets is kept as exported_<name>.
                let mut name = name;
                while own.iter().any(|(n, _)| *n == name) {
                    name = format!("exported_{name}");
                }
                labels.push(Label { name, value });
            }
            labels.extend(own.iter().map(|(n, v)| label(n, v)));
            labels.sort();
            // A series exposed twice: the first wins (a receiver refuses a whole
            // request holding two values for one series at one time).
            if seen.insert(labels.clone()) {
                timeseries.push(series(labels, s.value, at));
            }
        }
        timeseries.extend(health.into_iter().map(|(l, v)| series(l, v, at)));
        WriteRequest { timeseries }
    }
}

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn series(labels: Vec<Label>, value: f64, at: i64) -> TimeSeries {
    TimeSeries {
        labels,
        samples: vec![remote_write::Sample {
            value,
            timestamp: at,
        }],
    }
}

fn count(r: &WriteRequest) -> u64 {
    r.timeseries.iter().map(|t| t.samples.len() as u64).sum()
}

fn transport(e: reqwest::Error) -> ScrapeError {
    ScrapeError {
        reason: crate::net::http::transport_reason(&e),
        detail: crate::net::http::describe(&e),
    }
}
