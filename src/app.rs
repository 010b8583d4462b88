//! Builds every part from the settings, binds, and runs until the shutdown future fires.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::collector::Collector;
use crate::config::{Settings, StorageBackend};
use crate::deliver::Deliverer;
use crate::domain::time::now_ms;
use crate::drill;
use crate::heartbeat::{state::HeartbeatState, Heartbeats};
use crate::ingest::{self, AppState, Pipeline};
use crate::outbox::{Access, Limits, Outbox};
use crate::pipeline::{Holds, Routes};
use crate::promotion::caller::{state::CallerState, CallerEnv};
use crate::promotion::endpoint::Endpoint;
use crate::sinks::SinkContext;
use crate::telemetry::Metrics;

const STATS_EVERY: Duration = Duration::from_secs(2);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub struct App {
    listener: TcpListener,
    /// `[admin]`'s listener, when configured.
    admin: Option<TcpListener>,
    settings: Settings,
    /// The running configuration, shared with the reloader and the admin API.
    current: Arc<Mutex<Settings>>,
    caller: CallerState,
    state: Arc<AppState>,
    deliverer: Arc<Mutex<Option<Deliverer>>>,
    sinks: SinkContext,
    /// `[promotion_endpoint]`, on its own listener.
    endpoint: Option<Endpoint>,
    /// The metric collection sidecar, when `[collector]` has targets.
    collector: Option<Collector>,
}

/// Applies a new configuration to a running app (SIGHUP).
#[derive(Clone)]
pub struct Reloader {
    current: Arc<Mutex<Settings>>,
    state: Arc<AppState>,
    deliverer: Arc<Mutex<Option<Deliverer>>>,
    sinks: SinkContext,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let limits = Limits::of(&settings);
        let (outbox, opened) = Outbox::open(
            &settings.storage,
            &settings.server.instance,
            limits,
            Access::Serve,
        )
        .await
        .with_context(|| match &settings.storage.backend {
            StorageBackend::Sqlite => format!(
                "opening the store under {} (storage.path)",
                settings.storage.path.display()
            ),
            StorageBackend::Postgres(_) => "opening the PostgreSQL store (storage.url)".to_owned(),
        })?;
        tracing::info!(
            instance = %settings.server.instance,
            backend = opened.backend,
            schema_version = opened.schema_version,
            "store open"
        );
        let listener = crate::net::listen("server.listen", settings.server.listen).await?;
        let admin = match &settings.admin {
            Some(a) => Some(crate::net::listen("admin.listen", a.listen).await?),
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        metrics.set_instance(&settings.server.instance);
        let endpoint = match &settings.promotion_endpoint {
            Some(e) => Some(Endpoint::start(e, &settings.storage.path, metrics.clone()).await?),
            None => None,
        };
        // Opened now only when a promotion channel needs it; a reload that adds one, or
        // the admin API, opens it on first use.
        let caller = CallerState::beside(&outbox, &settings.storage.path);
        if settings.promotion_channels().next().is_some() {
            caller
                .open_now()
                .map_err(|e| anyhow::anyhow!("opening the promotion state: {e}"))?;
        }
        let sinks = SinkContext {
            client: crate::net::client().context("building the HTTP client")?,
            promotion: Some(Arc::new(CallerEnv {
                state: caller.clone(),
                outbox: outbox.clone(),
                metrics: metrics.clone(),
            })),
        };
        let built = Deliverer::build_sinks(&settings, &sinks)?;
        let deliverer = Deliverer::start(&settings, built, &outbox, &metrics);
        let collector = if settings.collector.enabled() {
            Some(Collector::start(&settings, &metrics, &sinks.client)?)
        } else {
            None
        };
        // Opened now only when a heartbeat is configured; a reload that adds one opens
        // it on first use.
        let beats = HeartbeatState::beside(&outbox, &settings.storage.path);
        if !settings.heartbeats.is_empty() {
            beats
                .open_now()
                .map_err(|e| anyhow::anyhow!("opening the heartbeat state: {e}"))?;
        }
        let heartbeats = Arc::new(Heartbeats::new(
            settings.heartbeats.clone(),
            beats,
            outbox.clone(),
            metrics.clone(),
        ));
        let state = Arc::new(AppState::new(
            pipeline(&settings, &deliverer),
            outbox,
            metrics,
            heartbeats,
        ));
        Ok(App {
            listener,
            admin,
            current: Arc::new(Mutex::new(settings.clone())),
            caller,
            settings,
            state,
            deliverer: Arc::new(Mutex::new(Some(deliverer))),
            sinks,
            endpoint,
            collector,
        })
    }

    /// The promotion endpoint's address, when `[promotion_endpoint]` is configured.
    pub fn promotion_addr(&self) -> Option<SocketAddr> {
        self.endpoint.as_ref().map(Endpoint::local_addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.settings.server.listen)
    }

    /// Where the admin API listens, when `[admin]` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn reloader(&self) -> Reloader {
        Reloader {
            current: self.current.clone(),
            state: self.state.clone(),
            deliverer: self.deliverer.clone(),
            sinks: self.sinks.clone(),
        }
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes requests in flight,
    /// and gives deliveries in flight `server.shutdown_grace` to finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        tracing::info!(%addr, store = %self.settings.storage.path.display(), channels = self.settings.channels.len(), "amrelay listening");
        if open_to_anyone(addr, self.settings.server.auth.as_ref()) {
            tracing::warn!(%addr, "server.listen is reachable from other hosts and webhooks need no credentials: anyone who can reach it can post alerts (and so set off a promotion channel); set server.bearer_token_file or server.basic_auth, and send them from Alertmanager's http_config");
        }
        warn_unconfigured(&self.state, &self.settings).await;
        let housekeeping = tokio::spawn(housekeeping(self.state.clone()));
        let drills = drill::Runner {
            settings: self.current.clone(),
            outbox: self.state.outbox.clone(),
            caller: self.caller.clone(),
            client: self.sinks.client.clone(),
            metrics: self.state.metrics.clone(),
            webhook: own_webhook(addr)?,
        };
        if self.settings.promotion_channels().next().is_some() {
            drills.interrupted(&self.settings.server.instance).await;
        }
        let schedule = tokio::spawn(drill::schedule::run(drills.clone()));
        let heartbeats = tokio::spawn(self.state.heartbeats.clone().run());
        let admin = self.admin.map(|listener| {
            let addr = listener.local_addr().ok();
            tracing::info!(?addr, "admin API listening");
            let state = Arc::new(AdminState {
                settings: self.current.clone(),
                outbox: self.state.outbox.clone(),
                caller: self.caller.clone(),
                drills,
            });
            tokio::spawn(async move { axum::serve(listener, admin::router(state)).await })
        });
        let stop = CancellationToken::new();
        let endpoint = self.endpoint.map(|e| {
            let stop = stop.clone();
            let grace = self.settings.server.shutdown_grace;
            tokio::spawn(async move {
                let r = e.run(stop.clone().cancelled_owned(), grace).await;
                // Either listener failing stops both.
                stop.cancel();
                r
            })
        });
        let limits = ingest::server::Limits {
            max_connections: connection_cap(self.settings.server.max_connections),
            header_timeout: self.settings.server.header_timeout,
        };
        let served =
            ingest::server::serve(self.listener, ingest::router(self.state.clone()), limits, {
                let stop = stop.clone();
                async move {
                    tokio::select! {
                        _ = shutdown => {}
                        _ = stop.cancelled() => {}
                    }
                }
            })
            .await
            .context("serving HTTP");
        stop.cancel();
        tracing::info!("stopped accepting webhooks; finishing deliveries in flight");
        // Aborted and awaited: what they hold (the store among it) is let go before
        // `run` returns.
        housekeeping.abort();
        let _ = housekeeping.await;
        schedule.abort();
        let _ = schedule.await;
        heartbeats.abort();
        let _ = heartbeats.await;
        if let Some(a) = admin {
            a.abort();
            let _ = a.await;
        }
        if let Some(e) = endpoint {
            match e.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::error!(error = format!("{err:#}"), "promotion endpoint failed")
                }
                Err(err) => tracing::error!(error = %err, "promotion endpoint task failed"),
            }
        }
        served?;
        if let Some(d) = self.deliverer.lock().await.take() {
            d.shutdown(self.settings.server.shutdown_grace).await;
        }
        if let Some(c) = self.collector {
            c.shutdown().await;
        }
        tracing::info!("amrelay stopped");
        Ok(())
    }
}

impl Reloader {
    /// Swaps routes, auth and channels. The listen address and the store need a restart.
    pub async fn reload(&self, new: Settings) {
        let mut current = self.current.lock().await;
        let built = match Deliverer::build_sinks(&new, &self.sinks) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "reload refused; the running configuration stays"
                );
                return;
            }
        };
        let mut slot = self.deliverer.lock().await;
        let Some(old) = slot.take() else {
            tracing::warn!("SIGHUP during shutdown: reload skipped");
            return;
        };
        for (key, changed) in [
            ("server.listen", new.server.listen != current.server.listen),
            ("storage.path", new.storage.path != current.storage.path),
            (
                "storage.max_pending",
                new.storage.max_pending != current.storage.max_pending,
            ),
            (
                "storage.retention",
                new.storage.retention != current.storage.retention,
            ),
            ("dedup.window", new.dedup_window != current.dedup_window),
            ("promotion_endpoint", !same_endpoint(&new, &current)),
            ("storage.backend", !same_backend(&new, &current)),
            (
                "server.instance",
                new.server.instance != current.server.instance,
            ),
            (
                "server.max_connections",
                new.server.max_connections != current.server.max_connections,
            ),
            (
                "server.header_timeout",
                new.server.header_timeout != current.server.header_timeout,
            ),
        ] {
            if changed {
                tracing::warn!(key, "changed, but takes effect only at the next start");
            }
        }
        if old.shutdown(current.server.shutdown_grace).await {
            // The aborted attempts' rows are in flight with nobody attempting them.
            if let Err(e) = self.state.outbox.recover_inflight().await {
                tracing::error!(error = %e, "cannot return abandoned deliveries to pending; they are retried at the next start");
            }
        }
        let started = Deliverer::start(&new, built, &self.state.outbox, &self.state.metrics);
        self.state.replace_pipeline(pipeline(&new, &started));
        self.state.heartbeats.replace(new.heartbeats.clone());
        *slot = Some(started);
        tracing::info!(
            channels = new.channels.len(),
            routes = new.routes.len(),
            heartbeats = new.heartbeats.len(),
            "configuration reloaded"
        );
        warn_unconfigured(&self.state, &new).await;
        *current = new;
    }
}

/// This amrelay's webhook as another process on the host reaches it: a drill without
/// Alertmanagers posts there (an address of any interface means the loopback one).
fn own_webhook(addr: SocketAddr) -> anyhow::Result<reqwest::Url> {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let url = format!(
        "http://{}{}",
        SocketAddr::new(ip, addr.port()),
        ingest::WEBHOOK_PATH
    );
    reqwest::Url::parse(&url).with_context(|| format!("the webhook's own URL {url}"))
}

/// `server.max_connections`, lowered to what the process's file descriptor limit leaves
/// after the store, outgoing connections and the rest (128): past the limit, accept
/// fails instead, and the connections that matter queue behind the ones that do not.
fn connection_cap(configured: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given; nothing else is touched.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok || lim.rlim_cur == libc::RLIM_INFINITY {
        return configured;
    }
    let fits = (lim.rlim_cur as usize).saturating_sub(128).max(16);
    if fits < configured {
        tracing::warn!(
            configured,
            fits,
            nofile = lim.rlim_cur,
            "server.max_connections is above what the open-file limit leaves; using the lower"
        );
        return fits;
    }
    configured
}

/// The store keeps the backend (and database) it opened until a restart.
fn same_backend(a: &Settings, b: &Settings) -> bool {
    use secrecy::ExposeSecret;
    match (&a.storage.backend, &b.storage.backend) {
        (StorageBackend::Sqlite, StorageBackend::Sqlite) => true,
        (StorageBackend::Postgres(a), StorageBackend::Postgres(b)) => {
            a.url.expose_secret() == b.url.expose_secret()
                && a.pool_size == b.pool_size
                && a.tls == b.tls
                && a.lease == b.lease
        }
        _ => false,
    }
}

/// The promotion endpoint keeps the settings it started with until a restart.
fn same_endpoint(a: &Settings, b: &Settings) -> bool {
    match (&a.promotion_endpoint, &b.promotion_endpoint) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            use secrecy::ExposeSecret;
            a.listen == b.listen
                && a.target == b.target
                && a.command == b.command
                && a.timeout == b.timeout
                && a.max_clock_skew == b.max_clock_skew
                && a.retry_after == b.retry_after
                && a.secret.expose_secret() == b.secret.expose_secret()
        }
        _ => false,
    }
}

/// Deliveries waiting for a channel the configuration no longer has are never sent.
/// Webhooks without credentials on an address other hosts can reach (0.0.0.0 included).
fn open_to_anyone(listen: std::net::SocketAddr, auth: Option<&crate::config::HttpAuth>) -> bool {
    auth.is_none() && !listen.ip().is_loopback()
}

async fn warn_unconfigured(state: &AppState, settings: &Settings) {
    if let Ok(stats) = state.outbox.stats().await {
        for c in stats
            .channels
            .iter()
            .filter(|c| settings.channel(&c.channel).is_none())
        {
            tracing::warn!(channel = %c.channel, undelivered = c.open, "deliveries wait for a channel that is not configured; add it back to deliver them");
        }
    }
}

fn pipeline(s: &Settings, d: &Deliverer) -> Pipeline {
    Pipeline {
        auth: s.server.auth.clone(),
        routes: Routes::new(s.routes.clone()),
        max_body: s.server.max_body,
        body_timeout: s.server.body_timeout,
        holds: Holds::new(s),
        lanes: d.lanes(),
    }
}

/// Refreshes the queue gauges; prunes old rows and recounts the undelivered ones.
async fn housekeeping(state: Arc<AppState>) {
    let mut stats = tokio::time::interval(STATS_EVERY);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut seen: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            _ = stats.tick() => match state.outbox.stats().await {
                Ok(s) => {
                    let m = &state.metrics;
                    let now = now_ms();
                    // Channels that emptied read 0, not their last value.
                    for c in seen.drain(..) {
                        m.queue_depth.get_or_create(&Metrics::channel(&c)).set(0);
                        m.oldest_pending_age.get_or_create(&Metrics::channel(&c)).set(0.0);
                    }
                    for c in &s.channels {
                        let l = Metrics::channel(&c.channel);
                        m.queue_depth.get_or_create(&l).set(c.open as i64);
                        let age = c.oldest_created_at.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
                        m.oldest_pending_age.get_or_create(&l).set(age);
                        seen.push(c.channel.clone());
                    }
                    m.dead_letters.set(s.dead as i64);
                }
                Err(e) => tracing::error!(error = %e, "cannot read outbox stats"),
            },
            _ = prune.tick() => {
                match state.outbox.prune().await {
                    Ok(n) if n > 0 => tracing::debug!(rows = n, "pruned old rows"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "cannot prune the outbox"),
                }
                // Rows the CLI requeued (another process) count toward max_pending from here.
                if let Err(e) = state.outbox.count_open().await {
                    tracing::error!(error = %e, "cannot count the undelivered rows");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::open_to_anyone;
    use crate::config::HttpAuth;

    #[test]
    fn only_a_non_loopback_listener_without_credentials_is_open_to_anyone() {
        let bearer = HttpAuth::Bearer("t".to_owned().into());
        for (addr, auth, open) in [
            ("127.0.0.1:9097", None, false),
            ("[::1]:9097", None, false),
            ("0.0.0.0:9097", None, true),
            ("[::]:9097", None, true),
            ("192.0.2.7:9097", None, true),
            ("0.0.0.0:9097", Some(&bearer), false),
        ] {
            assert_eq!(open_to_anyone(addr.parse().unwrap(), auth), open, "{addr}");
        }
    }
}
