//! Settings: the TOML file plus `AMRELAY__SECTION__KEY` overrides, parsed once into typed
//! values. Every problem names its key; `check-config` runs exactly this code.

mod channel;
mod collector;
mod drill;
mod email;
mod heartbeat;
mod promotion;
mod promotion_endpoint;
mod raw;
mod source;
mod storage;
mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;

pub use drill::{DrillSettings, Window};
pub use email::{EmailProvider, EmailSettings, SmtpSettings, SmtpTls, TemplateSources};
pub use heartbeat::{HeartbeatSettings, EXTERNAL_URL};
pub use promotion::{PromotionSettings, Quorum};
pub use promotion_endpoint::PromotionEndpointSettings;
pub use storage::{PostgresSettings, PostgresTls, StorageBackend, StorageSettings};
pub use values::Rate;

pub use collector::{CollectorSettings, RemoteWriteSettings, TargetSettings};
pub use source::{Origin, Problem};

use crate::domain::Matcher;
use raw::{RawChannel, RawConfig, RawRoute};

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub dedup_window: Duration,
    pub log: LogSettings,
    /// The authenticated admin API (`amrelay promote`, `amrelay status`), when set.
    pub admin: Option<AdminSettings>,
    pub channels: Vec<ChannelSettings>,
    pub routes: Vec<RouteSettings>,
    /// `[promotion_endpoint]`: this amrelay is a backup that can be promoted.
    pub promotion_endpoint: Option<PromotionEndpointSettings>,
    pub collector: CollectorSettings,
    /// `[[drills]]`: surprise failover drills.
    pub drills: Vec<DrillSettings>,
    /// `[[heartbeats]]`: alerts whose silence means the alerting pipeline is down.
    pub heartbeats: Vec<HeartbeatSettings>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// This amrelay's name in logs, metrics, `status` and the claims it holds in a
    /// shared store; the host name unless set.
    pub instance: String,
    pub auth: Option<HttpAuth>,
    pub max_body: usize,
    pub shutdown_grace: Duration,
    /// Connections open at once on `listen`; a new one past this is closed at once.
    pub max_connections: usize,
    /// A request's headers must arrive within this; also how long a keep-alive
    /// connection may sit idle.
    pub header_timeout: Duration,
    /// A request's body must arrive within this (408 after).
    pub body_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub token: SecretString,
}

/// HTTP authentication as Alertmanager's and Prometheus's `http_config` send it: what
/// amrelay demands of webhooks, and what it sends with remote write.
#[derive(Debug, Clone)]
pub enum HttpAuth {
    Bearer(SecretString),
    Basic {
        username: String,
        password: SecretString,
    },
}

/// `bearer_token_file` / `bearer_token_env`, or `basic_auth`, at most one; `key` names a
/// key of this section in messages.
fn http_auth(
    p: &mut Problems,
    key: &dyn Fn(&str) -> String,
    bearer_file: Option<&str>,
    bearer_env: Option<&str>,
    basic: Option<&raw::RawBasicAuth>,
) -> Option<HttpAuth> {
    let bearer = p.secret(&key("bearer_token"), bearer_file, bearer_env);
    let basic = basic.and_then(|b| {
        let password = p.secret(
            &key("basic_auth.password"),
            b.password_file.as_deref(),
            b.password_env.as_deref(),
        );
        let username = b.username.clone().filter(|u| !u.is_empty());
        if username.is_none() {
            p.push::<()>(key("basic_auth.username"), "is required");
        }
        if b.password_file.is_none() && b.password_env.is_none() {
            p.push::<()>(
                key("basic_auth.password_file"),
                "set password_file or password_env",
            );
        }
        Some(HttpAuth::Basic {
            username: username?,
            password: password?,
        })
    });
    match (bearer, basic) {
        (Some(_), Some(_)) => p.push(
            key("basic_auth"),
            "set either a bearer token or basic_auth, not both",
        ),
        (Some(t), None) => Some(HttpAuth::Bearer(t)),
        (None, b) => b,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone)]
pub struct ChannelSettings {
    pub name: String,
    pub kind: ChannelKind,
    pub rate_limit: Option<Rate>,
    pub fallback: Option<String>,
    pub policy: DeliveryPolicy,
}

/// How the worker treats one channel's deliveries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliveryPolicy {
    pub concurrency: u32,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub max_age: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub max_retry_after: Duration,
    /// Set when the channel has a fallback: after this many failed attempts in a row,
    /// deliveries go straight to the fallback until a probe succeeds.
    pub circuit: Option<CircuitPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitPolicy {
    pub failures: u32,
    /// How long the circuit stays open before one delivery probes the channel.
    pub open_for: Duration,
}

#[derive(Debug, Clone)]
pub enum ChannelKind {
    Console,
    Slack {
        api_url: Url,
        token: SecretString,
        channel: String,
    },
    Webhook {
        url: Url,
        secret: Option<SecretString>,
    },
    Email(Box<EmailSettings>),
    Promotion(Box<PromotionSettings>),
}

impl ChannelKind {
    /// For logs and the `amrelay_channel_info` metric: `slack`, `email/sendgrid`, ...
    pub fn describe(&self) -> (&'static str, &'static str) {
        match self {
            ChannelKind::Console => ("console", ""),
            ChannelKind::Slack { .. } => ("slack", ""),
            ChannelKind::Webhook { .. } => ("webhook", ""),
            ChannelKind::Email(e) => ("email", e.provider.name()),
            ChannelKind::Promotion(_) => ("promotion", ""),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub matchers: Vec<Matcher>,
    pub channels: Vec<String>,
    pub continue_: bool,
}

/// Every problem found, each naming its key and where it is (a line of the file, or
/// the environment variable that set it). Displayed one line per problem.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

pub const ENV_PREFIX: &str = "AMRELAY";

impl Settings {
    /// The promotion channel of `target`: its name and settings; else why not, naming
    /// the targets there are.
    pub fn promotion_channel_of(&self, target: &str) -> Result<(&str, &PromotionSettings), String> {
        if let Some(found) = self.promotion_channels().find(|(_, p)| p.target == target) {
            return Ok(found);
        }
        let targets: Vec<&str> = self
            .promotion_channels()
            .map(|(_, p)| p.target.as_str())
            .collect();
        Err(format!(
            "no promotion channel has target {target:?} (targets: {})",
            if targets.is_empty() {
                "none".to_owned()
            } else {
                targets.join(", ")
            }
        ))
    }

    /// The `promotion` channels: each one's name and settings, in file order.
    pub fn promotion_channels(&self) -> impl Iterator<Item = (&str, &PromotionSettings)> {
        self.channels.iter().filter_map(|c| match &c.kind {
            ChannelKind::Promotion(p) => Some((c.name.as_str(), &**p)),
            _ => None,
        })
    }

    /// Loads the file (or only the built-in defaults) with environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigErrors> {
        Settings::load_from(path, std::env::vars(), false)
    }

    /// As [`Settings::load`], for `amrelay collect`: a file with neither channels nor
    /// routes is valid, since collecting alone delivers no notifications.
    pub fn load_for_collect(path: Option<&Path>) -> Result<Settings, ConfigErrors> {
        Settings::load_from(path, std::env::vars(), true)
    }

    /// The file and `env` (the process's environment, or a test's), every problem found
    /// in one pass and located.
    fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        for_collect: bool,
    ) -> Result<Settings, ConfigErrors> {
        let text = match path {
            Some(p) => source::read(p).map_err(ConfigErrors)?,
            None => String::new(),
        };
        let mut src = source::Source::open(path, &text, env).map_err(ConfigErrors)?;
        let raw = src.raw();
        let builtin_defaults = if for_collect {
            raw.channels.is_empty() && raw.routes.is_empty() && raw.unread_channels.is_empty()
        } else {
            path.is_none()
        };
        let built = Settings::from_raw(raw, builtin_defaults);
        let mut problems = std::mem::take(&mut src.problems);
        let settings = match built {
            Ok(s) => Some(s),
            Err(texts) => {
                problems.extend(texts.into_iter().map(|t| src.locate(t)));
                None
            }
        };
        match settings {
            Some(s) if problems.is_empty() => Ok(s),
            _ => {
                // In the file's order; then those without a line; the environment's
                // last, by variable.
                fn rank(p: &Problem) -> (u8, usize, &str) {
                    match &p.origin {
                        Origin::File { line: Some(l), .. } => (0, *l, ""),
                        Origin::File { line: None, .. } | Origin::Defaults => (1, 0, ""),
                        Origin::Env(var) => (2, 0, var.as_str()),
                    }
                }
                problems.sort_by(|a, b| rank(a).cmp(&rank(b)));
                Err(ConfigErrors(problems))
            }
        }
    }

    /// The typed settings, or every problem as `key: what is wrong`.
    fn from_raw(raw: RawConfig, builtin_defaults: bool) -> Result<Settings, Vec<String>> {
        let mut p = Problems::default();
        let server = server(&raw, &mut p);
        let storage = storage::storage(&raw.storage, &mut p);
        let dedup_window = p.duration("dedup.window", raw.dedup.window.as_deref(), "10m");
        let log = LogSettings {
            format: match raw.log.format.as_deref() {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => p.push(
                    "log.format",
                    format!("expected \"text\" or \"json\", got {other:?}"),
                ),
            },
            level: match raw.log.level.clone().unwrap_or_else(|| "info".into()) {
                l if tracing_subscriber::EnvFilter::try_new(&l).is_ok() => l,
                l => p.push(
                    "log.level",
                    format!("expected a level like \"info\" or a filter like \"amrelay=debug,info\", got {l:?}"),
                ),
            },
        };

        let admin = raw.admin.as_ref().and_then(|a| {
            let listen_str = a.listen.as_deref().unwrap_or("127.0.0.1:9099");
            let listen = listen_str.parse().map_err(|_| {
                p.push::<()>(
                    "admin.listen",
                    format!("expected an address like \"127.0.0.1:9099\", got {listen_str:?}"),
                )
            });
            if a.token_file.is_none() && a.token_env.is_none() {
                p.push::<()>(
                    "admin.token_file",
                    "the admin API needs token_file or token_env: it can trigger a promotion",
                );
            }
            let token = p.secret(
                "admin.token",
                a.token_file.as_deref(),
                a.token_env.as_deref(),
            );
            Some(AdminSettings {
                listen: listen.ok()?,
                token: token?,
            })
        });
        // A backup may run amrelay only as the promotion endpoint: a file with
        // [promotion_endpoint] and neither channels nor routes gets the built-in console
        // channel, as no file at all does.
        let only_endpoint = raw.promotion_endpoint.is_some();
        let (raw_channels, raw_routes) = if (builtin_defaults || only_endpoint)
            && raw.channels.is_empty()
            && raw.routes.is_empty()
        {
            (default_channels(), default_routes())
        } else {
            (raw.channels, raw.routes)
        };
        if raw_channels.is_empty() && raw.unread_channels.is_empty() {
            p.push::<()>("channels", "at least one channel is required");
        }
        let channels: Vec<ChannelSettings> = raw_channels
            .iter()
            .enumerate()
            .filter_map(|(i, c)| channel::channel(i, c, &mut p))
            .collect();
        // Routes and fallbacks may name a channel that has problems of its own: those
        // problems are reported once, at the channel.
        let names: Vec<&str> = raw_channels
            .iter()
            .filter_map(|c| c.name.as_deref())
            .chain(raw.unread_channels.iter().flatten().map(String::as_str))
            .collect();
        channel::check_channel_graph(&channels, &names, &mut p);
        let routes = routes(&raw_routes, &names, raw.unread_routes, &mut p);
        let promotion_endpoint = raw
            .promotion_endpoint
            .as_ref()
            .and_then(|e| promotion_endpoint::endpoint(e, server.listen, &mut p));
        let collector = collector::collector(&raw.collector, &mut p);
        let drills = drill::drills(&raw.drills, &mut p);
        let heartbeats = heartbeat::heartbeats(&raw.heartbeats, &channels, &names, &mut p);

        let settings = Settings {
            server,
            storage,
            dedup_window,
            log,
            admin,
            channels,
            routes,
            promotion_endpoint,
            collector,
            drills,
            heartbeats,
        };
        drill::check_targets(&settings, &mut p);
        p.finish(settings)
    }

    pub fn channel(&self, name: &str) -> Option<&ChannelSettings> {
        self.channels.iter().find(|c| c.name == name)
    }
}

fn server(raw: &RawConfig, p: &mut Problems) -> ServerSettings {
    let s = &raw.server;
    let listen_str = s.listen.as_deref().unwrap_or("127.0.0.1:9097");
    let listen = listen_str.parse().unwrap_or_else(|_| {
        p.push::<()>(
            "server.listen",
            format!("expected an address like \"127.0.0.1:9097\", got {listen_str:?}"),
        );
        SocketAddr::from(([127, 0, 0, 1], 9097))
    });
    let auth = http_auth(
        p,
        &|k| format!("server.{k}"),
        s.bearer_token_file.as_deref(),
        s.bearer_token_env.as_deref(),
        s.basic_auth.as_ref(),
    );
    let instance = match s.instance.as_deref() {
        None => values::hostname(),
        Some(i) if values::instance_name(i) => i.to_owned(),
        Some(i) => p.push(
            "server.instance",
            format!("expected 1-64 letters, digits, '.', '-' or '_', got {i:?}"),
        ),
    };
    ServerSettings {
        listen,
        instance,
        auth,
        max_body: p.size("server.max_body", s.max_body.as_deref(), "4MiB"),
        shutdown_grace: p.duration("server.shutdown_grace", s.shutdown_grace.as_deref(), "10s"),
        max_connections: match s.max_connections {
            Some(0) => p.push("server.max_connections", "must be above zero"),
            Some(n) => n,
            None => 4096,
        },
        header_timeout: p.duration("server.header_timeout", s.header_timeout.as_deref(), "10s"),
        body_timeout: p.duration("server.body_timeout", s.body_timeout.as_deref(), "10s"),
    }
}

/// `unread`: a route could not be read (and was reported), so which is last is unknown.
fn routes(raw: &[RawRoute], names: &[&str], unread: bool, p: &mut Problems) -> Vec<RouteSettings> {
    if raw.is_empty() && !unread {
        p.push::<()>(
            "routes",
            "at least one route is required; the last one, without matchers, is the catch-all",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let mut matchers = Vec::new();
        for (j, m) in r.matchers.iter().enumerate() {
            match Matcher::parse(m) {
                Ok(m) => matchers.push(m),
                Err(e) => p.push(format!("routes[{i}].matchers[{j}]"), e.to_string()),
            }
        }
        if r.channels.is_empty() {
            p.push::<()>(
                format!("routes[{i}].channels"),
                "must name at least one channel",
            );
        }
        for (j, c) in r.channels.iter().enumerate() {
            if !names.contains(&c.as_str()) {
                p.push::<()>(
                    format!("routes[{i}].channels[{j}]"),
                    format!("no channel is named {c:?}"),
                );
            }
        }
        out.push(RouteSettings {
            matchers,
            channels: r.channels.clone(),
            continue_: r.continue_,
        });
    }
    if !unread && raw.last().is_some_and(|r| !r.matchers.is_empty()) {
        p.push::<()>(
            format!("routes[{}].matchers", raw.len() - 1),
            "the last route must be a catch-all without matchers, so that no notification goes unrouted",
        );
    }
    out
}

fn default_channels() -> Vec<RawChannel> {
    vec![RawChannel {
        name: Some("console".into()),
        kind: Some("console".into()),
        ..RawChannel::default()
    }]
}

fn default_routes() -> Vec<RawRoute> {
    vec![RawRoute {
        channels: vec!["console".into()],
        ..RawRoute::default()
    }]
}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    /// Records a problem; returns a default so callers can go on and find the next one.
    fn push<T: Default>(&mut self, key: impl fmt::Display, msg: impl fmt::Display) -> T {
        self.0.push(format!("{key}: {msg}"));
        T::default()
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: &str) -> Duration {
        values::duration(value.unwrap_or(default)).unwrap_or_else(|e| self.push(key, e))
    }

    fn size(&mut self, key: &str, value: Option<&str>, default: &str) -> usize {
        values::byte_size(value.unwrap_or(default)).unwrap_or_else(|e| self.push(key, e))
    }

    fn url(&mut self, key: &str, value: &str) -> Option<Url> {
        match Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            _ => self.push(key, format!("expected an http(s) URL, got {value:?}")),
        }
    }

    fn secret(
        &mut self,
        base: &str,
        file: Option<&str>,
        env: Option<&str>,
    ) -> Option<SecretString> {
        values::secret(base, file, env).unwrap_or_else(|(key, msg)| self.push(key, msg))
    }

    fn finish(self, settings: Settings) -> Result<Settings, Vec<String>> {
        if self.0.is_empty() {
            Ok(settings)
        } else {
            Err(self.0)
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
