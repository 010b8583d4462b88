//! Failover's caller: what a `kind = "promotion"` channel does with an alert, around the
//! one request the sink sends (`sinks::promotion`). It asks the backup's endpoint to
//! promote once per incident, fenced by an epoch (docs/promotion-protocol.md).
//!
//! A firing delivery passes the guards (an open incident is joined, the cooldown, the
//! quorum of monitors), then opens an incident with epoch = last seen + 1, stored before
//! the first request, and sends its key on every attempt until the endpoint answers for
//! good. `min_firing` is not here: the outbox holds the delivery (`pipeline::hold`). A
//! resolve never fails back; it closes the incident and tells the outcome channels.
//!
//! - [`guards`]: the own incident, an open incident, the cooldown, the quorum.
//! - [`request`]: opening an incident, its request, and what the answer means.
//! - [`state`]: the caller's own SQLite memory (`promotion-caller.db`).
//! - [`outcome`]: the messages people are told.

mod drill;
mod guards;
mod outcome;
mod request;
pub(crate) mod state;

use std::sync::Arc;
use std::time::Duration;

use guards::Open;
use outcome::Event;
pub(crate) use outcome::{FORCE_LABEL, MANUAL_LABEL};
use state::CallerState;

use crate::config::PromotionSettings;
use crate::domain::time::now_ms;
use crate::domain::{Notification, Status};
use crate::net::Outcome;
use crate::outbox::Outbox;
use crate::sinks::promotion::{BoxFuture, Caller, Requester};
use crate::sinks::Delivery;
use crate::telemetry::Metrics;

/// What the caller needs besides a channel's settings: its memory, the outbox for
/// outcome messages, and the metrics. One for the process, shared by every promotion
/// channel (`send-test` has none, and only asks the endpoint to verify).
#[derive(Clone)]
pub(crate) struct CallerEnv {
    pub state: CallerState,
    pub outbox: Outbox,
    pub metrics: Arc<Metrics>,
}

impl Caller for CallerEnv {
    fn send<'a>(
        &'a self,
        s: &'a PromotionSettings,
        max_age: Duration,
        requester: &'a Requester,
        d: &'a Delivery<'a>,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let call = Call {
                env: self,
                s,
                max_age,
                requester,
                d,
                drill: d.notification.drill().map(str::to_owned),
            };
            let result = match (&call.drill, d.notification.status) {
                (Some(id), _) => call.drill(id).await,
                (None, Status::Firing) => call.firing().await,
                (None, Status::Resolved) => call.resolved().await,
            };
            result.unwrap_or_else(|e| Outcome::retryable("promotion_state", e))
        })
    }
}

/// One attempt of one delivery on one promotion channel.
struct Call<'a> {
    env: &'a CallerEnv,
    s: &'a PromotionSettings,
    /// The channel's max_age: an unfinished incident older than this lost its sender.
    max_age: Duration,
    requester: &'a Requester,
    d: &'a Delivery<'a>,
    /// The drill this delivery's alert belongs to (its `amrelay_drill` label).
    drill: Option<String>,
}

impl Call<'_> {
    /// The guards in order, then a new incident: each guard either settles the delivery
    /// or lets it through to the next.
    async fn firing(&self) -> Result<Outcome, String> {
        if let Some(o) = self.own_incident().await? {
            return Ok(o);
        }
        let n = self.d.notification;
        let manual = is_manual(n);
        let force = manual && n.common_labels.get(FORCE_LABEL) == Some("true");
        let now = now_ms();
        let finished_open = match self.open_incident(manual, now).await? {
            Open::None => None,
            Open::FinishedAskedAgain(id) => Some(id),
            Open::Settled(o) => return Ok(o),
        };
        // Within the cooldown nothing is closed or opened.
        if let Some(o) = self.cooldown(force, now).await? {
            return Ok(o);
        }
        if let Some(id) = finished_open {
            // By hand, after the open incident's request ended: start afresh.
            self.env.state.close_incident(id, now).await?;
        }
        if !manual {
            if let Some(o) = self.quorum().await? {
                return Ok(o);
            }
        }
        self.open_and_request(manual, now).await
    }

    /// Closes the incident, told first: if the message cannot be stored (a full outbox),
    /// the retry finds the incident still open and tells it again. A message stored
    /// twice is one delivery: its dedup key is the same.
    async fn resolved(&self) -> Result<Outcome, String> {
        let now = now_ms();
        let open = self
            .env
            .state
            .resolved_group(&self.s.target, &self.d.notification.group_key)
            .await?;
        if let Some(inc) = open {
            self.tell(Event::Resolved {
                incident: inc.clone(),
            })
            .await?;
            self.env.state.close_incident(inc.id, now).await?;
            tracing::info!(incident = %inc.key, "the alert resolved: incident closed, no failback");
        }
        Ok(Outcome::Delivered)
    }

    /// Tells the outcome channels; a drill's messages are noted in the drill, so that
    /// its runner can confirm their delivery.
    async fn tell(&self, event: Event) -> Result<(), String> {
        let resolve = matches!(event, Event::Resolved { .. });
        let drill = self.drill.as_deref();
        let ids = outcome::tell(self.env, self.s, self.d.notification, event, drill).await?;
        if let (Some(id), false) = (drill, ids.is_empty()) {
            self.env
                .state
                .drill_note(id, move |n| {
                    let told = if resolve {
                        &mut n.resolved_told
                    } else {
                        &mut n.told
                    };
                    for i in ids {
                        if !told.contains(&i) {
                            told.push(i);
                        }
                    }
                })
                .await?;
        }
        Ok(())
    }

    fn count(&self, event: &str) {
        self.env.metrics.promotion_event(&self.s.target, event);
    }
}

/// Made by `amrelay promote`: the admin receiver (which ingest refuses from outside)
/// and the label, so an alert carrying the label cannot pose as one.
fn is_manual(n: &Notification) -> bool {
    n.receiver == crate::domain::ADMIN_RECEIVER && n.common_labels.get(MANUAL_LABEL) == Some("true")
}
