//! Links every message format offers: the alert's source, its runbook, a silence.

use crate::domain::Notification;

/// Alertmanager UI's "new silence" page, pre-filled with the common labels.
pub(crate) fn silence_url(n: &Notification) -> Option<String> {
    let base = n.external_url.trim_end_matches('/');
    if base.is_empty() || n.common_labels.is_empty() {
        return None;
    }
    let filter = n
        .common_labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",");
    let encoded: String = reqwest::Url::parse("http://x/")
        .ok()
        .map(|mut u| {
            u.query_pairs_mut()
                .append_pair("filter", &format!("{{{filter}}}"));
            u.query().unwrap_or_default().to_owned()
        })
        .unwrap_or_default();
    Some(format!("{base}/#/silences/new?{encoded}"))
}

/// A URL fit to put in a message: http(s) only, without spaces or control characters.
pub(crate) fn web_url(url: &str) -> Option<&str> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(url)
}
