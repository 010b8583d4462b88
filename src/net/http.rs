//! The status table HTTP sinks share: 408, 429 and 5xx are retried, other 4xx are not.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use super::Outcome;

/// Longest piece of an answer body kept for logs and `last_error`.
const SNIPPET: usize = 300;

pub(crate) fn classify_status(status: StatusCode, headers: &HeaderMap, body: &str) -> Outcome {
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
            retry_after: retry_after(headers).or_else(|| rate_limit_reset(headers)),
        }
    } else {
        Outcome::permanent(reason, detail)
    }
}

/// A transport error: the request may or may not have arrived, so it is retried.
pub(crate) fn classify_error(e: &reqwest::Error) -> Outcome {
    Outcome::retryable(transport_reason(e), describe(e))
}

/// What kind of transport error: `timeout`, `connect` or `transport`.
pub(crate) fn transport_reason(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

/// A transport error as text for logs, `last_error`, dead letters and the admin API, its
/// URL cut to scheme, host and port: webhook and promotion URLs often carry a secret in
/// the path or the query (Alertmanager's `RedactURL` does the same).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let text = error_chain(e);
    match e.url() {
        Some(url) => text.replace(url.as_str(), &redact(url)),
        None => text,
    }
}

/// `https://hooks.example.com:8443/...`: where a request went, without what it carried.
pub(crate) fn redact(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    let rest = if url.path() == "/" && url.query().is_none() {
        ""
    } else {
        "/..."
    };
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{rest}", url.scheme()),
        None => format!("{}://{host}{rest}", url.scheme()),
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
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

/// `X-RateLimit-Reset`, which APIs without `Retry-After` send with a 429 (SendGrid,
/// GitHub): a Unix time in seconds, or, when it is too small to be one, seconds from now.
pub(crate) fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let v: i64 = headers
        .get("x-ratelimit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if v < 0 {
        return None;
    }
    if v < 1_000_000_000 {
        return Some(Duration::from_secs(v as u64));
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(Duration::from_secs(v.saturating_sub(now).max(0) as u64))
}

/// The same outcome with a better description (a vendor's own error message).
pub(crate) fn with_detail(outcome: Outcome, detail: String) -> Outcome {
    match outcome {
        Outcome::Delivered => Outcome::Delivered,
        Outcome::Retryable {
            reason,
            retry_after,
            ..
        } => Outcome::Retryable {
            reason,
            detail: snippet(&detail),
            retry_after,
        },
        Outcome::Permanent { reason, .. } => Outcome::Permanent {
            reason,
            detail: snippet(&detail),
        },
    }
}

/// `base` + `path`, keeping any path `base` has (`http://host/prefix` + `v3/x`).
pub(crate) fn join(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url
}

pub(crate) fn snippet(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(SNIPPET) {
        Some((i, _)) => format!("{}...", &body[..i]),
        None => body.to_owned(),
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
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
    fn join_keeps_the_base_path() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            join(&u("https://api.sendgrid.com"), "v3/mail/send").as_str(),
            "https://api.sendgrid.com/v3/mail/send"
        );
        assert_eq!(
            join(&u("http://127.0.0.1:9/prefix/"), "email").as_str(),
            "http://127.0.0.1:9/prefix/email"
        );
    }

    #[tokio::test]
    async fn a_transport_error_names_the_host_and_never_the_path_or_query() {
        let client = crate::net::client().unwrap();
        // Nothing listens on port 9 of the loopback: the connection is refused.
        let url = "http://127.0.0.1:9/hooks/s3cr3t-path?token=s3cr3t-query";
        let e = client.post(url).send().await.unwrap_err();
        assert!(error_chain(&e).contains("s3cr3t"), "reqwest names the URL");
        let Outcome::Retryable { detail, reason, .. } = classify_error(&e) else {
            panic!("not retryable");
        };
        assert_eq!(reason, "connect");
        assert!(!detail.contains("s3cr3t"), "{detail}");
        assert!(detail.contains("http://127.0.0.1:9/..."), "{detail}");
    }

    #[test]
    fn long_bodies_are_cut() {
        let long = "x".repeat(1000);
        assert!(snippet(&long).len() < 310);
        assert_eq!(snippet(" short "), "short");
    }
}
