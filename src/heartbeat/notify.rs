//! What the heartbeat's channels are told: "no Watchdog from mon1 for 5m", and later
//! "Watchdog from mon1 is back". Each is a notification amrelay makes, of one group per
//! (heartbeat, source), with a key stable per silence (its start is the silence's
//! `missing_since`), so telling again after a crash is a duplicate the outbox drops.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::state::SourceRow;
use crate::config::HeartbeatSettings;
use crate::domain::time::human;
use crate::domain::{LabelSet, Notification, Status};

pub(crate) const RECEIVER: &str = "amrelay-heartbeat";
pub(crate) const ALERTNAME: &str = "AmrelayHeartbeatMissing";

/// What is to be told, with the silence it is about (its `missing_since`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Missing(i64),
    Back(i64),
}

/// What is stored and not told yet, in the order it happened: a silence's missing
/// before its own resolve, an older silence's resolve before a newer one's missing.
pub(crate) fn untold(rows: &[SourceRow]) -> Vec<(&SourceRow, Event)> {
    let mut out = Vec::new();
    for r in rows {
        let mut events: Vec<(i64, u8, Event)> = Vec::new();
        if let Some(s) = r.missing_unsent {
            events.push((s, 0, Event::Missing(s)));
        }
        if let Some(s) = r.resolve_unsent {
            events.push((s, 1, Event::Back(s)));
        }
        events.sort_by_key(|(s, order, _)| (*s, *order));
        out.extend(events.into_iter().map(|(_, _, e)| (r, e)));
    }
    out
}

/// What the heartbeat is called in messages: its matchers' alertname, else its name.
fn what(h: &HeartbeatSettings) -> &str {
    h.matchers
        .iter()
        .find(|m| m.name() == "alertname")
        .and_then(|m| m.equal_value())
        .unwrap_or(&h.name)
}

pub(crate) fn notification(h: &HeartbeatSettings, row: &SourceRow, event: Event) -> Notification {
    let what = what(h);
    let source = &row.source;
    let timeout = humantime::format_duration(h.timeout);
    let last = match row.last_seen {
        Some(t) => format!("last seen {}", human(t)),
        None => format!(
            "never seen since the heartbeat was configured, {}",
            human(row.since)
        ),
    };
    let (silence, summary) = match event {
        Event::Missing(s) => (
            s,
            format!(
                "no {what} from {source} for {timeout}: the alerting pipeline may be down ({last})"
            ),
        ),
        Event::Back(s) => (s, format!("{what} from {source} is back ({last})")),
    };
    let labels: LabelSet = BTreeMap::from([
        ("alertname".to_owned(), ALERTNAME.to_owned()),
        ("heartbeat".to_owned(), h.name.clone()),
        ("source".to_owned(), source.clone()),
        ("severity".to_owned(), "critical".to_owned()),
    ])
    .into();
    let mut annotations = LabelSet::default();
    annotations.insert("summary", summary);
    annotations.insert(
        "description",
        format!(
            "Alertmanager's always-firing {what} stopped arriving at amrelay (heartbeat {:?}): Prometheus or Alertmanager may be down, or cannot reach amrelay. See docs/runbook.md#amrelayheartbeatmissing.",
            h.name
        ),
    );
    let starts_at = DateTime::<Utc>::from_timestamp_millis(silence).unwrap_or_else(Utc::now);
    let mut n = Notification::made_here(
        RECEIVER,
        format!("{RECEIVER}/{}/{source}", h.name),
        &["alertname", "heartbeat", "source"],
        labels,
        annotations,
        starts_at,
    );
    if let Event::Back(_) = event {
        n.status = Status::Resolved;
        let ends_at = row
            .last_seen
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_else(Utc::now);
        for a in &mut n.alerts {
            a.status = Status::Resolved;
            a.ends_at = Some(ends_at);
        }
    }
    n
}
