//! When to try again, and when to give up. Pure: the caller passes the time.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::DeliveryPolicy;
use crate::net::Outcome;
use crate::outbox::Completion;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Delivered,
    RetryIn(Duration),
    /// The delivery is over on this channel: fallback or dead letter.
    GiveUp {
        reason: &'static str,
    },
}

/// `attempts` counts the attempt that just ended; `age` is the time since this
/// delivery was enqueued on its channel.
pub(crate) fn decide(
    outcome: &Outcome,
    attempts: u32,
    age: Duration,
    policy: &DeliveryPolicy,
) -> Decision {
    let retry_after = match outcome {
        Outcome::Delivered => return Decision::Delivered,
        Outcome::Permanent { .. } => {
            return Decision::GiveUp {
                reason: "permanent",
            }
        }
        Outcome::Retryable { retry_after, .. } => *retry_after,
    };
    if attempts >= policy.max_attempts {
        return Decision::GiveUp {
            reason: "max_attempts",
        };
    }
    let wait = match retry_after {
        // The far side's wish wins, within bounds: never sooner than asked, never longer
        // than max_retry_after.
        Some(ra) => ra.min(policy.max_retry_after),
        None => backoff(attempts, policy.backoff_min, policy.backoff_max),
    };
    if age + wait >= policy.max_age {
        return Decision::GiveUp { reason: "max_age" };
    }
    Decision::RetryIn(wait)
}

/// What the outbox records after an attempt: `decision` (from [`decide`]) applied to the
/// attempt's `outcome`, with the channel's `fallback`. Pure: `now` is passed in.
pub(crate) fn completion(
    decision: &Decision,
    outcome: &Outcome,
    fallback: Option<&str>,
    now: i64,
) -> Completion {
    let detail = match outcome {
        Outcome::Delivered => "",
        Outcome::Retryable { detail, .. } | Outcome::Permanent { detail, .. } => detail,
    };
    match decision {
        Decision::Delivered => Completion::Delivered,
        Decision::RetryIn(wait) => Completion::RetryAt {
            at: now.saturating_add(wait.as_millis() as i64),
            error: detail.to_owned(),
        },
        Decision::GiveUp { reason } => {
            let error = format!("{reason}: {detail}");
            match fallback {
                Some(to) => Completion::FailOver {
                    to: to.to_owned(),
                    error,
                },
                None => Completion::Dead { error },
            }
        }
    }
}

/// Exponential backoff with jitter for the retry after attempt `attempts` (1-based),
/// between `min` and `max`. The metric collector's remote write uses it too.
pub(crate) fn backoff(attempts: u32, min: Duration, max: Duration) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1) as usize)
        .unwrap_or(max)
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> DeliveryPolicy {
        DeliveryPolicy {
            concurrency: 1,
            timeout: Duration::from_secs(10),
            max_attempts: 5,
            max_age: Duration::from_secs(3600),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
            circuit: None,
        }
    }

    fn retryable(retry_after: Option<u64>) -> Outcome {
        Outcome::Retryable {
            reason: "http_503".into(),
            detail: "HTTP 503".into(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn each_decision_becomes_its_completion() {
        let now = 1_000_000;
        let failed = Outcome::permanent("invalid_auth", "token revoked");
        let cases = [
            (
                Decision::Delivered,
                Outcome::Delivered,
                None,
                Completion::Delivered,
            ),
            (
                Decision::RetryIn(Duration::from_secs(30)),
                retryable(None),
                Some("email"),
                Completion::RetryAt {
                    at: now + 30_000,
                    error: "HTTP 503".into(),
                },
            ),
            (
                Decision::GiveUp {
                    reason: "permanent",
                },
                failed.clone(),
                Some("email"),
                Completion::FailOver {
                    to: "email".into(),
                    error: "permanent: token revoked".into(),
                },
            ),
            (
                Decision::GiveUp {
                    reason: "max_attempts",
                },
                retryable(None),
                None,
                Completion::Dead {
                    error: "max_attempts: HTTP 503".into(),
                },
            ),
        ];
        for (decision, outcome, fallback, want) in cases {
            assert_eq!(
                completion(&decision, &outcome, fallback, now),
                want,
                "{decision:?}"
            );
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_bounded() {
        let p = policy();
        for attempt in 1..=20 {
            let base = Duration::from_secs(1 << (attempt - 1).min(6)).min(p.backoff_max);
            let d = backoff(attempt, p.backoff_min, p.backoff_max);
            assert!(
                d >= base && d <= (base * 2).min(p.backoff_max),
                "attempt {attempt}: {d:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = policy();
        let zero = Duration::ZERO;
        assert_eq!(
            decide(&retryable(Some(30)), 1, zero, &p),
            Decision::RetryIn(Duration::from_secs(30))
        );
        assert_eq!(
            decide(&retryable(Some(9999)), 1, zero, &p),
            Decision::RetryIn(p.max_retry_after)
        );
    }

    #[test]
    fn permanent_and_exhausted_give_up_with_the_reason() {
        let p = policy();
        let zero = Duration::ZERO;
        assert_eq!(
            decide(&Outcome::Delivered, 3, zero, &p),
            Decision::Delivered
        );
        assert_eq!(
            decide(&Outcome::permanent("invalid_auth", ""), 1, zero, &p),
            Decision::GiveUp {
                reason: "permanent"
            }
        );
        assert_eq!(
            decide(&retryable(None), 5, zero, &p),
            Decision::GiveUp {
                reason: "max_attempts"
            }
        );
        assert!(matches!(
            decide(&retryable(None), 4, zero, &p),
            Decision::RetryIn(_)
        ));
        assert_eq!(
            decide(&retryable(Some(60)), 1, Duration::from_secs(3590), &p),
            Decision::GiveUp { reason: "max_age" }
        );
    }
}
