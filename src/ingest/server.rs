//! The webhook listener's accept loop. amrelay is on the alert path of an outage, so a
//! slow or hostile client must not starve Alertmanager: headers must arrive within
//! `server.header_timeout` (the same bound closes a keep-alive connection left idle),
//! at most `server.max_connections` are open at once (past that a new connection is
//! closed at once, with a rate-limited log line), and a body must arrive within
//! `server.body_timeout` (in the handler, `super::receive`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::domain::time::now_ms;
use crate::telemetry::LogEvery;

/// What the listener bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) header_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown`, then lets requests in flight finish.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let refused = LogEvery::new(10_000);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors (EMFILE) or a connection reset before accept:
                // wait a moment instead of spinning, and say so now and then.
                if let Some(suppressed) = refused.allow(now_ms()) {
                    tracing::warn!(error = %e, suppressed, "cannot accept a connection");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(suppressed) = refused.allow(now_ms()) {
                tracing::warn!(
                    %peer,
                    max = limits.max_connections,
                    suppressed,
                    "server.max_connections reached: closing new connections until some end"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true);
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that timed out or hung up ends its connection: not amrelay's error.
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
