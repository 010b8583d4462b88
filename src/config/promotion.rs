//! `kind = "promotion"` channels: the backup's promotion endpoint, and the guards that
//! decide when an alert may ask it (docs/promotion-protocol.md).

use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;

use super::raw::RawChannel;
use super::{values, Problems};
use crate::domain::promotion::{PROMOTE_PATH, STATUS_PATH};

#[derive(Debug, Clone)]
pub struct PromotionSettings {
    /// The endpoint's base URL; amrelay calls `{url}/v1/promote` and `{url}/v1/promotion`.
    /// A configured URL that ends in either path is taken as the base above it.
    pub url: Url,
    /// What is promoted, as the endpoint names it; incidents are per target.
    pub target: String,
    pub secret: SecretString,
    /// Where "promotion requested / succeeded / failed" messages go.
    pub outcome_channels: Vec<String>,
    /// The alert must have been firing this long (from its startsAt) before the first
    /// attempt; a resolve before then calls the promotion off.
    pub min_firing: Duration,
    pub quorum: Option<Quorum>,
    /// After a promotion, no new incident for the target for this long.
    pub cooldown: Duration,
    /// Ask the endpoint to verify the request only; nothing runs.
    pub dry_run: bool,
}

/// The alert must come from `count` distinct values of `label` within `within`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quorum {
    pub label: String,
    pub count: u32,
    pub within: Duration,
}

pub(super) const KEYS: &[&str] = &[
    "url",
    "target",
    "secret_file",
    "secret_env",
    "outcome_channels",
    "min_firing",
    "quorum",
    "cooldown",
    "dry_run",
];

/// The endpoint's base URL. One that names an endpoint path (`.../v1/promote`, copied
/// from the protocol's docs, or `.../v1/promotion`) means the base it is under: amrelay
/// adds the path itself, and would otherwise post to `/v1/promote/v1/promote`.
fn endpoint_base(mut url: Url) -> Url {
    let path = url.path().trim_end_matches('/').to_owned();
    for suffix in [PROMOTE_PATH, STATUS_PATH] {
        if let Some(base) = path.strip_suffix(suffix) {
            url.set_path(&format!("{base}/"));
            break;
        }
    }
    url
}

pub(super) fn settings(
    c: &RawChannel,
    key: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> Option<PromotionSettings> {
    let url = match c.url.as_deref() {
        Some(u) => p.url(&key("url"), u).map(endpoint_base),
        None => p.push(key("url"), "is required: the backup's promotion endpoint"),
    };
    let target = match c.target.as_deref() {
        Some(t) if values::valid_name(t) => Some(t.to_owned()),
        Some(t) => p.push(
            key("target"),
            format!("expected letters, digits, '-', '_' or '.', got {t:?}"),
        ),
        None => p.push(key("target"), "is required (the endpoint's target name)"),
    };
    let secret = super::channel::signing_secret(c, key, p);
    if c.secret_file.is_none() && c.secret_env.is_none() {
        p.push::<()>(
            key("secret_file"),
            "a promotion channel needs secret_file or secret_env: the endpoint refuses unsigned requests",
        );
    }
    if c.fallback.is_some() {
        p.push::<()>(
            key("fallback"),
            "a promotion has no fallback; name the channels to tell in outcome_channels",
        );
    }
    let quorum = c.quorum.as_ref().and_then(|q| {
        let label = match q.label.as_deref() {
            Some(l) if !l.is_empty() => Some(l.to_owned()),
            _ => p.push(key("quorum.label"), "is required (e.g. \"monitor\")"),
        };
        let count = match q.count {
            Some(0) | Some(1) => p.push(
                key("quorum.count"),
                "must be at least 2 (without a quorum, leave quorum out)",
            ),
            Some(n) => Some(n),
            None => p.push(key("quorum.count"), "is required"),
        };
        let within = p.duration(&key("quorum.within"), q.within.as_deref(), "1m");
        Some(Quorum {
            label: label?,
            count: count?,
            within,
        })
    });
    let settings = PromotionSettings {
        url: url?,
        target: target?,
        secret: secret?,
        outcome_channels: c.outcome_channels.clone().unwrap_or_default(),
        min_firing: p.duration(&key("min_firing"), c.min_firing.as_deref(), "0s"),
        quorum,
        cooldown: p.duration(&key("cooldown"), c.cooldown.as_deref(), "30m"),
        dry_run: c.dry_run.unwrap_or(false),
    };
    Some(settings)
}
