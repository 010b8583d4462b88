//! What Slack's answer means. Slack reports most failures as HTTP 200 with
//! `{"ok": false, "error": "..."}`; rate limits come as HTTP 429 with `Retry-After`.
//! <https://docs.slack.dev/apis/web-api/rate-limits>,
//! <https://docs.slack.dev/reference/methods/chat.postMessage#errors>

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::net::{http, Outcome};

/// Errors Slack documents as transient; every other `ok:false` is permanent.
const RETRYABLE: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

#[derive(Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Outcome {
    let answer: Option<Answer> = serde_json::from_str(body).ok();
    if status == StatusCode::OK {
        return match answer {
            Some(Answer { ok: true, .. }) => Outcome::Delivered,
            Some(Answer { ok: false, error }) => {
                let error = error.unwrap_or_else(|| "unknown_error".into());
                let detail = format!("slack answered ok:false, error {error:?}");
                if RETRYABLE.contains(&error.as_str()) {
                    Outcome::Retryable {
                        reason: error,
                        detail,
                        retry_after: http::retry_after(headers),
                    }
                } else {
                    Outcome::permanent(error, detail)
                }
            }
            // A 200 that is not Slack's envelope (a proxy page?): the message may not be posted.
            None => Outcome::retryable(
                "bad_answer",
                format!("HTTP 200 but not a Slack answer: {}", http::snippet(body)),
            ),
        };
    }
    match (http::classify_status(status, headers, body), answer) {
        // An error Slack named takes the name as the reason.
        (
            Outcome::Retryable {
                detail,
                retry_after,
                ..
            },
            Some(Answer { error: Some(e), .. }),
        ) => Outcome::Retryable {
            reason: e,
            detail,
            retry_after,
        },
        (Outcome::Permanent { detail, .. }, Some(Answer { error: Some(e), .. })) => {
            Outcome::permanent(e, detail)
        }
        (other, _) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};
    use std::time::Duration;

    fn ok(body: &str) -> Outcome {
        classify(StatusCode::OK, &HeaderMap::new(), body)
    }

    #[test]
    fn ok_true_is_delivered() {
        assert_eq!(
            ok(r#"{"ok":true,"channel":"C1","ts":"1.2"}"#),
            Outcome::Delivered
        );
    }

    #[test]
    fn documented_transient_errors_are_retried() {
        for e in [
            "ratelimited",
            "internal_error",
            "fatal_error",
            "service_unavailable",
            "request_timeout",
        ] {
            let got = ok(&format!(r#"{{"ok":false,"error":"{e}"}}"#));
            assert!(
                matches!(&got, Outcome::Retryable { reason, .. } if reason == e),
                "{e}: {got:?}"
            );
        }
    }

    #[test]
    fn other_errors_are_permanent() {
        for e in [
            "invalid_auth",
            "channel_not_found",
            "not_in_channel",
            "invalid_blocks",
            "msg_too_long",
            "token_revoked",
        ] {
            let got = ok(&format!(r#"{{"ok":false,"error":"{e}"}}"#));
            assert!(
                matches!(&got, Outcome::Permanent { reason, .. } if reason == e),
                "{e}: {got:?}"
            );
        }
    }

    #[test]
    fn http_429_with_retry_after_is_retried_after_that_long() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        let got = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            r#"{"ok":false,"error":"ratelimited"}"#,
        );
        assert_eq!(
            got,
            Outcome::Retryable {
                reason: "ratelimited".into(),
                detail: "HTTP 429 Too Many Requests: {\"ok\":false,\"error\":\"ratelimited\"}"
                    .into(),
                retry_after: Some(Duration::from_secs(30)),
            }
        );
    }

    #[test]
    fn server_errors_and_garbage_are_retried() {
        let got = classify(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            "<html>bad gateway</html>",
        );
        assert!(matches!(got, Outcome::Retryable { ref reason, .. } if reason == "http_502"));
        assert!(matches!(ok("<html>"), Outcome::Retryable { .. }));
    }

    #[test]
    fn a_4xx_is_permanent() {
        let got = classify(StatusCode::NOT_FOUND, &HeaderMap::new(), "no such method");
        assert!(matches!(got, Outcome::Permanent { ref reason, .. } if reason == "http_404"));
    }
}
