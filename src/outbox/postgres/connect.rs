//! Connections to the shared database: the pool every request takes from, TLS through
//! rustls (the same crypto provider as the HTTP client and SMTP), and the one
//! connection that listens for other instances' work.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PostgresSettings, PostgresTls};
use crate::outbox::StoreError;

/// The channel other instances `NOTIFY` when they store work a worker may claim.
pub(super) const WORK_CHANNEL: &str = "amrelay_work";

/// How long a request waits for a connection: past this the database counts as
/// unreachable and a webhook gets 503 (Alertmanager retries) instead of hanging.
const WAIT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub(super) enum Tls {
    Off,
    On(MakeRustlsConnect),
}

pub(super) fn config(s: &PostgresSettings) -> Result<Config, StoreError> {
    let mut cfg: Config = s
        .url
        .expose_secret()
        .parse()
        .map_err(|e| StoreError::Refused(format!("storage.url: {e}")))?;
    if cfg.get_application_name().is_none() {
        cfg.application_name("amrelay");
    }
    // A dead peer (a host gone, a cable cut) is found within seconds, not hours.
    cfg.keepalives_idle(Duration::from_secs(5));
    cfg.connect_timeout(WAIT);
    Ok(cfg)
}

pub(super) fn tls(s: &PostgresSettings) -> Result<Tls, StoreError> {
    let ca_file = match &s.tls {
        PostgresTls::Disable => return Ok(Tls::Off),
        PostgresTls::VerifyFull { ca_file } => ca_file,
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    StoreError::Refused(format!("storage.ca_file {}: {e}", path.display()))
                })?;
            for c in certs {
                roots.add(c).map_err(|e| {
                    StoreError::Refused(format!("storage.ca_file {}: {e}", path.display()))
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Refused(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Tls::On(MakeRustlsConnect::new(client)))
}

pub(super) fn pool(cfg: Config, tls: &Tls, size: usize) -> Result<Pool, StoreError> {
    let mc = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        Tls::Off => Manager::from_config(cfg, NoTls, mc),
        Tls::On(t) => Manager::from_config(cfg, t.clone(), mc),
    };
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(WAIT),
            create: Some(WAIT),
            recycle: Some(WAIT),
        })
        .build()
        .map_err(|e| StoreError::Refused(format!("connection pool: {e}")))
}

/// One connection on its own, for work that cannot share a pooled one (migrations
/// under a lock, `LISTEN`).
pub(super) async fn connect_one(
    cfg: &Config,
    tls: &Tls,
) -> Result<
    (
        tokio_postgres::Client,
        std::pin::Pin<Box<dyn ConnectionStream>>,
    ),
    StoreError,
> {
    Ok(match tls {
        Tls::Off => {
            let (c, conn) = cfg.connect(NoTls).await?;
            (c, Box::pin(conn))
        }
        Tls::On(t) => {
            let (c, conn) = cfg.connect(t.clone()).await?;
            (c, Box::pin(conn))
        }
    })
}

/// A connection's background half, whatever its TLS: polled for messages.
pub(super) trait ConnectionStream: Send {
    fn poll_message(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<AsyncMessage, tokio_postgres::Error>>>;
}

impl<S, T> ConnectionStream for tokio_postgres::Connection<S, T>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    fn poll_message(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<AsyncMessage, tokio_postgres::Error>>> {
        tokio_postgres::Connection::poll_message(self.get_mut(), cx)
    }
}

/// Drives a connection until it closes.
pub(super) async fn drive(mut conn: std::pin::Pin<Box<dyn ConnectionStream>>) {
    while let Some(m) = std::future::poll_fn(|cx| conn.as_mut().poll_message(cx)).await {
        if let Err(e) = m {
            tracing::debug!(error = %e, "database connection ended");
            return;
        }
    }
}

/// Listens for other instances' `NOTIFY` and bumps `wake`; reconnects after a loss,
/// and bumps once then, since notifications sent meanwhile were missed.
pub(super) async fn listen(cfg: Config, tls: Tls, wake: Arc<watch::Sender<u64>>) {
    let bump = |w: &watch::Sender<u64>| w.send_modify(|g| *g = g.wrapping_add(1));
    loop {
        if Arc::strong_count(&wake) == 1 {
            // The outbox is gone.
            return;
        }
        match connect_one(&cfg, &tls).await {
            Ok((client, mut conn)) => {
                let ok = {
                    let sql = format!("LISTEN {WORK_CHANNEL}");
                    // The client's query needs the connection polled meanwhile.
                    let mut listening = std::pin::pin!(client.batch_execute(&sql));
                    loop {
                        tokio::select! {
                            r = &mut listening => break r.is_ok(),
                            m = std::future::poll_fn(|cx| conn.as_mut().poll_message(cx)) => {
                                if !matches!(m, Some(Ok(_))) { break false; }
                            }
                        }
                    }
                };
                if ok {
                    bump(&wake);
                    while let Some(Ok(m)) =
                        std::future::poll_fn(|cx| conn.as_mut().poll_message(cx)).await
                    {
                        if let AsyncMessage::Notification(_) = m {
                            bump(&wake);
                        }
                    }
                }
                drop(client);
            }
            Err(e) => tracing::debug!(error = %e, "cannot listen for other instances' work"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
