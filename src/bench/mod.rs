//! `flowwarden bench`: the whole pipeline over input held in memory, with the figures issue 7 asks
//! for: records/s and MB/s end to end, each stage's share of the time, peak RSS, bytes per tracked
//! workload, latency histograms, and a parse-only yardstick over the same lines.
//!
//! It owns measuring, not processing: lines are read (or simulated) before the clock starts, then fed
//! batch by batch to [`Pipeline::push`] exactly as `replay` does, with alerts going to a null sink.
//! The yardstick ([`parse_only`]) deserialises each line with `simd_json::serde::from_slice` into a
//! plain struct of every reference field ([`ParseOnlyFlow`]) and does nothing else, so the ratio
//! "end to end / parse only" says how much the pipeline costs beyond reading the JSON.

pub mod latency;

use crate::config::Config;
use crate::flow::{Decoder, WorkloadId};
use crate::pipeline::{Footprint, Pipeline, PipelineOptions, RunStats, StageTimes};
use crate::simulate::{AttackSpec, SimConfig, Simulator};
use crate::source::{open_inputs, FileSourceOptions, LineBatch, Poll};
use hdrhistogram::Histogram;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Input held in memory, already cut into the batches the pipeline will see.
#[derive(Debug, Default)]
pub struct BenchInput {
    /// Batches of `[input] batch_lines` lines.
    pub batches: Vec<LineBatch>,
}

impl BenchInput {
    /// Reads every line of `inputs` (files, globs, `.gz`) into memory.
    pub fn read(cfg: &Config, inputs: &[String]) -> anyhow::Result<Self> {
        let mut source = open_inputs(
            inputs,
            &FileSourceOptions {
                max_line_bytes: cfg.input.max_line_bytes,
                ..FileSourceOptions::default()
            },
        )?;
        let mut batches = Vec::new();
        loop {
            let mut batch = LineBatch::new();
            let poll =
                source.poll_batch(&mut batch, cfg.input.batch_lines, cfg.input.batch_bytes)?;
            if !batch.is_empty() {
                batches.push(batch);
            } else if poll == Poll::End {
                break;
            }
        }
        crate::source::release_cached_inputs(inputs);
        Ok(BenchInput { batches })
    }

    /// Simulates `duration_s` of Calico flow logs (default attack mix, `workloads` when given) into
    /// memory.
    pub fn simulate(
        cfg: &Config,
        duration_s: u64,
        workloads: Option<usize>,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let sim_cfg = SimConfig {
            seed,
            duration_s,
            workloads,
            attacks: AttackSpec::default_mix(),
            ..SimConfig::default()
        };
        let mut sim = Simulator::try_new(sim_cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut text = Vec::with_capacity(8 << 20);
        let mut input = BenchInput::default();
        let source: Arc<str> = Arc::from("simulated");
        let mut batch = LineBatch::new();
        let mut line_no = 0u64;
        let mut offset = 0u64;
        while sim.next_window(&mut text, None) {
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                line_no += 1;
                batch.push_line(&source, line, line_no, offset);
                offset += line.len() as u64 + 1;
                if batch.len() >= cfg.input.batch_lines {
                    input.batches.push(std::mem::take(&mut batch));
                }
            }
            text.clear();
        }
        if !batch.is_empty() {
            input.batches.push(batch);
        }
        Ok(input)
    }

    /// Number of lines.
    pub fn lines(&self) -> u64 {
        self.batches.iter().map(|b| b.len() as u64).sum()
    }

    /// Bytes of input, newlines included.
    pub fn bytes(&self) -> u64 {
        self.batches
            .iter()
            .map(|b| (b.data.len() + b.len()) as u64)
            .sum()
    }

    fn iter_lines(&self) -> impl Iterator<Item = &[u8]> {
        self.batches
            .iter()
            .flat_map(|b| (0..b.len()).map(move |i| b.line(i)))
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// `p50 1.2 ms, p99 7.7 ms, p99.9 188.0 ms, max 281.3 ms`.
    pub fn in_ms(&self) -> String {
        let ms = |us: u64| us as f64 / 1e3;
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
            ms(self.p50),
            ms(self.p99),
            ms(self.p999),
            ms(self.max)
        )
    }

    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Share of the pipeline's time per stage (fractions of [`StageTimes::total`]) and the seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageShares {
    /// Decoding.
    pub decode: f64,
    /// Window assignment.
    pub assign: f64,
    /// Aggregation.
    pub aggregate: f64,
    /// Window close, detection, alerts.
    pub close: f64,
    /// Seconds per stage, same order.
    pub seconds: [f64; 4],
}

impl StageShares {
    fn of(t: &StageTimes) -> Self {
        let total = t.total().as_secs_f64().max(1e-12);
        let secs = [t.decode, t.assign, t.aggregate, t.close].map(|d| d.as_secs_f64());
        StageShares {
            decode: secs[0] / total,
            assign: secs[1] / total,
            aggregate: secs[2] / total,
            close: secs[3] / total,
            seconds: secs,
        }
    }
}

/// See [`BenchReport::steady_us_per_record`]: `t` is the stage time over `records` records.
fn steady_us_per_record(t: &StageTimes, records: u64) -> f64 {
    let per = |d: Duration, n: u64| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    let closed = if t.records_closed > 0 {
        t.records_closed
    } else {
        records
    };
    per(t.decode + t.assign + t.aggregate, records) + per(t.close, closed)
}

/// Everything `bench` measured (the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Worker threads of the pipeline run.
    pub threads: usize,
    /// Input lines (the measured input's; the warm-up's are in `warm_up_records`).
    pub records: u64,
    /// Lines of the `--warm-up` input processed before the clock started (0 without one).
    pub warm_up_records: u64,
    /// Measured records that arrived behind the watermark (each went to the next open window).
    /// After a warm-up, more than 0 means the main input did not continue the warm-up's event
    /// time, and `bench` warns.
    pub late_measured_records: u64,
    /// Input bytes (newlines included).
    pub input_bytes: u64,
    /// Mean line length in bytes.
    pub mean_line_bytes: f64,
    /// End-to-end records per second (decode to alerts, finish included).
    pub records_per_s: f64,
    /// End-to-end records per second over the second half of the input (from the batch that
    /// crosses the middle record to the end, finish included): the rate once baselines, names and
    /// window tables have warmed up. A short input's first windows are mostly first sightings
    /// (full parse, new state, fresh memory), which a long-running daemon pays once; the
    /// per-record cost curve (docs/performance.md) compares sizes by this rate.
    pub second_half_records_per_s: f64,
    /// Microseconds per record once warmed up, each stage divided by what it worked on: the second
    /// half's decode, assign and aggregate time per record of that half, plus its close time per
    /// record of the windows it closed. After a `--warm-up` input the same over the whole measured
    /// input. Closes lag the records by a window or two; with a million workloads over six
    /// windows the second half closes five of them, so its plain rate charges it for closing
    /// first-half records (with thousands of windows the two agree).
    pub steady_us_per_record: f64,
    /// Parse-only yardstick over the same lines, one thread.
    pub parse_only_records_per_s: f64,
    /// `records_per_s / parse_only_records_per_s`.
    pub vs_parse_only: f64,
    /// End-to-end input megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Peak resident set size of the process (VmHWM), input held in memory included.
    pub peak_rss_bytes: u64,
    /// Baseline bytes per tracked workload group plus open-window aggregate bytes per workload
    /// (measured before the final flush).
    pub bytes_per_workload: f64,
    /// The parts of `bytes_per_workload`.
    pub footprint: Footprint,
    /// Record arrival (its batch handed to the pipeline) to its alert being returned; records that
    /// raise no alert count their batch's latency.
    pub latency_us: Percentiles,
    /// Time of one `push` call.
    pub batch_latency_us: Percentiles,
    /// Share of the pipeline's time per stage.
    pub stages: StageShares,
    /// The same over the second half (see `second_half_records_per_s`): where a large input's
    /// extra per-record cost lies once the first sightings are behind it.
    pub second_half_stages: StageShares,
    /// The pipeline's counters (the warm-up's records included).
    pub stats: RunStats,
}

/// A pipeline that has already processed a warm-up input ([`warm_up`]), for [`run`] to measure
/// from: the state a long-running daemon has (names, baselines past their warm-up, grown tables,
/// daily peaks), which a short input at a million workloads only builds during its own run.
pub struct Warmed {
    pipeline: Pipeline,
    records: u64,
}

fn new_pipeline(cfg: &Arc<Config>, threads: usize) -> anyhow::Result<Pipeline> {
    Pipeline::new(
        Arc::clone(cfg),
        PipelineOptions {
            threads,
            scores: false,
            keep_names: false,
        },
    )
}

/// Feeds `warm` through a new pipeline on `threads` workers, untimed and with its alerts
/// discarded, and leaves its windows open: the measured input continues where it stops.
pub fn warm_up(cfg: &Arc<Config>, warm: &BenchInput, threads: usize) -> anyhow::Result<Warmed> {
    let mut pipeline = new_pipeline(cfg, threads)?;
    let mut progress = crate::telemetry::progress(Some(warm.bytes()), "bench warm-up");
    for batch in &warm.batches {
        std::hint::black_box(pipeline.push(batch)?);
        progress.inc(batch.len() as u64, (batch.data.len() + batch.len()) as u64);
    }
    progress.finish();
    Ok(Warmed {
        pipeline,
        records: warm.lines(),
    })
}

/// Runs the pipeline over `input` on `threads` workers and the parse-only yardstick on one thread.
/// With `warmed` the pipeline is the warmed one and every figure covers `input` alone.
pub fn run(
    cfg: &Arc<Config>,
    input: &BenchInput,
    threads: usize,
    warmed: Option<Warmed>,
) -> anyhow::Result<BenchReport> {
    let records = input.lines();
    let input_bytes = input.bytes();
    let parse_only_records_per_s = {
        let started = Instant::now();
        let parsed = parse_only(input.iter_lines());
        parsed as f64 / started.elapsed().as_secs_f64().max(1e-9)
    };

    let (mut pipeline, warm_up_records) = match warmed {
        Some(w) => (w.pipeline, w.records),
        None => (new_pipeline(cfg, threads)?, 0),
    };
    let before = pipeline.stage_times();
    let late_before = pipeline.stats().late_records;
    let mut batch_hist = new_histogram();
    let mut arrivals: Vec<Instant> = Vec::with_capacity(input.batches.len());
    let mut batch_latency: Vec<u64> = Vec::with_capacity(input.batches.len());
    let mut alerted: FxHashMap<(i64, WorkloadId), Instant> = FxHashMap::default();
    let mut note_alerts = |alerts: Vec<crate::alert::Alert>, at: Instant| {
        for a in alerts {
            alerted
                .entry((a.window_start, WorkloadId::of_key(&a.workload)))
                .or_insert(at);
            std::hint::black_box(&a);
        }
    };
    let mut progress = crate::telemetry::progress(Some(input_bytes), "bench");
    let started = Instant::now();
    let mut footprint = Footprint::default();
    let (mut pushed, mut second_half) = (0u64, None);
    for (i, batch) in input.batches.iter().enumerate() {
        let arrived = Instant::now();
        if second_half.is_none() && (pushed + batch.len() as u64) * 2 > records {
            second_half = Some((arrived, records - pushed, pipeline.stage_times()));
        }
        pushed += batch.len() as u64;
        let alerts = pipeline.push(batch)?;
        let returned = Instant::now();
        arrivals.push(arrived);
        let us = micros(returned - arrived);
        batch_latency.push(us);
        batch_hist.saturating_record(us);
        note_alerts(alerts, returned);
        progress.inc(batch.len() as u64, (batch.data.len() + batch.len()) as u64);
        if i + 1 == input.batches.len() {
            footprint = pipeline.footprint();
        }
    }
    let alerts = pipeline.finish()?;
    note_alerts(alerts, Instant::now());
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let second_half_records_per_s = second_half.map_or(0.0, |(from, n, _)| {
        n as f64 / from.elapsed().as_secs_f64().max(1e-9)
    });
    progress.finish();
    let stats = pipeline.stats();
    let late_measured_records = stats.late_records - late_before;
    if warm_up_records > 0 && late_measured_records > 0 {
        // Late records still count (each goes to the next open window), but a measured input
        // that starts before the warm-up's end is not the steady state the warm-up was for.
        tracing::warn!(
            late_measured_records,
            "measured records fell behind the warm-up's watermark: the main input should continue the warm-up's event time"
        );
    }
    let times = pipeline.stage_times().since(&before);
    let stages = StageShares::of(&times);
    let (half_records, half_times) = second_half.map_or((records, times), |(_, n, at_half)| {
        (n, pipeline.stage_times().since(&at_half))
    });
    let second_half_stages = StageShares::of(&half_times);
    // After a warm-up input every measured record is past the first sightings.
    let steady_us_per_record = if warm_up_records > 0 {
        steady_us_per_record(&times, records)
    } else {
        steady_us_per_record(&half_times, half_records)
    };
    let window_len = pipeline.window_length().unwrap_or(60).max(1);

    // After the clock: which records an alert covers, by (window start, workload).
    let mut latency = new_histogram();
    let mut decoder = Decoder::new(cfg.input.max_line_bytes);
    for (b, batch) in input.batches.iter().enumerate() {
        for i in 0..batch.len() {
            let us = decoder.decode(batch.line(i)).ok().and_then(|rec| {
                let window_start = rec.start_time.div_euclid(window_len) * window_len;
                [rec.src.id, rec.dst.id]
                    .iter()
                    .filter_map(|id| alerted.get(&(window_start, *id)))
                    .min()
                    .map(|at| micros(at.saturating_duration_since(arrivals[b])))
            });
            latency.saturating_record(us.unwrap_or(batch_latency[b]));
        }
    }

    let workloads = footprint
        .baseline_groups
        .max(footprint.open_aggregates)
        .max(1);
    Ok(BenchReport {
        threads,
        records,
        warm_up_records,
        late_measured_records,
        input_bytes,
        mean_line_bytes: input_bytes as f64 / records.max(1) as f64,
        records_per_s: records as f64 / elapsed,
        second_half_records_per_s,
        steady_us_per_record,
        parse_only_records_per_s,
        vs_parse_only: records as f64 / elapsed / parse_only_records_per_s.max(1e-9),
        mb_per_s: input_bytes as f64 / 1e6 / elapsed,
        peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
        bytes_per_workload: footprint.baseline_bytes_per_workload
            + footprint.open_aggregate_bytes as f64 / workloads as f64,
        footprint,
        latency_us: Percentiles::of(&latency),
        batch_latency_us: Percentiles::of(&batch_hist),
        stages,
        second_half_stages,
        stats,
    })
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 h at 3 significant digits; `saturating_record` clamps anything outside.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| Histogram::new(3).unwrap())
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

/// Peak resident set size (`VmHWM` of `/proc/self/status`), when the platform has it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Every field of the reference, borrowed: the parse-only yardstick's target.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(dead_code)]
pub struct ParseOnlyFlow<'a> {
    start_time: Option<i64>,
    end_time: Option<i64>,
    source_ip: Option<&'a str>,
    dest_ip: Option<&'a str>,
    source_port: Option<i64>,
    dest_port: Option<i64>,
    source_name: Option<&'a str>,
    dest_name: Option<&'a str>,
    source_name_aggr: Option<&'a str>,
    dest_name_aggr: Option<&'a str>,
    source_namespace: Option<&'a str>,
    dest_namespace: Option<&'a str>,
    source_type: Option<&'a str>,
    dest_type: Option<&'a str>,
    #[serde(borrow)]
    source_labels: Option<ParseOnlyLabels<'a>>,
    #[serde(borrow)]
    dest_labels: Option<ParseOnlyLabels<'a>>,
    nat_outgoing_ports: Option<Vec<i64>>,
    dest_service_namespace: Option<&'a str>,
    dest_service_name: Option<&'a str>,
    dest_service_port: Option<&'a str>,
    dest_service_port_num: Option<i64>,
    #[serde(borrow)]
    dest_domains: Option<Vec<&'a str>>,
    proto: Option<&'a str>,
    action: Option<&'a str>,
    reporter: Option<&'a str>,
    #[serde(borrow)]
    policies: Option<ParseOnlyPolicies<'a>>,
    bytes_in: Option<u64>,
    bytes_out: Option<u64>,
    packets_in: Option<u64>,
    packets_out: Option<u64>,
    num_flows: Option<u64>,
    num_flows_started: Option<u64>,
    num_flows_completed: Option<u64>,
    http_requests_allowed_in: Option<u64>,
    http_requests_denied_in: Option<u64>,
    process_name: Option<&'a str>,
    process_id: Option<&'a str>,
    #[serde(borrow)]
    process_args: Option<Vec<&'a str>>,
    num_process_names: Option<u64>,
    num_process_ids: Option<u64>,
    num_process_args: Option<u64>,
    #[serde(borrow)]
    original_source_ips: Option<Vec<&'a str>>,
    num_original_source_ips: Option<u64>,
    tcp_mean_send_congestion_window: Option<u64>,
    tcp_min_send_congestion_window: Option<u64>,
    tcp_mean_smooth_rtt: Option<u64>,
    tcp_max_smooth_rtt: Option<u64>,
    tcp_mean_min_rtt: Option<u64>,
    tcp_max_min_rtt: Option<u64>,
    tcp_mean_mss: Option<u64>,
    tcp_min_mss: Option<u64>,
    tcp_total_retransmissions: Option<u64>,
    tcp_lost_packets: Option<u64>,
    tcp_unrecovered_to: Option<u64>,
    host: Option<&'a str>,
    #[serde(rename = "@timestamp")]
    timestamp: Option<i64>,
}

/// `{"labels": [...]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(dead_code)]
pub struct ParseOnlyLabels<'a> {
    #[serde(borrow)]
    labels: Option<Vec<&'a str>>,
}

/// The `policies` object.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(dead_code)]
pub struct ParseOnlyPolicies<'a> {
    #[serde(borrow)]
    all_policies: Option<Vec<&'a str>>,
    #[serde(borrow)]
    enforced_policies: Option<Vec<&'a str>>,
    #[serde(borrow)]
    pending_policies: Option<Vec<&'a str>>,
    #[serde(borrow)]
    transit_policies: Option<Vec<&'a str>>,
}

/// The yardstick: `simd_json::serde::from_slice` of every line into [`ParseOnlyFlow`] (the line is
/// copied first, since simd-json parses in place). Returns how many lines parsed.
pub fn parse_only<'l>(lines: impl Iterator<Item = &'l [u8]>) -> u64 {
    let mut scratch = Vec::with_capacity(4096);
    let mut parsed = 0;
    for line in lines {
        scratch.clear();
        scratch.extend_from_slice(line);
        if let Ok(flow) = simd_json::serde::from_slice::<ParseOnlyFlow>(&mut scratch) {
            std::hint::black_box(&flow);
            parsed += 1;
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_input() -> (Arc<Config>, BenchInput) {
        let cfg = Arc::new(Config::default());
        let input = BenchInput::simulate(&cfg, 2 * 3600, None, 3).expect("simulate");
        (cfg, input)
    }

    #[test]
    fn bench_counts_every_simulated_record() {
        let (cfg, input) = small_input();
        assert!(input.lines() > 1000);
        let report = run(&cfg, &input, 1, None).expect("bench");
        assert_eq!(report.records, input.lines());
        assert_eq!(report.stats.records, input.lines());
        assert!(report.records_per_s > 0.0 && report.parse_only_records_per_s > 0.0);
        // The second half is timed from a later start over fewer records, never zero.
        assert!(report.second_half_records_per_s > 0.0);
        assert!(report.steady_us_per_record > 0.0);
        assert!(report.latency_us.max >= report.latency_us.p50);
        let shares = report.stages;
        let sum = shares.decode + shares.assign + shares.aggregate + shares.close;
        assert!((sum - 1.0).abs() < 1e-6, "shares sum to {sum}");
        assert!(report.bytes_per_workload > 0.0);
    }

    #[test]
    fn a_warm_up_input_is_processed_but_not_measured() {
        let (cfg, all) = small_input();
        let whole = run(&cfg, &all, 1, None).expect("bench");
        // The same simulation (same seed), cut in two.
        let (_, mut warm) = small_input();
        let measured = BenchInput {
            batches: warm.batches.split_off(warm.batches.len() / 2),
        };
        assert!(warm.lines() > 0 && measured.lines() > 0);
        assert_eq!(warm.lines() + measured.lines(), all.lines());
        let warmed = warm_up(&cfg, &warm, 1).expect("warm-up");
        let report = run(&cfg, &measured, 1, Some(warmed)).expect("bench");
        assert_eq!(report.records, measured.lines());
        assert_eq!(report.warm_up_records, warm.lines());
        // The same pipeline saw every record, so it closed the same windows and raised the same
        // alerts as one run over both halves.
        assert_eq!(report.stats.records, warm.lines() + measured.lines());
        assert_eq!(report.stats.windows_closed, whole.stats.windows_closed);
        assert_eq!(report.stats.alerts, whole.stats.alerts);
        assert!(
            report.stats.alerts > 0,
            "the simulated attacks raise alerts"
        );
        assert!(report.steady_us_per_record > 0.0 && report.records_per_s > 0.0);
    }

    #[test]
    fn parse_only_skips_bad_lines() {
        let lines: Vec<&[u8]> = vec![br#"{"start_time":1,"proto":"tcp"}"#, b"not json", b"{}"];
        assert_eq!(parse_only(lines.into_iter()), 2);
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap_or(0) > 0);
        }
    }
}
