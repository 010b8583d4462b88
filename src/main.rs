//! The `amrelay` command line: parse arguments and dispatch to `amrelay::cli`. Shell
//! completions and the man pages are generated from these definitions.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use amrelay::cli::{self, DeadLetters};

#[derive(Parser)]
#[command(
    name = "amrelay",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("AMRELAY_REVISION"), ")"),
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
        /// The TOML config file to check; AMRELAY__SECTION__KEY variables apply too.
        #[arg(long)]
        config: PathBuf,
    },
    /// Send one clearly marked test message through one channel and report the answer.
    SendTest {
        /// The TOML config file that defines the channel.
        #[arg(long)]
        config: PathBuf,
        /// The channel's name in the config.
        #[arg(long)]
        channel: String,
        /// Send nothing: show what would be sent. On a promotion channel: ask the endpoint
        /// to verify a signed request, which runs nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Ask for a promotion of TARGET by hand, through the admin API of a running amrelay.
    /// Skips min_firing and the quorum; the cooldown too with --force.
    Promote {
        /// The promotion channel's target.
        target: String,
        /// Why: kept with the incident and sent to the outcome channels.
        #[arg(long)]
        reason: String,
        /// Promote even within the channel's cooldown after an earlier promotion.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// A failover drill through the admin API of a running amrelay: a PrimaryDown marked
    /// as a drill goes through the whole chain (Alertmanager, routes, guards, a signed
    /// dry run the endpoint verifies, the [DRILL] messages, the resolve), each step
    /// checked; nothing is promoted unless --live. Prints the report; exits 0 only when
    /// every step passed within its budget. `amrelay drill show [ID]` prints a stored one.
    #[command(args_conflicts_with_subcommands = true)]
    Drill {
        #[command(subcommand)]
        show: Option<DrillCommand>,
        #[command(flatten)]
        run: DrillRunArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Promotion incidents, queues and dead letters of a running amrelay (admin API).
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Deliveries that failed for good: list them, or send them again.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
    /// Only the metric collection sidecar: scrape `[collector]` targets and remote-write
    /// them, with /metrics on server.listen. No channels or routes needed.
    Collect(ConfigArg),
    /// The backup's promotion endpoint ([promotion_endpoint]): show it, or fail back by hand.
    Promotion {
        #[command(subcommand)]
        command: PromotionCommand,
    },
    /// Print the completion script for SHELL on stdout, e.g.
    /// `amrelay completions bash > /usr/share/bash-completion/completions/amrelay`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page amrelay(1) on stdout, or write it and one page per command
    /// (amrelay-serve(1), ...) into --dir.
    Man {
        /// A directory for all the pages, e.g. /usr/local/share/man/man1.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct DrillRunArgs {
    /// The promotion channel's target to drill.
    #[arg(long, required = true)]
    target: Option<String>,
    /// Post the drill's alert through this Alertmanager's API (the real routing path);
    /// give each Alertmanager of an HA pair. Without it, straight to amrelay's webhook.
    #[arg(long = "alertmanager", value_name = "URL")]
    alertmanagers: Vec<String>,
    /// Let the promotion really run (the quarterly test). Asks for confirmation, refuses
    /// while a real incident is open, and ends with the failback steps.
    #[arg(long)]
    live: bool,
    /// With --live: do not ask.
    #[arg(long)]
    yes: bool,
    /// Each step must pass within this.
    #[arg(long, default_value = "5m")]
    step_timeout: String,
    /// How to print the report.
    #[arg(long, value_enum, default_value = "markdown")]
    format: cli::ReportFormat,
}

#[derive(Subcommand)]
enum DrillCommand {
    /// Print a stored drill report: ID, or the newest (of --target).
    Show {
        /// The drill's id, as `amrelay drill` printed it.
        id: Option<String>,
        /// The newest drill of this target.
        #[arg(long)]
        target: Option<String>,
        /// How to print the report.
        #[arg(long, value_enum, default_value = "markdown")]
        format: cli::ReportFormat,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum PromotionCommand {
    /// Print the state, the epoch, the last run and the last reset.
    Show {
        /// The backup's TOML config file (its [promotion_endpoint] and storage.path).
        #[arg(long)]
        config: PathBuf,
    },
    /// The manual failback: `promoted` (or failed/interrupted) back to `standby`, the
    /// epoch kept, so the next incident may promote again. Works while `serve` runs.
    Reset {
        /// The backup's TOML config file (its [promotion_endpoint] and storage.path).
        #[arg(long)]
        config: PathBuf,
        /// Why, for the record (kept with who ran it).
        #[arg(long, default_value = "manual failback")]
        reason: String,
    },
}

#[derive(Args)]
struct ConfigArg {
    /// The TOML config file (without it, the built-in defaults: the store under ./data);
    /// AMRELAY__SECTION__KEY environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct AdminArgs {
    /// The running amrelay's admin API ([admin] listen).
    #[arg(long, default_value = "http://127.0.0.1:9099")]
    admin_url: String,
    /// A file holding the admin token; else the AMRELAY_ADMIN_TOKEN variable.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DeadLetterCommand {
    /// Print the dead letters, oldest first: id, channel, attempts, when the notification
    /// was received and when it died, its title and the last error.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Send dead letters again: back to the outbox, attempts and max_age started afresh.
    /// Exits 1 naming any id that is not a dead letter. Safe while `serve` runs.
    Requeue {
        #[command(flatten)]
        config: ConfigArg,
        /// Delivery ids, as `list` shows them.
        ids: Vec<i64>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

fn main() -> ExitCode {
    let args = Cli::parse();
    match args.command {
        Command::Serve(c) => cli::serve(c.config.as_deref()),
        Command::CheckConfig { config } => cli::check_config(&config),
        Command::SendTest {
            config,
            channel,
            dry_run,
        } => cli::send_test(&config, &channel, dry_run),
        Command::Promote {
            target,
            reason,
            force,
            admin,
        } => cli::admin_call(
            &admin.admin_url,
            admin.token_file.as_deref(),
            reqwest::Method::POST,
            "v1/admin/promote",
            Some(serde_json::json!({ "target": target, "reason": reason, "force": force })),
        ),
        Command::Drill {
            show:
                Some(DrillCommand::Show {
                    id,
                    target,
                    format,
                    admin,
                }),
            ..
        } => cli::drill_show(
            &admin.admin_url,
            admin.token_file.as_deref(),
            id.as_deref(),
            target.as_deref(),
            format,
        ),
        Command::Drill {
            show: None,
            run,
            admin,
        } => cli::drill(
            &admin.admin_url,
            admin.token_file.as_deref(),
            cli::DrillArgs {
                target: run.target.unwrap_or_default(),
                alertmanagers: run.alertmanagers,
                live: run.live,
                yes: run.yes,
                step_timeout: run.step_timeout,
                format: run.format,
            },
        ),
        Command::Status { admin } => cli::admin_call(
            &admin.admin_url,
            admin.token_file.as_deref(),
            reqwest::Method::GET,
            "v1/admin/status",
            None,
        ),
        Command::DeadLetters { command } => match command {
            DeadLetterCommand::List { config, limit } => {
                cli::dead_letters(config.config.as_deref(), DeadLetters::List { limit })
            }
            DeadLetterCommand::Requeue { config, ids, all } => {
                cli::dead_letters(config.config.as_deref(), DeadLetters::Requeue { ids, all })
            }
        },
        Command::Collect(c) => cli::collect(c.config.as_deref()),
        Command::Promotion { command } => match command {
            PromotionCommand::Show { config } => cli::promotion(&config, None),
            PromotionCommand::Reset { config, reason } => cli::promotion(&config, Some(&reason)),
        },
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "amrelay",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man { dir } => man(dir.as_deref()),
    }
}

/// amrelay(1) on stdout, or every command's page into `dir`.
fn man(dir: Option<&Path>) -> ExitCode {
    let written = match dir {
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), dir)),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let place = dir.map_or("stdout".into(), |d| d.display().to_string());
            eprintln!("amrelay: cannot write the man pages to {place}: {e}");
            ExitCode::FAILURE
        }
    }
}
