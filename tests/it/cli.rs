//! The commands as an operator meets them: what they answer when something is missing,
//! taken or mistyped, their help, completions and man pages.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

const CONSOLE: &str =
    "[[channels]]\nname = \"c\"\nkind = \"console\"\n[[routes]]\nchannels = [\"c\"]\n";

fn amrelay(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_amrelay"))
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // None of these may hang: a command that should have failed at once is killed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn requeue_of_ids_that_are_no_dead_letters_names_them_and_exits_1() {
    let app = spawn_app(CONSOLE).await;
    let dir = app.stop().await;
    let config = dir.path().join("amrelay.toml");
    let store = store_path(dir.path());
    let out = amrelay(
        &[
            "dead-letters",
            "requeue",
            "12345",
            "777",
            "--config",
            config.to_str().unwrap(),
        ],
        dir.path(),
        &[("AMRELAY__STORAGE__PATH", store.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "requeued 0 deliveries\n");
    assert_eq!(
        text(&out.stderr),
        "amrelay: not dead letters (no such delivery, or not dead): 12345, 777\n"
    );
}

#[tokio::test]
async fn read_only_commands_create_no_store() {
    let empty = tempfile::tempdir().unwrap();
    let cwd = empty.path();
    let out = amrelay(&["dead-letters", "list"], cwd, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no store at ./data/amrelay.db"),
        "{}",
        text(&out.stderr)
    );
    let out = amrelay(&["dead-letters", "requeue", "--all"], cwd, &[]);
    assert!(!out.status.success());
    std::fs::write(cwd.join("amrelay.toml"), CONSOLE).unwrap();
    let out = amrelay(&["check-config", "--config", "amrelay.toml"], cwd, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(
        cwd.join("backup.toml"),
        "[promotion_endpoint]\nlisten = \"127.0.0.1:0\"\ntarget = \"primary\"\nsecret_file = \"backup.toml\"\ncommand = [\"/bin/true\"]\n",
    )
    .unwrap();
    let out = amrelay(&["promotion", "show", "--config", "backup.toml"], cwd, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no promotion state"),
        "{}",
        text(&out.stderr)
    );
    let mut left: Vec<String> = std::fs::read_dir(cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["amrelay.toml", "backup.toml"],
        "a read-only command made files"
    );
}

#[tokio::test]
async fn status_and_promote_without_a_listening_admin_api_say_so_and_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let token = [("AMRELAY_ADMIN_TOKEN", "t")];
    for args in [
        vec!["status", "--admin-url", &url],
        vec![
            "promote",
            "primary",
            "--reason",
            "drill",
            "--admin-url",
            &url,
        ],
    ] {
        let out = amrelay(&args, dir.path(), &token);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!("amrelay: connection refused at {url}; ")),
            "{args:?}: {err}"
        );
        assert!(err.contains("[admin] section"), "{err}");
        assert!(!err.contains("error sending request"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[tokio::test]
async fn every_command_and_flag_has_help_and_the_man_pages_and_completions_are_made_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man1");
    let out = amrelay(&["man", "--dir", man.to_str().unwrap()], dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut pages: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for page in [
        "amrelay.1",
        "amrelay-serve.1",
        "amrelay-check-config.1",
        "amrelay-dead-letters-list.1",
        "amrelay-dead-letters-requeue.1",
        "amrelay-promotion-show.1",
        "amrelay-promotion-reset.1",
        "amrelay-completions.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "{page} not in {pages:?}");
    }
    // In each page, every option (`.TP` then its name) is followed by its help text,
    // and every command has a description.
    for page in &pages {
        let roff = std::fs::read_to_string(man.join(page)).unwrap();
        let lines: Vec<&str> = roff.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if *l == ".TP" {
                let help = lines.get(i + 2).copied().unwrap_or(".");
                assert!(
                    !help.starts_with('.') && !help.trim().is_empty(),
                    "{page}: {} has no help text",
                    lines[i + 1]
                );
            }
        }
        let description = roff.split(".SH DESCRIPTION").nth(1).unwrap_or("");
        assert!(
            description.trim_start().len() > 10 || page.starts_with("amrelay-help"),
            "{page} has no description"
        );
    }
    let out = amrelay(&["man"], dir.path(), &[]);
    assert!(
        text(&out.stdout).starts_with(".ie \\n(.g .ds Aq \\(aq"),
        "a roff page on stdout"
    );

    for (shell, mark) in [
        ("bash", "_amrelay()"),
        ("zsh", "#compdef amrelay"),
        ("fish", "complete -c amrelay"),
    ] {
        let out = amrelay(&["completions", shell], dir.path(), &[]);
        assert!(out.status.success());
        let script = text(&out.stdout);
        assert!(script.contains(mark), "{shell}");
        assert!(
            script.contains("dead-letters") && script.contains("requeue"),
            "{shell}"
        );
    }
    // bash itself reads the script without an error.
    let script = dir.path().join("amrelay.bash");
    std::fs::write(
        &script,
        amrelay(&["completions", "bash"], dir.path(), &[]).stdout,
    )
    .unwrap();
    let out = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test]
async fn collect_and_serve_on_a_taken_port_name_the_key_and_never_say_started() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("collect.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"store\"\n\
             [[collector.targets]]\njob = \"node\"\nurl = \"http://127.0.0.1:9/metrics\"\n\
             [[collector.remote_write]]\nname = \"prom\"\nurl = \"http://127.0.0.1:9/api/v1/write\"\n"
        ),
    )
    .unwrap();
    let out = amrelay(&["collect", "--config", "collect.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(!err.contains("collector started"), "{err}");
    assert!(
        err.contains(&format!(
            "server.listen: 127.0.0.1:{port} is in use by another process; set server.listen to a free address (in the file, or with AMRELAY__SERVER__LISTEN)"
        )),
        "{err}"
    );
    std::fs::write(
        dir.path().join("serve.toml"),
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"store\"\n{CONSOLE}"),
    )
    .unwrap();
    let out = amrelay(&["serve", "--config", "serve.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("server.listen: 127.0.0.1:{port} is in use")),
        "{err}"
    );
    drop(taken);
}

#[tokio::test]
async fn serve_on_a_non_loopback_address_without_webhook_auth_warns() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("amrelay.toml"), CONSOLE).unwrap();
    let log_path = dir.path().join("amrelay.log");
    let warning = "server.listen is reachable from other hosts and webhooks need no credentials";
    for (listen, warns) in [("0.0.0.0", true), ("127.0.0.1", false)] {
        let port = free_port();
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_amrelay"))
            .args(["serve", "--config", "amrelay.toml"])
            .current_dir(dir.path())
            .env("AMRELAY__SERVER__LISTEN", format!("{listen}:{port}"))
            .env("AMRELAY__STORAGE__PATH", store_path(dir.path()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let client = http_client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(log.contains("amrelay listening"), "{log}");
        assert_eq!(log.contains(warning), warns, "{listen}: {log}");
    }
}
