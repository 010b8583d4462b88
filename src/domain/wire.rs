//! Alertmanager's webhook payload, version 4, exactly as it arrives; one conversion to
//! the domain. Unknown fields are ignored: newer Alertmanagers add some.

use std::borrow::Cow;

mod time;

use chrono::Datelike;
use serde::Deserialize;

use crate::domain::{Alert, Fingerprint, LabelSet, Notification, Status};
use time::Time;

/// Strings amrelay only looks at are borrowed from the body (`Cow` borrows unless the
/// JSON string has escapes); label sets are read straight into their compact form.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage<'a> {
    #[serde(borrow)]
    version: Cow<'a, str>,
    receiver: String,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow)]
    alerts: Vec<WireAlert<'a>>,
    group_key: String,
    #[serde(default)]
    group_labels: LabelSet,
    #[serde(default)]
    common_labels: LabelSet,
    #[serde(default)]
    common_annotations: LabelSet,
    #[serde(rename = "externalURL", default)]
    external_url: String,
    #[serde(default)]
    truncated_alerts: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAlert<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
    labels: LabelSet,
    #[serde(default)]
    annotations: LabelSet,
    starts_at: Time,
    #[serde(default)]
    ends_at: Option<Time>,
    #[serde(rename = "generatorURL", default)]
    generator_url: String,
    #[serde(borrow)]
    fingerprint: Cow<'a, str>,
}

/// Why a body is not a notification; the message is sent back with the 400.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum PayloadError {
    #[error("body is not a valid Alertmanager webhook payload: {0}")]
    Json(String),
    #[error("unsupported payload version {0:?}: amrelay reads Alertmanager webhook version \"4\"")]
    Version(String),
    #[error("{field}: {msg}")]
    Field { field: String, msg: String },
}

/// The most alerts a notification may say it left out (`truncatedAlerts`).
const MAX_TRUNCATED: u64 = u32::MAX as u64;

fn field(field: impl Into<String>, msg: impl Into<String>) -> PayloadError {
    PayloadError::Field {
        field: field.into(),
        msg: msg.into(),
    }
}

pub(crate) fn parse(body: &[u8]) -> Result<Notification, PayloadError> {
    let wire: WireMessage =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    if wire.version != "4" {
        return Err(PayloadError::Version(wire.version.into_owned()));
    }
    let status = Status::parse(&wire.status).ok_or_else(|| {
        field(
            "status",
            format!("expected \"firing\" or \"resolved\", got {:?}", wire.status),
        )
    })?;
    if wire.receiver.is_empty() {
        return Err(field("receiver", "must not be empty"));
    }
    if wire.group_key.is_empty() {
        return Err(field("groupKey", "must not be empty"));
    }
    if wire.alerts.is_empty() {
        return Err(field("alerts", "must hold at least one alert"));
    }
    // A count of alerts Alertmanager left out: never near this. Refused rather than
    // believed, so that every sum with it (titles, messages) stays far from overflow.
    if wire.truncated_alerts > MAX_TRUNCATED {
        return Err(field(
            "truncatedAlerts",
            format!(
                "{} is not a count of alerts (at most {MAX_TRUNCATED})",
                wire.truncated_alerts
            ),
        ));
    }
    let alerts = wire
        .alerts
        .into_iter()
        .enumerate()
        .map(|(i, a)| alert(i, a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Notification {
        receiver: wire.receiver,
        status,
        alerts,
        group_labels: wire.group_labels,
        common_labels: wire.common_labels,
        common_annotations: wire.common_annotations,
        external_url: wire.external_url,
        group_key: wire.group_key,
        truncated_alerts: wire.truncated_alerts,
    })
}

/// A notification amrelay made itself, in the same wire format, so that it is stored and
/// read back exactly like one Alertmanager sent.
pub(crate) fn encode(n: &Notification) -> String {
    let alerts: Vec<serde_json::Value> = n
        .alerts
        .iter()
        .map(|a| {
            serde_json::json!({
                "status": a.status.as_str(),
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": a.starts_at.to_rfc3339(),
                "endsAt": a.ends_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint.as_str(),
            })
        })
        .collect();
    serde_json::json!({
        "version": "4",
        "receiver": n.receiver,
        "status": n.status.as_str(),
        "alerts": alerts,
        "groupKey": n.group_key,
        "groupLabels": n.group_labels,
        "commonLabels": n.common_labels,
        "commonAnnotations": n.common_annotations,
        "externalURL": n.external_url,
        "truncatedAlerts": n.truncated_alerts,
    })
    .to_string()
}

fn alert(i: usize, a: WireAlert) -> Result<Alert, PayloadError> {
    let status = Status::parse(&a.status).ok_or_else(|| {
        field(
            format!("alerts[{i}].status"),
            format!("expected \"firing\" or \"resolved\", got {:?}", a.status),
        )
    })?;
    let fingerprint = Fingerprint::parse(&a.fingerprint).ok_or_else(|| {
        field(
            format!("alerts[{i}].fingerprint"),
            format!(
                "expected a hash like \"a09c9cc47c23e343\", got {:?}",
                a.fingerprint
            ),
        )
    })?;
    Ok(Alert {
        status,
        labels: a.labels,
        annotations: a.annotations,
        starts_at: a.starts_at.0,
        // Go's zero time (year 1) means "not ended".
        ends_at: a.ends_at.map(|t| t.0).filter(|t| t.year() > 1),
        generator_url: a.generator_url,
        fingerprint,
    })
}

/// A captured Alertmanager body from `tests/fixtures/alertmanager/`, for unit tests.
#[cfg(test)]
pub(crate) fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/alertmanager/{name}.raw.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path).unwrap()
}

/// The same, parsed.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> Notification {
    parse(&fixture_bytes(name)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_read_back_as_the_same_notification() {
        for name in [
            "primary-down-firing",
            "group-partially-resolved",
            "truncated-max-alerts",
        ] {
            let n = parse(&fixture_bytes(name)).unwrap();
            assert_eq!(parse(encode(&n).as_bytes()).unwrap(), n, "{name}");
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        fixture_bytes(name)
    }

    #[test]
    fn every_captured_fixture_parses() {
        let dir = format!("{}/tests/fixtures/alertmanager", env!("CARGO_MANIFEST_DIR"));
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".raw.json") {
                parse(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
                n += 1;
            }
        }
        assert!(n >= 12, "only {n} fixtures found");
    }

    #[test]
    fn firing_alert_has_no_end_and_keeps_its_fields() {
        let n = parse(&fixture("primary-down-firing")).unwrap();
        assert_eq!(n.status, Status::Firing);
        assert_eq!(n.alert_name(), "PrimaryDown");
        assert_eq!(n.alerts.len(), 1);
        assert_eq!(n.alerts[0].ends_at, None);
        assert_eq!(n.alerts[0].fingerprint.as_str().len(), 16);
        assert!(
            n.alerts[0].generator_url.contains("&g0.tab=1"),
            "Go's \\u0026 is decoded"
        );
        assert_eq!(n.title(), "[FIRING:1] PrimaryDown");
    }

    #[test]
    fn partially_resolved_group_keeps_each_alert_status() {
        let n = parse(&fixture("group-partially-resolved")).unwrap();
        assert_eq!(n.status, Status::Firing);
        assert_eq!(n.count(Status::Firing), 2);
        assert_eq!(n.count(Status::Resolved), 1);
        assert!(n.alerts[2].ends_at.is_some());
    }

    #[test]
    fn a_group_fires_since_its_earliest_firing_alert_not_a_resolved_one() {
        let mut n = parse(&fixture("group-partially-resolved")).unwrap();
        let firing_start = n.alerts[0].starts_at;
        n.alerts[1].starts_at = firing_start + chrono::TimeDelta::seconds(60);
        n.alerts[2].starts_at = firing_start - chrono::TimeDelta::seconds(3600);
        assert_eq!(n.alerts[2].status, Status::Resolved);
        assert_eq!(n.firing_since(), Some(firing_start));
        n.alerts.retain(|a| a.status == Status::Resolved);
        assert_eq!(n.firing_since(), None);
    }

    #[test]
    fn an_absurd_truncated_alerts_count_is_refused_naming_the_field() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&fixture_bytes("truncated-max-alerts")).unwrap();
        v["truncatedAlerts"] = serde_json::json!(u64::MAX - 1);
        let e = parse(&serde_json::to_vec(&v).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("truncatedAlerts: "), "{e}");
        v["truncatedAlerts"] = serde_json::json!(MAX_TRUNCATED);
        let n = parse(&serde_json::to_vec(&v).unwrap()).unwrap();
        let shown = n.count(Status::Firing) as u64;
        let want = format!("[FIRING:{}]", MAX_TRUNCATED + shown);
        assert!(n.title().starts_with(&want), "{}", n.title());
    }

    #[test]
    fn truncated_alerts_count_in_the_title() {
        let n = parse(&fixture("truncated-max-alerts")).unwrap();
        assert_eq!(n.truncated_alerts, 2);
        assert_eq!(n.title(), "[FIRING:4] TestCase");
    }

    #[test]
    fn unknown_fields_are_accepted() {
        let mut v: serde_json::Value = serde_json::from_slice(&fixture("auth-bearer")).unwrap();
        v["someFutureField"] = serde_json::json!({"x": 1});
        v["alerts"][0]["silenceURL"] = serde_json::json!("http://x");
        parse(&serde_json::to_vec(&v).unwrap()).unwrap();
    }

    #[test]
    fn bad_bodies_name_the_problem() {
        let base: serde_json::Value = serde_json::from_slice(&fixture("auth-bearer")).unwrap();
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = base.clone();
            f(&mut v);
            parse(&serde_json::to_vec(&v).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(parse(b"not json")
            .unwrap_err()
            .to_string()
            .contains("not a valid"));
        assert!(with(&|v| v["version"] = "3".into()).contains("version \"3\""));
        assert!(with(&|v| {
            v.as_object_mut().unwrap().remove("groupKey");
        })
        .contains("missing field `groupKey`"));
        assert!(with(&|v| v["alerts"] = serde_json::json!([])).contains("alerts: must hold"));
        assert!(with(&|v| v["alerts"][0]["status"] = "pending".into())
            .starts_with("alerts[0].status: expected"));
        assert!(with(&|v| v["alerts"][0]["fingerprint"] = "".into())
            .starts_with("alerts[0].fingerprint"));
        assert!(with(&|v| v["alerts"][0]["startsAt"] = "yesterday".into())
            .starts_with("body is not a valid"));
        assert!(with(&|v| v["status"] = 1.into()).contains("invalid type"));
    }
}

#[cfg(test)]
mod proptests;
