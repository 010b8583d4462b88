//! One channel's worker: claim, wait for the rate limit, send, record.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::circuit::{Admit, Circuit, CircuitState};
use super::retry::{self, Decision};
use crate::config::{ChannelSettings, DeliveryPolicy};
use crate::domain::time::now_ms;
use crate::domain::Notification;
use crate::net::Outcome;
use crate::outbox::{stored, Claimed, Completion, Epoch, Outbox};
use crate::sinks::{Delivery, Sink};
use crate::telemetry::metrics::{AttemptLabels, ChannelReasonLabels};
use crate::telemetry::{reasons, LogEvery, Metrics};

/// The longest a worker sleeps without looking at the store (a requeue from the CLI, a
/// retry falling due).
const IDLE_POLL: Duration = Duration::from_secs(1);
const RECORD_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RECORD_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One delivery the worker is about to attempt.
pub(super) struct Job {
    pub id: i64,
    /// The channel owner's term it was taken in flight under.
    pub epoch: Epoch,
    /// Attempts including this one.
    pub attempts: u32,
    pub created_at: i64,
    pub enqueued_at: i64,
    pub notification: Arc<Notification>,
}

/// A fresh delivery handed over by ingest with a slot already reserved: it skips the
/// claim round trip (the row was stored in flight) and the re-parse of its payload.
pub(super) struct Handoff {
    pub job: Job,
    pub permit: OwnedSemaphorePermit,
}

pub(super) struct ChannelWorker {
    name: String,
    sink: Sink,
    policy: DeliveryPolicy,
    fallback: Option<String>,
    limiter: Option<DefaultDirectRateLimiter>,
    /// Attempts in flight on the channel (`concurrency`), taken first come, first served.
    sending: Semaphore,
    /// Outcomes the store refuses come in floods (a full disk): a line per 10 s.
    record_failed: LogEvery,
    /// Set by a Retry-After: the whole channel holds back, not just that delivery.
    paused_until: Mutex<Option<Instant>>,
    /// Only for a channel with a fallback.
    circuit: Option<Circuit>,
    outbox: Outbox,
    /// Whether, and under which epoch, this instance owns the channel (`ownership`).
    term: watch::Receiver<Option<Epoch>>,
    metrics: Arc<Metrics>,
    /// This channel's series of the metrics every attempt touches, looked up once.
    hot: HotMetrics,
}

struct HotMetrics {
    attempt_duration: Histogram,
    delivered_attempts: Counter,
    delivered: Counter,
    latency: Histogram,
}

impl HotMetrics {
    fn new(m: &Metrics, channel: &str) -> Self {
        let labels = Metrics::channel(channel);
        HotMetrics {
            attempt_duration: m.attempt_duration.get_or_create(&labels).clone(),
            delivered_attempts: m
                .attempts
                .get_or_create(&AttemptLabels {
                    channel: channel.to_owned(),
                    outcome: Outcome::Delivered.kind().to_owned(),
                })
                .clone(),
            delivered: m.delivered.get_or_create(&labels).clone(),
            latency: m.latency.get_or_create(&labels).clone(),
        }
    }
}

impl ChannelWorker {
    pub(super) fn new(
        c: &ChannelSettings,
        sink: Sink,
        outbox: Outbox,
        term: watch::Receiver<Option<Epoch>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let limiter = c.rate_limit.map(|r| {
            let period = r.per / r.count.get();
            let quota = Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(r.count);
            RateLimiter::direct(quota)
        });
        ChannelWorker {
            name: c.name.clone(),
            sink,
            policy: c.policy,
            fallback: c.fallback.clone(),
            limiter,
            sending: Semaphore::new(c.policy.concurrency as usize),
            paused_until: Mutex::new(None),
            record_failed: LogEvery::new(10_000),
            circuit: c
                .policy
                .circuit
                .filter(|_| c.fallback.is_some())
                .map(Circuit::new),
            hot: HotMetrics::new(&metrics, &c.name),
            outbox,
            term,
            metrics,
        }
    }

    /// `permits` bounds the deliveries the worker holds (sending, or waiting for one of
    /// its `concurrency` sending slots); ingest takes from it for hand-offs.
    pub(super) async fn run(
        self: Arc<Self>,
        permits: Arc<Semaphore>,
        mut handoffs: mpsc::UnboundedReceiver<Handoff>,
        mut term: watch::Receiver<Option<Epoch>>,
        stop: CancellationToken,
    ) {
        let mut wake = self.outbox.subscribe();
        let mut tasks = JoinSet::new();
        // Whether the store may hold rows to claim. Cleared by a claim that took fewer
        // than it asked for (it saw everything claimable); set by a wake-up from the
        // outbox or when the next row falls due. Deliveries handed over by ingest need no
        // claim, so at a steady rate the worker never queries the store.
        let mut dirty = true;
        let mut look_at = Instant::now();
        while !stop.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            while let Ok(h) = handoffs.try_recv() {
                self.spawn_job(&mut tasks, h.job, h.permit, &stop);
            }
            let Some(epoch) = *term.borrow_and_update() else {
                // Another instance delivers this channel (or nobody yet): nothing to
                // claim until this one owns it.
                tokio::select! {
                    _ = stop.cancelled() => break,
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    changed = term.changed() => if changed.is_err() { break },
                }
                dirty = true;
                continue;
            };
            let free = permits.available_permits();
            if free == 0 || !dirty {
                // Slots are held by deliveries (sending or waiting to), or by ingest for
                // hand-offs on their way; or there is nothing to claim. A reservation
                // ingest gave back (duplicate, refused) frees a slot silently: the
                // deadline looks again.
                let deadline = if dirty {
                    Instant::now() + IDLE_POLL
                } else {
                    look_at
                };
                tokio::select! {
                    _ = stop.cancelled() => break,
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    Some(h) = handoffs.recv() => self.spawn_job(&mut tasks, h.job, h.permit, &stop),
                    _ = wake.changed() => dirty = true,
                    _ = term.changed() => dirty = true,
                    _ = tokio::time::sleep_until(deadline) => dirty = true,
                }
                continue;
            }
            // Take the slots before claiming: a claimed row must never wait for a slot that
            // a hand-off queued behind it holds.
            let Ok(mut held) = permits.clone().try_acquire_many_owned(free as u32) else {
                continue;
            };
            let claim = match self.outbox.claim(&self.name, epoch, free).await {
                Ok(c) => c,
                Err(e) => {
                    drop(held);
                    tracing::error!(channel = %self.name, error = %e, "cannot claim deliveries");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(IDLE_POLL) => continue,
                    }
                }
            };
            if claim.deliveries.len() < free {
                dirty = false;
                let now = now_ms();
                let wait = match claim.next_due_at {
                    Some(due) if due > now => {
                        Duration::from_millis((due - now) as u64).min(IDLE_POLL)
                    }
                    _ => IDLE_POLL,
                };
                look_at = Instant::now() + wait;
            }
            for d in claim.deliveries {
                // One slot per claimed row: `held` has `free` slots and the claim at most `free` rows.
                let Some(permit) = held.split(1) else {
                    self.record(d.id, d.epoch, Completion::Release).await;
                    continue;
                };
                match self.job_of(d) {
                    Ok(job) => self.spawn_job(&mut tasks, job, permit, &stop),
                    Err((id, error)) => {
                        tracing::error!(delivery_id = id, %error, "moving to the dead letters");
                        self.record(id, epoch, Completion::Dead { error }).await;
                    }
                }
            }
            // Slots the claim did not use go back to hand-offs when `held` drops here.
        }
        // Stopping: hand-offs not started go back to pending; attempts in flight finish
        // (the caller bounds the wait).
        handoffs.close();
        while let Some(h) = handoffs.recv().await {
            self.record(h.job.id, h.job.epoch, Completion::Release)
                .await;
        }
        while tasks.join_next().await.is_some() {}
    }

    fn job_of(&self, d: Claimed) -> Result<Job, (i64, String)> {
        let notification: Notification = stored::parse(d.format, &d.payload).map_err(|e| {
            (
                d.id,
                format!(
                    "stored notification (format {}) is unreadable: {e}",
                    d.format
                ),
            )
        })?;
        Ok(Job {
            id: d.id,
            epoch: d.epoch,
            attempts: d.attempts,
            created_at: d.created_at,
            enqueued_at: d.enqueued_at,
            notification: Arc::new(notification),
        })
    }

    fn spawn_job(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        job: Job,
        permit: OwnedSemaphorePermit,
        stop: &CancellationToken,
    ) {
        let span = tracing::info_span!("delivery", channel = %self.name, delivery_id = job.id, attempt = job.attempts, group_key = job.notification.group_key.as_str());
        tasks.spawn(
            self.clone()
                .attempt(job, permit, stop.clone())
                .instrument(span),
        );
    }

    /// One attempt: a sending slot, the circuit's word, the channel's pace, the request,
    /// then what the outbox records.
    async fn attempt(
        self: Arc<Self>,
        d: Job,
        permit: OwnedSemaphorePermit,
        stop: CancellationToken,
    ) {
        // Waiting is not an attempt: on stop, hand the delivery back.
        let sending = tokio::select! {
            _ = stop.cancelled() => return self.record(d.id, d.epoch, Completion::Release).await,
            // The semaphore is never closed; Err would only mean sending without a slot.
            sending = self.sending.acquire() => sending.ok(),
        };
        // Asked with a slot in hand, not while queued behind other attempts: a circuit
        // that opened meanwhile diverts, and a probe is timed from when it can go.
        let admitted = match &self.circuit {
            Some(c) => c.admit(Instant::now()),
            None => Admit::Send,
        };
        if admitted == Admit::Divert {
            drop(sending);
            drop(permit);
            return self.divert(d.id, d.epoch).await;
        }
        if admitted == Admit::Probe {
            self.circuit_changed(CircuitState::HalfOpen);
            tracing::info!("circuit half-open: this delivery probes the channel");
        }
        tokio::select! {
            _ = stop.cancelled() => return self.record(d.id, d.epoch, Completion::Release).await,
            _ = self.wait_for_channel() => {}
        }
        if *self.term.borrow() != Some(d.epoch) {
            // The channel went to another instance while this delivery waited: its new
            // owner took the row back to pending and sends it. Sending here too would
            // break the channel's limits.
            tracing::info!(
                "channel now delivered by another instance; leaving this delivery to it"
            );
            return;
        }
        let started = Instant::now();
        let outcome = self.send(&d).await;
        let took = started.elapsed();
        self.after_answer(admitted, &outcome);
        // The slots are for talking to the far side; recording the outcome does not hold
        // them (the row stays in flight until recorded, which keeps the group's order).
        drop(sending);
        drop(permit);
        let now = now_ms();
        let age = Duration::from_millis(now.saturating_sub(d.enqueued_at).max(0) as u64);
        let decision = retry::decide(&outcome, d.attempts, age, &self.policy);
        let completion = retry::completion(&decision, &outcome, self.fallback.as_deref(), now);
        self.observe(&d, &outcome, &decision, &completion, took, now);
        self.record(d.id, d.epoch, completion).await;
    }

    /// The request, bounded by the channel's timeout.
    async fn send(&self, d: &Job) -> Outcome {
        let delivery = Delivery {
            id: d.id,
            attempt: d.attempts,
            created_at: d.created_at,
            notification: &d.notification,
            test: false,
        };
        match tokio::time::timeout(self.policy.timeout, self.sink.send(&delivery)).await {
            Ok(o) => o,
            Err(_) => Outcome::retryable(
                "timeout",
                format!("no answer within {:?}", self.policy.timeout),
            ),
        }
    }

    /// What the answer means for the channel as a whole: the circuit, and a Retry-After
    /// pause that holds back every delivery, not just this one.
    fn after_answer(&self, admitted: Admit, outcome: &Outcome) {
        if let Some(c) = &self.circuit {
            let ok = *outcome == Outcome::Delivered;
            if let Some(state) = c.record(admitted, ok, Instant::now()) {
                self.circuit_changed(state);
                match state {
                    CircuitState::Open => tracing::warn!(
                        failures = c.failures(),
                        "circuit open: deliveries go to the fallback until a probe succeeds"
                    ),
                    _ => tracing::info!("circuit closed: the channel answered again"),
                }
            }
        }
        if let Outcome::Retryable {
            retry_after: Some(ra),
            ..
        } = outcome
        {
            let until = Instant::now() + (*ra).min(self.policy.max_retry_after);
            let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            *p = Some(p.map_or(until, |old| old.max(until)));
        }
    }

    /// The one place an attempt's metrics and its log line are written.
    fn observe(
        &self,
        d: &Job,
        outcome: &Outcome,
        decision: &Decision,
        completion: &Completion,
        took: Duration,
        now: i64,
    ) {
        let m = &self.metrics;
        self.hot.attempt_duration.observe(took.as_secs_f64());
        let (reason, detail) = match outcome {
            Outcome::Delivered => {
                self.hot.delivered_attempts.inc();
                ("", "")
            }
            Outcome::Retryable { reason, detail, .. } | Outcome::Permanent { reason, detail } => {
                m.attempts
                    .get_or_create(&AttemptLabels {
                        channel: self.name.clone(),
                        outcome: outcome.kind().to_owned(),
                    })
                    .inc();
                // A bounded label; the far side's words go to the log line below.
                m.attempt_failures
                    .get_or_create(&self.reason_labels(reasons::label(reason)))
                    .inc();
                (reason.as_str(), detail.as_str())
            }
        };
        if let Decision::GiveUp { reason } = decision {
            m.failed.get_or_create(&self.reason_labels(reason)).inc();
        }
        match completion {
            Completion::Delivered => {
                let latency = now.saturating_sub(d.created_at).max(0) as f64 / 1000.0;
                self.hot.delivered.inc();
                self.hot.latency.observe(latency);
                tracing::debug!(latency_s = latency, "delivered");
            }
            Completion::RetryAt { at, .. } => {
                let retry_in = Duration::from_millis(at.saturating_sub(now).max(0) as u64);
                tracing::warn!(%reason, %detail, ?retry_in, "attempt failed; will retry");
            }
            Completion::FailOver { to, error } => {
                m.fallbacks
                    .get_or_create(&Metrics::channel(&self.name))
                    .inc();
                tracing::warn!(%reason, %error, fallback = %to, "giving up on this channel; handing to the fallback");
            }
            Completion::Dead { error } => {
                m.dead_lettered
                    .get_or_create(&Metrics::channel(&self.name))
                    .inc();
                tracing::error!(%reason, %error, "giving up; moved to the dead letters (amrelay dead-letters list)");
            }
            Completion::Release => {}
        }
    }

    fn reason_labels(&self, reason: &str) -> ChannelReasonLabels {
        ChannelReasonLabels {
            channel: self.name.clone(),
            reason: reason.to_owned(),
        }
    }

    /// The circuit is open: the delivery goes to the fallback without an attempt.
    async fn divert(&self, id: i64, epoch: Epoch) {
        let Some(to) = self.fallback.clone() else {
            return self.record(id, epoch, Completion::Release).await;
        };
        self.metrics
            .failed
            .get_or_create(&self.reason_labels("circuit_open"))
            .inc();
        self.metrics
            .fallbacks
            .get_or_create(&Metrics::channel(&self.name))
            .inc();
        tracing::info!(fallback = %to, "circuit open; handing to the fallback");
        let error =
            "circuit_open: the channel failed repeatedly; sent to the fallback without an attempt"
                .to_owned();
        self.record(id, epoch, Completion::FailOver { to, error })
            .await;
    }

    fn circuit_changed(&self, state: CircuitState) {
        self.metrics
            .circuit_state
            .get_or_create(&Metrics::channel(&self.name))
            .set(state.gauge());
    }

    /// A Retry-After pause, then a token from the rate limiter.
    async fn wait_for_channel(&self) {
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = paused.filter(|u| *u > Instant::now()) {
            tokio::time::sleep_until(until).await;
        }
        if let Some(limiter) = &self.limiter {
            if limiter.check().is_err() {
                self.metrics
                    .rate_limited_waits
                    .get_or_create(&Metrics::channel(&self.name))
                    .inc();
                limiter.until_ready().await;
            }
        }
    }

    /// Records an outcome, retrying while the store refuses (a full disk, the database
    /// gone): the row stays in flight meanwhile, holding back its group, so the retries
    /// go on (on the delivery schedule, `retry::backoff`, at most 5 s apart) until the
    /// store takes it; a shutdown ends them, and the next start tries the delivery again.
    async fn record(&self, id: i64, epoch: Epoch, completion: Completion) {
        let mut attempt: u32 = 0;
        loop {
            match self.outbox.complete(id, epoch, completion.clone()).await {
                Ok(()) => return,
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    if let Some(suppressed) = self.record_failed.allow(now_ms()) {
                        tracing::warn!(error = %e, delivery_id = id, suppressed, "cannot record the delivery's outcome yet; trying again");
                    }
                    let wait = retry::backoff(attempt, RECORD_BACKOFF_MIN, RECORD_BACKOFF_MAX);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}
