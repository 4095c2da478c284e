//! `ferry`: move a live Redis into a Redis Cluster with zero downtime.
//!
//! This binary is the operator's edge: it parses the command line, runs the
//! chosen subcommand and prints the whole error chain on failure.

mod apply;
mod config;
mod control;
mod cutover;
mod dashboard;
mod events;
mod hold;
mod modules;
mod preflight;
mod probe;
mod rdb_cmd;
mod reverse;
mod run;
mod sampler;
mod sentinel;
mod source;
mod source_watch;
mod telemetry;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Move a live Redis into a Redis Cluster by posing as its replica.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Migrate: replicate the source into the target cluster until stopped.
    Run(run::RunArgs),
    /// One screen of the running daemon's state (its /status).
    Status(control::StatusArgs),
    /// Pause the source's writes until the target has everything (switch clients then).
    Cutover(cutover::CutoverArgs),
    /// Compare source and target now: exit 0 identical, 1 differences, 2 error.
    Verify(verify::VerifyArgs),
    /// After cutover: delete ferry's own keys (checkpoints, `__ferry:*`) from the target.
    Cleanup(control::CleanupArgs),
    /// Decode an RDB dump offline into commands, JSON, or a summary.
    Rdb(rdb_cmd::RdbArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => {
            init_logging();
            run::run(&args)
        }
        Command::Status(args) => control::status(&args),
        Command::Cutover(args) => match cutover::cutover(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => {
                eprintln!("ferry: error: {e:#}");
                return ExitCode::from(2);
            }
        },
        Command::Verify(args) => match verify::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => {
                eprintln!("ferry: error: {e:#}");
                return ExitCode::from(2);
            }
        },
        Command::Rdb(args) => rdb_cmd::run(&args),
        Command::Cleanup(args) => control::cleanup(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("ferry: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` (e.g. `info`, `ferry=debug`) sets the level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A closed stdout (e.g. `| head`) is not an error worth reporting.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
