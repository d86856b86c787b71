//! `flowwarden bench`: measures the pipeline over files or simulated lines held in memory and prints
//! the figures (text, or one JSON document with `--json`). The measuring lives in [`crate::bench`].

use crate::bench::{BenchInput, BenchReport};
use std::path::PathBuf;
use std::sync::Arc;

/// `bench` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Input files, directories or globs (read into memory before timing).
    #[arg(required_unless_present = "simulate", conflicts_with = "simulate")]
    pub inputs: Vec<String>,
    /// Instead of files, simulate this much Calico traffic (`2d`, `6h`) with the default attacks.
    #[arg(long, value_name = "DURATION")]
    pub simulate: Option<String>,
    /// With `--simulate`: grow the cluster to about N workloads.
    #[arg(long, value_name = "N", requires = "simulate")]
    pub workloads: Option<usize>,
    /// With `--simulate`: random seed.
    #[arg(long, default_value_t = 7, requires = "simulate")]
    pub seed: u64,
    /// Worker threads (default: `[pipeline] threads`, 0 = one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Config file (defaults apply when omitted).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Feed this input through the pipeline first, untimed, and measure the main input from the
    /// state it leaves (repeatable; files, directories or globs). The main input should continue
    /// its event time. It is read, processed and freed before the main input is read, so a large
    /// cluster's steady state can be measured without holding both in memory.
    #[arg(long = "warm-up", value_name = "FILE")]
    pub warm_up: Vec<String>,
}

/// Runs `bench`.
pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    let cfg = Arc::new(super::load_config(a.config.as_deref())?);
    let threads = cfg.effective_threads(a.threads);
    let warmed = if a.warm_up.is_empty() {
        None
    } else {
        let warm = BenchInput::read(&cfg, &a.warm_up)?;
        if warm.lines() == 0 {
            anyhow::bail!("--warm-up: no input lines");
        }
        Some(crate::bench::warm_up(&cfg, &warm, threads)?)
    };
    let input = match &a.simulate {
        Some(d) => {
            let secs = crate::window::parse_duration_s(d)
                .map_err(|e| anyhow::anyhow!("--simulate: {e}"))?;
            if secs <= 0 {
                anyhow::bail!("--simulate: the duration must be at least 1s");
            }
            BenchInput::simulate(&cfg, secs as u64, a.workloads, a.seed)?
        }
        None => BenchInput::read(&cfg, &a.inputs)?,
    };
    if input.lines() == 0 {
        anyhow::bail!("no input lines to measure");
    }
    let report = crate::bench::run(&cfg, &input, threads, warmed)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&report));
    }
    Ok(())
}

/// The human-readable form of a report.
pub fn render_text(r: &BenchReport) -> String {
    let (s, h) = (&r.stages, &r.second_half_stages);
    let warm = match r.warm_up_records {
        0 => String::new(),
        n => format!(", measured after {n} untimed warm-up records"),
    };
    format!(
        "records           {} ({:.0} B/line, {:.1} MB){}\n\
         threads           {}\n\
         end to end        {:.0} records/s, {:.1} MB/s\n\
         second half       {:.0} records/s (once warmed up; {:.2} us/record, each stage per record it worked on)\n\
         parse only        {:.0} records/s (simd-json from_slice, 1 thread)\n\
         end to end / parse only  {:.2}\n\
         stages            decode {:.1} %, assign {:.1} %, aggregate {:.1} %, close/detect {:.1} %\n\
         second half       decode {:.1} %, assign {:.1} %, aggregate {:.1} %, close/detect {:.1} %\n\
         peak RSS          {:.1} MiB (input in memory included)\n\
         bytes/workload    {:.0} ({} baseline groups, {} open aggregates)\n\
         batch latency     p50 {} us, p99 {} us, p99.9 {} us, max {} us\n\
         record to alert   p50 {} us, p99 {} us, p99.9 {} us, max {} us\n\
         alerts            {} ({} windows closed)\n",
        r.records,
        r.mean_line_bytes,
        r.input_bytes as f64 / 1e6,
        warm,
        r.threads,
        r.records_per_s,
        r.mb_per_s,
        r.second_half_records_per_s,
        r.steady_us_per_record,
        r.parse_only_records_per_s,
        r.vs_parse_only,
        s.decode * 100.0,
        s.assign * 100.0,
        s.aggregate * 100.0,
        s.close * 100.0,
        h.decode * 100.0,
        h.assign * 100.0,
        h.aggregate * 100.0,
        h.close * 100.0,
        r.peak_rss_bytes as f64 / (1 << 20) as f64,
        r.bytes_per_workload,
        r.footprint.baseline_groups,
        r.footprint.open_aggregates,
        r.batch_latency_us.p50,
        r.batch_latency_us.p99,
        r.batch_latency_us.p999,
        r.batch_latency_us.max,
        r.latency_us.p50,
        r.latency_us.p99,
        r.latency_us.p999,
        r.latency_us.max,
        r.stats.alerts,
        r.stats.windows_closed,
    )
}
