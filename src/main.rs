//! The `amrelay` command line: parse arguments, load config, start telemetry, run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use amrelay::app::App;
use amrelay::config::Settings;
use amrelay::outbox::{Limits, Request, Requeue, Response, Store};
use amrelay::telemetry;

#[derive(Parser)]
#[command(
    name = "amrelay",
    version,
    about = "Alertmanager in, notifications out, nothing lost on the way"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive Alertmanager webhooks and deliver them (built-in defaults without --config).
    Serve(ConfigArg),
    /// Load the configuration exactly as `serve` would, and report every problem.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Deliveries that failed for good: list them, or send them again.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
    /// Only the metric collection sidecar: scrape `[collector]` targets and remote-write
    /// them, with /metrics on server.listen. No channels or routes needed.
    Collect(ConfigArg),
}

#[derive(Args)]
struct ConfigArg {
    /// The TOML config file; AMRELAY__SECTION__KEY environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DeadLetterCommand {
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    Requeue {
        #[command(flatten)]
        config: ConfigArg,
        /// Delivery ids, as `list` shows them.
        ids: Vec<i64>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(c) => serve(c.config.as_deref()),
        Command::CheckConfig { config } => match Settings::load(Some(&config)) {
            Ok(s) => {
                println!(
                    "{}: valid ({} channels, {} routes)",
                    config.display(),
                    s.channels.len(),
                    s.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                for p in &e.0 {
                    eprintln!("{}: {p}", config.display());
                }
                ExitCode::FAILURE
            }
        },
        Command::DeadLetters { command } => dead_letters(command),
        Command::Collect(c) => collect(c.config.as_deref()),
    }
}

fn load_or_report(path: Option<&Path>) -> Option<Settings> {
    match Settings::load(path) {
        Ok(s) => Some(s),
        Err(e) => {
            let name = path.map_or("built-in defaults".into(), |p| p.display().to_string());
            for p in &e.0 {
                eprintln!("{name}: {p}");
            }
            None
        }
    }
}

fn serve(path: Option<&Path>) -> ExitCode {
    let Some(settings) = load_or_report(path) else {
        return ExitCode::FAILURE;
    };
    telemetry::init(&settings.log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
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
async fn reload_on_sighup(path: PathBuf, reloader: amrelay::app::Reloader) {
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

fn dead_letters(cmd: DeadLetterCommand) -> ExitCode {
    let (config, req) = match cmd {
        DeadLetterCommand::List { config, limit } => (config, Request::DeadLetters { limit }),
        DeadLetterCommand::Requeue { config, ids, all } => {
            if !all && ids.is_empty() {
                eprintln!("name the delivery ids to requeue, or --all");
                return ExitCode::FAILURE;
            }
            (
                config,
                Request::Requeue(if all { Requeue::All } else { Requeue::Ids(ids) }),
            )
        }
    };
    let Some(settings) = load_or_report(config.config.as_deref()) else {
        return ExitCode::FAILURE;
    };
    let limits = Limits::of(&settings);
    let result = Store::open(&settings.storage.path).and_then(|mut s| s.run(&req, &limits));
    match result {
        Ok(Response::DeadLetters(rows)) => {
            if rows.is_empty() {
                println!("no dead letters");
            }
            for r in rows {
                let title = amrelay::outbox::stored::parse(r.format, &r.payload)
                    .map(|n| format!("{} group={:?}", n.title(), n.group_key))
                    .unwrap_or_else(|_| format!("(payload format {})", r.format));
                println!(
                    "{}\tchannel={}\tattempts={}\tdied={}\t{}\terror={:?}",
                    r.id,
                    r.channel,
                    r.attempts,
                    chrono::DateTime::from_timestamp_millis(r.died_at)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default(),
                    title,
                    r.last_error
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Count(n)) => {
            println!("requeued {n} deliveries");
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("amrelay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn collect(path: Option<&Path>) -> ExitCode {
    let settings = match Settings::load_for_collect(path) {
        Ok(s) => s,
        Err(e) => {
            let name = path.map_or("built-in defaults".into(), |p| p.display().to_string());
            for p in &e.0 {
                eprintln!("{name}: {p}");
            }
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&settings.log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(amrelay::collector::run_alone(settings, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("amrelay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
