//! The backup's side: `POST /v1/promote` and `GET /v1/promotion` on their own listener,
//! signed requests only, at most one run of the command at a time, every decision durable.
//!
//! - [`auth`]: Standard Webhooks signature, clock skew, replays.
//! - [`state`]: the SQLite store and the endpoint rule.
//! - [`run`]: the command, its timeout and its output.
//! - [`admin`]: `amrelay promotion reset` and `show`.

pub(crate) mod admin;
mod auth;
pub(crate) mod run;
pub(crate) mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::config::PromotionEndpointSettings;
use crate::domain::promotion::{incident_key, Answer, ErrorBody, PromoteRequest, Verdict, SCHEMA};
use crate::domain::promotion::{PROMOTE_PATH, STATUS_PATH};
use crate::domain::signature::SigningKey;
use crate::domain::time::now_ms;
use crate::telemetry::metrics::run_outcome;
use crate::telemetry::Metrics;
use state::{Decision, Store};

/// The POST waits this long for the command, so that a quick one is answered 200 in one
/// round trip (the protocol's "short moment").
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// A request body is a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;
/// Gauges follow a `promotion reset` made by another process within this.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct Endpoint {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    settings: PromotionEndpointSettings,
    key: SigningKey,
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
    /// The run going now, for a graceful shutdown to wait on.
    running: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Endpoint {
    /// Opens the store under `storage_dir`, records a run cut off by the last stop as
    /// `interrupted`, and binds the listener.
    pub(crate) async fn start(
        settings: &PromotionEndpointSettings,
        storage_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Endpoint> {
        metrics.init_promotion_endpoint();
        let mut store = Store::open(storage_dir, &settings.target)?;
        for key in store
            .recover(now_ms())
            .context("recording interrupted promotion runs")?
        {
            tracing::error!(key, "a promotion run was cut off by the last stop; recorded as interrupted, not rerun (its command may have done part of its work)");
            metrics.promotion_run(run_outcome::INTERRUPTED, None);
        }
        metrics.promotion_status(&store.status()?);
        let listener = crate::net::listen("promotion_endpoint.listen", settings.listen).await?;
        Ok(Endpoint {
            listener,
            shared: Arc::new(Shared {
                key: SigningKey::from_secret(&settings.secret),
                settings: settings.clone(),
                store: Arc::new(Mutex::new(store)),
                metrics,
                running: Mutex::new(None),
            }),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.shared.settings.listen)
    }

    /// Serves until `shutdown`, then gives a run in progress `grace` to end. One still
    /// going after that is recorded `interrupted` at the next start.
    pub(crate) async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let sh = self.shared.clone();
        tracing::info!(addr = %self.local_addr(), target = %sh.settings.target, "promotion endpoint listening");
        let refresh = tokio::spawn(refresh(sh.clone()));
        axum::serve(self.listener, router(sh.clone()))
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving the promotion endpoint")?;
        refresh.abort();
        let running = sh.running.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(run) = running.filter(|r| !r.is_finished()) {
            tracing::warn!(?grace, "waiting for the promotion run in progress");
            if tokio::time::timeout(grace, run).await.is_err() {
                tracing::error!("the promotion run is still going; it is recorded as interrupted at the next start");
            }
        }
        Ok(())
    }
}

fn router(sh: Arc<Shared>) -> Router {
    Router::new()
        .route(PROMOTE_PATH, post(promote))
        .route(STATUS_PATH, get(show))
        .with_state(sh)
}

impl Shared {
    /// Runs a store operation off the async threads (SQLite blocks, with fsync).
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut s)
        })
        .await
        .context("store task failed")?
    }

    fn count(&self, result: &str) {
        self.metrics.promotion_request(result);
    }
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ErrorBody { error: msg.into() })).into_response()
}

fn answer(sh: &Shared, verdict: Verdict, body: &Answer) -> Response {
    sh.count(verdict.as_str());
    sh.metrics.promotion_status(&body.status);
    let status = StatusCode::from_u16(verdict.status()).unwrap_or(StatusCode::OK);
    let mut r = (status, Json(body)).into_response();
    if matches!(verdict, Verdict::Running | Verdict::Retry) {
        let secs = sh.settings.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

async fn show(AxumState(sh): AxumState<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = auth::check(&sh, &headers, b"").await {
        return e;
    }
    match sh.db(|s| s.status()).await {
        Ok(status) => {
            sh.metrics.promotion_status(&status);
            Json(status).into_response()
        }
        Err(e) => internal(&e),
    }
}

fn internal(e: &anyhow::Error) -> Response {
    tracing::error!(error = format!("{e:#}"), "promotion store failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("promotion store failed: {e:#}"),
    )
}

async fn promote(
    AxumState(sh): AxumState<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            sh.count("bad_request");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body is larger than {MAX_BODY} bytes"),
            );
        }
    };
    if let Err(e) = auth::check(&sh, &headers, &bytes).await {
        return e;
    }
    let req = match PromoteRequest::parse(&bytes)
        .and_then(|r| check(&r, &sh.settings.target).map(|()| r))
    {
        Ok(r) => r,
        Err(e) => {
            sh.count("bad_request");
            tracing::warn!(error = %e, "promotion request refused: bad request");
            return error(StatusCode::BAD_REQUEST, e);
        }
    };
    let span = tracing::info_span!("promotion", key = %req.key, epoch = req.epoch, manual = req.manual, dry_run = req.dry_run);
    decide(sh, req).instrument(span).await
}

/// The request names this endpoint's target, and its key is `<target>/<epoch>`. Any
/// epoch is well formed: one that is not current + 1 (0 included) is the decision's to
/// refuse with 409 and the state, so that a caller always learns the state.
fn check(req: &PromoteRequest, target: &str) -> Result<(), String> {
    if req.schema != SCHEMA {
        return Err(format!("schema: expected {SCHEMA:?}, got {:?}", req.schema));
    }
    if req.target != target {
        return Err(format!(
            "target: this endpoint promotes {target:?}, not {:?}",
            req.target
        ));
    }
    let want = incident_key(&req.target, req.epoch);
    if req.key != want {
        return Err(format!(
            "key: expected {want:?} (<target>/<epoch>), got {:?}",
            req.key
        ));
    }
    Ok(())
}

async fn decide(sh: Arc<Shared>, req: PromoteRequest) -> Response {
    let r = req.clone();
    let decision = match sh.db(move |s| s.decide(&r, now_ms())).await {
        Ok(d) => d,
        Err(e) => return internal(&e),
    };
    match decision {
        Decision::Answer(Verdict::Verified, body) if !sh.settings.command.is_empty() => {
            // Signature, epoch and state passed; a dry run also proves the command could
            // start, so that a drill finds a missing or unexecutable script.
            match run::check_executable(&sh.settings.command) {
                Ok(program) => {
                    tracing::info!(program = %program.display(), "dry run verified; nothing ran");
                    answer(&sh, Verdict::Verified, &body)
                }
                Err(why) => {
                    sh.count("failed");
                    tracing::error!(%why, "dry run: the promotion command could not run");
                    error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("dry run: the promotion command could not run: {why}"),
                    )
                }
            }
        }
        Decision::Answer(verdict, body) => {
            match verdict {
                Verdict::Refused => {
                    tracing::warn!(epoch = body.status.epoch, state = %body.status.state, "promotion refused")
                }
                _ => tracing::info!(result = verdict.as_str(), "promotion request answered"),
            }
            answer(&sh, verdict, &body)
        }
        Decision::Stored {
            verdict,
            status,
            body,
        } => {
            sh.count(verdict.as_str());
            tracing::info!(
                result = verdict.as_str(),
                status,
                "finished key asked again; stored answer repeated"
            );
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Decision::Start { attempt } => {
            let (tx, rx) = oneshot::channel();
            let task = tokio::spawn(
                execute(sh.clone(), req, attempt, tx).instrument(tracing::Span::current()),
            );
            *sh.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
            match tokio::time::timeout(ANSWER_WITHIN, rx).await {
                Ok(Ok(Ok((verdict, body)))) => answer(&sh, verdict, &body),
                Ok(Ok(Err(e))) => internal(&e),
                // Still running (or the task died: the store then says promoting).
                Ok(Err(_)) | Err(_) => match sh.db(|s| s.status()).await {
                    Ok(status) => answer(
                        &sh,
                        Verdict::Running,
                        &Answer {
                            status,
                            result: Verdict::Running,
                        },
                    ),
                    Err(e) => internal(&e),
                },
            }
        }
    }
}

type Done = anyhow::Result<(Verdict, Answer)>;

/// Runs the command (already stored as `promoting`) and records how it ended. Spawned:
/// it goes on when the caller hangs up.
async fn execute(sh: Arc<Shared>, req: PromoteRequest, attempt: u32, tx: oneshot::Sender<Done>) {
    let m = &sh.metrics;
    m.promotion_run_started();
    tracing::info!(attempt, reason = %req.reason, "promotion command starting");
    let env = [
        ("AMRELAY_EPOCH", req.epoch.to_string()),
        ("AMRELAY_INCIDENT", req.key.clone()),
        ("AMRELAY_TARGET", req.target.clone()),
        ("AMRELAY_REASON", req.reason.clone()),
        ("AMRELAY_MANUAL", req.manual.to_string()),
        ("AMRELAY_ATTEMPT", attempt.to_string()),
    ];
    let recorder = {
        let (sh, key) = (sh.clone(), req.key.clone());
        move |group| {
            tokio::spawn(async move {
                if let Err(e) = sh.db(move |s| s.ran_in(&key, group)).await {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "cannot record the promotion command's process group"
                    );
                }
            });
        }
    };
    let ran = run::run(&sh.settings.command, &env, sh.settings.timeout, recorder).await;
    let verdict = ran.finish.verdict();
    let kind = match verdict {
        Verdict::Promoted => run_outcome::SUCCEEDED,
        Verdict::Retry => run_outcome::RETRY,
        _ if ran.timed_out => run_outcome::TIMED_OUT,
        _ => run_outcome::FAILED,
    };
    m.promotion_run(kind, Some(ran.duration));
    let took = format!("{:.3}s", ran.duration.as_secs_f64());
    match verdict {
        Verdict::Promoted => tracing::info!(took, "promotion command succeeded"),
        Verdict::Retry => {
            tracing::warn!(took, "promotion command asked to be retried (exit 75)")
        }
        _ => {
            tracing::error!(took, exit_code = ?ran.finish.exit_code, error = ?ran.finish.error, stderr = %ran.finish.stderr_tail, "promotion command failed")
        }
    }
    let key = req.key.clone();
    let finish = ran.finish;
    let done = sh
        .db(move |s| s.finish(&key, &finish, now_ms()))
        .await
        .map(|a| (verdict, a));
    match &done {
        Ok((_, a)) => m.promotion_status(&a.status),
        Err(e) => tracing::error!(error = format!("{e:#}"), "cannot record how the promotion run ended; it stays promoting until the next start, which records it interrupted"),
    }
    let _ = tx.send(done);
}

/// Keeps the state gauges right after a reset made by another process.
async fn refresh(sh: Arc<Shared>) {
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    loop {
        tick.tick().await;
        if let Ok(s) = sh.db(|s| s.status()).await {
            sh.metrics.promotion_status(&s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_must_name_this_target_and_a_matching_key() {
        let ok = PromoteRequest::new("primary", 5, "r");
        assert_eq!(check(&ok, "primary"), Ok(()));
        let mut other = ok.clone();
        other.target = "db".into();
        other.key = "db/5".into();
        assert!(check(&other, "primary").unwrap_err().starts_with("target:"));
        let mut key = ok.clone();
        key.key = "primary/6".into();
        assert!(check(&key, "primary").unwrap_err().starts_with("key:"));
        let mut schema = ok.clone();
        schema.schema = "amrelay.v1".into();
        assert!(check(&schema, "primary")
            .unwrap_err()
            .starts_with("schema:"));
        // Well formed: the decision refuses it with 409 and the state.
        let zero = PromoteRequest::new("primary", 0, "r");
        assert_eq!(check(&zero, "primary"), Ok(()));
    }
}
