//! Alert delivery between the pipeline and the sinks: one worker thread and one bounded queue per
//! sink, so a slow or failing sink never makes the daemon drop an alert or buffer without bound.
//!
//! - **Bounded.** Each sink has a queue of at most `[delivery] max_pending` alerts. When a queue is
//!   full, [`Delivery::send`] blocks: the daemon loop stops, so it stops reading its source (a file
//!   is not read further, a Kafka partition is not polled, the Goldmane receiver's own queue fills
//!   and answers 503). Memory stays bounded by the queue, whatever the length of the fault.
//! - **Never dropped.** A failed `send` or `flush` is logged, counted in
//!   `flowwarden_sink_errors_total{sink}` and retried with exponential backoff (from
//!   `retry_initial` up to `retry_max`) until it succeeds. Sinks must therefore make a retried
//!   operation safe (the file sink rolls back a partial write; Kafka re-queues what it could not
//!   deliver).
//! - **Checkpoints only cover delivered alerts.** [`Delivery::wait_delivered`] is a barrier: every
//!   sink has delivered and flushed everything sent before it. The daemon checkpoints only after it,
//!   so a crash during a fault re-reads the input and re-raises the same alert ids.
//! - **Visible.** A monitor thread publishes `flowwarden_sink_pending{sink}` and
//!   `flowwarden_sink_stalled_seconds{sink}` (how long the sink's current operation has been failing
//!   or blocked) and marks `/readyz` degraded while a sink is stalled longer than `stall_after`.

use crate::alert::Alert;
use crate::sink::AlertSink;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `[delivery]`: the queue and retry policy between the pipeline and every alert sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Alerts queued per sink at most; when a sink's queue is full the pipeline waits
    /// (back-pressure to the source) instead of buffering more.
    pub max_pending: usize,
    /// First wait before retrying a failed delivery.
    pub retry_initial: String,
    /// Longest wait between retries (the backoff doubles up to this).
    pub retry_max: String,
    /// A sink whose current operation has been failing or blocked this long makes `/readyz` report
    /// it as degraded.
    pub stall_after: String,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_pending: 10_000,
            retry_initial: "100ms".into(),
            retry_max: "5s".into(),
            stall_after: "5s".into(),
        }
    }
}

impl DeliveryConfig {
    /// Checks values; errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.max_pending == 0 {
            return Err(("delivery.max_pending".into(), "must be at least 1".into()));
        }
        for (k, v) in [
            ("retry_initial", &self.retry_initial),
            ("retry_max", &self.retry_max),
            ("stall_after", &self.stall_after),
        ] {
            humantime::parse_duration(v).map_err(|e| (format!("delivery.{k}"), e.to_string()))?;
        }
        Ok(())
    }

    fn duration(v: &str, default: Duration) -> Duration {
        humantime::parse_duration(v).unwrap_or(default)
    }
}

/// What a worker is asked to do, in order.
enum Job {
    Alert(Arc<Alert>),
    /// Deliver and flush everything before this, then acknowledge.
    Barrier(Sender<()>),
}

/// State a worker shares with the daemon and the monitor.
struct WorkerState {
    name: String,
    /// Alerts sent to the queue and not yet delivered.
    pending: AtomicUsize,
    /// Milliseconds since [`Delivery`]'s epoch at which the current operation started failing or
    /// started (while in progress); 0 = idle or healthy.
    busy_since_ms: AtomicU64,
    /// The current operation has failed at least once.
    failing: AtomicBool,
}

struct Worker {
    state: Arc<WorkerState>,
    jobs: Sender<Job>,
}

/// The delivery layer: owns the sinks (each on its own thread) and the bounded queues to them.
pub struct Delivery {
    workers: Vec<Worker>,
    stop: Arc<AtomicBool>,
}

/// Why [`Delivery::wait_delivered`] returned before everything was delivered.
#[derive(Debug, thiserror::Error)]
#[error("alerts are still pending (a stop was requested during a sink fault)")]
pub struct Interrupted;

impl Delivery {
    /// Starts one worker per named sink and the monitor.
    pub fn start(sinks: Vec<(String, Box<dyn AlertSink>)>, cfg: &DeliveryConfig) -> Delivery {
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let backoff = Backoff {
            initial: DeliveryConfig::duration(&cfg.retry_initial, Duration::from_millis(100)),
            max: DeliveryConfig::duration(&cfg.retry_max, Duration::from_secs(5)),
        };
        let mut workers = Vec::new();
        for (name, sink) in sinks {
            let state = Arc::new(WorkerState {
                name: name.clone(),
                pending: AtomicUsize::new(0),
                busy_since_ms: AtomicU64::new(0),
                failing: AtomicBool::new(false),
            });
            let (tx, rx) = bounded(cfg.max_pending.max(1));
            let run = SinkRunner {
                sink,
                state: Arc::clone(&state),
                backoff,
                epoch,
                stop: Arc::clone(&stop),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("sink-{name}"))
                .spawn(move || run.run(rx));
            if let Err(e) = spawned {
                // Without a thread the sink cannot work; say so (the queue fills and stalls).
                tracing::error!(sink = %name, error = %e, "cannot start the sink's delivery thread");
            }
            workers.push(Worker { state, jobs: tx });
        }
        let states: Vec<Arc<WorkerState>> = workers.iter().map(|w| Arc::clone(&w.state)).collect();
        let stall_after = DeliveryConfig::duration(&cfg.stall_after, Duration::from_secs(5));
        let monitor_stop = Arc::clone(&stop);
        let _ = std::thread::Builder::new()
            .name("sink-monitor".into())
            .spawn(move || monitor(states, epoch, stall_after, monitor_stop));
        Delivery { workers, stop }
    }

    /// Whether there is no sink.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Queues one alert for every sink; blocks while a sink's queue is full (back-pressure).
    pub fn send(&self, alert: Alert) {
        let alert = Arc::new(alert);
        for w in &self.workers {
            w.state.pending.fetch_add(1, Ordering::SeqCst);
            let mut job = Job::Alert(Arc::clone(&alert));
            let mut waited = false;
            loop {
                match w.jobs.send_timeout(job, Duration::from_secs(1)) {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(j)) => {
                        if !waited {
                            tracing::warn!(sink = %w.state.name, "alert queue full: pausing input until the sink catches up");
                            waited = true;
                        }
                        job = j;
                    }
                    Err(SendTimeoutError::Disconnected(_)) => {
                        // The worker thread is gone (it could not start): nothing can deliver.
                        tracing::error!(sink = %w.state.name, "the sink's delivery thread is gone");
                        break;
                    }
                }
            }
        }
    }

    /// Waits until every sink has delivered and flushed everything sent so far. Returns
    /// [`Interrupted`] when `cancel` becomes true first.
    pub fn wait_delivered(&self, cancel: Option<&AtomicBool>) -> Result<(), Interrupted> {
        let cancelled = || cancel.is_some_and(|c| c.load(Ordering::SeqCst));
        let mut acks = Vec::new();
        for w in &self.workers {
            let (tx, rx) = bounded(1);
            let mut job = Job::Barrier(tx);
            loop {
                match w.jobs.send_timeout(job, Duration::from_millis(200)) {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(j)) if !cancelled() => job = j,
                    Err(SendTimeoutError::Timeout(_)) => return Err(Interrupted),
                    Err(SendTimeoutError::Disconnected(_)) => return Err(Interrupted),
                }
            }
            acks.push(rx);
        }
        for rx in acks {
            loop {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(()) => break,
                    Err(RecvTimeoutError::Timeout) if !cancelled() => {}
                    Err(_) => return Err(Interrupted),
                }
            }
        }
        Ok(())
    }

    /// Alerts queued and not yet delivered, summed over sinks.
    pub fn pending(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.state.pending.load(Ordering::SeqCst))
            .sum()
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // Workers stop retrying; their threads end with the process (a sink blocked in a call is
        // not waited for: the daemon has already decided whether it could checkpoint).
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    initial: Duration,
    max: Duration,
}

struct SinkRunner {
    sink: Box<dyn AlertSink>,
    state: Arc<WorkerState>,
    backoff: Backoff,
    epoch: Instant,
    stop: Arc<AtomicBool>,
}

impl SinkRunner {
    fn run(mut self, jobs: Receiver<Job>) {
        // Sent but not yet flushed: flushed when the queue runs dry, so alerts show up promptly.
        let mut dirty = false;
        loop {
            let job = match jobs.recv_timeout(Duration::from_millis(200)) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    if dirty {
                        self.retry("flush", |s| s.flush());
                    }
                    return;
                }
            };
            match job {
                Job::Alert(alert) => {
                    if !self.retry("send", |s| s.send(&alert)) {
                        return;
                    }
                    self.state.pending.fetch_sub(1, Ordering::SeqCst);
                    dirty = true;
                }
                Job::Barrier(ack) => {
                    if !self.retry("flush", |s| s.flush()) {
                        return;
                    }
                    dirty = false;
                    let _ = ack.send(());
                    continue;
                }
            }
            if dirty && jobs.is_empty() {
                if !self.retry("flush", |s| s.flush()) {
                    return;
                }
                dirty = false;
            }
        }
    }

    /// Runs `op` until it succeeds, backing off between failures; `false` when told to stop.
    fn retry(
        &mut self,
        what: &str,
        mut op: impl FnMut(&mut dyn AlertSink) -> anyhow::Result<()>,
    ) -> bool {
        let started = self.epoch.elapsed().as_millis() as u64;
        self.state
            .busy_since_ms
            .store(started.max(1), Ordering::SeqCst);
        let mut wait = self.backoff.initial;
        let mut attempt: u64 = 0;
        loop {
            match op(self.sink.as_mut()) {
                Ok(()) => {
                    if attempt > 0 {
                        tracing::info!(sink = %self.state.name, attempts = attempt + 1, "sink recovered");
                    }
                    self.state.failing.store(false, Ordering::SeqCst);
                    self.state.busy_since_ms.store(0, Ordering::SeqCst);
                    return true;
                }
                Err(e) => {
                    attempt += 1;
                    self.state.failing.store(true, Ordering::SeqCst);
                    crate::telemetry::record_sink_error(&self.state.name);
                    // Log the first failures and then every 10th, so a long outage stays readable.
                    if attempt <= 3 || attempt % 10 == 0 {
                        tracing::error!(sink = %self.state.name, op = what, attempt, retry_in_ms = wait.as_millis() as u64, error = %format!("{e:#}"), "sink failed; retrying");
                    }
                    if self.stop.load(Ordering::SeqCst) {
                        return false;
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(self.backoff.max);
                }
            }
        }
    }
}

/// Publishes the per-sink gauges and the readiness fault every 250 ms.
fn monitor(
    states: Vec<Arc<WorkerState>>,
    epoch: Instant,
    stall_after: Duration,
    stop: Arc<AtomicBool>,
) {
    let mut degraded = vec![false; states.len()];
    while !stop.load(Ordering::SeqCst) {
        let now_ms = epoch.elapsed().as_millis() as u64;
        for (i, s) in states.iter().enumerate() {
            let since = s.busy_since_ms.load(Ordering::SeqCst);
            let stalled = if since == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(now_ms.saturating_sub(since))
            };
            let pending = s.pending.load(Ordering::SeqCst);
            crate::telemetry::set_sink_state(&s.name, pending, stalled);
            let is_degraded = stalled >= stall_after;
            if is_degraded != degraded[i] {
                degraded[i] = is_degraded;
                let fault = is_degraded.then(|| {
                    let how = if s.failing.load(Ordering::SeqCst) {
                        "failing"
                    } else {
                        "blocked"
                    };
                    format!("alert sink {} {how} ({pending} pending)", s.name)
                });
                if is_degraded {
                    tracing::warn!(sink = %s.name, stalled_s = stalled.as_secs(), pending, "alert sink stalled; input is paused once its queue is full");
                }
                crate::telemetry::health::set_fault(&format!("sink:{}", s.name), fault);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A sink that fails its first `fail` operations, then records what it got.
    struct Flaky {
        fail: Arc<AtomicUsize>,
        got: Arc<Mutex<Vec<String>>>,
        flushed: Arc<AtomicUsize>,
    }

    impl AlertSink for Flaky {
        fn send(&mut self, alert: &Alert) -> anyhow::Result<()> {
            if self.fail.load(Ordering::SeqCst) > 0 {
                self.fail.fetch_sub(1, Ordering::SeqCst);
                anyhow::bail!("injected failure");
            }
            self.got.lock().expect("lock").push(alert.id.clone());
            Ok(())
        }
        fn flush(&mut self) -> anyhow::Result<()> {
            self.flushed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A test alert with the given id (the other fields do not matter to delivery).
    pub(crate) fn alert(id: &str) -> Alert {
        let text = |s: &str| s.to_string();
        Alert {
            id: text(id),
            time: 0,
            kind: text("test"),
            origin: text("test"),
            severity: 50,
            severity_label: crate::alert::Severity::Medium,
            description: text("test alert"),
            source_ip: None,
            source_port: None,
            source_name: text("-"),
            source_name_aggr: text("a-*"),
            source_namespace: text("ns"),
            dest_ip: None,
            dest_port: None,
            dest_name: text("-"),
            dest_name_aggr: text("b-*"),
            dest_namespace: text("ns"),
            host: None,
            attack_vector: text("Network"),
            mitre_tactic: text("Discovery"),
            mitre_ids: vec![],
            mitigations: vec![],
            record: serde_json::Value::Null,
            dismissed: false,
            detector: text("test"),
            workload: text("ns/a-*"),
            workload_labels: vec![],
            window_start: 0,
            window_end: 15,
            score: 1.0,
            observed: 1.0,
            expected: 0.0,
            band: crate::alert::Band {
                lower: 0.0,
                upper: 1.0,
            },
            feature: text("test"),
            soc2: vec![],
            provisional: false,
        }
    }

    fn fast() -> DeliveryConfig {
        DeliveryConfig {
            max_pending: 2,
            retry_initial: "1ms".into(),
            retry_max: "5ms".into(),
            stall_after: "1h".into(),
        }
    }

    #[test]
    fn failures_are_retried_in_order_and_nothing_is_dropped() {
        let fail = Arc::new(AtomicUsize::new(5));
        let got = Arc::new(Mutex::new(Vec::new()));
        let flushed = Arc::new(AtomicUsize::new(0));
        let sink = Flaky {
            fail: Arc::clone(&fail),
            got: Arc::clone(&got),
            flushed: Arc::clone(&flushed),
        };
        let d = Delivery::start(vec![("test".into(), Box::new(sink))], &fast());
        let ids: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
        for id in &ids {
            d.send(alert(id));
        }
        d.wait_delivered(None).expect("delivered");
        assert_eq!(*got.lock().expect("lock"), ids);
        assert_eq!(d.pending(), 0);
        assert!(flushed.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn a_stopped_wait_reports_interrupted_while_the_sink_fails() {
        let sink = Flaky {
            fail: Arc::new(AtomicUsize::new(usize::MAX)),
            got: Arc::default(),
            flushed: Arc::default(),
        };
        let d = Delivery::start(vec![("broken".into(), Box::new(sink))], &fast());
        d.send(alert("x"));
        let cancel = AtomicBool::new(true);
        assert!(d.wait_delivered(Some(&cancel)).is_err());
        assert_eq!(d.pending(), 1, "the undelivered alert is still pending");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cfg = DeliveryConfig {
            max_pending: 0,
            ..DeliveryConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().0, "delivery.max_pending");
        let cfg = DeliveryConfig {
            retry_max: "soon".into(),
            ..DeliveryConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().0, "delivery.retry_max");
    }
}
