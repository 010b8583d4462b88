//! Talking to the far side, for sinks and the collector alike: what one attempt came to
//! ([`Outcome`]), the status table every HTTP caller shares ([`http`]), and the one HTTP
//! client they all use.

pub(crate) mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Binds one of amrelay's listeners; an error names the config `key` to change (and the
/// variable for it, for the sections an environment variable can set).
pub(crate) async fn listen(key: &str, addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!(bind_error(key, addr, &e)))
}

fn bind_error(key: &str, addr: SocketAddr, e: &std::io::Error) -> String {
    let var = format!("AMRELAY__{}", key.replace('.', "__").to_uppercase());
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "{key}: {addr} is in use by another process; set {key} to a free address (in the file, or with {var})"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "{key}: not allowed to listen on {addr} (a port below 1024 needs privileges); set {key} to another address"
        ),
        _ => format!("{key}: cannot listen on {addr}: {e}"),
    }
}

/// What one attempt came to, as the vendor's documented contract says.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Worth trying again; `retry_after` is the far side's own wish, when it said one.
    Retryable {
        reason: String,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// No retry can fix it (bad token, unknown channel): fallback or dead letter now.
    Permanent {
        reason: String,
        detail: String,
    },
}

impl Outcome {
    pub fn retryable(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Outcome::Retryable {
            reason: reason.into(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Outcome::Permanent {
            reason: reason.into(),
            detail: detail.into(),
        }
    }

    /// The metric label for this outcome.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retryable { .. } => "retryable",
            Outcome::Permanent { .. } => "permanent",
        }
    }
}

/// The HTTP client every sink and the collector share: rustls, pooled connections, no
/// redirects. Err only when the TLS backend cannot start: then start-up stops, since a
/// default client would follow redirects and have no timeouts.
///
/// The only way to make a reqwest client here: with no process-wide rustls provider,
/// `reqwest::Client::new()` panics (clippy.toml forbids it).
pub(crate) fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls())
        .user_agent(concat!("amrelay/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        // A redirect would turn the POST into a GET whose 2xx proves nothing: a 3xx is
        // answered as the permanent failure it is.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// rustls with ring and the webpki roots, as the SMTP and PostgreSQL clients have: one
/// crypto provider in the binary, and no process-wide state.
fn tls() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    // Fails only for a provider with no cipher suite for TLS 1.2 or 1.3: not ring's.
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // What reqwest sets for a config of its own making: HTTP/2 when the server offers it.
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tls
}

#[cfg(test)]
mod tests {
    /// reqwest takes the rustls config only if it names the same rustls version, and never
    /// looks for a process-wide provider then: none is installed in a test.
    #[test]
    fn client_builds_with_its_own_rustls_config() {
        super::client().unwrap();
    }
}
