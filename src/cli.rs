//! The commands behind the command line (`main.rs` parses the arguments and calls
//! these): each loads the configuration, says what is wrong on stderr, and returns the
//! exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::app::{App, Reloader};
use crate::config::Settings;
use crate::outbox::{Access, Limits, Outbox, Requeue};
use crate::telemetry;

#[path = "cli/drill.rs"]
mod drill;
pub use drill::{drill, drill_show, DrillArgs, ReportFormat};

/// `amrelay promotion show` (no `reset`), or `promotion reset` with its reason.
pub fn promotion(config: &Path, reset: Option<&str>) -> ExitCode {
    use crate::promotion::endpoint::admin;
    let Some(settings) = load_or_report(Some(config)) else {
        return ExitCode::FAILURE;
    };
    let out = match reset {
        None => admin::show(&settings),
        Some(reason) => {
            telemetry::init(&settings.log);
            admin::reset(&settings, reason)
        }
    };
    match out {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("amrelay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One admin API call; prints the JSON answer. Exit 0 on 2xx.
pub fn admin_call(
    admin_url: &str,
    token_file: Option<&Path>,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> ExitCode {
    let Some(token) = admin_token(token_file) else {
        return ExitCode::FAILURE;
    };
    let url = format!("{}/{path}", admin_url.trim_end_matches('/'));
    let Some(rt) = runtime(false) else {
        return ExitCode::FAILURE;
    };
    let client = match crate::net::client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot build the HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let mut req = client
            .request(method, &url)
            .bearer_auth(token)
            .timeout(std::time::Duration::from_secs(10));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let status = r.status();
        let text = r.text().await?;
        Ok::<_, reqwest::Error>((status, text))
    });
    match result {
        Ok((status, text)) => {
            let pretty = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(text);
            println!("{pretty}");
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                eprintln!("{url}: HTTP {status}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!(
                "amrelay: {}",
                no_answer(admin_url.trim_end_matches('/'), &e)
            );
            ExitCode::FAILURE
        }
    }
}

/// The admin token from --token-file or AMRELAY_ADMIN_TOKEN; None after saying why not.
fn admin_token(token_file: Option<&Path>) -> Option<String> {
    let token = match token_file {
        Some(f) => std::fs::read_to_string(f)
            .map(|t| t.trim().to_owned())
            .map_err(|e| format!("--token-file {}: {e}", f.display())),
        None => std::env::var("AMRELAY_ADMIN_TOKEN")
            .map_err(|_| "give --token-file or set AMRELAY_ADMIN_TOKEN".to_owned()),
    };
    match token {
        Ok(t) if !t.is_empty() => Some(t),
        Ok(_) => {
            eprintln!("the admin token is empty");
            None
        }
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

/// Why an admin API call got no answer, in a sentence (not reqwest's chain).
fn no_answer(admin_url: &str, e: &reqwest::Error) -> String {
    let mut io = None;
    let mut innermost: &dyn std::error::Error = e;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(i) = s.downcast_ref::<std::io::Error>() {
            io.get_or_insert(i.kind());
        }
        innermost = s;
        source = s.source();
    }
    let hint = "amrelay serves the admin API only with an [admin] section (admin.listen, \
                default 127.0.0.1:9099): is `amrelay serve` running with one, and is \
                --admin-url that address?";
    if io == Some(std::io::ErrorKind::ConnectionRefused) {
        format!("connection refused at {admin_url}; {hint}")
    } else if e.is_timeout() {
        format!("no answer from {admin_url} within 10s")
    } else if e.is_connect() {
        format!("cannot connect to {admin_url} ({innermost}); {hint}")
    } else {
        format!("{admin_url}: {innermost}")
    }
}

/// `amrelay send-test`: one marked message through one channel, and what came of it.
pub fn send_test(path: &Path, name: &str, dry_run: bool) -> ExitCode {
    let Some(settings) = load_or_report(Some(path)) else {
        return ExitCode::FAILURE;
    };
    let Some(channel) = settings.channel(name) else {
        let names: Vec<&str> = settings.channels.iter().map(|c| c.name.as_str()).collect();
        eprintln!(
            "{}: no channel is named {name:?} (channels: {})",
            path.display(),
            names.join(", ")
        );
        return ExitCode::FAILURE;
    };
    let (kind, provider) = channel.kind.describe();
    let kind = if provider.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}/{provider}")
    };
    let promotion = matches!(channel.kind, crate::config::ChannelKind::Promotion(_));
    if promotion && !dry_run {
        eprintln!(
            "{name} is a promotion channel: a test must not promote. Use --dry-run: the endpoint checks the signed request and runs nothing"
        );
        return ExitCode::FAILURE;
    }
    if dry_run && !promotion {
        let n = crate::sinks::send_test::notification(name);
        println!(
            "dry run: would send {:?} through {name} ({kind}); nothing sent",
            n.title()
        );
        return ExitCode::SUCCESS;
    }
    telemetry::init(&settings.log);
    let Some(rt) = runtime(false) else {
        return ExitCode::FAILURE;
    };
    let started = std::time::Instant::now();
    let outcome = rt.block_on(crate::sinks::send_test::send(channel));
    let took = started.elapsed();
    use crate::net::Outcome;
    match outcome {
        Outcome::Delivered => {
            println!(
                "{name} ({kind}): delivered in {took:.2?}: the far side accepted the test message"
            );
            ExitCode::SUCCESS
        }
        Outcome::Retryable {
            reason,
            detail,
            retry_after,
        } => {
            let wait = retry_after
                .map(|d| format!(", asked to wait {d:?}"))
                .unwrap_or_default();
            println!(
                "{name} ({kind}): NOT delivered, temporary failure ({reason}{wait}): {detail}"
            );
            println!("amrelay would retry this; check the far side and try again");
            ExitCode::FAILURE
        }
        Outcome::Permanent { reason, detail } => {
            println!("{name} ({kind}): NOT delivered, refused for good ({reason}): {detail}");
            println!("amrelay would hand this to the fallback or the dead letters; fix the channel's settings");
            ExitCode::FAILURE
        }
    }
}

/// The tokio runtime for a command; None (said on stderr) if it cannot start.
fn runtime(multi_thread: bool) -> Option<tokio::runtime::Runtime> {
    let mut b = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all()
        .build()
        .map_err(|e| eprintln!("cannot start the runtime: {e}"))
        .ok()
}

/// The settings, or every problem on stderr, one line each (where, key, what).
fn load_or_report(path: Option<&Path>) -> Option<Settings> {
    Settings::load(path).map_err(|e| eprintln!("{e}")).ok()
}

/// `amrelay serve`: until SIGTERM; SIGHUP reloads the file.
pub fn serve(path: Option<&Path>) -> ExitCode {
    let Some(settings) = load_or_report(path) else {
        return ExitCode::FAILURE;
    };
    telemetry::init(&settings.log);
    let Some(rt) = runtime(true) else {
        return ExitCode::FAILURE;
    };
    let result = rt.block_on(async move {
        let app = App::build(settings).await?;
        if let Some(path) = path.map(Path::to_path_buf) {
            tokio::spawn(reload_on_sighup(path, app.reloader()));
        }
        app.run(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("amrelay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
}

/// SIGHUP reloads the file; an invalid one is refused and the running config stays.
async fn reload_on_sighup(path: PathBuf, reloader: Reloader) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match Settings::load(Some(&path)) {
            Ok(s) => reloader.reload(s).await,
            Err(e) => {
                tracing::error!(problems = %e, "SIGHUP: new configuration refused; the old one keeps running")
            }
        }
    }
}

/// What `amrelay dead-letters` does.
pub enum DeadLetters {
    List { limit: usize },
    Requeue { ids: Vec<i64>, all: bool },
}

/// `amrelay dead-letters list|requeue`, on the store the configuration names (shared
/// or not); safe while the server runs.
pub fn dead_letters(config: Option<&Path>, cmd: DeadLetters) -> ExitCode {
    if let DeadLetters::Requeue { ids, all: false } = &cmd {
        if ids.is_empty() {
            eprintln!("name the delivery ids to requeue, or --all");
            return ExitCode::FAILURE;
        }
    }
    let Some(settings) = load_or_report(config) else {
        return ExitCode::FAILURE;
    };
    let Some(rt) = runtime(false) else {
        return ExitCode::FAILURE;
    };
    let limits = Limits::of(&settings);
    let opened = rt.block_on(Outbox::open(
        &settings.storage,
        &settings.server.instance,
        limits,
        Access::Tool,
    ));
    let outbox = match opened {
        Ok((o, _)) => o,
        Err(e) => {
            eprintln!("amrelay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cmd {
            DeadLetters::List { limit } => {
                let rows = outbox.dead_letters(limit).await?;
                if rows.is_empty() {
                    println!("no dead letters");
                }
                for r in rows {
                    let title = crate::outbox::stored::parse(r.format, &r.payload)
                        .map(|n| format!("{} group={:?}", n.title(), n.group_key))
                        .unwrap_or_else(|_| format!("(payload format {})", r.format));
                    let time = |ms| crate::domain::time::rfc3339(ms).unwrap_or_default();
                    println!(
                        "{}\tchannel={}\tattempts={}\treceived={}\tdied={}\t{}\terror={:?}",
                        r.id,
                        r.channel,
                        r.attempts,
                        time(r.created_at),
                        time(r.died_at),
                        title,
                        r.last_error
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            DeadLetters::Requeue { ids, all } => {
                let which = if all { Requeue::All } else { Requeue::Ids(ids) };
                let done = outbox.requeue(which).await?;
                println!("requeued {} deliveries", done.count);
                if done.not_dead.is_empty() {
                    return Ok(ExitCode::SUCCESS);
                }
                let ids: Vec<String> = done.not_dead.iter().map(i64::to_string).collect();
                eprintln!(
                    "amrelay: not dead letters (no such delivery, or not dead): {}",
                    ids.join(", ")
                );
                Ok(ExitCode::FAILURE)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            let e: crate::outbox::StoreError = e;
            eprintln!("amrelay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `amrelay collect`: the metric collection sidecar alone.
pub fn collect(path: Option<&Path>) -> ExitCode {
    let settings = match Settings::load_for_collect(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&settings.log);
    let Some(rt) = runtime(true) else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(crate::collector::run_alone(settings, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("amrelay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `amrelay check-config`: the same loading code as `serve`, one line per problem.
pub fn check_config(config: &Path) -> ExitCode {
    match Settings::load(Some(config)) {
        Ok(s) => {
            let mut parts = vec![
                count(s.channels.len(), "channel"),
                count(s.routes.len(), "route"),
            ];
            if let Some(e) = &s.promotion_endpoint {
                parts.push(format!(
                    "promotion endpoint for {:?} on {}",
                    e.target, e.listen
                ));
            }
            if let Some(a) = &s.admin {
                parts.push(format!("admin API on {}", a.listen));
            }
            if s.collector.enabled() {
                parts.push(format!(
                    "collector: {}",
                    count(s.collector.targets.len(), "target")
                ));
            }
            println!("{}: valid ({})", config.display(), parts.join(", "));
            let checked = runtime(false).map(|rt| rt.block_on(Outbox::check(&s.storage)));
            match checked {
                Some(Ok(store)) => {
                    println!("{}: storage: {store}", config.display());
                    ExitCode::SUCCESS
                }
                Some(Err(e)) => {
                    eprintln!("{}: storage: {e}", config.display());
                    ExitCode::FAILURE
                }
                None => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            // A file with a [collector] and neither channels nor routes is meant for
            // `amrelay collect`, which loads it this way.
            if let Ok(s) = Settings::load_for_collect(Some(config)) {
                if s.collector.enabled() {
                    println!(
                        "{}: valid for `amrelay collect` (collector: {}); `amrelay serve` needs channels and routes",
                        config.display(),
                        count(s.collector.targets.len(), "target")
                    );
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `1 channel`, `2 channels`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
