//! The files under `deploy/`, checked by the tools that read them: `promtool` (both
//! Prometheus profiles, the failover rules, amrelay's own alerts and their unit tests), the blackbox
//! exporter's own check, and `amtool` (the Alertmanager HA-pair config and its failover
//! route). Each check is also shown refusing a broken copy, so a pass means the tool
//! looked. Last, a smoke test with the real `prometheus` and blackbox exporter: how long
//! the fast profile takes from a stopped primary to a firing `PrimaryDown`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use crate::helpers::free_port;

/// The profiles: name and N, the consecutive failed probes that fire `PrimaryDown`.
const PROFILES: [(&str, u32); 2] = [("default", 3), ("fast", 2)];

pub(crate) fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `program` to completion; the packages are installed by scripts/test.
pub(crate) fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (scripts/test installs it): {e}"))
}

pub(crate) fn shown(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) fn assert_passes(what: &str, out: &Output) {
    assert!(out.status.success(), "{what} failed: {}", shown(out));
}

pub(crate) fn assert_refused(what: &str, out: &Output) {
    assert!(
        !out.status.success(),
        "{what} passed, but it was broken on purpose: {}",
        shown(out)
    );
}

pub(crate) fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

/// `text` with every `from` replaced; panics if there is none, so an edit that no longer
/// applies (the file changed) fails instead of testing the unchanged file.
pub(crate) fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not found in:\n{text}");
    text.replace(from, to)
}

fn edit(path: &Path, from: &str, to: &str) {
    std::fs::write(path, replaced(&read(path), from, to)).unwrap();
}

/// A copy of deploy/prometheus (files and tests/) in a temp dir, to break on purpose.
fn prometheus_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["", "tests"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(deploy("prometheus").join(sub)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    dir
}

/// The rules file without its second branch: the issue's form alone.
fn without_in_flight_branch(rules: &str) -> String {
    let start = rules
        .find("\n          or\n")
        .expect("the `or` between the branches");
    let end = start + rules[start..].find("\n        labels:").expect("labels:");
    format!("{}{}", &rules[..start], &rules[end..])
}

#[test]
fn both_prometheus_profiles_and_their_rules_pass_promtool_check_config() {
    for (profile, _) in PROFILES {
        let config = deploy(&format!("prometheus/prometheus.{profile}.yml"));
        let out = run("promtool", &["check", "config", path_str(&config)]);
        assert_passes(&format!("promtool check config ({profile})"), &out);
        // check config also checks the rule files the config names.
        for rules in [
            format!("failover.{profile}.rules.yml"),
            AMRELAY_RULES.into(),
            WATCHDOG_RULES.into(),
        ] {
            assert!(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|l| l.starts_with("Checking ") && l.ends_with(&rules)),
                "the {profile} profile should load {rules}: {}",
                shown(&out)
            );
        }
    }

    // A scrape_timeout longer than the interval, and a rule that does not parse.
    let copy = prometheus_copy();
    let config = copy.path().join("prometheus.default.yml");
    edit(&config, "scrape_timeout: 3s", "scrape_timeout: 6s");
    let out = run("promtool", &["check", "config", path_str(&config)]);
    assert_refused("promtool check config, scrape_timeout 6s", &out);

    let copy = prometheus_copy();
    edit(
        &copy.path().join("failover.fast.rules.yml"),
        "[1999ms]) >= 2",
        "[1999ms]) >=",
    );
    let config = copy.path().join("prometheus.fast.yml");
    let out = run("promtool", &["check", "config", path_str(&config)]);
    assert_refused("promtool check config, a broken rule", &out);
}

#[test]
fn failover_rules_pass_promtool_check_rules_and_a_broken_copy_is_refused() {
    for (profile, _) in PROFILES {
        let rules = deploy(&format!("prometheus/failover.{profile}.rules.yml"));
        let out = run("promtool", &["check", "rules", path_str(&rules)]);
        assert_passes(&format!("promtool check rules ({profile})"), &out);
    }

    let copy = prometheus_copy();
    let rules = copy.path().join("failover.default.rules.yml");
    edit(&rules, "max_over_time(", "max_over_tim(");
    let out = run("promtool", &["check", "rules", path_str(&rules)]);
    assert_refused("promtool check rules, an unknown function", &out);
}

/// The numbers written into each rules file are the profile's: window N * interval - 1ms,
/// count >= N, offset = scrape_timeout, group interval = evaluation_interval.
#[test]
fn each_rules_file_uses_its_profiles_interval_timeout_and_n() {
    for (profile, n) in PROFILES {
        let config = read(&deploy(&format!("prometheus/prometheus.{profile}.yml")));
        let global = |key: &str| -> String {
            config
                .lines()
                .find_map(|l| l.strip_prefix(&format!("  {key}: ")))
                .unwrap_or_else(|| panic!("{profile}: no global {key}"))
                .trim()
                .to_owned()
        };
        let interval = humantime::parse_duration(&global("scrape_interval")).unwrap();
        let timeout = global("scrape_timeout");
        let evaluation = global("evaluation_interval");
        assert!(humantime::parse_duration(&timeout).unwrap() <= interval);

        let rules = read(&deploy(&format!("prometheus/failover.{profile}.rules.yml")));
        let window = format!("[{}ms]", (interval * n).as_millis() - 1);
        for expected in [
            format!("{window}) == 0"),
            format!("{window}) >= {n}\n"),
            format!("{window} offset {timeout}) == 0"),
            format!("{window} offset {timeout}) >= {n}\n"),
            format!("interval: {evaluation}\n"),
        ] {
            assert_eq!(
                rules.matches(&expected).count(),
                1,
                "{profile}: expected {expected:?} once in the rules:\n{rules}"
            );
        }
    }
}

#[test]
fn failover_rule_unit_tests_pass_for_both_profiles() {
    let dir = deploy("prometheus");
    for (profile, _) in PROFILES {
        let test = dir.join(format!("tests/{profile}.test.yml"));
        let out = run("promtool", &["test", "rules", path_str(&test)]);
        assert_passes(&format!("promtool test rules ({profile})"), &out);
    }
}

const AMRELAY_RULES: &str = "amrelay.rules.yml";
pub(crate) const WATCHDOG_RULES: &str = "watchdog.rules.yml";

/// The alert names in a rules file, in order.
pub(crate) fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn amrelay_rules_pass_promtool_and_their_unit_tests() {
    let rules = deploy("prometheus").join(AMRELAY_RULES);
    let out = run("promtool", &["check", "rules", path_str(&rules)]);
    assert_passes("promtool check rules (amrelay)", &out);
    let test = deploy("prometheus/tests/amrelay.test.yml");
    let out = run("promtool", &["test", "rules", path_str(&test)]);
    assert_passes("promtool test rules (amrelay)", &out);
}

/// Each alert in amrelay.rules.yml has a case in the unit tests where it fires (and
/// its expected labels are checked), and every amrelay metric it reads is one amrelay
/// exports (src/telemetry/metrics.rs), so a renamed metric cannot leave a silent rule.
#[test]
fn every_amrelay_alert_is_unit_tested_firing_and_reads_only_exported_metrics() {
    let rules = read(&deploy("prometheus").join(AMRELAY_RULES));
    let tests = read(&deploy("prometheus/tests/amrelay.test.yml"));
    let alerts = alert_names(&rules);
    assert!(alerts.len() >= 10, "{alerts:?}");
    for alert in &alerts {
        assert!(
            alert.starts_with("Amrelay"),
            "{alert}: Alertmanager routes Amrelay* by name"
        );
        let firing = format!("alertname: {alert}\n        exp_alerts:\n          - exp_labels:");
        assert!(tests.contains(&firing), "no unit test where {alert} fires");
    }

    let source = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/telemetry/metrics.rs"));
    let re = regex::Regex::new(r"amrelay_[a-z_]+").unwrap();
    let mut used: Vec<&str> = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| re.find_iter(l).map(|m| m.as_str()))
        .collect();
    used.sort_unstable();
    used.dedup();
    assert!(used.len() >= 8, "{used:?}");
    for metric in used {
        // Counters are registered without `_total`, which the client library adds.
        let registered = metric.strip_suffix("_total").unwrap_or(metric);
        assert!(
            source.contains(&format!("\"{registered}\"")),
            "amrelay.rules.yml reads {metric}, which src/telemetry/metrics.rs does not register"
        );
    }
}

/// GitHub's anchor for a Markdown heading: lower case, punctuation other than `-` and
/// `_` dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every alert's runbook_url names a section of docs/runbook.md, its own, and every
/// link inside the runbook lands on a heading.
#[test]
fn every_amrelay_alerts_runbook_url_points_to_its_section_of_the_runbook() {
    let runbook = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbook.md"));
    let anchors: Vec<String> = runbook
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let rules = read(&deploy("prometheus").join(AMRELAY_RULES));
    let urls: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .collect();
    let alerts = alert_names(&rules);
    assert_eq!(urls.len(), alerts.len(), "one runbook_url per alert");
    for (alert, url) in alerts.iter().zip(urls) {
        let fragment = url.trim_matches('"').rsplit_once('#').map(|(_, f)| f);
        assert_eq!(fragment, Some(anchor(alert).as_str()), "{alert}: {url}");
        assert!(
            anchors.contains(&anchor(alert)),
            "docs/runbook.md has no section {alert}"
        );
    }
    let links = regex::Regex::new(r"\]\(#([a-z0-9_-]+)\)").unwrap();
    for link in links.captures_iter(&runbook) {
        assert!(
            anchors.contains(&link[1].to_owned()),
            "a link to #{} with no heading",
            &link[1]
        );
    }
}

/// The unit tests fail when a threshold or a `for` is changed: they pin the behaviour.
#[test]
fn amrelay_rule_unit_tests_fail_on_a_changed_threshold_or_for() {
    let cases = [
        (
            "> 300",
            "> 600",
            "AmrelayDeliveryStuck fires once per channel, not per instance, after 5m + 1m",
        ),
        (
            "== 0 or absent",
            "== 2 or absent",
            "AmrelayDown fires after 1m of failed scrapes and resolves on the first good one",
        ),
        (
            "reason=~\"store_full|store_error|overloaded\"",
            "reason=~\"store_error|overloaded\"",
            "refused webhooks alert by reason, a full or failing store as critical",
        ),
        (
            "state=~\"failed|interrupted\"} == 1",
            "state=~\"failed|interrupted\"} == 1\n        for: 1m",
            "the endpoint failed or interrupted fires at once; standby and promoted do not",
        ),
    ];
    for (from, to, failing_test) in cases {
        let copy = prometheus_copy();
        let rules = copy.path().join(AMRELAY_RULES);
        edit(&rules, from, to);
        let test = copy.path().join("tests/amrelay.test.yml");
        let out = run("promtool", &["test", "rules", path_str(&test)]);
        assert_refused(
            &format!("promtool test rules (amrelay, {from:?} -> {to:?})"),
            &out,
        );
        assert!(
            shown(&out).contains(&format!("name: {failing_test},")),
            "{from:?} -> {to:?}: expected {failing_test:?} to fail: {}",
            shown(&out)
        );
    }
}

/// The unit tests catch the mistakes the rule is written to avoid.
#[test]
fn rule_unit_tests_fail_on_the_off_by_one_and_on_the_issues_form_alone() {
    type Mutation = fn(&str) -> String;
    let cases: [(&str, &str, Mutation, &str); 5] = [
        (
            "default",
            "a window of exactly N intervals",
            |r| replaced(r, "[14999ms]", "[15s]"),
            "fires on the 3rd consecutive failed probe, not on the 2nd",
        ),
        (
            "fast",
            "a window of exactly N intervals",
            |r| replaced(r, "[1999ms]", "[2s]"),
            "fires on the 2nd consecutive failed probe, not on the 1st",
        ),
        (
            "default",
            "no count_over_time check",
            |r| replaced(r, ") >= 3\n", ") >= 1\n"),
            "after a restart, fewer than 3 failed samples do not fire",
        ),
        (
            "default",
            "the issue's form alone",
            without_in_flight_branch,
            "fires when the newest failed probe is still in flight at every evaluation",
        ),
        (
            "fast",
            "the issue's form alone",
            without_in_flight_branch,
            "fires when the newest failed probe is still in flight at every evaluation",
        ),
    ];
    for (profile, what, mutate, failing_test) in cases {
        let copy = prometheus_copy();
        let rules = copy.path().join(format!("failover.{profile}.rules.yml"));
        std::fs::write(&rules, mutate(&read(&rules))).unwrap();
        let test = copy.path().join(format!("tests/{profile}.test.yml"));
        let out = run("promtool", &["test", "rules", path_str(&test)]);
        assert_refused(&format!("promtool test rules ({profile}, {what})"), &out);
        assert!(
            shown(&out).contains(&format!("name: {failing_test},")),
            "{profile}, {what}: expected {failing_test:?} to fail: {}",
            shown(&out)
        );
    }
}

#[test]
fn blackbox_config_passes_the_exporters_check_and_a_typo_is_refused() {
    let config = deploy("prometheus/blackbox.yml");
    let check = |path: &Path| {
        run(
            "prometheus-blackbox-exporter",
            &[
                "--config.check",
                &format!("--config.file={}", path_str(path)),
            ],
        )
    };
    assert_passes("blackbox exporter --config.check", &check(&config));

    let copy = prometheus_copy();
    let config = copy.path().join("blackbox.yml");
    edit(&config, "timeout: 2s", "timeot: 2s");
    assert_refused("blackbox exporter --config.check, a typo", &check(&config));
}

/// tests/it/alertmanager.rs checks a config of its own; this one checks the shipped file.
#[test]
fn alertmanager_config_passes_amtool_and_routes_primary_down_to_the_failover_route() {
    let config = deploy("alertmanager/alertmanager.yml");
    let config = path_str(&config);
    assert_passes(
        "amtool check-config",
        &run("amtool", &["check-config", config]),
    );

    let route = |labels: &[&str]| {
        let file = format!("--config.file={config}");
        let mut args = vec!["config", "routes", "test", &file, "--tree"];
        args.extend(labels);
        let out = run("amtool", &args);
        assert_passes("amtool config routes test", &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let failover = r#"{alertname="PrimaryDown"}  receiver: amrelay"#;
    let primary_down = route(&[
        "alertname=PrimaryDown",
        "target=primary",
        "monitor=mon1",
        "severity=critical",
    ]);
    assert!(primary_down.contains(failover), "{primary_down}");
    let other = route(&["alertname=DiskFull", "severity=critical"]);
    assert!(!other.contains("PrimaryDown"), "{other}");

    // amrelay's own alerts never go through amrelay: every one, by name.
    let rules = read(&deploy("prometheus").join(AMRELAY_RULES));
    for alert in alert_names(&rules) {
        let tree = route(&[&format!("alertname={alert}"), "severity=critical"]);
        assert!(
            tree.contains("receiver: ops-email-direct") && !tree.contains("receiver: amrelay"),
            "{alert} should go to ops-email-direct only: {tree}"
        );
    }
    let text = read(Path::new(config));
    let direct = &text[text.find("- name: ops-email-direct").expect("the receiver")..];
    assert!(
        direct.contains("email_configs:") && !direct.contains("webhook_configs"),
        "{direct}"
    );

    let copy = tempfile::tempdir().unwrap();
    let broken = copy.path().join("alertmanager.yml");
    std::fs::write(
        &broken,
        replaced(
            &read(Path::new(config)),
            "      receiver: amrelay\n",
            "      receiver: amrelay-failover\n",
        ),
    )
    .unwrap();
    assert_refused(
        "amtool check-config, an undefined receiver",
        &run("amtool", &["check-config", path_str(&broken)]),
    );
}

/// The two-amrelay receiver: the same routes, both instances in one receiver.
#[test]
fn the_ha_alertmanager_config_passes_amtool_and_sends_each_notification_to_both_amrelays() {
    let config = deploy("alertmanager/alertmanager.ha.yml");
    let config = path_str(&config);
    assert_passes(
        "amtool check-config",
        &run("amtool", &["check-config", config]),
    );
    let text = read(Path::new(config));
    let urls = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- url: ") && !l.trim_start().starts_with('#'))
        .count();
    assert_eq!(urls, 2, "one webhook_config per amrelay instance");
    let single = read(&deploy("alertmanager/alertmanager.yml"));
    let routes = |s: &str| s[s.find("route:").unwrap()..s.find("receivers:").unwrap()].to_owned();
    assert_eq!(
        routes(&text),
        routes(&single),
        "the same routes as alertmanager.yml"
    );
}

/// Kills the child processes when the test ends, passed or not.
pub(crate) struct Children(pub(crate) Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn spawn(program: &str, args: &[String], log: &Path) -> Child {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} (scripts/test installs it): {e}"))
}

type Posted = Arc<Mutex<Vec<(Instant, Value)>>>;

/// Stands in for Alertmanager's `POST /api/v2/alerts`, the API Prometheus sends to.
async fn fake_alertmanager() -> (String, Posted) {
    let posted = Posted::default();
    let app = Router::new()
        .route(
            "/api/v2/alerts",
            post(|State(p): State<Posted>, body: Bytes| async move {
                let alerts = serde_json::from_slice(&body).unwrap_or(Value::Null);
                p.lock().unwrap().push((Instant::now(), alerts));
            }),
        )
        .with_state(posted.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, posted)
}

pub(crate) async fn query(client: &reqwest::Client, prometheus: &str, path: &str) -> Option<Value> {
    let r = client
        .get(format!("{prometheus}{path}"))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// The shipped fast profile, moved to free ports, probing `primary_url`, alerting the
/// two Alertmanagers at `alertmanagers` (host:port) and scraping the amrelays at
/// `amrelays` ((host:port, store) each; none: the shipped target is left, unreachable):
/// the blackbox exporter and Prometheus running in `dir`, and Prometheus' URL.
pub(crate) fn fast_profile(
    dir: &Path,
    primary_url: &str,
    alertmanagers: [&str; 2],
    amrelays: &[(&str, &str)],
) -> (Children, String) {
    let (blackbox, web) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut config = read(&deploy("prometheus/prometheus.fast.yml"));
    for (from, to) in [
        ("http://127.0.0.1:8080/healthz", primary_url),
        ("127.0.0.1:9115", &blackbox),
        ("127.0.0.1:9093", alertmanagers[0]),
        ("127.0.0.1:9193", alertmanagers[1]),
    ] {
        config = replaced(&config, from, to);
    }
    if !amrelays.is_empty() {
        let targets: String = amrelays
            .iter()
            .map(|(addr, store)| {
                format!("      - targets: [{addr}]\n        labels:\n          store: {store}\n")
            })
            .collect();
        config = replaced(
            &config,
            "      - targets: [127.0.0.1:9097]\n        labels:\n          store: monitoring\n",
            &targets,
        );
        // The shipped 15 s would leave a test's few seconds of failover unseen, or seen
        // in one sample; amrelay.rules.yml's windows hold at any shorter interval.
        config = replaced(
            &config,
            "  - job_name: amrelay\n    scrape_interval: 15s\n",
            "  - job_name: amrelay\n    scrape_interval: 1s\n",
        );
    }
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    for rules in ["failover.fast.rules.yml", AMRELAY_RULES, WATCHDOG_RULES] {
        std::fs::copy(deploy("prometheus").join(rules), dir.join(rules)).unwrap();
    }
    let d = |p: &str| dir.join(p).display().to_string();
    let children = Children(vec![
        spawn(
            "prometheus-blackbox-exporter",
            &[
                format!(
                    "--config.file={}",
                    deploy("prometheus/blackbox.yml").display()
                ),
                format!("--web.listen-address={blackbox}"),
            ],
            &dir.join("blackbox.log"),
        ),
        spawn(
            "prometheus",
            &[
                format!("--config.file={}", d("prometheus.yml")),
                format!("--storage.tsdb.path={}", d("prom-data")),
                format!("--web.listen-address={web}"),
            ],
            &dir.join("prometheus.log"),
        ),
    ]);
    (children, format!("http://{web}"))
}

/// The fast profile's bound from deploy/prometheus/README.md: N x scrape_interval
/// + scrape_timeout + evaluation_interval = 2 x 1s + 1s + 1s.
const FAST_BOUND: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_profile_fires_primary_down_within_its_bound_after_the_primary_stops() {
    let dir = tempfile::tempdir().unwrap();
    let primary = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let primary_url = format!("http://{}/healthz", primary.local_addr().unwrap());
    let app = Router::new().route("/healthz", get(|| async { "ok" }));
    let primary = tokio::spawn(async move { axum::serve(primary, app).await });
    let (alertmanager, posted) = fake_alertmanager().await;

    let (_children, prometheus) = fast_profile(
        dir.path(),
        &primary_url,
        [&alertmanager, &alertmanager],
        &[],
    );
    let client = crate::helpers::http_client();

    // Up: the probe of the running primary succeeds.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = query(
            &client,
            &prometheus,
            "/api/v1/query?query=probe_success%7Bjob%3D%22primary-probe%22%7D",
        )
        .await;
        if v.as_ref()
            .and_then(|v| v["data"]["result"][0]["value"][1].as_str())
            == Some("1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no successful probe; see prometheus.log and blackbox.log in {}",
            dir.path().display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The primary stops: its port refuses connections from now on.
    primary.abort();
    let _ = primary.await;
    let stopped = Instant::now();

    let deadline = stopped + Duration::from_secs(10);
    let alert = loop {
        let alerts = query(&client, &prometheus, "/api/v1/alerts").await;
        let firing = alerts.and_then(|a| {
            a["data"]["alerts"]
                .as_array()?
                .iter()
                .find(|a| a["labels"]["alertname"] == "PrimaryDown" && a["state"] == "firing")
                .cloned()
        });
        if let Some(a) = firing {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "PrimaryDown not firing 10s after the primary stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let firing_after = stopped.elapsed();
    assert_eq!(alert["labels"]["target"], "primary");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["instance"], primary_url.as_str());

    // Prometheus sends it to Alertmanager with its external label `monitor` added.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (sent_after, sent) = loop {
        let found = posted.lock().unwrap().iter().find_map(|(at, alerts)| {
            let a = alerts
                .as_array()?
                .iter()
                .find(|a| a["labels"]["alertname"] == "PrimaryDown")?;
            Some((at.duration_since(stopped), a.clone()))
        });
        if let Some(f) = found {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "PrimaryDown was not sent to Alertmanager"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sent["labels"]["monitor"], "mon1", "{sent}");
    assert_eq!(sent["labels"]["target"], "primary", "{sent}");

    println!(
        "fast profile: PrimaryDown firing {firing_after:?} after the primary stopped, \
         posted to Alertmanager after {sent_after:?} (bound {FAST_BOUND:?})"
    );
    // 250 ms for this test's polling and the HTTP round trips.
    assert!(
        firing_after <= FAST_BOUND + Duration::from_millis(250),
        "PrimaryDown fired {firing_after:?} after the primary stopped; bound {FAST_BOUND:?}"
    );
    assert!(sent_after <= FAST_BOUND + Duration::from_millis(250));
}
