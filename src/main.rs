//! The `flowwarden` command line: parse arguments and call the library.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "flowwarden",
    version,
    about = "Streaming anomaly detection and quarantine for Calico flow logs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a cluster's Calico flow logs (with labelled attacks) for tests, demos and evaluation.
    Generate(flowwarden::simulate::GenerateArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Generate(args) => flowwarden::simulate::run_generate(&args),
    }
}
