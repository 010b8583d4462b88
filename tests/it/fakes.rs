//! Fakes of the far side, written from the vendors' documentation, not from amrelay's
//! client. Each can change its answer mid-test and counts what it received.
//!
//! Slack `chat.postMessage` (<https://docs.slack.dev/reference/methods/chat.postMessage>):
//! - HTTP 200 with `{"ok":true,"channel":...,"ts":...}` on success;
//! - HTTP 200 with `{"ok":false,"error":"..."}` for errors, e.g. `not_authed` (no token),
//!   `invalid_auth`, `channel_not_found`, `no_text`, `internal_error`;
//! - HTTP 429 with a `Retry-After` header (seconds) when rate limited
//!   (<https://docs.slack.dev/apis/web-api/rate-limits>): about 1 message per second
//!   per channel for chat.postMessage.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

/// One scripted answer; after the script runs out the fake answers `Ok`.
#[derive(Clone, Debug)]
pub enum Answer {
    Ok,
    /// Slack: HTTP 200 `{"ok":false,"error":E}`.
    SlackError(&'static str),
    /// HTTP 429 with `Retry-After: secs`.
    RateLimited(u64),
    Status(u16),
    /// Answer `Ok`, but only after this long.
    Slow(Duration),
    /// Never answer (until the test drops the fake).
    Hang,
}

#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub json: Value,
    /// What the fake answered (None while held by `Hang`).
    pub answered: Option<u16>,
    /// When it answered.
    pub answered_at: Option<Instant>,
    /// Whether that answer meant "taken" (Slack: 200 with `ok:true`).
    pub accepted: bool,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Answer>,
    default: Option<Answer>,
    received: Vec<Received>,
    /// Slack's own limit: refuse a message that comes sooner than this after the last.
    min_interval: Option<Duration>,
    last_accepted: Option<Instant>,
    refused_429: usize,
}

#[derive(Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    changed: watch::Sender<usize>,
    release: Arc<Notify>,
    pub token: &'static str,
}

impl Fake {
    pub async fn slack() -> Fake {
        Fake::start("/api/chat.postMessage", true).await
    }

    pub async fn webhook() -> Fake {
        Fake::start("/hook", false).await
    }

    async fn start(path: &'static str, slack: bool) -> Fake {
        let (changed, _) = watch::channel(0);
        let fake = Fake {
            addr: "127.0.0.1:0".parse().unwrap(),
            inner: Arc::new(Mutex::new(Inner::default())),
            changed,
            release: Arc::new(Notify::new()),
            token: "xoxb-test-token",
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Fake { addr, ..fake };
        let handler = if slack {
            post(slack_handler)
        } else {
            post(webhook_handler)
        };
        let app = Router::new().route(path, handler).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    pub fn slack_api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    pub fn hook_url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    /// The answer once the script has run out.
    pub fn set_default(&self, answer: Answer) {
        self.inner.lock().unwrap().default = Some(answer);
    }

    pub fn enforce_min_interval(&self, d: Duration) {
        self.inner.lock().unwrap().min_interval = Some(d);
    }

    /// Lets every held (`Hang`) request answer 200.
    pub fn release_held(&self) {
        self.release.notify_waiters();
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    pub fn refused_429(&self) -> usize {
        self.inner.lock().unwrap().refused_429
    }

    /// Bodies the fake accepted with 2xx.
    pub fn accepted(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.accepted)
            .map(|r| r.json)
            .collect()
    }

    /// The most requests that were open at the fake at one time.
    pub fn max_in_flight(&self) -> usize {
        let got = self.received();
        got.iter()
            .map(|r| {
                got.iter()
                    .filter(|o| o.at <= r.at && o.answered_at.map_or(true, |done| done > r.at))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Waits until `pred` holds over what was received, or panics after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.inner.lock().unwrap().received) {
                return;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                let got = self.received().len();
                panic!(
                    "timed out after {timeout:?} waiting for {what} (fake received {got} requests)"
                );
            }
        }
    }

    fn next_answer(&self) -> Answer {
        let mut inner = self.inner.lock().unwrap();
        inner
            .script
            .pop_front()
            .or_else(|| inner.default.clone())
            .unwrap_or(Answer::Ok)
    }

    fn record(&self, headers: HeaderMap, body: &Bytes) -> usize {
        let mut inner = self.inner.lock().unwrap();
        inner.received.push(Received {
            at: Instant::now(),
            headers,
            body: body.to_vec(),
            json: serde_json::from_slice(body).unwrap_or(Value::Null),
            answered: None,
            answered_at: None,
            accepted: false,
        });
        inner.received.len() - 1
    }

    fn answered(&self, i: usize, status: u16, accepted: bool) {
        let mut inner = self.inner.lock().unwrap();
        inner.received[i].answered = Some(status);
        inner.received[i].answered_at = Some(Instant::now());
        inner.received[i].accepted = accepted;
        drop(inner);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Plays the next scripted answer: status, Retry-After, Slack error.
    async fn play(&self) -> (StatusCode, Option<u64>, Option<&'static str>) {
        let answer = self.next_answer();
        // Listen for a release before telling waiters the request is here: a test that
        // sees it and releases at once must not find nobody listening yet.
        let released = self.release.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        self.changed.send_modify(|n| *n += 1);
        match answer {
            Answer::Ok => (StatusCode::OK, None, None),
            Answer::SlackError(e) => (StatusCode::OK, None, Some(e)),
            Answer::RateLimited(s) => (StatusCode::TOO_MANY_REQUESTS, Some(s), Some("ratelimited")),
            Answer::Status(s) => (StatusCode::from_u16(s).unwrap(), None, None),
            Answer::Slow(d) => {
                tokio::time::sleep(d).await;
                (StatusCode::OK, None, None)
            }
            Answer::Hang => {
                released.await;
                (StatusCode::OK, None, None)
            }
        }
    }
}

async fn slack_handler(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let i = fake.record(headers.clone(), &body);
    // The documented checks come first: auth, then arguments.
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let early = match auth {
        None => Some("not_authed"),
        Some(a) if a != format!("Bearer {}", fake.token) => Some("invalid_auth"),
        _ if json.get("channel").and_then(Value::as_str).is_none() => Some("channel_not_found"),
        _ if json.get("text").is_none() && json.get("blocks").is_none() => Some("no_text"),
        _ => None,
    };
    if let Some(e) = early {
        fake.answered(i, 200, false);
        return (StatusCode::OK, axum::Json(json!({"ok": false, "error": e}))).into_response();
    }
    {
        let mut inner = fake.inner.lock().unwrap();
        if let Some(min) = inner.min_interval {
            let now = Instant::now();
            if inner
                .last_accepted
                .is_some_and(|t| now.duration_since(t) < min)
            {
                inner.refused_429 += 1;
                drop(inner);
                fake.answered(i, 429, false);
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    axum::Json(json!({"ok": false, "error": "ratelimited"})),
                )
                    .into_response();
            }
        }
    }
    let (status, retry_after, error) = fake.play().await;
    let body = match error {
        Some(e) => json!({"ok": false, "error": e}),
        None if status == StatusCode::OK => {
            fake.inner.lock().unwrap().last_accepted = Some(Instant::now());
            json!({"ok": true, "channel": "C024BE91L", "ts": "1503435956.000247"})
        }
        // Slack's edge answers a 5xx with an HTML page, not its JSON envelope.
        None => {
            fake.answered(i, status.as_u16(), false);
            return (status, "<html><body>Service Unavailable</body></html>").into_response();
        }
    };
    fake.answered(
        i,
        status.as_u16(),
        status == StatusCode::OK && error.is_none(),
    );
    let mut r = (status, axum::Json(body)).into_response();
    if let Some(s) = retry_after {
        r.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    r
}

async fn webhook_handler(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let i = fake.record(headers, &body);
    let (status, retry_after, _) = fake.play().await;
    fake.answered(i, status.as_u16(), status.is_success());
    let mut r = (status, "").into_response();
    if let Some(s) = retry_after {
        r.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    r
}
