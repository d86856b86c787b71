//! The shutdown bound: once a stop is requested, the daemon has `[daemon] shutdown_timeout` to finish
//! in-flight batches, flush sinks and checkpoint. If it has not exited by then (a stuck sink, a hung
//! broker), the watchdog says so and exits the process with [`EXIT_SHUTDOWN_TIMEOUT`], so an
//! orchestrator never has to escalate to SIGKILL and the operator sees why.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Exit code when the shutdown bound is exceeded (EX_SOFTWARE).
pub const EXIT_SHUTDOWN_TIMEOUT: i32 = 70;

/// How often the watchdog looks at the stop flag before a stop is requested.
const POLL: Duration = Duration::from_millis(50);

/// Starts a thread that waits for `stop` to become true, marks the daemon unready, then allows
/// `bound` for the shutdown before exiting the process.
pub fn spawn_shutdown_watchdog(stop: Arc<AtomicBool>, bound: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(POLL);
            }
            super::set_shutting_down();
            tracing::info!(bound_s = bound.as_secs_f64(), "shutdown requested");
            std::thread::sleep(bound);
            let msg = format!(
                "shutdown did not finish within daemon.shutdown_timeout ({}); exiting without a final flush",
                humantime::format_duration(bound)
            );
            tracing::error!("{msg}");
            eprintln!("flowwarden: {msg}");
            std::process::exit(EXIT_SHUTDOWN_TIMEOUT);
        })
        .map(|_| ())
}
