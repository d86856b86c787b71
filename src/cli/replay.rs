//! `flowwarden replay`: read files as fast as possible in event time, write alerts, scores, dead
//! letters and a summary, and exit.

use crate::alert::Alert;
use crate::config::Config;
use crate::pipeline::{Pipeline, PipelineOptions, RunStats};
use crate::respond::ResponseStage;
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
    /// Start from a trained model (`flowwarden train --out DIR`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Quarantine decisions (action records: quarantine, release, skip) as JSON lines.
    #[arg(long)]
    pub actions: Option<PathBuf>,
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
    let mut cfg = super::load_config(a.config.as_deref())?;
    if a.model.is_some() {
        cfg.model = a.model.clone();
    }
    let cfg = Arc::new(cfg);
    let threads = cfg.effective_threads(a.threads);
    let mut sinks = alert_sinks(&cfg, a.alerts.as_deref())?;
    let dead_letter = a.dead_letter.as_ref().or(cfg.dead_letter.file.as_ref());
    let opts = PipelineOptions {
        threads,
        scores: a.scores.is_some(),
        keep_names: a.scores.is_some(),
    };
    let mut response = match &a.actions {
        Some(path) => Some(ResponseStage::new(&cfg.respond, Some(path))?),
        None => None,
    };
    let response_cell = std::cell::RefCell::new(response.as_mut());
    let outcome = run_pipeline(
        &cfg,
        &a.inputs,
        opts,
        dead_letter.map(PathBuf::as_path),
        &mut |alert| {
            sinks.send(alert)?;
            if let Some(r) = response_cell.borrow_mut().as_mut() {
                r.handle(std::slice::from_ref(alert), alert.time)?;
            }
            Ok(())
        },
        &mut |watermark| {
            if let Some(r) = response_cell.borrow_mut().as_mut() {
                r.handle(&[], watermark)?;
            }
            Ok(())
        },
    )?;
    sinks.flush()?;
    if let Some(r) = response_cell.borrow_mut().as_mut() {
        r.flush()?;
    }
    if let Some(path) = &a.scores {
        write_scores(path, &outcome.scores)?;
    }
    let summary = Summary {
        records_per_s: if outcome.elapsed_s > 0.0 {
            outcome.stats.records as f64 / outcome.elapsed_s
        } else {
            0.0
        },
        elapsed_s: outcome.elapsed_s,
        stats: outcome.stats,
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

/// What one pass of the pipeline over the inputs produced (besides the alerts).
#[derive(Debug)]
pub struct PipelineRun {
    /// Pipeline counters.
    pub stats: RunStats,
    /// One score per input line in input order (NaN: did not decode); empty unless `opts.scores`.
    pub scores: Vec<f32>,
    /// Window length the pipeline used (seconds), once known.
    pub window_length: Option<i64>,
    /// Wall time.
    pub elapsed_s: f64,
}

/// Runs the pipeline over `inputs` to their end (the replay loop), handing each alert to `on_alert`
/// as its window closes. Shared by `replay` and `eval`.
pub fn run_pipeline(
    cfg: &Arc<Config>,
    inputs: &[String],
    opts: PipelineOptions,
    dead_letter: Option<&std::path::Path>,
    on_alert: &mut dyn FnMut(&Alert) -> anyhow::Result<()>,
    on_watermark: &mut dyn FnMut(i64) -> anyhow::Result<()>,
) -> anyhow::Result<PipelineRun> {
    run_pipeline_with(
        cfg,
        inputs,
        opts,
        dead_letter,
        on_alert,
        on_watermark,
        &mut |_| {},
    )
}

/// [`run_pipeline`], loading `model` first when given, and handing the finished pipeline to
/// `at_end` (for `train`).
pub fn run_pipeline_with(
    cfg: &Arc<Config>,
    inputs: &[String],
    opts: PipelineOptions,
    dead_letter: Option<&std::path::Path>,
    on_alert: &mut dyn FnMut(&Alert) -> anyhow::Result<()>,
    on_watermark: &mut dyn FnMut(i64) -> anyhow::Result<()>,
    at_end: &mut dyn FnMut(&Pipeline),
) -> anyhow::Result<PipelineRun> {
    let scores = opts.scores;
    let mut pipeline = Pipeline::new(Arc::clone(cfg), opts)?;
    if let Some(model) = &cfg.model {
        crate::cli::train::load_model(&mut pipeline, model)?;
    }
    if let Some(path) = dead_letter {
        pipeline.set_dead_letters(Box::new(JsonLinesSink::create(path)?));
    }
    let mut source = open_inputs(
        inputs,
        &FileSourceOptions {
            max_line_bytes: cfg.input.max_line_bytes,
            ..FileSourceOptions::default()
        },
    )?;
    let started = Instant::now();
    let mut progress = crate::telemetry::progress(input_bytes(inputs), "replay");
    let mut batch = LineBatch::new();
    loop {
        batch.clear();
        match source.poll_batch(&mut batch, cfg.input.batch_lines, cfg.input.batch_bytes)? {
            Poll::End if batch.is_empty() => break,
            Poll::Idle if batch.is_empty() => continue,
            _ => {}
        }
        // Line bytes plus their newlines: matches the file size for plain files.
        progress.inc(batch.len() as u64, (batch.data.len() + batch.len()) as u64);
        for alert in pipeline.push(&batch)? {
            on_alert(&alert)?;
        }
        if let Some(wm) = pipeline.watermark() {
            on_watermark(wm)?;
        }
    }
    progress.finish();
    for alert in pipeline.finish()? {
        on_alert(&alert)?;
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let stats = pipeline.stats();
    if stats.bad_records > 0 {
        tracing::warn!(
            bad_records = stats.bad_records,
            "some lines were rejected (see the dead-letter output)"
        );
    }
    at_end(&pipeline);
    Ok(PipelineRun {
        stats,
        scores: if scores {
            pipeline.take_scores()
        } else {
            Vec::new()
        },
        window_length: pipeline.window_length(),
        elapsed_s,
    })
}

/// Total size of the inputs when every one is a plain uncompressed file (for a progress bar with an
/// ETA); `None` for stdin, `.gz`, directories and globs.
fn input_bytes(inputs: &[String]) -> Option<u64> {
    inputs.iter().try_fold(0u64, |total, spec| {
        if spec == "-" || spec.ends_with(".gz") {
            return None;
        }
        let meta = std::fs::metadata(spec).ok().filter(|m| m.is_file())?;
        Some(total + meta.len())
    })
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
