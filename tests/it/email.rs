//! Email channels end to end: the provider fakes (written from each vendor's docs), a real
//! SMTP server, fallback from the API to SMTP, the circuit breaker, a relay that answers
//! 451 after the body or is slow, and labels that try to inject headers.

use std::time::Duration;

use serde_json::Value;

use crate::email_fakes::{Answer, EmailFake, Vendor, MAILGUN_DOMAIN};
use crate::helpers::{notification, spawn_app};
use crate::smtp_relay::{decoded, header, SmtpRelay};

const WAIT: Duration = Duration::from_secs(20);

/// An email channel `name` through `provider`, sending from amrelay@example.com to
/// ops@example.com, with fast retries; `keys` adds the provider's own keys.
fn email_channel(name: &str, provider: &str, keys: &str) -> String {
    format!(
        r#"
[[channels]]
name = "{name}"
kind = "email"
provider = "{provider}"
from = "amrelay <amrelay@example.com>"
to = ["ops@example.com"]
backoff_min = "50ms"
backoff_max = "200ms"
{keys}
"#
    )
}

/// An API channel on `fake`; its key is written to a file in `keys`.
fn api_channel(name: &str, fake: &EmailFake, keys: &std::path::Path, extra: &str) -> String {
    let provider = match fake.vendor {
        Vendor::SendGrid => "sendgrid",
        Vendor::Postmark => "postmark",
        Vendor::Mailgun => "mailgun",
    };
    let key_file = keys.join(format!("{provider}.key"));
    std::fs::write(&key_file, format!("{}\n", fake.key())).unwrap();
    let domain = match fake.vendor {
        Vendor::Mailgun => format!("domain = \"{MAILGUN_DOMAIN}\"\n"),
        _ => String::new(),
    };
    format!(
        "{}api_url = \"{}\"\napi_key_file = \"{}\"\n{domain}{extra}",
        email_channel(name, provider, ""),
        fake.api_url(),
        key_file.display(),
    )
}

fn smtp_channel(name: &str, relay: &SmtpRelay, keys: &str) -> String {
    format!(
        "{}host = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n{keys}",
        email_channel(name, "smtp", ""),
        relay.port
    )
}

fn route_to(channel: &str) -> String {
    format!("\n[[routes]]\nchannels = [\"{channel}\"]\n")
}

/// A notification whose labels carry `extra` (name, value) pairs in every alert and in
/// the group and common labels.
fn with_labels(name: &str, group: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&notification(name, group)).unwrap();
    for (k, val) in extra {
        v["groupLabels"][k] = (*val).into();
        v["commonLabels"][k] = (*val).into();
        for a in v["alerts"].as_array_mut().unwrap() {
            a["labels"][k] = (*val).into();
        }
    }
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn each_provider_gets_one_email_per_notification_in_its_documented_shape() {
    let keys = tempfile::tempdir().unwrap();
    for fake in [
        EmailFake::sendgrid().await,
        EmailFake::postmark().await,
        EmailFake::mailgun().await,
    ] {
        let app =
            spawn_app(&(api_channel("mail", &fake, keys.path(), "") + &route_to("mail"))).await;
        let (status, _) = app
            .post(notification(
                "group-firing-3-alerts",
                &format!("{:?}", fake.vendor),
            ))
            .await;
        assert_eq!(status, 200);
        fake.wait_for("one accepted email", WAIT, |r| r.iter().any(|r| r.accepted))
            .await;
        let emails = fake.accepted();
        assert_eq!(emails.len(), 1, "{:?}: {emails:?}", fake.vendor);
        let e = &emails[0];
        assert!(
            e.subject.starts_with("[FIRING:3] "),
            "{:?}: {}",
            fake.vendor,
            e.subject
        );
        assert!(e.from.contains("amrelay@example.com"), "{}", e.from);
        assert_eq!(e.to.len(), 1);
        assert!(e.to[0].contains("ops@example.com"), "{:?}", e.to);
        let text = e.text.as_deref().unwrap_or("");
        assert!(text.contains("3 firing, 0 resolved"), "{text}");
        assert!(text.contains("alertname = TestCase"), "{text}");
        let html = e.html.as_deref().unwrap_or("");
        assert!(html.contains("<table"), "{html}");
        assert!(
            e.header("X-Amrelay-Delivery-Id").is_some(),
            "{:?}: {:?}",
            fake.vendor,
            e.headers
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_rejected_api_key_goes_to_the_smtp_fallback_at_once() {
    let keys = tempfile::tempdir().unwrap();
    let fake = EmailFake::sendgrid().await;
    fake.set_default(Answer::Unauthorized);
    let relay = SmtpRelay::start().await;
    let config = api_channel("mail-api", &fake, keys.path(), "fallback = \"mail-smtp\"\n")
        + &smtp_channel("mail-smtp", &relay, "")
        + &route_to("mail-api");
    let app = spawn_app(&config).await;
    let (status, _) = app
        .post(notification("primary-down-firing", "fallback"))
        .await;
    assert_eq!(status, 200);
    let messages = relay.wait_messages(1, WAIT).await;
    let subject = header(&messages[0], "Subject").unwrap();
    assert!(subject.starts_with("[FIRING:1] PrimaryDown"), "{subject}");
    let m = decoded(&messages[0]);
    assert!(m.contains("severity = critical"), "{m}");
    assert!(m.contains("Silence: http://"), "{m}");
    // A permanent refusal is not retried: one request to the API, then the fallback.
    assert_eq!(fake.received().len(), 1);
    assert_eq!(
        app.metric("amrelay_fallbacks_total{channel=\"mail-api\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.metric(
            "amrelay_delivery_attempt_failures_total{channel=\"mail-api\",reason=\"http_401\"}"
        )
        .await,
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_relay_answering_451_after_the_body_loses_nothing() {
    let relay = SmtpRelay::start().await;
    relay.set_mode("451");
    let app = spawn_app(&(smtp_channel("mail", &relay, "") + &route_to("mail"))).await;
    for i in 0..3 {
        let (status, _) = app
            .post(notification("group-firing-3-alerts", &format!("g451-{i}")))
            .await;
        assert_eq!(status, 200);
    }
    // Every message was refused after its body at least once...
    app.wait_metric(
        "amrelay_delivery_attempt_failures_total{channel=\"mail\",reason=\"smtp_451\"}",
        3.0,
        WAIT,
    )
    .await;
    assert_eq!(relay.messages().len(), 0);
    // ...and arrives once the relay takes mail again.
    relay.set_mode("ok");
    let messages = relay.wait_messages(3, WAIT).await;
    app.wait_metric(
        "amrelay_deliveries_delivered_total{channel=\"mail\"}",
        3.0,
        WAIT,
    )
    .await;
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| header(m, "Message-ID").unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct messages, no repeats");
    assert_eq!(relay.messages().len(), 3);
    assert!(relay.answers().iter().filter(|c| **c == 451).count() >= 3);
    app.stop().await;
}

#[tokio::test]
async fn a_slow_relay_with_both_alertmanagers_sending_gets_each_email_once() {
    let relay = SmtpRelay::start().await;
    relay.set_mode("delay 0.3");
    let app =
        spawn_app(&(smtp_channel("mail", &relay, "concurrency = 4\n") + &route_to("mail"))).await;
    // Each notification twice, as an HA pair sends it, all at once.
    app.post_all_at_once(
        (0..16).map(|i| notification("group-firing-3-alerts", &format!("slow-{}", i / 2))),
    )
    .await;
    assert_eq!(
        app.metric("amrelay_notifications_deduplicated_total").await,
        8.0
    );
    app.wait_metric(
        "amrelay_deliveries_delivered_total{channel=\"mail\"}",
        8.0,
        WAIT,
    )
    .await;
    assert_eq!(relay.messages().len(), 8);
    app.stop().await;
}

#[tokio::test]
async fn the_circuit_opens_sends_new_deliveries_to_the_fallback_and_closes_after_a_probe() {
    let keys = tempfile::tempdir().unwrap();
    let fake = EmailFake::postmark().await;
    fake.set_default(Answer::Status(500));
    let relay = SmtpRelay::start().await;
    let config = api_channel(
        "mail-api",
        &fake,
        keys.path(),
        "fallback = \"mail-smtp\"\ncircuit_failures = 2\ncircuit_open_for = \"500ms\"\nconcurrency = 1\n",
    ) + &smtp_channel("mail-smtp", &relay, "")
        + &route_to("mail-api");
    let app = spawn_app(&config).await;
    app.post(notification("group-firing-3-alerts", "circuit-1"))
        .await;
    app.wait_metric(
        "amrelay_channel_circuit_state{channel=\"mail-api\"}",
        1.0,
        WAIT,
    )
    .await;
    // The retried delivery is diverted without another attempt once the circuit is open.
    relay.wait_messages(1, WAIT).await;
    let attempts_when_open = fake.received().len();
    assert_eq!(attempts_when_open, 2, "two failures open the circuit");
    let (status, _) = app
        .post(notification("group-firing-3-alerts", "circuit-2"))
        .await;
    assert_eq!(status, 200);
    relay.wait_messages(2, WAIT).await;
    assert_eq!(
        app.metric("amrelay_deliveries_failed_total{channel=\"mail-api\",reason=\"circuit_open\"}")
            .await,
        2.0
    );
    // The API recovers: after open_for, one delivery probes it and closes the circuit.
    fake.set_default(Answer::Ok);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut i = 3;
    while app
        .metric("amrelay_channel_circuit_state{channel=\"mail-api\"}")
        .await
        != 0.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the circuit never closed"
        );
        app.post(notification(
            "group-firing-3-alerts",
            &format!("circuit-{i}"),
        ))
        .await;
        i += 1;
        // Polling: each round sends one more delivery; the one after open_for probes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fake.accepted_count() >= 1, "the probe reached the API");
    app.stop().await;
}

#[tokio::test]
async fn labels_cannot_inject_headers_or_markup() {
    let relay = SmtpRelay::start().await;
    let app = spawn_app(&(smtp_channel("mail", &relay, "") + &route_to("mail"))).await;
    let body = with_labels(
        "primary-down-firing",
        "inject",
        &[
            (
                "alertname",
                "Evil\r\nBcc: victim@example.com\r\nX-Injected: 1",
            ),
            (
                "instance",
                "<script>alert(1)</script>\"><img src=x onerror=alert(1)>",
            ),
        ],
    );
    let (status, _) = app.post(body).await;
    assert_eq!(status, 200);
    let messages = relay.wait_messages(1, WAIT).await;
    let m = &decoded(&messages[0]);
    let head = m.split("\r\n\r\n").next().unwrap_or(m);
    for line in head.lines() {
        assert!(
            !line.to_ascii_lowercase().starts_with("bcc:")
                && !line.to_ascii_lowercase().starts_with("x-injected:"),
            "injected header line {line:?} in\n{head}"
        );
    }
    let subject = header(m, "Subject").unwrap();
    assert!(
        subject.contains("Evil Bcc: victim@example.com X-Injected: 1"),
        "{subject}"
    );
    // The HTML part escapes the labels (the plain-text part shows them as they are).
    let html = m
        .split("Content-Type: text/html")
        .nth(1)
        .expect("an HTML part");
    let html = html.split("\r\n--").next().unwrap_or(html);
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn send_test_reports_what_the_provider_answered() {
    let fake = EmailFake::sendgrid().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("amrelay.toml");
    std::fs::write(
        &config,
        api_channel("mail", &fake, dir.path(), "") + &route_to("mail"),
    )
    .unwrap();
    let run = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_amrelay"))
            .args(["send-test", "--channel", "mail", "--config"])
            .arg(&config)
            .output()
    };
    let out = run().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("mail (email/sendgrid): delivered"),
        "{stdout}"
    );
    let sent = fake.accepted();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].subject.contains("AmrelaySendTest"),
        "{}",
        sent[0].subject
    );
    assert!(
        sent[0]
            .text
            .as_deref()
            .unwrap_or("")
            .starts_with("This is a TEST message"),
        "{:?}",
        sent[0].text
    );

    fake.set_default(Answer::Unauthorized);
    let out = run().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("NOT delivered, refused for good (http_401)"),
        "{stdout}"
    );

    // A channel that does not exist is named, with the ones that do.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_amrelay"))
        .args(["send-test", "--channel", "nope", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no channel is named \"nope\" (channels: mail)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_stuck_fallback_never_holds_back_the_primary_path() {
    let keys = tempfile::tempdir().unwrap();
    let fake = EmailFake::sendgrid().await;
    // The first email is refused for good (it goes to the fallback); the rest are taken.
    fake.script([Answer::RecipientRejected]);
    let relay = SmtpRelay::start().await;
    // The fallback relay holds every message far longer than this test runs.
    relay.set_mode("delay 60");
    let config = format!(
        "[server]\nshutdown_grace = \"100ms\"\n{}{}{}",
        api_channel(
            "mail-api",
            &fake,
            keys.path(),
            "fallback = \"mail-smtp\"\nconcurrency = 1\n"
        ),
        smtp_channel("mail-smtp", &relay, "timeout = \"90s\"\n"),
        route_to("mail-api")
    );
    let app = spawn_app(&config).await;
    app.post(notification("group-firing-3-alerts", "stuck-0"))
        .await;
    app.wait_metric("amrelay_fallbacks_total{channel=\"mail-api\"}", 1.0, WAIT)
        .await;
    for i in 1..=5 {
        let (status, _) = app
            .post(notification("group-firing-3-alerts", &format!("stuck-{i}")))
            .await;
        assert_eq!(status, 200);
    }
    app.wait_metric(
        "amrelay_deliveries_delivered_total{channel=\"mail-api\"}",
        5.0,
        WAIT,
    )
    .await;
    assert_eq!(fake.accepted_count(), 5);
    // The fallback's one delivery is still with the relay.
    assert_eq!(relay.messages().len(), 0);
    app.wait_metric("amrelay_queue_depth{channel=\"mail-smtp\"}", 1.0, WAIT)
        .await;
    assert_eq!(relay.messages().len(), 0);
    app.stop().await;
}
