//! `/metrics` in both exposition formats, checked by the real `promtool`: the classic
//! text format with `promtool check metrics` (its linter reads only that format), and
//! OpenMetrics with promtool's strict OpenMetrics parser (`tsdb create-blocks-from
//! openmetrics`, which backfills only samples with timestamps, so the test adds one).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::helpers::*;

const CONSOLE: &str =
    "[[channels]]\nname = \"console\"\nkind = \"console\"\n[[routes]]\nchannels = [\"console\"]\n";

const TEXT: &str = "text/plain; version=0.0.4";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

fn promtool(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool (scripts/test installs it): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn shown(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn scrape(app: &TestApp, accept: Option<&str>) -> (String, String) {
    let mut req = app.client.get(app.url("/metrics"));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    (ct, r.text().await.unwrap())
}

/// The series every exporter has, and the build's, in one exposition.
fn assert_standard_series(what: &str, body: &str) {
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_virtual_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
        "amrelay_build_info{version=\"",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(name)),
            "{what}: no {name}in\n{body}"
        );
    }
    let build = body
        .lines()
        .find(|l| l.starts_with("amrelay_build_info{"))
        .unwrap();
    assert!(
        build.starts_with(&format!(
            "amrelay_build_info{{version=\"{}\",revision=\"",
            env!("CARGO_PKG_VERSION")
        )) && !build.contains("revision=\"\""),
        "{what}: {build}"
    );
    let start = metric_in(body, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start > now - 3600.0 && start <= now + 1.0,
        "{what}: start time {start}, now {now}"
    );
}

#[tokio::test]
async fn metrics_pass_promtool_in_the_classic_text_format_and_in_openmetrics() {
    let app = spawn_app(CONSOLE).await;
    let (status, _) = app.post(notification("primary-down-firing", "expo")).await;
    assert_eq!(status, 200);
    wait_metric_at(
        &app.client,
        &app.url(""),
        "amrelay_deliveries_delivered_total{channel=\"console\"}",
        1.0,
        std::time::Duration::from_secs(10),
    )
    .await;

    // Asked for the classic format, and by curl's `*/*` or no Accept at all.
    for accept in [Some(TEXT), Some("*/*"), None] {
        let (ct, body) = scrape(&app, accept).await;
        assert!(ct.starts_with(TEXT), "Accept {accept:?}: {ct}");
        assert!(!body.contains("# EOF"), "Accept {accept:?}");
        let out = promtool(&["check", "metrics"], &body);
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics, Accept {accept:?}: {}\n{body}",
            shown(&out)
        );
        assert_standard_series("text", &body);
    }

    // Prometheus' own scrape header gets OpenMetrics.
    let (ct, body) = scrape(
        &app,
        Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    )
    .await;
    assert!(ct.starts_with(OPENMETRICS), "{ct}");
    assert!(body.ends_with("# EOF\n"));
    assert_standard_series("openmetrics", &body);
    let stamped: String = body
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("{l}\n")
            } else {
                format!("{l} 1700000000\n")
            }
        })
        .collect();
    let file = app.dir.path().join("metrics.om");
    std::fs::write(&file, &stamped).unwrap();
    let blocks = app.dir.path().join("blocks");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(&blocks)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool's OpenMetrics parser: {}\n{stamped}",
        shown(&out)
    );
    // The linter reads the classic format only: on OpenMetrics its one complaint is that
    // a counter's samples (`x_total`) are not named as the family (`x`) is.
    let out = promtool(&["check", "metrics"], &body);
    let text = String::from_utf8_lossy(&out.stderr);
    for problem in text.lines() {
        assert!(
            problem.ends_with("_total no help text"),
            "promtool check metrics on OpenMetrics: {problem}"
        );
    }
    app.stop().await;
}
