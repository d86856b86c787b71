//! `flowwarden eval`: replay inputs with per-record scores (the `replay` loop), then judge scores and
//! alerts against labels and episodes and print the tables (optionally the JSON report and the alerts).

use crate::eval::{self, EpisodeSource, EvalInput, LabelTable};
use crate::flow::{EndpointType, WorkloadRegistry};
use crate::pipeline::PipelineOptions;
use crate::sink::{AlertSink, JsonLinesSink};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;

/// `eval` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Input files (flow-log lines; line numbers continue across files, as in the label file).
    #[arg(long = "input", required = true, num_args = 1..)]
    pub inputs: Vec<String>,
    /// Label file: `line,label,attack_type,src_workload,dst_workload,start_time`.
    #[arg(long)]
    pub labels: PathBuf,
    /// Episode file: `scenario,attacker,victim,start,end` (`flowwarden generate --episodes`).
    /// Without it, episodes are derived from the labels (runs of attack records per attack type and
    /// source workload, split at gaps of an hour).
    #[arg(long)]
    pub episodes: Option<PathBuf>,
    /// Config file (defaults apply when omitted). Its alert and dead-letter sinks are not used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Worker threads (default: `[pipeline] threads`, 0 = one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write the whole evaluation as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the run's alerts as JSON lines to this file.
    #[arg(long)]
    pub alerts: Option<PathBuf>,
}

/// Runs `eval`.
pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let cfg = Arc::new(super::load_config(a.config.as_deref())?);
    // Read the truth first: a wrong path should fail before a long replay.
    let labels = LabelTable::read(&a.labels)?;
    let (episodes, episode_source) = match &a.episodes {
        Some(path) => {
            let (episodes, bad) = eval::read_episodes(path)?;
            if bad > 0 {
                tracing::warn!(bad_rows = bad, file = %path.display(), "episode rows that did not parse were skipped");
            }
            (episodes, EpisodeSource::File)
        }
        None => (
            eval::derive_episodes(&labels, eval::DERIVED_EPISODE_GAP_S),
            EpisodeSource::Labels,
        ),
    };
    let mut alert_file = match &a.alerts {
        Some(path) => Some(JsonLinesSink::create(path)?),
        None => None,
    };
    let mut alerts = Vec::new();
    let opts = PipelineOptions {
        threads: cfg.effective_threads(a.threads),
        scores: true,
        keep_names: true,
    };
    let outcome = super::replay::run_pipeline(
        &cfg,
        &a.inputs,
        opts,
        None,
        &mut |alert| {
            if let Some(sink) = &mut alert_file {
                sink.send(alert)?;
            }
            alerts.push(alert.clone());
            Ok(())
        },
        &mut |_| Ok(()),
    )?;
    if let Some(sink) = &mut alert_file {
        sink.flush()?;
    }
    let report = eval::evaluate(EvalInput {
        labels: &labels,
        scores: &outcome.scores,
        alerts: &alerts,
        episodes,
        episode_source,
        window_length_s: outcome.window_length.unwrap_or(0),
        workloads_seen: in_cluster_workloads(),
        pipeline: outcome.stats,
    });
    print!("{}", eval::report::render(&report));
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Distinct workloads the run saw that are not outside networks (`pub`/`pvt` addresses are peers, not
/// workloads anyone is paged about).
fn in_cluster_workloads() -> u64 {
    WorkloadRegistry::global()
        .snapshot()
        .iter()
        .filter(|(_, info)| info.kind != EndpointType::Net)
        .count() as u64
}
