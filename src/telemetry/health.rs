//! Readiness: the daemon is ready when its sources are connected, its last checkpoint is recent (or
//! checkpoints are off), no fault is reported (a stalled alert sink, a failing checkpoint
//! directory: `/readyz` answers 503 "degraded: ..." while it lasts), and it is not shutting down. Liveness needs no state: a process that can
//! answer `/healthz` is alive.
//!
//! The state is process-global because the parts that change it (sources, the checkpointer, the
//! signal handling) and the HTTP server that reads it do not otherwise share anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SOURCES_CONNECTED: AtomicBool = AtomicBool::new(false);
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);
/// Faults in force, by component (`sink:webhook`, `checkpoint`): what `/readyz` reports as degraded.
static FAULTS: Mutex<std::collections::BTreeMap<String, String>> =
    Mutex::new(std::collections::BTreeMap::new());
static CHECKPOINTS: Mutex<CheckpointState> = Mutex::new(CheckpointState {
    max_age: None,
    since: None,
    last: None,
});

#[derive(Debug)]
struct CheckpointState {
    /// `None`: checkpoints are disabled and never make the daemon unready.
    max_age: Option<Duration>,
    /// When the policy was set: the age is counted from here until the first checkpoint.
    since: Option<Instant>,
    /// Last durable checkpoint.
    last: Option<Instant>,
}

/// Marks the sources as connected (or not: a Kafka consumer that lost its brokers).
pub fn set_source_connected(connected: bool) {
    SOURCES_CONNECTED.store(connected, Ordering::SeqCst);
}

/// Marks the daemon as stopping: `/readyz` answers 503 so load balancers stop sending work.
pub fn set_shutting_down() {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
}

/// Declares how old the last checkpoint may be before the daemon reports unready; `None` when
/// checkpoints are disabled.
pub fn set_checkpoint_policy(max_age: Option<Duration>) {
    let mut s = lock();
    s.max_age = max_age;
    s.since = Some(Instant::now());
}

/// Records that a checkpoint is now durable.
pub fn record_checkpoint() {
    lock().last = Some(Instant::now());
}

/// Seconds since the last durable checkpoint, if there was one.
pub fn checkpoint_age() -> Option<Duration> {
    lock().last.map(|t| t.elapsed())
}

/// Reports (`Some(why)`) or clears (`None`) a fault of `component`.
pub fn set_fault(component: &str, fault: Option<String>) {
    let mut f = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    match fault {
        Some(why) => {
            f.insert(component.to_string(), why);
        }
        None => {
            f.remove(component);
        }
    }
}

/// `Ok` when ready, else why not (one short sentence for the `/readyz` body).
pub fn readiness() -> Result<(), String> {
    if SHUTTING_DOWN.load(Ordering::SeqCst) {
        return Err("shutting down".into());
    }
    if !SOURCES_CONNECTED.load(Ordering::SeqCst) {
        return Err("sources are not connected".into());
    }
    {
        let f = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
        if !f.is_empty() {
            let why: Vec<&str> = f.values().map(String::as_str).collect();
            return Err(format!("degraded: {}", why.join("; ")));
        }
    }
    let s = lock();
    if let Some(max_age) = s.max_age {
        let reference = s.last.or(s.since);
        if let Some(age) = reference.map(|t| t.elapsed()).filter(|age| *age > max_age) {
            return Err(match s.last {
                Some(_) => format!(
                    "last checkpoint is {}s old (limit {}s)",
                    age.as_secs(),
                    max_age.as_secs()
                ),
                None => format!(
                    "no checkpoint written in {}s (limit {}s)",
                    age.as_secs(),
                    max_age.as_secs()
                ),
            });
        }
    }
    Ok(())
}

fn lock() -> std::sync::MutexGuard<'static, CheckpointState> {
    // A panic while holding this lock cannot leave the plain data inconsistent.
    CHECKPOINTS.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test for the whole lifecycle because the state is process-global.
    #[test]
    fn readiness_follows_sources_checkpoints_and_shutdown() {
        set_source_connected(false);
        assert!(readiness().unwrap_err().contains("sources"));
        set_source_connected(true);
        set_checkpoint_policy(None);
        assert!(readiness().is_ok());
        set_checkpoint_policy(Some(Duration::ZERO));
        std::thread::sleep(Duration::from_millis(5));
        assert!(readiness().unwrap_err().contains("no checkpoint"));
        set_checkpoint_policy(Some(Duration::from_secs(3600)));
        record_checkpoint();
        assert!(readiness().is_ok());
        assert!(checkpoint_age().is_some());
        set_fault("sink:webhook", Some("alert sink webhook blocked".into()));
        assert!(readiness()
            .unwrap_err()
            .starts_with("degraded: alert sink webhook"));
        set_fault("sink:webhook", None);
        assert!(readiness().is_ok());
        set_shutting_down();
        assert_eq!(readiness().unwrap_err(), "shutting down");
    }
}
