//! `kind = "promotion"`: asks the backup's promotion endpoint to promote, once per
//! incident, fenced by an epoch (docs/promotion-protocol.md).
//!
//! A firing delivery passes the guards (an open incident is joined, the cooldown, the
//! quorum of monitors), then opens an incident with epoch = last seen + 1, stored before
//! the first request, and sends its key on every attempt until the endpoint answers for
//! good. `min_firing` is not here: the outbox holds the delivery (`pipeline::hold`). A
//! resolve never fails back; it closes the incident and tells the outcome channels.

mod outcome;
mod requester;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

use outcome::Event;
pub use outcome::{FORCE_LABEL, MANUAL_LABEL};
pub use requester::{Reply, Requester};
use state::{CallerState, Incident, NewIncident};

use super::Delivery;
use crate::config::PromotionSettings;
use crate::domain::promotion::{PromoteRequest, Verdict};
use crate::domain::time::now_ms;
use crate::domain::{Notification, Status};
use crate::net::Outcome;
use crate::outbox::Outbox;
use crate::telemetry::Metrics;

/// What a promotion channel needs besides its settings: its memory, and the outbox for
/// outcome messages. `send-test` has none of it and only asks the endpoint to verify.
#[derive(Clone)]
pub struct PromotionEnv {
    pub state: CallerState,
    pub outbox: Outbox,
    pub metrics: Arc<Metrics>,
}

/// What an incident already open for the target means for a firing delivery.
enum Open {
    None,
    /// Its request ended, and an operator asks again: close it (this id) and start afresh.
    FinishedAskedAgain(i64),
    Settled(Outcome),
}

pub struct PromotionSink {
    s: PromotionSettings,
    /// The channel's max_age: an unfinished incident older than this lost its sender.
    max_age: Duration,
    requester: Requester,
    env: Option<PromotionEnv>,
}

impl PromotionSink {
    pub fn new(
        s: &PromotionSettings,
        max_age: Duration,
        client: reqwest::Client,
        env: Option<PromotionEnv>,
    ) -> Self {
        PromotionSink {
            max_age,
            requester: Requester::new(s, client),
            s: s.clone(),
            env,
        }
    }

    pub async fn send(&self, d: &Delivery<'_>) -> Outcome {
        let Some(env) = &self.env else {
            return self.verify(d).await;
        };
        let result = match d.notification.status {
            Status::Firing => self.firing(env, d).await,
            Status::Resolved => self.resolved(env, d).await,
        };
        result.unwrap_or_else(|e| Outcome::retryable("promotion_state", e))
    }

    /// The guards in order, then a new incident: each guard either settles the delivery
    /// or lets it through to the next.
    async fn firing(&self, env: &PromotionEnv, d: &Delivery<'_>) -> Result<Outcome, String> {
        if let Some(o) = self.own_incident(env, d).await? {
            return Ok(o);
        }
        let n = d.notification;
        let manual = is_manual(n);
        let force = manual && n.common_labels.get(FORCE_LABEL) == Some("true");
        let now = now_ms();
        let finished_open = match self.open_incident(env, d, manual, now).await? {
            Open::None => None,
            Open::FinishedAskedAgain(id) => Some(id),
            Open::Settled(o) => return Ok(o),
        };
        // Within the cooldown nothing is closed or opened.
        if let Some(o) = self.cooldown(env, d, force, now).await? {
            return Ok(o);
        }
        if let Some(id) = finished_open {
            // By hand, after the open incident's request ended: start afresh.
            env.state
                .with(move |c| state::close_incident(c, id, now))
                .await?;
        }
        if !manual {
            if let Some(o) = self.quorum(env, d).await? {
                return Ok(o);
            }
        }
        self.open_and_request(env, d, manual, now).await
    }

    /// A delivery owns at most one incident, closed or not: its retries resend that
    /// incident's key, and once the answer is final they only tell it again.
    async fn own_incident(
        &self,
        env: &PromotionEnv,
        d: &Delivery<'_>,
    ) -> Result<Option<Outcome>, String> {
        let (t, id, created) = (self.s.target.clone(), d.id, d.created_at);
        let own = env
            .state
            .with(move |c| state::owned_by(c, &t, id, created))
            .await?;
        Ok(match own {
            None => None,
            Some(inc) if inc.finished_at.is_none() => Some(self.request(env, &inc, d).await),
            Some(inc) => Some(self.retell(env, d, inc).await),
        })
    }

    /// An incident another delivery opened for the target: joined, taken over when its
    /// owner gave up (or an operator asks again), or, asked again by hand after its
    /// request ended, let through to start afresh.
    async fn open_incident(
        &self,
        env: &PromotionEnv,
        d: &Delivery<'_>,
        manual: bool,
        now: i64,
    ) -> Result<Open, String> {
        let t = self.s.target.clone();
        let Some(inc) = env.state.with(move |c| state::open_incident(c, &t)).await? else {
            return Ok(Open::None);
        };
        let unfinished = inc.finished_at.is_none();
        let abandoned = unfinished && inc.opened_at + self.max_age.as_millis() as i64 <= now;
        if unfinished && (manual || abandoned) {
            // This delivery takes the incident over and sends the same key, so nothing
            // can run twice.
            let (iid, id, created) = (inc.id, d.id, d.created_at);
            env.state
                .with(move |c| state::take_over(c, iid, id, created))
                .await?;
            tracing::warn!(incident = %inc.key, manual, "taking over an unfinished incident; same key");
            return Ok(Open::Settled(self.request(env, &inc, d).await));
        }
        if !manual {
            self.count(env, "joined");
            tracing::info!(incident = %inc.key, state = %inc.state, "an incident is open for the target; joined it, no new request");
            return Ok(Open::Settled(Outcome::Delivered));
        }
        Ok(Open::FinishedAskedAgain(inc.id))
    }

    /// Fewer monitors than the quorum have reported the target down within its window:
    /// tell it, and the delivery ends here.
    async fn quorum(
        &self,
        env: &PromotionEnv,
        d: &Delivery<'_>,
    ) -> Result<Option<Outcome>, String> {
        let Some(q) = &self.s.quorum else {
            return Ok(None);
        };
        let n = d.notification;
        let values = label_values(n, &q.label);
        let since = d.created_at - q.within.as_millis() as i64;
        let (t, at, g) = (self.s.target.clone(), d.created_at, n.group_key.clone());
        let seen = env
            .state
            .with(move |c| state::observe(c, &t, &values, &g, at, since))
            .await?;
        if seen.len() as u32 >= q.count {
            return Ok(None);
        }
        self.count(env, "waiting_quorum");
        tracing::info!(seen = ?seen, needed = q.count, label = %q.label, "quorum not met: not promoting on this report alone");
        let waiting = Event::WaitingQuorum {
            seen,
            needed: q.count,
            label: q.label.clone(),
            within: q.within,
        };
        self.tell(env, d, waiting).await?;
        Ok(Some(Outcome::Delivered))
    }

    /// Opens an incident with epoch = last seen + 1 (stored before the first request),
    /// tells the outcome channels, and sends the request.
    async fn open_and_request(
        &self,
        env: &PromotionEnv,
        d: &Delivery<'_>,
        manual: bool,
        now: i64,
    ) -> Result<Outcome, String> {
        let n = d.notification;
        let t = self.s.target.clone();
        let epoch = match env.state.with(move |c| state::last_epoch(c, &t)).await? {
            Some(e) => e,
            None => match self.requester.current_epoch(d.id).await {
                Ok(e) => stored_epoch(e),
                Err(o) => return Ok(o),
            },
        };
        let reason = reason(n, manual);
        let firing_since = n
            .firing_since()
            .map_or(d.created_at, |t| t.timestamp_millis());
        let (t, r, id, created) = (self.s.target.clone(), reason.clone(), d.id, d.created_at);
        let (inc, opened) = env
            .state
            .with(move |c| {
                state::open_or_join(
                    c,
                    &NewIncident {
                        target: &t,
                        epoch: epoch + 1,
                        delivery_id: id,
                        delivery_created: created,
                        reason: &r,
                        firing_since,
                        now,
                    },
                )
            })
            .await?;
        if !opened {
            self.count(env, "joined");
            return Ok(Outcome::Delivered);
        }
        self.count(env, "requested");
        tracing::warn!(incident = %inc.key, %reason, "promotion requested");
        // Told first, so people read it before the result; a full outbox must not delay
        // the promotion, so a failure to tell is only logged.
        let requested = Event::Requested {
            incident: inc.clone(),
            dry_run: self.s.dry_run,
        };
        if let Err(e) = self.tell(env, d, requested).await {
            tracing::warn!(error = %e, "cannot store the \"promotion requested\" message");
        }
        Ok(self.request(env, &inc, d).await)
    }

    /// Within the cooldown after a promotion (and not forced): tell it, and the delivery
    /// ends here.
    async fn cooldown(
        &self,
        env: &PromotionEnv,
        d: &Delivery<'_>,
        force: bool,
        now: i64,
    ) -> Result<Option<Outcome>, String> {
        if force {
            return Ok(None);
        }
        let t = self.s.target.clone();
        let last = env
            .state
            .with(move |c| state::last_promoted_at(c, &t))
            .await?;
        match last.map(|at| at + self.s.cooldown.as_millis() as i64) {
            Some(until) if until > now => {
                self.count(env, "cooldown");
                self.tell(env, d, Event::Cooldown { until }).await?;
                Ok(Some(Outcome::Delivered))
            }
            _ => Ok(None),
        }
    }

    /// Closes the incident, told first: if the message cannot be stored (a full outbox),
    /// the retry finds the incident still open and tells it again. A message stored
    /// twice is one delivery: its dedup key is the same.
    async fn resolved(&self, env: &PromotionEnv, d: &Delivery<'_>) -> Result<Outcome, String> {
        let t = self.s.target.clone();
        let now = now_ms();
        let g = d.notification.group_key.clone();
        let open = env
            .state
            .with(move |c| {
                state::resolved_group(c, &t, &g)?;
                state::open_incident(c, &t)
            })
            .await?;
        if let Some(inc) = open {
            self.tell(
                env,
                d,
                Event::Resolved {
                    incident: inc.clone(),
                },
            )
            .await?;
            let id = inc.id;
            env.state
                .with(move |c| state::close_incident(c, id, now))
                .await?;
            tracing::info!(incident = %inc.key, "the alert resolved: incident closed, no failback");
        }
        Ok(Outcome::Delivered)
    }

    /// One request for the incident's key, and what its answer means.
    async fn request(&self, env: &PromotionEnv, inc: &Incident, d: &Delivery<'_>) -> Outcome {
        let mut req = PromoteRequest::new(&inc.target, inc.epoch.max(0) as u64, inc.reason.clone());
        req.manual = is_manual(d.notification);
        req.dry_run = self.s.dry_run;
        let reply = match self.requester.promote(&req, d.id).await {
            Ok(r) => r,
            Err(o) => return o,
        };
        let verdict = reply.body.as_ref().ok().map(|a| a.result);
        if let Ok(a) = &reply.body {
            let (t, e) = (inc.target.clone(), stored_epoch(a.status.epoch));
            let _ = env.state.with(move |c| state::saw_epoch(c, &t, e)).await;
        }
        let final_state = match (reply.status.as_u16(), verdict) {
            (200, Some(Verdict::Verified)) => Some("verified"),
            (200, Some(Verdict::Promoted)) => Some("promoted"),
            // Not the endpoint's answer (a wrong url, a proxy): never taken as a promotion.
            (200, _) => Some("failed"),
            (409, _) => Some("refused"),
            (400..=499, _) => Some("failed"),
            _ => None,
        };
        let Some(final_state) = final_state else {
            // 202 running, 503 exit 75, other 5xx: the same key again later. A 202 is not
            // a delivery: the command is still running.
            return match reply.status.as_u16() {
                200..=299 => Outcome::Retryable {
                    reason: format!("promotion_{}", verdict.map_or("running", Verdict::as_str)),
                    detail: reply.describe(),
                    retry_after: reply.retry_after(),
                },
                _ => reply.by_status(),
            };
        };
        let detail = reply.describe();
        let now = now_ms();
        let (id, st, det) = (inc.id, final_state.to_owned(), detail.clone());
        if let Err(e) = env
            .state
            .with(move |c| state::finish(c, id, &st, &det, now))
            .await
        {
            return Outcome::retryable("promotion_state", e);
        }
        self.count(env, final_state);
        let took = Duration::from_millis((now - inc.firing_since).max(0) as u64);
        if final_state == "promoted" {
            env.metrics
                .promotion_alert_to_done
                .get_or_create(&Metrics::target(&inc.target))
                .observe(took.as_secs_f64());
            tracing::warn!(incident = %inc.key, took_s = took.as_secs_f64(), "promotion succeeded");
        } else {
            tracing::error!(incident = %inc.key, state = final_state, %detail, "promotion did not happen");
        }
        let mut done = inc.clone();
        done.state = final_state.to_owned();
        done.detail = Some(detail.clone());
        done.finished_at = Some(now);
        if let Err(e) = self
            .tell(
                env,
                d,
                Event::Finished {
                    incident: done,
                    took,
                },
            )
            .await
        {
            return Outcome::retryable("promotion_state", e);
        }
        final_outcome(final_state, detail)
    }

    /// A retry of a delivery whose incident has its final answer: tell it again (the
    /// message's key makes a repeat a no-op) and end the same way.
    async fn retell(&self, env: &PromotionEnv, d: &Delivery<'_>, inc: Incident) -> Outcome {
        let took = Duration::from_millis(
            (inc.finished_at.unwrap_or(inc.opened_at) - inc.firing_since).max(0) as u64,
        );
        let state = inc.state.clone();
        let detail = inc.detail.clone().unwrap_or_default();
        if let Err(e) = self
            .tell(
                env,
                d,
                Event::Finished {
                    incident: inc,
                    took,
                },
            )
            .await
        {
            return Outcome::retryable("promotion_state", e);
        }
        final_outcome(&state, detail)
    }

    /// `send-test --dry-run`: a signed dry-run request for the next epoch; nothing runs.
    async fn verify(&self, d: &Delivery<'_>) -> Outcome {
        let epoch = match self.requester.current_epoch(d.id).await {
            Ok(e) => e,
            Err(o) => return o,
        };
        let mut req = PromoteRequest::new(
            &self.s.target,
            epoch.saturating_add(1),
            "amrelay send-test --dry-run",
        );
        req.manual = true;
        req.dry_run = true;
        match self.requester.promote(&req, d.id).await {
            Err(o) => o,
            Ok(r)
                if r.status == StatusCode::OK
                    && r.body.as_ref().is_ok_and(|a| a.result == Verdict::Verified) =>
            {
                tracing::info!(answer = %r.describe(), "the endpoint verified the request");
                Outcome::Delivered
            }
            Ok(r) => r.by_status(),
        }
    }

    async fn tell(&self, env: &PromotionEnv, d: &Delivery<'_>, event: Event) -> Result<(), String> {
        outcome::tell(env, &self.s, d.notification, event).await
    }

    fn count(&self, env: &PromotionEnv, event: &str) {
        env.metrics.promotion_event(&self.s.target, event);
    }
}

/// What a final incident state means for the delivery.
fn final_outcome(state: &str, detail: String) -> Outcome {
    match state {
        "promoted" | "verified" => Outcome::Delivered,
        _ => Outcome::permanent(format!("promotion_{state}"), detail),
    }
}

/// An epoch the endpoint showed, as the caller's store keeps it (SQLite's integer). The
/// endpoint keeps its epoch in SQLite too, so the cap is never reached.
fn stored_epoch(e: u64) -> i64 {
    i64::try_from(e).unwrap_or(i64::MAX)
}

/// Made by `amrelay promote`: the admin receiver (which ingest refuses from outside)
/// and the label, so an alert carrying the label cannot pose as one.
fn is_manual(n: &Notification) -> bool {
    n.receiver == crate::domain::ADMIN_RECEIVER && n.common_labels.get(MANUAL_LABEL) == Some("true")
}

/// The values of the quorum label among the notification's firing alerts.
fn label_values(n: &Notification, label: &str) -> Vec<String> {
    let mut v: Vec<String> = n
        .alerts
        .iter()
        .filter(|a| a.status == Status::Firing)
        .filter_map(|a| a.labels.get(label).map(str::to_owned))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn reason(n: &Notification, manual: bool) -> String {
    if manual {
        return n
            .annotation("summary")
            .unwrap_or("promotion requested by hand")
            .to_owned();
    }
    let since = n.firing_since().map(|t| t.to_rfc3339()).unwrap_or_default();
    let mut r = format!("{} firing since {since}", n.alert_name());
    if let Some(s) = n.annotation("summary") {
        r.push_str(": ");
        r.push_str(s);
    }
    r
}
