//! The dead-man's switch end to end: the real Prometheus evaluates an always-firing
//! Watchdog, the real Alertmanager sends it to amrelay every second, amrelay's
//! `[[heartbeats]]` records it. Prometheus stops: one "missing" reaches the channel
//! within timeout + one check; it starts again: one resolve. Then two instances on one
//! PostgreSQL declare each silence once, and a restart keeps what was seen and told.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::alertmanager::{alertmanager, Killed};
use crate::deploy::spawn;
use crate::fakes::{Fake, Received};
use crate::helpers::*;
use crate::postgres::Pg;

const TIMEOUT: Duration = Duration::from_secs(6);
/// min(timeout / 5, 15 s), at least 1 s: the check loop's period for TIMEOUT.
const CHECK: Duration = Duration::from_millis(1200);

/// `server`: whether to add a [server] section (PostgreSQL's config has its own).
fn heartbeat_config(hook: &str, timeout: &str, server: bool) -> String {
    let server = if server {
        "[server]\nbearer_token_file = \"{dir}/bearer.token\"\nshutdown_grace = \"200ms\"\n"
    } else {
        ""
    };
    format!(
        r#"
{server}
[[channels]]
name = "ops"
kind = "webhook"
url = "{hook}"
backoff_min = "50ms"
backoff_max = "200ms"

[[routes]]
channels = ["ops"]

[[heartbeats]]
name = "watchdog"
matchers = ['alertname="Watchdog"']
timeout = "{timeout}"
channels = ["ops"]
"#
    )
}

/// The channel's messages about the heartbeat: (status, when received).
fn told(hook: &Fake) -> Vec<(String, Instant)> {
    hook.received()
        .iter()
        .filter(|r| r.json.to_string().contains("AmrelayHeartbeatMissing"))
        .map(|r: &Received| (r.json["status"].as_str().unwrap_or("").to_owned(), r.at))
        .collect()
}

fn count(hook: &Fake, status: &str) -> usize {
    told(hook).iter().filter(|(s, _)| s == status).count()
}

async fn wait_told(hook: &Fake, status: &str, n: usize, within: Duration) -> Instant {
    eventually(format!("{n} {status} heartbeat message(s)"), within, || {
        let got: Vec<_> = told(hook)
            .into_iter()
            .filter(|(s, _)| s == status)
            .collect();
        if got.len() >= n {
            Ok(got[n - 1].1)
        } else {
            Err(format!(
                "got {:?}",
                told(hook).iter().map(|t| &t.0).collect::<Vec<_>>()
            ))
        }
    })
    .await
}

const LAST_SEEN: &str =
    "amrelay_heartbeat_last_seen_timestamp_seconds{name=\"watchdog\",source=\"all\"}";
const MISSING: &str = "amrelay_heartbeat_missing{name=\"watchdog\",source=\"all\"}";

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn prometheus(dir: &Path, web: &str, am: &str) -> crate::deploy::Children {
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [{am}]\n",
            rules = crate::deploy::deploy("prometheus")
                .join(crate::deploy::WATCHDOG_RULES)
                .display()
        ),
    )
    .unwrap();
    crate::deploy::Children(vec![spawn(
        "prometheus",
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            format!("--web.listen-address={web}"),
            "--rules.alert.resend-delay=1s".to_owned(),
        ],
        &dir.join("prometheus.log"),
    )])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_prometheus_is_told_once_within_the_timeout_and_its_return_once() {
    let hook = Fake::webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let relay_port = free_port();
    std::fs::write(dir.path().join("bearer.token"), BEARER).unwrap();
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            r#"
route:
  receiver: amrelay
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1s
receivers:
  - name: amrelay
    webhook_configs:
      - url: http://127.0.0.1:{relay_port}/webhook/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {}/bearer.token
"#,
            dir.path().display()
        ),
    )
    .unwrap();
    // Alertmanager and Prometheus first, until the Watchdog fires: amrelay, started
    // after, must not find its heartbeat unseen for its first timeout.
    let (web, cluster) = (free_port(), free_port());
    let _am = Killed(vec![alertmanager(dir.path(), 0, web, cluster, cluster)]);
    let prom_web = format!("127.0.0.1:{}", free_port());
    let am = format!("127.0.0.1:{web}");
    let prom = prometheus(dir.path(), &prom_web, &am);
    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alerts =
            crate::alertmanager::get_json(&client, &format!("http://{am}/api/v2/alerts")).await;
        if alerts.is_some_and(|a| a.to_string().contains("Watchdog")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Watchdog in Alertmanager; see prometheus.log, am0.log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut settings = settings_in(dir.path(), &heartbeat_config(&hook.hook_url(), "6s", true));
    settings.server.listen = format!("127.0.0.1:{relay_port}").parse().unwrap();
    let relay = spawn_app_with(tempfile::tempdir().unwrap(), settings).await;

    // Seen: the last-seen time moves, nothing is told, nothing routed.
    relay
        .wait_metric(LAST_SEEN, unix_now() - 1.0, Duration::from_secs(60))
        .await;
    let first = relay.metric(LAST_SEEN).await;
    relay
        .wait_metric(LAST_SEEN, first + 1.0, Duration::from_secs(30))
        .await;
    assert!(
        hook.received().is_empty(),
        "a Watchdog was routed: {:?}",
        hook.received().len()
    );

    // Prometheus stops; Alertmanager's alert lapses (resolve_timeout of Prometheus'
    // endsAt), the Watchdog stops. The last sighting is the metric once it stands still.
    drop(prom);
    let missing_at = wait_told(&hook, "firing", 1, Duration::from_secs(120)).await;
    let last_seen = relay.metric(LAST_SEEN).await;
    let after = unix_now() - (Instant::now() - missing_at).as_secs_f64() - last_seen;
    println!(
        "missing told {after:.2}s after the last sighting (bound {:.1}s)",
        (TIMEOUT + CHECK).as_secs_f64()
    );
    assert!(
        after >= TIMEOUT.as_secs_f64() - 0.1,
        "told {after:.2}s after the last sighting, before the timeout"
    );
    assert!(
        after <= (TIMEOUT + CHECK).as_secs_f64() + 1.0,
        "told {after:.2}s after the last sighting; bound timeout + one check"
    );
    relay
        .wait_metric(MISSING, 1.0, Duration::from_secs(5))
        .await;
    // Still quiet for three more checks: told once.
    tokio::time::sleep(3 * CHECK).await;
    assert_eq!(count(&hook, "firing"), 1, "{:?}", told(&hook));

    // Prometheus is back: one resolve.
    let _prom = prometheus(dir.path(), &prom_web, &am);
    let back = Instant::now();
    wait_told(&hook, "resolved", 1, Duration::from_secs(60)).await;
    println!(
        "resolve told {:.2}s after Prometheus started again",
        back.elapsed().as_secs_f64()
    );
    relay
        .wait_metric(LAST_SEEN, last_seen + 1.0, Duration::from_secs(10))
        .await;
    assert_eq!(relay.metric(MISSING).await, 0.0);
    tokio::time::sleep(3 * CHECK).await;
    assert_eq!(
        (count(&hook, "firing"), count(&hook, "resolved")),
        (1, 1),
        "{:?}",
        told(&hook)
    );
    relay.stop().await;
}

fn watchdog(status: &str) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture("primary-down-firing")).unwrap();
    v["status"] = status.into();
    v["groupKey"] = "{}:{alertname=\"Watchdog\"}".into();
    for a in v["alerts"].as_array_mut().unwrap() {
        a["status"] = status.into();
        a["labels"] = serde_json::json!({"alertname": "Watchdog", "severity": "none"});
    }
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_tell_each_silence_and_its_end_once() {
    let pg = Pg::start();
    let hook = Fake::webhook().await;
    let config = heartbeat_config(&hook.hook_url(), "3s", false);
    let a = pg.app("relay-a", &config).await;
    let b = pg.app("relay-b", &config).await;
    for app in [&a, &b] {
        let (status, body) = app.post(watchdog("firing")).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("heartbeat")),
            "{body}"
        );
    }
    // A resolved Watchdog is consumed and counts as no sighting.
    let (status, body) = a.post(watchdog("resolved")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("heartbeat")),
        "{body}"
    );
    // Both check, both see the silence; one declares it, the channel hears it once.
    for app in [&a, &b] {
        app.wait_metric(MISSING, 1.0, Duration::from_secs(30)).await;
    }
    wait_told(&hook, "firing", 1, Duration::from_secs(30)).await;
    // Not a wait for something to happen: a window of three checks per instance (1 s
    // each) in which a second "missing" would show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count(&hook, "firing"), 1, "{:?}", told(&hook));

    // Both see it again, and go on seeing it (Alertmanager's repeats): one resolve.
    let beats = {
        let (a, b) = (a.url(""), b.url(""));
        tokio::spawn(async move {
            let client = http_client();
            loop {
                for base in [&a, &b] {
                    let _ = client
                        .post(format!("{base}/webhook/alertmanager"))
                        .body(watchdog("firing"))
                        .send()
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    wait_told(&hook, "resolved", 1, Duration::from_secs(30)).await;
    for app in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.metric(MISSING).await != 0.0 {
            assert!(Instant::now() < deadline, "missing stays 1");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A window of two more checks per instance in which a second resolve would show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    beats.abort();
    assert_eq!(
        (count(&hook, "firing"), count(&hook, "resolved")),
        (1, 1),
        "{:?}",
        told(&hook)
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_last_sighting_and_a_silence_told_and_waits_out_the_grace() {
    let hook = Fake::webhook().await;
    let config = heartbeat_config(&hook.hook_url(), "2s", true);
    let app = spawn_app(&config).await;
    app.post(watchdog("firing")).await;
    let seen = app.metric(LAST_SEEN).await;
    assert!(seen > 0.0);
    wait_told(&hook, "firing", 1, Duration::from_secs(30)).await;
    let dir = app.stop().await;

    // Restarted: the last sighting and the silence are read back; not told again.
    let app = spawn_app_in(dir, &config).await;
    app.wait_metric(MISSING, 1.0, Duration::from_secs(10)).await;
    assert_eq!(app.metric(LAST_SEEN).await, seen);
    // A window of four checks in which a second "missing" would show.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(count(&hook, "firing"), 1, "told again after the restart");
    app.post(watchdog("firing")).await;
    wait_told(&hook, "resolved", 1, Duration::from_secs(30)).await;
    let dir = app.stop().await;

    // Seen just before the stop, restarted after longer than the timeout: the grace
    // holds the declaration until timeout has passed since the start.
    let app = spawn_app_in(dir, &config).await;
    app.post(watchdog("firing")).await;
    let dir = app.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    let app = spawn_app_in(dir, &config).await;
    let at = wait_told(&hook, "firing", 2, Duration::from_secs(30)).await;
    let after = (at - started).as_secs_f64();
    println!("after a restart the source quiet for 3s was declared {after:.2}s after the start");
    assert!(
        after >= 2.0,
        "declared {after:.2}s after the start, within the grace"
    );
    app.stop().await;
}
