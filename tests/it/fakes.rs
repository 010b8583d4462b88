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

use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use tokio::sync::futures::Notified;

use crate::recorder::Recorder;

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

/// Slack's own limit: refuse a message that comes sooner than this after the last.
#[derive(Default)]
struct Pace {
    min_interval: Option<Duration>,
    last_accepted: Option<Instant>,
    refused_429: usize,
}

#[derive(Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    rec: Recorder<Answer, Received>,
    pace: Arc<Mutex<Pace>>,
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Fake {
            addr: listener.local_addr().unwrap(),
            rec: Recorder::new(),
            pace: Arc::new(Mutex::new(Pace::default())),
            token: "xoxb-test-token",
        };
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
        self.rec.script(answers);
    }

    /// The answer once the script has run out.
    pub fn set_default(&self, answer: Answer) {
        self.rec.set_default(answer);
    }

    pub fn enforce_min_interval(&self, d: Duration) {
        self.pace.lock().unwrap().min_interval = Some(d);
    }

    /// Lets every held (`Hang`) request answer 200.
    pub fn release_held(&self) {
        self.rec.release_held();
    }

    pub fn received(&self) -> Vec<Received> {
        self.rec.received()
    }

    pub fn refused_429(&self) -> usize {
        self.pace.lock().unwrap().refused_429
    }

    /// Bodies the fake accepted with 2xx.
    pub fn accepted(&self) -> Vec<Value> {
        self.rec.read(|got| {
            got.iter()
                .filter(|r| r.accepted)
                .map(|r| r.json.clone())
                .collect()
        })
    }

    /// The most requests that were open at the fake at one time.
    pub fn max_in_flight(&self) -> usize {
        self.rec.read(|got| {
            got.iter()
                .map(|r| {
                    got.iter()
                        .filter(|o| o.at <= r.at && o.answered_at.is_none_or(|done| done > r.at))
                        .count()
                })
                .max()
                .unwrap_or(0)
        })
    }

    /// Waits until `pred` holds over what was received, or panics after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) {
        self.rec.wait_for("the fake", what, timeout, pred).await
    }

    fn record(&self, headers: HeaderMap, body: &Bytes) -> usize {
        self.rec.push(Received {
            at: Instant::now(),
            headers,
            body: body.to_vec(),
            json: serde_json::from_slice(body).unwrap_or(Value::Null),
            answered: None,
            answered_at: None,
            accepted: false,
        })
    }

    fn answered(&self, i: usize, status: u16, accepted: bool) {
        self.rec.update(i, |r| {
            r.answered = Some(status);
            r.answered_at = Some(Instant::now());
            r.accepted = accepted;
        });
    }

    /// Plays the next scripted answer: status, Retry-After, Slack error. `released` was
    /// taken before the request was recorded.
    async fn play(
        &self,
        released: Pin<&mut Notified<'_>>,
    ) -> (StatusCode, Option<u64>, Option<&'static str>) {
        match self.rec.next_answer(Answer::Ok) {
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
    let released = pin!(fake.rec.next_release());
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
        let mut pace = fake.pace.lock().unwrap();
        if let Some(min) = pace.min_interval {
            let now = Instant::now();
            if pace
                .last_accepted
                .is_some_and(|t| now.duration_since(t) < min)
            {
                pace.refused_429 += 1;
                drop(pace);
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
    let (status, retry_after, error) = fake.play(released).await;
    let body = match error {
        Some(e) => json!({"ok": false, "error": e}),
        None if status == StatusCode::OK => {
            fake.pace.lock().unwrap().last_accepted = Some(Instant::now());
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
    let released = pin!(fake.rec.next_release());
    let i = fake.record(headers, &body);
    let (status, retry_after, _) = fake.play(released).await;
    fake.answered(i, status.as_u16(), status.is_success());
    let mut r = (status, "").into_response();
    if let Some(s) = retry_after {
        r.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    r
}
