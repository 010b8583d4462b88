//! The HTTP front: auth, limits, bad input, dedup, a full outbox.

use std::time::Duration;

use crate::fakes::Fake;
use crate::helpers::*;

const CONSOLE: &str =
    "[[channels]]\nname = \"console\"\nkind = \"console\"\n[[routes]]\nchannels = [\"console\"]\n";

async fn app_with_server(server: &str) -> TestApp {
    spawn_app(&format!("[server]\n{server}\n{CONSOLE}")).await
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = app_with_server("").await;
    for path in ["/healthz", "/readyz"] {
        let status = app.client.get(app.url(path)).send().await.unwrap().status();
        assert_eq!(status, 200, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn bearer_auth_as_alertmanager_sends_it_is_required() {
    let app = app_with_server("bearer_token_file = \"{dir}/bearer.token\"").await;
    let body = notification("auth-bearer", "bearer");
    let (status, json) = app.post_with(body.clone(), None).await;
    assert_eq!(status, 401, "{json}");
    assert!(json["error"].as_str().unwrap().contains("Authorization"));
    assert_eq!(
        app.post_with(body.clone(), Some("wrong-token")).await.0,
        401
    );
    // Exactly the header the fixture's Alertmanager sent.
    let (status, json) = app.post_with(body, Some(BEARER)).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        app.metric("amrelay_webhooks_rejected_total{reason=\"unauthorized\"}")
            .await,
        2.0
    );
    app.stop().await;
}

#[tokio::test]
async fn basic_auth_as_alertmanager_sends_it_is_required() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("am.password"), "ampass\n").unwrap();
    let app = spawn_app_in(
        dir,
        &format!("[server]\nbasic_auth = {{ username = \"amuser\", password_file = \"{{dir}}/am.password\" }}\n{CONSOLE}"),
    )
    .await;
    let send = |auth: Option<&'static str>| {
        let mut req = app
            .client
            .post(app.url("/webhook/alertmanager"))
            .body(notification("auth-basic", "basic"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 401);
    assert_eq!(
        send(Some("Basic YW11c2VyOndyb25n")).await.unwrap().status(),
        401
    );
    // The header from the shared fixtures' index.json.
    assert_eq!(
        send(Some("Basic YW11c2VyOmFtcGFzcw=="))
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_max_body_gets_413() {
    let app = app_with_server("max_body = \"1KiB\"").await;
    let (status, json) = app.post_with(fixture("group-firing-3-alerts"), None).await;
    assert_eq!(status, 413, "{json}");
    assert!(json["error"].as_str().unwrap().contains("server.max_body"));
    let (status, _) = app
        .post_with(fixture("primary-down-firing")[..].to_vec(), None)
        .await;
    assert_eq!(status, 413, "1268 bytes is over 1 KiB too");
    app.stop().await;
}

#[tokio::test]
async fn bad_payloads_get_400_naming_the_problem() {
    let app = app_with_server("").await;
    let mut wrong_version: serde_json::Value =
        serde_json::from_slice(&fixture("primary-down-firing")).unwrap();
    wrong_version["version"] = "3".into();
    let mut no_group_key = wrong_version.clone();
    no_group_key["version"] = "4".into();
    no_group_key.as_object_mut().unwrap().remove("groupKey");
    // An unknown field holding a byte that is not UTF-8: the rest parses.
    let mut not_utf8 = fixture("primary-down-firing");
    let at = not_utf8.iter().rposition(|&b| b == b'}').unwrap();
    not_utf8.splice(at..at, b",\"future\":\"caf\xff\"".iter().copied());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"{not json".to_vec(),
            "not a valid Alertmanager webhook payload",
        ),
        (serde_json::to_vec(&wrong_version).unwrap(), "version \"3\""),
        (serde_json::to_vec(&no_group_key).unwrap(), "groupKey"),
        (not_utf8, "body is not UTF-8"),
    ];
    for (body, want) in cases {
        let (status, json) = app.post_with(body, None).await;
        assert_eq!(status, 400, "{json}");
        assert!(
            json["error"].as_str().unwrap().contains(want),
            "{json} should say {want}"
        );
    }
    assert_eq!(
        app.metric("amrelay_webhooks_rejected_total{reason=\"bad_payload\"}")
            .await,
        4.0
    );
    app.stop().await;
}

#[tokio::test]
async fn the_second_ha_instance_is_acknowledged_but_not_delivered_again() {
    let slack = Fake::slack().await;
    let app = spawn_app(&slack_config(&slack.slack_api_url(), "")).await;
    let (s1, j1) = app.post(fixture("retry-after-500-first-instance")).await;
    let (s2, j2) = app.post(fixture("retry-after-500-second-instance")).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(j1["status"], "accepted");
    assert_eq!(j2["status"], "duplicate");
    // A changed alert set (the resolve) is new.
    let (_, j3) = app.post(fixture("primary-down-resolved")).await;
    assert_eq!(j3["status"], "accepted");
    app.wait_metric(
        "amrelay_deliveries_delivered_total{channel=\"ops-slack\"}",
        2.0,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(slack.accepted().len(), 2);
    assert_eq!(
        app.metric("amrelay_notifications_deduplicated_total").await,
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn dedup_state_survives_a_restart() {
    let app = app_with_server("").await;
    assert_eq!(
        app.post_with(fixture("primary-down-firing"), None).await.1["status"],
        "accepted"
    );
    let dir = app.stop().await;
    let app = spawn_app_in(dir, CONSOLE).await;
    assert_eq!(
        app.post_with(fixture("primary-down-firing"), None).await.1["status"],
        "duplicate"
    );
    app.stop().await;
}
