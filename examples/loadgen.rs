//! Open-loop load generator for `POST /webhook/alertmanager` (the ingest benchmark).
//!
//! Requests leave on a fixed schedule (`--rate` per second for `--duration`), whether or
//! not earlier ones were answered, and each one's latency is measured from its *scheduled*
//! send time, so a server that stalls is charged for every request that should have gone
//! out meanwhile (no coordinated omission). They go over `--connections` keep-alive
//! connections, as wrk2's `-c`; a request that finds all of them busy waits for one, and
//! that wait is part of its latency.
//!
//! Every request is a distinct Alertmanager notification (payload version 4, shaped like
//! `tests/fixtures/alertmanager/group-firing-3-alerts.raw.json`): its own `groupKey`, and
//! `--alerts` alerts with their own fingerprints. Each alert carries the annotation
//! `bench_sent_ms`, the unix time in milliseconds (with a microsecond fraction) at which the
//! body was built, so that `examples/sinkfake.rs` can time the path through amrelay.
//!
//! Several `--url`s (repeated, or comma-separated) spread the load over several amrelays:
//! notification *i* goes to URL *i* mod *n*, each URL with its own share of the
//! connections, as if one generator per URL ran at `rate / n`. With `--mirror` every
//! notification goes to every URL instead (same body, so amrelay's dedup stores it once), as
//! an Alertmanager whose receiver lists both amrelays of an HA pair.
//!
//! Prints one JSON line on stdout:
//! `{"sent":…,"ok":…,"non_2xx":{"503":…},"errors":…,"p50_ms":…,"p90_ms":…,"p99_ms":…,"max_ms":…,…}`
//!
//! ```text
//! cargo run --release --example loadgen -- \
//!     --url http://127.0.0.1:9097/webhook/alertmanager --rate 5000 --duration 60s
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};

#[derive(Parser, Debug)]
#[command(about = "Open-loop load generator for amrelay's Alertmanager webhook")]
struct Args {
    /// Full webhook URL, e.g. http://127.0.0.1:9097/webhook/alertmanager. Repeat it (or
    /// separate URLs with commas) to spread the notifications round-robin over several.
    #[arg(long, required = true, value_delimiter = ',')]
    url: Vec<String>,
    /// Send every notification to every `--url` (the same body each time) instead of
    /// round-robin; `--rate` still counts notifications.
    #[arg(long)]
    mirror: bool,
    /// Notifications per second, issued on a fixed schedule.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// How long to send, e.g. "60s", "500ms" or a plain number of seconds.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Alerts per notification.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=256))]
    alerts: u16,
    /// Sends `Authorization: Bearer <TOKEN>`.
    #[arg(long)]
    bearer: Option<String>,
    /// Keep-alive connections, as wrk2's `-c`, shared out evenly between the `--url`s (at
    /// least one each). A request finding its URL's all busy waits for one, and that wait
    /// counts in its latency.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    connections: u16,
    /// Per-request timeout; a request that takes longer counts as an error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Tokio worker threads of the generator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `receiver` of the notifications (also part of the dedup key).
    #[arg(long, default_value = "bench")]
    receiver: String,
    /// Print the first request body and exit without sending anything.
    #[arg(long)]
    print_body: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// What one request came to.
enum Outcome {
    Status(u16),
    Error(&'static str),
}

struct Sample {
    /// Index of the `--url` it went to.
    target: usize,
    outcome: Outcome,
    /// From the scheduled send time to the full response, in microseconds.
    latency_us: u64,
    /// From the moment the request task ran (after any generator lag) to the response.
    service_us: u64,
}

fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Renders distinct notifications from a fixed template, by hand: building a
/// `serde_json::Value` per request cost the generator more CPU than the server under test
/// spends on some requests, on a 2-core machine where both share the cores. `main` checks
/// the first body with serde_json.
struct Template {
    run: String,
    /// The low 24 bits of the run id, the first part of every fingerprint.
    run_bits: u64,
    /// The JSON string literal of `--receiver`, quotes included.
    receiver: String,
    alerts: u16,
}

impl Template {
    fn body(&self, seq: u64) -> Vec<u8> {
        use std::fmt::Write;
        let sent_ms = unix_ms_now();
        let starts_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let run = &self.run;
        let common = format!(
            r#""alertname":"BenchLoad","case":"bench","instance":"127.0.0.1:18082","job":"loadgen","run":"{run}","seq":"{seq}","severity":"warning""#
        );
        let mut b = String::with_capacity(700 + 800 * self.alerts as usize);
        let _ = write!(
            b,
            r#"{{"receiver":{},"status":"firing","alerts":["#,
            self.receiver
        );
        for j in 0..self.alerts {
            if j > 0 {
                b.push(',');
            }
            // 24 bits of run id, 32 of sequence, 8 of item: unique within and across runs.
            let fingerprint = format!(
                "{:06x}{:08x}{:02x}",
                self.run_bits,
                seq & 0xffff_ffff,
                j & 0xff
            );
            let _ = write!(
                b,
                concat!(
                    r#"{{"status":"firing","labels":{{{common},"item":"{j}"}},"#,
                    r#""annotations":{{"bench_sent_ms":"{sent:.3}","summary":"bench notification {seq} item {j}"}},"#,
                    r#""startsAt":"{starts}","endsAt":"0001-01-01T00:00:00Z","#,
                    r#""generatorURL":"http://127.0.0.1:19090/graph?g0.expr=bench_load+%3E+0&g0.tab=1","#,
                    r#""fingerprint":"{fp}"}}"#
                ),
                common = common,
                j = j,
                sent = sent_ms,
                seq = seq,
                starts = starts_at,
                fp = fingerprint,
            );
        }
        let _ = write!(
            b,
            concat!(
                r#"],"groupLabels":{{"alertname":"BenchLoad","seq":"{seq}"}},"commonLabels":{{{common}}},"#,
                r#""commonAnnotations":{{}},"externalURL":"http://127.0.0.1:19093","version":"4","#,
                r#""groupKey":"{{}}/{{case=\"bench\"}}:{{alertname=\"BenchLoad\", run=\"{run}\", seq=\"{seq}\"}}","#,
                r#""truncatedAlerts":0}}"#
            ),
            seq = seq,
            common = common,
            run = run,
        );
        b.into_bytes()
    }
}

/// The hand-written body must be the Alertmanager payload it claims to be.
fn check_template(t: &Template) -> anyhow::Result<()> {
    let v: Value = serde_json::from_slice(&t.body(0))
        .map_err(|e| anyhow::anyhow!("the request template is not JSON: {e}"))?;
    let alerts = v["alerts"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        v["version"] == "4" && alerts == t.alerts as usize,
        "the request template lost its shape"
    );
    anyhow::ensure!(
        v["groupKey"]
            .as_str()
            .is_some_and(|k| k.contains(&format!("run=\"{}\"", t.run))),
        "the request template has a bad groupKey"
    );
    Ok(())
}

/// One request, built at its scheduled time and waiting for a free connection.
struct Job {
    body: Bytes,
    scheduled: Instant,
}

/// Where and how the requests to one `--url` go.
struct Target {
    addr: String,
    path_and_query: String,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

impl Target {
    fn new(url: &str, args: &Args) -> anyhow::Result<Target> {
        let uri: Uri = url.parse()?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "--url must be plain http:// (the benchmark runs on loopback)"
        );
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("--url has no host"))?;
        Ok(Target {
            addr: format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(80)
            ),
            path_and_query: uri
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
            host: HeaderValue::from_str(authority.as_str())?,
            authorization: args
                .bearer
                .as_ref()
                .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
                .transpose()?,
            timeout: args.timeout,
        })
    }

    fn request(&self, body: Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut req = Request::post(self.path_and_query.as_str())
            .header(header::HOST, self.host.clone())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = &self.authorization {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        Ok(req.body(Full::new(body))?)
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Target) -> Result<Sender, &'static str> {
    let stream = tokio::time::timeout(target.timeout, TcpStream::connect(&target.addr))
        .await
        .map_err(|_| "timeout")?
        .map_err(|_| "connect")?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| "connect")?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One keep-alive connection: takes the oldest waiting request, sends it, waits for the
/// whole response, and reconnects after any error (the connection's state is unknown).
async fn connection(
    index: usize,
    target: Arc<Target>,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    samples: mpsc::UnboundedSender<Sample>,
    inflight: Arc<AtomicUsize>,
) {
    let mut sender: Option<Sender> = None;
    loop {
        let Some(job) = jobs.lock().await.recv().await else {
            return;
        };
        let began = Instant::now();
        let outcome = match exchange(&target, &mut sender, job.body).await {
            Ok(status) => Outcome::Status(status),
            Err(kind) => {
                sender = None;
                Outcome::Error(kind)
            }
        };
        let done = Instant::now();
        inflight.fetch_sub(1, Ordering::Relaxed);
        let _ = samples.send(Sample {
            target: index,
            outcome,
            latency_us: done.duration_since(job.scheduled).as_micros() as u64,
            service_us: done.duration_since(began).as_micros() as u64,
        });
    }
}

async fn exchange(
    target: &Target,
    sender: &mut Option<Sender>,
    body: Bytes,
) -> Result<u16, &'static str> {
    let req = target.request(body).map_err(|_| "request")?;
    let attempt = async {
        let open = sender.as_ref().is_some_and(|s| !s.is_closed());
        if !open {
            *sender = Some(connect(target).await?);
        }
        let s = sender.as_mut().ok_or("connect")?;
        s.ready().await.map_err(|_| "other")?;
        let res = s.send_request(req).await.map_err(|_| "request")?;
        let status = res.status().as_u16();
        // Read the body: the ack is complete when the response is.
        res.into_body().collect().await.map_err(|_| "body")?;
        Ok(status)
    };
    tokio::time::timeout(target.timeout, attempt)
        .await
        .unwrap_or(Err("timeout"))
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be above zero"
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// What the responses of one `--url` came to.
#[derive(Default)]
struct Tally {
    /// Latencies of the 2xx responses, from the scheduled time, in microseconds.
    latencies: Vec<u64>,
    /// The same from when a connection took the request.
    service: Vec<u64>,
    ok: u64,
    non_2xx: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, s: Sample) {
        match s.outcome {
            Outcome::Status(c) if (200..300).contains(&c) => {
                self.ok += 1;
                self.latencies.push(s.latency_us);
                self.service.push(s.service_us);
            }
            Outcome::Status(c) => *self.non_2xx.entry(c.to_string()).or_default() += 1,
            Outcome::Error(kind) => *self.errors.entry(kind.to_owned()).or_default() += 1,
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.latencies.extend_from_slice(&other.latencies);
        self.service.extend_from_slice(&other.service);
        self.ok += other.ok;
        for (k, v) in &other.non_2xx {
            *self.non_2xx.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    fn sort(&mut self) {
        self.latencies.sort_unstable();
        self.service.sort_unstable();
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let targets = args
        .url
        .iter()
        .map(|u| Target::new(u, &args).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!targets.is_empty(), "give at least one --url");
    let run_id = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let template = Template {
        run: format!("{run_id:x}"),
        run_bits: run_id & 0xff_ffff,
        receiver: serde_json::to_string(&args.receiver)?,
        alerts: args.alerts,
    };
    check_template(&template)?;
    if args.print_body {
        println!("{}", String::from_utf8_lossy(&template.body(0)));
        return Ok(());
    }
    let total = (args.rate * args.duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let n = targets.len();
    let requests = if args.mirror { total * n as u64 } else { total };

    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let collector = tokio::spawn(async move {
        let mut tallies: Vec<Tally> = (0..n)
            .map(|_| Tally {
                latencies: Vec::with_capacity((requests / n as u64) as usize),
                service: Vec::with_capacity((requests / n as u64) as usize),
                ..Tally::default()
            })
            .collect();
        while let Some(s) = rx.recv().await {
            tallies[s.target].add(s);
        }
        tallies
    });

    // Requests scheduled and not yet answered (waiting for a connection or on one); its
    // peak shows how far the server fell behind.
    let inflight = Arc::new(AtomicUsize::new(0));
    let per_target = (args.connections as usize / n).max(1);
    let mut queues = Vec::with_capacity(n);
    let mut connections = Vec::with_capacity(per_target * n);
    for (index, target) in targets.iter().enumerate() {
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel::<Job>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        for _ in 0..per_target {
            connections.push(tokio::spawn(connection(
                index,
                target.clone(),
                jobs_rx.clone(),
                tx.clone(),
                inflight.clone(),
            )));
        }
        queues.push(jobs_tx);
    }
    drop(tx);
    let mut peak_inflight = 0usize;
    let start = Instant::now() + Duration::from_millis(20);
    let mut max_lag = Duration::ZERO;
    for seq in 0..total {
        let scheduled = start + interval.mul_f64(seq as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        // How late the generator itself is; large values mean it cannot keep the rate.
        max_lag = max_lag.max(Instant::now().saturating_duration_since(scheduled));
        let body = Bytes::from(template.body(seq));
        let to: &[mpsc::UnboundedSender<Job>] = if args.mirror {
            &queues
        } else {
            let i = (seq % n as u64) as usize;
            &queues[i..=i]
        };
        for q in to {
            peak_inflight = peak_inflight.max(inflight.fetch_add(1, Ordering::Relaxed) + 1);
            q.send(Job {
                body: body.clone(),
                scheduled,
            })
            .map_err(|_| anyhow::anyhow!("every connection task ended"))?;
        }
    }
    let send_phase = start.elapsed();
    drop(queues);
    for c in connections {
        c.await?;
    }
    let mut tallies = collector.await?;
    let elapsed = start.elapsed();
    let mut all = Tally::default();
    for t in &mut tallies {
        all.merge(t);
        t.sort();
    }
    all.sort();
    let latencies = &all.latencies;
    let service = &all.service;
    let mean = if latencies.is_empty() {
        0.0
    } else {
        latencies.iter().sum::<u64>() as f64 / latencies.len() as f64 / 1000.0
    };
    let mut out = json!({
        "url": args.url.join(","),
        "rate": args.rate,
        "duration_s": args.duration.as_secs_f64(),
        "alerts": args.alerts,
        "sent": requests,
        "notifications": total,
        "ok": all.ok,
        "non_2xx": all.non_2xx,
        "errors": all.error_count(),
        "error_kinds": all.errors,
        "p50_ms": round3(pct(latencies, 50.0)),
        "p90_ms": round3(pct(latencies, 90.0)),
        "p99_ms": round3(pct(latencies, 99.0)),
        "p999_ms": round3(pct(latencies, 99.9)),
        "max_ms": round3(latencies.last().copied().unwrap_or(0) as f64 / 1000.0),
        "mean_ms": round3(mean),
        "latency_of": "2xx responses, from scheduled send time to full response",
        "from_task_start_p50_ms": round3(pct(service, 50.0)),
        "from_task_start_p99_ms": round3(pct(service, 99.0)),
        "send_phase_s": round3(send_phase.as_secs_f64()),
        "elapsed_s": round3(elapsed.as_secs_f64()),
        "achieved_rate": round3(total as f64 / send_phase.as_secs_f64().max(1e-9)),
        "max_schedule_lag_ms": round3(max_lag.as_secs_f64() * 1000.0),
        "peak_inflight": peak_inflight,
        "connections": per_target * n,
    });
    if n > 1 {
        out["mirror"] = json!(args.mirror);
        out["per_url"] = tallies
            .iter()
            .zip(&args.url)
            .map(|(t, url)| {
                json!({
                    "url": url,
                    "ok": t.ok,
                    "non_2xx": t.non_2xx,
                    "errors": t.error_count(),
                    "p50_ms": round3(pct(&t.latencies, 50.0)),
                    "p99_ms": round3(pct(&t.latencies, 99.0)),
                    "max_ms": round3(t.latencies.last().copied().unwrap_or(0) as f64 / 1000.0),
                })
            })
            .collect();
    }
    println!("{out}");
    Ok(())
}
