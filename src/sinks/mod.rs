//! Where deliveries go. A sink builds and sends one request and says what came of it;
//! it never sleeps or retries: the worker (`deliver`) alone decides when to try again.

pub mod console;
pub mod email;
pub mod http;
pub mod links;
pub mod promotion;
pub mod send_test;
pub mod slack;
pub mod webhook;

use std::time::Duration;

use crate::config::{ChannelKind, ChannelSettings};
use crate::domain::Notification;

/// One attempt's context.
pub struct Delivery<'a> {
    pub id: i64,
    pub attempt: u32,
    /// When the webhook was received (ms since the epoch); with `id`, unique for ever.
    pub created_at: i64,
    pub notification: &'a Notification,
    /// A message from `amrelay send-test`, not from Alertmanager.
    pub test: bool,
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

pub enum Sink {
    Console(console::ConsoleSink),
    Slack(slack::SlackSink),
    Webhook(webhook::WebhookSink),
    Email(email::EmailSink),
    Promotion(promotion::PromotionSink),
}

/// What sinks share: the HTTP client, and for promotion channels their memory and the
/// outbox (absent for `send-test`).
#[derive(Clone)]
pub struct SinkContext {
    pub client: reqwest::Client,
    pub promotion: Option<promotion::PromotionEnv>,
}

impl Sink {
    pub fn build(channel: &ChannelSettings, ctx: &SinkContext) -> Sink {
        let client = &ctx.client;
        match &channel.kind {
            ChannelKind::Console => Sink::Console(console::ConsoleSink),
            ChannelKind::Slack {
                api_url,
                token,
                channel: target,
            } => Sink::Slack(slack::SlackSink::new(
                client.clone(),
                api_url.clone(),
                token.clone(),
                target.clone(),
            )),
            ChannelKind::Webhook { url, secret } => Sink::Webhook(webhook::WebhookSink::new(
                client.clone(),
                url.clone(),
                secret.clone(),
            )),
            ChannelKind::Email(e) => Sink::Email(email::EmailSink::new(e, client, &channel.policy)),
            ChannelKind::Promotion(p) => Sink::Promotion(promotion::PromotionSink::new(
                p,
                channel.policy.max_age,
                client.clone(),
                ctx.promotion.clone(),
            )),
        }
    }

    pub async fn send(&self, d: &Delivery<'_>) -> Outcome {
        match self {
            Sink::Console(s) => s.send(d),
            Sink::Slack(s) => s.send(d).await,
            Sink::Webhook(s) => s.send(d).await,
            Sink::Email(s) => s.send(d).await,
            Sink::Promotion(s) => s.send(d).await,
        }
    }
}

/// The HTTP client every sink shares: rustls, no proxy surprises, pooled connections.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("amrelay/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        // A redirect would turn the POST into a GET whose 2xx proves nothing: a 3xx is
        // answered as the permanent failure it is.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
