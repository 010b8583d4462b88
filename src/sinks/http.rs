//! The status table HTTP sinks share: 408, 429 and 5xx are retried, other 4xx are not.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use super::Outcome;

/// Longest piece of an answer body kept for logs and `last_error`.
const SNIPPET: usize = 300;

pub fn classify_status(status: StatusCode, headers: &HeaderMap, body: &str) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered;
    }
    let reason = format!("http_{}", status.as_u16());
    let detail = format!("HTTP {status}: {}", snippet(body));
    if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Outcome::Retryable {
            reason,
            detail,
            retry_after: retry_after(headers),
        }
    } else {
        Outcome::permanent(reason, detail)
    }
}

/// A transport error: the request may or may not have arrived, so it is retried.
pub fn classify_error(e: &reqwest::Error) -> Outcome {
    let reason = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    Outcome::retryable(reason, error_chain(e))
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

pub fn snippet(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(SNIPPET) {
        Some((i, _)) => format!("{}...", &body[..i]),
        None => body.to_owned(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_status_table() {
        let h = headers(None);
        let cases = [
            (200, "delivered"),
            (202, "delivered"),
            (204, "delivered"),
            (400, "permanent"),
            (401, "permanent"),
            (403, "permanent"),
            (404, "permanent"),
            (408, "retryable"),
            (413, "permanent"),
            (429, "retryable"),
            (500, "retryable"),
            (502, "retryable"),
            (503, "retryable"),
        ];
        for (code, want) in cases {
            let got = classify_status(StatusCode::from_u16(code).unwrap(), &h, "body");
            assert_eq!(got.kind(), want, "{code}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(
            retry_after(&headers(Some("7"))),
            Some(Duration::from_secs(7))
        );
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let d = retry_after(&headers(Some(&future))).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(120));
        assert_eq!(retry_after(&headers(Some(&past))), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(Some("soon"))), None);
        assert_eq!(retry_after(&headers(None)), None);
    }

    #[test]
    fn a_429_carries_its_retry_after() {
        let got = classify_status(StatusCode::TOO_MANY_REQUESTS, &headers(Some("3")), "");
        assert!(
            matches!(got, Outcome::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(3))
        );
    }

    #[test]
    fn long_bodies_are_cut() {
        let long = "x".repeat(1000);
        assert!(snippet(&long).len() < 310);
        assert_eq!(snippet(" short "), "short");
    }
}
