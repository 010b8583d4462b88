//! A notification as Alertmanager meant it: one alert group, already parsed.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::LabelSet;

/// Whether an alert (or a whole notification) is firing or resolved.
/// The receiver names of amrelay's own notifications start with this; ingest refuses
/// them from outside (one could pose as a manual promotion and skip the quorum).
pub(crate) const RESERVED_PREFIX: &str = "amrelay-";
/// The receiver of a manual promotion (`amrelay promote`).
pub(crate) const ADMIN_RECEIVER: &str = "amrelay-admin";
/// Marks an alert (and every message amrelay makes of it) as a drill's: its value is the
/// drill's id. Shown as `[DRILL]`, so that nobody takes it for a real outage.
pub(crate) const DRILL_LABEL: &str = "amrelay_drill";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "firing" => Some(Status::Firing),
            "resolved" => Some(Status::Resolved),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Alertmanager's hash of an alert's label set (16 hex digits on the wire).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Fingerprint(String);

impl Fingerprint {
    /// Accepts any non-empty string of ASCII alphanumerics; Alertmanager sends 16 hex digits.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        (!s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Fingerprint(s.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Alert {
    pub status: Status,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub starts_at: DateTime<Utc>,
    /// `None` for a firing alert: Alertmanager sends Go's zero time then.
    pub ends_at: Option<DateTime<Utc>>,
    pub generator_url: String,
    pub fingerprint: Fingerprint,
}

/// One webhook from Alertmanager: an alert group as one receiver should see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Notification {
    pub receiver: String,
    pub status: Status,
    pub alerts: Vec<Alert>,
    pub group_labels: LabelSet,
    pub common_labels: LabelSet,
    pub common_annotations: LabelSet,
    pub external_url: String,
    pub group_key: String,
    /// Alerts left out by the receiver's `max_alerts`.
    pub truncated_alerts: u64,
}

impl Notification {
    pub(crate) fn alert_name(&self) -> &str {
        self.common_labels
            .get("alertname")
            .or_else(|| self.group_labels.get("alertname"))
            .or_else(|| self.alerts.first().and_then(|a| a.labels.get("alertname")))
            .unwrap_or("(no alertname)")
    }

    pub(crate) fn count(&self, status: Status) -> usize {
        self.alerts.iter().filter(|a| a.status == status).count()
    }

    /// Alertmanager's own title shape: `[FIRING:2] PrimaryDown`.
    pub(crate) fn title(&self) -> String {
        let n = match self.status {
            Status::Firing => self.count(Status::Firing),
            Status::Resolved => self.alerts.len(),
        } as u64
            + self.truncated_alerts;
        format!(
            "{}[{}:{}] {}",
            if self.drill().is_some() {
                "[DRILL] "
            } else {
                ""
            },
            self.status.as_str().to_uppercase(),
            n,
            self.alert_name()
        )
    }

    /// The drill this notification belongs to, when it is a drill's (its
    /// `amrelay_drill` label): every channel shows it as `[DRILL]`.
    pub(crate) fn drill(&self) -> Option<&str> {
        self.common_labels.get(DRILL_LABEL)
    }

    /// A firing notification of one alert that amrelay makes itself: a test message, a
    /// promotion outcome, a manual promotion. The group labels are the `group` names of
    /// `labels`; the fingerprint comes from the group key, so the same key and start make
    /// the same notification (and the same dedup key).
    pub(crate) fn made_here(
        receiver: &str,
        group_key: String,
        group: &[&str],
        labels: LabelSet,
        annotations: LabelSet,
        starts_at: DateTime<Utc>,
    ) -> Notification {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(group_key.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let group_labels = labels
            .iter()
            .filter(|(k, _)| group.contains(k))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Notification {
            receiver: receiver.to_owned(),
            status: Status::Firing,
            alerts: vec![Alert {
                status: Status::Firing,
                labels: labels.clone(),
                annotations: annotations.clone(),
                starts_at,
                ends_at: None,
                generator_url: String::new(),
                // 16 hex digits: always a valid fingerprint.
                fingerprint: Fingerprint(hex),
            }],
            group_labels,
            common_labels: labels,
            common_annotations: annotations,
            external_url: String::new(),
            group_key,
            truncated_alerts: 0,
        }
    }

    /// When the group started firing: its earliest firing alert's `startsAt`.
    pub(crate) fn firing_since(&self) -> Option<DateTime<Utc>> {
        self.alerts
            .iter()
            .filter(|a| a.status == Status::Firing)
            .map(|a| a.starts_at)
            .min()
    }

    /// A common annotation, else the first alert's.
    pub(crate) fn annotation(&self, name: &str) -> Option<&str> {
        self.common_annotations
            .get(name)
            .or_else(|| self.alerts.iter().find_map(|a| a.annotations.get(name)))
    }
}
