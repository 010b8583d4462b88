//! `kind = "slack"`: Slack Web API `chat.postMessage` with a bot token.
//! <https://docs.slack.dev/reference/methods/chat.postMessage>

mod classify;
mod message;

pub(crate) use classify::classify;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use super::Delivery;
use crate::net::{http, Outcome};

pub(crate) struct SlackSink {
    client: reqwest::Client,
    endpoint: Url,
    token: SecretString,
    channel: String,
}

impl SlackSink {
    pub(crate) fn new(
        client: reqwest::Client,
        api_url: Url,
        token: SecretString,
        channel: String,
    ) -> Self {
        let base = api_url.as_str().trim_end_matches('/').to_owned();
        let endpoint = Url::parse(&format!("{base}/chat.postMessage")).unwrap_or(api_url);
        SlackSink {
            client,
            endpoint,
            token,
            channel,
        }
    }

    pub(crate) async fn send(&self, d: &Delivery<'_>) -> Outcome {
        let body = message::build(d.notification, &self.channel);
        let resp = self
            .client
            .post(self.endpoint.clone())
            .bearer_auth(self.token.expose_secret())
            .json(&body)
            .send()
            .await;
        match resp {
            Err(e) => http::classify_error(&e),
            Ok(r) => {
                let status = r.status();
                let headers = r.headers().clone();
                match r.text().await {
                    Ok(text) => classify(status, &headers, &text),
                    Err(e) => http::classify_error(&e),
                }
            }
        }
    }
}
