//! The `amrelay.v1` JSON schema (documented in docs/webhook-schema.md). Field names follow
//! Alertmanager's own, so existing consumers read it easily; new fields may be added,
//! none removed or renamed within v1.

use serde::Serialize;

use crate::domain::{Alert, LabelSet, Status};
use crate::sinks::Delivery;

pub(crate) const SCHEMA: &str = "amrelay.v1";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V1<'a> {
    schema: &'static str,
    delivery_id: i64,
    attempt: u32,
    receiver: &'a str,
    status: Status,
    title: String,
    group_key: &'a str,
    group_labels: &'a LabelSet,
    common_labels: &'a LabelSet,
    common_annotations: &'a LabelSet,
    #[serde(rename = "externalURL")]
    external_url: &'a str,
    truncated_alerts: u64,
    alerts: Vec<V1Alert<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V1Alert<'a> {
    status: Status,
    labels: &'a LabelSet,
    annotations: &'a LabelSet,
    starts_at: String,
    ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
    fingerprint: &'a str,
}

fn alert(a: &Alert) -> V1Alert<'_> {
    V1Alert {
        status: a.status,
        labels: &a.labels,
        annotations: &a.annotations,
        starts_at: a
            .starts_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        ends_at: a
            .ends_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        generator_url: &a.generator_url,
        fingerprint: a.fingerprint.as_str(),
    }
}

pub(crate) fn body(d: &Delivery<'_>) -> serde_json::Result<Vec<u8>> {
    let n = d.notification;
    // About what a body of this many alerts takes: the buffer is not regrown while writing.
    let mut out = Vec::with_capacity(1024 + 768 * n.alerts.len());
    serde_json::to_writer(
        &mut out,
        &V1 {
            schema: SCHEMA,
            delivery_id: d.id,
            attempt: d.attempt,
            receiver: &n.receiver,
            status: n.status,
            title: n.title(),
            group_key: &n.group_key,
            group_labels: &n.group_labels,
            common_labels: &n.common_labels,
            common_annotations: &n.common_annotations,
            external_url: &n.external_url,
            truncated_alerts: n.truncated_alerts,
            alerts: n.alerts.iter().map(alert).collect(),
        },
    )?;
    Ok(out)
}
