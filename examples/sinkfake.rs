//! A tiny webhook receiver for the benchmarks: answers every POST with 200 and times it.
//!
//! For each POST it records the arrival time and, when the body is an `amrelay.v1`
//! notification whose first alert has the annotation `bench_sent_ms` (set by
//! `examples/loadgen.rs`), the latency `arrival - bench_sent_ms`: the time from the load
//! generator sending the webhook to amrelay delivering it here.
//!
//! `GET /stats` answers the figures so far as JSON (with a count per request path, so that
//! instances configured with different paths can be told apart); SIGTERM or Ctrl-C prints
//! them on stdout and exits. `--arrivals FILE` also appends one line per POST to FILE as it
//! arrives: `<arrival unix ms> <path> <webhook-id or ->` (bench/takeover.sh reads it).
//!
//! ```text
//! cargo run --release --example sinkfake -- --listen 127.0.0.1:18099
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "Fake webhook receiver that times amrelay.v1 deliveries")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18099")]
    listen: SocketAddr,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Append a line per POST to this file: arrival time (unix ms), path, webhook-id.
    #[arg(long)]
    arrivals: Option<PathBuf>,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    /// Bodies that were amrelay.v1 JSON.
    v1: u64,
    /// Latencies in microseconds, one per request carrying `bench_sent_ms`.
    latencies_us: Vec<u64>,
    /// `webhook-id`s seen, to count repeats (the same delivery sent twice).
    ids: HashSet<String>,
    repeats: u64,
    first_arrival_ms: Option<f64>,
    last_arrival_ms: Option<f64>,
    by_schema: BTreeMap<String, u64>,
    by_path: BTreeMap<String, u64>,
    /// `--arrivals`, written under the lock so that lines keep arrival order.
    arrivals: Option<File>,
}

type Shared = Arc<Mutex<Stats>>;

fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// The value of the first `"key":"value"` string field in compact JSON, without parsing
/// the whole body: a full parse per request cost this fake more CPU than it could spare on
/// a 2-core machine it shares with amrelay and the load generator. amrelay writes compact
/// JSON (serde_json), and the first `bench_sent_ms` is the first alert's: the load
/// generator leaves `commonAnnotations` empty, and the top-level fields come before
/// `alerts` in the `amrelay.v1` encoding.
fn string_field<'a>(body: &'a [u8], key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\":\"");
    let start = find(body, needle.as_bytes())? + needle.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

/// memchr's two-way search: a `windows().position()` scan was the fake's largest cost.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

async fn receive(
    State(st): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let arrival = unix_ms_now();
    let schema = string_field(&body, "schema").unwrap_or("none").to_owned();
    let sent = string_field(&body, "bench_sent_ms").and_then(|s| s.parse::<f64>().ok());
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
    s.requests += 1;
    if schema == "amrelay.v1" {
        s.v1 += 1;
    }
    *s.by_schema.entry(schema).or_default() += 1;
    match s.by_path.get_mut(uri.path()) {
        Some(n) => *n += 1,
        None => {
            s.by_path.insert(uri.path().to_owned(), 1);
        }
    }
    if let Some(f) = s.arrivals.as_mut() {
        // One write per line, unbuffered: a reader polling the file sees it at once.
        let line = format!(
            "{arrival:.3} {} {}\n",
            uri.path(),
            id.as_deref().unwrap_or("-")
        );
        if let Err(e) = f.write_all(line.as_bytes()) {
            eprintln!("sinkfake: cannot write the arrivals file: {e}");
            s.arrivals = None;
        }
    }
    if let Some(sent) = sent {
        s.latencies_us
            .push(((arrival - sent).max(0.0) * 1000.0).round() as u64);
    }
    if let Some(id) = id {
        if !s.ids.insert(id) {
            s.repeats += 1;
        }
    }
    s.first_arrival_ms.get_or_insert(arrival);
    s.last_arrival_ms = Some(arrival);
    StatusCode::OK
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
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

fn report(st: &Shared) -> Value {
    let s = st.lock().unwrap_or_else(|p| p.into_inner());
    let mut lat = s.latencies_us.clone();
    lat.sort_unstable();
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0
    };
    let span_s = match (s.first_arrival_ms, s.last_arrival_ms) {
        (Some(a), Some(b)) => (b - a) / 1000.0,
        _ => 0.0,
    };
    json!({
        "requests": s.requests,
        "amrelay_v1": s.v1,
        "by_schema": s.by_schema,
        "by_path": s.by_path,
        "distinct_webhook_ids": s.ids.len(),
        "repeats": s.repeats,
        "timed": lat.len(),
        "latency_of": "arrival here minus bench_sent_ms (loadgen send time)",
        "p50_ms": round3(pct(&lat, 50.0)),
        "p90_ms": round3(pct(&lat, 90.0)),
        "p99_ms": round3(pct(&lat, 99.0)),
        "max_ms": round3(lat.last().copied().unwrap_or(0) as f64 / 1000.0),
        "mean_ms": round3(mean),
        "first_arrival_unix_ms": s.first_arrival_ms.map(round3),
        "last_arrival_unix_ms": s.last_arrival_ms.map(round3),
        "arrival_span_s": round3(span_s),
    })
}

async fn stats(State(st): State<Shared>) -> Json<Value> {
    Json(report(&st))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let st: Shared = Arc::default();
    if let Some(path) = &args.arrivals {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("--arrivals {}: {e}", path.display()))?;
        st.lock().unwrap_or_else(|p| p.into_inner()).arrivals = Some(f);
    }
    let app = Router::new()
        .route("/stats", get(stats))
        .fallback(post(receive))
        .with_state(st.clone());
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("sinkfake listening on {}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::select! {
        _ = shutdown_signal() => {}
        r = server => r??,
    }
    // Report at once: keep-alive connections from amrelay need not close first.
    println!("{}", report(&st));
    Ok(())
}
