//! The config file as written: every key optional, unknown keys refused.

use serde::{Deserialize, Deserializer};

/// A number from the file, or the same number as text (an environment variable's value
/// is always text: `AMRELAY__STORAGE__POOL_SIZE=8`).
fn whole_number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + std::str::FromStr,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }
    let n = match NumberOrText::deserialize(d)? {
        NumberOrText::Number(n) => T::try_from(n).ok(),
        NumberOrText::Text(s) => s.trim().parse().ok(),
    };
    n.map(Some)
        .ok_or_else(|| serde::de::Error::custom("expected a whole number"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub server: RawServer,
    pub storage: RawStorage,
    pub dedup: RawDedup,
    pub log: RawLog,
    pub admin: Option<RawAdmin>,
    pub channels: Vec<RawChannel>,
    pub routes: Vec<RawRoute>,
    pub promotion_endpoint: Option<RawPromotionEndpoint>,
    pub collector: RawCollector,
    pub drills: Vec<RawDrill>,
    pub heartbeats: Vec<RawHeartbeat>,
    /// Channels that could not be read (a problem said why), by name when they have one.
    #[serde(skip)]
    pub unread_channels: Vec<Option<String>>,
    /// A route could not be read (a problem said why).
    #[serde(skip)]
    pub unread_routes: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub listen: Option<String>,
    pub instance: Option<String>,
    pub bearer_token_file: Option<String>,
    pub bearer_token_env: Option<String>,
    pub basic_auth: Option<RawBasicAuth>,
    pub max_body: Option<String>,
    pub shutdown_grace: Option<String>,
    pub max_connections: Option<usize>,
    pub header_timeout: Option<String>,
    pub body_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBasicAuth {
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStorage {
    pub path: Option<String>,
    pub backend: Option<String>,
    pub url_file: Option<String>,
    pub url_env: Option<String>,
    #[serde(deserialize_with = "whole_number")]
    pub pool_size: Option<usize>,
    pub sslmode: Option<String>,
    pub ca_file: Option<String>,
    pub lease: Option<String>,
    #[serde(deserialize_with = "whole_number")]
    pub max_pending: Option<u64>,
    pub retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDedup {
    pub window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
    pub listen: Option<String>,
    pub token_file: Option<String>,
    pub token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// One struct for every kind, so that a key that does not belong to the kind is named
/// in a clear message rather than a serde error about an enum variant.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawChannel {
    pub name: Option<String>,
    pub kind: Option<String>,
    // Delivery policy, any kind.
    pub rate_limit: Option<String>,
    pub fallback: Option<String>,
    pub concurrency: Option<u32>,
    pub timeout: Option<String>,
    pub max_attempts: Option<u32>,
    pub max_age: Option<String>,
    pub backoff_min: Option<String>,
    pub backoff_max: Option<String>,
    pub max_retry_after: Option<String>,
    /// Consecutive failures that open the circuit (only with a fallback).
    pub circuit_failures: Option<u32>,
    pub circuit_open_for: Option<String>,
    // slack
    pub api_url: Option<String>,
    pub token_file: Option<String>,
    pub token_env: Option<String>,
    pub channel: Option<String>,
    // webhook
    pub url: Option<String>,
    pub secret_file: Option<String>,
    pub secret_env: Option<String>,
    // email, any provider
    pub provider: Option<String>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    pub cc: Option<Vec<String>>,
    pub subject: Option<String>,
    pub text_template_file: Option<String>,
    pub html_template_file: Option<String>,
    // email through an HTTP API
    pub api_key_file: Option<String>,
    pub api_key_env: Option<String>,
    pub domain: Option<String>,
    pub message_stream: Option<String>,
    // email through SMTP
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    // promotion (url and secret_* as for webhook)
    pub target: Option<String>,
    pub outcome_channels: Option<Vec<String>>,
    pub min_firing: Option<String>,
    pub quorum: Option<RawQuorum>,
    pub cooldown: Option<String>,
    pub dry_run: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawQuorum {
    pub label: Option<String>,
    pub count: Option<u32>,
    pub within: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRoute {
    pub matchers: Vec<String>,
    pub channels: Vec<String>,
    #[serde(rename = "continue")]
    pub continue_: bool,
}

/// `[[heartbeats]]`: the dead-man's switch (see `config/heartbeat.rs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHeartbeat {
    pub name: Option<String>,
    pub matchers: Option<Vec<String>>,
    pub per_label: Option<String>,
    pub timeout: Option<String>,
    pub channels: Option<Vec<String>>,
}

/// `[promotion_endpoint]`: the backup's side of failover.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPromotionEndpoint {
    pub listen: Option<String>,
    pub target: Option<String>,
    pub secret_file: Option<String>,
    pub secret_env: Option<String>,
    pub command: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub max_clock_skew: Option<String>,
    pub retry_after: Option<String>,
}

/// `[collector]`: scrape targets and remote-write them (see `config/collector.rs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCollector {
    pub labels: std::collections::BTreeMap<String, String>,
    pub buffer_path: Option<String>,
    pub targets: Vec<RawTarget>,
    pub remote_write: Vec<RawRemoteWrite>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTarget {
    pub job: Option<String>,
    pub url: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub max_body: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRemoteWrite {
    pub name: Option<String>,
    pub url: Option<String>,
    pub timeout: Option<String>,
    pub bearer_token_file: Option<String>,
    pub bearer_token_env: Option<String>,
    pub basic_auth: Option<RawBasicAuth>,
    pub max_bytes: Option<String>,
    pub max_age: Option<String>,
    pub batch_size: Option<u64>,
    pub backoff_min: Option<String>,
    pub backoff_max: Option<String>,
    pub max_retry_after: Option<String>,
}

/// `[[drills]]`: surprise drills that `serve` fires (see `config/drill.rs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDrill {
    pub target: Option<String>,
    pub every: Option<String>,
    pub jitter: Option<String>,
    pub window: Option<String>,
    pub alertmanagers: Vec<String>,
    pub step_timeout: Option<String>,
}
