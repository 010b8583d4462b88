//! amrelay: Alertmanager in, notifications out, nothing lost on the way.
//!
//! ```text
//! ingest (HTTP, auth, wire format) -> pipeline (dedup, route, hold) -> outbox (SQLite)
//!     -> deliver (rate limit, retry, circuit, fallback)
//!     -> sinks (slack, email APIs and SMTP, webhook, promotion, console)
//! ```
//!
//! - [`config`]: the TOML file and env overrides, parsed once into [`config::Settings`].
//! - [`domain`]: alerts, notifications, label matchers, the Alertmanager wire format and
//!   the promotion protocol's words.
//! - [`ingest`]: `POST /webhook/alertmanager`, auth, the Alertmanager payload.
//! - [`pipeline`]: dedup keys, routing and holds (a promotion's min_firing), pure decisions.
//! - [`outbox`]: the durable store, with group commit.
//! - [`deliver`]: one worker per channel: rate limit, retry schedule, fallback.
//! - [`sinks`]: how each kind of channel sends and classifies answers; the promotion
//!   sink signs one request and reads the answer, and hands the rest to failover's caller.
//! - [`promotion`]: failover: the caller (incidents, epochs, guards, outcome messages)
//!   and the backup's endpoint that runs the promotion command at most once per incident.
//! - [`admin`]: the admin API behind `amrelay promote` and `amrelay status`.
//! - [`telemetry`]: logs and metrics.
//! - [`app`]: builds every part from the settings and runs until shutdown.
//!
//! A second pipeline, the metric collection sidecar, shares the binary:
//!
//! ```text
//! collector: scrape (targets) -> buffer (SQLite, per endpoint) -> remote write (Prometheus)
//! ```
//!
//! - [`collector`]: scrape targets, buffer on disk, remote-write without gaps.

pub mod admin;
pub mod app;
pub mod collector;
pub mod config;
pub mod deliver;
pub mod domain;
pub mod ingest;
pub mod net;
pub mod outbox;
pub mod pipeline;
pub mod promotion;
pub mod sinks;
pub mod telemetry;
