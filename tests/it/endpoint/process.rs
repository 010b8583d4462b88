//! The endpoint as the real binary: `promoted` latched until `amrelay promotion reset`,
//! and SIGKILL mid-run.

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

use super::support::*;
use crate::helpers::*;

struct Proc {
    child: Child,
    caller: Caller,
    main: String,
}

/// `amrelay serve` on `dir` with the config there, its endpoint on `port`.
async fn serve(dir: &Path, main_port: u16, port: u16) -> Proc {
    Proc {
        child: serve_process(dir, main_port).await,
        caller: Caller::new(format!("127.0.0.1:{port}").parse().unwrap()),
        main: format!("http://127.0.0.1:{main_port}"),
    }
}

/// `amrelay promotion ARGS --config dir/amrelay.toml`, on the same store as `serve`.
fn promotion(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_amrelay"))
        .arg("promotion")
        .args(args)
        .arg("--config")
        .arg(dir.join("amrelay.toml"))
        .env("AMRELAY__STORAGE__PATH", dir.join("store"))
        .env("USER", "test-operator")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The config as the binary reads it: `{dir}` written out.
fn write_config(dir: &Path, port: u16) {
    let config = endpoint_config(dir, "promote.sh", &format!("127.0.0.1:{port}"), "");
    std::fs::write(
        dir.join("amrelay.toml"),
        config.replace("{dir}", &dir.display().to_string()),
    )
    .unwrap();
}

#[tokio::test]
async fn promoted_stays_latched_until_an_operator_runs_promotion_reset() {
    let dir = tempfile::tempdir().unwrap();
    let (main_port, port) = (free_port(), free_port());
    write_config(dir.path(), port);
    let mut p = serve(dir.path(), main_port, port).await;

    assert_eq!(p.caller.promote(&request(1)).await.status, 200);
    let latched = p.caller.promote(&request(2)).await;
    assert_eq!(latched.status, 409, "{}", latched.json);
    assert_eq!(latched.json["state"], "promoted");
    assert_eq!(latched.json["epoch"], 1);

    let shown = stdout(&promotion(dir.path(), &["show"]));
    assert!(shown.contains("state:   promoted"), "{shown}");
    assert!(shown.contains("last run: primary/1 (promoted)"), "{shown}");

    // The documented failback, while serve runs.
    let reset = stdout(&promotion(
        dir.path(),
        &["reset", "--reason", "failback drill"],
    ));
    assert!(reset.contains("promoted -> standby at epoch 1"), "{reset}");
    let s = p.caller.status().await;
    assert_eq!(
        (s.json["epoch"].as_u64(), s.json["state"].as_str()),
        (Some(1), Some("standby"))
    );

    let next = p.caller.promote(&request(2)).await;
    assert_eq!(next.status, 200, "{}", next.json);
    assert_eq!(runs(dir.path()), vec!["1 primary/1 1", "2 primary/2 1"]);
    let shown = stdout(&promotion(dir.path(), &["show"]));
    assert!(
        shown.contains("by test-operator from promoted at epoch 1: \"failback drill\""),
        "{shown}"
    );
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

#[tokio::test]
async fn an_endpoint_killed_mid_run_records_it_interrupted_and_never_reruns_it() {
    let dir = tempfile::tempdir().unwrap();
    let (main_port, port) = (free_port(), free_port());
    write_config(dir.path(), port);
    std::fs::write(dir.path().join("hold"), "").unwrap();
    let mut p = serve(dir.path(), main_port, port).await;

    let r = p.caller.promote(&request(1)).await;
    assert_eq!(r.status, 202, "{}", r.json);
    wait_for_file(&dir.path().join("runs"), Duration::from_secs(10)).await;
    assert_eq!(runs(dir.path()).len(), 1, "the command is running");
    p.child.kill().unwrap(); // SIGKILL
    p.child.wait().unwrap();
    // A restart while the old command still holds on: it is not run a second time.
    let mut p = serve(dir.path(), main_port, port).await;
    let s = p.caller.status().await;
    assert_eq!(s.json["state"], "interrupted", "{}", s.json);
    assert_eq!(s.json["last"]["state"], "interrupted");
    let r = p.caller.promote(&request(1)).await;
    assert_eq!(r.status, 422, "{}", r.json);
    assert_eq!(r.json["result"], "failed");
    assert_eq!(r.json["state"], "interrupted");
    let client = &p.caller.client;
    assert_eq!(
        metric_at(
            client,
            &p.main,
            "amrelay_promotion_runs_finished_total{outcome=\"interrupted\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric_at(client, &p.main, "amrelay_promotion_runs_started_total").await,
        0.0
    );
    assert_eq!(runs(dir.path()).len(), 1, "not rerun");
    std::fs::write(dir.path().join("release"), "").unwrap();
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

#[tokio::test]
async fn no_run_starts_while_the_command_of_a_run_cut_off_by_a_crash_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (main_port, port) = (free_port(), free_port());
    write_config(dir.path(), port);
    std::fs::write(dir.path().join("hold"), "").unwrap();
    let mut p = serve(dir.path(), main_port, port).await;
    assert_eq!(p.caller.promote(&request(1)).await.status, 202);
    wait_for_file(&dir.path().join("runs"), Duration::from_secs(10)).await;
    p.child.kill().unwrap(); // SIGKILL: the command, in its own process group, goes on.
    p.child.wait().unwrap();
    let mut p = serve(dir.path(), main_port, port).await;
    // The next incident's key, while the orphaned command of primary/1 still runs.
    let r = p.caller.promote(&request(2)).await;
    assert_eq!(r.status, 409, "{}", r.json);
    assert_eq!(r.json["result"], "refused");
    assert_eq!(
        r.json["state"], "interrupted",
        "the refusal carries the state"
    );
    assert_eq!(runs(dir.path()).len(), 1, "nothing else ran");
    // The orphan ends: a request for the same key then runs (refused until it has).
    std::fs::write(dir.path().join("release"), "").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while p.caller.promote(&request(2)).await.status == 409 {
        assert!(
            std::time::Instant::now() < deadline,
            "still refused after the orphan ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = p
        .caller
        .until_done(&request(2), Duration::from_secs(20))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["result"], "promoted");
    assert_eq!(runs(dir.path()).len(), 2);
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}
