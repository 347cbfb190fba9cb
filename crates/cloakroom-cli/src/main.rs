//! `cloakroom`: manage the sessions in a cloakroom store from a terminal.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cloakroom_cli::commands::{self, CommandError, Format};
use cloakroom_stores::Backend;

/// Manage cloakroom sessions: list, show, revoke, purge, stats, watch.
#[derive(Debug, Parser)]
#[command(version, about, after_help = cloakroom_stores::help())]
struct Cli {
    /// The store, as a URL.
    #[arg(
        long,
        global = true,
        env = "CLOAKROOM_STORE",
        // The URL may hold a password: never echo it in --help.
        hide_env_values = true,
        default_value = "sqlite://cloakroom-demo.db"
    )]
    store: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Print session data (hidden by default: it may be sensitive).
    #[arg(long, global = true)]
    show_data: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the schema (idempotent).
    Migrate,
    /// List live sessions.
    List {
        /// Only this user's sessions.
        #[arg(long)]
        user: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one session.
    Show {
        /// The session's handle, as `list` shows it. Handles are base64url and may start
        /// with `-`, which is read as a handle, not an option.
        #[arg(allow_hyphen_values = true)]
        handle: String,
    },
    /// Revoke one session by handle, or all of a user's sessions with --user.
    Revoke {
        /// The session's handle.
        #[arg(
            required_unless_present = "user",
            conflicts_with = "user",
            allow_hyphen_values = true
        )]
        handle: Option<String>,
        /// Revoke every session of this user.
        #[arg(long)]
        user: Option<String>,
        /// With --user: keep this session.
        #[arg(long, requires = "user", allow_hyphen_values = true)]
        except: Option<String>,
    },
    /// Delete expired sessions, in batches.
    Purge {
        /// Rows per batch.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Print a new random key for signed or encrypted cookies (base64url, 32 bytes).
    Keygen,
    /// Live sessions, sessions per user, how many expire within the hour and how many
    /// were created in the last hour and day.
    Stats {
        /// How many users to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// `stats`, refreshed in place like `top`, with the change since the last refresh.
    Watch {
        /// How many users to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2.0, value_parser = interval)]
        interval: f64,
        /// Stop after this many refreshes, at least 1 (default: until Ctrl-C).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
}

/// A refresh interval: at least a tenth of a second, at most a day.
fn interval(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if (0.1..=86_400.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err("the interval must be between 0.1 and 86400 seconds".into())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cloakroom: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    if let Command::Keygen = cli.command {
        println!("{}", cloakroom::generate_key());
        return Ok(());
    }
    let backend = Backend::open(&cli.store).await.map_err(|e| e.to_string())?;
    let store = backend.shared();
    let format = Format {
        json: cli.json,
        show_data: cli.show_data,
    };
    let stdout = std::io::stdout();
    let out = &mut stdout.lock();
    let result: Result<(), CommandError> = match cli.command {
        Command::Migrate => {
            let created = backend.migrate().await.map_err(|e| e.to_string())?;
            let message = if created {
                "schema is ready"
            } else {
                "this store has no schema"
            };
            writeln!(out, "{message}").map_err(CommandError::from)
        }
        Command::List { user, limit } => commands::list(&store, user, limit, format, out).await,
        Command::Show { handle } => commands::find(&store, &handle)
            .await
            .and_then(|entry| commands::show(&entry, format, out)),
        Command::Revoke {
            handle: Some(handle),
            ..
        } => match commands::find(&store, &handle).await {
            Ok(entry) => commands::revoke(&store, &entry, format, out).await,
            Err(error) => Err(error),
        },
        Command::Revoke {
            user: Some(user),
            except,
            ..
        } => commands::revoke_user(&store, &user, except.as_deref(), format, out).await,
        Command::Revoke { .. } => return Err("give a HANDLE or --user USER".into()),
        Command::Purge { batch } => {
            let bar = if std::io::stderr().is_terminal() {
                indicatif::ProgressBar::new_spinner()
            } else {
                indicatif::ProgressBar::hidden()
            };
            bar.set_message("purging expired sessions");
            let mut progress = |n: u64| bar.inc(n);
            let result = commands::purge(&store, batch, &mut progress, format, out).await;
            bar.finish_and_clear();
            result
        }
        Command::Stats { top } => commands::stats(&store, top, format, out).await,
        Command::Watch {
            top,
            interval,
            count,
        } => {
            let watch = commands::Watch {
                interval: std::time::Duration::from_secs_f64(interval),
                count,
                clear: std::io::stdout().is_terminal() && !format.json,
            };
            commands::watch(&store, top, watch, format, out).await
        }
        Command::Keygen => unreachable!("handled before opening a store"),
    };
    result.map_err(|e| e.to_string())
}
