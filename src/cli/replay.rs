//! `flowwarden replay`: read files as fast as possible in event time, write alerts, scores, dead
//! letters and a summary, and exit.

use crate::config::Config;
use crate::pipeline::{Pipeline, PipelineOptions, RunStats};
use crate::sink::{AlertSink, FanOut, JsonLinesSink};
use crate::source::{open_inputs, FileSourceOptions, LineBatch, Poll};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// `replay` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Input files, directories or globs (`-` for stdin; `.gz` read transparently).
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Config file (defaults apply when omitted).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Alerts as JSON lines to this file (`-` for stdout). Default: stdout.
    #[arg(long)]
    pub alerts: Option<String>,
    /// One anomaly score per input line, same order (empty for lines that did not decode).
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Run summary as JSON.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Rejected lines as JSON lines (overrides `[dead_letter] file`).
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// Worker threads (default: `[pipeline] threads`, 0 = one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The `--summary-json` document.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Pipeline counters.
    #[serde(flatten)]
    pub stats: RunStats,
    /// Wall time.
    pub elapsed_s: f64,
    /// Records per second of wall time.
    pub records_per_s: f64,
}

/// Runs `replay`.
pub fn run(a: ReplayArgs) -> anyhow::Result<()> {
    let cfg = Arc::new(super::load_config(a.config.as_deref())?);
    let threads = cfg.effective_threads(a.threads);
    let mut pipeline = Pipeline::new(
        Arc::clone(&cfg),
        PipelineOptions {
            threads,
            scores: a.scores.is_some(),
        },
    )?;
    if let Some(path) = a.dead_letter.as_ref().or(cfg.dead_letter.file.as_ref()) {
        pipeline.set_dead_letters(Box::new(JsonLinesSink::create(path)?));
    }
    let mut sinks = alert_sinks(&cfg, a.alerts.as_deref())?;
    let mut source = open_inputs(
        &a.inputs,
        &FileSourceOptions {
            max_line_bytes: cfg.input.max_line_bytes,
            ..FileSourceOptions::default()
        },
    )?;
    let started = Instant::now();
    let mut batch = LineBatch::new();
    loop {
        batch.clear();
        match source.poll_batch(&mut batch, cfg.input.batch_lines, 64 << 20)? {
            Poll::End if batch.is_empty() => break,
            Poll::Idle if batch.is_empty() => continue,
            _ => {}
        }
        for alert in pipeline.push(&batch)? {
            sinks.send(&alert)?;
        }
    }
    for alert in pipeline.finish()? {
        sinks.send(&alert)?;
    }
    sinks.flush()?;
    let elapsed = started.elapsed().as_secs_f64();
    let stats = pipeline.stats();
    if stats.bad_records > 0 {
        tracing::warn!(
            bad_records = stats.bad_records,
            "some lines were rejected (see the dead-letter output)"
        );
    }
    if let Some(path) = &a.scores {
        write_scores(path, &pipeline.take_scores())?;
    }
    let summary = Summary {
        records_per_s: if elapsed > 0.0 {
            stats.records as f64 / elapsed
        } else {
            0.0
        },
        elapsed_s: elapsed,
        stats,
    };
    tracing::info!(
        records = summary.stats.records,
        bad = summary.stats.bad_records,
        late = summary.stats.late_records,
        alerts = summary.stats.alerts,
        records_per_s = summary.records_per_s as u64,
        "replay finished"
    );
    if let Some(path) = &a.summary_json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Alert sinks from `--alerts` or the `[alerts]` config.
pub fn alert_sinks(cfg: &Config, cli: Option<&str>) -> anyhow::Result<FanOut> {
    let mut fan = FanOut::default();
    match cli {
        Some("-") => fan.push(Box::new(JsonLinesSink::new(std::io::BufWriter::new(
            std::io::stdout(),
        )))),
        Some(path) => fan.push(Box::new(JsonLinesSink::create(std::path::Path::new(path))?)),
        None => {
            if cfg.alerts.stdout {
                fan.push(Box::new(JsonLinesSink::new(std::io::BufWriter::new(
                    std::io::stdout(),
                ))));
            }
        }
    }
    if let Some(path) = &cfg.alerts.file {
        fan.push(Box::new(JsonLinesSink::create(path)?));
    }
    Ok(fan)
}

fn write_scores(path: &std::path::Path, scores: &[f32]) -> anyhow::Result<()> {
    let f = std::fs::File::create(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    for s in scores {
        if s.is_nan() {
            writeln!(w)?;
        } else {
            writeln!(w, "{s}")?;
        }
    }
    w.flush()?;
    Ok(())
}
