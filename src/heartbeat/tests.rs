//! Which notification is a heartbeat and from where; what is told, in which order; and
//! the grace period after start.

use std::sync::Arc;
use std::time::Duration;

use super::notify::{self, Event};
use super::sighting::{self, Sighting};
use super::state::{HeartbeatState, SourceRow, NO_SOURCE};
use super::Heartbeats;
use crate::config::{HeartbeatSettings, Settings};
use crate::domain::wire;
use crate::domain::{Matcher, Notification, Status};
use crate::outbox::{Access, Limits, Outbox};
use crate::telemetry::Metrics;

fn beat(name: &str, matcher: &str, per_label: Option<&str>) -> HeartbeatSettings {
    HeartbeatSettings {
        name: name.to_owned(),
        matchers: vec![Matcher::parse(matcher).unwrap()],
        per_label: per_label.map(str::to_owned),
        timeout: Duration::from_secs(300),
        channels: vec!["ops".to_owned()],
    }
}

/// A notification of alerts with these (alertname, monitor, status), from `external`.
fn notification(alerts: &[(&str, Option<&str>, &str)], external: &str) -> Notification {
    let alerts: Vec<serde_json::Value> = alerts
        .iter()
        .enumerate()
        .map(|(i, (name, monitor, status))| {
            let mut labels = serde_json::json!({ "alertname": name });
            if let Some(m) = monitor {
                labels["monitor"] = (*m).into();
            }
            serde_json::json!({
                "status": status, "labels": labels, "annotations": {},
                "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "", "fingerprint": format!("{i:016x}"),
            })
        })
        .collect();
    let body = serde_json::json!({
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing",
        "receiver": "amrelay", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": external, "alerts": alerts,
    });
    wire::parse(body.to_string().as_bytes()).unwrap()
}

#[test]
fn a_notification_is_a_heartbeat_only_when_every_alert_matches() {
    let list = [beat("watchdog", "alertname=\"Watchdog\"", None)];
    let seen = sighting::of(
        &list,
        &notification(&[("Watchdog", None, "firing")], "http://am1"),
    );
    assert_eq!(
        seen,
        Some(Sighting {
            heartbeat: "watchdog".into(),
            sources: vec!["all".into()]
        })
    );
    let mixed = notification(
        &[("Watchdog", None, "firing"), ("DiskFull", None, "firing")],
        "",
    );
    assert_eq!(
        sighting::of(&list, &mixed),
        None,
        "a DiskFull must be routed"
    );
    assert_eq!(
        sighting::of(&list, &notification(&[("DiskFull", None, "firing")], "")),
        None
    );
    assert_eq!(
        sighting::of(&[], &notification(&[("Watchdog", None, "firing")], "")),
        None
    );
}

#[test]
fn sources_come_from_the_per_label_or_the_external_url_and_resolved_alerts_are_no_sighting() {
    let by_monitor = [beat("w", "alertname=\"Watchdog\"", Some("monitor"))];
    let n = notification(
        &[
            ("Watchdog", Some("mon1"), "firing"),
            ("Watchdog", Some("mon2"), "firing"),
            ("Watchdog", Some("mon1"), "firing"),
            ("Watchdog", Some("mon3"), "resolved"),
            ("Watchdog", None, "firing"),
        ],
        "http://am1:9093",
    );
    let s = sighting::of(&by_monitor, &n).unwrap();
    assert_eq!(s.sources, vec!["mon1", "mon2", sighting::UNSET]);

    let by_am = [beat("w", "alertname=\"Watchdog\"", Some("externalURL"))];
    let s = sighting::of(&by_am, &n).unwrap();
    assert_eq!(s.sources, vec!["http://am1:9093"]);

    let resolved = notification(&[("Watchdog", Some("mon1"), "resolved")], "http://am1");
    let s = sighting::of(&by_monitor, &resolved).unwrap();
    assert!(s.sources.is_empty(), "consumed, but not seen: {s:?}");

    assert_eq!(sighting::placeholder(&by_monitor[0]), NO_SOURCE);
    assert_eq!(sighting::placeholder(&beat("w", "a=\"b\"", None)), "all");
}

fn row(missing_unsent: Option<i64>, resolve_unsent: Option<i64>) -> SourceRow {
    SourceRow {
        source: "mon1".into(),
        last_seen: Some(1_000),
        since: 0,
        missing_since: missing_unsent,
        missing_unsent,
        resolve_unsent,
    }
}

#[test]
fn untold_events_go_out_in_the_order_they_happened() {
    let events = |r: &SourceRow| -> Vec<Event> {
        notify::untold(std::slice::from_ref(r))
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    };
    // A silence declared and over before either was told: missing, then back.
    assert_eq!(
        events(&row(Some(5), Some(5))),
        vec![Event::Missing(5), Event::Back(5)]
    );
    // An older silence's resolve before a newer silence's missing.
    assert_eq!(
        events(&row(Some(9), Some(5))),
        vec![Event::Back(5), Event::Missing(9)]
    );
    assert!(events(&row(None, None)).is_empty());
}

#[test]
fn the_missing_and_back_messages_are_one_group_with_keys_stable_per_silence() {
    let h = beat("watchdog", "alertname=\"Watchdog\"", Some("monitor"));
    let missing = notify::notification(&h, &row(Some(60_000), None), Event::Missing(60_000));
    assert_eq!(missing.receiver, "amrelay-heartbeat");
    assert_eq!(missing.alert_name(), "AmrelayHeartbeatMissing");
    let summary = missing.annotation("summary").unwrap();
    assert!(summary.starts_with("no Watchdog from mon1 for 5m: the alerting pipeline may be down (last seen 1970-01-01 00:00:01 UTC)"), "{summary}");
    for (k, v) in [
        ("heartbeat", "watchdog"),
        ("source", "mon1"),
        ("severity", "critical"),
    ] {
        assert_eq!(missing.common_labels.get(k), Some(v));
    }
    let again = notify::notification(&h, &row(Some(60_000), None), Event::Missing(60_000));
    let next = notify::notification(&h, &row(Some(90_000), None), Event::Missing(90_000));
    use crate::domain::DedupKey;
    assert_eq!(DedupKey::of(&missing), DedupKey::of(&again));
    assert_ne!(DedupKey::of(&missing), DedupKey::of(&next));
    let back = notify::notification(&h, &row(None, Some(60_000)), Event::Back(60_000));
    assert_eq!(back.status, Status::Resolved);
    assert_eq!(back.group_key, missing.group_key);
    assert_ne!(DedupKey::of(&back), DedupKey::of(&missing));
    assert!(back
        .annotation("summary")
        .unwrap()
        .starts_with("Watchdog from mon1 is back"));
}

#[test]
fn the_check_period_is_a_fifth_of_the_shortest_timeout_within_1s_and_15s() {
    let with = |secs: &[u64]| {
        let list: Vec<HeartbeatSettings> = secs
            .iter()
            .map(|s| HeartbeatSettings {
                timeout: Duration::from_secs(*s),
                ..beat("w", "a=\"b\"", None)
            })
            .collect();
        super::period(&list)
    };
    assert_eq!(with(&[300]), Duration::from_secs(15));
    assert_eq!(with(&[300, 6]), Duration::from_millis(1200));
    assert_eq!(with(&[2]), Duration::from_secs(1));
}

async fn heartbeats(dir: &std::path::Path, started_at: i64) -> (Heartbeats, Outbox) {
    let path = dir.join("amrelay.toml");
    std::fs::write(&path, format!("[storage]\npath = \"{}\"\n[[channels]]\nname = \"ops\"\nkind = \"console\"\n[[routes]]\nchannels = [\"ops\"]\n", dir.join("store").display())).unwrap();
    let settings = Settings::load(Some(&path)).unwrap();
    let (outbox, _) = Outbox::open(
        &settings.storage,
        "test",
        Limits::of(&settings),
        Access::Serve,
    )
    .await
    .unwrap();
    let state = HeartbeatState::sqlite_at(&settings.storage.path);
    let mut h = Heartbeats::new(
        vec![beat("w", "alertname=\"Watchdog\"", None)],
        state,
        outbox.clone(),
        Arc::new(Metrics::new()),
    );
    h.started_at = started_at;
    (h, outbox)
}

async fn open_deliveries(outbox: &Outbox) -> u64 {
    outbox
        .stats()
        .await
        .unwrap()
        .channels
        .iter()
        .map(|c| c.open)
        .sum()
}

#[tokio::test]
async fn no_source_is_declared_missing_before_the_timeout_has_passed_since_start() {
    let dir = tempfile::tempdir().unwrap();
    let min = 60_000;
    // Seen at 0; amrelay down until 60 min; started again at 60 min.
    let (h, outbox) = heartbeats(dir.path(), 60 * min).await;
    let w = h.settings()[0].clone();
    h.state.ensure("w", "all", 0).await.unwrap();
    h.state.seen("w", &["all".into()], 0).await.unwrap();
    h.check(&w, 60 * min).await.unwrap();
    h.check(&w, 64 * min).await.unwrap();
    assert_eq!(
        open_deliveries(&outbox).await,
        0,
        "declared missing within the grace"
    );
    h.check(&w, 65 * min).await.unwrap();
    assert_eq!(open_deliveries(&outbox).await, 1);
    let rows = h.state.rows("w").await.unwrap();
    assert_eq!(
        (rows[0].missing_since, rows[0].missing_unsent),
        (Some(65 * min), None)
    );
    // Checked again (the next pass, or another instance): nothing new.
    h.check(&w, 66 * min).await.unwrap();
    assert_eq!(open_deliveries(&outbox).await, 1);
}

#[tokio::test]
async fn a_missing_notification_stored_but_not_marked_is_stored_again_as_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let min = 60_000;
    let (h, outbox) = heartbeats(dir.path(), 0).await;
    let w = h.settings()[0].clone();
    h.state.seen("w", &["all".into()], 0).await.unwrap();
    h.check(&w, 6 * min).await.unwrap();
    assert_eq!(open_deliveries(&outbox).await, 1);
    // A crash after storing, before marking it told: the mark is undone.
    {
        let c = rusqlite::Connection::open(dir.path().join("store/heartbeats.db")).unwrap();
        c.execute(
            "UPDATE heartbeat_sources SET missing_unsent = missing_since",
            [],
        )
        .unwrap();
    }
    h.check(&w, 7 * min).await.unwrap();
    assert_eq!(open_deliveries(&outbox).await, 1, "told twice");
    assert_eq!(h.state.rows("w").await.unwrap()[0].missing_unsent, None);
}
