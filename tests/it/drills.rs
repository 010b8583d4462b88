//! `amrelay drill` against the real endpoint (amrelay with `[promotion_endpoint]`), the
//! alert straight to the caller's webhook: every step verified, nothing run; a missing
//! command, an open incident and a promoted endpoint stop it; a drill's monitors never
//! count toward a real quorum; an outside alert posing as a drill does nothing; a live
//! drill promotes once; surprise drills fire by themselves. The drill through the real
//! Alertmanager pair is in `drill.rs`.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;
use crate::promotion::{pair, primary_down, Pair};

const WAIT: Duration = Duration::from_secs(30);

/// `amrelay drill --target primary ARGS --format json`: the exit code and the report.
async fn drill(p: &Pair, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec![
        "drill",
        "--target",
        "primary",
        "--step-timeout",
        "15s",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let out = p.admin_cli(&all, "admin.token").await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, stderr)
}

/// `GET` the admin API's drill list.
async fn list(url: &str) -> Value {
    http_client()
        .get(url)
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The admin API's drill list, polled until `done` holds for it: surprise drills fire
/// by themselves, at a moment the test does not choose.
async fn drills_until(
    url: String,
    within: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let v = list(&url).await;
        let all = v.as_array().cloned().unwrap_or_default();
        if done(&all) {
            return all;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn admin_port_url(p: &Pair) -> String {
    format!("http://127.0.0.1:{}/v1/admin/drills?limit=10", p.admin_port)
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name} in {report:#}"))
}

fn results(report: &Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| {
                    format!(
                        "{}={}",
                        s["name"].as_str().unwrap(),
                        s["result"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn endpoint_epoch(p: &Pair) -> f64 {
    p.backup.metric("amrelay_promotion_epoch").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_verifies_every_step_and_runs_nothing() {
    let p = pair(0, "").await;
    let epoch_before = endpoint_epoch(&p).await;
    let (code, report, stderr) = drill(&p, &[]).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(
        results(&report),
        ["inject", "receive", "guards", "verify", "tell", "resolve"].map(|s| format!("{s}=pass")),
        "{report:#}"
    );
    assert!(
        step(&report, "verify")["actual"]
            .as_str()
            .unwrap()
            .contains("verified"),
        "{report:#}"
    );
    // Each step's time is measured and within the budget.
    for s in report["steps"].as_array().unwrap() {
        let e = s["elapsed_s"].as_f64().unwrap();
        assert!((0.0..15.0).contains(&e), "{s:#}");
    }
    // Nothing ran, no epoch moved, and every message said [DRILL].
    assert!(p.runs().is_empty(), "the command ran: {:?}", p.runs());
    assert_eq!(endpoint_epoch(&p).await, epoch_before);
    let texts: Vec<String> = p
        .outcomes
        .received()
        .iter()
        .map(|r| r.json["commonAnnotations"]["summary"].to_string())
        .collect();
    assert_eq!(texts.len(), 3, "requested, verified, resolved: {texts:#?}");
    assert!(texts.iter().all(|t| t.contains("[DRILL]")), "{texts:#?}");
    assert!(texts.iter().any(|t| t.contains("verified")), "{texts:#?}");
    assert!(
        texts.iter().any(|t| t.contains("no failback")),
        "{texts:#?}"
    );
    // The webhook channel's title says it too.
    assert!(p.outcomes.received().iter().all(|r| r.json["title"]
        .as_str()
        .is_some_and(|t| t.starts_with("[DRILL] "))));

    // Kept in the store: `drill show` prints the same drill as a table.
    let id = report["id"].as_str().unwrap();
    let shown = p.admin_cli(&["drill", "show"], "admin.token").await;
    let table = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{table}");
    assert!(table.contains(id), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| ")).count(),
        7,
        "{table}"
    );
    assert!(table.contains("PASSED"), "{table}");

    // The gauges: last run, last success, passed, and each step's duration.
    let started = p
        .caller
        .metric("amrelay_drill_last_run_timestamp_seconds{target=\"primary\"}")
        .await;
    assert!(started > 1.7e9, "{started}");
    assert_eq!(
        p.caller
            .metric("amrelay_drill_last_success_timestamp_seconds{target=\"primary\"}")
            .await,
        started
    );
    assert_eq!(
        p.caller
            .metric("amrelay_drill_last_passed{target=\"primary\"}")
            .await,
        1.0
    );
    let verify_s = p
        .caller
        .metric("amrelay_drill_step_duration_seconds{target=\"primary\",step=\"verify\"}")
        .await;
    assert_eq!(
        verify_s,
        step(&report, "verify")["elapsed_s"].as_f64().unwrap()
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_with_a_quorum_injects_one_alert_per_monitor_and_never_counts_toward_a_real_one() {
    let p = pair(
        0,
        "quorum = { label = \"monitor\", count = 2, within = \"5m\" }",
    )
    .await;
    let (code, report, stderr) = drill(&p, &[]).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    let guards = step(&report, "guards")["actual"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(guards.contains("monitor=drill-1,drill-2"), "{guards}");
    // A real report from one monitor now: the drill's two must not make its quorum.
    let (status, _) = p.caller.post(primary_down("real", "mon1", false)).await;
    assert_eq!(status, 200);
    p.event("waiting_quorum", 1.0).await;
    assert_eq!(
        p.caller
            .metric("amrelay_promotion_incidents_total{target=\"primary\",event=\"requested\"}")
            .await,
        0.0
    );
    assert!(p.runs().is_empty());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_finds_a_command_that_cannot_run() {
    let p = pair(0, "").await;
    // The script went away after the endpoint started (a bad deploy).
    std::fs::remove_file(p.backup_dir.join("promote.sh")).unwrap();
    let (code, report, stderr) = drill(&p, &[]).await;
    assert_eq!(code, 1, "{report:#}\n{stderr}");
    assert_eq!(report["passed"], false);
    let verify = step(&report, "verify");
    assert_eq!(verify["result"], "fail", "{report:#}");
    assert!(
        verify["actual"].as_str().unwrap().contains("could not run"),
        "{verify:#}"
    );
    assert_eq!(step(&report, "tell")["result"], "skipped");
    // The alert is resolved all the same.
    assert_eq!(step(&report, "resolve")["result"], "pass", "{report:#}");
    assert!(report["verdict"].as_str().unwrap().contains("verify"));
    assert_eq!(
        p.caller
            .metric("amrelay_drill_last_passed{target=\"primary\"}")
            .await,
        0.0
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_never_interferes_with_a_real_incident_or_a_promoted_endpoint() {
    let p = pair(0, "cooldown = \"0s\"").await;
    let (status, _) = p.caller.post(primary_down("real", "mon1", false)).await;
    assert_eq!(status, 200);
    p.wait_runs(1).await;
    p.event("promoted", 1.0).await;
    // The incident is open: refused before anything is sent.
    let (code, _, stderr) = drill(&p, &[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("409") && stderr.contains("real incident is open"),
        "{stderr}"
    );
    // Resolved: the incident closes, the endpoint stays promoted. The drill goes
    // through the guards and stops at the endpoint, saying why.
    let (status, _) = p.caller.post(primary_down("real", "mon1", true)).await;
    assert_eq!(status, 200);
    p.outcome("no failback").await;
    let (code, report, stderr) = drill(&p, &[]).await;
    assert_eq!(code, 1, "{report:#}\n{stderr}");
    let verify = step(&report, "verify")["actual"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(verify.contains("the endpoint is promoted"), "{verify}");
    assert!(verify.contains("promotion reset"), "{verify}");
    assert_eq!(p.runs().len(), 1, "the drill ran the command");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_posing_as_a_drill_does_nothing() {
    let p = pair(0, "").await;
    let mut v: Value = serde_json::from_slice(&primary_down("posing", "mon1", false)).unwrap();
    for section in ["commonLabels", "groupLabels"] {
        v[section]["amrelay_drill"] = "made-up".into();
    }
    for a in v["alerts"].as_array_mut().unwrap() {
        a["labels"]["amrelay_drill"] = "made-up".into();
    }
    let (status, _) = p.caller.post(serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(status, 200);
    p.caller
        .wait_metric(
            "amrelay_deliveries_failed_total{channel=\"promote\",reason=\"permanent\"}",
            1.0,
            WAIT,
        )
        .await;
    assert!(p.runs().is_empty());
    assert_eq!(
        p.caller
            .metric("amrelay_promotion_incidents_total{target=\"primary\",event=\"requested\"}")
            .await,
        0.0
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_drill_promotes_once_and_says_how_to_fail_back() {
    let p = pair(0, "").await;
    let (code, report, stderr) = drill(&p, &["--live", "--yes"]).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["live"], true);
    assert_eq!(p.runs().len(), 1);
    let next = report["next"].to_string();
    assert!(next.contains("promotion reset"), "{next}");
    // The incident (and the command's AMRELAY_REASON) says whose it is.
    let status = p.admin_cli(&["status"], "admin.token").await;
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let reason = status["promotion"][0]["last_incident"]["reason"].to_string();
    let id = report["id"].as_str().unwrap();
    assert!(reason.contains(&format!("[DRILL {id}]")), "{reason}");
    assert!(step(&report, "verify")["actual"]
        .as_str()
        .unwrap()
        .starts_with("promoted"));
    // Without --yes it asks, and an empty answer does nothing.
    let out = p
        .admin_cli(&["drill", "--target", "primary", "--live"], "admin.token")
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not confirmed"));
    assert_eq!(p.runs().len(), 1);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surprise_drills_fire_by_themselves_and_are_marked() {
    let p = pair(
        0,
        "\n[[drills]]\ntarget = \"primary\"\nevery = \"3s\"\nstep_timeout = \"15s\"\n",
    )
    .await;
    let drills = drills_until(admin_port_url(&p), WAIT, |all| {
        all.iter()
            .any(|d| d["surprise"] == true && d["passed"] == true)
    })
    .await;
    assert!(drills
        .iter()
        .all(|d| d["surprise"] == true && d["live"] == false));
    assert!(p.runs().is_empty());
    p.outcome("[DRILL]").await;
    p.stop().await;
}

/// Two instances on one PostgreSQL, each with the same `[[drills]]`: each due drill is
/// fired by one of them, and a drill runs across both (the runner on one, the promotion
/// channel's owner possibly the other, their notes in the shared store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surprise_drills_on_a_shared_store_fire_once_each() {
    let pg = crate::postgres::Pg::start();
    let backup_tmp = tempfile::tempdir().unwrap();
    let backup_port = free_port();
    let backup_config = crate::endpoint::support::endpoint_config(
        backup_tmp.path(),
        "promote.sh",
        &format!("127.0.0.1:{backup_port}"),
        "",
    );
    let backup_dir = backup_tmp.path().to_path_buf();
    std::fs::write(backup_dir.join("exit"), "0").unwrap();
    let backup = spawn_app_in(backup_tmp, &backup_config).await;
    let outcomes = crate::fakes::Fake::webhook().await;
    let token_dir = tempfile::tempdir().unwrap();
    let token = token_dir.path().join("admin.token");
    std::fs::write(&token, "admin-token\n").unwrap();
    let channels = format!(
        r#"
[[channels]]
name = "promote"
kind = "promotion"
url = "http://127.0.0.1:{backup_port}"
target = "primary"
secret_file = "{secret}"
outcome_channels = ["ops"]

[[channels]]
name = "ops"
kind = "webhook"
url = "{hook}"

[[routes]]
matchers = ['alertname="PrimaryDown"']
channels = ["promote"]

[[routes]]
channels = ["ops"]

[[drills]]
target = "primary"
every = "2s"
step_timeout = "15s"
"#,
        secret = backup_dir.join("promotion.secret").display(),
        hook = outcomes.hook_url(),
    );
    let admin_port = free_port();
    let admin = format!(
        "\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken_file = \"{}\"\n",
        token.display()
    );
    let a = pg.app("relay-a", &format!("{admin}{channels}")).await;
    let b = pg.app("relay-b", &channels).await;
    let url = format!("http://127.0.0.1:{admin_port}/v1/admin/drills?limit=100");
    let drills = drills_until(url, Duration::from_secs(60), |all| {
        all.iter().filter(|d| !d["passed"].is_null()).count() >= 4
    })
    .await;
    let done: Vec<&Value> = drills.iter().filter(|d| !d["passed"].is_null()).collect();
    assert!(
        done.iter()
            .all(|d| d["passed"] == true && d["surprise"] == true),
        "{done:#?}"
    );
    // One drill per due time: starts at least `every` apart (less the check period),
    // never two at once from the two instances.
    let mut starts: Vec<chrono::DateTime<chrono::FixedOffset>> = drills
        .iter()
        .map(|d| chrono::DateTime::parse_from_rfc3339(d["started_at"].as_str().unwrap()).unwrap())
        .collect();
    starts.sort();
    for w in starts.windows(2) {
        let gap = (w[1] - w[0]).num_milliseconds();
        assert!(gap >= 1_500, "two drills {gap} ms apart: {drills:#?}");
    }
    assert!(
        crate::endpoint::support::runs(&backup_dir).is_empty(),
        "a drill ran the command"
    );
    a.stop().await;
    b.stop().await;
    backup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_drill_request_is_named_and_starts_nothing() {
    let p = pair(0, "").await;
    let client = http_client();
    let url = format!("http://127.0.0.1:{}/v1/admin/drills", p.admin_port);
    for (body, status, named) in [
        (
            serde_json::json!({"target": "secondary"}),
            404,
            "no promotion channel has target \"secondary\" (targets: primary)",
        ),
        (
            serde_json::json!({"target": "primary", "alertmanagers": ["am:9093"]}),
            400,
            "alertmanagers[0]",
        ),
        (
            serde_json::json!({"target": "primary", "step_timeout": "soon"}),
            400,
            "step_timeout",
        ),
        (
            serde_json::json!({"target": "primary", "lve": true}),
            400,
            "lve",
        ),
        (serde_json::json!({"live": true}), 400, "target"),
    ] {
        let r = client
            .post(&url)
            .bearer_auth("admin-token")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
        let answer: Value = r.json().await.unwrap();
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(named), "{body}: {error}");
    }
    assert_eq!(list(&url).await, Value::Array(Vec::new()));
    // And the CLI says a bad --step-timeout before it asks anything.
    let out = p
        .admin_cli(
            &["drill", "--target", "primary", "--step-timeout", "0s"],
            "admin.token",
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--step-timeout"));
    // No drill has run: `drill show` says so, and so does an unknown id.
    let out = p.admin_cli(&["drill", "show"], "admin.token").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no drill has run yet"));
    let out = p.admin_cli(&["drill", "show", "nope"], "admin.token").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_within_the_cooldown_says_so_at_the_guards() {
    let p = pair(0, "cooldown = \"1h\"").await;
    let (status, _) = p.caller.post(primary_down("real", "mon1", false)).await;
    assert_eq!(status, 200);
    p.wait_runs(1).await;
    let (status, _) = p.caller.post(primary_down("real", "mon1", true)).await;
    assert_eq!(status, 200);
    p.outcome("no failback").await;
    let (code, report, stderr) = drill(&p, &[]).await;
    assert_eq!(code, 1, "{report:#}\n{stderr}");
    let guards = step(&report, "guards");
    assert_eq!(guards["result"], "fail", "{report:#}");
    assert!(
        guards["actual"]
            .as_str()
            .unwrap()
            .contains("within the cooldown"),
        "{guards:#}"
    );
    assert_eq!(step(&report, "verify")["result"], "skipped");
    assert_eq!(p.runs().len(), 1);
    p.stop().await;
}

/// An Alertmanager that takes alerts (200, as `POST /api/v2/alerts` answers) and routes
/// them nowhere, counting the posts.
async fn alertmanager_routing_nowhere() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>)
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let posts = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = posts.clone();
    let app = axum::Router::new().route(
        "/api/v2/alerts",
        axum::routing::post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { "" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_never_reaches_the_channel_fails_receive_and_is_still_resolved_at_once() {
    let p = pair(0, "").await;
    let (am, posts) = alertmanager_routing_nowhere().await;
    let out = p
        .admin_cli(
            &[
                "drill",
                "--target",
                "primary",
                "--step-timeout",
                "2s",
                "--format",
                "json",
                "--alertmanager",
                &am,
            ],
            "admin.token",
        )
        .await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let receive = step(&report, "receive");
    assert_eq!(receive["result"], "fail", "{report:#}");
    assert!(
        receive["actual"]
            .as_str()
            .unwrap()
            .contains("did not reach the promotion channel"),
        "{receive:#}"
    );
    assert_eq!(step(&report, "tell")["result"], "skipped");
    // The resolve is sent, and not waited for: the channel never saw the alert.
    let resolve = step(&report, "resolve");
    assert_eq!(resolve["result"], "pass", "{report:#}");
    assert!(resolve["elapsed_s"].as_f64().unwrap() < 1.0, "{resolve:#}");
    assert_eq!(
        posts.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "firing, then resolved"
    );
    assert!(report["verdict"]
        .as_str()
        .unwrap()
        .starts_with("FAILED at receive"));
    p.stop().await;
}
