//! A store that stops taking writes, and takes them again (issue 14, item 6). The real
//! binary runs under a file-size limit (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored, so a
//! write past it fails as on a full disk), which the test then lifts with `prlimit`
//! while amrelay runs: nothing is restarted.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::fakes::Fake;
use crate::helpers::*;

/// 200 kB of notification: a few of them fill the store's limit.
fn big(group: &str) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&notification("primary-down-firing", group)).unwrap();
    // Random-looking text, so that the store's compression does not shrink it away.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ group.len() as u64;
    let noise: String = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    v["commonAnnotations"]["noise"] = noise.into();
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn a_store_that_refuses_writes_turns_readiness_off_at_once_logs_a_line_not_a_flood_and_recovers_without_a_restart(
) {
    let hook = Fake::webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("amrelay.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nmax_body = \"1MiB\"\n[storage]\npath = \"{}\"\n[[channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nbackoff_min = \"100ms\"\nbackoff_max = \"200ms\"\n[[routes]]\nchannels = [\"hook\"]\n",
            dir.path().join("data").display(),
            hook.hook_url()
        ),
    )
    .unwrap();
    let relay = serve_limited(
        &config,
        port,
        libc::RLIMIT_FSIZE,
        3 * 1024 * 1024,
        libc::RLIM_INFINITY,
    )
    .await;
    let (pid, url, lines) = (relay.pid, relay.url.clone(), &relay.lines);
    let client = http_client();
    let post = |body: Vec<u8>| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .post(format!("{url}/webhook/alertmanager"))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Fill the store until it refuses.
    let mut accepted = 0;
    let mut refused_at = None;
    for i in 0..200 {
        match post(big(&format!("fill-{i}"))).await {
            200 => accepted += 1,
            503 => {
                refused_at = Some(i);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        refused_at.is_some(),
        "the store never refused ({accepted} accepted)"
    );
    // Readiness is off with the first refused write, not at some later probe.
    let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // A flood of refusals is a line, not a line each.
    for i in 0..50 {
        assert_eq!(post(big(&format!("refused-{i}"))).await, 503);
    }
    // Lift the limit while amrelay runs.
    let lifted = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--fsize=unlimited:unlimited"])
        .output()
        .unwrap();
    assert!(
        lifted.status.success(),
        "{}",
        String::from_utf8_lossy(&lifted.stderr)
    );
    // Webhooks are taken again, readiness comes back, and everything accepted arrives.
    let back = Instant::now();
    loop {
        if post(big("after")).await == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "never took writes again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    hook.wait_for(
        "every accepted notification",
        Duration::from_secs(60),
        |r| r.iter().filter(|r| r.answered == Some(200)).count() > accepted,
    )
    .await;
    let said: Vec<String> = lines.try_iter().collect();
    let refusal_lines = said
        .iter()
        .filter(|l| l.contains("cannot commit notification") || l.contains("checkpoint failed"))
        .count();
    assert!(
        (1..=6).contains(&refusal_lines),
        "{refusal_lines} lines about refused writes for 51 refusals:\n{}",
        said.join("\n")
    );
}
