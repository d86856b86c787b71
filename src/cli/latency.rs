//! `flowwarden latency`: record-to-alert latency of the fast-path detectors through the real daemon
//! (a followed file or a Kafka topic) at a set rate. The measuring lives in [`crate::bench::latency`].

use crate::bench::latency::{LatencyOptions, Via};

/// `latency` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct LatencyArgs {
    /// Source the daemon reads: `file` (a followed file) or `kafka`.
    #[arg(long, default_value = "file")]
    pub via: String,
    /// With `--via kafka`: bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// With `--via kafka`: topic (created with one partition when missing).
    #[arg(long, default_value = "flowwarden-latency")]
    pub topic: String,
    /// With `--via kafka`: the writer's producer `linger.ms`.
    #[arg(long, default_value_t = 1)]
    pub linger_ms: u32,
    /// With `--via kafka`: the daemon's consumer `fetch.wait.max.ms`.
    #[arg(long, default_value_t = 5)]
    pub fetch_wait_ms: u32,
    /// Records per second to write.
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,
    /// How long to write (`60s`, `5m`).
    #[arg(long, default_value = "60s")]
    pub duration: String,
    /// Inject one port scan every this long (`100ms`).
    #[arg(long, default_value = "100ms")]
    pub scan_every: String,
    /// Daemon worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Grow the simulated background cluster to about N workloads.
    #[arg(long)]
    pub workloads: Option<usize>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `latency`.
pub fn run(a: LatencyArgs) -> anyhow::Result<()> {
    let via = match a.via.as_str() {
        "file" => Via::File,
        "kafka" => Via::Kafka {
            brokers: a.brokers.clone(),
            topic: a.topic.clone(),
            linger_ms: a.linger_ms,
            fetch_wait_ms: a.fetch_wait_ms,
        },
        other => anyhow::bail!("--via: expected `file` or `kafka`, got {other:?}"),
    };
    let duration =
        humantime::parse_duration(&a.duration).map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
    let scan_every = humantime::parse_duration(&a.scan_every)
        .map_err(|e| anyhow::anyhow!("--scan-every: {e}"))?;
    anyhow::ensure!(!scan_every.is_zero(), "--scan-every must be positive");
    let exe = std::env::current_exe()?;
    let report = crate::bench::latency::run(
        &exe,
        &LatencyOptions {
            via,
            rate: a.rate,
            duration,
            scan_every,
            threads: a.threads,
            seed: 7,
            workloads: a.workloads,
        },
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "via {}: {} records at {:.0}/s (target {}), {} scans, {} early alerts",
            report.via,
            report.records_written,
            report.achieved_rate,
            report.rate,
            report.scans,
            report.scans_alerted
        );
        println!("record-to-alert: {}", report.latency_us.in_ms());
        if report.via == "kafka" {
            println!(
                "from hand-over to the producer: {}",
                report.from_handover_us.in_ms()
            );
        }
        if report.other_early_alerts > 0 {
            println!(
                "(background traffic raised {} early alerts)",
                report.other_early_alerts
            );
        }
    }
    Ok(())
}
