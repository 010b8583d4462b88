//! Talking to the far side, for sinks and the collector alike: what one attempt came to
//! ([`Outcome`]), the status table every HTTP caller shares ([`http`]), and the one HTTP
//! client they all use.

pub(crate) mod http;

use std::time::Duration;

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
pub(crate) fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("amrelay/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        // A redirect would turn the POST into a GET whose 2xx proves nothing: a 3xx is
        // answered as the permanent failure it is.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}
