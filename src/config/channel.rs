//! One `[[channels]]` entry: its kind's keys, its delivery policy, and the fallback chain
//! across channels.

use std::collections::HashSet;

use super::email::{self, EmailProvider};
use super::promotion;
use super::raw::RawChannel;
use super::{values, ChannelKind, ChannelSettings, CircuitPolicy, DeliveryPolicy, Problems, Rate};

pub(super) fn channel(i: usize, c: &RawChannel, p: &mut Problems) -> Option<ChannelSettings> {
    let key = |k: &str| format!("channels[{i}].{k}");
    let name = match c.name.as_deref() {
        Some(n) if values::valid_name(n) => n.to_owned(),
        Some(n) => {
            p.push::<()>(
                key("name"),
                format!("expected letters, digits, '-', '_' or '.', got {n:?}"),
            );
            return None;
        }
        None => {
            p.push::<()>(key("name"), "is required");
            return None;
        }
    };
    let kind_name = c.kind.as_deref().unwrap_or("");
    let provider = c.provider.as_deref().unwrap_or("");
    let allows = |field: &str| -> bool {
        match kind_name {
            "slack" => ["api_url", "token_file", "token_env", "channel"].contains(&field),
            "webhook" => ["url", "secret_file", "secret_env"].contains(&field),
            "email" => email::allows(provider, field),
            "promotion" => promotion::KEYS.contains(&field),
            _ => false,
        }
    };
    if !matches!(
        kind_name,
        "console" | "slack" | "webhook" | "email" | "promotion"
    ) {
        p.push::<()>(
            key("kind"),
            format!("expected \"console\", \"slack\", \"webhook\", \"email\" or \"promotion\", got {kind_name:?}"),
        );
        return None;
    }
    for (field, set) in [
        ("api_url", c.api_url.is_some()),
        ("token_file", c.token_file.is_some()),
        ("token_env", c.token_env.is_some()),
        ("channel", c.channel.is_some()),
        ("url", c.url.is_some()),
        ("secret_file", c.secret_file.is_some()),
        ("secret_env", c.secret_env.is_some()),
        ("provider", c.provider.is_some()),
        ("from", c.from.is_some()),
        ("to", c.to.is_some()),
        ("cc", c.cc.is_some()),
        ("subject", c.subject.is_some()),
        ("text_template_file", c.text_template_file.is_some()),
        ("html_template_file", c.html_template_file.is_some()),
        ("api_key_file", c.api_key_file.is_some()),
        ("api_key_env", c.api_key_env.is_some()),
        ("domain", c.domain.is_some()),
        ("message_stream", c.message_stream.is_some()),
        ("host", c.host.is_some()),
        ("port", c.port.is_some()),
        ("tls", c.tls.is_some()),
        ("username", c.username.is_some()),
        ("password_file", c.password_file.is_some()),
        ("password_env", c.password_env.is_some()),
        ("target", c.target.is_some()),
        ("outcome_channels", c.outcome_channels.is_some()),
        ("min_firing", c.min_firing.is_some()),
        ("quorum", c.quorum.is_some()),
        ("cooldown", c.cooldown.is_some()),
        ("dry_run", c.dry_run.is_some()),
    ] {
        if set && !allows(field) {
            let what = match (kind_name, provider) {
                ("email", p) if !p.is_empty() => format!("an email channel with provider {p:?}"),
                (k, _) => format!("a {k:?} channel"),
            };
            p.push::<()>(key(field), format!("is not a key of {what}"));
        }
    }
    let defaults = match kind_name {
        "slack" => (4, Some("1/s")),
        "webhook" => (32, None),
        "email" => (EmailProvider::default_concurrency(provider), None),
        "promotion" => (2, None),
        _ => (1, None),
    };
    // A promotion keeps trying far longer than a chat message, and not slowly.
    let promotion = kind_name == "promotion";
    let (max_age, backoff_max) = if promotion {
        ("1h", "30s")
    } else {
        ("6h", "5m")
    };
    let rate_limit = c.rate_limit.as_deref().or(defaults.1).and_then(|r| {
        Rate::parse(r)
            .map_err(|e| p.push::<()>(key("rate_limit"), e))
            .ok()
    });
    let policy = DeliveryPolicy {
        concurrency: match c.concurrency {
            Some(0) => p.push(key("concurrency"), "must be above zero"),
            Some(n) => n,
            None => defaults.0,
        },
        timeout: p.duration(&key("timeout"), c.timeout.as_deref(), "10s"),
        max_attempts: match c.max_attempts {
            Some(0) => p.push(key("max_attempts"), "must be above zero"),
            Some(n) => n,
            // Each poll of a running command is an attempt: only max_age bounds a promotion.
            None if promotion => u32::MAX,
            None => 30,
        },
        max_age: p.duration(&key("max_age"), c.max_age.as_deref(), max_age),
        backoff_min: p.duration(&key("backoff_min"), c.backoff_min.as_deref(), "1s"),
        backoff_max: p.duration(&key("backoff_max"), c.backoff_max.as_deref(), backoff_max),
        max_retry_after: p.duration(&key("max_retry_after"), c.max_retry_after.as_deref(), "5m"),
        circuit: circuit(c, &key, p),
    };
    if policy.backoff_min > policy.backoff_max {
        p.push::<()>(key("backoff_min"), "must not exceed backoff_max");
    }
    let kind = match kind_name {
        "slack" => {
            let api_url = p.url(
                &key("api_url"),
                c.api_url.as_deref().unwrap_or("https://slack.com/api"),
            );
            let token = p.secret(
                &key("token"),
                c.token_file.as_deref(),
                c.token_env.as_deref(),
            );
            if token.is_none() && c.token_file.is_none() && c.token_env.is_none() {
                p.push::<()>(
                    key("token_file"),
                    "a slack channel needs token_file or token_env",
                );
            }
            let channel = match c.channel.as_deref() {
                Some(ch) if !ch.trim().is_empty() => Some(ch.to_owned()),
                _ => p.push(
                    key("channel"),
                    "is required (a channel name like \"#ops\" or an ID)",
                ),
            };
            match (api_url, token, channel) {
                (Some(api_url), Some(token), Some(channel)) => ChannelKind::Slack {
                    api_url,
                    token,
                    channel,
                },
                _ => return None,
            }
        }
        "webhook" => {
            let url = match c.url.as_deref() {
                Some(u) => p.url(&key("url"), u),
                None => p.push(key("url"), "is required"),
            };
            let secret = signing_secret(c, &key, p);
            ChannelKind::Webhook { url: url?, secret }
        }
        "email" => ChannelKind::Email(Box::new(email::settings(c, &key, p)?)),
        "promotion" => ChannelKind::Promotion(Box::new(promotion::settings(c, &key, p)?)),
        _ => ChannelKind::Console,
    };
    Some(ChannelSettings {
        name,
        kind,
        rate_limit,
        fallback: c.fallback.clone(),
        policy,
    })
}

/// `secret_file`/`secret_env`, checked the way receivers will use it: a `whsec_` secret
/// must be base64 after the prefix.
pub(super) fn signing_secret(
    c: &RawChannel,
    key: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> Option<secrecy::SecretString> {
    let secret = p.secret(
        &key("secret"),
        c.secret_file.as_deref(),
        c.secret_env.as_deref(),
    )?;
    match crate::domain::signature::SigningKey::parse(&secret) {
        Ok(_) => Some(secret),
        Err(e) => {
            let k = if c.secret_file.is_some() {
                "secret_file"
            } else {
                "secret_env"
            };
            p.push(key(k), e)
        }
    }
}

/// The circuit breaker only has somewhere to send deliveries when there is a fallback.
fn circuit(
    c: &RawChannel,
    key: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> Option<CircuitPolicy> {
    let open_for = p.duration(
        &key("circuit_open_for"),
        c.circuit_open_for.as_deref(),
        "30s",
    );
    if c.fallback.is_none() {
        for (k, set) in [
            ("circuit_failures", c.circuit_failures.is_some()),
            ("circuit_open_for", c.circuit_open_for.is_some()),
        ] {
            if set {
                p.push::<()>(key(k), "has no effect without a fallback: an open circuit sends deliveries to the fallback");
            }
        }
        return None;
    }
    match c.circuit_failures.unwrap_or(5) {
        0 => None,
        failures => Some(CircuitPolicy { failures, open_for }),
    }
}

pub(super) fn check_channel_graph(channels: &[ChannelSettings], names: &[&str], p: &mut Problems) {
    let mut seen = HashSet::new();
    for (i, c) in channels.iter().enumerate() {
        if !seen.insert(c.name.as_str()) {
            p.push::<()>(
                format!("channels[{i}].name"),
                format!("{:?} is used by an earlier channel", c.name),
            );
        }
    }
    for (i, c) in channels.iter().enumerate() {
        let ChannelKind::Promotion(pr) = &c.kind else {
            continue;
        };
        for (j, name) in pr.outcome_channels.iter().enumerate() {
            let key = format!("channels[{i}].outcome_channels[{j}]");
            check_people_channel(channels, names, name, key, "outcomes go to people", p);
        }
    }
    for (i, c) in channels.iter().enumerate() {
        let Some(first) = &c.fallback else { continue };
        // Follow the chain: it must end at a channel without a fallback.
        let mut chain = vec![c.name.as_str()];
        let mut next = Some(first.as_str());
        while let Some(n) = next {
            let Some(target) = channels.iter().find(|x| x.name == n) else {
                if !names.contains(&n) {
                    p.push::<()>(
                        format!("channels[{i}].fallback"),
                        format!("no channel is named {n:?}"),
                    );
                }
                break;
            };
            if matches!(target.kind, ChannelKind::Promotion(_)) {
                p.push::<()>(
                    format!("channels[{i}].fallback"),
                    format!("{n:?} is a promotion channel: a failed delivery must never ask for a promotion"),
                );
                break;
            }
            if chain.contains(&n) {
                chain.push(n);
                p.push::<()>(
                    format!("channels[{i}].fallback"),
                    format!("fallbacks form a loop: {}", chain.join(" -> ")),
                );
                break;
            }
            chain.push(n);
            next = target.fallback.as_deref();
        }
    }
}

/// A channel named to tell people something (outcome messages, a missing heartbeat): it
/// must exist, or be one whose own problems were reported already, and must not be a
/// promotion channel (`why` says why not).
pub(super) fn check_people_channel(
    channels: &[ChannelSettings],
    names: &[&str],
    name: &str,
    key: String,
    why: &str,
    p: &mut Problems,
) {
    match channels.iter().find(|x| x.name == name) {
        Some(x) if matches!(x.kind, ChannelKind::Promotion(_)) => {
            p.push::<()>(key, format!("{name:?} is a promotion channel; {why}"))
        }
        Some(_) => {}
        None if names.contains(&name) => {}
        None => p.push::<()>(key, format!("no channel is named {name:?}")),
    }
}
