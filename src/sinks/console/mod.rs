//! `kind = "console"`: one readable line per delivery on stdout, so a new user sees a
//! notification without any token.

use std::io::Write;

use super::Delivery;
use crate::domain::Notification;
use crate::net::Outcome;

pub(crate) struct ConsoleSink;

impl ConsoleSink {
    pub(crate) fn send(&self, d: &Delivery<'_>) -> Outcome {
        let line = format_line(d.notification);
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{line}").and_then(|_| out.flush()) {
            Ok(()) => Outcome::Delivered,
            Err(e) => Outcome::retryable("stdout", e.to_string()),
        }
    }
}

/// Values are quoted with escapes, so a label cannot break the line.
pub(crate) fn format_line(n: &Notification) -> String {
    let mut line = format!("{} receiver={:?}", n.title(), n.receiver);
    for name in ["severity", "instance"] {
        if let Some(v) = n.common_labels.get(name) {
            line.push_str(&format!(" {name}={v:?}"));
        }
    }
    if let Some(s) = n.annotation("summary") {
        line.push_str(&format!(" summary={s:?}"));
    }
    line.push_str(&format!(
        " alerts={} firing={} resolved={} group={:?}",
        n.alerts.len() as u64 + n.truncated_alerts,
        n.count(crate::domain::Status::Firing),
        n.count(crate::domain::Status::Resolved),
        n.group_key
    ));
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire;

    #[test]
    fn one_line_even_when_labels_hold_newlines() {
        let mut n = wire::fixture("primary-down-firing");
        n.common_annotations.insert("summary", "line one\nline two");
        let line = format_line(&n);
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with(
                "[FIRING:1] PrimaryDown receiver=\"primary-hook\" severity=\"critical\""
            ),
            "{line}"
        );
        assert!(line.contains(r#"summary="line one\nline two""#), "{line}");
    }
}
