//! One email per notification: subject, plain text and HTML from minijinja templates,
//! shipped as defaults (`templates/`) and overridable per channel.
//!
//! Labels and annotations come from whoever wrote the alert rule, so they are untrusted:
//! the HTML template escapes everything (minijinja's auto-escape for `.html`), links are
//! only http(s), and the subject loses control characters, so that no label can add a
//! header or break the markup.

use std::sync::Arc;

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

use crate::domain::{LabelSet, Notification, Status};
use crate::sinks::links::{silence_url, web_url};

const SUBJECT: &str = include_str!("templates/subject.txt");
const TEXT: &str = include_str!("templates/body.txt");
const HTML: &str = include_str!("templates/body.html");
/// Long enough for any sane subject; mail clients cut far sooner.
const SUBJECT_MAX: usize = 250;

/// A channel's compiled templates.
#[derive(Clone)]
pub(crate) struct Templates(Arc<Environment<'static>>);

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

/// What a notification becomes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Templates {
    /// The shipped defaults, each replaceable. Err names the template that does not compile.
    pub(crate) fn compile(
        subject: Option<String>,
        text: Option<String>,
        html: Option<String>,
    ) -> Result<Templates, (&'static str, String)> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        // Escape what can break out of text or a quoted attribute, and leave `/` alone so
        // that links stay readable in the source mail clients show.
        env.set_formatter(
            |out, state, value| match (state.auto_escape(), value.as_str()) {
                (AutoEscape::Html, Some(s)) if !value.is_safe() => out
                    .write_str(&html_escape(s))
                    .map_err(minijinja::Error::from),
                _ => minijinja::escape_formatter(out, state, value),
            },
        );
        for (which, name, source) in [
            (
                "subject",
                "subject.txt",
                subject.unwrap_or_else(|| SUBJECT.into()),
            ),
            ("text", "body.txt", text.unwrap_or_else(|| TEXT.into())),
            ("html", "body.html", html.unwrap_or_else(|| HTML.into())),
        ] {
            env.add_template_owned(name, source)
                .map_err(|e| (which, format!("template does not compile: {e:#}")))?;
        }
        Ok(Templates(Arc::new(env)))
    }

    pub(crate) fn render(&self, n: &Notification, test: bool) -> Result<Rendered, String> {
        let mut ctx = Context::of(n, test);
        let render = |name: &str, ctx: &minijinja::Value| {
            self.0
                .get_template(name)
                .and_then(|t| t.render(ctx))
                .map_err(|e| format!("{name}: {e:#}"))
        };
        let subject = clean_subject(&render(
            "subject.txt",
            &minijinja::Value::from(minijinja::value::Serde(&ctx)),
        )?);
        // Whatever the template, a drill's email says so first.
        let subject = match n.drill() {
            Some(_) => format!("[DRILL] {subject}"),
            None => subject,
        };
        ctx.subject = subject.clone();
        let ctx = minijinja::Value::from(minijinja::value::Serde(&ctx));
        Ok(Rendered {
            text: render("body.txt", &ctx)?,
            html: render("body.html", &ctx)?,
            subject,
        })
    }
}

/// What templates see. Documented in the README; keep the names stable.
#[derive(Serialize)]
struct Context<'a> {
    status: &'static str,
    /// The rendered subject, for the bodies.
    subject: String,
    receiver: &'a str,
    alertname: &'a str,
    firing: usize,
    resolved: usize,
    truncated_alerts: u64,
    /// Values of the group labels (or the alert name when there are none).
    group_values: Vec<&'a str>,
    /// Values of the common labels that are not group labels.
    extra_values: Vec<&'a str>,
    group_labels: &'a LabelSet,
    common_labels: &'a LabelSet,
    common_annotations: &'a LabelSet,
    external_url: Option<&'a str>,
    runbook_url: Option<&'a str>,
    silence_url: Option<String>,
    alerts: Vec<AlertContext<'a>>,
    /// Set for `amrelay send-test`.
    test: bool,
}

#[derive(Serialize)]
struct AlertContext<'a> {
    status: &'static str,
    labels: &'a LabelSet,
    annotations: &'a LabelSet,
    starts_at: String,
    ends_at: Option<String>,
    generator_url: Option<&'a str>,
    fingerprint: &'a str,
}

impl<'a> Context<'a> {
    fn of(n: &'a Notification, test: bool) -> Self {
        let mut group_values: Vec<&str> = n.group_labels.iter().map(|(_, v)| v).collect();
        if group_values.is_empty() {
            group_values.push(n.alert_name());
        }
        let extra_values = n
            .common_labels
            .iter()
            .filter(|(k, _)| n.group_labels.get(k).is_none())
            .map(|(_, v)| v)
            .collect();
        let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        Context {
            status: n.status.as_str(),
            subject: String::new(),
            receiver: &n.receiver,
            alertname: n.alert_name(),
            firing: n.count(Status::Firing),
            resolved: n.count(Status::Resolved),
            truncated_alerts: n.truncated_alerts,
            group_values,
            extra_values,
            group_labels: &n.group_labels,
            common_labels: &n.common_labels,
            common_annotations: &n.common_annotations,
            external_url: web_url(&n.external_url),
            runbook_url: n.annotation("runbook_url").and_then(web_url),
            silence_url: (n.status == Status::Firing)
                .then(|| silence_url(n))
                .flatten()
                .filter(|u| web_url(u).is_some()),
            alerts: n
                .alerts
                .iter()
                .map(|a| AlertContext {
                    status: a.status.as_str(),
                    labels: &a.labels,
                    annotations: &a.annotations,
                    starts_at: time(a.starts_at),
                    ends_at: a.ends_at.map(time),
                    generator_url: web_url(&a.generator_url),
                    fingerprint: a.fingerprint.as_str(),
                })
                .collect(),
            test,
        }
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line, no control characters (a CR or LF from a label would start a new header),
/// runs of whitespace folded, cut at a sane length.
fn clean_subject(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    match out.char_indices().nth(SUBJECT_MAX) {
        Some((i, _)) => format!("{}...", &out[..i]),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire::fixture;

    fn defaults() -> Templates {
        Templates::compile(None, None, None).unwrap()
    }

    fn firing() -> Notification {
        fixture("group-firing-3-alerts")
    }

    #[test]
    fn subject_in_alertmanagers_shape() {
        let n = firing();
        let r = defaults().render(&n, false).unwrap();
        let firing = n.count(Status::Firing);
        assert!(
            r.subject.starts_with(&format!("[FIRING:{firing}] ")),
            "{}",
            r.subject
        );
        for (_, v) in n.group_labels.iter() {
            assert!(r.subject.contains(v), "{} lacks {v}", r.subject);
        }
    }

    #[test]
    fn the_subject_counts_the_alerts_alertmanager_left_out_as_the_title_does() {
        let n = fixture("truncated-max-alerts");
        assert_eq!((n.alerts.len(), n.truncated_alerts), (2, 2));
        let r = defaults().render(&n, false).unwrap();
        assert!(r.subject.starts_with("[FIRING:4] "), "{}", r.subject);
        assert!(n.title().starts_with("[FIRING:4] "));
    }

    #[test]
    fn bodies_carry_labels_annotations_and_links() {
        let n = firing();
        let r = defaults().render(&n, false).unwrap();
        for a in &n.alerts {
            for (k, v) in a.labels.iter() {
                assert!(r.text.contains(&format!("{k} = {v}")), "text lacks {k}");
            }
        }
        assert!(r.text.contains("Silence: "), "{}", r.text);
        assert!(r.html.contains("silences/new"), "{}", r.html);
        assert!(r.html.contains("<h2 style=\"color: #b00020;\">"));
    }

    #[test]
    fn labels_cannot_add_headers_or_markup() {
        let mut n = firing();
        n.group_labels
            .insert("alertname", "Evil\r\nBcc: victim@example.com\r\n\r\nbody");
        n.alerts[0]
            .labels
            .insert("instance", "<script>alert(1)</script>\"><img src=x>");
        n.alerts[0]
            .annotations
            .insert("summary", "<a href=\"javascript:alert(1)\">x</a>");
        n.common_annotations
            .insert("runbook_url", "javascript:alert(1)");
        let r = defaults().render(&n, false).unwrap();
        assert!(!r.subject.contains(['\r', '\n']), "{:?}", r.subject);
        assert!(r.subject.contains("Evil Bcc: victim@example.com body"));
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r.html.contains("&lt;script&gt;"), "{}", r.html);
        assert!(!r.html.contains("<img"), "{}", r.html);
        assert!(!r.html.contains("href=\"javascript:"), "{}", r.html);
        assert!(!r.text.contains("Runbook: javascript:"), "{}", r.text);
    }

    #[test]
    fn resolved_offers_no_silence() {
        let n: Notification = fixture("group-resolved");
        let r = defaults().render(&n, false).unwrap();
        assert!(r.subject.starts_with("[RESOLVED] "), "{}", r.subject);
        assert!(!r.text.contains("Silence:"));
    }

    #[test]
    fn a_test_message_says_so() {
        let r = defaults().render(&firing(), true).unwrap();
        assert!(r.text.starts_with("This is a TEST message"));
        assert!(r.html.contains("<strong>TEST</strong>"));
    }

    #[test]
    fn overrides_replace_the_defaults_and_bad_ones_are_named() {
        let t = Templates::compile(
            Some("{{ alertname }} on {{ common_labels.instance }}".into()),
            Some("text {{ firing }}".into()),
            None,
        )
        .unwrap();
        let n = firing();
        let r = t.render(&n, false).unwrap();
        assert_eq!(r.text, format!("text {}", n.count(Status::Firing)));
        assert!(r.subject.starts_with(n.alert_name()));
        let err = Templates::compile(None, None, Some("{% for %}".into())).unwrap_err();
        assert_eq!(err.0, "html");
    }

    #[test]
    fn long_subjects_are_cut() {
        let s = clean_subject(&"x ".repeat(400));
        assert!(s.len() <= SUBJECT_MAX + 3, "{}", s.len());
        assert!(s.ends_with("..."));
    }
}
