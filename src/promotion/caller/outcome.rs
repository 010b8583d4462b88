//! What the people are told: "promotion requested", "succeeded in 4.2 s", "failed: why",
//! "refused", "resolved: no failback". Each is a notification amrelay makes and stores in
//! the outbox for the channel's `outcome_channels`, so it is delivered like any alert:
//! durably, rate limited, retried. Its key is stable per event, so an attempt that is
//! retried after telling does not tell twice.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::state::Incident;
use super::CallerEnv;
use crate::config::PromotionSettings;
use crate::domain::time::human;
use crate::domain::{LabelSet, Notification, DRILL_LABEL};

/// Set on a notification made by `amrelay promote`: skip `min_firing` and the quorum.
pub(crate) const MANUAL_LABEL: &str = "amrelay_manual";
/// With `amrelay promote --force`: skip the cooldown too.
pub(crate) const FORCE_LABEL: &str = "amrelay_force";

pub(super) enum Event {
    Requested {
        incident: Incident,
        dry_run: bool,
    },
    Finished {
        incident: Incident,
        took: Duration,
    },
    Resolved {
        incident: Incident,
    },
    Cooldown {
        until: i64,
    },
    WaitingQuorum {
        seen: Vec<String>,
        needed: u32,
        label: String,
        within: Duration,
    },
}

/// Stores the event's message for the outcome channels; the delivery ids (none when
/// there are no outcome channels, or the same message was stored already). A drill's
/// messages (`drill`: its id) say `[DRILL]` and carry the drill's label.
pub(super) async fn tell(
    env: &CallerEnv,
    s: &PromotionSettings,
    source: &Notification,
    event: Event,
    drill: Option<&str>,
) -> Result<Vec<i64>, String> {
    let target = &s.target;
    let alertname = source.alert_name().to_owned();
    let (result, severity, since_ms, key, summary, description) = match event {
        Event::Requested { incident, dry_run } => (
            "requested",
            "warning",
            incident.opened_at,
            format!("{}/requested", incident.key),
            format!(
                "{}Promotion of {target} requested (incident {}, epoch {})",
                if dry_run { "DRY RUN: " } else { "" },
                incident.key,
                incident.epoch
            ),
            incident.reason,
        ),
        Event::Finished { incident, took } => {
            let state = incident.state.clone();
            let detail = incident.detail.clone().unwrap_or_default();
            let summary = match state.as_str() {
                "promoted" => format!(
                    "Promotion of {target} succeeded, {:.1} s after the alert started firing (incident {})",
                    took.as_secs_f64(),
                    incident.key
                ),
                "verified" => format!(
                    "DRY RUN: the endpoint verified the promotion request for {target} (incident {}); nothing ran",
                    incident.key
                ),
                "refused" => format!(
                    "Promotion of {target} refused by the endpoint (incident {}): {detail}",
                    incident.key
                ),
                _ => format!(
                    "Promotion of {target} FAILED (incident {}): {detail}",
                    incident.key
                ),
            };
            (
                if state == "promoted" { "succeeded" } else { "failed" },
                if state == "promoted" || state == "verified" { "warning" } else { "critical" },
                incident.opened_at,
                format!("{}/{state}", incident.key),
                summary,
                format!("{}\n{detail}", incident.reason),
            )
        }
        Event::Resolved { incident } => (
            "resolved",
            "info",
            incident.opened_at,
            format!("{}/resolved", incident.key),
            format!(
                "{alertname} resolved for {target}; no failback: the backup stays as it is (incident {}, state {})",
                incident.key, incident.state
            ),
            "Fail back by hand when ready, then run `amrelay promotion reset` on the backup.".to_owned(),
        ),
        Event::Cooldown { until } => (
            "cooldown",
            "warning",
            until,
            format!("cooldown/{until}"),
            format!(
                "{alertname} is firing for {target}, but a promotion finished recently: no new promotion before {}",
                human(until)
            ),
            "`amrelay promote --force` overrides the cooldown.".to_owned(),
        ),
        Event::WaitingQuorum { seen, needed, label, within } => (
            "waiting_quorum",
            "warning",
            source.firing_since().map_or(0, |t| t.timestamp_millis()),
            format!("quorum/{}", source.group_key),
            format!(
                "{alertname} for {target} reported by {label}={} only: a promotion needs {needed} within {within:?}; not promoting on this alone",
                if seen.is_empty() { "(none)".to_owned() } else { seen.join(", ") }
            ),
            "A monitor cut off from the primary by its own network cannot promote alone.".to_owned(),
        ),
    };
    let (summary, key) = match drill {
        Some(id) => (format!("[DRILL] {summary}"), format!("drill/{id}/{key}")),
        None => (summary, key),
    };
    tracing::info!(%summary, "promotion outcome");
    if s.outcome_channels.is_empty() {
        return Ok(Vec::new());
    }
    let mut n = notification(
        target,
        result,
        severity,
        since_ms,
        &key,
        summary,
        description,
    );
    if let Some(id) = drill {
        n.common_labels.insert(DRILL_LABEL, id);
        for a in &mut n.alerts {
            a.labels.insert(DRILL_LABEL, id);
        }
    }
    env.outbox
        .enqueue_made_here(&n, &s.outcome_channels)
        .await
        .map(Option::unwrap_or_default)
        .map_err(|e| format!("cannot store the outcome message: {e}"))
}

fn notification(
    target: &str,
    result: &str,
    severity: &str,
    since_ms: i64,
    key: &str,
    summary: String,
    description: String,
) -> Notification {
    let labels: LabelSet = BTreeMap::from([
        ("alertname".to_owned(), "AmrelayPromotion".to_owned()),
        ("target".to_owned(), target.to_owned()),
        ("result".to_owned(), result.to_owned()),
        ("severity".to_owned(), severity.to_owned()),
    ])
    .into();
    let mut annotations = LabelSet::default();
    annotations.insert("summary", summary);
    annotations.insert("description", description);
    let starts_at = DateTime::<Utc>::from_timestamp_millis(since_ms).unwrap_or_else(Utc::now);
    Notification::made_here(
        "amrelay-promotion",
        format!("amrelay-promotion/{target}/{key}"),
        &["alertname", "target"],
        labels,
        annotations,
        starts_at,
    )
}
