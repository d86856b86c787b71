//! `flowwarden run`: the daemon (see [`crate::daemon`]).

use std::path::PathBuf;

/// `run` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Config file (defaults apply when omitted: the embedded simulated cluster).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Start from a trained model (`flowwarden train --out DIR`) unless a checkpoint exists.
    #[arg(long)]
    pub model: Option<PathBuf>,
}

/// Runs the daemon.
pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let mut cfg = super::load_config(a.config.as_deref())?;
    if a.model.is_some() {
        cfg.model = a.model.clone();
    }
    let signals = crate::daemon::Signals::install()?;
    crate::daemon::run(a.config, cfg, signals)
}
