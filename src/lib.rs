//! amrelay: Alertmanager in, notifications out, nothing lost on the way.
//!
//! ```text
//! ingest (HTTP, auth) -> pipeline (route, hold) -> outbox (dedup by key; SQLite or PostgreSQL)
//!     -> deliver (channel ownership, rate limit, retry, circuit, fallback)
//!     -> sinks (slack, email APIs and SMTP, webhook, promotion, console)
//! ```
//!
//! The modules, from the ground up; a module imports only those above it in this list
//! (`tests/it/layers.rs` checks it; admin may use ingest, promotion and drill, and
//! drill may use promotion):
//!
//! - [`domain`]: alerts, notifications, label matchers, the dedup key, the Alertmanager
//!   wire format, the promotion protocol's words, signatures, times. Values only.
//! - [`config`]: the TOML file and env overrides, parsed once into [`config::Settings`].
//! - [`telemetry`]: logs and metrics.
//! - [`net`]: what an attempt at the far side came to, the HTTP status table, the client.
//! - [`outbox`]: the durable store behind one interface: SQLite (one process, group
//!   commit) or PostgreSQL (shared by several instances).
//! - [`pipeline`]: routing and holds (a promotion's min_firing), pure decisions.
//! - [`sinks`]: how each kind of channel sends and classifies answers; the promotion
//!   sink signs one request and reads the answer, and hands the rest to failover's caller.
//! - [`deliver`]: one worker per channel, while this instance owns the channel: rate
//!   limit, retry schedule, circuit, fallback.
//! - [`heartbeat`]: the dead-man's switch: an always-firing alert (`Watchdog`) that
//!   stops arriving is told on its channels, once per silence (beside `deliver`).
//! - [`ingest`]: `POST /webhook/alertmanager`, auth, `/metrics`, `/readyz`.
//! - [`admin`]: the admin API behind `amrelay promote`, `amrelay status` and `amrelay drill`.
//! - [`promotion`]: failover: the caller (incidents, epochs, guards, outcome messages)
//!   and the backup's endpoint that runs the promotion command at most once per incident.
//! - [`drill`]: failover drills: a marked alert through the whole chain, each step
//!   verified from what the caller noted in the store; surprise drills on a schedule.
//! - [`collector`]: the metric collection sidecar, a second pipeline in the binary:
//!   scrape (targets) -> buffer (SQLite, per endpoint) -> remote write (Prometheus).
//! - [`app`]: builds every part from the settings and runs until shutdown.
//! - [`cli`]: the commands `main.rs` dispatches to.

#![warn(unreachable_pub)]

pub(crate) mod admin;
pub mod app;
pub mod cli;
pub mod collector;
pub mod config;
pub(crate) mod deliver;
pub(crate) mod domain;
pub(crate) mod drill;
pub(crate) mod heartbeat;
pub(crate) mod ingest;
pub(crate) mod net;
pub(crate) mod outbox;
pub(crate) mod pipeline;
pub(crate) mod promotion;
pub(crate) mod sinks;
pub(crate) mod telemetry;
