//! `amrelay drill` and `amrelay drill show`: a failover drill through the admin API of a
//! running amrelay, followed step by step until its report is final.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use super::{admin_token, no_answer, runtime};

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
}

pub struct DrillArgs {
    pub target: String,
    pub alertmanagers: Vec<String>,
    pub live: bool,
    /// Skip the live drill's confirmation.
    pub yes: bool,
    pub step_timeout: String,
    pub format: ReportFormat,
}

/// Runs a drill and prints its report; exit 0 only when every step passed in budget.
pub fn drill(admin_url: &str, token_file: Option<&Path>, a: DrillArgs) -> ExitCode {
    let Some(step_timeout) = humantime::parse_duration(&a.step_timeout)
        .ok()
        .filter(|d| !d.is_zero())
    else {
        eprintln!(
            "--step-timeout: expected a duration like \"5m\", got {:?}",
            a.step_timeout
        );
        return ExitCode::from(2);
    };
    if a.live && !a.yes && !confirmed(&a.target) {
        eprintln!("not confirmed: nothing done");
        return ExitCode::FAILURE;
    }
    let Some(token) = admin_token(token_file) else {
        return ExitCode::FAILURE;
    };
    let Some(rt) = runtime(false) else {
        return ExitCode::FAILURE;
    };
    let base = admin_url.trim_end_matches('/').to_owned();
    let body = json!({
        "target": a.target,
        "alertmanagers": a.alertmanagers,
        "live": a.live,
        "step_timeout": a.step_timeout,
    });
    // Every step within its budget, and a margin for the last look.
    let deadline = step_timeout * 6 + Duration::from_secs(30);
    let result = rt.block_on(async {
        let client = crate::net::client().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let call = |req: reqwest::RequestBuilder| {
            let token = token.clone();
            let base = base.clone();
            async move {
                let r = req
                    .bearer_auth(token)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map_err(|e| no_answer(&base, &e))?;
                let status = r.status();
                let text = r.text().await.map_err(|e| no_answer(&base, &e))?;
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                if status.is_success() {
                    Ok(v)
                } else {
                    let msg = v.get("error").and_then(Value::as_str).map(str::to_owned);
                    Err(format!("HTTP {status}: {}", msg.unwrap_or_else(|| v.to_string())))
                }
            }
        };
        let started = call(client.post(format!("{base}/v1/admin/drills")).json(&body)).await?;
        let id = started
            .get("id")
            .and_then(Value::as_str)
            .ok_or("the answer has no drill id")?
            .to_owned();
        eprintln!("drill {id} started: {}", a.target);
        let until = std::time::Instant::now() + deadline;
        let mut said = 0;
        loop {
            let report = call(client.get(format!("{base}/v1/admin/drills/{id}"))).await?;
            said = progress(&report, said);
            if report.get("passed").is_some_and(|p| !p.is_null()) {
                return Ok::<_, String>(report);
            }
            if std::time::Instant::now() >= until {
                return Err(format!(
                    "drill {id} had not finished after {deadline:?}; `amrelay drill show {id}` shows where it is"
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    match result {
        Ok(report) => {
            print(&report, a.format);
            if report.get("passed") == Some(&Value::Bool(true)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("amrelay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `amrelay drill show [ID]`: a stored report, or the newest (of `target`).
pub fn drill_show(
    admin_url: &str,
    token_file: Option<&Path>,
    id: Option<&str>,
    target: Option<&str>,
    format: ReportFormat,
) -> ExitCode {
    let Some(token) = admin_token(token_file) else {
        return ExitCode::FAILURE;
    };
    let Some(rt) = runtime(false) else {
        return ExitCode::FAILURE;
    };
    let base = admin_url.trim_end_matches('/');
    let result = rt.block_on(async {
        let client =
            crate::net::client().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let url = match (id, target) {
            (Some(id), _) => format!("{base}/v1/admin/drills/{id}"),
            (None, None) => format!("{base}/v1/admin/drills?limit=1"),
            (None, Some(t)) => {
                let mut u = reqwest::Url::parse(&format!("{base}/v1/admin/drills?limit=1"))
                    .map_err(|e| format!("--admin-url: {e}"))?;
                u.query_pairs_mut().append_pair("target", t);
                u.to_string()
            }
        };
        let r = client
            .get(url)
            .bearer_auth(token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| no_answer(base, &e))?;
        let status = r.status();
        let v: Value = r.json().await.map_err(|e| no_answer(base, &e))?;
        if !status.is_success() {
            return Err(format!(
                "HTTP {status}: {}",
                v.get("error").and_then(Value::as_str).unwrap_or_default()
            ));
        }
        match v {
            Value::Array(a) => a
                .into_iter()
                .next()
                .ok_or_else(|| "no drill has run yet".to_owned()),
            other => Ok(other),
        }
    });
    match result {
        Ok(report) => {
            print(&report, format);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("amrelay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print(report: &Value, format: ReportFormat) {
    match format {
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
        ReportFormat::Markdown => {
            match serde_json::from_value::<crate::drill::report::Report>(report.clone()) {
                Ok(r) => print!("{}", r.markdown()),
                Err(_) => println!("{report}"),
            }
        }
    }
}

/// Prints the steps finished since the `said` first ones; how many are said now.
fn progress(report: &Value, said: usize) -> usize {
    let Some(steps) = report.get("steps").and_then(Value::as_array) else {
        return said;
    };
    let mut n = said;
    for s in steps.iter().skip(said) {
        let result = s.get("result").and_then(Value::as_str).unwrap_or("");
        if matches!(result, "waiting" | "running") {
            break;
        }
        eprintln!(
            "  {:8} {:7} {:>8}  {}",
            s.get("name").and_then(Value::as_str).unwrap_or(""),
            result,
            s.get("elapsed_s")
                .and_then(Value::as_f64)
                .map_or("-".to_owned(), |e| format!("{e:.2} s")),
            s.get("actual").and_then(Value::as_str).unwrap_or("")
        );
        n += 1;
    }
    n
}

/// A live drill runs the promotion for real: the operator types the target's name.
fn confirmed(target: &str) -> bool {
    eprint!(
        "A LIVE drill runs the promotion command of {target:?} for real: the backup takes over and stays promoted until you fail back and run `amrelay promotion reset`.\nType the target's name to go on: "
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).is_ok() && line.trim() == target
}
