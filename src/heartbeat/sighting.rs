//! Which notification is a heartbeat, and which sources it was seen from.

use crate::config::{HeartbeatSettings, EXTERNAL_URL};
use crate::domain::{Notification, Status};

use super::state::NO_SOURCE;

/// The source of a heartbeat without `per_label`.
pub(crate) const ALL: &str = "all";
/// The source of an alert that lacks the `per_label` label.
pub(crate) const UNSET: &str = "(unset)";

/// A notification that is a heartbeat: the heartbeat's name and the sources its firing
/// alerts came from (none for a resolved notification, which counts as no sighting).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sighting {
    pub heartbeat: String,
    pub sources: Vec<String>,
}

/// The first heartbeat whose matchers every alert of `n` matches, and the sources of its
/// firing alerts, each once.
pub(crate) fn of(heartbeats: &[HeartbeatSettings], n: &Notification) -> Option<Sighting> {
    if n.alerts.is_empty() {
        return None;
    }
    let h = heartbeats.iter().find(|h| {
        n.alerts
            .iter()
            .all(|a| h.matchers.iter().all(|m| m.matches(&a.labels)))
    })?;
    let mut sources: Vec<String> = Vec::new();
    for a in n.alerts.iter().filter(|a| a.status == Status::Firing) {
        let source = match h.per_label.as_deref() {
            None => ALL,
            Some(EXTERNAL_URL) => Some(n.external_url.as_str())
                .filter(|u| !u.is_empty())
                .unwrap_or(UNSET),
            Some(label) => a
                .labels
                .get(label)
                .filter(|v| !v.is_empty())
                .unwrap_or(UNSET),
        };
        if !sources.iter().any(|s| s == source) {
            sources.push(source.to_owned());
        }
    }
    Some(Sighting {
        heartbeat: h.name.clone(),
        sources,
    })
}

/// The source a heartbeat not seen yet is missing from: `all`, or `(none)` with a
/// `per_label`.
pub(crate) fn placeholder(h: &HeartbeatSettings) -> &'static str {
    match h.per_label {
        None => ALL,
        Some(_) => NO_SOURCE,
    }
}
