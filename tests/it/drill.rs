//! The failover drill from the report, end to end, with the real parts: a fake primary
//! probed by the Debian blackbox exporter, Prometheus with the shipped fast profile and
//! rules, a clustered Alertmanager pair with the shipped config, amrelay as the caller
//! (a promotion channel) and amrelay as the backup's promotion endpoint running a real
//! command. The primary dies; the command runs once; the outcome reaches a channel; the
//! primary comes back: a resolve, no failback. Again with the first Alertmanager killed,
//! and with the caller restarted mid-incident.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;

use crate::alertmanager::{alertmanager, get_json, Killed};
use crate::deploy::{deploy, fast_profile, query, read, replaced, Children};
use crate::fakes::Fake;
use crate::helpers::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(60);

/// The primary: a health endpoint on a fixed port that can stop and come back.
struct Primary {
    addr: String,
    server: Option<JoinHandle<()>>,
}

impl Primary {
    async fn start(addr: &str) -> Primary {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let app = Router::new().route("/healthz", get(|| async { "ok" }));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Primary {
            addr: addr.to_owned(),
            server: Some(server),
        }
    }

    async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
    }
}

struct Drill {
    dir: tempfile::TempDir,
    client: reqwest::Client,
    primary: Primary,
    prometheus: String,
    am_webs: [u16; 2],
    _monitoring: Children,
    ams: Killed,
    caller: Option<TestApp>,
    caller_port: u16,
    /// The caller's admin API (`amrelay drill`).
    admin_port: u16,
    endpoint_port: u16,
    endpoint: TestApp,
    outcomes: Fake,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

impl Drill {
    async fn start() -> Drill {
        let dir = tempfile::tempdir().unwrap();
        let client = crate::helpers::http_client();
        let outcomes = Fake::webhook().await;
        let secret = dir.path().join("promotion.key");
        std::fs::write(&secret, SECRET).unwrap();

        // The backup: amrelay's promotion endpoint runs this command. It notes each run
        // and waits while the `hold` file exists (a command still running).
        let script = dir.path().join("promote.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$AMRELAY_EPOCH $AMRELAY_INCIDENT $(date +%s.%N)\" >> {runs}\nwhile [ -e {hold} ]; do sleep 0.05; done\nexit 0\n",
                runs = dir.path().join("runs.log").display(),
                hold = dir.path().join("hold").display(),
            ),
        )
        .unwrap();
        let endpoint_port = free_port();
        let endpoint = spawn_app(&format!(
            r#"
[promotion_endpoint]
listen = "127.0.0.1:{endpoint_port}"
target = "primary"
secret_file = "{secret}"
command = ["/bin/sh", "{script}"]
timeout = "60s"

[[channels]]
name = "stdout"
kind = "console"
[[routes]]
channels = ["stdout"]
"#,
            secret = secret.display(),
            script = script.display(),
        ))
        .await;

        // The monitoring host: amrelay with a promotion channel, told outcomes on a webhook.
        let caller_port = free_port();
        let caller_dir = tempfile::tempdir().unwrap();
        let admin_port = free_port();
        let caller = start_caller(
            caller_dir,
            (caller_port, admin_port),
            endpoint_port,
            &secret,
            &outcomes,
        )
        .await;

        // The shipped Alertmanager config, pointed at this caller.
        std::fs::write(dir.path().join("bearer.token"), BEARER).unwrap();
        let mut am = read(&deploy("alertmanager/alertmanager.yml"));
        am = replaced(
            &am,
            "http://127.0.0.1:9097/webhook/alertmanager",
            &format!("http://127.0.0.1:{caller_port}/webhook/alertmanager"),
        );
        am = replaced(
            &am,
            "/etc/prometheus/amrelay.token",
            &dir.path().join("bearer.token").display().to_string(),
        );
        std::fs::write(dir.path().join("alertmanager.yml"), am).unwrap();
        let (web0, web1, c0, c1) = (free_port(), free_port(), free_port(), free_port());
        let ams = Killed(vec![
            alertmanager(dir.path(), 0, web0, c0, c1),
            alertmanager(dir.path(), 1, web1, c1, c0),
        ]);

        // The primary, the blackbox exporter and Prometheus with the fast profile.
        let primary = Primary::start(&format!("127.0.0.1:{}", free_port())).await;
        let (monitoring, prometheus) = fast_profile(
            dir.path(),
            &format!("http://{}/healthz", primary.addr),
            [&format!("127.0.0.1:{web0}"), &format!("127.0.0.1:{web1}")],
            &[
                (&format!("127.0.0.1:{caller_port}"), "monitoring"),
                (&endpoint.addr.to_string(), "backup"),
            ],
        );
        let drill = Drill {
            dir,
            client,
            primary,
            prometheus,
            am_webs: [web0, web1],
            _monitoring: monitoring,
            ams,
            caller: Some(caller),
            caller_port,
            admin_port,
            endpoint_port,
            endpoint,
            outcomes,
        };
        drill.wait_cluster().await;
        drill.wait_probe("1").await;
        drill
    }

    async fn wait_cluster(&self) {
        for web in self.am_webs {
            let url = format!("http://127.0.0.1:{web}/api/v2/status");
            let deadline = tokio::time::Instant::now() + WAIT;
            while get_json(&self.client, &url)
                .await
                .and_then(|s| s["cluster"]["peers"].as_array().map(Vec::len))
                != Some(2)
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the Alertmanager cluster did not form; see am*.log in {}",
                    self.dir.path().display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Waits until Prometheus' latest probe of the primary is `value` ("1" up, "0" down).
    async fn wait_probe(&self, value: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = query(
                &self.client,
                &self.prometheus,
                "/api/v1/query?query=probe_success%7Bjob%3D%22primary-probe%22%7D",
            )
            .await;
            if v.as_ref()
                .and_then(|v| v["data"]["result"][0]["value"][1].as_str())
                == Some(value)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no probe_success {value}; see prometheus.log and blackbox.log in {}",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("runs.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    async fn wait_runs(&self, n: usize) -> Vec<String> {
        eventually("the promotion command to run", WAIT, || {
            let r = self.runs();
            if r.len() >= n {
                Ok(r)
            } else {
                Err(format!("see {}", self.dir.path().display()))
            }
        })
        .await
    }

    /// Waits for an outcome message whose text contains `needle`; returns all so far.
    async fn wait_outcome(&self, needle: &str) -> Vec<String> {
        eventually(format!("an outcome message with {needle:?}"), WAIT, || {
            let texts: Vec<String> = self
                .outcomes
                .received()
                .iter()
                .map(|r| r.json.to_string())
                .collect();
            if texts.iter().any(|t| t.contains(needle)) {
                Ok(texts)
            } else {
                Err(format!("got {texts:#?}"))
            }
        })
        .await
    }

    fn caller(&self) -> &TestApp {
        self.caller.as_ref().unwrap()
    }

    fn hold(&self, on: bool) {
        let f = self.dir.path().join("hold");
        if on {
            std::fs::write(f, "").unwrap();
        } else {
            let _ = std::fs::remove_file(f);
        }
    }

    /// The primary dies; returns when (Unix seconds) it did.
    async fn kill_primary(&mut self) -> f64 {
        self.primary.stop().await;
        unix_now()
    }

    async fn revive_primary(&mut self) {
        self.primary = Primary::start(&self.primary.addr.clone()).await;
    }

    /// A firing PrimaryDown for the same target from another group, posted straight to
    /// the caller: it must join the open incident, not promote again.
    async fn duplicate(&self) {
        let mut v: serde_json::Value =
            serde_json::from_slice(&notification("primary-down-firing", "drill-duplicate"))
                .unwrap();
        for section in ["commonLabels", "groupLabels"] {
            v[section]["target"] = "primary".into();
        }
        for a in v["alerts"].as_array_mut().unwrap() {
            a["labels"]["target"] = "primary".into();
        }
        let (status, _) = self.caller().post(serde_json::to_vec(&v).unwrap()).await;
        assert_eq!(status, 200);
        self.caller()
            .wait_metric(
                "amrelay_promotion_incidents_total{target=\"primary\",event=\"joined\"}",
                1.0,
                WAIT,
            )
            .await;
    }
}

/// The caller, its webhooks on `ports.0` and its admin API on `ports.1`.
async fn start_caller(
    dir: tempfile::TempDir,
    (port, admin_port): (u16, u16),
    endpoint_port: u16,
    secret: &Path,
    outcomes: &Fake,
) -> TestApp {
    std::fs::write(dir.path().join("admin.token"), "admin-token\n").unwrap();
    let config = format!(
        r#"
[server]
bearer_token_file = "{{dir}}/bearer.token"
shutdown_grace = "200ms"

[admin]
listen = "127.0.0.1:{admin_port}"
token_file = "{{dir}}/admin.token"

[[channels]]
name = "promote"
kind = "promotion"
url = "http://127.0.0.1:{endpoint_port}"
target = "primary"
secret_file = "{secret}"
outcome_channels = ["ops"]
min_firing = "1s"
backoff_min = "100ms"
backoff_max = "500ms"

[[channels]]
name = "ops"
kind = "webhook"
url = "{hook}"

[[routes]]
matchers = ['alertname="PrimaryDown"']
channels = ["promote"]
continue = true

[[routes]]
channels = ["ops"]
"#,
        secret = secret.display(),
        hook = outcomes.hook_url(),
    );
    let mut settings = settings_in(dir.path(), &config);
    settings.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    spawn_app_with(dir, settings).await
}

/// The command's start time from its line in runs.log.
fn started_at(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0)
}

fn runs_path(d: &Drill) -> PathBuf {
    d.dir.path().join("runs.log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_promotes_once_and_never_fails_back() {
    let mut d = Drill::start().await;
    let killed = d.kill_primary().await;
    let runs = d.wait_runs(1).await;
    println!(
        "drill (fast profile): primary killed -> promotion command started: {:.2} s",
        started_at(&runs[0]) - killed
    );
    assert!(
        runs[0].starts_with("1 primary/1 "),
        "epoch 1, key primary/1: {runs:?}"
    );
    d.wait_outcome("succeeded").await;
    // Another report of the same outage joins the incident; still one run.
    d.duplicate().await;
    assert_eq!(d.runs().len(), 1, "{}", runs_path(&d).display());
    // The dashboard shows it: every panel's query runs on this Prometheus, the failover
    // panels with data (PrimaryDown still firing: the primary is still down).
    crate::dashboard::every_panel_runs_on(
        &d.client,
        &d.prometheus,
        &[
            format!("127.0.0.1:{}", d.caller_port),
            d.endpoint.addr.to_string(),
        ],
    )
    .await;

    // The primary comes back: the alert resolves, people are told, nothing fails back.
    d.revive_primary().await;
    d.wait_probe("1").await;
    d.wait_outcome("no failback").await;
    assert_eq!(d.runs().len(), 1);
    d.caller.take().unwrap().stop().await;
    d.endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_with_the_first_alertmanager_killed() {
    let mut d = Drill::start().await;
    let _ = d.ams.0[0].kill();
    let _ = d.ams.0[0].wait();
    let killed = d.kill_primary().await;
    let runs = d.wait_runs(1).await;
    println!(
        "drill (fast profile, first Alertmanager down): primary killed -> promotion command started: {:.2} s",
        started_at(&runs[0]) - killed
    );
    d.wait_outcome("succeeded").await;
    d.duplicate().await;
    assert_eq!(d.runs().len(), 1);
    d.caller.take().unwrap().stop().await;
    d.endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_with_the_caller_restarted_mid_incident() {
    let mut d = Drill::start().await;
    // The command will keep running until the hold is lifted.
    d.hold(true);
    d.kill_primary().await;
    d.wait_runs(1).await;
    d.wait_outcome("requested").await;
    // The caller has asked and is waiting on the running command; it restarts.
    let dir = d.caller.take().unwrap().stop().await;
    let secret = d.dir.path().join("promotion.key");
    let caller = start_caller(
        dir,
        (d.caller_port, d.admin_port),
        d.endpoint_port,
        &secret,
        &d.outcomes,
    )
    .await;
    d.caller = Some(caller);
    d.hold(false);
    d.wait_outcome("succeeded").await;
    d.duplicate().await;
    let runs = d.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    d.caller.take().unwrap().stop().await;
    d.endpoint.stop().await;
}

/// `amrelay drill` through both real Alertmanagers: the alert takes the real routing
/// path (Alertmanager's route, group_wait, the webhook), each step is verified, the
/// report printed; nothing runs. Then Prometheus has the drill's gauges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amrelay_drill_through_the_real_alertmanagers_verifies_every_step_and_runs_nothing() {
    let mut d = Drill::start().await;
    let caller_dir = d.caller.as_ref().unwrap().dir.path().to_path_buf();
    let mut args = vec![
        "drill".to_owned(),
        "--target".into(),
        "primary".into(),
        "--step-timeout".into(),
        "60s".into(),
        "--admin-url".into(),
        format!("http://127.0.0.1:{}", d.admin_port),
        "--token-file".into(),
        caller_dir.join("admin.token").display().to_string(),
    ];
    for web in d.am_webs {
        args.push("--alertmanager".into());
        args.push(format!("http://127.0.0.1:{web}"));
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_amrelay"))
        .args(&args)
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report.matches("| pass |").count(), 6, "{report}");
    assert!(
        report.contains("alertmanager http://127.0.0.1:"),
        "{report}"
    );
    assert!(d.runs().is_empty(), "the drill ran the command");
    d.wait_outcome("[DRILL]").await;
    // Prometheus scraped what the drill came to.
    let mut url = reqwest::Url::parse("http://x/api/v1/query").unwrap();
    url.query_pairs_mut().append_pair(
        "query",
        "amrelay_drill_last_passed{target=\"primary\"} == 1",
    );
    let path = format!("{}?{}", url.path(), url.query().unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = query(&d.client, &d.prometheus, &path).await;
        if v.as_ref()
            .and_then(|v| v["data"]["result"].as_array())
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: {v:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.caller.take().unwrap().stop().await;
    d.endpoint.stop().await;
}
