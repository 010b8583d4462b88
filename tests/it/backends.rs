//! The outbox's contract, the same on both backends: each scenario runs once on the
//! SQLite store and once on a throwaway PostgreSQL (issue 13: "the backend-independent
//! outbox tests run against both backends"). The rest of the suite runs on SQLite; the
//! HA behaviour of the shared store is in `ha.rs`. A scenario here is not repeated for
//! SQLite elsewhere.

use std::time::Duration;

use crate::fakes::{Answer, Fake};
use crate::helpers::*;
use crate::postgres::Pg;

const WAIT: Duration = Duration::from_secs(20);

/// The app on `backend` ("sqlite" or "postgres") with `channels` (TOML) and more
/// `[storage]` keys. The cluster, when there is one, lives as long as the app.
async fn app_on(backend: &str, storage: &str, channels: &str) -> (TestApp, Option<Pg>) {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        "postgres" => {
            let pg = Pg::start();
            let config = pg.config(dir.path(), "solo", storage) + channels;
            (spawn_app_in(dir, &config).await, Some(pg))
        }
        _ => {
            let config = format!("[storage]\n{storage}\n{channels}");
            (spawn_app_in(dir, &config).await, None)
        }
    }
}

fn slack_and_hook(slack: &Fake, hook: &Fake) -> String {
    format!(
        "{}\n[[channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        slack_config(&slack.slack_api_url(), "fallback = \"hook\""),
        hook.hook_url()
    )
}

async fn retry_after_then_once(backend: &str) {
    let slack = Fake::slack().await;
    slack.script([Answer::RateLimited(1)]);
    let (app, _pg) = app_on(backend, "", &slack_config(&slack.slack_api_url(), "")).await;
    assert_eq!(
        app.post(notification("primary-down-firing", "ra")).await.0,
        200
    );
    slack
        .wait_for("the accepted message", WAIT, |r| {
            r.iter().any(|r| r.answered == Some(200))
        })
        .await;
    let got = slack.received();
    assert_eq!(got.len(), 2, "one refused, one accepted");
    let gap = got[1].at.duration_since(got[0].at);
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {gap:?}"
    );
    assert_eq!(slack.accepted().len(), 1);
    let blocks = slack.accepted()[0]["blocks"].to_string();
    assert!(blocks.contains("[FIRING:1] PrimaryDown"), "{blocks}");
    app.stop().await;
}

async fn permanent_error_to_the_fallback(backend: &str) {
    let (slack, hook) = (Fake::slack().await, Fake::webhook().await);
    slack.script([Answer::SlackError("channel_not_found")]);
    let (app, _pg) = app_on(backend, "", &slack_and_hook(&slack, &hook)).await;
    assert_eq!(
        app.post(notification("primary-down-firing", "fb")).await.0,
        200
    );
    hook.wait_for("the fallback delivery", WAIT, |r| !r.is_empty())
        .await;
    assert_eq!(
        slack.received().len(),
        1,
        "a permanent error is not retried"
    );
    assert_eq!(
        hook.accepted()[0]["commonLabels"]["alertname"],
        "PrimaryDown"
    );
    app.wait_metric("amrelay_fallbacks_total{channel=\"ops-slack\"}", 1.0, WAIT)
        .await;
    assert_eq!(
        app.metric("amrelay_deliveries_failed_total{channel=\"ops-slack\",reason=\"permanent\"}")
            .await,
        1.0
    );
    app.stop().await;
}

/// 503, never 429: Alertmanager does not retry a 429.
async fn full_outbox_503_and_duplicates_stored_once(backend: &str) {
    // A channel whose first attempts are an hour away: deliveries stay pending.
    let dead = free_port();
    let channels = format!(
        "[[channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{dead}/hook\"\nbackoff_min = \"1h\"\nbackoff_max = \"1h\"\n[[routes]]\nchannels = [\"hook\"]\n"
    );
    let (app, _pg) = app_on(backend, "max_pending = 2", &channels).await;
    let a = notification("primary-down-firing", "a");
    assert_eq!(app.post(a.clone()).await.0, 200);
    let (status, json) = app.post(a).await;
    assert_eq!((status, json["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(
        app.post(notification("primary-down-firing", "b")).await.0,
        200
    );
    let (status, json) = app.post(notification("primary-down-firing", "c")).await;
    assert_eq!(status, 503, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("storage.max_pending = 2"),
        "{json}"
    );
    // Refused is not stored: the same notification is refused again, not a duplicate.
    let (status, json) = app.post(notification("primary-down-firing", "c")).await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(
        app.metric("amrelay_webhooks_rejected_total{reason=\"store_full\"}")
            .await,
        2.0
    );
    app.stop().await;
}

async fn dead_letters_listed_and_requeued_by_the_cli(backend: &str) {
    let slack = Fake::slack().await;
    slack.set_default(Answer::SlackError("invalid_auth"));
    let (app, _pg) = app_on(backend, "", &slack_config(&slack.slack_api_url(), "")).await;
    assert_eq!(
        app.post(notification("primary-down-firing", "dl")).await.0,
        200
    );
    let dead = "amrelay_dead_lettered_total{channel=\"ops-slack\"}";
    app.wait_metric(dead, 1.0, WAIT).await;
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_amrelay"))
            .args(args)
            .arg("--config")
            .arg(app.dir.path().join("amrelay.toml"))
            .env("AMRELAY__STORAGE__PATH", store_path(app.dir.path()))
            .output()
            .unwrap()
    };
    let listed = cli(&["dead-letters", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(
        text.contains("channel=ops-slack") && text.contains("invalid_auth"),
        "{text}"
    );
    let id = text.split('\t').next().unwrap().to_owned();
    let requeued = cli(&["dead-letters", "requeue", &id, "999999"]);
    assert_eq!(
        String::from_utf8_lossy(&requeued.stdout).trim(),
        "requeued 1 deliveries"
    );
    assert!(
        !requeued.status.success(),
        "an id that is no dead letter fails the command"
    );
    assert!(String::from_utf8_lossy(&requeued.stderr).contains("999999"));
    slack
        .wait_for("the requeued attempt", WAIT, |r| r.len() >= 2)
        .await;
    app.stop().await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_requeued_by_the_cli_on_sqlite() {
    dead_letters_listed_and_requeued_by_the_cli("sqlite").await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_requeued_by_the_cli_on_postgres() {
    dead_letters_listed_and_requeued_by_the_cli("postgres").await;
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_delivered_once_on_sqlite() {
    retry_after_then_once("sqlite").await;
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_delivered_once_on_postgres() {
    retry_after_then_once("postgres").await;
}

#[tokio::test]
async fn a_permanent_error_goes_to_the_fallback_on_sqlite() {
    permanent_error_to_the_fallback("sqlite").await;
}

#[tokio::test]
async fn a_permanent_error_goes_to_the_fallback_on_postgres() {
    permanent_error_to_the_fallback("postgres").await;
}

#[tokio::test]
async fn a_full_outbox_answers_503_and_a_duplicate_is_stored_once_on_sqlite() {
    full_outbox_503_and_duplicates_stored_once("sqlite").await;
}

#[tokio::test]
async fn a_full_outbox_answers_503_and_a_duplicate_is_stored_once_on_postgres() {
    full_outbox_503_and_duplicates_stored_once("postgres").await;
}
