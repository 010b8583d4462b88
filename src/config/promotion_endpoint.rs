//! `[promotion_endpoint]`: the backup's side of failover (`docs/promotion-protocol.md`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

use super::raw::RawPromotionEndpoint;
use super::{values, Problems};
use crate::domain::signature::SigningKey;

#[derive(Debug, Clone)]
pub struct PromotionEndpointSettings {
    /// Its own listener, apart from the webhook port.
    pub listen: SocketAddr,
    /// The name of what this endpoint promotes; requests must name it.
    pub target: String,
    pub secret: SecretString,
    /// argv; run without a shell.
    pub command: Vec<String>,
    /// The command is killed after this long, and the run counts as failed.
    pub timeout: Duration,
    pub max_clock_skew: Duration,
    /// The `Retry-After` of 202 and 503 answers.
    pub retry_after: Duration,
}

pub(super) fn endpoint(
    raw: &RawPromotionEndpoint,
    server_listen: SocketAddr,
    p: &mut Problems,
) -> Option<PromotionEndpointSettings> {
    let key = |k: &str| format!("promotion_endpoint.{k}");
    let listen = match raw.listen.as_deref() {
        None => p.push(
            key("listen"),
            "is required (an address like \"0.0.0.0:9098\")",
        ),
        Some(l) => match l.parse::<SocketAddr>() {
            Ok(a) if a == server_listen && a.port() != 0 => p.push(
                key("listen"),
                format!("{l:?} is server.listen already; the endpoint needs its own port"),
            ),
            Ok(a) => Some(a),
            Err(_) => p.push(
                key("listen"),
                format!("expected an address like \"0.0.0.0:9098\", got {l:?}"),
            ),
        },
    };
    let target = match raw.target.as_deref() {
        Some(t) if values::valid_name(t) => Some(t.to_owned()),
        Some(t) => p.push(
            key("target"),
            format!("expected letters, digits, '-', '_' or '.', got {t:?}"),
        ),
        None => p.push(
            key("target"),
            "is required (the name of what it promotes, e.g. \"primary\")",
        ),
    };
    let secret = p.secret(
        &key("secret"),
        raw.secret_file.as_deref(),
        raw.secret_env.as_deref(),
    );
    if raw.secret_file.is_none() && raw.secret_env.is_none() {
        p.push::<()>(
            key("secret_file"),
            "set secret_file or secret_env: every request is signed",
        );
    }
    if let Some(s) = &secret {
        if let Err(e) = SigningKey::parse(s) {
            p.push::<()>(key("secret_file"), e);
        }
    }
    let command = match raw.command.as_deref() {
        None | Some([]) => p.push(
            key("command"),
            "is required: the program and its arguments, e.g. [\"/usr/local/bin/promote\", \"--fence\"]",
        ),
        Some([first, ..]) if first.trim().is_empty() => {
            p.push(key("command[0]"), "must name the program to run")
        }
        Some(argv) => {
            // A path is checked now rather than in the middle of an incident.
            if argv[0].contains('/') && !Path::new(&argv[0]).is_file() {
                p.push::<()>(key("command[0]"), format!("{:?} is not a file", argv[0]));
            }
            Some(argv.to_vec())
        }
    };
    let timeout = p.duration(&key("timeout"), raw.timeout.as_deref(), "5m");
    let max_clock_skew = p.duration(&key("max_clock_skew"), raw.max_clock_skew.as_deref(), "5m");
    let retry_after = p.duration(&key("retry_after"), raw.retry_after.as_deref(), "5s");
    for (k, d) in [("timeout", timeout), ("max_clock_skew", max_clock_skew)] {
        if d.is_zero() {
            p.push::<()>(key(k), "must be above zero");
        }
    }
    Some(PromotionEndpointSettings {
        listen: listen?,
        target: target?,
        secret: secret?,
        command: command?,
        timeout,
        max_clock_skew,
        retry_after,
    })
}
