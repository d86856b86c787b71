//! Typed configuration: every section with its defaults, loading from TOML, and validation whose
//! errors name the key (`window.length: ...`), so `check-config` and the daemon can exit 2 with a
//! message an operator can act on.
//!
//! Each section's struct lives with the module that owns it; this file only assembles them.

use crate::alert::AlertsConfig;
use crate::detect::DetectConfig;
use crate::kafka::KafkaConfig;
use crate::secret::SecretRef;
use crate::source::goldmane_http::GoldmaneHttpConfig;
use crate::window::WindowConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A configuration problem, naming the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A key is unknown, of the wrong type, or has a bad value.
    #[error("config key `{key}`: {message}")]
    Key {
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The TOML itself is malformed.
    #[error("config is not valid TOML: {0}")]
    Syntax(String),
}

/// `[input]`: how lines are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Lines longer than this are dead-lettered without being parsed.
    pub max_line_bytes: usize,
    /// Lines per batch handed to the workers.
    pub batch_lines: usize,
    /// Bytes of lines per batch, whichever of the two limits comes first. The batch buffer is the
    /// largest allocation of a busy daemon: 16,384 full Calico lines are 21 MiB, and a buffer that
    /// fills to that on bursts and not between them makes RSS swing by as much.
    pub batch_bytes: usize,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            max_line_bytes: 1 << 20,
            batch_lines: 16384,
            batch_bytes: 4 << 20,
        }
    }
}

/// `[source]`: where `flowwarden run` reads from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `simulate` (the embedded demo), `file`, `stdin`, `kafka` or `goldmane-http`.
    pub kind: String,
    /// Files, directories or globs (kind = "file").
    pub paths: Vec<String>,
    /// Tail the files like `tail -F` (kind = "file").
    pub follow: bool,
    /// Poll interval when following (`250ms`).
    pub poll_interval: String,
    /// Simulated duration for kind = "simulate" (`6h`).
    pub simulate_duration: String,
    /// Seed for kind = "simulate".
    pub simulate_seed: u64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: "simulate".into(),
            paths: Vec::new(),
            follow: false,
            poll_interval: "250ms".into(),
            simulate_duration: "6h".into(),
            simulate_seed: 7,
        }
    }
}

/// `[dead_letter]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// File for rejected lines (JSON lines `{source, position, reason, raw}`); none = only counted.
    pub file: Option<PathBuf>,
}

/// `[pipeline]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Worker threads; 0 = one per core.
    pub threads: usize,
}

/// `[daemon]`: process behaviour of `flowwarden run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// After SIGTERM/SIGINT, the longest the daemon may take to finish in-flight batches, flush
    /// sinks and checkpoint before it exits anyway (code 70) saying so.
    pub shutdown_timeout: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            shutdown_timeout: "30s".into(),
        }
    }
}

impl DaemonConfig {
    /// The shutdown bound.
    pub fn shutdown_bound(&self) -> std::time::Duration {
        humantime::parse_duration(&self.shutdown_timeout)
            .unwrap_or(std::time::Duration::from_secs(30))
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Input limits.
    pub input: InputConfig,
    /// Daemon source.
    pub source: SourceConfig,
    /// Goldmane HTTP push receiver (`[source] kind = "goldmane-http"`).
    pub goldmane_http: GoldmaneHttpConfig,
    /// Worker pool.
    pub pipeline: PipelineConfig,
    /// Event-time windows.
    pub window: WindowConfig,
    /// Baselines.
    pub baseline: crate::baseline::BaselineConfig,
    /// State memory budget and identity-flood limits.
    pub limits: crate::limits::LimitsConfig,
    /// Detectors.
    pub detect: DetectConfig,
    /// Alert output.
    pub alerts: AlertsConfig,
    /// Queue and retries between the pipeline and the alert sinks (daemon).
    pub delivery: crate::sink::delivery::DeliveryConfig,
    /// Webhook alert sink.
    pub webhook: crate::sink::webhook::WebhookConfig,
    /// Dead letters.
    pub dead_letter: DeadLetterConfig,
    /// Prometheus metrics and health endpoints.
    pub metrics: crate::telemetry::MetricsConfig,
    /// Log level.
    pub log: crate::telemetry::LogConfig,
    /// Daemon process behaviour.
    pub daemon: DaemonConfig,
    /// Kafka brokers, input topics and output topics.
    pub kafka: KafkaConfig,
    /// Quarantine responder.
    pub respond: crate::respond::RespondConfig,
    /// Checkpoints.
    pub checkpoint: crate::checkpoint::CheckpointConfig,
    /// A trained model (`flowwarden train --out DIR`) to start from; unset = start cold.
    pub model: Option<PathBuf>,
}

const SOURCE_KINDS: &[&str] = &["simulate", "file", "stdin", "kafka", "goldmane-http"];

impl Config {
    /// Parses TOML text; unknown keys and wrong types are errors naming the key.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().to_string();
            if key.is_empty() || key == "." {
                ConfigError::Syntax(inner.to_string())
            } else {
                ConfigError::Key { key, message }
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads and validates a file, and checks that every secret it names can be read.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg = Self::from_toml(&text)?;
        cfg.check_secrets()?;
        Ok(cfg)
    }

    /// Every secret the config can hold (bearer token, Kafka passwords), with its settings.
    pub fn secrets(&self) -> Vec<SecretRef<'_>> {
        let mut all = vec![self.goldmane_http.bearer_token_ref()];
        all.extend(self.kafka.secrets());
        all
    }

    /// Reads every configured secret once (discarding the values), so a missing file or
    /// variable stops start-up with an error naming its key instead of failing at first use.
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        for secret in self.secrets() {
            secret.resolve().map_err(|e| ConfigError::Key {
                key: e.key,
                message: e.message,
            })?;
        }
        Ok(())
    }

    /// Loads `path` if given, else the defaults.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => Self::load(p),
            None => Ok(Config::default()),
        }
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str, m: String| ConfigError::Key {
            key: k.to_string(),
            message: m,
        };
        self.window
            .fixed_length()
            .map_err(|m| key("window.length", m))?;
        self.window
            .lateness_s()
            .map_err(|m| key("window.allowed_lateness", m))?;
        self.window.validate_clock().map_err(|(k, m)| key(&k, m))?;
        self.limits.validate().map_err(|(k, m)| key(&k, m))?;
        if self.window.auto_sample == 0 {
            return Err(key("window.auto_sample", "must be at least 1".into()));
        }
        if self.input.max_line_bytes < 1024 {
            return Err(key("input.max_line_bytes", "must be at least 1024".into()));
        }
        if self.input.batch_lines == 0 {
            return Err(key("input.batch_lines", "must be at least 1".into()));
        }
        if !(64 << 10..=1 << 30).contains(&self.input.batch_bytes) {
            return Err(key(
                "input.batch_bytes",
                "must be between 65536 and 1073741824".into(),
            ));
        }
        if !SOURCE_KINDS.contains(&self.source.kind.as_str()) {
            return Err(key(
                "source.kind",
                format!(
                    "{:?} is not one of {}",
                    self.source.kind,
                    SOURCE_KINDS.join(", ")
                ),
            ));
        }
        if self.source.kind == "file" && self.source.paths.is_empty() {
            return Err(key(
                "source.paths",
                "kind = \"file\" needs at least one path".into(),
            ));
        }
        crate::window::parse_duration_s(&self.source.simulate_duration)
            .map_err(|m| key("source.simulate_duration", m))?;
        humantime::parse_duration(&self.source.poll_interval)
            .map_err(|e| key("source.poll_interval", e.to_string()))?;
        self.goldmane_http.validate().map_err(|(k, m)| key(&k, m))?;
        self.baseline.validate().map_err(|(k, m)| key(&k, m))?;
        self.detect.validate().map_err(|(k, m)| key(&k, m))?;
        self.alerts.validate().map_err(|(k, m)| key(&k, m))?;
        self.delivery.validate().map_err(|(k, m)| key(&k, m))?;
        self.webhook.validate().map_err(|(k, m)| key(&k, m))?;
        self.metrics.validate().map_err(|(k, m)| key(&k, m))?;
        self.log.validate().map_err(|(k, m)| key(&k, m))?;
        humantime::parse_duration(&self.daemon.shutdown_timeout)
            .map_err(|e| key("daemon.shutdown_timeout", e.to_string()))?;
        self.kafka.validate().map_err(|(k, m)| key(&k, m))?;
        if self.source.kind == "kafka" && self.kafka.topics.is_empty() {
            return Err(key(
                "kafka.topics",
                "[source] kind = \"kafka\" needs at least one topic".into(),
            ));
        }
        self.checkpoint.validate().map_err(|(k, m)| key(&k, m))?;
        self.respond
            .validate()
            .map_err(|e| key(&e.key, e.message.clone()))?;
        Ok(())
    }

    /// Worker threads to use (0 = one per core).
    pub fn effective_threads(&self, cli: Option<usize>) -> usize {
        match cli.unwrap_or(self.pipeline.threads) {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::from_toml("[window]\nlenght = \"15s\"\n").unwrap_err();
        assert!(e.to_string().contains("window"), "{e}");
        assert!(e.to_string().contains("lenght"), "{e}");
        let e = Config::from_toml("[window]\nlength = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("window.length"), "{e}");
        let e = Config::from_toml("[detect.port_scan]\ndistinct_ports = \"many\"\n").unwrap_err();
        assert!(
            e.to_string().contains("detect.port_scan.distinct_ports"),
            "{e}"
        );
        let e = Config::from_toml("[source]\nkind = \"carrier-pigeon\"\n").unwrap_err();
        assert!(e.to_string().contains("source.kind"), "{e}");
    }

    #[test]
    fn the_shipped_config_is_the_default() {
        let text = include_str!("../config/flowwarden.toml");
        let cfg = Config::from_toml(text).expect("config/flowwarden.toml must parse");
        assert_eq!(cfg, Config::default());
    }
}
