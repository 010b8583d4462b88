//! The admin API (`[admin]`), so that anyone on call can trigger and verify a failover by
//! hand: `amrelay promote TARGET --reason TEXT` and `amrelay status` talk to it. Bearer
//! token, compared in constant time, on its own listener (keep it on localhost or a
//! management network).
//!
//! - `POST /v1/admin/promote` `{"target": "primary", "reason": "...", "force": false}`:
//!   stores a manual promotion for the target's promotion channel (it skips `min_firing`
//!   and the quorum; `force` skips the cooldown too) and answers 202 with the delivery id.
//! - `GET /v1/admin/status`: per promotion target the last epoch seen and the open and
//!   last incidents; per channel the undelivered count; the dead letters.
//! - `POST /v1/admin/drills` `{"target": "primary", "alertmanagers": [...], "live":
//!   false, "step_timeout": "5m"}`: starts a drill (`amrelay drill`), 202 with its
//!   report so far; 409 while a real incident or another drill of the target is open.
//! - `GET /v1/admin/drills[?target=T&limit=N]`, `GET /v1/admin/drills/{id}`: reports,
//!   newest first.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::config::{HttpAuth, Settings};
use crate::domain::time::now_ms;
use crate::domain::{LabelSet, Notification};
use crate::drill::report::Report;
use crate::drill::{Refusal, Request, Runner};
use crate::ingest::auth;
use crate::outbox::Outbox;
use crate::promotion::caller::state::{CallerState, Incident};
use crate::promotion::caller::{FORCE_LABEL, MANUAL_LABEL};

pub(crate) struct AdminState {
    /// The running configuration (a reload replaces it).
    pub settings: Arc<Mutex<Settings>>,
    pub outbox: Outbox,
    pub caller: CallerState,
    pub drills: Runner,
}

pub(crate) fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/v1/admin/promote", post(promote))
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/drills", post(start_drill).get(list_drills))
        .route("/v1/admin/drills/{id}", get(show_drill))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteRequest {
    target: String,
    reason: String,
    #[serde(default)]
    force: bool,
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    answer(status, json!({ "error": msg.into() }))
}

/// A request's JSON body, or what a 400 says was expected.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("expected {expected}: {e}"))
}

/// None when the token is right; else the 401 (or 404 when the API is off).
async fn refuse(st: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let settings = st.settings.lock().await;
    let Some(admin) = &settings.admin else {
        return Some(error(
            StatusCode::NOT_FOUND,
            "the admin API is not configured ([admin])",
        ));
    };
    let ok = auth::check(Some(&HttpAuth::Bearer(admin.token.clone())), headers);
    (!ok).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token (Authorization: Bearer ...)",
        )
    })
}

async fn promote(
    State(st): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = refuse(&st, &headers).await {
        return r;
    }
    let req: PromoteRequest = match parse(&body, r#"{"target", "reason", "force"}"#) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if req.reason.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "reason: say why, for the record and the outcome message",
        );
    }
    let channel = match st.settings.lock().await.promotion_channel_of(&req.target) {
        Ok((name, _)) => name.to_owned(),
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let n = manual_notification(&req.target, &req.reason, req.force);
    tracing::warn!(target = %req.target, reason = %req.reason, force = req.force, "manual promotion requested through the admin API");
    match st
        .outbox
        .enqueue_made_here(&n, std::slice::from_ref(&channel))
        .await
    {
        Ok(ids) => answer(
            StatusCode::ACCEPTED,
            json!({
                "status": "queued",
                "target": req.target,
                "channel": channel,
                "deliveries": ids.unwrap_or_default(),
                "note": "follow it with `amrelay status`; the outcome goes to the channel's outcome_channels",
            }),
        ),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot store the request: {e}"),
        ),
    }
}

async fn status(State(st): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&st, &headers).await {
        return r;
    }
    let targets: Vec<(String, String)> = {
        let settings = st.settings.lock().await;
        settings
            .promotion_channels()
            .map(|(name, p)| (p.target.clone(), name.to_owned()))
            .collect()
    };
    let mut promotion = Vec::new();
    for (target, channel) in targets {
        match st.caller.status(&target).await {
            Ok(s) => promotion.push(json!({
                "target": target,
                "channel": channel,
                "last_epoch_seen": s.last_epoch,
                "open_incident": s.open.as_ref().map(incident),
                "last_incident": s.last.as_ref().map(incident),
            })),
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
        }
    }
    let stats = match st.outbox.stats().await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let now = now_ms();
    let channels: BTreeMap<String, Value> = stats
        .channels
        .iter()
        .map(|c| {
            (
                c.channel.clone(),
                json!({
                    "undelivered": c.open,
                    "oldest_age_s": c.oldest_created_at.map(|t| (now - t).max(0) as f64 / 1000.0),
                }),
            )
        })
        .collect();
    let (instance, names) = {
        let settings = st.settings.lock().await;
        let names: Vec<String> = settings.channels.iter().map(|c| c.name.clone()).collect();
        (settings.server.instance.clone(), names)
    };
    // With one process on its store, this instance delivers every channel.
    let delivered_by: BTreeMap<String, Option<String>> = names
        .into_iter()
        .map(|name| {
            let owner = if st.outbox.lease().is_none() {
                Some(instance.clone())
            } else {
                stats
                    .owners
                    .iter()
                    .find(|(c, _)| *c == name)
                    .map(|(_, i)| i.clone())
            };
            (name, owner)
        })
        .collect();
    answer(
        StatusCode::OK,
        json!({
            "instance": instance,
            "promotion": promotion,
            "channels": channels,
            "delivered_by": delivered_by,
            "dead_letters": stats.dead,
        }),
    )
}

fn incident(i: &Incident) -> Value {
    let time = crate::domain::time::rfc3339;
    json!({
        "key": i.key,
        "epoch": i.epoch,
        "state": i.state,
        "reason": i.reason,
        "opened_at": time(i.opened_at),
        "finished_at": i.finished_at.and_then(time),
        "detail": i.detail,
    })
}

/// A firing notification for one promotion channel, marked manual (and forced).
fn manual_notification(target: &str, reason: &str, force: bool) -> Notification {
    let mut labels = LabelSet::default();
    labels.insert("alertname", "ManualPromotion");
    labels.insert("target", target);
    labels.insert("severity", "critical");
    labels.insert(MANUAL_LABEL, "true");
    if force {
        labels.insert(FORCE_LABEL, "true");
    }
    let mut annotations = LabelSet::default();
    annotations.insert("summary", format!("promotion requested by hand: {reason}"));
    Notification::made_here(
        crate::domain::ADMIN_RECEIVER,
        format!("amrelay-manual/{target}/{}", uuid::Uuid::new_v4().simple()),
        &["alertname", "target"],
        labels,
        annotations,
        chrono::Utc::now(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrillRequest {
    target: String,
    #[serde(default)]
    alertmanagers: Vec<String>,
    #[serde(default)]
    live: bool,
    step_timeout: Option<String>,
}

async fn start_drill(
    State(st): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = refuse(&st, &headers).await {
        return r;
    }
    let req: DrillRequest = match parse(
        &body,
        r#"{"target", "alertmanagers", "live", "step_timeout"}"#,
    ) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let mut alertmanagers = Vec::new();
    for (i, u) in req.alertmanagers.iter().enumerate() {
        // A base URL: `join` must add to its path, not replace its last segment.
        let with_slash = if u.ends_with('/') {
            u.clone()
        } else {
            format!("{u}/")
        };
        match reqwest::Url::parse(&with_slash) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => alertmanagers.push(url),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("alertmanagers[{i}]: expected an http(s) URL, got {u:?}"),
                )
            }
        }
    }
    let step_timeout = match req.step_timeout.as_deref().map(humantime::parse_duration) {
        None => std::time::Duration::from_secs(300),
        Some(Ok(d)) if !d.is_zero() => d,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "step_timeout: expected a duration like \"5m\", got {:?}",
                    req.step_timeout
                ),
            )
        }
    };
    let started = st
        .drills
        .start(Request {
            target: req.target,
            alertmanagers,
            live: req.live,
            surprise: false,
            step_timeout,
        })
        .await;
    match started {
        Ok(d) => answer(StatusCode::ACCEPTED, report_json(&d.report)),
        Err(Refusal::NoTarget(e)) => error(StatusCode::NOT_FOUND, e),
        Err(Refusal::Busy(e)) => error(StatusCode::CONFLICT, e),
        Err(Refusal::Store(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[derive(Deserialize)]
struct DrillQuery {
    target: Option<String>,
    limit: Option<i64>,
}

async fn list_drills(
    State(st): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(q): Query<DrillQuery>,
) -> Response {
    if let Some(r) = refuse(&st, &headers).await {
        return r;
    }
    let limit = q.limit.unwrap_or(10).clamp(1, 1000);
    match st.caller.drills(q.target.as_deref(), limit).await {
        Ok(d) => answer(
            StatusCode::OK,
            Value::Array(d.iter().map(|d| report_json(&d.report)).collect()),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn show_drill(
    State(st): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = refuse(&st, &headers).await {
        return r;
    }
    match st.caller.drill(&id).await {
        Ok(Some(d)) => answer(StatusCode::OK, report_json(&d.report)),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no drill {id:?}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// A stored report as JSON (what a newer version stored and this one cannot read is
/// shown as stored).
fn report_json(stored: &str) -> Value {
    match Report::from_json(stored) {
        Some(r) => serde_json::to_value(r).unwrap_or(Value::Null),
        None => serde_json::from_str(stored).unwrap_or(Value::Null),
    }
}
