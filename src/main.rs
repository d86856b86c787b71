//! The `flowwarden` command line: parse arguments, load config, call the library. Nothing else.

use clap::{Parser, Subcommand};
use flowwarden::cli;
use std::process::ExitCode;

/// The system allocator, with the large tables on huge pages once the config allows it.
#[global_allocator]
static ALLOC: flowwarden::limits::huge_pages::HugePageAlloc =
    flowwarden::limits::huge_pages::HugePageAlloc;

#[derive(Parser)]
#[command(
    name = "flowwarden",
    version,
    about = "Anomaly detection and quarantine for Calico flow logs"
)]
struct Cli {
    /// Log format: `auto` (human on a terminal, JSON otherwise), `human` or `json`.
    #[arg(long, global = true, default_value = "auto")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Process flow-log files as fast as possible in event time, then exit.
    Replay(cli::replay::ReplayArgs),
    /// Run the daemon: sources and sinks from config, until SIGTERM/SIGINT.
    Run(cli::run::RunArgs),
    /// Measure the pipeline over input held in memory: records/s, stages, memory, latency.
    Bench(cli::bench::BenchArgs),
    /// Record-to-alert latency of the fast-path detectors through the daemon at a set rate.
    Latency(cli::latency::LatencyArgs),
    /// Replay inputs with scores and judge them against labels and episodes (ROC/PR-AUC, detection).
    Eval(cli::eval::EvalArgs),
    /// Send flow-log lines to a Kafka topic, keyed by source workload (creates the topic if missing).
    Produce(cli::produce::ProduceArgs),
    /// Build baselines from historical flow logs into a model directory.
    Train(cli::train::TrainArgs),
    /// Validate a config file and print the effective config.
    CheckConfig(cli::CheckConfigArgs),
    /// Write simulated Calico flow logs with labelled attacks.
    Generate(flowwarden::simulate::GenerateArgs),
    /// Write an HTML report of a run (alerts, quarantines, series) for an analyst.
    Report(flowwarden::report::ReportArgs),
    /// The quarantine tier and policy (`policy install`).
    #[command(subcommand)]
    Policy(flowwarden::respond::PolicyCommand),
    /// Flows that staged (pending) policies would deny although they are allowed today.
    StagedImpact(flowwarden::policy_insight::cli::StagedImpactArgs),
    /// Least-privilege projectcalico.org/v3 policies from the flows each workload used.
    Recommend(flowwarden::policy_insight::cli::RecommendArgs),
    /// Active quarantines (`quarantine list|release`).
    #[command(subcommand)]
    Quarantine(flowwarden::respond::QuarantineCommand),
}

fn main() -> ExitCode {
    let args = Cli::parse();
    flowwarden::telemetry::init_logging(&args.log_format);
    let result = match args.command {
        Command::Replay(a) => cli::replay::run(a),
        Command::Run(a) => cli::run::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Latency(a) => cli::latency::run(a),
        Command::Produce(a) => cli::produce::run(a),
        Command::CheckConfig(a) => cli::check_config(a),
        Command::Train(a) => cli::train::run(a),
        Command::Generate(a) => flowwarden::simulate::run_generate(&a),
        Command::Report(a) => flowwarden::report::run(a),
        Command::Policy(c) => flowwarden::respond::run_policy(c),
        Command::StagedImpact(a) => flowwarden::policy_insight::cli::run_staged_impact(a),
        Command::Recommend(a) => flowwarden::policy_insight::cli::run_recommend(a),
        Command::Quarantine(c) => flowwarden::respond::run_quarantine(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowwarden: {e:#}");
            cli::exit_code(&e)
        }
    }
}
