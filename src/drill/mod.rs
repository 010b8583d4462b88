//! Failover drills (`amrelay drill`, and `[[drills]]` that `serve` fires by surprise):
//! the whole chain, each step verified, nothing promoted unless `--live`.
//!
//! ```text
//! inject   a firing PrimaryDown marked as a drill: through Alertmanager's API, or to
//!          this amrelay's webhook; one alert per monitor when the quorum needs several
//! receive  it reaches the promotion channel (the caller notes it in the drill)
//! guards   no real incident open, outside the cooldown, the quorum met
//! verify   the signed, fenced dry_run: the endpoint answers `verified`
//! tell     the [DRILL] outcome messages are delivered to the outcome channels
//! resolve  the alert resolves; "[DRILL] ... resolved, no failback" is delivered
//! ```
//!
//! The runner drives the steps and reads what the caller noted (`promotion::caller`'s
//! drill path) from the store; with a shared store the two may be on two instances.
//!
//! - [`report`]: the table, as Markdown or JSON.
//! - [`inject`]: the drill's alerts and how they go in.
//! - [`schedule`]: surprise drills, one instance firing each.

mod inject;
pub(crate) mod report;
mod run;
pub(crate) mod schedule;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::Mutex;

use crate::config::{PromotionSettings, Settings};
use crate::domain::time::{now_ms, rfc3339};
use crate::outbox::Outbox;
use crate::promotion::caller::state::{CallerState, DrillNotes, DrillRecord};
use crate::telemetry::metrics::TargetStepLabels;
use crate::telemetry::Metrics;
use report::{Report, Step, StepName};
use run::Run;

/// How often a step looks at the store for what it waits for.
const POLL: Duration = Duration::from_millis(200);

/// What is asked: by `amrelay drill` through the admin API, or by the schedule.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub target: String,
    pub alertmanagers: Vec<Url>,
    pub live: bool,
    pub surprise: bool,
    pub step_timeout: Duration,
}

/// Why a drill did not start.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No promotion channel has the target.
    NoTarget(String),
    /// A real incident is open, or a drill of the target runs.
    Busy(String),
    Store(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoTarget(s) | Refusal::Busy(s) | Refusal::Store(s) => f.write_str(s),
        }
    }
}

/// Starts drills and runs them to the end; one per process, shared by the admin API
/// and the schedule.
#[derive(Clone)]
pub(crate) struct Runner {
    pub settings: Arc<Mutex<Settings>>,
    pub outbox: Outbox,
    pub caller: CallerState,
    pub client: reqwest::Client,
    pub metrics: Arc<Metrics>,
    /// This amrelay's webhook, for a drill without Alertmanagers.
    pub webhook: Url,
}

impl Runner {
    /// Refuses while a real incident of the target is open or a drill of it runs;
    /// else stores the drill and runs it in the background. The stored drill.
    pub(crate) async fn start(&self, req: Request) -> Result<DrillRecord, Refusal> {
        let (channel, promotion, settings) = {
            let settings = self.settings.lock().await;
            let (name, p) = settings
                .promotion_channel_of(&req.target)
                .map_err(Refusal::NoTarget)?;
            (name.to_owned(), p.clone(), settings.clone())
        };
        let store = |e: String| Refusal::Store(e);
        if let Some(inc) = self
            .caller
            .open_incident(&req.target)
            .await
            .map_err(store)?
        {
            return Err(Refusal::Busy(format!(
                "a real incident is open for {}: {} ({}); a drill never interferes: try again once it is closed",
                req.target, inc.key, inc.state
            )));
        }
        let last = self
            .caller
            .drills(Some(&req.target), 1)
            .await
            .map_err(store)?;
        if let Some(d) = last.iter().find(|d| d.finished_at.is_none()) {
            return Err(Refusal::Busy(format!(
                "drill {} of {} is still running (started by {})",
                d.id, d.target, d.instance
            )));
        }
        let now = now_ms();
        let id = format!(
            "{}-{}-{}",
            req.target,
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            &uuid::Uuid::new_v4().simple().to_string()[..4]
        );
        let plan = inject::plan(&settings, &channel, &promotion, &id);
        let report = Report {
            id: id.clone(),
            target: req.target.clone(),
            live: req.live,
            surprise: req.surprise,
            via: if req.alertmanagers.is_empty() {
                vec![format!("webhook {}", self.webhook)]
            } else {
                req.alertmanagers
                    .iter()
                    .map(|u| format!("alertmanager {u}"))
                    .collect()
            },
            instance: settings.server.instance.clone(),
            started_at: rfc3339(now).unwrap_or_default(),
            finished_at: None,
            passed: None,
            verdict: "running".into(),
            steps: expectations(&plan, &channel, &promotion, req.live)
                .into_iter()
                .map(|(name, expected)| Step {
                    name,
                    expected,
                    actual: String::new(),
                    elapsed_s: None,
                    budget_s: req.step_timeout.as_secs_f64(),
                    result: report::Result::Waiting,
                })
                .collect(),
            next: Vec::new(),
        };
        let record = DrillRecord {
            id: id.clone(),
            target: req.target.clone(),
            live: req.live,
            surprise: req.surprise,
            instance: settings.server.instance.clone(),
            started_at: now,
            finished_at: None,
            passed: None,
            report: report.to_json(),
            notes: DrillNotes::default(),
        };
        self.caller
            .drill_create(record.clone())
            .await
            .map_err(store)?;
        tracing::warn!(drill = %id, target = %req.target, live = req.live, surprise = req.surprise, "failover drill started");
        let run = Run {
            runner: self.clone(),
            req,
            plan,
            promotion,
            auth: settings.server.auth.clone(),
            report,
            started: Instant::now(),
            mark: Instant::now(),
        };
        tokio::spawn(run.run());
        Ok(record)
    }

    /// At start: drills this instance ran when it stopped are over, failed.
    pub(crate) async fn interrupted(&self, instance: &str) {
        match self.caller.drills_interrupted(instance, now_ms()).await {
            Ok(ids) => {
                for id in ids {
                    tracing::warn!(drill = %id, "a drill was cut off by the last stop: recorded as failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the drills"),
        }
    }

    /// Sets the drill gauges from the store: every instance exports what the last
    /// drills of each target came to, whichever instance ran them.
    pub(crate) async fn refresh_metrics(&self) {
        let targets: Vec<String> = {
            let s = self.settings.lock().await;
            s.promotion_channels()
                .map(|(_, p)| p.target.clone())
                .collect()
        };
        for target in targets {
            let drills = match self.caller.drills(Some(&target), 50).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the drills");
                    return;
                }
            };
            let labels = Metrics::target(&target);
            let m = &self.metrics;
            if let Some(last) = drills.first() {
                m.drill_last_run
                    .get_or_create(&labels)
                    .set(last.started_at as f64 / 1000.0);
            }
            if let Some(ok) = drills.iter().find(|d| d.passed == Some(true)) {
                m.drill_last_success
                    .get_or_create(&labels)
                    .set(ok.started_at as f64 / 1000.0);
            }
            if let Some(done) = drills.iter().find(|d| d.passed.is_some()) {
                m.drill_last_passed
                    .get_or_create(&labels)
                    .set(i64::from(done.passed == Some(true)));
                if let Some(r) = Report::from_json(&done.report) {
                    for s in &r.steps {
                        let l = TargetStepLabels {
                            target: target.clone(),
                            step: s.name.as_str().to_owned(),
                        };
                        m.drill_step_duration
                            .get_or_create(&l)
                            .set(s.elapsed_s.unwrap_or(0.0));
                    }
                }
            }
        }
    }
}

/// What each step expects, for the report.
fn expectations(
    plan: &inject::Plan,
    channel: &str,
    p: &PromotionSettings,
    live: bool,
) -> Vec<(StepName, String)> {
    let outcome = if p.outcome_channels.is_empty() {
        "no outcome_channels: nothing to tell".to_owned()
    } else {
        format!(
            "[DRILL] \"requested\" and \"{}\" delivered to {}",
            if live { "succeeded" } else { "verified" },
            p.outcome_channels.join(", ")
        )
    };
    vec![
        (
            StepName::Inject,
            format!(
                "{} firing, marked as this drill: {}",
                plan.alert_name,
                plan.describe()
            ),
        ),
        (
            StepName::Receive,
            format!("the alert reaches promotion channel {channel}"),
        ),
        (
            StepName::Guards,
            match &p.quorum {
                Some(q) => format!(
                    "no incident open, outside the cooldown, quorum of {} {} values met",
                    q.count, q.label
                ),
                None => "no incident open, outside the cooldown".to_owned(),
            },
        ),
        (
            StepName::Verify,
            if live {
                "the endpoint runs the promotion command once: promoted".to_owned()
            } else {
                "signed dry_run for the next epoch: the endpoint verifies signature, epoch, state and command, answers verified; nothing runs".to_owned()
            },
        ),
        (StepName::Tell, outcome),
        (
            StepName::Resolve,
            if p.outcome_channels.is_empty() {
                "the alert resolves: no failback".to_owned()
            } else {
                format!(
                    "the alert resolves: [DRILL] \"resolved, no failback\" delivered to {}",
                    p.outcome_channels.join(", ")
                )
            },
        ),
    ]
}
