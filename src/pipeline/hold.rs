//! Holds: what a channel asks of a delivery before its first attempt. A promotion
//! channel's `min_firing` keeps a firing notification in the outbox until its alerts have
//! fired that long (Alertmanager will not resend before group_interval, so amrelay does
//! the waiting), and a resolve of the same group calls it off if it was never attempted.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::Settings;
use crate::domain::{Notification, Status};
use crate::outbox::Hold;

#[derive(Debug, Clone, Default)]
pub(crate) struct Holds(HashMap<String, Duration>);

impl Holds {
    pub(crate) fn new(s: &Settings) -> Self {
        Holds(
            s.promotion_channels()
                .map(|(name, p)| (name.to_owned(), p.min_firing))
                .collect(),
        )
    }

    /// One hold per channel, in the order given.
    pub(crate) fn plan(&self, n: &Notification, channels: &[String]) -> Vec<Hold> {
        channels
            .iter()
            .map(|c| match self.0.get(c) {
                None => Hold::default(),
                Some(min_firing) => match n.status {
                    Status::Resolved => Hold {
                        not_before: 0,
                        cancel_unstarted: true,
                    },
                    Status::Firing => Hold {
                        not_before: n
                            .firing_since()
                            .map(|t| t.timestamp_millis() + min_firing.as_millis() as i64)
                            .unwrap_or(0),
                        cancel_unstarted: false,
                    },
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire::fixture;

    fn holds(min_firing: u64) -> Holds {
        Holds(HashMap::from([(
            "promote".to_owned(),
            Duration::from_secs(min_firing),
        )]))
    }

    #[test]
    fn firing_waits_from_starts_at_and_resolve_cancels() {
        let firing = fixture("primary-down-firing");
        let channels = ["promote".to_owned(), "slack".to_owned()];
        let plan = holds(30).plan(&firing, &channels);
        let since = firing.alerts[0].starts_at.timestamp_millis();
        assert_eq!(plan[0].not_before, since + 30_000);
        assert!(!plan[0].cancel_unstarted);
        assert_eq!(plan[1], Hold::default(), "other channels are not held");
        let resolved = fixture("primary-down-resolved");
        let plan = holds(30).plan(&resolved, &channels);
        assert!(plan[0].cancel_unstarted);
        assert_eq!(plan[0].not_before, 0);
        assert!(!plan[1].cancel_unstarted);
    }
}
