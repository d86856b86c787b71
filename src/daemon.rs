//! The daemon loop behind `flowwarden run`: builds the configured source, feeds the pipeline, delivers
//! alerts, and handles signals (SIGTERM/SIGINT: stop consuming, flush, exit 0; SIGHUP: reload).
//!
//! Sources are built here from `[source] kind`; each kind's implementation lives in `src/source/`.
//! Alerts go to the sinks through [`Delivery`] (bounded queues, retries, back-pressure); a checkpoint
//! is written only once every alert raised before it is delivered, and a checkpoint that cannot be
//! written is logged, counted and retried at the next interval without stopping the daemon.

use crate::alert::Alert;
use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::pipeline::{Pipeline, PipelineOptions};
use crate::respond::ResponseStage;
use crate::sink::delivery::Delivery;
use crate::sink::AlertSink;
use crate::source::{
    open_inputs, FileSourceOptions, LineBatch, LineSource, Poll, SourceCheckpoint,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flags set by signal handlers and read by the loop.
#[derive(Debug, Default, Clone)]
pub struct Signals {
    /// SIGTERM or SIGINT received.
    pub shutdown: Arc<AtomicBool>,
    /// SIGHUP received (cleared when handled).
    pub reload: Arc<AtomicBool>,
}

impl Signals {
    /// Installs handlers for SIGTERM, SIGINT and SIGHUP on a background thread.
    pub fn install() -> anyhow::Result<Signals> {
        let s = Signals::default();
        let (shutdown, reload) = (Arc::clone(&s.shutdown), Arc::clone(&s.reload));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                rt.block_on(async move {
                    use tokio::signal::unix::{signal, SignalKind};
                    let streams = (
                        signal(SignalKind::terminate()),
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::hangup()),
                    );
                    let (mut term, mut int, mut hup) = match streams {
                        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                        _ => {
                            let _ = ready_tx
                                .send(Err(anyhow::anyhow!("cannot install signal handlers")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    loop {
                        tokio::select! {
                            _ = term.recv() => { shutdown.store(true, Ordering::SeqCst); }
                            _ = int.recv() => { shutdown.store(true, Ordering::SeqCst); }
                            _ = hup.recv() => { reload.store(true, Ordering::SeqCst); }
                        }
                    }
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("signal thread ended"))??;
        Ok(s)
    }
}

/// Builds the source named by `[source] kind`, resuming file positions from a checkpoint.
pub fn build_source(
    cfg: &Config,
    resume: Option<SourceCheckpoint>,
) -> anyhow::Result<Box<dyn LineSource>> {
    let poll_interval =
        humantime::parse_duration(&cfg.source.poll_interval).unwrap_or(Duration::from_millis(250));
    let file_opts = FileSourceOptions {
        follow: cfg.source.follow,
        poll_interval,
        max_line_bytes: cfg.input.max_line_bytes,
        resume: resume.clone(),
    };
    match cfg.source.kind.as_str() {
        "file" => open_inputs(&cfg.source.paths, &file_opts),
        "stdin" => open_inputs(&["-".to_string()], &file_opts),
        "simulate" => {
            let duration = crate::window::parse_duration_s(&cfg.source.simulate_duration)
                .map_err(|m| anyhow::anyhow!("source.simulate_duration: {m}"))?;
            Ok(Box::new(crate::source::simulate::SimulatedSource::new(
                cfg.source.simulate_seed,
                duration.max(1) as u64,
            )))
        }
        "goldmane-http" => Ok(Box::new(
            crate::source::goldmane_http::GoldmaneHttpSource::start(
                &cfg.goldmane_http,
                cfg.input.max_line_bytes,
            )?,
        )),
        "kafka" => Ok(Box::new(crate::kafka::KafkaSource::new(
            &cfg.kafka,
            &resume.map(|r| r.kafka).unwrap_or_default(),
        )?)),
        other => anyhow::bail!("source kind {other:?} is not available in this build"),
    }
}

/// Where alerts and actions go in the daemon.
struct Outputs {
    alerts: Delivery,
    response: Option<ResponseStage>,
    actions_topic: Option<crate::kafka::sink::KafkaActionSink>,
    sink_errors: u64,
}

impl Outputs {
    /// Delivers alerts and the responder's decisions; a failing sink is logged and counted, not fatal.
    fn deliver(&mut self, alerts: &[Alert], watermark: Option<i64>) {
        for alert in alerts {
            crate::telemetry::record_alert(alert);
            self.alerts.send(alert.clone());
        }
        let Some(stage) = &mut self.response else {
            return;
        };
        let now = alerts
            .iter()
            .map(|a| a.time)
            .chain(watermark)
            .max()
            .unwrap_or(0);
        match stage.handle(alerts, now) {
            Ok(records) => {
                for r in &records {
                    tracing::info!(
                        decision = ?r.decision,
                        workload = %r.workload,
                        dry_run = r.dry_run,
                        rule = r.rule.as_deref().unwrap_or("-"),
                        reason = %r.reason,
                        "quarantine decision"
                    );
                    if let Some(topic) = &mut self.actions_topic {
                        if let Err(e) = topic.send(&r.workload, r) {
                            self.sink_errors += 1;
                            crate::telemetry::record_sink_error("kafka-actions");
                            tracing::error!(error = %format!("{e:#}"), "cannot publish action");
                        }
                    }
                }
                crate::telemetry::set_active_quarantines(stage.active());
                if let Err(e) = stage.flush() {
                    self.sink_error("actions", &e);
                }
            }
            Err(e) => self.sink_error("actions", &e),
        }
    }

    /// Flushes the actions topic (alerts are flushed by their delivery threads).
    fn flush_actions(&mut self) {
        if let Some(topic) = &mut self.actions_topic {
            if let Err(e) = topic.flush() {
                self.sink_errors += 1;
                tracing::error!(error = %format!("{e:#}"), "cannot flush the actions topic");
            }
        }
    }

    fn sink_error(&mut self, sink: &str, e: &anyhow::Error) {
        self.sink_errors += 1;
        crate::telemetry::record_sink_error(sink);
        tracing::error!(sink, error = %format!("{e:#}"), "sink failed");
    }
}

/// Writes a checkpoint of the pipeline and the source positions, then lets the source commit.
fn checkpoint(
    cfg: &Config,
    pipeline: &Pipeline,
    source: &mut Box<dyn LineSource>,
    partition_states: Option<&mut crate::kafka::state::PartitionStates>,
) -> anyhow::Result<()> {
    let Some(path) = cfg.checkpoint.file() else {
        return Ok(());
    };
    let cp = Checkpoint {
        pipeline: pipeline.snapshot(),
        source: source.checkpoint(),
        written_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    crate::checkpoint::write(&path, &cp)?;
    // Scale-out: the owned partitions' slices go to the state topic before the offsets they cover
    // are committed, so a partition's next owner finds state at least as new as its start offset.
    if let Some(states) = partition_states {
        states.on_checkpoint(pipeline, &cp.source.kafka)?;
    }
    source.checkpoint_done();
    crate::telemetry::record_checkpoint();
    tracing::debug!(path = %path.display(), "checkpoint written");
    Ok(())
}

/// [`checkpoint`], with a failure logged, counted and reported by `/readyz` until one succeeds. The
/// source commits (Kafka offsets) only after a successful write, so a failure never moves the
/// committed position past the last checkpoint on disk.
fn checkpoint_or_count(
    cfg: &Config,
    pipeline: &Pipeline,
    source: &mut Box<dyn LineSource>,
    partition_states: Option<&mut crate::kafka::state::PartitionStates>,
) -> anyhow::Result<()> {
    match checkpoint(cfg, pipeline, source, partition_states) {
        Ok(()) => {
            crate::telemetry::health::set_fault("checkpoint", None);
            Ok(())
        }
        Err(e) => {
            crate::telemetry::record_checkpoint_failure();
            let why = format!("{e:#}");
            tracing::error!(error = %why, "checkpoint failed; retrying at the next interval");
            crate::telemetry::health::set_fault(
                "checkpoint",
                Some(format!("checkpoint failed: {why}")),
            );
            Err(e)
        }
    }
}

/// The daemon's alert sinks, named for metrics and logs: stdout, file, webhook, Kafka topic.
fn alert_sinks(cfg: &Config) -> anyhow::Result<Vec<(String, Box<dyn AlertSink>)>> {
    let mut sinks: Vec<(String, Box<dyn AlertSink>)> = Vec::new();
    if cfg.alerts.stdout {
        let out = std::io::BufWriter::new(std::io::stdout());
        sinks.push((
            "stdout".into(),
            Box::new(crate::sink::JsonLinesSink::new(out)),
        ));
    }
    if let Some(path) = &cfg.alerts.file {
        sinks.push((
            "file".into(),
            Box::new(crate::sink::file::AlertFileSink::create(path)?),
        ));
    }
    if let Some(webhook) = crate::sink::webhook::WebhookSink::from_config(&cfg.webhook) {
        sinks.push(("webhook".into(), Box::new(webhook)));
    }
    if let Some(topic) = &cfg.kafka.alerts_topic {
        let producer = crate::kafka::sink::TopicProducer::new(&cfg.kafka, topic)?;
        sinks.push((
            "kafka".into(),
            Box::new(crate::kafka::sink::KafkaAlertSink(producer)),
        ));
    }
    Ok(sinks)
}

/// Runs the daemon until the source ends or a shutdown signal arrives.
pub fn run(cfg_path: Option<PathBuf>, cfg: Config, signals: Signals) -> anyhow::Result<()> {
    let mut cfg = Arc::new(cfg);
    crate::telemetry::apply_log_config(&cfg.log);
    // A taken metrics port must not keep a security daemon from watching traffic: say so loudly
    // and run without the endpoint.
    let _telemetry = match crate::telemetry::start(&cfg.metrics) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "metrics and health endpoints are disabled");
            None
        }
    };
    let bound = cfg.daemon.shutdown_bound();
    crate::telemetry::spawn_shutdown_watchdog(Arc::clone(&signals.shutdown), bound)?;
    let threads = cfg.effective_threads(None);
    let mut pipeline = Pipeline::new(
        Arc::clone(&cfg),
        PipelineOptions {
            threads,
            scores: false,
            keep_names: false,
        },
    )?;
    let resume = match cfg.checkpoint.file() {
        Some(path) => match crate::checkpoint::read(&path)? {
            Some(cp) => {
                pipeline.restore(cp.pipeline)?;
                tracing::info!(path = %path.display(), records = pipeline.stats().records, "resumed from checkpoint");
                Some(cp.source)
            }
            None => None,
        },
        None => None,
    };
    if resume.is_none() {
        if let Some(model) = &cfg.model {
            crate::cli::train::load_model(&mut pipeline, model)?;
            tracing::info!(model = %model.display(), "starting from a trained model");
        }
    }
    let checkpoint_every =
        humantime::parse_duration(&cfg.checkpoint.interval).unwrap_or(Duration::from_secs(30));
    crate::telemetry::set_checkpoint_policy(
        cfg.checkpoint.dir.as_ref().map(|_| checkpoint_every * 3),
    );
    if let Some(path) = &cfg.dead_letter.file {
        pipeline.set_dead_letters(Box::new(crate::sink::JsonLinesSink::create(path)?));
    }
    if let Some(topic) = &cfg.kafka.dead_letter_topic {
        let producer = crate::kafka::sink::TopicProducer::new(&cfg.kafka, topic)?;
        pipeline.set_dead_letters(Box::new(crate::kafka::sink::KafkaDeadLetterSink(producer)));
    }
    let alerts = Delivery::start(alert_sinks(&cfg)?, &cfg.delivery);
    let actions_topic = match &cfg.kafka.actions_topic {
        Some(topic) => Some(crate::kafka::sink::KafkaActionSink(
            crate::kafka::sink::TopicProducer::new(&cfg.kafka, topic)?,
        )),
        None => None,
    };
    let mut out = Outputs {
        alerts,
        response: if cfg.respond.enabled {
            Some(ResponseStage::new(&cfg.respond, None)?)
        } else {
            None
        },
        actions_topic,
        sink_errors: 0,
    };
    let mut partition_states = match (&resume, cfg.source.kind.as_str()) {
        (resume, "kafka") => crate::kafka::state::PartitionStates::open(
            &cfg.kafka,
            resume.as_ref().map_or(&[][..], |r| &r.kafka[..]),
            cfg.baseline.warmup_windows,
        )?,
        _ => None,
    };
    let mut source = build_source(&cfg, resume)?;
    crate::telemetry::set_source_connected(true);
    let mut meter = crate::telemetry::PipelineMeter::new(&cfg.source.kind);
    let poll_interval =
        humantime::parse_duration(&cfg.source.poll_interval).unwrap_or(Duration::from_millis(250));
    let mut batch = LineBatch::new();
    tracing::info!(source = %cfg.source.kind, threads, "flowwarden running");
    let mut ended = false;
    let mut last_checkpoint = Instant::now();
    // Idle waits start short and double up to `poll_interval`: a busy followed file is picked up
    // within about a millisecond of a write (record-to-alert latency), an idle one costs a few
    // wake-ups per second.
    let mut idle_wait = MIN_IDLE_WAIT;
    while !signals.shutdown.load(Ordering::SeqCst) {
        if signals.reload.swap(false, Ordering::SeqCst) {
            match crate::config::Config::load_or_default(cfg_path.as_deref()) {
                Ok(new_cfg) => {
                    crate::telemetry::record_reload(true);
                    crate::telemetry::apply_log_config(&new_cfg.log);
                    pipeline.reconfigure(&new_cfg);
                    if let Some(stage) = &mut out.response {
                        if let Err(e) = stage.reload(&new_cfg.respond) {
                            tracing::error!(error = %format!("{e:#}"), "responder reload failed; keeping its old guardrails");
                        }
                    }
                    cfg = Arc::new(new_cfg);
                    tracing::info!("configuration reloaded (baselines kept)");
                }
                Err(e) => {
                    crate::telemetry::record_reload(false);
                    tracing::error!(error = %e, "reload failed; keeping the old configuration")
                }
            }
        }
        batch.clear();
        let poll = source.poll_batch(&mut batch, cfg.input.batch_lines, cfg.input.batch_bytes)?;
        // A partition taken over from another daemon brings its workloads' state before its lines.
        let changes = source.take_assignment_changes();
        if let Some(states) = &mut partition_states {
            states.on_assignment(&changes, &mut pipeline);
        }
        if !batch.is_empty() {
            let raised = pipeline.push(&batch)?;
            out.deliver(&raised, pipeline.watermark());
            meter.observe(&pipeline.stats());
            source.batch_done();
        }
        if last_checkpoint.elapsed() >= checkpoint_every {
            out.flush_actions();
            // A checkpoint covers the alerts raised so far: wait until the sinks have them (during
            // a sink fault this holds the loop, which is the back-pressure anyway).
            match out.alerts.wait_delivered(Some(&signals.shutdown)) {
                Ok(()) => {
                    let _ = checkpoint_or_count(
                        &cfg,
                        &pipeline,
                        &mut source,
                        partition_states.as_mut(),
                    );
                }
                Err(e) => tracing::warn!(pending = out.alerts.pending(), "checkpoint skipped: {e}"),
            }
            last_checkpoint = Instant::now();
        }
        match poll {
            Poll::End => {
                ended = true;
                break;
            }
            Poll::Idle if batch.is_empty() => {
                std::thread::sleep(idle_wait.min(poll_interval));
                idle_wait = (idle_wait * 2).min(poll_interval);
            }
            _ => idle_wait = MIN_IDLE_WAIT,
        }
    }
    crate::telemetry::set_shutting_down();
    if ended {
        let raised = pipeline.finish()?;
        out.deliver(&raised, pipeline.watermark());
    }
    out.flush_actions();
    // Blocks until the sinks have every alert; a sink still down when the shutdown bound runs out
    // ends the process through the watchdog, without a checkpoint, so a restart re-raises them.
    if let Err(e) = out.alerts.wait_delivered(None) {
        anyhow::bail!("not checkpointing: {e}");
    }
    // At the end of a finite input every window is closed; the checkpoint still records positions
    // so a restart does not re-read the input.
    checkpoint_or_count(&cfg, &pipeline, &mut source, partition_states.as_mut())?;
    let stats = pipeline.stats();
    let quarantines = out
        .response
        .as_ref()
        .map(|r| r.counts.clone())
        .unwrap_or_default();
    tracing::info!(
        records = stats.records,
        bad = stats.bad_records,
        late = stats.late_records,
        windows = stats.windows_closed,
        alerts = stats.alerts,
        early_alerts = stats.early_alerts,
        sink_errors = out.sink_errors,
        "flowwarden stopped"
    );
    if cfg.source.kind == "simulate" {
        eprintln!("{}", demo_summary(&stats, &quarantines));
    }
    Ok(())
}

/// First wait after a source runs dry (see the run loop).
const MIN_IDLE_WAIT: Duration = Duration::from_millis(1);

/// The short summary the embedded demo ends with.
fn demo_summary(
    stats: &crate::pipeline::RunStats,
    decisions: &std::collections::BTreeMap<String, u64>,
) -> String {
    let mut s = format!(
        "\nflowwarden demo: {} simulated flow records, {} windows, {} alerts\n",
        stats.records, stats.windows_closed, stats.alerts
    );
    for (d, n) in &stats.alerts_by_detector {
        s.push_str(&format!("  {d:<14} {n} alert(s)\n"));
    }
    if !decisions.is_empty() {
        s.push_str("quarantine decisions (dry-run unless [respond] dry_run = false):\n");
        for (d, n) in decisions {
            s.push_str(&format!("  {d:<14} {n}\n"));
        }
    }
    s
}
