//! The dead-man's switch (`[[heartbeats]]`). Alertmanager's always-firing `Watchdog`
//! arrives every repeat_interval; ingest hands such a notification here instead of
//! routing it ([`Heartbeats::consume`]), and its sources' last sighting is stored. A
//! check loop ([`Heartbeats::run`]) declares a source missing once it has been quiet past
//! the heartbeat's timeout, and tells the heartbeat's channels once per silence, and once
//! more when it is back (state/mod.rs says how that holds across crashes and instances).
//!
//! Grace after start: no source is declared missing before `timeout` has passed since
//! this process started: while amrelay was down the pipeline may have been fine, and
//! Alertmanager's next repeat is on its way.

pub(crate) mod notify;
pub(crate) mod sighting;
pub(crate) mod state;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::HeartbeatSettings;
use crate::domain::time::now_ms;
use crate::domain::Notification;
use crate::outbox::Outbox;
use crate::telemetry::Metrics;
pub(crate) use sighting::Sighting;
use state::{HeartbeatState, SourceRow};

/// A source silent this long, whose silence was told, is forgotten (no resolve).
const FORGET_AFTER_MS: i64 = 7 * 24 * 3_600_000;
/// The check loop's longest and shortest period.
const CHECK_AT_MOST: Duration = Duration::from_secs(15);
const CHECK_AT_LEAST: Duration = Duration::from_secs(1);

pub(crate) struct Heartbeats {
    /// Replaced by a reload.
    settings: RwLock<Arc<Vec<HeartbeatSettings>>>,
    state: HeartbeatState,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    /// When this process started: the grace period runs from here.
    started_at: i64,
    /// The (heartbeat, source) series exported, so that forgotten ones are removed.
    exported: std::sync::Mutex<Vec<(String, String)>>,
}

impl Heartbeats {
    pub(crate) fn new(
        settings: Vec<HeartbeatSettings>,
        state: HeartbeatState,
        outbox: Outbox,
        metrics: Arc<Metrics>,
    ) -> Self {
        Heartbeats {
            settings: RwLock::new(Arc::new(settings)),
            state,
            outbox,
            metrics,
            started_at: now_ms(),
            exported: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn settings(&self) -> Arc<Vec<HeartbeatSettings>> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A reload: the next webhook and the next check use these.
    pub(crate) fn replace(&self, settings: Vec<HeartbeatSettings>) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }

    /// Whether `n` is a heartbeat; if so, its sighting (nothing is stored yet).
    pub(crate) fn consume(&self, n: &Notification) -> Option<Sighting> {
        sighting::of(&self.settings(), n)
    }

    /// Stores a sighting durably (before the webhook is answered).
    pub(crate) async fn record(&self, s: &Sighting) -> state::Result<()> {
        if s.sources.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        self.state.seen(&s.heartbeat, &s.sources, now).await?;
        for source in &s.sources {
            self.metrics
                .heartbeat_last_seen
                .get_or_create(&Metrics::heartbeat(&s.heartbeat, source))
                .set(now as f64 / 1000.0);
        }
        Ok(())
    }

    /// Checks every `min(timeout / 5, 15 s)` (at least 1 s) of the shortest timeout,
    /// until the task is aborted. The first check runs at once: it exports the stored
    /// state's metrics.
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            let settings = self.settings();
            for h in settings.iter() {
                if let Err(e) = self.check(h, now_ms()).await {
                    tracing::error!(heartbeat = %h.name, error = %e, "heartbeat check failed; next check retries");
                }
            }
            tokio::time::sleep(period(&settings)).await;
        }
    }

    /// One heartbeat's check at `now`: record it as configured, declare the quiet
    /// sources missing, tell what is untold, forget the long gone, export.
    pub(crate) async fn check(&self, h: &HeartbeatSettings, now: i64) -> state::Result<()> {
        let placeholder = sighting::placeholder(h);
        self.state.ensure(&h.name, placeholder, now).await?;
        let timeout = h.timeout.as_millis() as i64;
        if now >= self.started_at + timeout {
            for source in self.state.declare(&h.name, now - timeout, now).await? {
                tracing::warn!(heartbeat = %h.name, %source, timeout = ?h.timeout, "heartbeat missing");
            }
        }
        let rows = self.state.rows(&h.name).await?;
        for (row, event) in notify::untold(&rows) {
            let n = notify::notification(h, row, event);
            // Stored first, marked told after: a crash between the two stores it again
            // with the same key, a duplicate the outbox drops.
            match self.outbox.enqueue_made_here(&n, &h.channels).await {
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(heartbeat = %h.name, source = %row.source, error = %e, "cannot store the heartbeat notification; next check retries");
                    continue;
                }
            }
            match event {
                notify::Event::Missing(silence) => {
                    self.state
                        .told_missing(&h.name, &row.source, silence)
                        .await?
                }
                notify::Event::Back(silence) => {
                    self.state
                        .told_resolved(&h.name, &row.source, silence)
                        .await?
                }
            }
        }
        let gone = self.state.forget(&h.name, now - FORGET_AFTER_MS).await?;
        if gone > 0 {
            tracing::info!(heartbeat = %h.name, rows = gone, "forgot heartbeat sources gone for good (or the not-yet-seen marker)");
        }
        self.export(&h.name, &self.state.rows(&h.name).await?);
        Ok(())
    }

    fn export(&self, name: &str, rows: &[SourceRow]) {
        let m = &self.metrics;
        let mut exported = self.exported.lock().unwrap_or_else(|e| e.into_inner());
        exported.retain(|(n, s)| {
            let keep = n != name || rows.iter().any(|r| &r.source == s);
            if !keep {
                let l = Metrics::heartbeat(n, s);
                m.heartbeat_last_seen.remove(&l);
                m.heartbeat_missing.remove(&l);
            }
            keep
        });
        for r in rows {
            let l = Metrics::heartbeat(name, &r.source);
            if let Some(t) = r.last_seen {
                m.heartbeat_last_seen
                    .get_or_create(&l)
                    .set(t as f64 / 1000.0);
            }
            m.heartbeat_missing
                .get_or_create(&l)
                .set(i64::from(r.missing_since.is_some()));
            if !exported.iter().any(|(n, s)| n == name && s == &r.source) {
                exported.push((name.to_owned(), r.source.clone()));
            }
        }
    }
}

/// How often the check runs: a fifth of the shortest timeout, within 1 s and 15 s.
pub(crate) fn period(settings: &[HeartbeatSettings]) -> Duration {
    settings
        .iter()
        .map(|h| h.timeout / 5)
        .min()
        .unwrap_or(CHECK_AT_MOST)
        .clamp(CHECK_AT_LEAST, CHECK_AT_MOST)
}

#[cfg(test)]
mod tests;
