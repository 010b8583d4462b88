//! `kind = "email"`: one email per notification, rendered from templates, sent through a
//! provider's HTTP API (SendGrid, Postmark, Mailgun) or SMTP, the fallback of choice.
//! Each provider's module builds its request and classifies the answer with a table
//! written from that provider's documentation; the worker does the rest.

mod mailgun;
mod message;
mod postmark;
mod sendgrid;
mod smtp;

pub(crate) use message::{Rendered, Templates};

use lettre::message::Mailbox;

use super::Delivery;
use crate::config::{DeliveryPolicy, EmailProvider, EmailSettings};
use crate::net::{http, Outcome};

pub(crate) struct EmailSink {
    envelope: Envelope,
    templates: Templates,
    transport: Transport,
}

/// Who sends and who receives: from the channel's config, never from an alert.
pub(crate) struct Envelope {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
}

enum Transport {
    SendGrid(sendgrid::SendGrid),
    Postmark(postmark::Postmark),
    Mailgun(mailgun::Mailgun),
    Smtp(smtp::Smtp),
}

/// One email about to go out.
pub(crate) struct Email<'a> {
    pub envelope: &'a Envelope,
    pub content: Rendered,
    /// The outbox's delivery id, the same on every attempt.
    pub delivery_id: i64,
    pub created_at: i64,
}

impl EmailSink {
    /// Err names the template that does not compile (config loading already checked them).
    pub(crate) fn new(
        s: &EmailSettings,
        client: &reqwest::Client,
        policy: &DeliveryPolicy,
    ) -> Result<Self, String> {
        let t = &s.templates;
        let templates = Templates::compile(t.subject.clone(), t.text.clone(), t.html.clone())
            .map_err(|(which, e)| format!("{which}: {e}"))?;
        let client = client.clone();
        let transport = match &s.provider {
            EmailProvider::SendGrid { api_url, api_key } => {
                Transport::SendGrid(sendgrid::SendGrid::new(client, api_url, api_key.clone()))
            }
            EmailProvider::Postmark {
                api_url,
                server_token,
                message_stream,
            } => Transport::Postmark(postmark::Postmark::new(
                client,
                api_url,
                server_token.clone(),
                message_stream.clone(),
            )),
            EmailProvider::Mailgun {
                api_url,
                domain,
                api_key,
            } => Transport::Mailgun(mailgun::Mailgun::new(
                client,
                api_url,
                domain,
                api_key.clone(),
            )),
            EmailProvider::Smtp(smtp) => Transport::Smtp(smtp::Smtp::new(smtp, policy)),
        };
        Ok(EmailSink {
            envelope: Envelope {
                from: s.from.clone(),
                to: s.to.clone(),
                cc: s.cc.clone(),
            },
            templates,
            transport,
        })
    }

    pub(crate) async fn send(&self, d: &Delivery<'_>) -> Outcome {
        let content = match self.templates.render(d.notification, d.test) {
            Ok(c) => c,
            Err(e) => return Outcome::permanent("template", e),
        };
        let email = Email {
            envelope: &self.envelope,
            content,
            delivery_id: d.id,
            created_at: d.created_at,
        };
        let (request, classify): (reqwest::RequestBuilder, Classify) = match &self.transport {
            Transport::Smtp(s) => return s.send(&email).await,
            Transport::SendGrid(p) => (p.request(&email), sendgrid::classify),
            Transport::Postmark(p) => (p.request(&email), postmark::classify),
            Transport::Mailgun(p) => (p.request(&email), mailgun::classify),
        };
        match request.send().await {
            Err(e) => http::classify_error(&e),
            Ok(r) => {
                let status = r.status();
                let headers = r.headers().clone();
                let body = r.text().await.unwrap_or_default();
                classify(status, &headers, &body)
            }
        }
    }
}

/// A provider's table: its documented answers to an outcome.
type Classify = fn(reqwest::StatusCode, &reqwest::header::HeaderMap, &str) -> Outcome;

/// The header every provider passes through, so a recipient's filter can drop a repeat
/// (an attempt whose outcome was unknown is sent again with the same id).
pub(crate) const DELIVERY_ID_HEADER: &str = "X-Amrelay-Delivery-Id";

/// `name@example.com`, without a display name.
fn address(m: &Mailbox) -> String {
    m.email.to_string()
}
