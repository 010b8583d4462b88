//! The metric collection sidecar: scraping real and broken targets, remote write against
//! a fake that fails on cue and against the real Debian `prometheus`, which is stopped
//! for 20 s and must still end up with every sample.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amrelay::collector::remote_write::{decode_body, WriteRequest};
use axum::routing::get;

use crate::fakes::{Answer, Fake};
use crate::helpers::*;

/// A scrape target: `/metrics` (a counter that counts scrapes, and a series with its own
/// `job` label), and three broken ones: `/garbage`, `/huge` (2 MiB) and `/hang`.
async fn target() -> SocketAddr {
    let scrapes = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
                format!(
                    "# HELP test_scrapes_total Scrapes so far.\n# TYPE test_scrapes_total counter\n\
                     test_scrapes_total {n}\ntest_labelled{{job=\"inner\",path=\"/a,b=c\"}} 1.5\n"
                )
            }),
        )
        .route(
            "/garbage",
            get(|| async { "<html><body>not metrics</body></html>\n" }),
        )
        .route("/huge", get(|| async { "x 1\n".repeat(512 * 1024) }))
        .route("/hang", get(std::future::pending::<String>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

const CONSOLE: &str =
    "[[channels]]\nname = \"c\"\nkind = \"console\"\n[[routes]]\nchannels = [\"c\"]\n";

fn decoded(fake: &Fake) -> Vec<WriteRequest> {
    fake.received()
        .iter()
        .map(|r| decode_body(&r.body).expect("a remote-write body"))
        .collect()
}

/// `name{labels}` → the values sent for it, in the order they were received.
fn values(reqs: &[WriteRequest], name: &str, label: (&str, &str)) -> Vec<(i64, f64)> {
    reqs.iter()
        .flat_map(|r| &r.timeseries)
        .filter(|t| {
            t.labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == name)
                && t.labels
                    .iter()
                    .any(|l| l.name == label.0 && l.value == label.1)
        })
        .flat_map(|t| t.samples.iter().map(|s| (s.timestamp, s.value)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_resent_unchanged_and_a_400_is_dropped_and_counted() {
    let t = target().await;
    let fake = Fake::webhook().await;
    fake.script([
        Answer::Status(503),
        Answer::Status(500),
        Answer::Ok,
        Answer::Status(400),
    ]);
    let app = spawn_app(&format!(
        r#"{CONSOLE}
[collector]
labels = {{ collector = "backup" }}
[[collector.targets]]
job = "t"
url = "http://{t}/metrics"
interval = "100ms"
[[collector.remote_write]]
name = "fake"
url = "{url}"
batch_size = 10
backoff_min = "150ms"
backoff_max = "150ms"
"#,
        url = fake.hook_url()
    ))
    .await;
    fake.wait_for("6 requests", Duration::from_secs(20), |r| r.len() >= 6)
        .await;
    let got = fake.received();
    for r in &got {
        let h = |k: &str| r.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(h("content-encoding"), "snappy");
        assert_eq!(h("content-type"), "application/x-protobuf");
        assert_eq!(h("x-prometheus-remote-write-version"), "0.1.0");
        assert!(
            h("user-agent").starts_with("amrelay/"),
            "{}",
            h("user-agent")
        );
    }
    // 503, 500: the same bytes again, though newer scrapes were waiting by then.
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(got[1].body, got[2].body);
    assert_eq!(got[2].answered, Some(200));
    // The 400 is final for its batch: the next request carries newer samples.
    assert_eq!(got[3].answered, Some(400));
    assert_ne!(got[4].body, got[3].body);
    app.wait_metric(
        "amrelay_collector_samples_dropped_total{endpoint=\"fake\",reason=\"rejected\"}",
        1.0,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        app.metric("amrelay_collector_sends_total{endpoint=\"fake\",outcome=\"retryable\"}")
            .await
            >= 2.0
    );

    let reqs = decoded(&fake);
    let accepted: Vec<WriteRequest> = reqs
        .iter()
        .zip(&got)
        .filter(|(_, r)| r.answered == Some(200))
        .map(|(q, _)| q.clone())
        .collect();
    // Each series in timestamp order, across requests.
    let counter = values(&accepted, "test_scrapes_total", ("job", "t"));
    assert!(counter.len() >= 2);
    assert!(counter.windows(2).all(|w| w[0].0 < w[1].0), "{counter:?}");
    // Labels: the target's and the collector's on every series, a scraped `job` kept as
    // exported_job, and the value with ',' and '=' intact.
    let series = &accepted[0].timeseries;
    let labelled = series
        .iter()
        .find(|t| t.labels.iter().any(|l| l.value == "test_labelled"))
        .unwrap();
    let map: HashMap<&str, &str> = labelled
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(map["job"], "t");
    assert_eq!(map["exported_job"], "inner");
    assert_eq!(map["collector"], "backup");
    assert_eq!(map["instance"], t.to_string());
    assert_eq!(map["path"], "/a,b=c");
    let names: Vec<&str> = labelled.labels.iter().map(|l| l.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "labels sorted by name");
    assert_eq!(values(&accepted, "up", ("job", "t"))[0].1, 1.0);
    assert_eq!(
        values(&accepted, "scrape_samples_scraped", ("job", "t"))[0].1,
        2.0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_get_up_zero_and_an_error_metric_and_the_good_one_goes_on() {
    let t = target().await;
    let fake = Fake::webhook().await;
    let mut targets = String::new();
    for job in ["metrics", "garbage", "huge", "hang"] {
        targets.push_str(&format!(
            "[[collector.targets]]\njob = \"{job}\"\nurl = \"http://{t}/{job}\"\ninterval = \"400ms\"\ntimeout = \"300ms\"\nmax_body = \"1MiB\"\n"
        ));
    }
    let app = spawn_app(&format!(
        "{CONSOLE}\n{targets}\n[[collector.remote_write]]\nname = \"fake\"\nurl = \"{}\"\n",
        fake.hook_url()
    ))
    .await;
    for (job, reason) in [
        ("garbage", "parse"),
        ("huge", "too_large"),
        ("hang", "timeout"),
    ] {
        app.wait_metric(
            &format!(
                "amrelay_collector_scrape_failures_total{{target=\"http://{t}/{job}\",reason=\"{reason}\"}}"
            ),
            1.0,
            Duration::from_secs(10),
        )
        .await;
    }
    fake.wait_for("every target's up", Duration::from_secs(10), |r| {
        let reqs: Vec<WriteRequest> = r.iter().filter_map(|r| decode_body(&r.body).ok()).collect();
        ["metrics", "garbage", "huge", "hang"]
            .iter()
            .all(|j| !values(&reqs, "up", ("job", j)).is_empty())
    })
    .await;
    let reqs = decoded(&fake);
    assert!(values(&reqs, "up", ("job", "metrics"))
        .iter()
        .all(|(_, v)| *v == 1.0));
    for job in ["garbage", "huge", "hang"] {
        let up = values(&reqs, "up", ("job", job));
        assert!(up.iter().all(|(_, v)| *v == 0.0), "{job}: {up:?}");
        let n = values(&reqs, "scrape_samples_scraped", ("job", job));
        assert!(n.iter().all(|(_, v)| *v == 0.0), "{job}: {n:?}");
    }
    // The hanging target's scrape lasted its timeout, not longer.
    let d = values(&reqs, "scrape_duration_seconds", ("job", "hang"));
    assert!(d.iter().all(|(_, v)| (0.29..1.0).contains(v)), "{d:?}");
    // Nothing of the huge or garbled bodies was sent.
    assert!(values(&reqs, "x", ("job", "huge")).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_down_past_the_bounds_drops_the_oldest_and_counts_them() {
    let t = target().await;
    let closed = free_port();
    let app = spawn_app(&format!(
        r#"{CONSOLE}
[[collector.targets]]
job = "t"
url = "http://{t}/metrics"
interval = "20ms"
timeout = "20ms"
[[collector.remote_write]]
name = "small"
url = "http://127.0.0.1:{closed}/api/v1/write"
max_bytes = "4KiB"
backoff_min = "50ms"
backoff_max = "100ms"
[[collector.remote_write]]
name = "short"
url = "http://127.0.0.1:{closed}/api/v1/write"
max_age = "1s"
backoff_min = "50ms"
backoff_max = "100ms"
"#
    ))
    .await;
    let m = |name: &str, ep: &str, extra: &str| {
        format!("amrelay_collector_{name}{{endpoint=\"{ep}\"{extra}}}")
    };
    app.wait_metric(
        &m("samples_dropped_total", "small", ",reason=\"buffer_full\""),
        20.0,
        Duration::from_secs(20),
    )
    .await;
    app.wait_metric(
        &m("samples_dropped_total", "short", ",reason=\"too_old\""),
        20.0,
        Duration::from_secs(20),
    )
    .await;
    for _ in 0..10 {
        let bytes = app.metric(&m("buffer_bytes", "small", "")).await;
        assert!(bytes > 0.0 && bytes <= 4096.0, "buffer bytes {bytes}");
        let age = app
            .metric(&m("oldest_sample_age_seconds", "short", ""))
            .await;
        assert!(age <= 2.5, "oldest sample {age}s old with max_age 1s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every sample scraped is buffered or counted as dropped (give or take the scrape
    // being appended as the metrics are read).
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scraped = metric_in(
        &text,
        &format!("amrelay_collector_samples_scraped_total{{target=\"http://{t}/metrics\"}}"),
    );
    let kept = metric_in(&text, &m("buffered_samples", "small", ""));
    let dropped = metric_in(
        &text,
        &m("samples_dropped_total", "small", ",reason=\"buffer_full\""),
    );
    assert!(
        (kept + dropped - scraped).abs() <= 10.0,
        "scraped {scraped}, buffered {kept}, dropped {dropped}"
    );
    assert!(
        app.metric(&m("sends_total", "small", ",outcome=\"retryable\""))
            .await
            >= 1.0
    );
    assert_eq!(app.metric(&m("samples_sent_total", "small", "")).await, 0.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_samples_survive_a_restart_of_amrelay() {
    let t = target().await;
    let fake = Fake::webhook().await;
    fake.set_default(Answer::Status(503));
    let config = format!(
        "{CONSOLE}\n[[collector.targets]]\njob = \"t\"\nurl = \"http://{t}/metrics\"\ninterval = \"50ms\"\n\
         [[collector.remote_write]]\nname = \"fake\"\nurl = \"{}\"\nbackoff_min = \"50ms\"\nbackoff_max = \"50ms\"\n",
        fake.hook_url()
    );
    let app = spawn_app(&config).await;
    app.wait_metric(
        "amrelay_collector_buffered_samples{endpoint=\"fake\"}",
        20.0,
        Duration::from_secs(10),
    )
    .await;
    let stopped_at = now_ms();
    let dir = app.stop().await;
    fake.set_default(Answer::Ok);
    let app = spawn_app_in(dir, &config).await;
    fake.wait_for(
        "a sample from before the restart",
        Duration::from_secs(10),
        |r| {
            r.iter().filter(|r| r.answered == Some(200)).any(|r| {
                decode_body(&r.body).is_ok_and(|q| {
                    values(&[q], "test_scrapes_total", ("job", "t"))
                        .iter()
                        .any(|(ts, _)| *ts < stopped_at)
                })
            })
        },
    )
    .await;
    // And in order: the first sample accepted after the restart is the oldest one.
    let accepted: Vec<WriteRequest> = fake
        .received()
        .iter()
        .filter(|r| r.answered == Some(200))
        .map(|r| decode_body(&r.body).unwrap())
        .collect();
    let counter = values(&accepted, "test_scrapes_total", ("job", "t"));
    assert_eq!(
        counter[0].1,
        1.0,
        "the first scrape comes first: {:?}",
        &counter[..3]
    );
    assert!(counter.windows(2).all(|w| w[0].0 < w[1].0));
    app.stop().await;
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---------------------------------------------------------------------------------------
// The real Prometheus.

struct Prometheus {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    client: reqwest::Client,
}

impl Prometheus {
    /// Starts `prometheus` with the remote-write receiver on `port`, its TSDB in `dir`,
    /// scraping `target` itself as job "t" every second.
    async fn start(dir: &Path, port: u16, target: SocketAddr) -> Prometheus {
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: t\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let mut p = Prometheus {
            child: None,
            dir: dir.to_owned(),
            port,
            client: crate::helpers::http_client(),
        };
        p.spawn().await;
        p
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("prometheus.log"))
            .unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus (scripts/test installs it): {e}"));
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.client.get(self.url("/-/ready")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus did not become ready; see {}",
                self.dir.join("prometheus.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, and wait until it has exited.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            c.wait().unwrap();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The result of an instant query at `time` (unix seconds).
    async fn query(&self, q: &str, time: f64) -> Vec<serde_json::Value> {
        let v: serde_json::Value = self
            .client
            .get(self.url("/api/v1/query"))
            .query(&[("query", q), ("time", &format!("{time:.3}"))])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Timestamps (ms) of the raw samples of `selector` in the `range_s` before `time`.
    async fn sample_times(&self, selector: &str, range_s: u64, time: f64) -> Vec<i64> {
        let r = self.query(&format!("{selector}[{range_s}s]"), time).await;
        r.first()
            .and_then(|s| s["values"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|v| (v[0].as_f64().unwrap() * 1000.0).round() as i64)
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Collect(Child);

impl Drop for Collect {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_for_20s_gets_every_sample_once_it_is_back() {
    const OUTAGE: Duration = Duration::from_secs(20);
    let t = target().await;
    let dir = tempfile::tempdir().unwrap();
    let (prom_port, relay_port) = (free_port(), free_port());
    let mut prom = Prometheus::start(dir.path(), prom_port, t).await;

    // `amrelay collect`, the binary alone: no channels or routes in its file.
    std::fs::write(
        dir.path().join("amrelay.toml"),
        format!(
            r#"
[server]
listen = "127.0.0.1:{relay_port}"
[storage]
path = "{store}"
[collector]
labels = {{ collector = "backup" }}
[[collector.targets]]
job = "t"
url = "http://{t}/metrics"
interval = "1s"
[[collector.remote_write]]
name = "prom"
url = "http://127.0.0.1:{prom_port}/api/v1/write"
backoff_max = "1s"
"#,
            store = dir.path().join("store").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("amrelay.log")).unwrap();
    let _relay = Collect(
        Command::new(env!("CARGO_BIN_EXE_amrelay"))
            .args(["collect", "--config"])
            .arg(dir.path().join("amrelay.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let relay = format!("http://127.0.0.1:{relay_port}");
    let client = crate::helpers::http_client();
    let sent = "amrelay_collector_samples_sent_total{endpoint=\"prom\"}";
    let retried = "amrelay_collector_sends_total{endpoint=\"prom\",outcome=\"retryable\"}";
    // Samples arrive before the outage: 8 scrapes of 5 samples (2 scraped, 3 health).
    wait_until(
        &client,
        &relay,
        sent,
        |v| v >= 40.0,
        Duration::from_secs(30),
    )
    .await;

    prom.stop();
    let down_at = now_ms();
    // The collector notices: its sends fail while Prometheus is down.
    wait_until(&client, &relay, retried, |v| v >= 2.0, OUTAGE).await;
    let left = OUTAGE.saturating_sub(Duration::from_millis((now_ms() - down_at) as u64));
    tokio::time::sleep(left).await; // the outage itself, not synchronisation
    prom.spawn().await;
    let up_at = now_ms();

    // Batches go in order, so once a sample scraped 3 s after the restart is in, every
    // older one is too.
    let series = "test_scrapes_total{collector=\"backup\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let times = loop {
        let times = prom
            .sample_times(series, 120, now_ms() as f64 / 1000.0)
            .await;
        // Prometheus's own scrapes resume too (its scrape manager starts within ~5 s).
        let own = prom
            .sample_times(
                "test_scrapes_total{collector=\"\"}",
                10,
                now_ms() as f64 / 1000.0,
            )
            .await;
        let own_back = own.iter().filter(|t| **t > up_at).count() >= 2;
        if own_back && times.last().is_some_and(|t| *t >= up_at + 3000) {
            break times;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no samples after the restart: {times:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(metric_at(&client, &relay, retried).await >= 2.0);

    // The window: from 5 s before the outage to the last sample, ending half an interval
    // after a scrape so that no scrape sits on its edge.
    let end_ms = *times.last().unwrap() - 500;
    let range_s = ((end_ms - (down_at - 5000)) / 1000) as u64;
    let start_ms = end_ms - range_s as i64 * 1000;
    let inside: Vec<i64> = times
        .iter()
        .copied()
        .filter(|t| *t > start_ms && *t <= end_ms)
        .collect();
    let count = prom
        .query(
            &format!("count_over_time({series}[{range_s}s])"),
            end_ms as f64 / 1000.0,
        )
        .await;
    let count: f64 = count[0]["value"][1].as_str().unwrap().parse().unwrap();
    // One scrape per interval: range / interval samples. Scrapes start on a 1 s tick that
    // a busy machine can delay by some milliseconds, so a scrape next to either edge may
    // fall on the other side of it: at most one sample more or less. The gap check below
    // then proves that none is missing in between.
    assert!(
        (count - range_s as f64).abs() <= 1.0,
        "count_over_time over {range_s}s = {count}; samples: {inside:?}"
    );
    assert_eq!(count as usize, inside.len());
    let max_gap = inside.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(max_gap < 1500, "a gap of {max_gap} ms in {inside:?}");

    // Prometheus's own scrapes of the same target have the outage as a hole ...
    let own = prom
        .query(
            &format!("count_over_time(test_scrapes_total{{job=\"t\",collector=\"\"}}[{range_s}s])"),
            end_ms as f64 / 1000.0,
        )
        .await;
    let own: f64 = own[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(own <= range_s as f64 - 15.0, "own {own} of {range_s}");
    // ... and the README's queries take Prometheus's own series where it has samples, and
    // the collector's where it has none.
    let now = now_ms() as f64 / 1000.0;
    let up = prom
        .query(
            "up{job=\"t\",collector=\"\"} or on(instance) up{job=\"t\",collector=\"backup\"}",
            now,
        )
        .await;
    assert_eq!(up.len(), 1, "{up:?}");
    assert!(up[0]["metric"].get("collector").is_none(), "{up:?}");
    let rate = "rate(test_scrapes_total{job=\"t\",collector=\"\"}[10s]) or on(instance) rate(test_scrapes_total{job=\"t\",collector=\"backup\"}[10s])";
    let before = prom.query(rate, now).await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert!(before[0]["metric"].get("collector").is_none(), "{before:?}");
    let in_outage = prom.query(rate, (down_at + 15_000) as f64 / 1000.0).await;
    assert_eq!(in_outage.len(), 1, "{in_outage:?}");
    assert_eq!(
        in_outage[0]["metric"]["collector"], "backup",
        "{in_outage:?}"
    );
    let per_s: f64 = in_outage[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        (0.8..1.2).contains(&per_s),
        "one scrape a second, got {per_s}/s"
    );
}

/// Polls `base`'s `/metrics` until `sample` satisfies `ok`.
async fn wait_until(
    client: &reqwest::Client,
    base: &str,
    sample: &str,
    ok: impl Fn(f64) -> bool,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let v = match client.get(format!("{base}/metrics")).send().await {
            Ok(r) => metric_in(&r.text().await.unwrap_or_default(), sample),
            Err(_) => 0.0,
        };
        if ok(v) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?}: {sample} = {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
