//! The guards a firing delivery passes, in the order `Call::firing` asks them: each
//! settles the delivery or lets it through to the next.

use super::outcome::Event;
use super::Call;
use crate::config::Quorum;
use crate::domain::{Notification, Status};
use crate::net::Outcome;

/// What an incident already open for the target means for a firing delivery.
pub(super) enum Open {
    None,
    /// Its request ended, and an operator asks again: close it (this id) and start afresh.
    FinishedAskedAgain(i64),
    Settled(Outcome),
}

impl Call<'_> {
    /// A delivery owns at most one incident, closed or not: its retries resend that
    /// incident's key, and once the answer is final they only tell it again.
    pub(super) async fn own_incident(&self) -> Result<Option<Outcome>, String> {
        let own = self
            .env
            .state
            .owned_by(&self.s.target, self.d.id, self.d.created_at)
            .await?;
        Ok(match own {
            None => None,
            Some(inc) if inc.finished_at.is_none() => Some(self.request(&inc).await),
            Some(inc) => Some(self.retell(inc).await),
        })
    }

    /// An incident another delivery opened for the target: joined, taken over when its
    /// owner gave up (or an operator asks again), or, asked again by hand after its
    /// request ended, let through to start afresh.
    pub(super) async fn open_incident(&self, manual: bool, now: i64) -> Result<Open, String> {
        let Some(inc) = self.env.state.open_incident(&self.s.target).await? else {
            return Ok(Open::None);
        };
        let unfinished = inc.finished_at.is_none();
        let abandoned = unfinished && inc.opened_at + self.max_age.as_millis() as i64 <= now;
        if unfinished && (manual || abandoned) {
            // This delivery takes the incident over and sends the same key, so nothing
            // can run twice.
            self.env
                .state
                .take_over(inc.id, self.d.id, self.d.created_at)
                .await?;
            tracing::warn!(incident = %inc.key, manual, "taking over an unfinished incident; same key");
            return Ok(Open::Settled(self.request(&inc).await));
        }
        if !manual {
            self.count("joined");
            tracing::info!(incident = %inc.key, state = %inc.state, "an incident is open for the target; joined it, no new request");
            return Ok(Open::Settled(Outcome::Delivered));
        }
        Ok(Open::FinishedAskedAgain(inc.id))
    }

    /// Within the cooldown after a promotion (and not forced): tell it, and the delivery
    /// ends here.
    pub(super) async fn cooldown(&self, force: bool, now: i64) -> Result<Option<Outcome>, String> {
        if force {
            return Ok(None);
        }
        match self.cooling_until(now).await? {
            Some((_, until)) => {
                self.count("cooldown");
                self.tell(Event::Cooldown { until }).await?;
                Ok(Some(Outcome::Delivered))
            }
            None => Ok(None),
        }
    }

    /// The target's last promotion and when its cooldown ends, while it has not.
    pub(super) async fn cooling_until(&self, now: i64) -> Result<Option<(i64, i64)>, String> {
        let last = self.env.state.last_promoted_at(&self.s.target).await?;
        Ok(last
            .map(|at| (at, at + self.s.cooldown.as_millis() as i64))
            .filter(|(_, until)| *until > now))
    }

    /// Notes this delivery's monitors under `scope` (the target, or a drill's own), and
    /// returns those that count toward the quorum.
    pub(super) async fn quorum_seen(&self, q: &Quorum, scope: &str) -> Result<Vec<String>, String> {
        let n = self.d.notification;
        let since = self.d.created_at - q.within.as_millis() as i64;
        self.env
            .state
            .observe(
                scope,
                label_values(n, &q.label),
                &n.group_key,
                self.d.created_at,
                since,
            )
            .await
    }

    /// Fewer monitors than the quorum have reported the target down within its window:
    /// tell it, and the delivery ends here.
    pub(super) async fn quorum(&self) -> Result<Option<Outcome>, String> {
        let Some(q) = &self.s.quorum else {
            return Ok(None);
        };
        let seen = self.quorum_seen(q, &self.s.target).await?;
        if seen.len() as u32 >= q.count {
            return Ok(None);
        }
        self.count("waiting_quorum");
        tracing::info!(seen = ?seen, needed = q.count, label = %q.label, "quorum not met: not promoting on this report alone");
        let waiting = Event::WaitingQuorum {
            seen,
            needed: q.count,
            label: q.label.clone(),
            within: q.within,
        };
        self.tell(waiting).await?;
        Ok(Some(Outcome::Delivered))
    }
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
