//! End to end with the real Debian `prometheus-alertmanager`: two clustered instances post
//! to amrelay, which was down when they first tried. Both deliver once it is up; Slack
//! gets one message.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use amrelay::app::App;

use crate::fakes::Fake;
use crate::helpers::*;

const BINARY: &str = "prometheus-alertmanager";

pub(crate) struct Killed(pub(crate) Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn alertmanager(dir: &Path, i: usize, web: u16, cluster: u16, peer: u16) -> Child {
    let data = dir.join(format!("am{i}"));
    std::fs::create_dir_all(&data).unwrap();
    let log = std::fs::File::create(dir.join(format!("am{i}.log"))).unwrap();
    Command::new(BINARY)
        .arg(format!(
            "--config.file={}",
            dir.join("alertmanager.yml").display()
        ))
        .arg(format!("--storage.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .arg(format!("--cluster.listen-address=127.0.0.1:{cluster}"))
        .arg(format!("--cluster.advertise-address=127.0.0.1:{cluster}"))
        .arg(format!("--cluster.peer=127.0.0.1:{peer}"))
        .arg("--cluster.peer-timeout=2s")
        .arg("--cluster.gossip-interval=50ms")
        .arg("--cluster.pushpull-interval=1s")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BINARY} (scripts/test installs it): {e}"))
}

pub(crate) async fn get_json(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

/// Polls `url` until `pred` holds on its text.
async fn wait_text(
    client: &reqwest::Client,
    url: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).send().await {
            if pred(&r.text().await.unwrap_or_default()) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what} at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn failed_webhook_notifications(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("alertmanager_notification_requests_failed_total{")
                && l.contains("integration=\"webhook\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_delivers_one_slack_message_per_notification_after_amrelay_was_down() {
    let slack = Fake::slack().await;
    let dir = tempfile::tempdir().unwrap();
    let relay_port = free_port();
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            r#"
route:
  receiver: amrelay
  group_by: [alertname, case]
  group_wait: 1s
  group_interval: 1m
  repeat_interval: 1h
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
    std::fs::write(dir.path().join("bearer.token"), BEARER).unwrap();
    let check = Command::new("amtool")
        .args(["check-config"])
        .arg(dir.path().join("alertmanager.yml"))
        .output()
        .expect("amtool (prometheus-alertmanager package)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let (web0, web1, c0, c1) = (free_port(), free_port(), free_port(), free_port());
    let _ams = Killed(vec![
        alertmanager(dir.path(), 0, web0, c0, c1),
        alertmanager(dir.path(), 1, web1, c1, c0),
    ]);
    let client = crate::helpers::http_client();
    for web in [web0, web1] {
        let url = format!("http://127.0.0.1:{web}/api/v2/status");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let peers = get_json(&client, &url)
                .await
                .and_then(|s| s["cluster"]["peers"].as_array().map(Vec::len));
            if peers == Some(2) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cluster did not form; see am*.log"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Prometheus sends each alert, with its own startsAt, to every Alertmanager; so does this test.
    let starts_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let alert = serde_json::json!([{
        "startsAt": starts_at,
        "labels": {"alertname": "PrimaryDown", "case": "ha", "severity": "critical"},
        "annotations": {"summary": "primary failed its health checks"},
        "generatorURL": "http://127.0.0.1:9090/graph"
    }]);
    for web in [web0, web1] {
        let r = client
            .post(format!("http://127.0.0.1:{web}/api/v2/alerts"))
            .json(&alert)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // amrelay is down: both instances try and fail (seen in their own metrics).
    for web in [web0, web1] {
        wait_text(
            &client,
            &format!("http://127.0.0.1:{web}/metrics"),
            "a failed webhook notification",
            Duration::from_secs(60),
            |m| failed_webhook_notifications(m) >= 1.0,
        )
        .await;
    }

    // Now amrelay comes up on the port Alertmanager was configured with.
    let mut settings = settings_in(dir.path(), &slack_config(&slack.slack_api_url(), ""));
    settings.server.listen = format!("127.0.0.1:{relay_port}").parse().unwrap();
    settings.server.auth = Some(amrelay::config::HttpAuth::Bearer(BEARER.to_owned().into()));
    let app = App::build(settings).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    let relay = format!("http://127.0.0.1:{relay_port}");
    let wait = Duration::from_secs(90);

    // Both instances' retries arrive: received >= 2, deduplicated >= 1.
    for (sample, at_least) in [
        ("amrelay_webhooks_received_total", 2.0),
        ("amrelay_notifications_deduplicated_total", 1.0),
        (
            "amrelay_deliveries_delivered_total{channel=\"ops-slack\"}",
            1.0,
        ),
    ] {
        wait_metric_at(&client, &relay, sample, at_least, wait).await;
    }
    let posted = slack.accepted();
    assert_eq!(
        posted.len(),
        1,
        "one Slack message for one notification: {posted:?}"
    );
    assert!(posted[0]["blocks"]
        .to_string()
        .contains("[FIRING:1] PrimaryDown"));
    assert_eq!(
        metric_at(
            &client,
            &relay,
            "amrelay_webhooks_rejected_total{reason=\"unauthorized\"}"
        )
        .await,
        0.0
    );

    let _ = tx.send(());
    handle.await.unwrap().unwrap();
}
