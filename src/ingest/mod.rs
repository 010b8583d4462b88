//! The HTTP front: `POST /webhook/alertmanager`, `/metrics`, `/healthz`, `/readyz`.
//! A webhook is answered 200 only after its deliveries are committed to the outbox.

pub(crate) mod auth;
pub(crate) mod server;

use std::sync::{Arc, RwLock};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::HttpAuth;
use crate::deliver::{Lanes, Reservation};
use crate::domain::time::now_ms;
use crate::domain::{wire, DedupKey, Notification};
use crate::heartbeat::Heartbeats;
use crate::outbox::{stored, Completion, Enqueued, Epoch, NewNotification, Outbox};
use crate::pipeline::{Holds, Routes};
use crate::telemetry::{LogEvery, Metrics};

pub(crate) const WEBHOOK_PATH: &str = "/webhook/alertmanager";

/// Webhooks handled at once; past this amrelay answers 503 at once (Alertmanager
/// retries) instead of holding memory for a queue it cannot drain.
const MAX_IN_FLIGHT: usize = 1024;

/// The parts of the configuration a reload may change.
pub(crate) struct Pipeline {
    pub auth: Option<HttpAuth>,
    pub routes: Routes,
    pub max_body: usize,
    pub body_timeout: std::time::Duration,
    pub holds: Holds,
    /// The running workers' slots, for handing fresh deliveries straight over.
    pub lanes: Lanes,
}

pub(crate) struct AppState {
    pub pipeline: RwLock<Arc<Pipeline>>,
    pub in_flight: Semaphore,
    /// Refusals come in floods; one log line per interval says how many were not logged.
    refusal_log: LogEvery,
    pub outbox: Outbox,
    pub metrics: Arc<Metrics>,
    /// `[[heartbeats]]`: consumed here, before routing.
    pub heartbeats: Arc<Heartbeats>,
}

impl AppState {
    pub(crate) fn new(
        pipeline: Pipeline,
        outbox: Outbox,
        metrics: Arc<Metrics>,
        heartbeats: Arc<Heartbeats>,
    ) -> Self {
        AppState {
            pipeline: RwLock::new(Arc::new(pipeline)),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            refusal_log: LogEvery::new(10_000),
            outbox,
            metrics,
            heartbeats,
        }
    }

    fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn replace_pipeline(&self, p: Pipeline) {
        *self.pipeline.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(alertmanager))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Receivers named `amrelay-...` are amrelay's own notifications (a manual promotion, a
/// promotion outcome, a test message): one from outside could pose as a manual
/// promotion and skip the quorum.
fn not_internal(n: Notification) -> Result<Notification, wire::PayloadError> {
    if n.receiver.starts_with(crate::domain::RESERVED_PREFIX) {
        return Err(wire::PayloadError::Field {
            field: "receiver".into(),
            msg: format!(
                "receiver names starting with {:?} are reserved for amrelay's own notifications; rename the Alertmanager receiver",
                crate::domain::RESERVED_PREFIX
            ),
        });
    }
    Ok(n)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "status": "error", "error": msg.into() })),
    )
        .into_response()
}

async fn alertmanager(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let span = tracing::info_span!(
        "webhook",
        receiver = tracing::field::Empty,
        group_key = tracing::field::Empty,
        alerts = tracing::field::Empty
    );
    receive(st, headers, body).instrument(span).await
}

async fn receive(st: Arc<AppState>, headers: HeaderMap, body: Body) -> Response {
    let m = &st.metrics;
    m.received.inc();
    let p = st.pipeline();
    if !auth::check(p.auth.as_ref(), &headers) {
        m.reject("unauthorized");
        tracing::warn!("webhook refused: missing or wrong credentials");
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong credentials in the Authorization header",
        );
        let scheme = match p.auth {
            Some(HttpAuth::Basic { .. }) => "Basic realm=\"amrelay\"",
            _ => "Bearer",
        };
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(scheme),
        );
        return r;
    }
    let too_large = || {
        m.reject("too_large");
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than server.max_body ({} bytes)", p.max_body),
        )
    };
    // Refused from the header, before a byte of the body is read.
    if content_length(&headers).is_some_and(|n| n > p.max_body as u64) {
        return too_large();
    }
    // The body is read before a slot is taken, within a time limit: a slow client holds
    // up only its own connection, never the webhooks behind it.
    let read = tokio::time::timeout(p.body_timeout, axum::body::to_bytes(body, p.max_body));
    let bytes: Bytes = match read.await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) if is_length_limit(&e) => return too_large(),
        Ok(Err(e)) => {
            m.reject("incomplete_body");
            tracing::debug!(error = %e, "webhook body broken off by the client");
            return error(
                StatusCode::BAD_REQUEST,
                "the body ended before it was complete (the client hung up?)",
            );
        }
        Err(_) => {
            m.reject("body_timeout");
            if let Some(suppressed) = st.refusal_log.allow(now_ms()) {
                tracing::warn!(suppressed, timeout = ?p.body_timeout, "webhook body too slow; refusing with 408");
            }
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within server.body_timeout ({:?})",
                    p.body_timeout
                ),
            );
        }
    };
    let Ok(_permit) = st.in_flight.try_acquire() else {
        m.reject("overloaded");
        if let Some(suppressed) = st.refusal_log.allow(now_ms()) {
            tracing::warn!(suppressed, "too many webhooks in flight; refusing with 503");
        }
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("amrelay is handling {MAX_IN_FLIGHT} webhooks already; try again later"),
        );
    };
    let n = match wire::parse(&bytes).and_then(not_internal) {
        Ok(n) => n,
        Err(e) => {
            m.reject("bad_payload");
            tracing::warn!(error = %e, "webhook refused: bad payload");
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let span = tracing::Span::current();
    span.record("receiver", n.receiver.as_str());
    span.record("group_key", n.group_key.as_str());
    span.record("alerts", n.alerts.len());
    if let Some(sighting) = st.heartbeats.consume(&n) {
        return heartbeat(&st, sighting).await;
    }
    let channels = p.routes.route(&n);
    // The body as Alertmanager sent it is what is stored (compressed): no second encoding,
    // and a stable format for any later version to read. serde_json skips unknown fields
    // without checking their bytes, so a body that parsed may still not be UTF-8.
    if std::str::from_utf8(&bytes).is_err() {
        m.reject("bad_payload");
        return error(StatusCode::BAD_REQUEST, "body is not UTF-8");
    }
    let payload = match stored::encode(&bytes) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    // A free worker slot now means the delivery can skip the outbox's claim step.
    let reserved = p.lanes.reserve(&channels);
    let received_at = now_ms();
    let new = NewNotification {
        key: DedupKey::of(&n),
        group_key: n.group_key.clone(),
        received_at,
        payload,
        fast: reserved.fast(),
        holds: p.holds.plan(&n, &channels),
        channels: channels.clone(),
    };
    // Committing and handing over run to the end even if Alertmanager hangs up meanwhile:
    // a delivery stored in flight must reach its worker.
    let commit = tokio::spawn(
        commit(st.clone(), p, new, n, channels, reserved).instrument(tracing::Span::current()),
    );
    match commit.await {
        Ok(response) => response,
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("commit task failed: {e}"),
        ),
    }
}

async fn commit(
    st: Arc<AppState>,
    p: Arc<Pipeline>,
    new: NewNotification,
    n: Notification,
    channels: Vec<String>,
    reserved: Reservation,
) -> Response {
    let m = &st.metrics;
    let received_at = new.received_at;
    match st.outbox.enqueue(new).await {
        Ok(Enqueued::Accepted {
            deliveries,
            enqueued_at,
        }) => {
            for c in &channels {
                m.enqueued.get_or_create(&Metrics::channel(c)).inc();
            }
            let status = n.status;
            let orphans = p.lanes.hand_off(
                reserved,
                &channels,
                &deliveries,
                Arc::new(n),
                received_at,
                enqueued_at,
            );
            for (id, epoch) in orphans {
                release(&st.outbox, id, epoch).await;
            }
            tracing::debug!(%status, ?channels, "accepted");
            Json(Accepted {
                status: "accepted",
                deliveries: deliveries.len(),
                channels: &channels,
            })
            .into_response()
        }
        Ok(Enqueued::Duplicate) => {
            m.deduplicated.inc();
            tracing::debug!("duplicate within dedup.window; not delivered again");
            Json(json!({ "status": "duplicate", "deliveries": 0 })).into_response()
        }
        Ok(Enqueued::Full { pending, max }) => {
            m.reject("store_full");
            if let Some(suppressed) = st.refusal_log.allow(now_ms()) {
                tracing::warn!(
                    pending,
                    max,
                    suppressed,
                    "outbox full; refusing with 503 so Alertmanager retries (amrelay_webhooks_rejected_total counts each)"
                );
            }
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("outbox holds {pending} undelivered deliveries (storage.max_pending = {max}); try again later"),
            )
        }
        Err(e) => {
            m.reject("store_error");
            if let Some(suppressed) = st.refusal_log.allow(now_ms()) {
                tracing::error!(error = %e, disk_full = e.is_disk_full(), suppressed, "cannot commit notification; refusing with 503");
            }
            // 503, never 429: Alertmanager does not retry a 429.
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("notification not stored: {e}"),
            )
        }
    }
}

/// A heartbeat (a Watchdog) is recorded, never routed: it would page every minute. A
/// resolved one records nothing. Answered 200 once the sighting is on disk.
async fn heartbeat(st: &AppState, sighting: crate::heartbeat::Sighting) -> Response {
    if let Err(e) = st.heartbeats.record(&sighting).await {
        st.metrics.reject("store_error");
        tracing::error!(heartbeat = %sighting.heartbeat, error = %e, "cannot record the heartbeat; refusing with 503");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("heartbeat not recorded: {e}"),
        );
    }
    tracing::debug!(heartbeat = %sighting.heartbeat, sources = ?sighting.sources, "heartbeat seen");
    Json(json!({
        "status": "heartbeat",
        "heartbeat": sighting.heartbeat,
        "sources": sighting.sources,
    }))
    .into_response()
}

/// The answer to an accepted webhook (a struct, not `json!`: this is the hot path).
#[derive(serde::Serialize)]
struct Accepted<'a> {
    status: &'static str,
    deliveries: usize,
    channels: &'a [String],
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether reading the body stopped at `server.max_body` (and not because the client
/// broke it off).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The worker went away between reserve and hand-off (a reload): the row goes back to
/// pending, where the new worker claims it.
async fn release(outbox: &Outbox, id: i64, epoch: Epoch) {
    if let Err(e) = outbox.complete(id, epoch, Completion::Release).await {
        tracing::error!(delivery_id = id, error = %e, "cannot release a handed-off delivery; it is retried at the next start");
    }
}

/// OpenMetrics or the classic text format, as the `Accept` header asks.
async fn metrics(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = st.metrics.exposition(accept);
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    match st.outbox.probe().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store does not take writes: {e}"),
        ),
    }
}
