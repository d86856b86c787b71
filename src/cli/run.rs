//! `flowwarden run`: the daemon.

use std::path::PathBuf;

/// `run` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Config file (defaults apply when omitted: the embedded simulated cluster).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs the daemon.
pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let _cfg = super::load_config(a.config.as_deref())?;
    anyhow::bail!("run is not wired yet")
}
