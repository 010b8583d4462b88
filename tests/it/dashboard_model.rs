//! The generator of `deploy/grafana/amrelay-failover.json`: the failover dashboard's
//! panels, one short line each, laid out in rows of 24 columns. Regenerate the file with
//! `AMRELAY_BLESS=1 cargo test --test it dashboard`; `tests/it/dashboard.rs` checks that
//! the checked-in file is this output, and checks the file against Grafana's model and
//! against the real Prometheus.

use serde_json::{json, Value};

/// Grafana 11.0's schema version; Grafana 11 and 12 read it and migrate it forward
/// (apps/dashboard/pkg/migration/schemaversion in grafana/grafana).
pub(crate) const SCHEMA_VERSION: u64 = 39;

/// Every panel and query names the data source by the `datasource` variable.
fn ds() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// The amrelay scrape job's series on the chosen instances (deploy/prometheus).
const AMRELAY: &str = r#"job="amrelay", instance=~"$instance""#;

struct Panel {
    title: &'static str,
    kind: &'static str,
    w: u64,
    h: u64,
    description: &'static str,
    unit: &'static str,
    /// (expr, legend); instant queries for stat and table panels.
    targets: Vec<(String, &'static str)>,
    mappings: Value,
    /// Extra `options` of the panel type.
    options: Value,
    /// A range query in a stat panel, reduced to its last value.
    range: bool,
}

fn panel(kind: &'static str, title: &'static str, w: u64, h: u64) -> Panel {
    Panel {
        title,
        kind,
        w,
        h,
        description: "",
        unit: "",
        targets: Vec::new(),
        mappings: json!([]),
        options: json!({}),
        range: false,
    }
}

impl Panel {
    fn q(mut self, expr: impl Into<String>, legend: &'static str) -> Panel {
        self.targets.push((expr.into(), legend));
        self
    }
    fn unit(mut self, unit: &'static str) -> Panel {
        self.unit = unit;
        self
    }
    fn about(mut self, description: &'static str) -> Panel {
        self.description = description;
        self
    }
    /// Value → text (and colour) mappings, e.g. 0 → closed.
    fn map(mut self, values: &[(&str, &str, &str)]) -> Panel {
        let options: serde_json::Map<String, Value> = values
            .iter()
            .enumerate()
            .map(|(i, (v, text, color))| {
                (
                    v.to_string(),
                    json!({"text": text, "color": color, "index": i}),
                )
            })
            .collect();
        self.mappings = json!([{"type": "value", "options": options}]);
        self
    }
    /// A stat over a range query: its last value in the time range, not the value now.
    fn last_in_range(mut self) -> Panel {
        self.range = true;
        self.options = stat_options("lastNotNull");
        self
    }
    fn options(mut self, options: Value) -> Panel {
        self.options = options;
        self
    }
}

struct Section {
    title: &'static str,
    panels: Vec<Panel>,
}

fn stat_options(calc: &str) -> Value {
    json!({
        "reduceOptions": {"calcs": [calc], "fields": "", "values": false},
        "colorMode": "background",
        "graphMode": "none",
        "textMode": "auto",
        "justifyMode": "auto",
        "orientation": "auto"
    })
}

fn sections() -> Vec<Section> {
    let rate = "$__rate_interval";
    vec![
        Section {
            title: "Failover: the primary",
            panels: vec![
                panel("stat", "Primary probe now", 6, 5)
                    .about("probe_success of the blackbox exporter's primary-probe job: 1 the primary's health URL answered 2xx")
                    .q(r#"min by (target, instance) (probe_success{job="primary-probe", target=~"$target"})"#, "{{target}} {{instance}}")
                    .map(&[("0", "DOWN", "red"), ("1", "UP", "green")]),
                panel("state-timeline", "Primary probe", 9, 5)
                    .q(r#"min by (target, instance) (probe_success{job="primary-probe", target=~"$target"})"#, "{{target}}")
                    .map(&[("0", "down", "red"), ("1", "up", "green")]),
                panel("state-timeline", "PrimaryDown", 9, 5)
                    .about("The failover alert (deploy/prometheus/failover.*.rules.yml), pending or firing")
                    .q(r#"max by (target, alertstate) (ALERTS{alertname="PrimaryDown", target=~"$target"})"#, "{{target}} {{alertstate}}")
                    .map(&[("1", "active", "red")]),
            ],
        },
        Section {
            title: "Failover: promotion",
            panels: vec![
                panel("stat", "Endpoint epoch", 4, 4)
                    .about("The backup's promotion endpoint: the current epoch (promotion generation)")
                    .q(format!(r#"max by (instance) (amrelay_promotion_epoch{{{AMRELAY}}} and on (job, instance) count by (job, instance) (amrelay_promotion_state{{{AMRELAY}}}))"#), "{{instance}}")
                    .options(stat_options("lastNotNull")),
                panel("stat", "Endpoint state now", 4, 4)
                    .q(format!(r#"max by (instance, state) (amrelay_promotion_state{{{AMRELAY}}}) == 1"#), "{{state}}")
                    .options(json!({"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false}, "textMode": "name", "colorMode": "none", "graphMode": "none"})),
                panel("stat", "Promotions in the range", 4, 4)
                    .q(format!(r#"sum by (target) (increase(amrelay_promotion_incidents_total{{{AMRELAY}, target=~"$target", event="promoted"}}[$__range]))"#), "{{target}}")
                    .options(stat_options("lastNotNull")),
                panel("stat", "Alert → promoted, last", 4, 4)
                    .about("From the alert's startsAt to the endpoint's answer that the promotion is done: the last promotion in the time range")
                    .unit("s")
                    .q(format!(r#"sum by (target) (increase(amrelay_promotion_alert_to_done_seconds_sum{{{AMRELAY}, target=~"$target"}}[{rate}])) / sum by (target) (increase(amrelay_promotion_alert_to_done_seconds_count{{{AMRELAY}, target=~"$target"}}[{rate}]))"#), "{{target}}")
                    .last_in_range(),
                panel("stat", "Alert → promoted, p50", 4, 4)
                    .about("Over the promotions in the time range")
                    .unit("s")
                    .q(format!(r#"histogram_quantile(0.5, sum by (le, target) (increase(amrelay_promotion_alert_to_done_seconds_bucket{{{AMRELAY}, target=~"$target"}}[$__range])))"#), "{{target}}")
                    .options(stat_options("lastNotNull")),
                panel("stat", "Alert → promoted, p99", 4, 4)
                    .about("Over the promotions in the time range")
                    .unit("s")
                    .q(format!(r#"histogram_quantile(0.99, sum by (le, target) (increase(amrelay_promotion_alert_to_done_seconds_bucket{{{AMRELAY}, target=~"$target"}}[$__range])))"#), "{{target}}")
                    .options(stat_options("lastNotNull")),
                panel("timeseries", "Incidents by event (caller)", 12, 8)
                    .about("What the promotion channels did: requested, promoted, verified, refused, failed, joined, cooldown, waiting_quorum")
                    .q(format!(r#"sum by (target, event) (increase(amrelay_promotion_incidents_total{{{AMRELAY}, target=~"$target"}}[{rate}]))"#), "{{target}} {{event}}"),
                panel("state-timeline", "Endpoint state", 12, 8)
                    .about("1 for the state the endpoint is in: standby, promoting, promoted, failed, interrupted")
                    .q(format!(r#"max by (instance, state) (amrelay_promotion_state{{{AMRELAY}}})"#), "{{instance}} {{state}}")
                    .map(&[("0", " ", "transparent"), ("1", "current", "blue")]),
                panel("timeseries", "Endpoint requests and runs", 24, 7)
                    .q(format!(r#"sum by (result) (increase(amrelay_promotion_requests_total{{{AMRELAY}}}[{rate}]))"#), "request {{result}}")
                    .q(format!(r#"sum by (outcome) (increase(amrelay_promotion_runs_finished_total{{{AMRELAY}}}[{rate}]))"#), "run {{outcome}}"),
            ],
        },
        Section {
            title: "Drills",
            panels: vec![
                panel("stat", "Last drill passed", 6, 5)
                    .q(r#"max by (target) (amrelay_drill_last_passed{job="amrelay", target=~"$target"})"#, "{{target}}")
                    .map(&[("0", "FAILED", "red"), ("1", "passed", "green")]),
                panel("stat", "Age of the last drill", 6, 5)
                    .unit("s")
                    .q(r#"time() - max by (target) (amrelay_drill_last_run_timestamp_seconds{job="amrelay", target=~"$target"})"#, "{{target}}")
                    .options(stat_options("lastNotNull")),
                panel("stat", "Age of the last successful drill", 6, 5)
                    .unit("s")
                    .q(r#"time() - max by (target) (amrelay_drill_last_success_timestamp_seconds{job="amrelay", target=~"$target"})"#, "{{target}}")
                    .options(stat_options("lastNotNull")),
                panel("table", "Last drill's steps", 6, 5)
                    .unit("s")
                    .q(r#"max by (target, step) (amrelay_drill_step_duration_seconds{job="amrelay", target=~"$target"})"#, "{{target}} {{step}}"),
            ],
        },
        Section {
            title: "Heartbeats",
            panels: vec![
                panel("table", "Heartbeat age", 12, 6)
                    .unit("s")
                    .q(format!(r#"time() - max by (name, source) (amrelay_heartbeat_last_seen_timestamp_seconds{{{AMRELAY}}})"#), "{{name}} {{source}}"),
                panel("state-timeline", "Missing heartbeats", 12, 6)
                    .q(format!(r#"max by (name, source) (amrelay_heartbeat_missing{{{AMRELAY}}})"#), "{{name}} {{source}}")
                    .map(&[("0", "seen", "green"), ("1", "MISSING", "red")]),
            ],
        },
        Section {
            title: "Delivery per channel ($channel)",
            panels: vec![
                panel("timeseries", "Queue depth", 8, 8)
                    .about("Undelivered deliveries in the outbox (the store's figure: the same on every instance of one store)")
                    .q(format!(r#"max by (store, channel) (amrelay_queue_depth{{{AMRELAY}, channel=~"$channel"}})"#), "{{channel}} ({{store}})"),
                panel("timeseries", "Oldest pending delivery", 8, 8)
                    .unit("s")
                    .q(format!(r#"max by (store, channel) (amrelay_oldest_pending_age_seconds{{{AMRELAY}, channel=~"$channel"}})"#), "{{channel}} ({{store}})"),
                panel("timeseries", "Delivery latency p50 / p99", 8, 8)
                    .about("From the webhook received to the channel accepting the delivery")
                    .unit("s")
                    .q(format!(r#"histogram_quantile(0.5, sum by (le, channel) (rate(amrelay_delivery_latency_seconds_bucket{{{AMRELAY}, channel=~"$channel"}}[{rate}])))"#), "p50 {{channel}}")
                    .q(format!(r#"histogram_quantile(0.99, sum by (le, channel) (rate(amrelay_delivery_latency_seconds_bucket{{{AMRELAY}, channel=~"$channel"}}[{rate}])))"#), "p99 {{channel}}"),
                panel("timeseries", "Failed attempts by reason", 8, 8)
                    .q(format!(r#"sum by (channel, reason) (increase(amrelay_delivery_attempt_failures_total{{{AMRELAY}, channel=~"$channel"}}[{rate}]))"#), "{{channel}} {{reason}}"),
                panel("timeseries", "Deliveries ended unsent, by reason", 8, 8)
                    .about("permanent, max_attempts, max_age, circuit_open: handed to the fallback or the dead letters")
                    .q(format!(r#"sum by (channel, reason) (increase(amrelay_deliveries_failed_total{{{AMRELAY}, channel=~"$channel"}}[{rate}]))"#), "{{channel}} {{reason}}"),
                panel("state-timeline", "Circuit", 8, 8)
                    .q(format!(r#"max by (channel) (amrelay_channel_circuit_state{{{AMRELAY}, channel=~"$channel"}})"#), "{{channel}}")
                    .map(&[("0", "closed", "green"), ("1", "open", "red"), ("2", "half-open", "orange")]),
                panel("timeseries", "Dead-lettered", 12, 7)
                    .q(format!(r#"sum by (channel) (increase(amrelay_dead_lettered_total{{{AMRELAY}, channel=~"$channel"}}[{rate}]))"#), "{{channel}}"),
                panel("stat", "Dead letters now", 12, 7)
                    .about("Deliveries in the dead letters now, per store (amrelay dead-letters list)")
                    .q(format!(r#"max by (store) (amrelay_dead_letters{{{AMRELAY}}})"#), "{{store}}")
                    .options(stat_options("lastNotNull")),
            ],
        },
        Section {
            title: "Metric collector",
            panels: vec![
                panel("timeseries", "Buffered samples", 8, 8)
                    .q(format!(r#"sum by (instance, endpoint) (amrelay_collector_buffered_samples{{{AMRELAY}}})"#), "{{instance}} → {{endpoint}}"),
                panel("timeseries", "Buffer bytes and oldest sample", 8, 8)
                    .q(format!(r#"sum by (instance, endpoint) (amrelay_collector_buffer_bytes{{{AMRELAY}}})"#), "bytes {{instance}} → {{endpoint}}")
                    .q(format!(r#"max by (instance, endpoint) (amrelay_collector_oldest_sample_age_seconds{{{AMRELAY}}})"#), "oldest (s) {{instance}} → {{endpoint}}"),
                panel("timeseries", "Dropped samples and failed scrapes", 8, 8)
                    .q(format!(r#"sum by (instance, endpoint, reason) (increase(amrelay_collector_samples_dropped_total{{{AMRELAY}}}[{rate}]))"#), "dropped {{endpoint}} {{reason}}")
                    .q(format!(r#"sum by (instance, target, reason) (increase(amrelay_collector_scrape_failures_total{{{AMRELAY}}}[{rate}]))"#), "scrape failed {{target}} {{reason}}"),
            ],
        },
        Section {
            title: "Instances",
            panels: vec![
                panel("table", "Build", 12, 6)
                    .about("Each amrelay's version and git revision; exported_instance is its server.instance")
                    .q(format!(r#"amrelay_build_info{{{AMRELAY}}} * on (job, instance) group_left (exported_instance) amrelay_instance_info{{{AMRELAY}}} or on (job, instance) amrelay_build_info{{{AMRELAY}}}"#), ""),
                panel("state-timeline", "Scraped", 12, 6)
                    .q(format!("up{{{AMRELAY}}}"), "{{instance}} ({{store}})")
                    .map(&[("0", "DOWN", "red"), ("1", "up", "green")]),
                panel("timeseries", "Resident memory", 24, 7)
                    .unit("bytes")
                    .q(format!("process_resident_memory_bytes{{{AMRELAY}}}"), "{{instance}}"),
            ],
        },
    ]
}

fn variable(name: &'static str, label: &'static str, query: &str) -> Value {
    json!({
        "name": name,
        "label": label,
        "type": "query",
        "datasource": ds(),
        "definition": query,
        "query": query,
        "refresh": 2,
        "multi": true,
        "includeAll": true,
        "allValue": ".*",
        "current": {},
        "options": [],
        "sort": 1,
        "hide": 0,
        "regex": ""
    })
}

fn targets(p: &Panel) -> Vec<Value> {
    let instant = matches!(p.kind, "stat" | "table") && !p.range;
    p.targets
        .iter()
        .zip('A'..)
        .map(|((expr, legend), ref_id)| {
            let mut t = json!({
                "datasource": ds(),
                "expr": expr,
                "refId": ref_id.to_string(),
                "legendFormat": legend,
                "range": !instant,
                "instant": instant
            });
            if p.kind == "table" {
                t["format"] = "table".into();
            }
            t
        })
        .collect()
}

/// The dashboard model, as Grafana's JSON.
pub(crate) fn dashboard() -> Value {
    let mut panels = Vec::new();
    let (mut id, mut y) = (0u64, 0u64);
    for section in sections() {
        id += 1;
        panels.push(json!({
            "id": id, "type": "row", "title": section.title, "collapsed": false,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []
        }));
        y += 1;
        let (mut x, mut line_h) = (0u64, 0u64);
        for p in section.panels {
            if x + p.w > 24 {
                (x, y, line_h) = (0, y + line_h, 0);
            }
            id += 1;
            let mut defaults = json!({"mappings": p.mappings});
            if !p.unit.is_empty() {
                defaults["unit"] = p.unit.into();
            }
            let mut v = json!({
                "id": id,
                "type": p.kind,
                "title": p.title,
                "datasource": ds(),
                "gridPos": {"h": p.h, "w": p.w, "x": x, "y": y},
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "options": p.options,
                "targets": targets(&p)
            });
            if !p.description.is_empty() {
                v["description"] = p.description.into();
            }
            panels.push(v);
            x += p.w;
            line_h = line_h.max(p.h);
        }
        y += line_h;
    }
    json!({
        "uid": "amrelay-failover",
        "title": "amrelay: failover, delivery and heartbeats",
        "description": "The primary's probe, PrimaryDown, promotions and the backup's endpoint, drills, heartbeats, per-channel delivery, the metric collector and each instance. deploy/grafana/README.md",
        "tags": ["amrelay", "failover", "alertmanager"],
        "timezone": "browser",
        "editable": true,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": [],
        "annotations": {"list": []},
        "templating": {"list": [
            {
                "name": "datasource", "label": "Data source", "type": "datasource",
                "query": "prometheus", "current": {}, "options": [], "hide": 0,
                "refresh": 1, "regex": ""
            },
            variable("instance", "amrelay instance", r#"label_values(amrelay_build_info{job="amrelay"}, instance)"#),
            variable("channel", "channel", r#"label_values(amrelay_channel_info{job="amrelay", instance=~"$instance"}, channel)"#),
            variable("target", "promotion target", r#"label_values(amrelay_promotion_incidents_total{job="amrelay"}, target)"#),
        ]},
        "panels": panels
    })
}
