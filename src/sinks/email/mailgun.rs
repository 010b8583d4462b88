//! Mailgun: `POST {api_url}/v3/{domain}/messages`, HTTP basic auth `api:KEY`, a
//! multipart form; 200 `{"id":...,"message":"Queued. Thank you."}` on success.
//! <https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Messages/>
//! Answers: <https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses>:
//! 400 with a `message`, 401/403 a bad key or no access (permanent, unlike the generic
//! table's reading of nothing), 404 an unknown domain, 429 "retry as defined in the
//! response", 500 retry with backoff; 420, the domain's sending limit, passes with time.
//! EU accounts use `https://api.eu.mailgun.net`.

use reqwest::header::HeaderMap;
use reqwest::multipart::Form;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{Email, DELIVERY_ID_HEADER};
use crate::net::{http, Outcome};

pub(super) struct Mailgun {
    client: reqwest::Client,
    url: Url,
    api_key: SecretString,
}

impl Mailgun {
    pub(super) fn new(
        client: reqwest::Client,
        api_url: &Url,
        domain: &str,
        api_key: SecretString,
    ) -> Self {
        Mailgun {
            client,
            url: http::join(api_url, &format!("v3/{domain}/messages")),
            api_key,
        }
    }

    pub(super) fn request(&self, e: &Email<'_>) -> reqwest::RequestBuilder {
        let mut form = Form::new()
            .text("from", e.envelope.from.to_string())
            .text("subject", e.content.subject.clone())
            .text("text", e.content.text.clone())
            .text("html", e.content.html.clone())
            .text(format!("h:{DELIVERY_ID_HEADER}"), e.delivery_id.to_string());
        for to in &e.envelope.to {
            form = form.text("to", to.to_string());
        }
        for cc in &e.envelope.cc {
            form = form.text("cc", cc.to_string());
        }
        self.client
            .post(self.url.clone())
            .basic_auth("api", Some(self.api_key.expose_secret()))
            .multipart(form)
    }
}

pub(super) fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Outcome {
    let outcome = match status.as_u16() {
        // The domain's sending limit: it passes with time, unlike the other 4xx.
        420 => Outcome::Retryable {
            reason: "http_420".into(),
            detail: String::new(),
            retry_after: http::retry_after(headers),
        },
        _ => http::classify_status(status, headers, body),
    };
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned));
    match message {
        Some(m) if status != StatusCode::OK => {
            http::with_detail(outcome, format!("HTTP {status}: {m}"))
        }
        _ => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let h = HeaderMap::new();
        for (code, body, want) in [
            (
                200,
                r#"{"id":"<20261126.1@mg.example.com>","message":"Queued. Thank you."}"#,
                "delivered",
            ),
            (
                400,
                r#"{"message":"'from' parameter is missing"}"#,
                "permanent",
            ),
            (401, "Forbidden", "permanent"),
            (
                403,
                r#"{"message":"Domain mg.example.com is not allowed to send"}"#,
                "permanent",
            ),
            (
                404,
                r#"{"message":"Domain not found: mg.example.com"}"#,
                "permanent",
            ),
            (429, r#"{"message":"Too many requests"}"#, "retryable"),
            (
                420,
                r#"{"message":"Domain mg.example.com is not allowed to send: Sending limit exceeded"}"#,
                "retryable",
            ),
            (500, "", "retryable"),
            (502, "", "retryable"),
        ] {
            let got = classify(StatusCode::from_u16(code).unwrap(), &h, body);
            assert_eq!(got.kind(), want, "{code}");
        }
        let got = classify(
            StatusCode::BAD_REQUEST,
            &h,
            r#"{"message":"'from' parameter is missing"}"#,
        );
        assert!(
            matches!(got, Outcome::Permanent { detail, .. } if detail.ends_with("'from' parameter is missing"))
        );
    }
}
