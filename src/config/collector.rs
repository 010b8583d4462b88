//! `[collector]`: the targets to scrape, the labels added to every series, and the
//! remote-write endpoints with their buffers.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::HttpAuth;
use reqwest::Url;

use super::raw::{RawCollector, RawRemoteWrite, RawTarget};
use super::{values, Problems};

#[derive(Debug, Clone, Default)]
pub struct CollectorSettings {
    /// Added to every series the collector sends, e.g. `collector="backup"`. Sorted.
    pub labels: Vec<(String, String)>,
    /// Where the endpoints' buffers live; `<storage.path>/collector` when unset.
    pub buffer_path: Option<PathBuf>,
    pub targets: Vec<TargetSettings>,
    pub remote_write: Vec<RemoteWriteSettings>,
}

impl CollectorSettings {
    /// The collector runs when it has something to scrape.
    pub fn enabled(&self) -> bool {
        !self.targets.is_empty()
    }

    pub fn buffer_dir(&self, storage: &Path) -> PathBuf {
        self.buffer_path
            .clone()
            .unwrap_or_else(|| storage.join("collector"))
    }
}

#[derive(Debug, Clone)]
pub struct TargetSettings {
    pub url: Url,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_body: usize,
    /// `job`, `instance` and the target's own labels, sorted; the collector's labels
    /// are not among them.
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct RemoteWriteSettings {
    pub name: String,
    pub url: Url,
    pub timeout: Duration,
    pub auth: Option<HttpAuth>,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub batch_size: u64,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub max_retry_after: Duration,
}

pub(super) fn collector(raw: &RawCollector, p: &mut Problems) -> CollectorSettings {
    let labels = labels("collector.labels", &raw.labels, p);
    let mut targets = Vec::new();
    let mut seen = HashSet::new();
    for (i, t) in raw.targets.iter().enumerate() {
        if let Some(t) = target(i, t, &raw.labels, p) {
            if !seen.insert(t.labels.clone()) {
                p.push::<()>(
                    format!("collector.targets[{i}]"),
                    "has the same job and labels as an earlier target; their series would collide",
                );
            }
            targets.push(t);
        }
    }
    let mut remote_write = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in raw.remote_write.iter().enumerate() {
        if let Some(r) = endpoint(i, r, p) {
            if !names.insert(r.name.clone()) {
                p.push::<()>(
                    format!("collector.remote_write[{i}].name"),
                    format!("{:?} is used by an earlier endpoint", r.name),
                );
            }
            remote_write.push(r);
        }
    }
    match (raw.targets.is_empty(), raw.remote_write.is_empty()) {
        (false, true) => p.push::<()>(
            "collector.remote_write",
            "at least one endpoint is required to send the targets' samples to",
        ),
        (true, false) => p.push::<()>(
            "collector.targets",
            "at least one target is required when remote_write endpoints are set",
        ),
        _ => {}
    }
    CollectorSettings {
        labels,
        buffer_path: raw.buffer_path.as_deref().map(PathBuf::from),
        targets,
        remote_write,
    }
}

fn target(
    i: usize,
    t: &RawTarget,
    collector_labels: &BTreeMap<String, String>,
    p: &mut Problems,
) -> Option<TargetSettings> {
    let key = |k: &str| format!("collector.targets[{i}].{k}");
    let url = match t.url.as_deref() {
        Some(u) => p.url(&key("url"), u),
        None => p.push(
            key("url"),
            "is required, e.g. \"http://127.0.0.1:9100/metrics\"",
        ),
    };
    let job = match t.job.as_deref() {
        Some(j) if !j.trim().is_empty() => Some(j.to_owned()),
        _ => p.push(
            key("job"),
            "is required (the `job` label of the target's series)",
        ),
    };
    let interval = p.duration(&key("interval"), t.interval.as_deref(), "15s");
    if interval.is_zero() {
        p.push::<()>(key("interval"), "must be above zero");
    }
    // Like Prometheus: the timeout defaults to 10s, and never exceeds the interval, so a
    // target's scrapes never overlap and its samples stay in order.
    let default_timeout = interval.min(Duration::from_secs(10));
    let timeout = match t.timeout.as_deref() {
        Some(v) => p.duration(&key("timeout"), Some(v), "10s"),
        None => default_timeout,
    };
    if timeout.is_zero() || timeout > interval {
        p.push::<()>(
            key("timeout"),
            format!("must be above zero and at most the interval ({interval:?})"),
        );
    }
    let max_body = p.size(&key("max_body"), t.max_body.as_deref(), "10MiB");
    let mut own = labels(&key("labels"), &t.labels, p);
    for (name, _) in &own {
        if name == "job" {
            p.push::<()>(
                format!("{}.job", key("labels")),
                "set the target's `job` key instead",
            );
        }
        if collector_labels.contains_key(name) {
            p.push::<()>(
                format!("{}.{name}", key("labels")),
                "is set by collector.labels already",
            );
        }
    }
    let (url, job) = (url?, job?);
    if !own.iter().any(|(n, _)| n == "instance") {
        // Prometheus's default: the target's host:port.
        let instance = match (url.host_str(), url.port_or_known_default()) {
            (Some(h), Some(port)) => format!("{h}:{port}"),
            (Some(h), None) => h.to_owned(),
            _ => url.to_string(),
        };
        own.push(("instance".into(), instance));
    }
    own.push(("job".into(), job));
    own.sort();
    Some(TargetSettings {
        url,
        interval,
        timeout,
        max_body,
        labels: own,
    })
}

fn endpoint(i: usize, r: &RawRemoteWrite, p: &mut Problems) -> Option<RemoteWriteSettings> {
    let key = |k: &str| format!("collector.remote_write[{i}].{k}");
    let name = match r.name.as_deref() {
        Some(n) if values::valid_name(n) => Some(n.to_owned()),
        Some(n) => p.push(
            key("name"),
            format!("expected letters, digits, '-', '_' or '.', got {n:?}"),
        ),
        None => p.push(
            key("name"),
            "is required (it names the buffer and the metrics)",
        ),
    };
    let url = match r.url.as_deref() {
        Some(u) => p.url(&key("url"), u),
        None => p.push(
            key("url"),
            "is required, e.g. \"http://127.0.0.1:9090/api/v1/write\"",
        ),
    };
    let auth = super::http_auth(
        p,
        &key,
        r.bearer_token_file.as_deref(),
        r.bearer_token_env.as_deref(),
        r.basic_auth.as_ref(),
    );
    let timeout = p.duration(&key("timeout"), r.timeout.as_deref(), "30s");
    let max_bytes = p.size(&key("max_bytes"), r.max_bytes.as_deref(), "256MiB") as u64;
    // Prometheus refuses samples more than an hour older than its newest (the head
    // block's lower bound) unless out_of_order_time_window is set.
    let max_age = p.duration(&key("max_age"), r.max_age.as_deref(), "1h");
    if max_age.is_zero() {
        p.push::<()>(key("max_age"), "must be above zero");
    }
    let batch_size = match r.batch_size {
        Some(0) => p.push(key("batch_size"), "must be above zero"),
        Some(n) => n,
        None => 5000,
    };
    let backoff_min = p.duration(&key("backoff_min"), r.backoff_min.as_deref(), "100ms");
    let backoff_max = p.duration(&key("backoff_max"), r.backoff_max.as_deref(), "5s");
    if backoff_min > backoff_max {
        p.push::<()>(key("backoff_min"), "must not exceed backoff_max");
    }
    let max_retry_after = p.duration(&key("max_retry_after"), r.max_retry_after.as_deref(), "1m");
    Some(RemoteWriteSettings {
        name: name?,
        url: url?,
        timeout,
        auth,
        max_bytes,
        max_age,
        batch_size,
        backoff_min,
        backoff_max,
        max_retry_after,
    })
}

/// Label names as Prometheus allows them; `__` names are Prometheus's own.
fn labels(key: &str, raw: &BTreeMap<String, String>, p: &mut Problems) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in raw {
        let valid = name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
        if !valid || name.is_empty() || name.starts_with("__") {
            p.push::<()>(
                format!("{key}.{name}"),
                "expected a label name like \"collector\" ([a-zA-Z_][a-zA-Z0-9_]*, not starting with \"__\")",
            );
        } else if value.is_empty() {
            p.push::<()>(
                format!("{key}.{name}"),
                "an empty value is the same as no label",
            );
        } else {
            out.push((name.clone(), value.clone()));
        }
    }
    out
}
