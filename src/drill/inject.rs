//! The drill's alerts, and how they go in: through Alertmanager's API (`POST
//! /api/v2/alerts`, as Prometheus sends them: the real routing path), or as Alertmanager
//! webhooks to this amrelay. The labels are those the route to the promotion channel
//! asks for (its `=` matchers), on a `PrimaryDown` for the target, plus the drill's mark;
//! one alert per monitor when the channel's quorum needs several.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use reqwest::Url;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::config::{HttpAuth, PromotionSettings, Settings};
use crate::domain::{wire, LabelSet, Notification, Status, DRILL_LABEL};
use crate::pipeline::route::RECEIVER_LABEL;
use crate::pipeline::Routes;

/// An Alertmanager webhook's receiver, when the route names none.
const RECEIVER: &str = "drill";

pub(super) struct Plan {
    pub alert_name: String,
    /// One label set per alert (per monitor).
    pub alerts: Vec<LabelSet>,
    pub annotations: LabelSet,
    pub receiver: String,
    pub starts_at: DateTime<Utc>,
    /// Why the alerts would not reach the promotion channel, found before sending.
    pub problem: Option<String>,
}

impl Plan {
    pub(super) fn describe(&self) -> String {
        let labels = |l: &LabelSet| {
            l.iter()
                .filter(|(k, _)| *k != DRILL_LABEL)
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{} alert(s): {}",
            self.alerts.len(),
            self.alerts
                .iter()
                .map(|l| format!("{{{}}}", labels(l)))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }

    fn notification(&self, labels: &LabelSet, firing: bool) -> Notification {
        let group: Vec<&str> = labels.iter().map(|(k, _)| k).collect();
        let group_key = format!(
            "{{}}/drill:{{{}}}",
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut n = Notification::made_here(
            &self.receiver,
            group_key,
            &group,
            labels.clone(),
            self.annotations.clone(),
            self.starts_at,
        );
        if !firing {
            n.status = Status::Resolved;
            for a in &mut n.alerts {
                a.status = Status::Resolved;
                a.ends_at = Some(Utc::now());
            }
        }
        n
    }
}

pub(super) fn plan(s: &Settings, channel: &str, p: &PromotionSettings, id: &str) -> Plan {
    let mut base = LabelSet::default();
    base.insert("alertname", "PrimaryDown");
    base.insert("target", &p.target);
    base.insert("severity", "critical");
    let mut receiver = RECEIVER.to_owned();
    // The first route to the channel: what its `=` matchers ask for, the drill's alert has.
    if let Some(route) = s
        .routes
        .iter()
        .find(|r| r.channels.iter().any(|c| c == channel))
    {
        for m in &route.matchers {
            match (m.name(), m.equal_value()) {
                (RECEIVER_LABEL, Some(v)) => receiver = v.to_owned(),
                (name, Some(v)) => base.insert(name, v),
                _ => {}
            }
        }
    }
    base.insert(DRILL_LABEL, id);
    let alerts: Vec<LabelSet> = match &p.quorum {
        Some(q) => (1..=q.count)
            .map(|i| {
                let mut l = base.clone();
                l.insert(&q.label, format!("drill-{i}"));
                l
            })
            .collect(),
        None => vec![base.clone()],
    };
    let mut annotations = LabelSet::default();
    annotations.insert(
        "summary",
        format!(
            "[DRILL] {} down: failover drill {id}, not a real outage",
            p.target
        ),
    );
    let mut plan = Plan {
        alert_name: base.get("alertname").unwrap_or("PrimaryDown").to_owned(),
        alerts,
        annotations,
        receiver,
        starts_at: Utc::now(),
        problem: None,
    };
    // The drill proves the routes too: one that misses the channel fails the first step.
    let routes = Routes::new(s.routes.clone());
    for labels in &plan.alerts {
        let to = routes.route(&plan.notification(labels, true));
        if !to.iter().any(|c| c == channel) {
            plan.problem = Some(format!(
                "amrelay's [[routes]] send the drill's alert to [{}], not to promotion channel {channel}: the first route to {channel} needs `=` matchers (or none) for the drill to copy",
                to.join(", ")
            ));
            break;
        }
    }
    plan
}

/// As Alertmanager posts them, to this amrelay's webhook.
pub(super) async fn to_webhook(
    client: &reqwest::Client,
    url: &Url,
    auth: Option<&HttpAuth>,
    plan: &Plan,
    firing: bool,
) -> Result<String, String> {
    if let Some(p) = &plan.problem {
        return Err(p.clone());
    }
    for labels in &plan.alerts {
        let body = wire::encode(&plan.notification(labels, firing));
        let mut req = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(std::time::Duration::from_secs(10))
            .body(body);
        req = match auth {
            Some(HttpAuth::Bearer(t)) => req.bearer_auth(t.expose_secret()),
            Some(HttpAuth::Basic { username, password }) => {
                req.basic_auth(username, Some(password.expose_secret()))
            }
            None => req,
        };
        let r = req
            .send()
            .await
            .map_err(|e| format!("posting to {url}: {}", crate::net::http::describe(&e)))?;
        let status = r.status();
        if !status.is_success() {
            let text = r.text().await.unwrap_or_default();
            return Err(format!("{url} answered {status}: {}", text.trim()));
        }
    }
    Ok(format!(
        "{} {} notification(s) posted to {url}",
        plan.alerts.len(),
        if firing { "firing" } else { "resolved" }
    ))
}

/// Through each Alertmanager's API, as Prometheus sends alerts: firing until an hour
/// from now, or ending now.
pub(super) async fn to_alertmanagers(
    client: &reqwest::Client,
    alertmanagers: &[Url],
    plan: &Plan,
    firing: bool,
) -> Result<String, String> {
    if let Some(p) = &plan.problem {
        return Err(p.clone());
    }
    let ends_at = if firing {
        Utc::now() + ChronoDuration::hours(1)
    } else {
        Utc::now()
    };
    let labels = |l: &LabelSet| -> serde_json::Map<String, serde_json::Value> {
        l.iter().map(|(k, v)| (k.to_owned(), json!(v))).collect()
    };
    let body: Vec<serde_json::Value> = plan
        .alerts
        .iter()
        .map(|l| {
            json!({
                "labels": labels(l),
                "annotations": labels(&plan.annotations),
                "startsAt": plan.starts_at.to_rfc3339(),
                "endsAt": ends_at.to_rfc3339(),
                "generatorURL": "",
            })
        })
        .collect();
    for am in alertmanagers {
        let url = am.join("api/v2/alerts").map_err(|e| format!("{am}: {e}"))?;
        let r = client
            .post(url.clone())
            .json(&body)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("posting to {am}: {}", crate::net::http::describe(&e)))?;
        let status = r.status();
        if !status.is_success() {
            let text = r.text().await.unwrap_or_default();
            return Err(format!(
                "Alertmanager {am} answered {status}: {}",
                text.trim()
            ));
        }
    }
    Ok(format!(
        "{} {} alert(s) posted to {} Alertmanager(s)",
        plan.alerts.len(),
        if firing { "firing" } else { "resolved" },
        alertmanagers.len()
    ))
}
