//! Logging (tracing) set-up: human-readable on a terminal, JSON otherwise; level from `RUST_LOG`.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `format`: `auto`, `human` or `json`.
pub fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        "json" => true,
        "human" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Counts a responder decision (`flowwarden_actions_total{outcome}`).
pub fn record_action(r: &crate::respond::ActionRecord) {
    metrics::counter!("flowwarden_actions_total", "outcome" => format!("{:?}", r.decision).to_lowercase())
        .increment(1);
}
