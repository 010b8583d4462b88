//! Delivery against fakes: Slack's documented answers, retry, rate limit,
//! dead letters, order within a group, and webhook signatures (Retry-After and the
//! fallback, on both backends, are in `backends.rs`).

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::fakes::{Answer, Fake};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn slack_transient_errors_are_retried_until_accepted() {
    let slack = Fake::slack().await;
    slack.script([
        Answer::SlackError("internal_error"),
        Answer::Status(503),
        Answer::SlackError("service_unavailable"),
    ]);
    let app = spawn_app(&slack_config(&slack.slack_api_url(), "")).await;
    app.post(notification("primary-down-firing", "transient"))
        .await;
    app.wait_metric(
        "amrelay_deliveries_delivered_total{channel=\"ops-slack\"}",
        1.0,
        WAIT,
    )
    .await;
    assert_eq!(slack.received().len(), 4);
    assert_eq!(slack.accepted().len(), 1);
    assert_eq!(
        app.metric("amrelay_delivery_attempts_total{channel=\"ops-slack\",outcome=\"retryable\"}")
            .await,
        3.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_token_is_permanent_and_without_fallback_is_dead_lettered_until_requeued() {
    let slack = Fake::slack().await;
    let mut config = slack_config(&slack.slack_api_url(), "");
    config = config.replace("{dir}/slack.token", "{dir}/wrong.token");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wrong.token"), "xoxb-revoked").unwrap();
    let app = spawn_app_in(dir, &config).await;
    app.post(notification("primary-down-firing", "dead")).await;
    app.wait_metric(
        "amrelay_dead_lettered_total{channel=\"ops-slack\"}",
        1.0,
        WAIT,
    )
    .await;
    assert_eq!(slack.received().len(), 1);
    assert_eq!(slack.accepted().len(), 0);

    // The operator's commands, run while the server runs.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_amrelay"))
            .args(args)
            .arg("--config")
            .arg(app.dir.path().join("amrelay.toml"))
            .env("AMRELAY__STORAGE__PATH", store_path(app.dir.path()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = cli(&["dead-letters", "list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.contains("channel=ops-slack") && listed.contains("invalid_auth"),
        "{listed}"
    );
    assert!(listed.contains("[FIRING:1] PrimaryDown"), "{listed}");
    let id = listed.split('\t').next().unwrap();
    assert_eq!(
        cli(&["dead-letters", "requeue", id]).trim(),
        "requeued 1 deliveries"
    );
    // The running app still holds the revoked token: the requeued delivery is tried again
    // (and refused again), which shows it left the dead letters.
    slack
        .wait_for("the requeued attempt", WAIT, |r| r.len() >= 2)
        .await;
    app.stop().await;
}

#[tokio::test]
async fn a_resolve_never_arrives_before_its_firing() {
    let hook = Fake::webhook().await;
    hook.script([Answer::Status(503), Answer::Status(503)]);
    let app = spawn_app(&hook_config(
        &hook.hook_url(),
        "backoff_min = \"200ms\"\nbackoff_max = \"400ms\"\n",
    ))
    .await;
    assert_eq!(
        app.post(notification("primary-down-firing", "order"))
            .await
            .0,
        200
    );
    hook.wait_for("the first attempt", WAIT, |r| !r.is_empty())
        .await;
    assert_eq!(
        app.post(notification("primary-down-resolved", "order"))
            .await
            .0,
        200
    );
    hook.wait_for("both delivered", WAIT, |r| {
        r.iter().filter(|r| r.answered == Some(200)).count() >= 2
    })
    .await;
    let statuses: Vec<String> = hook
        .received()
        .iter()
        .map(|r| r.json["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["firing", "firing", "firing", "resolved"]);
    app.stop().await;
}

#[tokio::test]
async fn webhook_requests_are_signed_the_standard_webhooks_way_on_every_attempt() {
    let hook = Fake::webhook().await;
    hook.script([Answer::Status(500)]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hook.key"),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
    )
    .unwrap();
    let app = spawn_app_in(
        dir,
        &hook_config(
            &hook.hook_url(),
            "secret_file = \"{dir}/hook.key\"\nbackoff_min = \"50ms\"\n",
        ),
    )
    .await;
    app.post(notification("group-firing-3-alerts", "signed"))
        .await;
    hook.wait_for("the retried delivery", WAIT, |r| r.len() >= 2)
        .await;
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    let got = hook.received();
    for r in &got {
        let h = |name: &str| r.headers.get(name).unwrap().to_str().unwrap().to_owned();
        let (id, ts, sig) = (
            h("webhook-id"),
            h("webhook-timestamp"),
            h("webhook-signature"),
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(&r.body);
        let want = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(sig, want, "signature must cover id.timestamp.body");
        assert_eq!(r.json["schema"], "amrelay.v1");
        assert_eq!(r.json["alerts"].as_array().unwrap().len(), 3);
    }
    assert_eq!(
        got[0].headers["webhook-id"], got[1].headers["webhook-id"],
        "one id across retries"
    );
    assert_eq!(got[0].json["attempt"], 1);
    assert_eq!(got[1].json["attempt"], 2);
    app.stop().await;
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried() {
    let hook = Fake::webhook().await;
    hook.script([Answer::Slow(Duration::from_secs(2))]);
    let app = spawn_app(&hook_config(
        &hook.hook_url(),
        "timeout = \"300ms\"\nbackoff_min = \"50ms\"\n",
    ))
    .await;
    app.post(notification("primary-down-firing", "slow")).await;
    app.wait_metric(
        "amrelay_deliveries_delivered_total{channel=\"hook\"}",
        1.0,
        WAIT,
    )
    .await;
    assert!(hook.received().len() >= 2);
    assert_eq!(
        app.metric("amrelay_delivery_attempts_total{channel=\"hook\",outcome=\"retryable\"}")
            .await,
        1.0
    );
    app.stop().await;
}

/// The bar: a Slack that allows 1 message/s never has to refuse one.
#[tokio::test]
async fn the_rate_limit_keeps_slack_from_refusing_a_burst() {
    let slack = Fake::slack().await;
    // Slack allows about one message per second with short bursts; refusing anything
    // closer than 500 ms catches a missing limiter without failing on scheduler jitter.
    slack.enforce_min_interval(Duration::from_millis(500));
    let app = spawn_app(&slack_config(
        &slack.slack_api_url(),
        "rate_limit = \"1/s\"",
    ))
    .await;
    const N: usize = 5;
    for i in 0..N {
        assert_eq!(
            app.post(notification("group-firing-3-alerts", &format!("burst-{i}")))
                .await
                .0,
            200
        );
    }
    slack
        .wait_for("all messages", Duration::from_secs(30), |r| r.len() >= N)
        .await;
    app.wait_metric(
        "amrelay_deliveries_delivered_total{channel=\"ops-slack\"}",
        N as f64,
        WAIT,
    )
    .await;
    assert_eq!(slack.refused_429(), 0, "amrelay sent faster than 1/s");
    assert_eq!(slack.accepted().len(), N);
    assert!(
        app.metric("amrelay_rate_limited_waits_total{channel=\"ops-slack\"}")
            .await
            >= 1.0
    );
    let got = slack.received();
    let spread = got[N - 1].at.duration_since(got[0].at);
    assert!(
        spread >= Duration::from_millis(3500),
        "{N} messages at 1/s took only {spread:?}"
    );
    app.stop().await;
}

/// `concurrency` bounds the requests open at the channel, however many deliveries the
/// worker holds (hand-offs are reserved before their webhook is committed).
#[tokio::test]
async fn concurrency_bounds_the_requests_open_at_the_channel() {
    let hook = Fake::webhook().await;
    hook.set_default(Answer::Slow(Duration::from_millis(20)));
    let app = spawn_app(&hook_config(&hook.hook_url(), "concurrency = 3\n")).await;
    const N: usize = 40;
    app.post_all_at_once(
        (0..N).map(|i| notification("primary-down-firing", &format!("bounded-{i}"))),
    )
    .await;
    app.wait_metric(
        "amrelay_deliveries_delivered_total{channel=\"hook\"}",
        N as f64,
        WAIT,
    )
    .await;
    let most = hook.max_in_flight();
    assert!(
        most <= 3,
        "{most} requests open at once with concurrency = 3"
    );
    assert!(
        most >= 2,
        "the attempts never overlapped, so this proves nothing"
    );
    app.stop().await;
}

/// Hand-offs and claims share four held deliveries and a single sending slot here; a
/// burst must neither deadlock nor strand a delivery in flight.
#[tokio::test]
async fn a_single_slot_channel_delivers_a_concurrent_burst() {
    let hook = Fake::webhook().await;
    hook.set_default(Answer::Slow(Duration::from_millis(2)));
    let app = spawn_app(&hook_config(&hook.hook_url(), "concurrency = 1\n")).await;
    const N: usize = 200;
    app.post_all_at_once(
        (0..N).map(|i| notification("primary-down-firing", &format!("single-{i}"))),
    )
    .await;
    app.wait_metric(
        "amrelay_deliveries_delivered_total{channel=\"hook\"}",
        N as f64,
        WAIT,
    )
    .await;
    assert_eq!(hook.accepted().len(), N);
    app.stop().await;
}

#[tokio::test]
async fn distinct_vendor_errors_count_under_one_bounded_reason_label() {
    let slack = Fake::slack().await;
    // A proxy in front of Slack that names every failure afresh.
    const N: usize = 60;
    let errors: Vec<&'static str> = (0..N)
        .map(|i| &*Box::leak(format!("proxy_error_{i:08x}-9c1e").into_boxed_str()))
        .collect();
    slack.script(errors.iter().map(|e| Answer::SlackError(e)));
    let app = spawn_app(&slack_config(
        &slack.slack_api_url(),
        "rate_limit = \"1000/s\"",
    ))
    .await;
    let posts: Vec<Vec<u8>> = (0..N)
        .map(|i| notification("primary-down-firing", &format!("proxy-{i}")))
        .collect();
    app.post_all_at_once(posts).await;
    let series = "amrelay_delivery_attempt_failures_total{channel=\"ops-slack\",reason=\"other\"}";
    app.wait_metric(series, N as f64, WAIT).await;
    let text = metrics_at(&app.client, &app.url("")).await;
    let failure_series = text
        .lines()
        .filter(|l| l.starts_with("amrelay_delivery_attempt_failures_total{"))
        .count();
    assert_eq!(
        failure_series, 1,
        "one series for {N} distinct errors:\n{text}"
    );
    assert!(!text.contains("proxy_error_"), "no vendor text in /metrics");
    app.stop().await;
}
