//! `[[heartbeats]]`: the dead-man's switch. An always-firing alert (Prometheus'
//! `Watchdog`) that stops arriving means the alerting pipeline is down; amrelay says so
//! on the heartbeat's channels (src/heartbeat/).

use std::collections::HashSet;
use std::time::Duration;

use super::raw::RawHeartbeat;
use super::{values, ChannelKind, ChannelSettings, Problems};
use crate::domain::Matcher;

/// The pseudo-label `per_label` may name: the notification's `externalURL`, i.e. which
/// Alertmanager sent it.
pub const EXTERNAL_URL: &str = "externalURL";

#[derive(Debug, Clone)]
pub struct HeartbeatSettings {
    pub name: String,
    /// A notification is the heartbeat when every one of its alerts matches all of these.
    pub matchers: Vec<Matcher>,
    /// One heartbeat per value of this label (or of [`EXTERNAL_URL`]); one for all if unset.
    pub per_label: Option<String>,
    /// Quiet this long means missing.
    pub timeout: Duration,
    pub channels: Vec<String>,
}

/// Each `[[heartbeats]]` element. `names` are every channel's name, also of those with
/// problems of their own (reported once, at the channel); `channels` the valid ones.
pub(super) fn heartbeats(
    raw: &[RawHeartbeat],
    channels: &[ChannelSettings],
    names: &[&str],
    p: &mut Problems,
) -> Vec<HeartbeatSettings> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, h) in raw.iter().enumerate() {
        let key = |k: &str| format!("heartbeats[{i}].{k}");
        let name = match h.name.as_deref() {
            None => p.push(key("name"), "is required"),
            Some(n) if !values::valid_name(n) => p.push(
                key("name"),
                format!("expected letters, digits, '-', '_' or '.', got {n:?}"),
            ),
            Some(n) if !seen.insert(n.to_owned()) => p.push(
                key("name"),
                format!("{n:?} is used by an earlier heartbeat"),
            ),
            Some(n) => n.to_owned(),
        };
        let mut matchers = Vec::new();
        match &h.matchers {
            None => p.push::<()>(
                key("matchers"),
                "is required: which alert is the heartbeat, e.g. ['alertname=\"Watchdog\"']",
            ),
            Some(ms) if ms.is_empty() => p.push::<()>(
                key("matchers"),
                "must have at least one matcher, or every notification would be a heartbeat",
            ),
            Some(ms) => {
                for (j, m) in ms.iter().enumerate() {
                    match Matcher::parse(m) {
                        Ok(m) => matchers.push(m),
                        Err(e) => p.push(format!("heartbeats[{i}].matchers[{j}]"), e.to_string()),
                    }
                }
            }
        }
        let per_label = match h.per_label.as_deref() {
            None => None,
            Some(l) if label_name(l) => Some(l.to_owned()),
            Some(l) => p.push(
                key("per_label"),
                format!(
                    "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) or {EXTERNAL_URL:?}, got {l:?}"
                ),
            ),
        };
        let timeout = p.duration(&key("timeout"), h.timeout.as_deref(), "5m");
        if timeout < Duration::from_secs(1) && h.timeout.is_some() {
            p.push::<()>(key("timeout"), "must be at least 1s");
        }
        let hb_channels = match &h.channels {
            None => p.push(
                key("channels"),
                "is required: where \"heartbeat missing\" is sent",
            ),
            Some(cs) if cs.is_empty() => p.push(key("channels"), "must name at least one channel"),
            Some(cs) => cs.clone(),
        };
        for (j, c) in hb_channels.iter().enumerate() {
            let ckey = format!("heartbeats[{i}].channels[{j}]");
            match channels.iter().find(|s| &s.name == c) {
                // A promotion channel would fail over because Prometheus is down.
                Some(s) if matches!(s.kind, ChannelKind::Promotion(_)) => p.push::<()>(
                    ckey,
                    format!("{c:?} is a promotion channel; a missing heartbeat must not promote"),
                ),
                Some(_) => {}
                None if names.contains(&c.as_str()) => {}
                None => p.push::<()>(ckey, format!("no channel is named {c:?}")),
            }
        }
        out.push(HeartbeatSettings {
            name,
            matchers,
            per_label,
            timeout,
            channels: hb_channels,
        });
    }
    out
}

fn label_name(l: &str) -> bool {
    let mut chars = l.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
