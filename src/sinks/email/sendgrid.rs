//! SendGrid v3 Mail Send: `POST {api_url}/v3/mail/send` with a Bearer API key; 202 on success.
//! <https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send>
//! Errors: <https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/errors>
//! (`{"errors":[{"field":...,"message":...}]}`); rate limits answer 429 with
//! `X-RateLimit-Reset`, a Unix time:
//! <https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits>

use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::{address, Email, DELIVERY_ID_HEADER};
use crate::net::{http, Outcome};

pub(super) struct SendGrid {
    client: reqwest::Client,
    url: Url,
    api_key: SecretString,
}

impl SendGrid {
    pub(super) fn new(client: reqwest::Client, api_url: &Url, api_key: SecretString) -> Self {
        SendGrid {
            client,
            url: http::join(api_url, "v3/mail/send"),
            api_key,
        }
    }

    pub(super) fn request(&self, e: &Email<'_>) -> reqwest::RequestBuilder {
        self.client
            .post(self.url.clone())
            .bearer_auth(self.api_key.expose_secret())
            .json(&body(e))
    }
}

fn body(e: &Email<'_>) -> Value {
    let list = |ms: &[lettre::message::Mailbox]| -> Vec<Value> {
        ms.iter().map(|m| json!({"email": address(m)})).collect()
    };
    let mut personalization = json!({"to": list(&e.envelope.to)});
    if !e.envelope.cc.is_empty() {
        personalization["cc"] = list(&e.envelope.cc).into();
    }
    let mut from = json!({"email": address(&e.envelope.from)});
    if let Some(name) = &e.envelope.from.name {
        from["name"] = name.as_str().into();
    }
    json!({
        "personalizations": [personalization],
        "from": from,
        "subject": e.content.subject,
        // text/plain must come first.
        "content": [
            {"type": "text/plain", "value": e.content.text},
            {"type": "text/html", "value": e.content.html},
        ],
        "headers": {DELIVERY_ID_HEADER: e.delivery_id.to_string()},
    })
}

/// The generic HTTP table fits SendGrid (400, 401, 403, 413 permanent; 429, 5xx
/// retried); its 429 names the wait in `X-RateLimit-Reset`. The detail carries the
/// `errors[].message` list.
pub(super) fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Outcome {
    let outcome = http::classify_status(status, headers, body);
    let messages: Vec<String> = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("errors").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
            match e.get("field").and_then(Value::as_str) {
                Some(f) => format!("{f}: {msg}"),
                None => msg.to_owned(),
            }
        })
        .collect();
    if messages.is_empty() {
        return outcome;
    }
    http::with_detail(outcome, format!("HTTP {status}: {}", messages.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn the_table() {
        let h = HeaderMap::new();
        for (code, want) in [
            (202, "delivered"),
            (200, "delivered"),
            (400, "permanent"),
            (401, "permanent"),
            (403, "permanent"),
            (413, "permanent"),
            (429, "retryable"),
            (500, "retryable"),
            (503, "retryable"),
        ] {
            let got = classify(StatusCode::from_u16(code).unwrap(), &h, "");
            assert_eq!(got.kind(), want, "{code}");
        }
    }

    #[test]
    fn errors_are_read_and_reset_is_honoured() {
        let body = r#"{"errors":[{"message":"The to array is required for all personalization objects, and must have at least one email object with a valid email address.","field":"personalizations.0.to","help":null}]}"#;
        let got = classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), body);
        assert!(
            matches!(&got, Outcome::Permanent { detail, .. } if detail.contains("personalizations.0.to: The to array")),
            "{got:?}"
        );
        let mut h = HeaderMap::new();
        let reset = chrono::Utc::now().timestamp() + 30;
        h.insert("x-ratelimit-reset", HeaderValue::from(reset));
        let got = classify(StatusCode::TOO_MANY_REQUESTS, &h, "");
        let Outcome::Retryable {
            retry_after: Some(d),
            ..
        } = got
        else {
            panic!("{got:?}")
        };
        assert!(d.as_secs() >= 28 && d.as_secs() <= 30, "{d:?}");
    }
}
