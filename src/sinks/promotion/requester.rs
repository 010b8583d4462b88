//! One signed request to the promotion endpoint, and its answer read into the protocol's
//! types (`domain::promotion`): an [`Answer`], or the [`ErrorBody`] said instead.

use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::config::PromotionSettings;
use crate::domain::promotion::{
    Answer, ErrorBody, PromoteRequest, PromotionStatus, PROMOTE_PATH, STATUS_PATH,
};
use crate::domain::signature::{sign, SigningKey};
use crate::net::{http, Outcome};

/// Signs and sends the protocol's two requests to one channel's endpoint.
pub(crate) struct Requester {
    client: reqwest::Client,
    url: reqwest::Url,
    key: SigningKey,
}

/// What came back: the HTTP status, and the body as the type the request expects, or
/// what was said instead (a 400's or 401's error, or a piece of a body that is not the
/// endpoint's, such as a proxy's page).
pub(crate) struct Reply<T> {
    pub status: StatusCode,
    pub body: Result<T, ErrorBody>,
    headers: HeaderMap,
}

impl Requester {
    pub(crate) fn new(s: &PromotionSettings, client: reqwest::Client) -> Self {
        Requester {
            client,
            url: s.url.clone(),
            key: SigningKey::from_secret(&s.secret),
        }
    }

    /// `POST /v1/promote`. Err is a request that got no answer (transport), retried.
    pub(crate) async fn promote(
        &self,
        req: &PromoteRequest,
        delivery_id: i64,
    ) -> Result<Reply<Answer>, Outcome> {
        let body = serde_json::to_vec(req)
            .map_err(|e| Outcome::permanent("promotion_request", e.to_string()))?;
        self.call(Method::POST, PROMOTE_PATH, delivery_id, body)
            .await
    }

    /// `GET /v1/promotion`: the endpoint's current epoch.
    pub(crate) async fn current_epoch(&self, delivery_id: i64) -> Result<u64, Outcome> {
        let r: Reply<PromotionStatus> = self
            .call(Method::GET, STATUS_PATH, delivery_id, Vec::new())
            .await?;
        if !r.status.is_success() {
            return Err(r.by_status());
        }
        r.body.map(|s| s.epoch).map_err(|e| {
            Outcome::permanent(
                "promotion_answer",
                format!("GET /v1/promotion has no epoch: {}", e.error),
            )
        })
    }

    /// A signed request (an empty `body` is a GET's). Each request gets a fresh
    /// `webhook-id`: the endpoint refuses a repeated (id, timestamp) pair as a replay, and
    /// timestamps are whole seconds. The incident key, not the id, is what makes a retry
    /// the same request.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        delivery_id: i64,
        body: Vec<u8>,
    ) -> Result<Reply<T>, Outcome> {
        let id = format!("amrelay-{delivery_id}-{}", uuid::Uuid::new_v4().simple());
        let ts = chrono::Utc::now().timestamp();
        let mut req = self
            .client
            .request(method, http::join(&self.url, path.trim_start_matches('/')))
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sign(&self.key, &id, ts, &body));
        if !body.is_empty() {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let r = req.send().await.map_err(|e| http::classify_error(&e))?;
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        Ok(Reply {
            status,
            body: read(&text),
            headers,
        })
    }
}

/// The expected type, else the endpoint's error, else the start of whatever it was.
fn read<T: DeserializeOwned>(text: &str) -> Result<T, ErrorBody> {
    serde_json::from_str(text).map_err(|_| {
        serde_json::from_str(text).unwrap_or_else(|_| ErrorBody {
            error: http::snippet(text),
        })
    })
}

impl<T: Describe> Reply<T> {
    /// The answer in one line: result, state, epoch, exit code, the stderr tail; or the
    /// error.
    pub(crate) fn describe(&self) -> String {
        let mut parts = vec![format!("HTTP {}", self.status.as_u16())];
        match &self.body {
            Ok(b) => b.describe(&mut parts),
            Err(e) => parts.push(format!("error={}", e.error)),
        }
        parts.join(" ")
    }

    /// What the HTTP status table makes of the status, described with what was said.
    pub(crate) fn by_status(&self) -> Outcome {
        http::with_detail(
            http::classify_status(self.status, &self.headers, ""),
            self.describe(),
        )
    }

    /// The endpoint's `Retry-After` (with a 202 running or a 503 retry).
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        http::retry_after(&self.headers)
    }
}

/// A body the endpoint answers with, in the words of [`Reply::describe`].
pub(crate) trait Describe {
    fn describe(&self, parts: &mut Vec<String>);
}

impl Describe for Answer {
    fn describe(&self, parts: &mut Vec<String>) {
        parts.push(format!("result={}", self.result.as_str()));
        self.status.describe(parts);
    }
}

impl Describe for PromotionStatus {
    fn describe(&self, parts: &mut Vec<String>) {
        parts.push(format!("state={}", self.state));
        parts.push(format!("epoch={}", self.epoch));
        if let Some(last) = &self.last {
            if let Some(code) = last.exit_code {
                parts.push(format!("exit_code={code}"));
            }
            if !last.stderr_tail.trim().is_empty() {
                parts.push(format!("stderr: {}", http::snippet(&last.stderr_tail)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::promotion::{PromotionState, Verdict};

    fn reply(status: u16, text: &str) -> Reply<Answer> {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: read(text),
            headers: HeaderMap::new(),
        }
    }

    const FAILED: &str = r#"{"schema":"amrelay.promotion.v1","target":"primary","epoch":4,
        "state":"failed","result":"failed","new_field":true,
        "last":{"key":"primary/4","epoch":4,"state":"failed","reason":"r",
        "started_at":"2026-11-26T10:00:01.120Z","finished_at":"2026-11-26T10:00:02.340Z",
        "exit_code":1,"stdout_tail":"","stderr_tail":"disk full\n"}}"#;

    #[test]
    fn an_endpoint_answer_is_read_and_described_in_one_line() {
        let r = reply(422, FAILED);
        let a = r.body.as_ref().unwrap();
        assert_eq!(
            (a.result, a.status.state),
            (Verdict::Failed, PromotionState::Failed)
        );
        assert_eq!(
            r.describe(),
            "HTTP 422 result=failed state=failed epoch=4 exit_code=1 stderr: disk full"
        );
    }

    #[test]
    fn an_error_or_a_body_that_is_not_the_endpoints_is_said_instead() {
        let e = reply(401, r#"{"error":"webhook-signature does not match"}"#);
        assert_eq!(
            e.describe(),
            "HTTP 401 error=webhook-signature does not match"
        );
        assert_eq!(e.by_status().kind(), "permanent");
        let proxy = reply(502, "<html>Bad Gateway</html>");
        assert_eq!(proxy.describe(), "HTTP 502 error=<html>Bad Gateway</html>");
        assert_eq!(proxy.by_status().kind(), "retryable");
        // Something answering 200 for the endpoint is not taken for its answer.
        assert!(reply(200, r#"{"result":"promoted"}"#).body.is_err());
    }
}
