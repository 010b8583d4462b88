//! An incident's request: opening the incident (epoch = last seen + 1, on disk before
//! the first request), sending its key, and what the endpoint's answer means for it.

use std::time::Duration;

use super::outcome::Event;
use super::state::{Incident, NewIncident};
use super::{is_manual, Call};
use crate::domain::promotion::{PromoteRequest, Verdict};
use crate::domain::time::now_ms;
use crate::domain::Notification;
use crate::net::Outcome;
use crate::telemetry::Metrics;

impl Call<'_> {
    /// Opens an incident with epoch = last seen + 1 (stored before the first request),
    /// tells the outcome channels, and sends the request.
    pub(super) async fn open_and_request(&self, manual: bool, now: i64) -> Result<Outcome, String> {
        let n = self.d.notification;
        let epoch = match self.env.state.last_epoch(&self.s.target).await? {
            Some(e) => e,
            None => match self.requester.current_epoch(self.d.id).await {
                Ok(e) => stored_epoch(e),
                Err(o) => return Ok(o),
            },
        };
        let reason = reason(n, manual);
        let firing_since = n
            .firing_since()
            .map_or(self.d.created_at, |t| t.timestamp_millis());
        let new = NewIncident {
            target: self.s.target.clone(),
            epoch: epoch + 1,
            delivery_id: self.d.id,
            delivery_created: self.d.created_at,
            reason: reason.clone(),
            firing_since,
            now,
        };
        let (inc, opened) = self.env.state.open_or_join(new).await?;
        if !opened {
            self.count("joined");
            return Ok(Outcome::Delivered);
        }
        self.count("requested");
        tracing::warn!(incident = %inc.key, %reason, "promotion requested");
        // Told first, so people read it before the result; a full outbox must not delay
        // the promotion, so a failure to tell is only logged.
        let requested = Event::Requested {
            incident: inc.clone(),
            dry_run: self.s.dry_run,
        };
        if let Err(e) = self.tell(requested).await {
            tracing::warn!(error = %e, "cannot store the \"promotion requested\" message");
        }
        Ok(self.request(&inc).await)
    }

    /// One request for the incident's key, and what its answer means.
    pub(super) async fn request(&self, inc: &Incident) -> Outcome {
        let mut req = PromoteRequest::new(&inc.target, inc.epoch.max(0) as u64, inc.reason.clone());
        req.manual = is_manual(self.d.notification);
        req.dry_run = self.s.dry_run;
        let reply = match self.requester.promote(&req, self.d.id).await {
            Ok(r) => r,
            Err(o) => return o,
        };
        let verdict = reply.body.as_ref().ok().map(|a| a.result);
        if let Ok(a) = &reply.body {
            let e = stored_epoch(a.status.epoch);
            let _ = self.env.state.saw_epoch(&inc.target, e).await;
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
        if let Err(e) = self
            .env
            .state
            .finish(inc.id, final_state, &detail, now)
            .await
        {
            return Outcome::retryable("promotion_state", e);
        }
        self.count(final_state);
        let took = Duration::from_millis((now - inc.firing_since).max(0) as u64);
        if final_state == "promoted" {
            self.env
                .metrics
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
            .tell(Event::Finished {
                incident: done,
                took,
            })
            .await
        {
            return Outcome::retryable("promotion_state", e);
        }
        final_outcome(final_state, detail)
    }

    /// A retry of a delivery whose incident has its final answer: tell it again (the
    /// message's key makes a repeat a no-op) and end the same way.
    pub(super) async fn retell(&self, inc: Incident) -> Outcome {
        let took = Duration::from_millis(
            (inc.finished_at.unwrap_or(inc.opened_at) - inc.firing_since).max(0) as u64,
        );
        let state = inc.state.clone();
        let detail = inc.detail.clone().unwrap_or_default();
        if let Err(e) = self
            .tell(Event::Finished {
                incident: inc,
                took,
            })
            .await
        {
            return Outcome::retryable("promotion_state", e);
        }
        final_outcome(&state, detail)
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

/// Why the incident was opened: sent to the endpoint (its `AMRELAY_REASON`) and told to
/// people; a drill's starts with its mark.
pub(super) fn reason(n: &Notification, manual: bool) -> String {
    if manual {
        return n
            .annotation("summary")
            .unwrap_or("promotion requested by hand")
            .to_owned();
    }
    let since = n.firing_since().map(|t| t.to_rfc3339()).unwrap_or_default();
    let mut r = match n.drill() {
        Some(id) => format!("{} ", super::drill::mark(id)),
        None => String::new(),
    };
    r.push_str(&format!("{} firing since {since}", n.alert_name()));
    if let Some(s) = n.annotation("summary") {
        r.push_str(": ");
        r.push_str(s);
    }
    r
}
