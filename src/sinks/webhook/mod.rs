//! `kind = "webhook"`: the notification as JSON in the documented `amrelay.v1` schema,
//! signed the Standard Webhooks way, afresh on every attempt.
//! <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>

mod payload;

use reqwest::Url;
use secrecy::SecretString;

use super::Delivery;
use crate::domain::signature::{sign, SigningKey};
use crate::net::{http, Outcome};

pub(crate) struct WebhookSink {
    client: reqwest::Client,
    url: Url,
    key: Option<SigningKey>,
}

impl WebhookSink {
    pub(crate) fn new(client: reqwest::Client, url: Url, secret: Option<SecretString>) -> Self {
        WebhookSink {
            client,
            url,
            key: secret.map(|s| SigningKey::from_secret(&s)),
        }
    }

    pub(crate) async fn send(&self, d: &Delivery<'_>) -> Outcome {
        let body = match payload::body(d) {
            Ok(b) => b,
            Err(e) => return Outcome::permanent("encode", e.to_string()),
        };
        // The same id on every attempt, so the receiver can drop a repeat.
        let id = format!("amrelay-{}", d.id);
        let timestamp = chrono::Utc::now().timestamp();
        let mut req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = &self.key {
            req = req.header("webhook-signature", sign(key, &id, timestamp, &body));
        }
        match req.body(body).send().await {
            Err(e) => http::classify_error(&e),
            Ok(r) => {
                let status = r.status();
                if status.is_success() {
                    // Read what is left so the connection goes back to the pool; no copy
                    // of the headers or text is needed to say "delivered".
                    let _ = r.bytes().await;
                    return Outcome::Delivered;
                }
                let headers = r.headers().clone();
                let text = r.text().await.unwrap_or_default();
                http::classify_status(status, &headers, &text)
            }
        }
    }
}
