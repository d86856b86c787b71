//! The `flowwarden` binary: parse the command line and call the library.

use clap::{Parser, Subcommand};
use flowwarden::respond::{run_policy, run_quarantine, PolicyCommand, QuarantineCommand};

/// Streaming anomaly detection and quarantine for Calico flow logs.
#[derive(Debug, Parser)]
#[command(name = "flowwarden", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The quarantine tier and policy (`policy install`).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Active quarantines (`quarantine list|release`).
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(c) => run_policy(c),
        Command::Quarantine(c) => run_quarantine(c),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowwarden: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
