//! Which channels a notification goes to: the first route whose matchers all hold wins,
//! unless it says `continue`. A notification is never split.

use crate::config::RouteSettings;
use crate::domain::Notification;

/// The pseudo-label that carries Alertmanager's receiver name into the matchers.
pub(crate) const RECEIVER_LABEL: &str = "receiver";

#[derive(Debug, Clone)]
pub(crate) struct Routes {
    routes: Vec<RouteSettings>,
}

impl Routes {
    pub(crate) fn new(routes: Vec<RouteSettings>) -> Self {
        Routes { routes }
    }

    /// The channels for `n`, each once, in route order. Never empty when the last route
    /// is a catch-all, which config loading guarantees.
    pub(crate) fn route(&self, n: &Notification) -> Vec<String> {
        // The receiver pseudo-label wins over a common label of the same name.
        let value = |name: &str| match name {
            RECEIVER_LABEL => Some(n.receiver.as_str()),
            _ => n.common_labels.get(name),
        };
        let mut out: Vec<String> = Vec::new();
        for r in &self.routes {
            if r.matchers.iter().all(|m| m.matches_value(value(m.name()))) {
                for c in &r.channels {
                    if !out.contains(c) {
                        out.push(c.clone());
                    }
                }
                if !r.continue_ {
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire;
    use crate::domain::Matcher;

    fn primary_down() -> Notification {
        wire::fixture("primary-down-firing")
    }

    fn route(matchers: &[&str], channels: &[&str], continue_: bool) -> RouteSettings {
        RouteSettings {
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            continue_,
        }
    }

    #[test]
    fn first_match_wins() {
        let r = Routes::new(vec![
            route(&[r#"alertname=~"Primary.*""#], &["pager"], false),
            route(&[r#"alertname=~".*""#], &["chat"], false),
            route(&[], &["catch"], false),
        ]);
        assert_eq!(r.route(&primary_down()), vec!["pager"]);
    }

    #[test]
    fn continue_adds_later_matches_once() {
        let r = Routes::new(vec![
            route(&[r#"alertname="PrimaryDown""#], &["pager", "chat"], true),
            route(&[r#"alertname!="Other""#], &["chat", "hook"], false),
            route(&[], &["catch"], false),
        ]);
        assert_eq!(r.route(&primary_down()), vec!["pager", "chat", "hook"]);
    }

    #[test]
    fn unmatched_goes_to_the_catch_all() {
        let r = Routes::new(vec![
            route(&[r#"severity="page-me-never""#], &["pager"], false),
            route(&[], &["catch"], false),
        ]);
        assert_eq!(r.route(&primary_down()), vec!["catch"]);
    }

    #[test]
    fn all_matchers_of_a_route_must_hold() {
        let r = Routes::new(vec![
            route(
                &[r#"alertname="PrimaryDown""#, r#"severity="info""#],
                &["a"],
                false,
            ),
            route(&[], &["b"], false),
        ]);
        assert_eq!(r.route(&primary_down()), vec!["b"]);
    }

    #[test]
    fn the_receiver_pseudo_label_can_be_matched() {
        let n = primary_down();
        let r = Routes::new(vec![
            route(
                &[&format!("receiver=\"{}\"", n.receiver)],
                &["by-receiver"],
                false,
            ),
            route(&[], &["catch"], false),
        ]);
        assert_eq!(r.route(&n), vec!["by-receiver"]);
    }

    #[test]
    fn the_receiver_pseudo_label_wins_over_a_common_label_of_that_name() {
        let mut n = primary_down();
        n.common_labels.insert("receiver", "from-the-labels");
        let r = Routes::new(vec![
            route(&["receiver=\"from-the-labels\""], &["by-label"], false),
            route(&[], &["catch"], false),
        ]);
        assert_eq!(r.route(&n), vec!["catch"]);
    }
}
