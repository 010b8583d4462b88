//! One drill in progress: the steps in order, each waiting (within its budget) for what
//! the caller noted in the store, the resolve whatever came before, the report saved
//! after every step.

use std::time::{Duration, Instant};

use super::report::{self, Report, StepName};
use super::{inject, Request, Runner, POLL};
use crate::config::PromotionSettings;
use crate::domain::time::{now_ms, rfc3339};
use crate::promotion::caller::state::DrillNotes;

/// One drill in progress.
pub(super) struct Run {
    pub(super) runner: Runner,
    pub(super) req: Request,
    pub(super) plan: inject::Plan,
    pub(super) promotion: PromotionSettings,
    pub(super) auth: Option<crate::config::HttpAuth>,
    pub(super) report: Report,
    pub(super) started: Instant,
    /// The end of the last step.
    pub(super) mark: Instant,
}

/// What a step came to: pass (what was seen), or fail (why).
type StepEnd = std::result::Result<String, String>;

impl Run {
    pub(super) async fn run(mut self) {
        let id = self.report.id.clone();
        let mut failed: Option<String> = None;
        for name in StepName::ALL {
            // After a failure the rest is skipped, but the alert is resolved whatever
            // came before, so that no drill alert lingers.
            if failed.is_some() && name != StepName::Resolve {
                self.skip(name);
                continue;
            }
            self.begin(name).await;
            let end = match name {
                StepName::Inject => self.send(true).await,
                StepName::Receive => {
                    self.wait(name, |n| {
                        n.received_at
                            .map(|_| "reached the promotion channel".to_owned())
                            .map(Ok)
                    })
                    .await
                }
                StepName::Guards => self.wait(name, guards).await,
                StepName::Verify => self.wait(name, verify).await,
                StepName::Tell => self.tell().await,
                StepName::Resolve => self.resolve().await,
            };
            if let Some(why) = self.end(name, end).await {
                failed.get_or_insert(format!("{}: {why}", name.as_str()));
            }
        }
        let passed = failed.is_none();
        self.report.passed = Some(passed);
        self.report.finished_at = rfc3339(now_ms());
        self.report.verdict = match &failed {
            None => format!(
                "PASSED: every step within its budget, in {:.1} s",
                self.started.elapsed().as_secs_f64()
            ),
            Some(why) => format!("FAILED at {why}"),
        };
        if self.req.live {
            self.report.next = vec![
                format!("Verify the backup serves as the primary ({}).", self.req.target),
                "Fail back by hand when the old primary is healthy again (your runbook's failback steps; amrelay never fails back).".into(),
                "On the backup: `amrelay promotion reset` (the endpoint stays `promoted` until then, and refuses the next incident).".into(),
                "Then `amrelay drill --target ...` (dry run) to prove the chain is armed again.".into(),
            ];
        }
        self.save().await;
        self.runner.refresh_metrics().await;
        if passed {
            tracing::warn!(drill = %id, verdict = %self.report.verdict, "failover drill passed");
        } else {
            tracing::error!(drill = %id, verdict = %self.report.verdict, "failover drill failed");
        }
    }

    async fn begin(&mut self, name: StepName) {
        self.report.step(name).result = report::Result::Running;
        self.save().await;
    }

    fn skip(&mut self, name: StepName) {
        let s = self.report.step(name);
        s.result = report::Result::Skipped;
        s.actual = "not run: an earlier step failed".into();
    }

    /// Records how the step ended, and saves the report; why it failed, if it did.
    async fn end(&mut self, name: StepName, end: StepEnd) -> Option<String> {
        let elapsed = self.mark.elapsed();
        self.mark = Instant::now();
        let (result, actual) = judge(end, elapsed, self.req.step_timeout);
        let failed = (result == report::Result::Fail).then(|| actual.clone());
        let s = self.report.step(name);
        s.elapsed_s = Some(elapsed.as_secs_f64());
        s.result = result;
        s.actual = actual;
        self.save().await;
        failed
    }

    async fn save(&self) {
        let r = &self.report;
        if let Err(e) = self
            .runner
            .caller
            .drill_report(&r.id, r.to_json(), r.passed, now_ms())
            .await
        {
            tracing::error!(drill = %r.id, error = %e, "cannot store the drill's report");
        }
    }

    async fn notes(&self) -> std::result::Result<DrillNotes, String> {
        match self.runner.caller.drill(&self.report.id).await? {
            Some(d) => Ok(d.notes),
            None => Err("the drill is gone from the store".into()),
        }
    }

    /// Waits for the caller's notes to settle the step, within its budget.
    async fn wait(
        &self,
        name: StepName,
        settled: impl Fn(&DrillNotes) -> Option<StepEnd>,
    ) -> StepEnd {
        let deadline = Instant::now() + self.req.step_timeout;
        loop {
            let notes = match self.notes().await {
                Ok(n) => n,
                Err(e) => return Err(e),
            };
            if let Some(end) = settled(&notes) {
                return end;
            }
            if Instant::now() >= deadline {
                return Err(timed_out(name, &notes, &self.promotion));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The drill's alerts, firing or resolved, the way the drill sends them.
    async fn send(&self, firing: bool) -> StepEnd {
        let client = &self.runner.client;
        if self.req.alertmanagers.is_empty() {
            let auth = self.auth.as_ref();
            inject::to_webhook(client, &self.runner.webhook, auth, &self.plan, firing).await
        } else {
            inject::to_alertmanagers(client, &self.req.alertmanagers, &self.plan, firing).await
        }
    }

    /// The messages the caller stored are delivered (or there are none to tell).
    async fn tell(&self) -> StepEnd {
        let want = 2 * self.promotion.outcome_channels.len();
        if want == 0 {
            return Ok("no outcome_channels configured: nothing told".into());
        }
        self.delivered(want, |n| n.told.clone()).await
    }

    async fn resolve(&self) -> StepEnd {
        let sent = self.send(false).await?;
        if self.notes().await?.received_at.is_none() {
            // The channel never saw the alert (an earlier step failed): nobody to wait for.
            return Ok(format!("{sent}; the promotion channel never saw the alert"));
        }
        let received = self
            .wait(StepName::Resolve, |n| {
                n.resolved.as_ref().map(|r| Ok(r.detail.clone()))
            })
            .await?;
        let want = self.promotion.outcome_channels.len();
        if want == 0 {
            return Ok(format!("{sent}; {received}"));
        }
        let told = self.delivered(want, |n| n.resolved_told.clone()).await?;
        Ok(format!("{sent}; {received}; {told}"))
    }

    /// Waits until `want` messages are stored and every one is delivered.
    async fn delivered(&self, want: usize, ids: impl Fn(&DrillNotes) -> Vec<i64>) -> StepEnd {
        let deadline = Instant::now() + self.req.step_timeout;
        loop {
            let notes = self.notes().await?;
            let ids = ids(&notes);
            let states = self
                .runner
                .outbox
                .delivery_states(&ids)
                .await
                .map_err(|e| e.to_string())?;
            let done = states.iter().filter(|(_, s)| s == "delivered").count();
            if let Some((id, s)) = states
                .iter()
                .find(|(_, s)| matches!(s.as_str(), "dead" | "cancelled"))
            {
                return Err(format!(
                    "outcome message (delivery {id}) is {s}: see `amrelay dead-letters list`"
                ));
            }
            if ids.len() >= want && done == ids.len() {
                return Ok(format!("{done} message(s) delivered (deliveries {ids:?})"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{done} of {want} message(s) delivered within the budget (stored: {}); check the outcome channels",
                    ids.len()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A step passes when it ended well within its budget.
fn judge(end: StepEnd, elapsed: Duration, budget: Duration) -> (report::Result, String) {
    match end {
        Ok(actual) if elapsed <= budget => (report::Result::Pass, actual),
        Ok(actual) => (
            report::Result::Fail,
            format!(
                "{actual}, but after {:.1} s: over the {:.0} s budget",
                elapsed.as_secs_f64(),
                budget.as_secs_f64()
            ),
        ),
        Err(why) => (report::Result::Fail, why),
    }
}

fn guards(n: &DrillNotes) -> Option<StepEnd> {
    n.guards.as_ref().map(|g| {
        if g.ok {
            Ok(g.detail.clone())
        } else {
            Err(g.detail.clone())
        }
    })
}

fn verify(n: &DrillNotes) -> Option<StepEnd> {
    n.answer.as_ref().map(|a| {
        if a.ok {
            Ok(a.detail.clone())
        } else {
            Err(a.detail.clone())
        }
    })
}

/// What a step that ran out of time says it saw.
fn timed_out(step: StepName, n: &DrillNotes, p: &PromotionSettings) -> String {
    match step {
        StepName::Receive => "the alert did not reach the promotion channel within the budget: check Alertmanager's route to amrelay and amrelay's [[routes]] for the drill's labels".into(),
        StepName::Guards => match &p.quorum {
            Some(q) if (n.monitors.len() as u32) < q.count => format!(
                "quorum not met: {} of {} {} values seen ({})",
                n.monitors.len(),
                q.count,
                q.label,
                n.monitors.join(", ")
            ),
            _ => "the guards gave no answer within the budget".into(),
        },
        StepName::Verify => "no answer from the endpoint within the budget (see amrelay's log and the channel's queue)".into(),
        _ => format!("{}: nothing within the budget", step.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_passes_only_when_it_ended_well_within_its_budget() {
        let budget = Duration::from_secs(5);
        let (r, actual) = judge(Ok("seen".into()), Duration::from_secs(5), budget);
        assert_eq!((r, actual.as_str()), (report::Result::Pass, "seen"));
        let (r, actual) = judge(Ok("seen".into()), Duration::from_millis(5_001), budget);
        assert_eq!(r, report::Result::Fail);
        assert!(
            actual.starts_with("seen, but after 5.0 s: over the 5 s budget"),
            "{actual}"
        );
        let (r, actual) = judge(Err("refused".into()), Duration::ZERO, budget);
        assert_eq!((r, actual.as_str()), (report::Result::Fail, "refused"));
    }
}
