//! The backup's promotion endpoint (`docs/promotion-protocol.md`), driven over HTTP with
//! requests signed here from the Standard Webhooks spec (not with amrelay's own signing
//! code), a shell script as the promotion command, and files to see what it did.

mod process;
pub mod support;

use std::path::PathBuf;
use std::time::Duration;

use amrelay::app::App;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::helpers::*;
use support::*;

struct Endpoint {
    caller: Caller,
    /// The webhook listener, where /metrics is.
    main: String,
    dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Endpoint {
    /// amrelay in-process with only `[promotion_endpoint]` configured (`extra`: more
    /// keys of that section).
    async fn start(script: &str, extra: &str) -> Endpoint {
        let dir = tempfile::tempdir().unwrap();
        let config = endpoint_config(dir.path(), script, "127.0.0.1:0", extra);
        let app = App::build(settings_in(dir.path(), &config))
            .await
            .expect("app starts");
        let caller = Caller::new(app.promotion_addr().expect("the endpoint is configured"));
        let main = format!("http://{}", app.local_addr());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        Endpoint {
            caller,
            main,
            dir,
            shutdown: Some(tx),
            handle,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn runs(&self) -> Vec<String> {
        runs(self.dir.path())
    }

    async fn metric(&self, sample: &str) -> f64 {
        metric_at(&self.caller.client, &self.main, sample).await
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_new_key_runs_the_command_once_and_the_same_key_again_gets_the_same_answer() {
    let ep = Endpoint::start("promote.sh", "").await;
    let first = ep.caller.promote(&request(1)).await;
    assert_eq!(first.status, 200, "{}", first.json);
    assert_eq!(first.json["result"], "promoted");
    assert_eq!(first.json["epoch"], 1);
    assert_eq!(first.json["state"], "promoted");
    let last = &first.json["last"];
    assert_eq!(last["exit_code"], 0);
    assert_eq!(
        last["stdout_tail"],
        "promoting primary: PrimaryDown: firing on monitor-a, monitor-b\n"
    );
    assert_eq!(last["stderr_tail"], "warning from the command\n");
    assert_eq!(ep.runs(), vec!["1 primary/1 1"]);

    let again = ep.caller.promote(&request(1)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json, first.json, "the stored answer, byte for byte");
    assert_eq!(ep.runs().len(), 1, "nothing ran again");
    assert_eq!(
        ep.metric("amrelay_promotion_requests_total{result=\"promoted\"}")
            .await,
        2.0
    );
    assert_eq!(ep.metric("amrelay_promotion_runs_started_total").await, 1.0);
    assert_eq!(ep.metric("amrelay_promotion_epoch").await, 1.0);
    assert_eq!(
        ep.metric("amrelay_promotion_state{state=\"promoted\"}")
            .await,
        1.0
    );
    ep.stop().await;
}

#[tokio::test]
async fn a_bad_signature_a_missing_header_or_an_unsigned_get_is_refused_with_401() {
    let ep = Endpoint::start("promote.sh", "").await;
    let body = serde_json::to_vec(&request(1)).unwrap();
    let wrong = "whsec_c2VjcmV0LW9mLXNvbWVvbmUtZWxzZQ==";
    let r = ep
        .caller
        .send_signed(&body, &fresh_id(), now(), wrong)
        .await;
    assert_eq!(r.status, 401);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .contains("webhook-signature does not match"),
        "{}",
        r.json
    );
    // Signed over another body than the one sent.
    let id = fresh_id();
    let ts = now();
    let r = ep
        .caller
        .client
        .post(format!("{}/v1/promote", ep.caller.base))
        .header("webhook-id", &id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sign(SECRET, &id, ts, b"{}"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = ep
        .caller
        .client
        .post(format!("{}/v1/promote", ep.caller.base))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let json: Value = r.json().await.unwrap();
    assert!(
        json["error"].as_str().unwrap().contains("webhook-id"),
        "{json}"
    );
    let r = ep
        .caller
        .client
        .get(format!("{}/v1/promotion", ep.caller.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(ep.runs().is_empty());
    assert_eq!(
        ep.metric("amrelay_promotion_requests_total{result=\"unauthorized\"}")
            .await,
        4.0
    );
    let s = ep.caller.status().await;
    assert_eq!(s.status, 200);
    assert_eq!(
        (s.json["epoch"].as_u64(), s.json["state"].as_str()),
        (Some(0), Some("standby"))
    );
    assert_eq!(s.json["last"], Value::Null);
    ep.stop().await;
}

#[tokio::test]
async fn a_timestamp_outside_the_skew_window_is_refused() {
    let ep = Endpoint::start("promote.sh", "max_clock_skew = \"1m\"").await;
    let body = serde_json::to_vec(&request(1)).unwrap();
    for ts in [now() - 120, now() + 120] {
        let r = ep.caller.send_signed(&body, &fresh_id(), ts, SECRET).await;
        assert_eq!(r.status, 401);
        assert!(
            r.json["error"].as_str().unwrap().contains("max_clock_skew"),
            "{}",
            r.json
        );
    }
    // Within the window is fine.
    let r = ep
        .caller
        .send_signed(&body, &fresh_id(), now() - 30, SECRET)
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    ep.stop().await;
}

#[tokio::test]
async fn a_replayed_request_is_refused_and_a_retry_signed_afresh_is_not() {
    let ep = Endpoint::start("promote.sh", "").await;
    let body = serde_json::to_vec(&request(1)).unwrap();
    let (id, ts) = (fresh_id(), now());
    let first = ep.caller.send_signed(&body, &id, ts, SECRET).await;
    assert_eq!(first.status, 200);
    let replay = ep.caller.send_signed(&body, &id, ts, SECRET).await;
    assert_eq!(replay.status, 401);
    assert!(
        replay.json["error"].as_str().unwrap().contains("replayed"),
        "{}",
        replay.json
    );
    // The caller's retry: the same webhook-id, a new timestamp.
    let retry = ep.caller.send_signed(&body, &id, ts + 1, SECRET).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json, first.json);
    assert_eq!(ep.runs().len(), 1);
    ep.stop().await;
}

#[tokio::test]
async fn a_skipped_epoch_and_a_stale_key_are_refused_with_409_and_the_state() {
    let ep = Endpoint::start("promote.sh", "").await;
    let skipped = ep.caller.promote(&request(2)).await;
    assert_eq!(skipped.status, 409, "{}", skipped.json);
    assert_eq!(skipped.json["result"], "refused");
    assert_eq!(skipped.json["epoch"], 0);
    assert_eq!(skipped.json["state"], "standby");
    // Epoch 0 is stale from the start (the first incident is 1): refused like any other.
    let zero = ep.caller.promote(&request(0)).await;
    assert_eq!(zero.status, 409, "{}", zero.json);
    assert_eq!(
        (
            zero.json["result"].as_str(),
            zero.json["epoch"].as_u64(),
            zero.json["state"].as_str()
        ),
        (Some("refused"), Some(0), Some("standby"))
    );
    // Key 1 asks to be retried; meanwhile incident 2 promotes; key 1 is then stale.
    std::fs::write(ep.path("exit"), "75").unwrap();
    assert_eq!(ep.caller.promote(&request(1)).await.status, 503);
    std::fs::write(ep.path("exit"), "0").unwrap();
    assert_eq!(ep.caller.promote(&request(2)).await.status, 200);
    let stale = ep.caller.promote(&request(1)).await;
    assert_eq!(stale.status, 409, "{}", stale.json);
    assert_eq!(stale.json["epoch"], 2);
    let zero = ep.caller.promote(&request(0)).await;
    assert_eq!(zero.status, 409, "{}", zero.json);
    assert_eq!(
        (zero.json["epoch"].as_u64(), zero.json["state"].as_str()),
        (Some(2), Some("promoted"))
    );
    assert_eq!(ep.runs(), vec!["1 primary/1 1", "2 primary/2 1"]);
    ep.stop().await;
}

#[tokio::test]
async fn a_key_asked_concurrently_runs_once_and_another_key_meanwhile_is_refused() {
    const N: usize = 8;
    let ep = Endpoint::start("promote.sh", "").await;
    std::fs::write(ep.path("hold"), "").unwrap();
    let mut tasks = Vec::new();
    for _ in 0..N {
        let c = ep.caller.clone();
        tasks.push(tokio::spawn(async move { c.promote(&request(1)).await }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 202, "{}", r.json);
        assert_eq!(r.json["result"], "running");
        assert_eq!(r.json["state"], "promoting");
        assert_eq!(r.retry_after.as_deref(), Some("1"));
    }
    assert_eq!(ep.runs().len(), 1, "one run for {N} requests");
    let other = ep.caller.promote(&request(2)).await;
    assert_eq!(other.status, 409, "{}", other.json);
    assert_eq!(other.json["state"], "promoting");
    std::fs::write(ep.path("release"), "").unwrap();
    let done = ep
        .caller
        .until_done(&request(1), Duration::from_secs(20))
        .await;
    assert_eq!(done.status, 200, "{}", done.json);
    assert_eq!(ep.runs(), vec!["1 primary/1 1"]);
    assert_eq!(ep.metric("amrelay_promotion_runs_started_total").await, 1.0);
    ep.stop().await;
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_and_the_key_fails_for_good() {
    let ep = Endpoint::start("hang.sh", "timeout = \"1s\"").await;
    let r = ep
        .caller
        .until_done(&request(1), Duration::from_secs(20))
        .await;
    assert_eq!(r.status, 422, "{}", r.json);
    assert_eq!(r.json["result"], "failed");
    assert_eq!(r.json["state"], "failed");
    assert_eq!(r.json["last"]["exit_code"], Value::Null);
    assert!(
        r.json["last"]["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 1s"),
        "{}",
        r.json
    );
    let sleeper = std::fs::read_to_string(ep.path("sleeper")).unwrap();
    assert!(
        gone(sleeper.trim()),
        "the command's child {sleeper} survived"
    );
    let again = ep.caller.promote(&request(1)).await;
    assert_eq!((again.status, &again.json), (422, &r.json));
    assert_eq!(ep.runs().len(), 1);
    assert_eq!(
        ep.metric("amrelay_promotion_runs_finished_total{outcome=\"timed_out\"}")
            .await,
        1.0
    );
    // The next incident may try again.
    let next = ep
        .caller
        .until_done(&request(2), Duration::from_secs(20))
        .await;
    assert_eq!(next.status, 422, "{}", next.json);
    assert_eq!(ep.runs().len(), 2);
    ep.stop().await;
}

/// Gone, or a zombie waiting for a parent that does not reap (PID 1 in a container).
fn gone(pid: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                return true
            }
            Ok(_) if std::time::Instant::now() > deadline => return false,
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[tokio::test]
async fn exit_75_answers_503_and_the_same_key_runs_again_then_succeeds() {
    let ep = Endpoint::start("promote.sh", "").await;
    std::fs::write(ep.path("exit"), "75").unwrap();
    let r = ep.caller.promote(&request(1)).await;
    assert_eq!(r.status, 503, "{}", r.json);
    assert_eq!(r.json["result"], "retry");
    assert_eq!(r.json["state"], "standby");
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    std::fs::write(ep.path("exit"), "0").unwrap();
    let r = ep.caller.promote(&request(1)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["last"]["attempt"], 2);
    assert_eq!(ep.runs(), vec!["1 primary/1 1", "1 primary/1 2"]);
    assert_eq!(
        ep.metric("amrelay_promotion_runs_finished_total{outcome=\"retry\"}")
            .await,
        1.0
    );
    ep.stop().await;
}

#[tokio::test]
async fn a_dry_run_verifies_and_runs_nothing() {
    let ep = Endpoint::start("promote.sh", "").await;
    let mut req = request(1);
    req["dry_run"] = true.into();
    let r = ep.caller.promote(&req).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["result"], "verified");
    assert!(ep.runs().is_empty());
    let s = ep.caller.status().await;
    assert_eq!(
        (s.json["epoch"].as_u64(), s.json["state"].as_str()),
        (Some(0), Some("standby"))
    );
    ep.stop().await;
}

#[tokio::test]
async fn a_bad_body_is_refused_with_400_naming_the_field() {
    let ep = Endpoint::start("promote.sh", "").await;
    for (body, named) in [
        (
            json!({"schema": "amrelay.promotion.v1", "key": "primary/1", "target": "primary", "reason": "r"}),
            "epoch",
        ),
        (
            json!({"schema": "amrelay.promotion.v1", "key": "db/1", "target": "db", "epoch": 1, "reason": "r"}),
            "target",
        ),
        (
            json!({"schema": "amrelay.promotion.v1", "key": "primary/2", "target": "primary", "epoch": 1, "reason": "r"}),
            "key",
        ),
        (
            json!({"schema": "amrelay.promotion.v1", "key": "primary/1", "target": "primary", "epoch": 1, "reason": 5}),
            "reason",
        ),
        (
            json!({"schema": "amrelay.v1", "key": "primary/1", "target": "primary", "epoch": 1, "reason": "r"}),
            "schema",
        ),
    ] {
        let r = ep.caller.promote(&body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.json);
        let e = r.json["error"].as_str().unwrap();
        assert!(
            e.starts_with(&format!("{named}:")),
            "{e:?} should name {named}"
        );
    }
    let raw = b"{not json";
    let r = ep.caller.send_signed(raw, &fresh_id(), now(), SECRET).await;
    assert_eq!(r.status, 400);
    assert!(ep.runs().is_empty());
    ep.stop().await;
}
