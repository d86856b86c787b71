//! `flowwarden train`: build baselines from historical flow logs and save them as a model, so a new
//! deployment starts warm (`replay --model`, `run --model`). A model is a pipeline snapshot with every
//! window closed: baselines, cluster state and workload names, in the checkpoint format.

use crate::pipeline::{Pipeline, PipelineOptions, PipelineSnapshot};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `train` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Historical flow logs (files, directories, globs, `.gz`).
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Where to write the model (e.g. `models/prod`; a file `model.bin` is created inside).
    #[arg(long)]
    pub out: PathBuf,
    /// Config file (defaults apply when omitted).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Worker threads.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// File name of a model inside its directory.
pub const MODEL_FILE: &str = "model.bin";

/// Runs `train`.
pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let cfg = Arc::new(super::load_config(a.config.as_deref())?);
    let opts = PipelineOptions {
        threads: cfg.effective_threads(a.threads),
        scores: false,
        keep_names: false,
    };
    let mut snapshot = None;
    let outcome = crate::cli::replay::run_pipeline_with(
        &cfg,
        &a.inputs,
        opts,
        None,
        &mut |_| Ok(()),
        &mut |_| Ok(()),
        &mut |p: &Pipeline| snapshot = Some(p.snapshot()),
    )?;
    let snapshot = snapshot.ok_or_else(|| anyhow::anyhow!("no input was read"))?;
    save_model(&a.out, &snapshot)?;
    eprintln!(
        "trained on {} records ({} workloads, {} windows); model written to {}",
        outcome.stats.records,
        snapshot.baselines.len(),
        outcome.stats.windows_closed,
        a.out.join(MODEL_FILE).display()
    );
    Ok(())
}

/// Writes a model directory.
pub fn save_model(dir: &Path, snapshot: &PipelineSnapshot) -> anyhow::Result<()> {
    let cp = crate::checkpoint::Checkpoint {
        pipeline: snapshot.clone(),
        source: Default::default(),
        written_at: 0,
    };
    crate::checkpoint::write(&dir.join(MODEL_FILE), &cp)
}

/// Loads a model (a directory holding `model.bin`, or the file itself) into a pipeline: its
/// baselines, cluster state and workload names; no open windows, alerts or counters.
pub fn load_model(pipeline: &mut Pipeline, path: &Path) -> anyhow::Result<()> {
    let file = if path.is_dir() {
        path.join(MODEL_FILE)
    } else {
        path.to_path_buf()
    };
    let cp = crate::checkpoint::read(&file)?
        .ok_or_else(|| anyhow::anyhow!("model {} does not exist", file.display()))?;
    pipeline.load_model(cp.pipeline)
}
