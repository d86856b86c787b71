//! Logging set-up: human-readable lines on a terminal, JSON lines otherwise (for log shippers), always
//! on stderr. The level comes from `RUST_LOG` when set, else from `[log] level`, which can change on
//! SIGHUP: the filter sits behind a reload handle because the config is read after logging starts.

use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Whether `--log-format` means JSON: `json`, `human`, or `auto` (JSON unless stderr is a terminal).
pub fn wants_json(format: &str) -> bool {
    match format {
        "json" => true,
        "human" => false,
        _ => !std::io::stderr().is_terminal(),
    }
}

/// Installs the global subscriber. `format`: `auto`, `human` or `json`. Level `info` until
/// [`apply_log_config`] runs, unless `RUST_LOG` says otherwise.
pub fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let json = wants_json(format);
    let json_layer = json.then(|| fmt::layer().json().with_writer(std::io::stderr));
    let human_layer = (!json).then(|| fmt::layer().with_writer(std::io::stderr));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(json_layer)
        .with(human_layer)
        .try_init();
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Applies `[log] level` (at start and on reload). `RUST_LOG`, when set, wins: an operator who
/// exported it for debugging should not have it overridden by the file.
pub fn apply_log_config(cfg: &super::LogConfig) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    let Some(handle) = FILTER.get() else {
        return;
    };
    match EnvFilter::builder().parse(&cfg.level) {
        Ok(filter) => {
            if let Err(e) = handle.reload(filter) {
                tracing::warn!(error = %e, "cannot change the log level");
            }
        }
        Err(e) => {
            tracing::warn!(level = %cfg.level, error = %e, "log.level is not a valid filter; keeping the current one")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_formats_win_over_the_terminal_check() {
        assert!(wants_json("json"));
        assert!(!wants_json("human"));
    }
}
