//! The daemon loop behind `flowwarden run`: builds the configured source, feeds the pipeline, delivers
//! alerts, and handles signals (SIGTERM/SIGINT: stop consuming, flush, exit 0; SIGHUP: reload).
//!
//! Sources are built here from `[source] kind`; each kind's implementation lives in `src/source/`.

use crate::config::Config;
use crate::pipeline::{Pipeline, PipelineOptions};
use crate::sink::AlertSink;
use crate::source::{open_inputs, FileSourceOptions, LineBatch, LineSource, Poll};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// Builds the source named by `[source] kind`.
pub fn build_source(cfg: &Config) -> anyhow::Result<Box<dyn LineSource>> {
    let poll_interval =
        humantime::parse_duration(&cfg.source.poll_interval).unwrap_or(Duration::from_millis(250));
    let file_opts = FileSourceOptions {
        follow: cfg.source.follow,
        poll_interval,
        max_line_bytes: cfg.input.max_line_bytes,
        resume: None,
    };
    match cfg.source.kind.as_str() {
        "file" => open_inputs(&cfg.source.paths, &file_opts),
        "stdin" => open_inputs(&["-".to_string()], &file_opts),
        "goldmane-http" => Ok(Box::new(
            crate::source::goldmane_http::GoldmaneHttpSource::start(
                &cfg.goldmane_http,
                cfg.input.max_line_bytes,
            )?,
        )),
        "kafka" => Ok(Box::new(crate::kafka::KafkaSource::new(&cfg.kafka, &[])?)),
        other => anyhow::bail!("source kind {other:?} is not available in this build"),
    }
}

/// Runs the daemon until the source ends or a shutdown signal arrives.
pub fn run(cfg_path: Option<PathBuf>, cfg: Config, signals: Signals) -> anyhow::Result<()> {
    let mut cfg = Arc::new(cfg);
    crate::telemetry::apply_log_config(&cfg.log);
    let _telemetry = crate::telemetry::start(&cfg.metrics)?;
    let bound = cfg.daemon.shutdown_bound();
    crate::telemetry::spawn_shutdown_watchdog(Arc::clone(&signals.shutdown), bound)?;
    let threads = cfg.effective_threads(None);
    let mut pipeline = Pipeline::new(
        Arc::clone(&cfg),
        PipelineOptions {
            threads,
            scores: false,
        },
    )?;
    if let Some(path) = &cfg.dead_letter.file {
        pipeline.set_dead_letters(Box::new(crate::sink::JsonLinesSink::create(path)?));
    }
    if let Some(topic) = &cfg.kafka.dead_letter_topic {
        let producer = crate::kafka::sink::TopicProducer::new(&cfg.kafka, topic)?;
        pipeline.set_dead_letters(Box::new(crate::kafka::sink::KafkaDeadLetterSink(producer)));
    }
    let mut sinks = crate::cli::replay::alert_sinks(&cfg, None)?;
    if let Some(topic) = &cfg.kafka.alerts_topic {
        let producer = crate::kafka::sink::TopicProducer::new(&cfg.kafka, topic)?;
        sinks.push(Box::new(crate::kafka::sink::KafkaAlertSink(producer)));
    }
    let mut source = build_source(&cfg)?;
    crate::telemetry::set_source_connected(true);
    let mut meter = crate::telemetry::PipelineMeter::new(&cfg.source.kind);
    let poll_interval =
        humantime::parse_duration(&cfg.source.poll_interval).unwrap_or(Duration::from_millis(250));
    let mut batch = LineBatch::new();
    tracing::info!(source = %cfg.source.kind, threads, "flowwarden running");
    let mut ended = false;
    while !signals.shutdown.load(Ordering::SeqCst) {
        if signals.reload.swap(false, Ordering::SeqCst) {
            match crate::config::Config::load_or_default(cfg_path.as_deref()) {
                Ok(new_cfg) => {
                    crate::telemetry::record_reload(true);
                    crate::telemetry::apply_log_config(&new_cfg.log);
                    pipeline.reconfigure(&new_cfg);
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
        let poll = source.poll_batch(&mut batch, cfg.input.batch_lines, 64 << 20)?;
        if !batch.is_empty() {
            for alert in pipeline.push(&batch)? {
                crate::telemetry::record_alert(&alert);
                sinks.send(&alert)?;
            }
            meter.observe(&pipeline.stats());
            sinks.flush()?;
            source.batch_done();
        }
        match poll {
            Poll::End => {
                ended = true;
                break;
            }
            Poll::Idle if batch.is_empty() => std::thread::sleep(poll_interval),
            _ => {}
        }
    }
    if ended {
        for alert in pipeline.finish()? {
            crate::telemetry::record_alert(&alert);
            sinks.send(&alert)?;
        }
    }
    sinks.flush()?;
    let stats = pipeline.stats();
    tracing::info!(
        records = stats.records,
        bad = stats.bad_records,
        alerts = stats.alerts,
        "flowwarden stopped"
    );
    Ok(())
}
