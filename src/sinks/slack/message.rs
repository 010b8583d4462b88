//! The Block Kit message: status, alertname, severity, summary and description, the
//! alerts (capped, with "and N more"), and links to the source, runbook and a silence.
//!
//! Every text is cut to Slack's limits, so no input (a 3 KB stack trace in a summary, a
//! 4 KB runbook URL) can make Slack refuse the message with `invalid_blocks`, which is
//! permanent. The limits, from <https://docs.slack.dev/reference/block-kit/blocks>:
//! - at most 50 blocks in a message;
//! - header: `plain_text`, at most 150 characters
//!   (<https://docs.slack.dev/reference/block-kit/blocks/header-block>);
//! - section: text at most 3000 characters
//!   (<https://docs.slack.dev/reference/block-kit/blocks/section-block>);
//! - context: at most 10 elements, each a text object of at most 3000 characters
//!   (<https://docs.slack.dev/reference/block-kit/blocks/context-block>,
//!   <https://docs.slack.dev/reference/block-kit/composition-objects/text-object>).
//!
//! A URL cannot be cut, so a link too long for its block is named without its URL.

use serde_json::{json, Value};

use crate::domain::{Alert, Notification, Status};
use crate::sinks::links::silence_url;

pub(crate) const HEADER_MAX: usize = 150;
/// A section's text, and a context element's.
pub(crate) const TEXT_MAX: usize = 3000;
/// Alerts listed one per line; the rest are counted.
const ALERTS_SHOWN: usize = 10;
/// The summary's share of its section; the description gets the rest.
const SUMMARY_MAX: usize = 1000;
/// The labels that tell one alert from the others, in its line.
const ALERT_LABELS_MAX: usize = 120;
/// Room kept for the "_and N more_" line.
const MORE_LINE_MAX: usize = 40;

pub(crate) fn build(n: &Notification, channel: &str) -> Value {
    let icon = match n.status {
        Status::Firing => ":red_circle:",
        Status::Resolved => ":large_green_circle:",
    };
    let title = n.title();
    let mut fields = Vec::new();
    if let Some(sev) = n.common_labels.get("severity") {
        fields.push(format!("*Severity:* {}", escape_cut(sev, 100)));
    }
    fields.push(format!("*Receiver:* {}", escape_cut(&n.receiver, 200)));
    let mut summary = format!("{icon} {}", fields.join("    "));
    if let Some(s) = n.annotation("summary") {
        summary.push_str(&format!("\n*Summary:* {}", escape_cut(s, SUMMARY_MAX)));
    }
    if let Some(d) = n.annotation("description") {
        let room = TEXT_MAX.saturating_sub(summary.chars().count() + "\n*Description:* ".len());
        summary.push_str(&format!("\n*Description:* {}", escape_cut(d, room)));
    }

    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&title, HEADER_MAX), "emoji": true}}),
        section(&summary),
        section(&alert_lines(n)),
    ];
    if n.truncated_alerts > 0 {
        blocks.push(context(&format!(
            ":warning: Alertmanager left {} more alert(s) out of this notification (max_alerts).",
            n.truncated_alerts
        )));
    }
    let links = links(n);
    if !links.is_empty() {
        blocks.push(context(&links));
    }
    let text = match n.annotation("summary") {
        Some(s) => format!("{title}: {}", escape_cut(s, TEXT_MAX)),
        None => title,
    };
    json!({
        "channel": channel,
        "text": cut(&text, TEXT_MAX),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

/// The texts given are within the limit already; the cut is a last guard.
fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(text, TEXT_MAX)}})
}

fn context(text: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(text, TEXT_MAX)}]})
}

/// Up to ten alerts, one line each. Each gets an equal share of the section, and its
/// line is cut to that share, so a long summary shortens its line instead of pushing the
/// alert out.
fn alert_lines(n: &Notification) -> String {
    let mut out = String::from("*Alerts:*");
    let shown = n.alerts.len().min(ALERTS_SHOWN);
    if let Some(share) = (TEXT_MAX - out.len() - MORE_LINE_MAX).checked_div(shown) {
        for a in &n.alerts[..shown] {
            out.push('\n');
            out.push_str(&alert_line(a, n, share - 1));
        }
    }
    let more = (n.alerts.len() - shown) as u64 + n.truncated_alerts;
    if more > 0 {
        out.push_str(&format!("\n_and {more} more_"));
    }
    out
}

/// One alert in at most `max` characters: status, distinguishing labels, summary, and
/// the source link when it fits whole.
fn alert_line(a: &Alert, n: &Notification, max: usize) -> String {
    // Labels that differ from the common ones tell the alerts apart.
    let distinct: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| n.common_labels.get(k).is_none())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut line = format!("• *{}*", a.status);
    if !distinct.is_empty() {
        let labels = distinct.join(", ").replace('`', "'");
        line.push_str(&format!(" `{}`", escape_cut(&labels, ALERT_LABELS_MAX)));
    }
    let link = link_url(&a.generator_url)
        .map(|url| format!(" <{url}|source>"))
        .filter(|l| line.chars().count() + l.chars().count() <= max)
        .unwrap_or_default();
    if let Some(s) = a
        .annotations
        .get("summary")
        .filter(|s| Some(*s) != n.common_annotations.get("summary"))
    {
        let room = max.saturating_sub(line.chars().count() + link.chars().count() + 1);
        if room > 1 {
            line.push(' ');
            line.push_str(&escape_cut(s, room));
        }
    }
    line.push_str(&link);
    line
}

/// The links context element: runbook, source, silence. Each link whose URL does not fit
/// in what is left of the element's 3000 characters is named, without its URL.
fn links(n: &Notification) -> String {
    let mut candidates: Vec<(&str, Option<String>)> = Vec::new();
    if let Some(url) = n.annotation("runbook_url") {
        candidates.push((":book: Runbook", link_url(url).map(str::to_owned)));
    }
    if let Some(url) = n.alerts.first().and_then(|a| link_url(&a.generator_url)) {
        candidates.push((":chart_with_upwards_trend: Source", Some(url.to_owned())));
    }
    if n.status == Status::Firing {
        if let Some(url) = silence_url(n).filter(|u| link_url(u).is_some()) {
            candidates.push((":no_bell: Silence", Some(url)));
        }
    }
    const SEP: &str = "  |  ";
    // What the labels alone take, so every link is at least named.
    let mut left = TEXT_MAX
        - candidates
            .iter()
            .map(|(label, _)| label.len() + SEP.len() + " (URL too long for Slack)".len())
            .sum::<usize>();
    let mut out = Vec::new();
    for (label, url) in candidates {
        let Some(url) = url else { continue };
        let link = format!("<{url}|{label}>");
        if link.chars().count() <= left + label.len() {
            left -= link.chars().count() - label.len();
            out.push(link);
        } else {
            out.push(format!("{label} (URL too long for Slack)"));
        }
    }
    out.join(SEP)
}

/// Only http(s) URLs, and only those that cannot break Slack's `<url|text>` syntax.
fn link_url(url: &str) -> Option<&str> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.contains(['<', '>', '|', ' ', '\n']);
    ok.then_some(url)
}

/// Slack mrkdwn control characters: <https://docs.slack.dev/messaging/formatting-message-text#escaping>
fn escape_char(c: char) -> Option<&'static str> {
    match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    }
}

/// `s` escaped for mrkdwn in at most `max` characters (an escape counts as its length,
/// and is never cut in two), ending in `…` when cut.
fn escape_cut(s: &str, max: usize) -> String {
    let width = |c: char| escape_char(c).map_or(1, str::len);
    if s.chars().map(width).sum::<usize>() <= max {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match escape_char(c) {
                Some(e) => out.push_str(e),
                None => out.push(c),
            }
        }
        return out;
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        if used + width(c) > max.saturating_sub(1) {
            break;
        }
        used += width(c);
        match escape_char(c) {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
    }
    if max > 0 {
        out.push('…');
    }
    out
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

    /// Every limit of Slack's Block Kit reference that this message's blocks can meet
    /// (see the module's doc for the pages).
    fn assert_within_block_kit_limits(m: &Value) {
        let blocks = m["blocks"].as_array().unwrap();
        assert!(
            !blocks.is_empty() && blocks.len() <= 50,
            "{} blocks",
            blocks.len()
        );
        for b in blocks {
            let chars = |v: &Value| v.as_str().unwrap().chars().count();
            match b["type"].as_str().unwrap() {
                "header" => {
                    assert_eq!(b["text"]["type"], "plain_text");
                    let n = chars(&b["text"]["text"]);
                    assert!((1..=HEADER_MAX).contains(&n), "header: {n} characters");
                }
                "section" => {
                    let n = chars(&b["text"]["text"]);
                    assert!((1..=TEXT_MAX).contains(&n), "section: {n} characters");
                }
                "context" => {
                    let elements = b["elements"].as_array().unwrap();
                    assert!((1..=10).contains(&elements.len()));
                    for e in elements {
                        let n = chars(&e["text"]);
                        assert!((1..=TEXT_MAX).contains(&n), "context: {n} characters");
                    }
                }
                other => panic!("a block type the limits were not checked for: {other}"),
            }
        }
        // The notification text (Slack truncates past 40,000; amrelay keeps 3000).
        assert!(m["text"].as_str().unwrap().chars().count() <= TEXT_MAX);
        // Undocumented: Slack answers msg_blocks_too_long to messages whose blocks hold
        // about 13,000 characters in all (slackapi/bolt-js#2509). Stay well below.
        let total: usize = blocks.iter().map(|b| b.to_string().chars().count()).sum();
        assert!(total <= 12_500, "blocks hold {total} characters");
    }

    #[test]
    fn every_block_kit_limit_holds_for_300_alerts_4kb_urls_and_3kb_annotations() {
        let mut n = fixture("group-firing-3-alerts");
        let long_url = |what: &str| format!("https://example.com/{what}/{}", "u".repeat(4096));
        let trace = |what: &str| format!("{what}: {}", "panic at frame <0x1f> & ".repeat(128));
        n.external_url = long_url("alertmanager");
        n.common_annotations
            .insert("runbook_url", long_url("runbook"));
        n.common_annotations.insert("summary", trace("summary"));
        n.common_annotations
            .insert("description", trace("description"));
        n.common_labels.insert("severity", "critical ".repeat(400));
        n.receiver = "r".repeat(3000);
        n.group_labels.insert("alertname", "A".repeat(400));
        let template = n.alerts[0].clone();
        n.alerts = (0..300)
            .map(|i| {
                let mut a = template.clone();
                a.labels.insert("item", format!("{i}-{}", "x".repeat(3000)));
                a.annotations
                    .insert("summary", trace(&format!("alert {i}")));
                a.generator_url = long_url("graph");
                a
            })
            .collect();
        n.truncated_alerts = 12;
        let m = build(&n, "#ops");
        assert_within_block_kit_limits(&m);
        let alerts = m["blocks"][2]["text"]["text"].as_str().unwrap();
        // Ten alerts shown, each with its own line, and the rest counted.
        assert_eq!(alerts.matches("\n• *firing*").count(), 10, "{alerts}");
        assert!(alerts.ends_with("\n_and 302 more_"), "{alerts}");
        assert!(alerts.contains("`item=0-xxx"), "{alerts}");
        // No escape cut in two.
        for block in m["blocks"].as_array().unwrap() {
            let t = block.to_string();
            assert!(!t.contains("&am…") && !t.contains("&l…") && !t.contains("&g…"));
        }
        // The links that do not fit are named, never cut.
        let links = m["blocks"][4]["elements"][0]["text"].as_str().unwrap();
        assert!(
            links.contains(":book: Runbook (URL too long for Slack)"),
            "{links}"
        );
        assert!(!links.contains("uuu…"), "{links}");
    }

    #[test]
    fn a_long_summary_shortens_each_alert_line_instead_of_hiding_the_alerts() {
        let mut n = fixture("group-firing-3-alerts");
        for (i, a) in n.alerts.iter_mut().enumerate() {
            a.annotations.insert(
                "summary",
                format!("stack trace {i}: {}", "at frame ".repeat(340)),
            );
        }
        let m = build(&n, "#ops");
        assert_within_block_kit_limits(&m);
        let alerts = m["blocks"][2]["text"]["text"].as_str().unwrap();
        assert_eq!(alerts.matches("\n• *firing*").count(), 3, "{alerts}");
        for i in 0..3 {
            assert!(
                alerts.contains(&format!("stack trace {i}: at frame")),
                "{alerts}"
            );
        }
        assert!(!alerts.contains("more_"), "{alerts}");
        // Their short source links still fit.
        assert_eq!(alerts.matches("|source>").count(), 3, "{alerts}");
    }

    #[test]
    fn links_that_fit_stay_whole_beside_one_that_does_not() {
        let mut n = fixture("primary-down-firing");
        n.common_annotations
            .insert("runbook_url", format!("https://wiki/{}", "r".repeat(4096)));
        let m = build(&n, "#ops");
        assert_within_block_kit_limits(&m);
        let links = m["blocks"].as_array().unwrap().last().unwrap()["elements"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            links.starts_with(":book: Runbook (URL too long for Slack)  |  <http"),
            "{links}"
        );
        assert!(links.contains("|:no_bell: Silence>"), "{links}");
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
