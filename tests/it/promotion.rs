//! The promotion channel's guards and outcomes, against the real endpoint (amrelay with
//! `[promotion_endpoint]`) and webhooks posted straight to the caller: min_firing held
//! in the outbox and called off by a resolve, the quorum of monitors, the cooldown,
//! manual promotions through the admin API, a refusal, a failing command, send-test.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::endpoint::support::{endpoint_config, runs};
use crate::fakes::{Answer, Fake};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

pub struct Pair {
    pub backup: TestApp,
    pub backup_dir: PathBuf,
    pub caller: TestApp,
    pub admin_port: u16,
    pub outcomes: Fake,
}

/// A backup whose command exits with `exit`, and a caller whose promotion channel has
/// `keys` added.
pub async fn pair(exit: i32, keys: &str) -> Pair {
    let backup_tmp = tempfile::tempdir().unwrap();
    let backup_dir = backup_tmp.path().to_path_buf();
    std::fs::write(backup_dir.join("exit"), exit.to_string()).unwrap();
    let backup_port = free_port();
    let backup_config = endpoint_config(
        &backup_dir,
        "promote.sh",
        &format!("127.0.0.1:{backup_port}"),
        "",
    );
    let backup = spawn_app_in(backup_tmp, &backup_config).await;

    let outcomes = Fake::webhook().await;
    let admin_port = free_port();
    let caller_tmp = tempfile::tempdir().unwrap();
    std::fs::write(caller_tmp.path().join("admin.token"), "admin-token\n").unwrap();
    std::fs::write(
        caller_tmp.path().join("promotion.secret"),
        crate::endpoint::support::SECRET,
    )
    .unwrap();
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin_port}"
token_file = "{{dir}}/admin.token"

[[channels]]
name = "promote"
kind = "promotion"
url = "http://127.0.0.1:{backup_port}"
target = "primary"
secret_file = "{{dir}}/promotion.secret"
outcome_channels = ["ops"]
backoff_min = "100ms"
backoff_max = "300ms"
{keys}

[[channels]]
name = "ops"
kind = "webhook"
url = "{hook}"

[[routes]]
matchers = ['alertname="PrimaryDown"']
channels = ["promote"]

[[routes]]
channels = ["ops"]
"#,
        hook = outcomes.hook_url(),
    );
    let caller = spawn_app_in(caller_tmp, &config).await;
    Pair {
        backup,
        backup_dir,
        caller,
        admin_port,
        outcomes,
    }
}

/// PrimaryDown for target "primary" from `monitor`, firing since now (or resolved).
pub fn primary_down(group: &str, monitor: &str, resolved: bool) -> Vec<u8> {
    let name = if resolved {
        "primary-down-resolved"
    } else {
        "primary-down-firing"
    };
    let mut v: Value = serde_json::from_slice(&notification(name, group)).unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    for section in ["commonLabels", "groupLabels"] {
        v[section]["target"] = "primary".into();
        v[section]["monitor"] = monitor.into();
    }
    for a in v["alerts"].as_array_mut().unwrap() {
        a["labels"]["target"] = "primary".into();
        a["labels"]["monitor"] = monitor.into();
        if !resolved {
            a["startsAt"] = now.clone().into();
        }
    }
    serde_json::to_vec(&v).unwrap()
}

impl Pair {
    pub fn runs(&self) -> Vec<String> {
        runs(&self.backup_dir)
    }

    pub async fn wait_runs(&self, n: usize) -> Vec<String> {
        eventually(format!("{n} runs of the command"), WAIT, || {
            let r = self.runs();
            if r.len() >= n {
                Ok(r)
            } else {
                Err(format!("it ran {} times", r.len()))
            }
        })
        .await
    }

    pub async fn event(&self, event: &str, at_least: f64) {
        self.caller
            .wait_metric(
                &format!(
                    "amrelay_promotion_incidents_total{{target=\"primary\",event=\"{event}\"}}"
                ),
                at_least,
                WAIT,
            )
            .await;
    }

    /// Waits for an outcome message containing `needle`.
    pub async fn outcome(&self, needle: &str) -> String {
        eventually(format!("an outcome with {needle:?}"), WAIT, || {
            let texts: Vec<String> = self
                .outcomes
                .received()
                .iter()
                .map(|r| r.json["commonAnnotations"].to_string())
                .collect();
            texts
                .iter()
                .find(|t| t.contains(needle))
                .cloned()
                .ok_or_else(|| format!("got {texts:#?}"))
        })
        .await
    }

    /// `amrelay ARGS --admin-url ... --token-file DIR/TOKEN_FILE` against the caller.
    pub async fn admin_cli(&self, args: &[&str], token_file: &str) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_amrelay"))
            .args(args)
            .arg("--admin-url")
            .arg(format!("http://127.0.0.1:{}", self.admin_port))
            .arg("--token-file")
            .arg(self.caller.dir.path().join(token_file))
            .output()
            .await
            .unwrap()
    }

    /// `amrelay promote primary --reason ... [--force]` through the admin API.
    async fn promote_by_hand(&self, force: bool) -> std::process::Output {
        let mut args = vec!["promote", "primary", "--reason", "drill by hand"];
        if force {
            args.push("--force");
        }
        self.admin_cli(&args, "admin.token").await
    }

    pub async fn stop(self) {
        self.caller.stop().await;
        self.backup.stop().await;
    }
}

#[tokio::test]
async fn min_firing_holds_the_promotion_and_a_resolve_calls_it_off() {
    let p = pair(0, "min_firing = \"1h\"").await;
    let (status, _) = p.caller.post(primary_down("held", "mon1", false)).await;
    assert_eq!(status, 200);
    // Stored, held, not attempted.
    p.caller
        .wait_metric(
            "amrelay_deliveries_enqueued_total{channel=\"promote\"}",
            1.0,
            WAIT,
        )
        .await;
    let (status, _) = p.caller.post(primary_down("held", "mon1", true)).await;
    assert_eq!(status, 200);
    // The resolve is processed (its own delivery), and the firing one never was.
    p.caller
        .wait_metric(
            "amrelay_deliveries_delivered_total{channel=\"promote\"}",
            1.0,
            WAIT,
        )
        .await;
    assert_eq!(
        p.caller
            .metric("amrelay_delivery_attempts_total{channel=\"promote\",outcome=\"delivered\"}")
            .await,
        1.0
    );
    assert_eq!(
        p.caller
            .metric("amrelay_promotion_incidents_total{target=\"primary\",event=\"requested\"}")
            .await,
        0.0
    );
    assert!(p.runs().is_empty(), "{:?}", p.runs());
    p.stop().await;
}

#[tokio::test]
async fn one_monitor_cannot_promote_alone_two_can() {
    let p = pair(
        0,
        "quorum = { label = \"monitor\", count = 2, within = \"1m\" }",
    )
    .await;
    p.caller.post(primary_down("q-mon1", "mon1", false)).await;
    p.event("waiting_quorum", 1.0).await;
    p.outcome("reported by monitor=mon1 only").await;
    assert!(p.runs().is_empty());
    // A second monitor's report, its own group: now the quorum holds.
    p.caller.post(primary_down("q-mon2", "mon2", false)).await;
    let runs = p.wait_runs(1).await;
    assert!(runs[0].starts_with("1 primary/1"), "{runs:?}");
    p.outcome("succeeded").await;
    p.stop().await;
}

#[tokio::test]
async fn cooldown_force_refusal_and_reset() {
    let p = pair(0, "cooldown = \"1h\"").await;
    p.caller.post(primary_down("cd-1", "mon1", false)).await;
    p.wait_runs(1).await;
    p.outcome("succeeded").await;
    // The outage ends; the incident closes; no failback.
    p.caller.post(primary_down("cd-1", "mon1", true)).await;
    p.outcome("no failback").await;
    // A new outage within the cooldown: no new incident.
    p.caller.post(primary_down("cd-2", "mon1", false)).await;
    p.event("cooldown", 1.0).await;
    p.outcome("no new promotion before").await;
    // By hand, without --force, the cooldown holds too.
    let out = p.promote_by_hand(false).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.event("cooldown", 2.0).await;
    assert_eq!(p.runs().len(), 1);
    // With --force: a new incident (epoch 2), which the endpoint refuses: it is promoted.
    let out = p.promote_by_hand(true).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.event("refused", 1.0).await;
    p.outcome("refused by the endpoint").await;
    assert_eq!(p.runs().len(), 1, "a refusal runs nothing");
    // The operator fails back by hand and resets the backup; a forced promotion runs.
    let reset = std::process::Command::new(env!("CARGO_BIN_EXE_amrelay"))
        .args(["promotion", "reset", "--reason", "failed back", "--config"])
        .arg(p.backup.dir.path().join("amrelay.toml"))
        // The test moved the store into its temp dir; so must the command.
        .env("AMRELAY__STORAGE__PATH", store_path(p.backup.dir.path()))
        .output()
        .unwrap();
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let out = p.promote_by_hand(true).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = p.wait_runs(2).await;
    assert!(runs[1].starts_with("2 primary/2"), "{runs:?}");
    // `amrelay status` shows it, through the admin API.
    p.event("promoted", 2.0).await;
    let status = p.admin_cli(&["status"], "admin.token").await;
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let v: Value = serde_json::from_slice(&status.stdout).unwrap();
    let last = &v["promotion"][0]["last_incident"];
    assert_eq!(last["key"], "primary/2", "{v:#}");
    assert_eq!(last["state"], "promoted", "{v:#}");
    assert_eq!(v["promotion"][0]["last_epoch_seen"], 2, "{v:#}");
    // A wrong token is refused.
    std::fs::write(p.caller.dir.path().join("wrong.token"), "nope").unwrap();
    let refused = p.admin_cli(&["status"], "wrong.token").await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    // A target no promotion channel has, and a request that is not one, are named.
    let unknown = p
        .admin_cli(&["promote", "secondary", "--reason", "typo"], "admin.token")
        .await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stdout)
            .contains(r#"no promotion channel has target \"secondary\" (targets: primary)"#),
        "{}",
        String::from_utf8_lossy(&unknown.stdout)
    );
    let bad = crate::helpers::http_client()
        .post(format!(
            "http://127.0.0.1:{}/v1/admin/promote",
            p.admin_port
        ))
        .bearer_auth("admin-token")
        .json(&serde_json::json!({"target": "primary"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap_or("").contains("reason"),
        "{body}"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_failing_command_is_reported_and_not_retried() {
    let p = pair(1, "").await;
    p.caller.post(primary_down("fail", "mon1", false)).await;
    p.event("failed", 1.0).await;
    let text = p.outcome("FAILED").await;
    assert!(text.contains("exit_code=1"), "{text}");
    assert!(text.contains("warning from the command"), "{text}");
    assert_eq!(p.runs().len(), 1);
    p.caller
        .wait_metric(
            "amrelay_dead_lettered_total{channel=\"promote\"}",
            1.0,
            WAIT,
        )
        .await;
    p.stop().await;
}

#[tokio::test]
async fn send_test_on_a_promotion_channel_only_verifies() {
    let p = pair(0, "").await;
    let config = p.caller.dir.path().join("amrelay.toml");
    let run = |dry: bool| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_amrelay"));
        c.args(["send-test", "--channel", "promote", "--config"])
            .arg(&config);
        if dry {
            c.arg("--dry-run");
        }
        c.output()
    };
    let out = run(false).await.unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Use --dry-run"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(true).await.unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("delivered"));
    assert!(p.runs().is_empty(), "a dry run runs nothing");
    p.stop().await;
}

#[tokio::test]
async fn a_dry_run_channel_goes_through_everything_but_the_command() {
    let p = pair(0, "dry_run = true").await;
    p.caller.post(primary_down("dry", "mon1", false)).await;
    p.event("verified", 1.0).await;
    p.outcome("DRY RUN: the endpoint verified").await;
    assert!(p.runs().is_empty(), "{:?}", p.runs());
    p.stop().await;
}

#[tokio::test]
async fn an_alert_cannot_pose_as_a_manual_promotion() {
    let p = pair(
        0,
        "quorum = { label = \"monitor\", count = 2, within = \"1m\" }",
    )
    .await;
    let mut v: Value = serde_json::from_slice(&primary_down("pose", "mon1", false)).unwrap();
    v["commonLabels"]["amrelay_manual"] = "true".into();
    v["commonLabels"]["amrelay_force"] = "true".into();
    // With its own receiver name, the label does not make it manual: the quorum holds.
    let (status, _) = p.caller.post(serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(status, 200);
    p.event("waiting_quorum", 1.0).await;
    assert!(p.runs().is_empty());
    // The admin receiver's name is refused from outside.
    v["receiver"] = "amrelay-admin".into();
    v["groupKey"] = "{}:{pose=\"2\"}".into();
    let (status, body) = p.caller.post(serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap_or("").contains("receiver"),
        "{body}"
    );
    assert!(p.runs().is_empty());
    p.stop().await;
}

#[tokio::test]
async fn a_resolve_from_another_monitor_does_not_make_a_retry_open_a_second_incident() {
    // The command says "not now" (exit 75): the caller retries the same key.
    let p = pair(75, "").await;
    p.caller.post(primary_down("own-mon1", "mon1", false)).await;
    p.caller
        .wait_metric(
            "amrelay_delivery_attempt_failures_total{channel=\"promote\",reason=\"http_503\"}",
            1.0,
            WAIT,
        )
        .await;
    // Another monitor's group resolves meanwhile: it closes the incident...
    p.caller.post(primary_down("own-mon2", "mon2", true)).await;
    p.outcome("no failback").await;
    // ...but the retrying delivery still owns it and sends the same key.
    std::fs::write(p.backup_dir.join("exit"), "0").unwrap();
    p.event("promoted", 1.0).await;
    let runs = p.runs();
    assert!(runs.len() >= 2, "{runs:?}");
    assert!(
        runs.iter().all(|r| r.starts_with("1 primary/1 ")),
        "one key, one epoch: {runs:?}"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_resolve_cancels_a_held_promotion_even_when_the_outbox_is_full() {
    let p = pair(0, "min_firing = \"1h\"\n[storage]\nmax_pending = 1").await;
    let (status, _) = p.caller.post(primary_down("full", "mon1", false)).await;
    assert_eq!(status, 200);
    // The held promotion fills the outbox, yet the resolve is taken: it calls the held
    // promotion off first, which makes its room.
    let (status, _) = p.caller.post(primary_down("full", "mon1", true)).await;
    assert_eq!(status, 200);
    p.caller
        .wait_metric(
            "amrelay_deliveries_delivered_total{channel=\"promote\"}",
            1.0,
            WAIT,
        )
        .await;
    assert_eq!(
        p.caller
            .metric("amrelay_delivery_attempts_total{channel=\"promote\",outcome=\"delivered\"}")
            .await,
        1.0,
        "only the resolve was attempted"
    );
    assert!(p.runs().is_empty());
    p.stop().await;
}

#[tokio::test]
async fn the_promotion_state_file_is_made_only_where_a_promotion_channel_needs_it() {
    let hook = Fake::webhook().await;
    let plain = spawn_app(&hook_config(&hook.hook_url(), "")).await;
    let (status, _) = plain.post(primary_down("plain", "mon1", false)).await;
    assert_eq!(status, 200);
    hook.wait_for("the notification", WAIT, |r| !r.is_empty())
        .await;
    let store = store_path(plain.dir.path());
    assert!(store.join("amrelay.db").exists());
    assert!(!store.join("promotion-caller.db").exists());
    plain.stop().await;
    let p = pair(0, "").await;
    assert!(store_path(p.caller.dir.path())
        .join("promotion-caller.db")
        .exists());
    p.stop().await;
}

#[tokio::test]
async fn the_resolved_message_is_told_once_the_outbox_has_room_again() {
    // Room for the two outcome messages of the promotion and the resolve itself: the
    // "resolved" message finds the outbox full while the outcome channel hangs.
    let p = pair(0, "\n[storage]\nmax_pending = 3").await;
    p.outcomes.set_default(Answer::Hang);
    let (status, _) = p.caller.post(primary_down("told", "mon1", false)).await;
    assert_eq!(status, 200);
    p.wait_runs(1).await;
    p.outcomes
        .wait_for("requested and succeeded, held", WAIT, |r| r.len() >= 2)
        .await;
    let (status, _) = p.caller.post(primary_down("told", "mon1", true)).await;
    assert_eq!(status, 200);
    p.caller
        .wait_metric(
            "amrelay_delivery_attempt_failures_total{channel=\"promote\",reason=\"promotion_state\"}",
            1.0,
            WAIT,
        )
        .await;
    p.outcomes.set_default(Answer::Ok);
    p.outcomes.release_held();
    let told = p.outcome("no failback").await;
    assert!(told.contains("resolved for primary"), "{told}");
    p.caller
        .wait_metric(
            "amrelay_deliveries_delivered_total{channel=\"promote\"}",
            2.0,
            WAIT,
        )
        .await;
    p.stop().await;
}

#[tokio::test]
async fn a_monitor_still_firing_counts_for_the_quorum_past_the_window() {
    // A window so short that the second report always comes after it.
    let p = pair(
        0,
        "quorum = { label = \"monitor\", count = 2, within = \"1ms\" }",
    )
    .await;
    p.caller
        .post(primary_down("late-mon1", "mon1", false))
        .await;
    p.event("waiting_quorum", 1.0).await;
    // mon1's group has not resolved: its report still counts when mon2's arrives.
    p.caller
        .post(primary_down("late-mon2", "mon2", false))
        .await;
    p.wait_runs(1).await;
    p.event("promoted", 1.0).await;
    p.stop().await;
}
