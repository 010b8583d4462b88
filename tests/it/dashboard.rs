//! The Grafana dashboard in `deploy/grafana/`: the checked-in JSON is the generator's
//! output (`dashboard_model.rs`); it fits Grafana's dashboard model (schema version, the
//! datasource variable on every panel and query, unique ids, a 24-column grid without
//! overlaps, core panel types); every metric a query reads is one amrelay exports (read
//! from `src/telemetry/`), one being added (drills, heartbeats) or an outside one; the
//! provisioning files parse. Each check is shown refusing a broken copy. The drill test
//! (`drill.rs`) then runs every query against the real Prometheus after a failover.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::dashboard_model;
use crate::deploy::{deploy, read, run, shown};

const JSON: &str = "grafana/amrelay-failover.json";

/// Grafana's built-in panel types (no plugin needed).
const CORE_PANELS: &[&str] = &[
    "row",
    "timeseries",
    "stat",
    "gauge",
    "bargauge",
    "table",
    "state-timeline",
    "status-history",
    "barchart",
    "piechart",
    "histogram",
    "heatmap",
    "text",
    "logs",
];

/// Read by the dashboard, exported by something else than amrelay.
const EXTERNAL: &[&str] = &["probe_success", "up", "ALERTS"];

fn checked_in() -> Value {
    serde_json::from_str(&read(&deploy(JSON))).expect("amrelay-failover.json is JSON")
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

#[test]
fn the_checked_in_dashboard_is_the_generators_output() {
    let generated = pretty(&dashboard_model::dashboard());
    if std::env::var_os("AMRELAY_BLESS").is_some() {
        std::fs::write(deploy(JSON), &generated).unwrap();
    }
    assert!(
        read(&deploy(JSON)) == generated,
        "deploy/{JSON} differs from tests/it/dashboard_model.rs's output; regenerate it with \
         AMRELAY_BLESS=1 cargo test --test it dashboard"
    );
}

/// Every panel, rows included, in file order.
fn panels(d: &Value) -> Vec<&Value> {
    d["panels"]
        .as_array()
        .map(|p| p.iter().collect())
        .unwrap_or_default()
}

fn queries(p: &Value) -> Vec<&Value> {
    p["targets"]
        .as_array()
        .map(|t| t.iter().collect())
        .unwrap_or_default()
}

fn uses_datasource_variable(ds: &Value) -> bool {
    ds["type"] == "prometheus" && ds["uid"] == "${datasource}"
}

/// What is wrong with `d` as a Grafana dashboard model; empty when nothing is.
fn model_problems(d: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    if d["schemaVersion"].as_u64().unwrap_or(0) < 39 {
        bad.push(format!(
            "schemaVersion {} < 39 (Grafana 11)",
            d["schemaVersion"]
        ));
    }
    for key in ["uid", "title", "refresh"] {
        if d[key].as_str().is_none_or(str::is_empty) {
            bad.push(format!("no {key}"));
        }
    }
    if d["tags"].as_array().is_none_or(Vec::is_empty) || d["time"]["from"].as_str().is_none() {
        bad.push("no tags or time".into());
    }
    let vars = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name);
    match var("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => bad.push("no datasource variable of type prometheus".into()),
    }
    for name in ["instance", "channel", "target"] {
        match var(name) {
            Some(v)
                if v["type"] == "query"
                    && uses_datasource_variable(&v["datasource"])
                    && v["query"]
                        .as_str()
                        .is_some_and(|q| q.starts_with("label_values(")) => {}
            _ => bad.push(format!(
                "no label_values variable {name} on ${{datasource}}"
            )),
        }
    }
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, u64, u64, u64, u64)> = Vec::new();
    for p in panels(d) {
        let title = p["title"].as_str().unwrap_or_default().to_owned();
        let kind = p["type"].as_str().unwrap_or_default();
        if title.is_empty() {
            bad.push(format!("panel {} has no title", p["id"]));
        }
        match p["id"].as_u64() {
            Some(id) if ids.insert(id) => {}
            _ => bad.push(format!("{title}: id {} missing or not unique", p["id"])),
        }
        if !CORE_PANELS.contains(&kind) {
            bad.push(format!("{title}: type {kind:?} is not a core panel"));
        }
        let g = &p["gridPos"];
        let [h, w, x, y] = ["h", "w", "x", "y"].map(|k| g[k].as_u64());
        let (Some(h), Some(w), Some(x), Some(y)) = (h, w, x, y) else {
            bad.push(format!("{title}: gridPos {g} incomplete"));
            continue;
        };
        if h == 0 || w == 0 || x + w > 24 {
            bad.push(format!("{title}: gridPos {g} outside 24 columns"));
        }
        for (other, ox, oy, ow, oh) in &boxes {
            if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                bad.push(format!("{title} overlaps {other}"));
            }
        }
        boxes.push((title.clone(), x, y, w, h));
        if kind == "row" {
            continue;
        }
        if !uses_datasource_variable(&p["datasource"]) {
            bad.push(format!("{title}: datasource is not ${{datasource}}"));
        }
        if queries(p).is_empty() {
            bad.push(format!("{title}: no targets"));
        }
        let mut ref_ids = BTreeSet::new();
        for t in queries(p) {
            if !uses_datasource_variable(&t["datasource"]) {
                bad.push(format!(
                    "{title}: a target's datasource is not ${{datasource}}"
                ));
            }
            if t["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                bad.push(format!("{title}: a target has no expr"));
            }
            match t["refId"].as_str() {
                Some(r) if !r.is_empty() && ref_ids.insert(r.to_owned()) => {}
                _ => bad.push(format!("{title}: refId {} missing or repeated", t["refId"])),
            }
        }
    }
    bad
}

/// Breaks a copy of the dashboard in one way.
type Break = fn(&mut Value);

#[test]
fn the_dashboard_fits_grafanas_model_and_a_broken_copy_does_not() {
    let d = checked_in();
    assert_eq!(model_problems(&d), Vec::<String>::new());
    assert!(panels(&d).len() >= 25, "{} panels", panels(&d).len());

    // Each rule refuses a copy broken for it.
    let breaks: [(&str, Break); 7] = [
        ("old schema", |d| d["schemaVersion"] = 36.into()),
        ("wider than 24", |d| {
            d["panels"][2]["gridPos"]["x"] = 20.into()
        }),
        ("overlap", |d| {
            let first = d["panels"][1]["gridPos"].clone();
            d["panels"][2]["gridPos"] = first;
        }),
        ("duplicate id", |d| {
            d["panels"][3]["id"] = d["panels"][2]["id"].clone()
        }),
        ("plugin panel", |d| {
            d["panels"][1]["type"] = "grafana-clock-panel".into()
        }),
        ("datasource by name", |d| {
            d["panels"][1]["targets"][0]["datasource"] = "Prometheus".into()
        }),
        ("no refId", |d| {
            d["panels"][1]["targets"][0]
                .as_object_mut()
                .unwrap()
                .remove("refId");
        }),
    ];
    for (what, break_it) in breaks {
        let mut copy = d.clone();
        break_it(&mut copy);
        assert!(
            !model_problems(&copy).is_empty(),
            "{what}: the broken copy passed"
        );
    }
}

/// The metric names amrelay exports, with the suffixes Prometheus sees: registered in
/// `src/telemetry/metrics.rs` (counters get `_total`, histograms `_bucket`, `_sum`,
/// `_count`) and the `process_*` of `src/telemetry/process.rs`.
fn exported() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/telemetry");
    let metrics = read(&src.join("metrics.rs"));
    let field_re = regex::Regex::new(r"pub (\w+): ([^\n]+),").unwrap();
    let types: BTreeMap<&str, &str> = field_re
        .captures_iter(&metrics)
        .map(|c| (c.get(1).unwrap().as_str(), c.get(2).unwrap().as_str()))
        .collect();
    let register_re = regex::Regex::new(
        r#"(?s)register\(\s*"(\w+)",\s*"(?:[^"\\]|\\.)*",\s*(?:m|self)\.(\w+)\.clone\(\)"#,
    )
    .unwrap();
    let mut names = BTreeSet::new();
    let mut registered = 0;
    for c in register_re.captures_iter(&metrics) {
        registered += 1;
        let (name, field) = (&c[1], &c[2]);
        let ty = types
            .get(field)
            .unwrap_or_else(|| panic!("{name}: no field {field}"));
        if ty.contains("Histogram") {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else if ty.contains("Counter") {
            names.insert(format!("{name}_total"));
        } else {
            names.insert(name.to_owned());
        }
    }
    assert_eq!(
        registered,
        regex::Regex::new(r#"register\(\s*""#)
            .unwrap()
            .find_iter(&metrics)
            .count(),
        "a register call in metrics.rs this test cannot read"
    );
    let process = read(&src.join("process.rs"));
    let process_re = regex::Regex::new(r#""(process_\w+)""#).unwrap();
    for m in process_re.captures_iter(&process) {
        let at = m.get(0).unwrap().start();
        let counter = process[at.saturating_sub(150)..at].contains("ConstCounter");
        names.insert(format!("{}{}", &m[1], if counter { "_total" } else { "" }));
    }
    names
}

/// The metric names an expression reads (quoted strings left out, so a label value
/// like "primary-probe" is not one).
fn metrics_read(expr: &str) -> Vec<String> {
    let strings = regex::Regex::new(r#""(?:[^"\\]|\\.)*""#).unwrap();
    let names = regex::Regex::new(r"\b(amrelay_\w+|probe_\w+|process_\w+|ALERTS\w*|up)\b").unwrap();
    let bare = strings.replace_all(expr, "\"\"");
    names
        .find_iter(&bare)
        .map(|m| m.as_str().to_owned())
        .collect()
}

/// Every expression of the dashboard: the panels' and the variables'.
fn expressions(d: &Value) -> Vec<String> {
    let mut all: Vec<String> = panels(d)
        .into_iter()
        .flat_map(queries)
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            all.extend(v["query"].as_str().map(str::to_owned));
        }
    }
    all
}

fn unknown_metrics(d: &Value, exported: &BTreeSet<String>) -> Vec<String> {
    let mut unknown: Vec<String> = expressions(d)
        .iter()
        .flat_map(|e| metrics_read(e))
        .filter(|m| !exported.contains(m) && !EXTERNAL.contains(&m.as_str()))
        .collect();
    unknown.sort();
    unknown.dedup();
    unknown
}

#[test]
fn every_metric_the_dashboard_reads_is_exported_by_amrelay_or_known_outside() {
    let exported = exported();
    for sure in [
        "amrelay_promotion_incidents_total",
        "amrelay_promotion_alert_to_done_seconds_bucket",
        "amrelay_promotion_epoch",
        "amrelay_queue_depth",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(exported.contains(sure), "{sure} not found in {exported:?}");
    }
    assert!(
        !exported.contains("amrelay_queue_depth_total"),
        "a gauge has no _total"
    );
    let d = checked_in();
    let read_names: BTreeSet<String> = expressions(&d)
        .iter()
        .flat_map(|e| metrics_read(e))
        .collect();
    assert!(read_names.len() >= 30, "{read_names:?}");
    assert_eq!(unknown_metrics(&d, &exported), Vec::<String>::new());

    // A misspelt name, a counter without `_total`, a histogram without `_bucket`.
    for (from, to) in [
        ("amrelay_queue_depth{", "amrelay_queue_dept{"),
        ("amrelay_dead_lettered_total{", "amrelay_dead_lettered{"),
        (
            "amrelay_delivery_latency_seconds_bucket{",
            "amrelay_delivery_latency_seconds{",
        ),
    ] {
        let broken: Value =
            serde_json::from_str(&crate::deploy::replaced(&pretty(&d), from, to)).unwrap();
        assert!(
            !unknown_metrics(&broken, &exported).is_empty(),
            "{to} passed as exported"
        );
    }
}

/// A YAML file as JSON, read by a real YAML parser (Debian's `yq`; scripts/test installs
/// it). amrelay has no YAML crate and needs none for this.
fn yaml(path: &Path) -> Value {
    let out = run("yq", &[".", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "yq {}: {}",
        path.display(),
        shown(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_provisioning_files_parse_and_name_a_file_provider_and_a_prometheus() {
    let dashboards = yaml(&deploy("grafana/provisioning/dashboards/amrelay.yml"));
    assert_eq!(dashboards["apiVersion"], 1, "{dashboards}");
    let provider = &dashboards["providers"][0];
    assert_eq!(provider["type"], "file", "{dashboards}");
    let path = provider["options"]["path"].as_str().expect("options.path");
    assert!(path.starts_with('/'), "{path}");
    let readme = read(&deploy("grafana/README.md"));
    assert!(
        readme.contains(path),
        "README.md does not say to copy the JSON to {path}"
    );

    let datasources = yaml(&deploy("grafana/provisioning/datasources/prometheus.yml"));
    assert_eq!(datasources["apiVersion"], 1, "{datasources}");
    let ds = &datasources["datasources"][0];
    assert_eq!(ds["type"], "prometheus", "{datasources}");
    assert!(
        ds["url"].as_str().is_some_and(|u| u.starts_with("http")),
        "{ds}"
    );

    // yq refuses what is not YAML, so a pass above means it parsed.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "apiVersion: 1\nproviders:\n  - name: [amrelay\n").unwrap();
    assert!(!run("yq", &[".", broken.to_str().unwrap()]).status.success());
}

/// `label_values(SELECTOR, LABEL)`.
fn label_values(query: &str) -> (&str, &str) {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values: {query}"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    (selector.trim(), label.trim())
}

/// An instant query on Prometheus' HTTP API: its whole answer.
async fn instant(client: &reqwest::Client, prometheus: &str, q: &str) -> Value {
    let r = client
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    r.json().await.unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn result(v: &Value) -> Vec<Value> {
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

async fn wait_for(client: &reqwest::Client, prometheus: &str, q: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while result(&instant(client, prometheus, q).await).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never had {q}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Grafana's multi-value regex for the values, `(a|b)`, as it writes it into a PromQL
/// string: each value regex-escaped, the backslashes doubled for the string.
fn regex_of(values: &[String]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|v| regex::escape(v).replace('\\', "\\\\"))
        .collect();
    format!("({})", escaped.join("|"))
}

/// Runs every panel's query on `prometheus` (the drill's, after the failover) the way
/// Grafana would: variables filled in with the values their own queries find there,
/// Grafana's interval variables as durations. Each must succeed; the failover rows'
/// must return data. `amrelays` are the scrape targets the `amrelay` job must have.
pub(crate) async fn every_panel_runs_on(
    client: &reqwest::Client,
    prometheus: &str,
    amrelays: &[String],
) {
    // Both amrelays scraped, and scraped since the promotion.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let up = result(&instant(client, prometheus, r#"up{job="amrelay"} == 1"#).await);
        let mut seen: Vec<String> = up
            .iter()
            .filter_map(|s| s["metric"]["instance"].as_str().map(str::to_owned))
            .collect();
        seen.sort();
        let mut want = amrelays.to_vec();
        want.sort();
        if seen == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the amrelay job scrapes {seen:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for(
        client,
        prometheus,
        r#"amrelay_promotion_epoch{job="amrelay"} >= 1"#,
    )
    .await;
    wait_for(
        client,
        prometheus,
        r#"amrelay_promotion_alert_to_done_seconds_count{job="amrelay"} >= 1"#,
    )
    .await;

    let d = checked_in();
    let mut vars: Vec<(String, String)> = vec![
        ("$__rate_interval".into(), "1m".into()),
        ("$__interval".into(), "15s".into()),
        ("$__range".into(), "5m".into()),
    ];
    let fill = |text: &str, vars: &[(String, String)]| {
        vars.iter().fold(text.to_owned(), |t, (from, to)| {
            t.replace(from.as_str(), to)
        })
    };
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap();
        let (selector, label) = label_values(v["query"].as_str().unwrap());
        let q = format!("count by ({label}) ({})", fill(selector, &vars));
        let answer = instant(client, prometheus, &q).await;
        assert_eq!(
            answer["status"], "success",
            "variable {name}: {q}: {answer}"
        );
        let values: Vec<String> = result(&answer)
            .iter()
            .filter_map(|s| s["metric"][label].as_str().map(str::to_owned))
            .collect();
        assert!(!values.is_empty(), "variable {name} has no values: {q}");
        println!("dashboard variable {name}: {values:?}");
        vars.push((format!("${name}"), regex_of(&values)));
    }

    let mut failures = Vec::new();
    let mut row = String::new();
    let mut ran = 0;
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap();
        if p["type"] == "row" {
            row = title.to_owned();
            continue;
        }
        for t in queries(p) {
            let q = fill(t["expr"].as_str().unwrap(), &vars);
            assert!(!q.contains('$'), "{title}: a variable left unfilled: {q}");
            let answer = instant(client, prometheus, &q).await;
            ran += 1;
            if answer["status"] != "success" {
                failures.push(format!("{title}: {q}: {answer}"));
            } else if row.starts_with("Failover") && result(&answer).is_empty() {
                failures.push(format!("{title} ({row}): no data: {q}"));
            }
            let values: Vec<&str> = answer["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["value"][1].as_str())
                .collect();
            match title {
                "Promotions in the range"
                    if !values
                        .iter()
                        .any(|v| v.parse::<f64>().is_ok_and(|n| n >= 0.5)) =>
                {
                    failures.push(format!("{title}: {values:?}, want one"))
                }
                "Endpoint epoch" if values != ["1"] => {
                    failures.push(format!("{title}: {values:?}, want [\"1\"]"))
                }
                "Endpoint state now"
                    if result(&answer)
                        .iter()
                        .all(|s| s["metric"]["state"] != "promoted") =>
                {
                    failures.push(format!("{title}: not promoted: {answer}"))
                }
                "Alert → promoted, last"
                    if !values
                        .iter()
                        .any(|v| v.parse::<f64>().is_ok_and(|s| s > 0.0 && s < 60.0)) =>
                {
                    failures.push(format!("{title}: {values:?}, want seconds"))
                }
                _ => {}
            }
        }
    }
    println!("dashboard: {ran} panel queries run on the drill's Prometheus");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
