//! A drill's alert at the promotion channel (it carries the `amrelay_drill` label). The
//! drill must exist in the store (a drill's runner made it): an alert from outside that
//! carries the label changes nothing.
//!
//! A dry-run drill goes through the guards as a real alert does, but in its own way
//! where a real incident's memory would be touched: an open incident stops it (a drill
//! never interferes), its quorum counts its own monitors only, it opens no incident and
//! moves no epoch. Its request is a signed `dry_run` for the next epoch, which the
//! endpoint answers `verified` without running anything. A `--live` drill is a real
//! incident with `[DRILL]` messages. Each step is noted in the drill, for its runner.

use super::outcome::Event;
use super::state::{DrillRecord, Incident, Note};
use super::Call;
use crate::domain::promotion::{incident_key, PromoteRequest, PromotionState, Verdict};
use crate::domain::time::now_ms;
use crate::domain::Status;
use crate::net::Outcome;

impl Call<'_> {
    pub(super) async fn drill(&self, id: &str) -> Result<Outcome, String> {
        let Some(drill) = self.env.state.drill(id).await? else {
            tracing::warn!(
                drill = id,
                "an alert marked as a drill that no drill runner started: nothing done"
            );
            return Ok(Outcome::permanent(
                "drill_unknown",
                format!("no drill {id:?} was started (amrelay drill makes the alerts it marks)"),
            ));
        };
        if drill.target != self.s.target {
            return Ok(Outcome::permanent(
                "drill_target",
                format!(
                    "drill {id} is of target {:?}, this channel promotes {:?}",
                    drill.target, self.s.target
                ),
            ));
        }
        if drill.finished_at.is_some() {
            tracing::info!(
                drill = id,
                "a delivery of a drill that is over: nothing done"
            );
            return Ok(Outcome::Delivered);
        }
        match (self.d.notification.status, drill.live) {
            (Status::Firing, false) => self.dry_drill(&drill).await,
            (Status::Firing, true) => self.live_drill(&drill).await,
            (Status::Resolved, live) => self.drill_resolved(&drill, live).await,
        }
    }

    async fn note(
        &self,
        id: &str,
        f: impl FnOnce(&mut super::state::DrillNotes) + Send + 'static,
    ) -> Result<(), String> {
        self.env.state.drill_note(id, f).await.map(|_| ())
    }

    async fn noted_received(&self, id: &str) -> Result<(), String> {
        let now = now_ms();
        self.note(id, move |n| {
            n.received_at.get_or_insert(now);
        })
        .await
    }

    /// Never interferes: a real incident open for the target stops the drill.
    async fn real_incident_open(&self, drill: &DrillRecord) -> Result<bool, String> {
        let Some(inc) = self.env.state.open_incident(&self.s.target).await? else {
            return Ok(false);
        };
        // A live drill's own incident is no reason to stop it.
        if drill.live && inc.reason.contains(&mark(&drill.id)) {
            return Ok(false);
        }
        let detail = format!(
            "a real incident is open for {}: {} ({}); the drill stops here and changes nothing",
            self.s.target, inc.key, inc.state
        );
        tracing::warn!(drill = %drill.id, incident = %inc.key, "drill stopped: a real incident is open");
        self.note(&drill.id, move |n| {
            n.guards.get_or_insert(Note::new(now_ms(), false, detail));
        })
        .await?;
        Ok(true)
    }

    async fn dry_drill(&self, drill: &DrillRecord) -> Result<Outcome, String> {
        let id = drill.id.as_str();
        self.noted_received(id).await?;
        if self.real_incident_open(drill).await? {
            return Ok(Outcome::Delivered);
        }
        let now = now_ms();
        if let Some((last, until)) = self.cooling_until(now).await? {
            let detail = format!(
                "within the cooldown after the promotion of {} until {}: a real alert now would only be told so",
                crate::domain::time::human(last),
                crate::domain::time::human(until)
            );
            self.note(id, move |n| {
                n.guards.get_or_insert(Note::new(now, false, detail));
            })
            .await?;
            return Ok(Outcome::Delivered);
        }
        let mut passed = "no incident open, outside the cooldown".to_owned();
        if let Some(q) = &self.s.quorum {
            // The drill's own monitors: a drill's report never counts toward a real
            // quorum, nor a real one toward the drill's.
            let seen = self
                .quorum_seen(q, &drill_scope(&self.s.target, id))
                .await?;
            let monitors = seen.clone();
            self.note(id, move |n| n.monitors = monitors).await?;
            if (seen.len() as u32) < q.count {
                tracing::info!(drill = id, seen = ?seen, needed = q.count, "drill: quorum not met yet");
                return Ok(Outcome::Delivered);
            }
            passed = format!(
                "{passed}, quorum met: {}={} ({} of {} needed)",
                q.label,
                seen.join(","),
                seen.len(),
                q.count
            );
        }
        let (first, done) = self
            .env
            .state
            .drill_note(id, move |n| {
                let done = n.answer.is_some();
                let first = n.guards.is_none();
                n.guards.get_or_insert(Note::new(now, true, passed));
                (first, done)
            })
            .await?
            .unwrap_or((false, true));
        if done {
            // Another monitor's delivery asked already.
            return Ok(Outcome::Delivered);
        }
        self.dry_request(drill, first).await
    }

    /// The signed dry-run request for the next epoch, and what the endpoint said.
    async fn dry_request(&self, drill: &DrillRecord, first: bool) -> Result<Outcome, String> {
        let id = drill.id.as_str();
        let epoch = match self.env.state.last_epoch(&self.s.target).await? {
            Some(e) => e.max(0) as u64,
            None => match self.requester.current_epoch(self.d.id).await {
                Ok(e) => e,
                Err(o) => return Ok(o),
            },
        };
        let next = epoch.saturating_add(1);
        let n = self.d.notification;
        let reason = super::request::reason(n, false);
        let now = now_ms();
        let incident = Incident {
            id: 0,
            target: self.s.target.clone(),
            key: incident_key(&self.s.target, next),
            epoch: next as i64,
            state: "requesting".into(),
            delivery_id: self.d.id,
            reason: reason.clone(),
            firing_since: n
                .firing_since()
                .map_or(self.d.created_at, |t| t.timestamp_millis()),
            opened_at: drill.started_at,
            finished_at: None,
            detail: None,
        };
        if first {
            self.tell(Event::Requested {
                incident: incident.clone(),
                dry_run: true,
            })
            .await?;
        }
        let mut req = PromoteRequest::new(&self.s.target, next, reason);
        req.dry_run = true;
        let reply = match self.requester.promote(&req, self.d.id).await {
            Ok(r) => r,
            Err(o) => return Ok(o),
        };
        let detail = reply.describe();
        let answer = reply.body.as_ref().ok();
        let (state, note) = match (reply.status.as_u16(), answer.map(|a| a.result)) {
            (200, Some(Verdict::Verified)) => (
                "verified",
                Note::new(now_ms(), true, format!("verified for epoch {next}: signature, epoch, state and command checked; nothing ran ({detail})")),
            ),
            (409, _) if answer.is_some_and(|a| a.status.state == PromotionState::Promoted) => (
                "refused",
                Note::new(now_ms(), false, format!("the endpoint is promoted: fail back and run `amrelay promotion reset` on the backup first; the drill stops ({detail})")),
            ),
            (400..=499, _) | (200, _) => (
                if reply.status.as_u16() == 409 { "refused" } else { "failed" },
                Note::new(now_ms(), false, format!("not verified: {detail}")),
            ),
            // 5xx, 202: asked again later, as a real request would be.
            _ => return Ok(reply.by_status()),
        };
        if let Some(a) = answer {
            let _ = self
                .env
                .state
                .saw_epoch(
                    &self.s.target,
                    i64::try_from(a.status.epoch).unwrap_or(i64::MAX),
                )
                .await;
        }
        tracing::info!(drill = id, state, %detail, "drill: the endpoint answered the dry run");
        self.note(id, move |n| {
            n.answer.get_or_insert(note);
        })
        .await?;
        let mut done = incident;
        done.state = state.to_owned();
        done.detail = Some(detail);
        done.finished_at = Some(now_ms());
        let took = std::time::Duration::from_millis((now_ms() - now).max(0) as u64);
        self.tell(Event::Finished {
            incident: done,
            took,
        })
        .await?;
        Ok(Outcome::Delivered)
    }

    /// The real path, with `[DRILL]` messages; noted from the incident it opened.
    async fn live_drill(&self, drill: &DrillRecord) -> Result<Outcome, String> {
        self.noted_received(&drill.id).await?;
        if self.real_incident_open(drill).await? {
            return Ok(Outcome::Delivered);
        }
        let outcome = self.firing().await?;
        let own = self
            .env
            .state
            .owned_by(&self.s.target, self.d.id, self.d.created_at)
            .await?;
        if let Some(inc) = own {
            let guards = Note::new(
                inc.opened_at,
                true,
                format!("incident {} opened (epoch {})", inc.key, inc.epoch),
            );
            let answer = inc.finished_at.map(|at| {
                Note::new(
                    at,
                    inc.state == "promoted",
                    format!("{}: {}", inc.state, inc.detail.clone().unwrap_or_default()),
                )
            });
            self.note(&drill.id, move |n| {
                n.guards.get_or_insert(guards);
                if let Some(a) = answer {
                    n.answer.get_or_insert(a);
                }
            })
            .await?;
        }
        Ok(outcome)
    }

    async fn drill_resolved(&self, drill: &DrillRecord, live: bool) -> Result<Outcome, String> {
        let id = drill.id.clone();
        let now = now_ms();
        if live {
            let outcome = self.resolved().await?;
            self.note(&id, move |n| {
                n.resolved.get_or_insert(Note::new(
                    now,
                    true,
                    "resolved: incident closed, no failback",
                ));
            })
            .await?;
            return Ok(outcome);
        }
        let _ = self
            .env
            .state
            .resolved_group(
                &drill_scope(&self.s.target, &id),
                &self.d.notification.group_key,
            )
            .await?;
        let first = self
            .env
            .state
            .drill_note(&id, move |n| {
                let first = n.resolved.is_none();
                n.resolved
                    .get_or_insert(Note::new(now, true, "resolved: no failback"));
                first
            })
            .await?
            .unwrap_or(false);
        // Told once, whichever monitor's resolve comes first.
        if first {
            let incident = Incident {
                id: 0,
                target: self.s.target.clone(),
                key: format!("drill {id}"),
                epoch: 0,
                state: "verified".into(),
                delivery_id: self.d.id,
                reason: mark(&id),
                firing_since: drill.started_at,
                opened_at: drill.started_at,
                finished_at: Some(now),
                detail: None,
            };
            self.tell(Event::Resolved { incident }).await?;
        }
        Ok(Outcome::Delivered)
    }
}

/// Starts a drill incident's reason, so that the endpoint's log and `AMRELAY_REASON`
/// say so, and a live drill knows its own incident.
pub(super) fn mark(id: &str) -> String {
    format!("[DRILL {id}]")
}

/// The quorum's memory of one drill, apart from the target's real one.
fn drill_scope(target: &str, id: &str) -> String {
    format!("{target}#drill/{id}")
}
