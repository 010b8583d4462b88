//! `[[heartbeats]]`: the dead-man's switch. An always-firing alert (Prometheus'
//! `Watchdog`) that stops arriving means the alerting pipeline is down; amrelay says so
//! on the heartbeat's channels (src/heartbeat/).

use std::collections::HashSet;
use std::time::Duration;

use super::raw::RawHeartbeat;
use super::{values, ChannelSettings, Problems};
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
            // A promotion channel would fail over because Prometheus is down.
            let key = format!("heartbeats[{i}].channels[{j}]");
            let why = "a missing heartbeat must not promote";
            super::channel::check_people_channel(channels, names, c, key, why, p);
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

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    const CHANNELS: &str = r#"
[[channels]]
name = "ops"
kind = "console"
[[channels]]
name = "promote"
kind = "promotion"
url = "http://127.0.0.1:1"
target = "primary"
secret_env = "PATH"
[[routes]]
channels = ["ops"]
"#;

    fn load(heartbeats: &str) -> Result<Settings, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("amrelay.toml");
        std::fs::write(&path, format!("{CHANNELS}{heartbeats}")).unwrap();
        Settings::load(Some(&path)).map_err(|e| e.0.into_iter().map(|p| p.text).collect())
    }

    #[test]
    fn a_heartbeat_loads_with_its_defaults() {
        let s = load(
            "[[heartbeats]]\nname = \"watchdog\"\nmatchers = ['alertname=\"Watchdog\"']\nchannels = [\"ops\"]\n",
        )
        .unwrap();
        let h = &s.heartbeats[0];
        assert_eq!(h.name, "watchdog");
        assert_eq!(h.timeout, std::time::Duration::from_secs(300));
        assert_eq!(h.per_label, None);
        assert_eq!(h.channels, vec!["ops".to_owned()]);
        let s = load("[[heartbeats]]\nname = \"w\"\nmatchers = ['alertname=\"Watchdog\"']\nchannels = [\"ops\"]\nper_label = \"externalURL\"\ntimeout = \"90s\"\n").unwrap();
        assert_eq!(s.heartbeats[0].per_label.as_deref(), Some("externalURL"));
        assert_eq!(s.heartbeats[0].timeout, std::time::Duration::from_secs(90));
    }

    #[test]
    fn each_bad_heartbeat_key_is_named() {
        for (body, key, says) in [
            ("matchers = ['a=\"b\"']\nchannels = [\"ops\"]", "heartbeats[0].name", "is required"),
            ("name = \"a b\"\nmatchers = ['a=\"b\"']\nchannels = [\"ops\"]", "heartbeats[0].name", "expected letters"),
            ("name = \"w\"\nchannels = [\"ops\"]", "heartbeats[0].matchers", "is required"),
            ("name = \"w\"\nmatchers = []\nchannels = [\"ops\"]", "heartbeats[0].matchers", "at least one"),
            ("name = \"w\"\nmatchers = ['a=\"b\"', '1x=\"b\"']\nchannels = [\"ops\"]", "heartbeats[0].matchers[1]", "label name"),
            ("name = \"w\"\nmatchers = ['a=\"b\"']\nchannels = [\"ops\"]\nper_label = \"mon-itor\"", "heartbeats[0].per_label", "expected a label name"),
            ("name = \"w\"\nmatchers = ['a=\"b\"']\nchannels = [\"ops\"]\ntimeout = \"soon\"", "heartbeats[0].timeout", "expected a duration"),
            ("name = \"w\"\nmatchers = ['a=\"b\"']\nchannels = [\"ops\"]\ntimeout = \"100ms\"", "heartbeats[0].timeout", "at least 1s"),
            ("name = \"w\"\nmatchers = ['a=\"b\"']", "heartbeats[0].channels", "is required"),
            ("name = \"w\"\nmatchers = ['a=\"b\"']\nchannels = []", "heartbeats[0].channels", "at least one"),
            ("name = \"w\"\nmatchers = ['a=\"b\"']\nchannels = [\"ops\", \"pager\"]", "heartbeats[0].channels[1]", "no channel is named \"pager\""),
            ("name = \"w\"\nmatchers = ['a=\"b\"']\nchannels = [\"promote\"]", "heartbeats[0].channels[0]", "promotion channel"),
            ("name = \"w\"\nmatchers = ['a=\"b\"']\nchannels = [\"ops\"]\nper_lable = \"x\"", "heartbeats[0].per_lable", "did you mean `per_label`"),
        ] {
            let problems = load(&format!("[[heartbeats]]\n{body}\n")).expect_err(body);
            assert!(
                problems.iter().any(|p| p.starts_with(&format!("{key}: ")) && p.contains(says)),
                "{body}: wanted {key}: ...{says}..., got {problems:#?}"
            );
        }
    }

    #[test]
    fn a_second_heartbeat_of_the_same_name_is_named() {
        let one = "name = \"w\"\nmatchers = ['a=\"b\"']\nchannels = [\"ops\"]\n";
        let problems = load(&format!("[[heartbeats]]\n{one}[[heartbeats]]\n{one}")).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("heartbeats[1].name: ") && p.contains("earlier")),
            "{problems:#?}"
        );
    }
}
