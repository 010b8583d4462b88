//! `kind = "promotion"`: asks the backup's promotion endpoint to promote
//! (docs/promotion-protocol.md). This sink only speaks the protocol: [`Requester`] signs
//! the request and reads the answer. Incidents, epochs, the guards and the outcome
//! messages are failover's caller (`promotion::caller`), a layer above, which the sink
//! reaches through [`Caller`]; without one (`send-test`) it only asks the endpoint to
//! verify.

mod requester;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

pub(crate) use requester::Requester;

use super::Delivery;
use crate::config::PromotionSettings;
use crate::domain::promotion::{PromoteRequest, Verdict};
use crate::net::Outcome;

/// A future that a trait object can return.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Failover's caller, given to the sinks at start-up: one attempt of a promotion
/// channel's delivery, with the channel's settings, its `max_age` (an unfinished incident
/// older than that lost its sender) and the way to its endpoint.
///
/// A trait object because the caller lives above the sinks: the worker holds sinks, and
/// the caller holds state, the outbox and metrics the sinks must not name. The future is
/// boxed by hand: an `async fn` in a trait cannot be called through `dyn`, and one
/// method does not need the `async-trait` crate.
pub(crate) trait Caller: Send + Sync {
    fn send<'a>(
        &'a self,
        s: &'a PromotionSettings,
        max_age: Duration,
        requester: &'a Requester,
        d: &'a Delivery<'a>,
    ) -> BoxFuture<'a, Outcome>;
}

pub(crate) struct PromotionSink {
    s: PromotionSettings,
    max_age: Duration,
    requester: Requester,
    caller: Option<Arc<dyn Caller>>,
}

impl PromotionSink {
    pub(crate) fn new(
        s: &PromotionSettings,
        max_age: Duration,
        client: reqwest::Client,
        caller: Option<Arc<dyn Caller>>,
    ) -> Self {
        PromotionSink {
            max_age,
            requester: Requester::new(s, client),
            s: s.clone(),
            caller,
        }
    }

    pub(crate) async fn send(&self, d: &Delivery<'_>) -> Outcome {
        match &self.caller {
            Some(c) => c.send(&self.s, self.max_age, &self.requester, d).await,
            None => verify(&self.s, &self.requester, d).await,
        }
    }
}

/// `send-test --dry-run`: a signed dry-run request for the next epoch; nothing runs.
pub(crate) async fn verify(
    s: &PromotionSettings,
    requester: &Requester,
    d: &Delivery<'_>,
) -> Outcome {
    let epoch = match requester.current_epoch(d.id).await {
        Ok(e) => e,
        Err(o) => return o,
    };
    let mut req = PromoteRequest::new(
        &s.target,
        epoch.saturating_add(1),
        "amrelay send-test --dry-run",
    );
    req.manual = true;
    req.dry_run = true;
    match requester.promote(&req, d.id).await {
        Err(o) => o,
        Ok(r)
            if r.status == StatusCode::OK
                && r.body.as_ref().is_ok_and(|a| a.result == Verdict::Verified) =>
        {
            tracing::info!(answer = %r.describe(), "the endpoint verified the request");
            Outcome::Delivered
        }
        Ok(r) => r.by_status(),
    }
}
