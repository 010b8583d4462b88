//! Every metric amrelay exports, in one place. Names follow Prometheus conventions;
//! counters get `_total` from the client library.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::exposition::Format;
use crate::domain::promotion::{PromotionState, PromotionStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub revision: String,
}

/// The git commit this binary was built from (build.rs), or "unknown".
pub(crate) const REVISION: &str = env!("AMRELAY_REVISION");

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelReasonLabels {
    pub channel: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelInfoLabels {
    pub channel: String,
    pub kind: String,
    /// The email provider; empty for other kinds.
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HeartbeatLabels {
    pub name: String,
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetEventLabels {
    pub target: String,
    pub event: String,
}

/// What a promotion channel did with a firing or resolved alert, initialised at zero.
pub(crate) const PROMOTION_EVENTS: &[&str] = &[
    "requested",
    "promoted",
    "verified",
    "refused",
    "failed",
    "joined",
    "cooldown",
    "waiting_quorum",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub channel: String,
    /// delivered | retryable | permanent
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

/// `result` of `amrelay_promotion_requests_total`: the protocol's results plus the
/// refusals before a decision.
pub(crate) const PROMOTION_RESULTS: &[&str] = &[
    "promoted",
    "running",
    "retry",
    "refused",
    "failed",
    "verified",
    "unauthorized",
    "bad_request",
];

/// The `outcome` label of `amrelay_promotion_runs_finished_total`.
pub(crate) mod run_outcome {
    pub(crate) const SUCCEEDED: &str = "succeeded";
    pub(crate) const RETRY: &str = "retry";
    pub(crate) const FAILED: &str = "failed";
    pub(crate) const TIMED_OUT: &str = "timed_out";
    pub(crate) const INTERRUPTED: &str = "interrupted";
    pub(crate) const ALL: [&str; 5] = [SUCCEEDED, RETRY, FAILED, TIMED_OUT, INTERRUPTED];
}

/// Webhook rejection reasons, initialised at zero.
pub(crate) const REJECT_REASONS: &[&str] = &[
    "unauthorized",
    "too_large",
    "body_timeout",
    "incomplete_body",
    "bad_payload",
    "store_full",
    "store_error",
    "overloaded",
];
/// Delivery failure reasons that end a delivery on its channel.
pub(crate) const FAIL_REASONS: &[&str] = &["permanent", "max_attempts", "max_age", "circuit_open"];

pub struct Metrics {
    pub registry: Registry,
    pub received: Counter,
    pub rejected: Family<ReasonLabels, Counter>,
    pub deduplicated: Counter,
    pub enqueued: Family<ChannelLabels, Counter>,
    pub delivered: Family<ChannelLabels, Counter>,
    pub failed: Family<ChannelReasonLabels, Counter>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub attempt_failures: Family<ChannelReasonLabels, Counter>,
    pub channel_info: Family<ChannelInfoLabels, Gauge>,
    pub circuit_state: Family<ChannelLabels, Gauge>,
    pub delivered_here: Family<ChannelLabels, Gauge>,
    pub instance_info: Family<InstanceLabels, Gauge>,
    pub build_info: Family<BuildLabels, Gauge>,
    pub fallbacks: Family<ChannelLabels, Counter>,
    pub dead_lettered: Family<ChannelLabels, Counter>,
    pub rate_limited_waits: Family<ChannelLabels, Counter>,
    pub queue_depth: Family<ChannelLabels, Gauge>,
    pub oldest_pending_age: Family<ChannelLabels, Gauge<f64, AtomicU64>>,
    pub dead_letters: Gauge,
    pub latency: Family<ChannelLabels, Histogram>,
    pub attempt_duration: Family<ChannelLabels, Histogram>,
    pub promotion_events: Family<TargetEventLabels, Counter>,
    pub promotion_alert_to_done: Family<TargetLabels, Histogram>,
    pub promotion_requests: Family<ResultLabels, Counter>,
    pub promotion_runs_started: Counter,
    pub promotion_runs_finished: Family<OutcomeLabels, Counter>,
    pub promotion_run_duration: Histogram,
    pub promotion_epoch: Gauge,
    pub promotion_state: Family<StateLabels, Gauge>,
    pub drill_last_run: Family<TargetLabels, Gauge<f64, AtomicU64>>,
    pub drill_last_success: Family<TargetLabels, Gauge<f64, AtomicU64>>,
    pub drill_last_passed: Family<TargetLabels, Gauge>,
    pub drill_step_duration: Family<TargetStepLabels, Gauge<f64, AtomicU64>>,
    pub heartbeat_last_seen: Family<HeartbeatLabels, Gauge<f64, AtomicU64>>,
    pub heartbeat_missing: Family<HeartbeatLabels, Gauge>,
    pub collector: CollectorMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetStepLabels {
    pub target: String,
    pub step: String,
}

fn run_histogram() -> Histogram {
    Histogram::new([
        0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    ])
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
        3600.0,
    ])
}

fn attempt_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            received: Counter::default(),
            rejected: Family::default(),
            deduplicated: Counter::default(),
            enqueued: Family::default(),
            delivered: Family::default(),
            failed: Family::default(),
            attempts: Family::default(),
            attempt_failures: Family::default(),
            channel_info: Family::default(),
            circuit_state: Family::default(),
            delivered_here: Family::default(),
            instance_info: Family::default(),
            build_info: Family::default(),
            fallbacks: Family::default(),
            dead_lettered: Family::default(),
            rate_limited_waits: Family::default(),
            queue_depth: Family::default(),
            oldest_pending_age: Family::default(),
            dead_letters: Gauge::default(),
            latency: Family::new_with_constructor(latency_histogram),
            attempt_duration: Family::new_with_constructor(attempt_histogram),
            promotion_events: Family::default(),
            promotion_alert_to_done: Family::new_with_constructor(latency_histogram),
            promotion_requests: Family::default(),
            promotion_runs_started: Counter::default(),
            promotion_runs_finished: Family::default(),
            promotion_run_duration: run_histogram(),
            promotion_epoch: Gauge::default(),
            promotion_state: Family::default(),
            drill_last_run: Family::default(),
            drill_last_success: Family::default(),
            drill_last_passed: Family::default(),
            drill_step_duration: Family::default(),
            heartbeat_last_seen: Family::default(),
            heartbeat_missing: Family::default(),
            collector: CollectorMetrics::new(),
        };
        m.collector.register(&mut m.registry);
        let r = &mut m.registry;
        r.register(
            "amrelay_webhooks_received",
            "Webhooks received from Alertmanager",
            m.received.clone(),
        );
        r.register(
            "amrelay_webhooks_rejected",
            "Webhooks refused, by reason",
            m.rejected.clone(),
        );
        r.register(
            "amrelay_notifications_deduplicated",
            "Notifications accepted with 200 but not delivered again (seen within dedup.window)",
            m.deduplicated.clone(),
        );
        r.register(
            "amrelay_deliveries_enqueued",
            "Deliveries committed to the outbox",
            m.enqueued.clone(),
        );
        r.register(
            "amrelay_deliveries_delivered",
            "Deliveries the channel accepted",
            m.delivered.clone(),
        );
        r.register(
            "amrelay_deliveries_failed",
            "Deliveries that ended without success on a channel, by reason",
            m.failed.clone(),
        );
        r.register(
            "amrelay_delivery_attempts",
            "Delivery attempts, by outcome",
            m.attempts.clone(),
        );
        r.register(
            "amrelay_delivery_attempt_failures",
            "Failed delivery attempts, by the far side's reason (http_429, smtp_451, invalid_auth, timeout, ...)",
            m.attempt_failures.clone(),
        );
        r.register(
            "amrelay_channel_info",
            "Each configured channel's kind and email provider (always 1)",
            m.channel_info.clone(),
        );
        r.register(
            "amrelay_channel_circuit_state",
            "The channel's circuit breaker: 0 closed, 1 open (deliveries go to the fallback), 2 half-open (a probe in flight)",
            m.circuit_state.clone(),
        );
        r.register(
            "amrelay_channel_delivered_here",
            "1 while this instance delivers the channel (with a shared store, one instance at a time does)",
            m.delivered_here.clone(),
        );
        r.register(
            "amrelay_instance_info",
            "This instance's name (server.instance; always 1)",
            m.instance_info.clone(),
        );
        r.register(
            "amrelay_build_info",
            "The version and git revision amrelay was built from (always 1)",
            m.build_info.clone(),
        );
        r.register_collector(Box::new(super::process::ProcessCollector));
        r.register(
            "amrelay_fallbacks",
            "Deliveries handed to the channel's fallback",
            m.fallbacks.clone(),
        );
        r.register(
            "amrelay_dead_lettered",
            "Deliveries moved to the dead letters",
            m.dead_lettered.clone(),
        );
        r.register(
            "amrelay_rate_limited_waits",
            "Attempts that waited for the channel's rate limit",
            m.rate_limited_waits.clone(),
        );
        r.register(
            "amrelay_queue_depth",
            "Undelivered deliveries in the outbox",
            m.queue_depth.clone(),
        );
        r.register(
            "amrelay_oldest_pending_age_seconds",
            "Age of the oldest undelivered delivery",
            m.oldest_pending_age.clone(),
        );
        r.register(
            "amrelay_dead_letters",
            "Deliveries in the dead letters now",
            m.dead_letters.clone(),
        );
        r.register(
            "amrelay_delivery_latency_seconds",
            "Time from webhook received to the channel accepting the delivery",
            m.latency.clone(),
        );
        r.register(
            "amrelay_delivery_attempt_duration_seconds",
            "Duration of one delivery attempt",
            m.attempt_duration.clone(),
        );
        r.register(
            "amrelay_promotion_incidents",
            "What promotion channels did, by target: requested, promoted, verified (dry run), refused, failed, joined (an open incident), cooldown, waiting_quorum",
            m.promotion_events.clone(),
        );
        r.register(
            "amrelay_promotion_alert_to_done_seconds",
            "From the alert's startsAt to the endpoint's answer that the promotion is done",
            m.promotion_alert_to_done.clone(),
        );
        r.register(
            "amrelay_promotion_requests",
            "Promotion endpoint: requests answered, by result (promoted, running, retry, refused, failed, verified, unauthorized, bad_request)",
            m.promotion_requests.clone(),
        );
        r.register(
            "amrelay_promotion_runs_started",
            "Promotion endpoint: runs of the promotion command started",
            m.promotion_runs_started.clone(),
        );
        r.register(
            "amrelay_promotion_runs_finished",
            "Promotion endpoint: runs ended, by outcome (succeeded, retry, failed, timed_out, interrupted)",
            m.promotion_runs_finished.clone(),
        );
        r.register(
            "amrelay_promotion_run_duration_seconds",
            "Promotion endpoint: how long the promotion command ran",
            m.promotion_run_duration.clone(),
        );
        r.register(
            "amrelay_promotion_epoch",
            "Promotion endpoint: the current epoch",
            m.promotion_epoch.clone(),
        );
        r.register(
            "amrelay_promotion_state",
            "Promotion endpoint: 1 for the current state (standby, promoting, promoted, failed, interrupted), 0 for the others",
            m.promotion_state.clone(),
        );
        r.register(
            "amrelay_drill_last_run_timestamp_seconds",
            "When the target's last failover drill started (amrelay drill, or a surprise drill)",
            m.drill_last_run.clone(),
        );
        r.register(
            "amrelay_drill_last_success_timestamp_seconds",
            "When the target's last failover drill that passed every step started",
            m.drill_last_success.clone(),
        );
        r.register(
            "amrelay_drill_last_passed",
            "1 when the target's last finished drill passed every step, 0 when it did not",
            m.drill_last_passed.clone(),
        );
        r.register(
            "amrelay_drill_step_duration_seconds",
            "How long each step of the target's last finished drill took",
            m.drill_step_duration.clone(),
        );
        r.register(
            "amrelay_heartbeat_last_seen_timestamp_seconds",
            "When each [[heartbeats]] source was last seen (seconds since the epoch)",
            m.heartbeat_last_seen.clone(),
        );
        r.register(
            "amrelay_heartbeat_missing",
            "1 while a [[heartbeats]] source is declared missing (its channels were told), else 0",
            m.heartbeat_missing.clone(),
        );
        m.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                revision: REVISION.to_owned(),
            })
            .set(1);
        for reason in REJECT_REASONS {
            let _ = m.rejected.get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            });
        }
        m
    }

    pub fn set_instance(&self, instance: &str) {
        self.instance_info
            .get_or_create(&InstanceLabels {
                instance: instance.to_owned(),
            })
            .set(1);
    }

    /// Creates a channel's series at zero, so dashboards show them before the first event.
    pub fn init_channel(&self, channel: &str, kind: &str, provider: &str) {
        let c = ChannelLabels {
            channel: channel.to_owned(),
        };
        self.channel_info
            .get_or_create(&ChannelInfoLabels {
                channel: channel.to_owned(),
                kind: kind.to_owned(),
                provider: provider.to_owned(),
            })
            .set(1);
        let _ = self.circuit_state.get_or_create(&c);
        let _ = self.delivered_here.get_or_create(&c);
        let _ = self.enqueued.get_or_create(&c);
        let _ = self.delivered.get_or_create(&c);
        let _ = self.fallbacks.get_or_create(&c);
        let _ = self.dead_lettered.get_or_create(&c);
        let _ = self.rate_limited_waits.get_or_create(&c);
        let _ = self.queue_depth.get_or_create(&c);
        let _ = self.oldest_pending_age.get_or_create(&c);
        let _ = self.latency.get_or_create(&c);
        for outcome in ["delivered", "retryable", "permanent"] {
            let _ = self.attempts.get_or_create(&AttemptLabels {
                channel: channel.to_owned(),
                outcome: outcome.to_owned(),
            });
        }
        for reason in FAIL_REASONS {
            let _ = self.failed.get_or_create(&ChannelReasonLabels {
                channel: channel.to_owned(),
                reason: reason.to_string(),
            });
        }
    }

    pub fn target(target: &str) -> TargetLabels {
        TargetLabels {
            target: target.to_owned(),
        }
    }

    pub fn promotion_event(&self, target: &str, event: &str) {
        self.promotion_events
            .get_or_create(&TargetEventLabels {
                target: target.to_owned(),
                event: event.to_owned(),
            })
            .inc();
    }

    /// Creates the promotion endpoint's series at zero.
    pub fn init_promotion_endpoint(&self) {
        for result in PROMOTION_RESULTS {
            let _ = self.promotion_requests.get_or_create(&ResultLabels {
                result: result.to_string(),
            });
        }
        for outcome in run_outcome::ALL {
            let _ = self.promotion_runs_finished.get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            });
        }
        for state in PromotionState::ALL {
            let _ = self.promotion_state.get_or_create(&StateLabels {
                state: state.as_str().to_owned(),
            });
        }
    }

    pub fn promotion_request(&self, result: &str) {
        self.promotion_requests
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// A promotion target's series at zero.
    pub fn init_target(&self, target: &str) {
        for e in PROMOTION_EVENTS {
            let _ = self.promotion_events.get_or_create(&TargetEventLabels {
                target: target.to_owned(),
                event: e.to_string(),
            });
        }
        let _ = self
            .promotion_alert_to_done
            .get_or_create(&Self::target(target));
    }

    pub fn promotion_run_started(&self) {
        self.promotion_runs_started.inc();
    }

    /// A run ended (`duration` unknown for one found interrupted at start-up).
    pub fn promotion_run(&self, outcome: &str, duration: Option<std::time::Duration>) {
        self.promotion_runs_finished
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        if let Some(d) = duration {
            self.promotion_run_duration.observe(d.as_secs_f64());
        }
    }

    pub fn promotion_status(&self, s: &PromotionStatus) {
        self.promotion_epoch
            .set(i64::try_from(s.epoch).unwrap_or(i64::MAX));
        for state in PromotionState::ALL {
            self.promotion_state
                .get_or_create(&StateLabels {
                    state: state.as_str().to_owned(),
                })
                .set(i64::from(state == s.state));
        }
    }

    pub fn channel(channel: &str) -> ChannelLabels {
        ChannelLabels {
            channel: channel.to_owned(),
        }
    }

    pub fn heartbeat(name: &str, source: &str) -> HeartbeatLabels {
        HeartbeatLabels {
            name: name.to_owned(),
            source: source.to_owned(),
        }
    }

    pub fn reject(&self, reason: &str) {
        let _ = self
            .rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition `/metrics` answers for an `Accept` header: its content type and body.
    pub(crate) fn exposition(&self, accept: Option<&str>) -> (&'static str, String) {
        let format = super::exposition::negotiate(accept);
        let body = match format {
            Format::OpenMetrics => self.encode(),
            Format::Text => super::exposition::to_text(&self.encode()),
        };
        (format.content_type(), body)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetReasonLabels {
    pub target: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointReasonLabels {
    pub endpoint: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointOutcomeLabels {
    pub endpoint: String,
    /// delivered | retryable | permanent
    pub outcome: String,
}

/// Why a scrape failed (`up` is 0 for it).
pub(crate) const SCRAPE_FAIL_REASONS: &[&str] = &[
    "connect",
    "timeout",
    "http_status",
    "too_large",
    "parse",
    "transport",
];
/// Why buffered samples left without being sent.
pub(crate) const COLLECTOR_DROP_REASONS: &[&str] =
    &["buffer_full", "too_old", "rejected", "buffer_error"];

/// The metric collector's own series (`src/collector`), prefix `amrelay_collector_`.
pub struct CollectorMetrics {
    pub scraped: Family<TargetLabels, Counter>,
    pub scrape_failures: Family<TargetReasonLabels, Counter>,
    pub buffered: Family<EndpointLabels, Gauge>,
    pub sent: Family<EndpointLabels, Counter>,
    pub dropped: Family<EndpointReasonLabels, Counter>,
    pub buffer_bytes: Family<EndpointLabels, Gauge>,
    pub oldest_age: Family<EndpointLabels, Gauge<f64, AtomicU64>>,
    pub sends: Family<EndpointOutcomeLabels, Counter>,
    pub send_duration: Family<EndpointLabels, Histogram>,
}

impl CollectorMetrics {
    fn new() -> Self {
        CollectorMetrics {
            scraped: Family::default(),
            scrape_failures: Family::default(),
            buffered: Family::default(),
            sent: Family::default(),
            dropped: Family::default(),
            buffer_bytes: Family::default(),
            oldest_age: Family::default(),
            sends: Family::default(),
            send_duration: Family::new_with_constructor(attempt_histogram),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "amrelay_collector_samples_scraped",
            "Samples scraped from each target, the collector's health series included",
            self.scraped.clone(),
        );
        r.register(
            "amrelay_collector_scrape_failures",
            "Scrapes that failed (up = 0), by target and reason",
            self.scrape_failures.clone(),
        );
        r.register(
            "amrelay_collector_buffered_samples",
            "Samples in an endpoint's buffer, not yet accepted",
            self.buffered.clone(),
        );
        r.register(
            "amrelay_collector_samples_sent",
            "Samples an endpoint accepted",
            self.sent.clone(),
        );
        r.register(
            "amrelay_collector_samples_dropped",
            "Samples that left an endpoint's buffer unsent, by reason",
            self.dropped.clone(),
        );
        r.register(
            "amrelay_collector_buffer_bytes",
            "Bytes of compressed samples in an endpoint's buffer",
            self.buffer_bytes.clone(),
        );
        r.register(
            "amrelay_collector_oldest_sample_age_seconds",
            "Age of the oldest sample in an endpoint's buffer (0 when empty)",
            self.oldest_age.clone(),
        );
        r.register(
            "amrelay_collector_sends",
            "Remote-write requests, by outcome",
            self.sends.clone(),
        );
        r.register(
            "amrelay_collector_send_duration_seconds",
            "Duration of one remote-write request",
            self.send_duration.clone(),
        );
    }

    pub fn target(target: &str) -> TargetLabels {
        TargetLabels {
            target: target.to_owned(),
        }
    }

    pub fn endpoint(endpoint: &str) -> EndpointLabels {
        EndpointLabels {
            endpoint: endpoint.to_owned(),
        }
    }

    /// Creates a target's series at zero.
    pub fn init_target(&self, target: &str) {
        let _ = self.scraped.get_or_create(&Self::target(target));
        for reason in SCRAPE_FAIL_REASONS {
            let _ = self.scrape_failures.get_or_create(&TargetReasonLabels {
                target: target.to_owned(),
                reason: reason.to_string(),
            });
        }
    }

    /// Creates an endpoint's series at zero.
    pub fn init_endpoint(&self, endpoint: &str) {
        let e = Self::endpoint(endpoint);
        let _ = self.buffered.get_or_create(&e);
        let _ = self.sent.get_or_create(&e);
        let _ = self.buffer_bytes.get_or_create(&e);
        let _ = self.oldest_age.get_or_create(&e);
        let _ = self.send_duration.get_or_create(&e);
        for reason in COLLECTOR_DROP_REASONS {
            let _ = self.dropped.get_or_create(&EndpointReasonLabels {
                endpoint: endpoint.to_owned(),
                reason: reason.to_string(),
            });
        }
        for outcome in ["delivered", "retryable", "permanent"] {
            let _ = self.sends.get_or_create(&EndpointOutcomeLabels {
                endpoint: endpoint.to_owned(),
                outcome: outcome.to_owned(),
            });
        }
    }

    pub fn scrape_failed(&self, target: &str, reason: &str) {
        self.scrape_failures
            .get_or_create(&TargetReasonLabels {
                target: target.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn drop_samples(&self, endpoint: &str, reason: &str, n: u64) {
        if n > 0 {
            self.dropped
                .get_or_create(&EndpointReasonLabels {
                    endpoint: endpoint.to_owned(),
                    reason: reason.to_owned(),
                })
                .inc_by(n);
        }
    }

    pub fn send(&self, endpoint: &str, outcome: &str) {
        self.sends
            .get_or_create(&EndpointOutcomeLabels {
                endpoint: endpoint.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}
