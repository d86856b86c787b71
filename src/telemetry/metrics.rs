//! Metric names (all `flowwarden_*`) and the small functions that record them. The Prometheus recorder
//! is installed by [`install`]; until then (and in `replay`, `bench`, tests) every call is a cheap no-op.
//!
//! Labels are low-cardinality on purpose: the source *kind* (not file names, which rotate), detector,
//! severity band, action and outcome. Per-workload numbers belong in alerts, not in metrics.

use crate::alert::{Alert, Severity};
use crate::pipeline::RunStats;
use crate::respond::{ActionKind, ActionRecord, Decision};
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// Flow records decoded, by `source` kind.
pub const RECORDS_TOTAL: &str = "flowwarden_records_total";
/// Lines rejected (dead-lettered), by `source` kind.
pub const BAD_RECORDS_TOTAL: &str = "flowwarden_bad_records_total";
/// Records that arrived after their window closed (folded into the next open window), by `source`.
pub const LATE_RECORDS_TOTAL: &str = "flowwarden_late_records_total";
/// Records dated beyond `window.max_future_skew` (dead-lettered), by `source`.
pub const FUTURE_RECORDS_TOTAL: &str = "flowwarden_future_records_total";
/// Records older than `window.stale_after` (dead-lettered), by `source`.
pub const STALE_RECORDS_TOTAL: &str = "flowwarden_stale_records_total";
/// Records with a side the state budget refused to aggregate, by `source`.
pub const OVER_BUDGET_RECORDS_TOTAL: &str = "flowwarden_records_over_budget_total";
/// State evicted, by `kind`: by the `[limits]` budget (`baseline`, `workload_name`), or names of
/// workloads in no open window dropped with the idle expiry (`idle_workload_name`).
pub const EVICTIONS_TOTAL: &str = "flowwarden_evictions_total";
/// Estimated bytes of per-workload state at the last window close.
pub const STATE_BYTES: &str = "flowwarden_state_bytes";
/// Gauge: entries held by each part of the state (`part` label).
pub const STATE_ENTRIES: &str = "flowwarden_state_entries";
/// Windows closed and scored.
pub const WINDOWS_CLOSED_TOTAL: &str = "flowwarden_windows_closed_total";
/// Wall time of one window-close pass (score, fold into baselines, raise alerts), histogram.
pub const WINDOW_CLOSE_SECONDS: &str = "flowwarden_window_close_seconds";
/// Distinct workloads tracked.
pub const WORKLOADS: &str = "flowwarden_workloads";
/// Alerts emitted, by `detector` and `severity` (low, medium, high, critical).
pub const ALERTS_TOTAL: &str = "flowwarden_alerts_total";
/// Responder decisions, by `action` (quarantine, release, skip) and `outcome` (applied, dry_run,
/// skipped, failed, ...).
pub const ACTIONS_TOTAL: &str = "flowwarden_actions_total";
/// Quarantines in force.
pub const QUARANTINES_ACTIVE: &str = "flowwarden_quarantines_active";
/// Kafka consumer lag in messages, by `topic` and `partition`.
pub const KAFKA_CONSUMER_LAG: &str = "flowwarden_kafka_consumer_lag";
/// Seconds since the last durable checkpoint (absent until the first one).
pub const CHECKPOINT_AGE_SECONDS: &str = "flowwarden_checkpoint_age_seconds";
/// Sink delivery errors, by `sink`.
pub const SINK_ERRORS_TOTAL: &str = "flowwarden_sink_errors_total";
/// Alerts queued for a sink and not yet delivered, by `sink`.
pub const SINK_PENDING: &str = "flowwarden_sink_pending";
/// How long a sink's current delivery has been failing or blocked (0 when it keeps up), by `sink`.
pub const SINK_STALLED_SECONDS: &str = "flowwarden_sink_stalled_seconds";
/// Checkpoints that could not be written (the daemon keeps running and retries at the next interval).
pub const CHECKPOINT_FAILURES_TOTAL: &str = "flowwarden_checkpoint_failures_total";
/// 1 when `/readyz` would answer 200.
pub const READY: &str = "flowwarden_ready";
/// SIGHUP reloads, by `result` (ok, error).
pub const CONFIG_RELOADS_TOTAL: &str = "flowwarden_config_reloads_total";
/// Always 1, labelled with the `version`.
pub const BUILD_INFO: &str = "flowwarden_build_info";

/// Histogram buckets for [`WINDOW_CLOSE_SECONDS`]: 100 µs to 10 s.
const WINDOW_CLOSE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// Serialises [`install`]: the global recorder can be set only once per process.
static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Installs the global Prometheus recorder once per process and returns its handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let _guard = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(WINDOW_CLOSE_SECONDS.into()),
            WINDOW_CLOSE_BUCKETS,
        )?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    describe_all();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe_all() {
    describe_counter!(
        RECORDS_TOTAL,
        Unit::Count,
        "Flow records decoded, by source kind."
    );
    describe_counter!(
        BAD_RECORDS_TOTAL,
        Unit::Count,
        "Lines rejected and dead-lettered, by source kind."
    );
    describe_counter!(
        LATE_RECORDS_TOTAL,
        Unit::Count,
        "Records whose window had closed, by source kind."
    );
    describe_counter!(
        FUTURE_RECORDS_TOTAL,
        Unit::Count,
        "Records dated beyond window.max_future_skew, dead-lettered, by source kind."
    );
    describe_counter!(
        STALE_RECORDS_TOTAL,
        Unit::Count,
        "Records older than window.stale_after, dead-lettered, by source kind."
    );
    describe_counter!(
        OVER_BUDGET_RECORDS_TOTAL,
        Unit::Count,
        "Records with a side the state budget refused to aggregate, by source kind."
    );
    describe_counter!(
        EVICTIONS_TOTAL,
        Unit::Count,
        "State evicted by the limits.state_memory budget (baseline, workload_name) or idle expiry (idle_workload_name)."
    );
    describe_gauge!(
        STATE_BYTES,
        Unit::Bytes,
        "Estimated bytes of per-workload state at the last window close."
    );
    describe_gauge!(
        STATE_ENTRIES,
        Unit::Count,
        "Entries held by each part of the state (baselines, workload_names, policy_flows, ...)."
    );
    describe_counter!(
        WINDOWS_CLOSED_TOTAL,
        Unit::Count,
        "Event-time windows closed and scored."
    );
    describe_histogram!(
        WINDOW_CLOSE_SECONDS,
        Unit::Seconds,
        "Wall time of one window-close pass."
    );
    describe_gauge!(WORKLOADS, Unit::Count, "Distinct workloads tracked.");
    describe_counter!(
        ALERTS_TOTAL,
        Unit::Count,
        "Alerts emitted, by detector and severity band."
    );
    describe_counter!(
        ACTIONS_TOTAL,
        Unit::Count,
        "Responder decisions, by action and outcome."
    );
    describe_gauge!(QUARANTINES_ACTIVE, Unit::Count, "Quarantines in force.");
    describe_gauge!(
        KAFKA_CONSUMER_LAG,
        Unit::Count,
        "Kafka consumer lag in messages, by topic and partition."
    );
    describe_gauge!(
        CHECKPOINT_AGE_SECONDS,
        Unit::Seconds,
        "Seconds since the last durable checkpoint."
    );
    describe_counter!(
        SINK_ERRORS_TOTAL,
        Unit::Count,
        "Sink delivery errors, by sink."
    );
    describe_gauge!(
        SINK_PENDING,
        Unit::Count,
        "Alerts queued for a sink and not yet delivered, by sink."
    );
    describe_gauge!(
        SINK_STALLED_SECONDS,
        Unit::Seconds,
        "How long a sink's current delivery has been failing or blocked, by sink."
    );
    describe_counter!(
        CHECKPOINT_FAILURES_TOTAL,
        Unit::Count,
        "Checkpoints that could not be written."
    );
    describe_gauge!(READY, "1 when /readyz answers 200.");
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        Unit::Count,
        "SIGHUP configuration reloads, by result."
    );
    describe_gauge!(BUILD_INFO, "Always 1, labelled with the version.");
}

/// Counts one batch from a source kind: decoded records, rejected lines, late records.
pub fn record_batch(source: &str, records: u64, bad: u64, late: u64) {
    if records > 0 {
        counter!(RECORDS_TOTAL, "source" => source.to_owned()).increment(records);
    }
    if bad > 0 {
        counter!(BAD_RECORDS_TOTAL, "source" => source.to_owned()).increment(bad);
    }
    if late > 0 {
        counter!(LATE_RECORDS_TOTAL, "source" => source.to_owned()).increment(late);
    }
}

/// Counts one emitted alert by detector and severity band.
pub fn record_alert(alert: &Alert) {
    counter!(
        ALERTS_TOTAL,
        "detector" => alert.detector.clone(),
        "severity" => severity_label(alert.severity_label)
    )
    .increment(1);
}

/// Lower-case band name used as the `severity` label.
pub fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// Records one window-close pass: how many windows it closed and how long it took.
pub fn record_window_close(windows: usize, took: Duration) {
    counter!(WINDOWS_CLOSED_TOTAL).increment(windows as u64);
    histogram!(WINDOW_CLOSE_SECONDS).record(took.as_secs_f64());
}

/// Counts what the clock and the state budget rejected or evicted since `last`.
fn record_bounds(source: &str, now: &RunStats, last: &RunStats) {
    for (name, n, l) in [
        (
            FUTURE_RECORDS_TOTAL,
            now.future_records,
            last.future_records,
        ),
        (STALE_RECORDS_TOTAL, now.stale_records, last.stale_records),
        (
            OVER_BUDGET_RECORDS_TOTAL,
            now.over_budget_records,
            last.over_budget_records,
        ),
    ] {
        if n > l {
            counter!(name, "source" => source.to_owned()).increment(n - l);
        }
    }
    for (kind, n) in &now.evictions {
        let l = last.evictions.get(kind).copied().unwrap_or(0);
        if *n > l {
            counter!(EVICTIONS_TOTAL, "kind" => kind.clone()).increment(n - l);
        }
    }
    gauge!(STATE_BYTES).set(now.state_bytes as f64);
    for (part, n) in &now.state_entries {
        gauge!(STATE_ENTRIES, "part" => part.clone()).set(*n as f64);
    }
}

/// Sets the number of workloads tracked.
pub fn set_workloads(n: u64) {
    gauge!(WORKLOADS).set(n as f64);
}

/// Counts one responder decision: `action` (quarantine, release, skip), `outcome` (the audit
/// decision: quarantined, escalated, skipped, released, expired) and `dry_run`.
pub fn record_action(r: &ActionRecord) {
    let action = match r.action {
        ActionKind::Quarantine => "quarantine",
        ActionKind::Release => "release",
        ActionKind::Skip => "skip",
    };
    let outcome = match r.decision {
        Decision::Quarantined => "quarantined",
        Decision::Escalated => "escalated",
        Decision::Skipped => "skipped",
        Decision::Released => "released",
        Decision::Expired => "expired",
    };
    counter!(
        ACTIONS_TOTAL,
        "action" => action,
        "outcome" => outcome,
        "dry_run" => if r.dry_run { "true" } else { "false" }
    )
    .increment(1);
}

/// Counts an action outcome that is not a decision record (e.g. `("quarantine", "failed")` when an
/// actuator could not apply it).
pub fn record_action_outcome(action: &str, outcome: &str) {
    counter!(ACTIONS_TOTAL, "action" => action.to_owned(), "outcome" => outcome.to_owned())
        .increment(1);
}

/// Sets the number of quarantines in force.
pub fn set_active_quarantines(n: usize) {
    gauge!(QUARANTINES_ACTIVE).set(n as f64);
}

/// Sets the consumer lag of one Kafka partition.
pub fn set_kafka_lag(topic: &str, partition: i32, lag: i64) {
    gauge!(KAFKA_CONSUMER_LAG, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag.max(0) as f64);
}

/// Sets the checkpoint age (the server refreshes it from [`super::health`] before each scrape).
pub fn set_checkpoint_age(age: Duration) {
    gauge!(CHECKPOINT_AGE_SECONDS).set(age.as_secs_f64());
}

/// Counts one failed delivery to a sink (`stdout`, `file`, `kafka`, `webhook`, ...).
pub fn record_sink_error(sink: &str) {
    counter!(SINK_ERRORS_TOTAL, "sink" => sink.to_owned()).increment(1);
}

/// Publishes a sink's queue depth and how long its current delivery has been stuck.
pub fn set_sink_state(sink: &str, pending: usize, stalled: Duration) {
    gauge!(SINK_PENDING, "sink" => sink.to_owned()).set(pending as f64);
    gauge!(SINK_STALLED_SECONDS, "sink" => sink.to_owned()).set(stalled.as_secs_f64());
}

/// Counts one checkpoint that could not be written.
pub fn record_checkpoint_failure() {
    counter!(CHECKPOINT_FAILURES_TOTAL).increment(1);
}

/// Counts one configuration reload attempt.
pub fn record_reload(ok: bool) {
    counter!(CONFIG_RELOADS_TOTAL, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// Sets the readiness gauge.
pub fn set_ready_gauge(ready: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

/// Turns successive [`RunStats`] snapshots of a pipeline into counter increments, so the pipeline
/// keeps its plain counters and the daemon reports the difference after each batch.
#[derive(Debug, Clone)]
pub struct PipelineMeter {
    source: String,
    last: RunStats,
}

impl PipelineMeter {
    /// A meter labelling records with `source` (the source kind).
    pub fn new(source: &str) -> Self {
        PipelineMeter {
            source: source.to_owned(),
            last: RunStats::default(),
        }
    }

    /// Records what changed since the previous snapshot.
    pub fn observe(&mut self, now: &RunStats) {
        record_batch(
            &self.source,
            now.records.saturating_sub(self.last.records),
            now.bad_records.saturating_sub(self.last.bad_records),
            now.late_records.saturating_sub(self.last.late_records),
        );
        set_workloads(now.workloads);
        record_bounds(&self.source, now, &self.last);
        self.last = now.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric this module records.
    const ALL: &[&str] = &[
        RECORDS_TOTAL,
        BAD_RECORDS_TOTAL,
        LATE_RECORDS_TOTAL,
        FUTURE_RECORDS_TOTAL,
        STALE_RECORDS_TOTAL,
        OVER_BUDGET_RECORDS_TOTAL,
        EVICTIONS_TOTAL,
        STATE_BYTES,
        STATE_ENTRIES,
        WINDOWS_CLOSED_TOTAL,
        WINDOW_CLOSE_SECONDS,
        WORKLOADS,
        ALERTS_TOTAL,
        ACTIONS_TOTAL,
        QUARANTINES_ACTIVE,
        KAFKA_CONSUMER_LAG,
        CHECKPOINT_AGE_SECONDS,
        SINK_ERRORS_TOTAL,
        READY,
        CONFIG_RELOADS_TOTAL,
        BUILD_INFO,
    ];

    #[test]
    fn the_grafana_dashboard_queries_only_metrics_we_export() {
        let text = include_str!("../../config/grafana-dashboard.json");
        let dash: serde_json::Value = serde_json::from_str(text).expect("dashboard is JSON");
        let panels = dash["panels"].as_array().expect("panels");
        assert!(panels.len() >= 10);
        let mut used = 0;
        for p in panels {
            for t in p["targets"].as_array().expect("targets") {
                let expr = t["expr"].as_str().expect("expr");
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if let Some(name) = word.strip_prefix("flowwarden_").map(|_| word) {
                        let base = name.strip_suffix("_bucket").unwrap_or(name);
                        assert!(ALL.contains(&base), "dashboard uses unknown metric {name}");
                        used += 1;
                    }
                }
            }
        }
        assert!(used >= ALL.len() - 1, "most metrics have a panel");
    }

    #[test]
    fn meter_reports_differences_and_the_recorder_renders_them() {
        let handle = install().expect("recorder");
        let mut meter = PipelineMeter::new("unit-test");
        let mut stats = RunStats {
            records: 10,
            bad_records: 2,
            ..RunStats::default()
        };
        meter.observe(&stats);
        stats.records = 25;
        stats.late_records = 3;
        stats.future_records = 4;
        stats.evictions.insert("baseline".into(), 7);
        stats.state_bytes = 1 << 20;
        meter.observe(&stats);
        let text = handle.render();
        assert!(
            text.contains("flowwarden_records_total{source=\"unit-test\"} 25"),
            "{text}"
        );
        assert!(
            text.contains("flowwarden_bad_records_total{source=\"unit-test\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("flowwarden_late_records_total{source=\"unit-test\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("flowwarden_future_records_total{source=\"unit-test\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("flowwarden_evictions_total{kind=\"baseline\"} 7"),
            "{text}"
        );
        assert!(text.contains("flowwarden_state_bytes 1048576"), "{text}");
        record_window_close(2, Duration::from_millis(3));
        let text = handle.render();
        assert!(
            text.contains("flowwarden_window_close_seconds_bucket"),
            "{text}"
        );
    }
}
