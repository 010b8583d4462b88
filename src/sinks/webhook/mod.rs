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

/// `webhook-id`: the same on every attempt of one delivery, so a receiver can drop a
/// repeat, and unique across stores and instances: a store's row ids start again at 1 (a
/// new or rebuilt store), and two amrelays may feed one receiver. A UUIDv7 whose time is
/// when the webhook was received and whose other bits are a hash of the delivery's row
/// id and group key: stable, time-ordered, and never shared by two notifications.
fn message_id(d: &Delivery<'_>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"amrelay webhook-id\x1e");
    h.update(d.id.to_be_bytes());
    h.update(d.notification.group_key.as_bytes());
    let digest = h.finalize();
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    let millis = u64::try_from(d.created_at).unwrap_or_default();
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid();
    format!("amrelay-{uuid}")
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
        let id = message_id(d);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire;

    fn delivery<'a>(id: i64, created_at: i64, n: &'a crate::domain::Notification) -> Delivery<'a> {
        Delivery {
            id,
            attempt: 1,
            created_at,
            notification: n,
            test: false,
        }
    }

    #[test]
    fn the_id_is_stable_across_attempts_and_differs_between_stores_that_reuse_a_row_id() {
        let n = wire::fixture("primary-down-firing");
        let mut other = n.clone();
        other.group_key = "{}:{alertname=\"DiskFull\"}".into();
        let first = message_id(&delivery(1, 1_795_734_361_123, &n));
        let mut retry = delivery(1, 1_795_734_361_123, &n);
        retry.attempt = 5;
        assert_eq!(
            message_id(&retry),
            first,
            "every attempt carries the same id"
        );
        // A rebuilt store (or another amrelay) whose row 1 is another notification.
        assert_ne!(message_id(&delivery(1, 1_795_734_400_000, &other)), first);
        assert_ne!(message_id(&delivery(1, 1_795_734_361_123, &other)), first);
        assert_ne!(message_id(&delivery(2, 1_795_734_361_123, &n)), first);
        let uuid = uuid::Uuid::parse_str(first.trim_start_matches("amrelay-")).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
    }
}
