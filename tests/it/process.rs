//! The binary as a process: SIGKILL mid-delivery, SIGTERM, SIGHUP reload, check-config.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use crate::fakes::{Answer, Fake};
use crate::helpers::*;

struct Proc {
    child: Child,
    addr: String,
}

async fn start(dir: &Path, port: u16) -> Proc {
    Proc {
        child: serve_process(dir, port).await,
        addr: format!("http://127.0.0.1:{port}"),
    }
}

fn group_counts(fake: &Fake) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in fake.received() {
        *m.entry(r.json["groupKey"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    m
}

#[tokio::test]
async fn sigkill_mid_delivery_loses_nothing_and_duplicates_only_what_was_in_flight() {
    const N: usize = 6;
    let hook = Fake::webhook().await;
    hook.set_default(Answer::Hang);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("amrelay.toml"),
        hook_config(&hook.hook_url(), "concurrency = 2\ntimeout = \"60s\"\n"),
    )
    .unwrap();
    let port = free_port();
    let mut p = start(dir.path(), port).await;
    let client = crate::helpers::http_client();
    for i in 0..N {
        let r = client
            .post(format!("{}/webhook/alertmanager", p.addr))
            .body(notification("group-firing-3-alerts", &format!("crash-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged means committed");
    }
    // Two attempts are held open by the fake; the rest wait in the outbox.
    hook.wait_for("two attempts in flight", Duration::from_secs(10), |r| {
        r.len() >= 2
    })
    .await;
    let in_flight = hook.received().len();
    assert!(
        in_flight < N,
        "deliveries must still be pending at the kill"
    );
    p.child.kill().unwrap(); // SIGKILL
    p.child.wait().unwrap();

    hook.set_default(Answer::Ok);
    hook.release_held();
    let mut p = start(dir.path(), port).await;
    hook.wait_for(
        "every notification delivered",
        Duration::from_secs(20),
        |r| {
            let delivered: std::collections::HashSet<_> = r
                .iter()
                .filter(|r| r.accepted)
                .map(|r| r.json["groupKey"].to_string())
                .collect();
            delivered.len() >= N
        },
    )
    .await;
    let counts = group_counts(&hook);
    assert_eq!(counts.len(), N, "{counts:?}");
    let duplicated = counts.values().filter(|c| **c > 1).count();
    assert!(
        duplicated <= in_flight,
        "{duplicated} duplicated, only {in_flight} were in flight: {counts:?}"
    );

    // SIGTERM: a clean stop with exit code 0.
    let status = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = p.child.wait().unwrap();
    assert_eq!(
        exit.code(),
        Some(0),
        "log: {}",
        std::fs::read_to_string(dir.path().join("amrelay.log")).unwrap()
    );
}

#[tokio::test]
async fn check_config_names_every_bad_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[channels]]\nname = \"s\"\nkind = \"slack\"\nchannel = \"#x\"\nrate_limit = \"fast\"\n[[routes]]\nmatchers = ['a=\"b\"']\nchannels = [\"s\"]\n",
    )
    .unwrap();
    let out = amrelay("check-config", &path, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "channels[0].rate_limit",
        "channels[0].token_file",
        "routes[0].matchers",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
    assert_eq!(err.lines().count(), 3, "one line per problem:\n{err}");
    // serve refuses the same file before binding anything.
    let out = amrelay("serve", &path, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("channels[0].rate_limit"));

    // The shipped example documents every key and must stay valid.
    let example = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/amrelay.example.toml"
    ));
    let secrets = [
        ("AMRELAY_WEBHOOK_TOKEN", "t"),
        ("SLACK_BOT_TOKEN", "xoxb-t"),
        ("HOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("SENDGRID_API_KEY", "SG.t"),
        ("SMTP_PASSWORD", "p"),
        ("PROMOTION_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("AMRELAY_ADMIN_TOKEN", "admin-t"),
    ];
    let out = amrelay("check-config", example, &secrets);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[channels]]\nname = \"c\"\nkind = \"console\"\n[[routes]]\nchannels = [\"c\"]\n",
    )
    .unwrap();
    let out = amrelay("check-config", &good, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("valid (1 channel, 1 route)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A file for `amrelay collect` alone is valid for that, and says serve needs more.
    let collect = dir.path().join("collect.toml");
    std::fs::write(
        &collect,
        "[[collector.targets]]\njob = \"node\"\nurl = \"http://127.0.0.1:9100/metrics\"\n[[collector.remote_write]]\nname = \"prom\"\nurl = \"http://127.0.0.1:9090/api/v1/write\"\n",
    )
    .unwrap();
    let out = amrelay("check-config", &collect, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("valid for `amrelay collect` (collector: 1 target)"),
        "{stdout}"
    );
    // Without its [collector] the same kind of file is refused as before.
    std::fs::write(
        &collect,
        "[server]\nlisten = \"127.0.0.1:0\"\n[[channels]]\nname = \"c\"\nkind = \"console\"\n",
    )
    .unwrap();
    assert!(!amrelay("check-config", &collect, &[]).status.success());
}

#[tokio::test]
async fn check_config_names_every_problem_at_its_line_or_variable_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typos.toml");
    std::fs::write(
        &path,
        "[server]\nlisten_adress = \"0.0.0.0:9097\"\n[dedup]\nwindow = \"soon\"\n\
         [[channels]]\nname = \"c\"\nkind = \"console\"\n[[routes]]\nchannels = [\"c\"]\n",
    )
    .unwrap();
    let out = amrelay("check-config", &path, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let shown = path.display();
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            format!("{shown}:2: server.listen_adress: unknown key; did you mean `listen`?"),
            format!("{shown}:4: dedup.window: expected a duration like \"30s\", \"10m\" or \"7d\", got \"soon\" (expected number at 0)"),
        ],
        "{err}"
    );

    // A syntax error: one line, where it is, nothing after it.
    std::fs::write(&path, "[server\nlisten = 1\n").unwrap();
    let err = String::from_utf8_lossy(&amrelay("check-config", &path, &[]).stderr).into_owned();
    assert_eq!(
        err,
        format!("{shown}:1:8: TOML syntax error: unclosed table, expected `]`\n")
    );

    // A directory is not "not found".
    let err =
        String::from_utf8_lossy(&amrelay("check-config", dir.path(), &[]).stderr).into_owned();
    assert!(
        err.contains(": is a directory; --config takes the TOML file itself"),
        "{err}"
    );

    // What an environment variable set is named by the variable.
    std::fs::write(
        &path,
        "[[channels]]\nname = \"c\"\nkind = \"console\"\n[[routes]]\nchannels = [\"c\"]\n",
    )
    .unwrap();
    let out = amrelay(
        "check-config",
        &path,
        &[
            ("AMRELAY__SERVER__LISTEN", "notanaddr"),
            ("AMRELAY__SERVER__LISTN", "x"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            "AMRELAY__SERVER__LISTEN: server.listen: expected an address like \"127.0.0.1:9097\", got \"notanaddr\"",
            "AMRELAY__SERVER__LISTN: server.listn: unknown key; did you mean AMRELAY__SERVER__LISTEN?",
        ],
        "{err}"
    );
}

/// Runs `amrelay COMMAND --config PATH` to completion.
fn amrelay(command: &str, config: &Path, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_amrelay"))
        .args([command, "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test]
async fn sighup_reloads_a_valid_config_and_keeps_the_old_one_when_the_new_is_invalid() {
    let hook = Fake::webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("amrelay.toml");
    std::fs::write(
        &config,
        "[[channels]]\nname = \"c\"\nkind = \"console\"\n[[routes]]\nchannels = [\"c\"]\n",
    )
    .unwrap();
    let port = free_port();
    let mut p = start(dir.path(), port).await;
    let client = crate::helpers::http_client();
    let hup = |pid: u32| {
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
    };
    let post = |group: &'static str| {
        client
            .post(format!("{}/webhook/alertmanager", p.addr))
            .body(notification("primary-down-firing", group))
            .send()
    };

    // An invalid file: refused, logged, the old config keeps serving.
    std::fs::write(&config, "[[channels]]\nname = \"c\"\nkind = \"pager\"\n").unwrap();
    assert!(hup(p.child.id()).success());
    let log = dir.path().join("amrelay.log");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("new configuration refused")
    {
        assert!(tokio::time::Instant::now() < deadline, "no refusal logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(post("after-bad-reload").await.unwrap().status(), 200);

    // A valid file routing to the webhook: the next notification goes there.
    std::fs::write(&config, hook_config(&hook.hook_url(), "")).unwrap();
    assert!(hup(p.child.id()).success());
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("configuration reloaded")
    {
        assert!(tokio::time::Instant::now() < deadline, "no reload logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(post("after-good-reload").await.unwrap().status(), 200);
    hook.wait_for(
        "the delivery on the new channel",
        Duration::from_secs(10),
        |r| r.iter().any(|r| r.accepted),
    )
    .await;
    assert!(hook.received()[0].json["groupKey"]
        .as_str()
        .unwrap()
        .contains("after-good-reload"));
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}
