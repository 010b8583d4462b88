//! The Block Kit message: status, alertname, severity, summary and description, the
//! alerts (capped, with "and N more"), and links to the source, runbook and a silence.
//! Limits from <https://docs.slack.dev/reference/block-kit/blocks>: a header's text at
//! most 150 characters, a section's text at most 3000, at most 50 blocks.

use serde_json::{json, Value};

use crate::domain::{Alert, Notification, Status};
use crate::sinks::links::silence_url;

const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
/// Alerts listed one per line; the rest are counted.
const ALERTS_SHOWN: usize = 10;

pub(crate) fn build(n: &Notification, channel: &str) -> Value {
    let icon = match n.status {
        Status::Firing => ":red_circle:",
        Status::Resolved => ":large_green_circle:",
    };
    let title = n.title();
    let mut fields = Vec::new();
    if let Some(sev) = n.common_labels.get("severity") {
        fields.push(format!("*Severity:* {}", escape(sev)));
    }
    fields.push(format!("*Receiver:* {}", escape(&n.receiver)));
    let mut summary = fields.join("    ");
    if let Some(s) = n.annotation("summary") {
        summary.push_str(&format!("\n*Summary:* {}", escape(s)));
    }
    if let Some(d) = n.annotation("description") {
        summary.push_str(&format!("\n*Description:* {}", escape(d)));
    }

    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&title, HEADER_MAX), "emoji": true}}),
        section(&format!("{icon} {summary}")),
        section(&alert_lines(n)),
    ];
    if n.truncated_alerts > 0 {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": format!(":warning: Alertmanager left {} more alert(s) out of this notification (max_alerts).", n.truncated_alerts)}]}));
    }
    let links = links(n);
    if !links.is_empty() {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": links.join("  |  ")}]}));
    }
    let text = match n.annotation("summary") {
        Some(s) => format!("{title}: {}", escape(s)),
        None => title,
    };
    json!({
        "channel": channel,
        "text": cut(&text, SECTION_MAX),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_MAX)}})
}

fn alert_lines(n: &Notification) -> String {
    let mut out = String::from("*Alerts:*");
    let mut shown = 0;
    for a in n.alerts.iter().take(ALERTS_SHOWN) {
        let line = format!("\n{}", alert_line(a, n));
        // Leave room for the "and N more" line.
        if out.len() + line.len() > SECTION_MAX - 60 {
            break;
        }
        out.push_str(&line);
        shown += 1;
    }
    let more = (n.alerts.len() - shown) as u64 + n.truncated_alerts;
    if more > 0 {
        out.push_str(&format!("\n_and {more} more_"));
    }
    out
}

fn alert_line(a: &Alert, n: &Notification) -> String {
    // Labels that differ from the common ones tell the alerts apart.
    let distinct: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| n.common_labels.get(k).is_none())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut line = format!("• *{}*", a.status);
    if !distinct.is_empty() {
        line.push_str(&format!(
            " `{}`",
            escape(&distinct.join(", ")).replace('`', "'")
        ));
    }
    if let Some(s) = a
        .annotations
        .get("summary")
        .filter(|s| Some(*s) != n.common_annotations.get("summary"))
    {
        line.push_str(&format!(" {}", escape(s)));
    }
    if let Some(url) = link_url(&a.generator_url) {
        line.push_str(&format!(" <{url}|source>"));
    }
    line
}

fn links(n: &Notification) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(url) = n.annotation("runbook_url").and_then(link_url) {
        out.push(format!("<{url}|:book: Runbook>"));
    }
    if let Some(url) = n.alerts.first().and_then(|a| link_url(&a.generator_url)) {
        out.push(format!("<{url}|:chart_with_upwards_trend: Source>"));
    }
    if n.status == Status::Firing {
        if let Some(url) = silence_url(n).as_deref().and_then(link_url) {
            out.push(format!("<{url}|:no_bell: Silence>"));
        }
    }
    out
}

/// Only http(s) URLs, and only those that cannot break Slack's `<url|text>` syntax.
fn link_url(url: &str) -> Option<&str> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.contains(['<', '>', '|', ' ', '\n']);
    ok.then_some(url)
}

/// Slack mrkdwn control characters: <https://docs.slack.dev/messaging/formatting-message-text#escaping>
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire::fixture;

    fn all_text(v: &Value) -> String {
        v.to_string()
    }

    #[test]
    fn a_firing_message_has_title_severity_summary_and_links() {
        let n = fixture("primary-down-firing");
        let m = build(&n, "#ops");
        assert_eq!(m["channel"], "#ops");
        assert_eq!(m["blocks"][0]["text"]["text"], "[FIRING:1] PrimaryDown");
        let text = all_text(&m);
        assert!(text.contains("*Severity:* critical"), "{text}");
        assert!(text.contains("|source>"), "{text}");
        assert!(
            text.contains("/#/silences/new?filter=%7Balertname%3D%22PrimaryDown%22"),
            "{text}"
        );
        assert!(m["text"]
            .as_str()
            .unwrap()
            .starts_with("[FIRING:1] PrimaryDown"));
    }

    #[test]
    fn a_resolved_message_offers_no_silence() {
        let m = build(&fixture("primary-down-resolved"), "#ops");
        assert_eq!(m["blocks"][0]["text"]["text"], "[RESOLVED:1] PrimaryDown");
        assert!(!all_text(&m).contains("silences/new"));
    }

    #[test]
    fn a_truncated_notification_says_so() {
        let m = build(&fixture("truncated-max-alerts"), "#ops");
        let text = all_text(&m);
        assert!(text.contains("left 2 more alert(s) out"), "{text}");
        assert!(text.contains("_and 2 more_"), "{text}");
    }

    #[test]
    fn many_alerts_are_capped_within_slack_limits() {
        let mut n = fixture("group-firing-3-alerts");
        let template = n.alerts[0].clone();
        n.alerts = (0..500)
            .map(|i| {
                let mut a = template.clone();
                a.labels.insert("item", format!("{i}-{}", "x".repeat(200)));
                a
            })
            .collect();
        let m = build(&n, "#ops");
        for b in m["blocks"].as_array().unwrap() {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(t.chars().count() <= SECTION_MAX);
            }
        }
        assert!(all_text(&m).contains("more_"));
        assert!(m["blocks"].as_array().unwrap().len() <= 50);
    }

    #[test]
    fn labels_cannot_inject_slack_markup() {
        let mut n = fixture("primary-down-firing");
        n.common_annotations
            .insert("summary", "<!channel> <http://evil|click> & more");
        n.alerts[0].generator_url = "http://x|evil>".into();
        let text = all_text(&build(&n, "#ops"));
        assert!(!text.contains("<!channel>"), "{text}");
        assert!(text.contains("&lt;!channel&gt;"), "{text}");
        assert!(!text.contains("http://x|evil"), "{text}");
    }
}
