//! Postmark: `POST {api_url}/email` with `X-Postmark-Server-Token`; 200 with
//! `"ErrorCode":0` on success.
//! <https://postmarkapp.com/developer/user-guide/send-email-with-api>
//! Answers: <https://postmarkapp.com/developer/api/overview#response-codes> (401 bad token,
//! 422 with an `ErrorCode` the request can never pass, 429 rate limit, 500/503 theirs) and
//! <https://postmarkapp.com/developer/api/overview#error-codes> (e.g. 300 invalid email
//! request, 406 inactive recipient, 100 maintenance).

use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::{Email, DELIVERY_ID_HEADER};
use crate::net::{http, Outcome};

pub(super) struct Postmark {
    client: reqwest::Client,
    url: Url,
    token: SecretString,
    message_stream: Option<String>,
}

impl Postmark {
    pub(super) fn new(
        client: reqwest::Client,
        api_url: &Url,
        token: SecretString,
        message_stream: Option<String>,
    ) -> Self {
        Postmark {
            client,
            url: http::join(api_url, "email"),
            token,
            message_stream,
        }
    }

    pub(super) fn request(&self, e: &Email<'_>) -> reqwest::RequestBuilder {
        let list = |ms: &[lettre::message::Mailbox]| {
            ms.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut body = json!({
            "From": e.envelope.from.to_string(),
            "To": list(&e.envelope.to),
            "Subject": e.content.subject,
            "TextBody": e.content.text,
            "HtmlBody": e.content.html,
            "Headers": [{"Name": DELIVERY_ID_HEADER, "Value": e.delivery_id.to_string()}],
        });
        if !e.envelope.cc.is_empty() {
            body["Cc"] = list(&e.envelope.cc).into();
        }
        if let Some(s) = &self.message_stream {
            body["MessageStream"] = s.as_str().into();
        }
        self.client
            .post(self.url.clone())
            .header("Accept", "application/json")
            .header("X-Postmark-Server-Token", self.token.expose_secret())
            .json(&body)
    }
}

/// Postmark's own code: `ErrorCode` in the body, 0 meaning sent.
pub(super) fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Outcome {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("ErrorCode"))
        .and_then(Value::as_i64);
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match (status.as_u16(), code) {
        (200, None | Some(0)) => Outcome::Delivered,
        // A 200 that is not "sent" is not a delivery.
        (200, Some(c)) => Outcome::permanent(
            format!("postmark_{c}"),
            format!("HTTP 200 with ErrorCode {c}: {message}"),
        ),
        // 100: their maintenance, the one code that passes by itself.
        (_, Some(100)) => Outcome::Retryable {
            reason: "postmark_100".into(),
            detail: format!("ErrorCode 100: {message}"),
            retry_after: http::retry_after(headers),
        },
        (422, Some(c)) => Outcome::permanent(
            format!("postmark_{c}"),
            format!("HTTP 422 ErrorCode {c}: {message}"),
        ),
        _ => {
            let outcome = http::classify_status(status, headers, body);
            match code {
                Some(c) => {
                    http::with_detail(outcome, format!("HTTP {status} ErrorCode {c}: {message}"))
                }
                None => outcome,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: u16, body: &str) -> Outcome {
        classify(StatusCode::from_u16(code).unwrap(), &HeaderMap::new(), body)
    }

    #[test]
    fn the_table() {
        let ok = r#"{"To":"ops@example.com","SubmittedAt":"2026-11-26T10:00:00Z","MessageID":"b7bc2f4a","ErrorCode":0,"Message":"OK"}"#;
        assert_eq!(answer(200, ok), Outcome::Delivered);
        let bad_token = r#"{"ErrorCode":10,"Message":"No Account or Server API tokens were supplied in the HTTP headers."}"#;
        assert_eq!(answer(401, bad_token).kind(), "permanent");
        let inactive = r#"{"ErrorCode":406,"Message":"You tried to send to a recipient that has been marked as inactive."}"#;
        assert!(
            matches!(answer(422, inactive), Outcome::Permanent { reason, .. } if reason == "postmark_406")
        );
        let invalid = r#"{"ErrorCode":300,"Message":"Invalid 'To' address: 'nope'."}"#;
        assert_eq!(answer(422, invalid).kind(), "permanent");
        assert_eq!(
            answer(429, r#"{"ErrorCode":429,"Message":"Rate limit exceeded"}"#).kind(),
            "retryable"
        );
        assert_eq!(answer(500, "").kind(), "retryable");
        assert_eq!(answer(503, "<html>down</html>").kind(), "retryable");
        assert_eq!(
            answer(422, r#"{"ErrorCode":100,"Message":"Maintenance"}"#).kind(),
            "retryable"
        );
        assert_eq!(
            answer(200, r#"{"ErrorCode":406,"Message":"inactive"}"#).kind(),
            "permanent"
        );
    }
}
