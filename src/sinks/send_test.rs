//! `amrelay send-test`: one clearly marked message through one channel, so an operator
//! can see a channel work (or read what its far side answers) before an incident does.

use std::collections::BTreeMap;

use crate::config::ChannelSettings;
use crate::domain::time::now_ms;
use crate::domain::{LabelSet, Notification};

use super::{Delivery, Sink, SinkContext};
use crate::net::Outcome;

/// A firing notification that says, in its labels and summary, that it is a test.
pub(crate) fn notification(channel: &str) -> Notification {
    let labels: LabelSet = BTreeMap::from([
        ("alertname".to_owned(), "AmrelaySendTest".to_owned()),
        ("severity".to_owned(), "info".to_owned()),
        ("channel".to_owned(), channel.to_owned()),
    ])
    .into();
    let mut annotations = LabelSet::default();
    annotations.insert(
        "summary",
        format!("TEST from amrelay send-test: channel {channel} works. No alert is firing."),
    );
    Notification::made_here(
        "amrelay-send-test",
        format!("amrelay-send-test/{}", uuid::Uuid::new_v4()),
        &["alertname"],
        labels,
        annotations,
        chrono::Utc::now(),
    )
}

/// One attempt, no retry: the answer is what the operator wants to see.
pub(crate) async fn send(channel: &ChannelSettings) -> Outcome {
    let client = match crate::net::client() {
        Ok(c) => c,
        Err(e) => {
            return Outcome::permanent("http_client", format!("cannot build the HTTP client: {e}"))
        }
    };
    let ctx = SinkContext {
        client,
        promotion: None,
    };
    let sink = match Sink::build(channel, &ctx) {
        Ok(s) => s,
        Err(e) => return Outcome::permanent("config", e),
    };
    let n = notification(&channel.name);
    let now = now_ms();
    let delivery = Delivery {
        // Not an outbox id; unique so that receivers that drop repeats do not drop it.
        id: now,
        attempt: 1,
        created_at: now,
        notification: &n,
        test: true,
    };
    match tokio::time::timeout(channel.policy.timeout, sink.send(&delivery)).await {
        Ok(o) => o,
        Err(_) => Outcome::retryable(
            "timeout",
            format!("no answer within {:?}", channel.policy.timeout),
        ),
    }
}
