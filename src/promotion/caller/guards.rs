//! The guards a firing delivery passes, in the order `Call::firing` asks them: each
//! settles the delivery or lets it through to the next.

use super::outcome::Event;
use super::Call;
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
        let last = self.env.state.last_promoted_at(&self.s.target).await?;
        match last.map(|at| at + self.s.cooldown.as_millis() as i64) {
            Some(until) if until > now => {
                self.count("cooldown");
                self.tell(Event::Cooldown { until }).await?;
                Ok(Some(Outcome::Delivered))
            }
            _ => Ok(None),
        }
    }

    /// Fewer monitors than the quorum have reported the target down within its window:
    /// tell it, and the delivery ends here.
    pub(super) async fn quorum(&self) -> Result<Option<Outcome>, String> {
        let Some(q) = &self.s.quorum else {
            return Ok(None);
        };
        let n = self.d.notification;
        let values = label_values(n, &q.label);
        let since = self.d.created_at - q.within.as_millis() as i64;
        let seen = self
            .env
            .state
            .observe(
                &self.s.target,
                values,
                &n.group_key,
                self.d.created_at,
                since,
            )
            .await?;
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
pub(super) fn label_values(n: &Notification, label: &str) -> Vec<String> {
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
