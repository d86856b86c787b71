//! Operator commands: `flowwarden policy install` (print or apply the quarantine tier and policy) and
//! `flowwarden quarantine list|release` (read or change the responder's persisted state).
//!
//! Thin glue between clap and the responder; no decisions of its own.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::Subcommand;

use super::actuator::{build_actuator, KubeActuator};
use super::config::RespondConfig;
use super::render::render_install;
use super::responder::Responder;

/// `flowwarden policy ...` and `flowwarden quarantine ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum ResponderCommand {
    /// The quarantine tier and policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Active quarantines.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
}

impl ResponderCommand {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            ResponderCommand::Policy(c) => run_policy(c),
            ResponderCommand::Quarantine(c) => run_quarantine(c),
        }
    }
}

/// `flowwarden policy ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum PolicyCommand {
    /// Print the Calico Tier and GlobalNetworkPolicy (YAML) that isolate pods labelled quarantine=true.
    Install {
        /// Config file (TOML); its `[respond]` table is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also server-side apply them through the Kubernetes API (respond.actuator.api_url or kubeconfig).
        #[arg(long)]
        apply: bool,
    },
}

/// `flowwarden quarantine ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum QuarantineCommand {
    /// List active quarantines.
    List {
        /// Responder state dir (default: respond.state_dir from the config).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Config file (TOML); its `[respond]` table is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Release a quarantined workload now (audited with the operator as actor).
    Release {
        /// Canonical workload key, e.g. `shop/cart-7d9c8b6f4-*`.
        workload: String,
        /// Responder state dir (default: respond.state_dir from the config).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Config file (TOML); its `[respond]` table is used (and its actuator undoes the quarantine).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Who releases (default: $USER).
        #[arg(long)]
        actor: Option<String>,
        /// Release time, epoch seconds (default: now).
        #[arg(long)]
        now: Option<i64>,
    },
}

/// Runs `flowwarden policy ...`.
pub fn run_policy(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Install { config, apply } => {
            let cfg = load_config(config.as_deref())?;
            cfg.validate()?;
            print!("{}", render_install(&cfg));
            if apply {
                KubeActuator::new(&cfg.actuator)?.install(&cfg)?;
                eprintln!("applied tier {} and its quarantine policy", cfg.tier.name);
            }
            Ok(())
        }
    }
}

/// Runs `flowwarden quarantine ...`.
pub fn run_quarantine(cmd: QuarantineCommand) -> anyhow::Result<()> {
    match cmd {
        QuarantineCommand::List {
            state,
            config,
            json,
        } => {
            let responder = Responder::new(config_with_state(config.as_deref(), state)?)?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let active = responder.active();
            if json {
                for q in &active {
                    writeln!(out, "{}", serde_json::to_string(q)?)?;
                }
                return Ok(());
            }
            if active.is_empty() {
                writeln!(out, "no active quarantines")?;
                return Ok(());
            }
            writeln!(
                out,
                "{:<40} {:<22} {:<22} {:>5} {:<7} MODE",
                "WORKLOAD", "STARTED", "EXPIRES", "LEVEL", "DRY_RUN"
            )?;
            for q in active {
                writeln!(
                    out,
                    "{:<40} {:<22} {:<22} {:>5} {:<7} {:?}",
                    q.workload,
                    rfc3339(q.started_at),
                    rfc3339(q.expires_at),
                    q.escalation_level,
                    q.dry_run,
                    q.mode
                )?;
            }
            Ok(())
        }
        QuarantineCommand::Release {
            workload,
            state,
            config,
            actor,
            now,
        } => {
            let cfg = config_with_state(config.as_deref(), state)?;
            let actor = actor
                .or_else(|| std::env::var("USER").ok())
                .filter(|a| !a.trim().is_empty())
                .ok_or_else(|| anyhow!("who is releasing? pass --actor NAME (or set $USER)"))?;
            let now = match now {
                Some(t) => t,
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0),
            };
            let mut actuator = build_actuator(&cfg)?;
            let mut responder = Responder::new(cfg)?;
            let record = responder.release(&workload, &actor, now).ok_or_else(|| {
                anyhow!("{workload} is not quarantined (see `flowwarden quarantine list`)")
            })?;
            if let Some(a) = actuator.as_mut() {
                a.apply(&record)
                    .with_context(|| format!("{} actuator", a.name()))?;
            }
            println!("{}", serde_json::to_string(&record)?);
            Ok(())
        }
    }
}

/// Loads `[respond]` from the flowwarden config file (validated as a whole), or the defaults.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<RespondConfig> {
    Ok(crate::config::Config::load_or_default(path)?.respond)
}

fn config_with_state(
    config: Option<&Path>,
    state: Option<PathBuf>,
) -> anyhow::Result<RespondConfig> {
    let mut cfg = load_config(config)?;
    if let Some(dir) = state {
        cfg.state_dir = Some(dir);
    }
    if cfg.state_dir.is_none() {
        anyhow::bail!(
            "no responder state: pass --state DIR or set respond.state_dir in the config"
        );
    }
    Ok(cfg)
}

fn rfc3339(t: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
