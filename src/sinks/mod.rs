//! Where deliveries go. A sink builds and sends one request and says what came of it;
//! it never sleeps or retries: the worker (`deliver`) alone decides when to try again.

pub(crate) mod console;
pub(crate) mod email;
pub(crate) mod links;
pub(crate) mod promotion;
pub(crate) mod send_test;
pub(crate) mod slack;
pub(crate) mod webhook;

use std::sync::Arc;

use crate::config::{ChannelKind, ChannelSettings};
use crate::domain::Notification;
use crate::net::Outcome;

/// One attempt's context.
pub(crate) struct Delivery<'a> {
    pub id: i64,
    pub attempt: u32,
    /// When the webhook was received (ms since the epoch); with `id`, unique for ever.
    pub created_at: i64,
    pub notification: &'a Notification,
    /// A message from `amrelay send-test`, not from Alertmanager.
    pub test: bool,
}

pub(crate) enum Sink {
    Console(console::ConsoleSink),
    Slack(slack::SlackSink),
    Webhook(webhook::WebhookSink),
    Email(email::EmailSink),
    Promotion(promotion::PromotionSink),
}

/// What sinks share: the HTTP client, and for promotion channels failover's caller
/// (absent for `send-test`).
#[derive(Clone)]
pub(crate) struct SinkContext {
    pub client: reqwest::Client,
    pub promotion: Option<Arc<dyn promotion::Caller>>,
}

impl Sink {
    /// Err says what in the channel's settings could not be built.
    pub(crate) fn build(channel: &ChannelSettings, ctx: &SinkContext) -> Result<Sink, String> {
        let client = &ctx.client;
        Ok(match &channel.kind {
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
            ChannelKind::Email(e) => {
                Sink::Email(email::EmailSink::new(e, client, &channel.policy)?)
            }
            ChannelKind::Promotion(p) => Sink::Promotion(promotion::PromotionSink::new(
                p,
                channel.policy.max_age,
                client.clone(),
                ctx.promotion.clone(),
            )),
        })
    }

    pub(crate) async fn send(&self, d: &Delivery<'_>) -> Outcome {
        match self {
            Sink::Console(s) => s.send(d),
            Sink::Slack(s) => s.send(d).await,
            Sink::Webhook(s) => s.send(d).await,
            Sink::Email(s) => s.send(d).await,
            Sink::Promotion(s) => s.send(d).await,
        }
    }
}
