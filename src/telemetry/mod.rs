//! Operations: logs ([`logging`]), Prometheus metrics ([`metrics`]), health and readiness
//! ([`health`]), the HTTP server that exposes them ([`server`]), progress bars for batch commands
//! ([`progress`]) and the shutdown bound ([`watchdog`]).
//!
//! Other modules only call the small recording functions re-exported here (`record_batch`,
//! `record_alert`, `set_source_connected`, ...); they never touch the `metrics` macros or the HTTP
//! server directly, so metric names and labels are decided in one place. Recording is cheap and works
//! whether or not a server runs (without an installed recorder the calls are no-ops).

pub mod health;
pub mod logging;
pub mod metrics;
pub mod progress;
pub mod server;
pub mod watchdog;

pub use health::{
    readiness, record_checkpoint, set_checkpoint_policy, set_shutting_down, set_source_connected,
};
pub use logging::{apply_log_config, init_logging};
pub use metrics::{
    record_action, record_action_outcome, record_alert, record_batch, record_checkpoint_failure,
    record_reload, record_sink_error, record_window_close, set_active_quarantines,
    set_checkpoint_age, set_kafka_lag, set_sink_state, set_workloads, PipelineMeter,
};
pub use progress::{progress, Progress};
pub use server::{start, TelemetryServer};
pub use watchdog::spawn_shutdown_watchdog;

use serde::{Deserialize, Serialize};

/// `[metrics]`: the Prometheus endpoint of `flowwarden run` (also serves `/healthz` and `/readyz`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics`, `/healthz` and `/readyz` while the daemon runs.
    pub enabled: bool,
    /// Listen address (`host:port`).
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:9464".into(),
        }
    }
}

impl MetricsConfig {
    /// Checks the address; errors are `(key, message)` like the other sections.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map(|_| ())
            .map_err(|e| {
                (
                    "metrics.listen".into(),
                    format!(
                        "{:?} is not an address like \"127.0.0.1:9464\": {e}",
                        self.listen
                    ),
                )
            })
    }
}

/// `[log]`: log level when `RUST_LOG` is not set (the format is the `--log-format` flag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `warn,flowwarden=debug`, ...
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl LogConfig {
    /// Checks that the level parses as a filter.
    pub fn validate(&self) -> Result<(), (String, String)> {
        tracing_subscriber::EnvFilter::builder()
            .parse(&self.level)
            .map(|_| ())
            .map_err(|e| {
                (
                    "log.level".into(),
                    format!("{:?} is not a log filter: {e}", self.level),
                )
            })
    }
}
