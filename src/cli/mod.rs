//! Command implementations behind `src/main.rs`: each subcommand's arguments and its `run`.
//! They wire config, sources, the pipeline and sinks; the logic lives in the library modules.

pub mod bench;
pub mod eval;
pub mod latency;
pub mod produce;
pub mod replay;
pub mod run;
pub mod train;

use crate::config::{Config, ConfigError};
use std::path::PathBuf;
use std::process::ExitCode;

/// `check-config` arguments.
#[derive(clap::Args, Debug)]
pub struct CheckConfigArgs {
    /// The config file.
    pub file: PathBuf,
}

/// Validates a config file and prints the effective config as TOML.
pub fn check_config(a: CheckConfigArgs) -> anyhow::Result<()> {
    let cfg = Config::load(&a.file)?;
    print!("{}", toml::to_string_pretty(&cfg)?);
    eprintln!("{}: ok", a.file.display());
    Ok(())
}

/// Loads the config named on the command line (or the defaults).
pub fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let cfg = Config::load_or_default(path)?;
    crate::limits::huge_pages::configure(cfg.limits.huge_pages);
    Ok(cfg)
}

/// Exit code for an error: 2 for configuration and usage errors, 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    if e.chain().any(|c| c.downcast_ref::<ConfigError>().is_some()) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}
