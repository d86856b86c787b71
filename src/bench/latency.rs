//! `flowwarden latency`: record-to-alert latency of the fast path, end to end through the real daemon.
//!
//! A writer feeds Calico flow-log lines at a set rate (simulated benign background traffic, its
//! timestamps rewritten to wall time) into a followed file or a Kafka topic, and every
//! `scan_every` injects a port scan from a fresh workload. The daemon (`flowwarden run`, a child
//! process with its own config) reads them like in production and prints alerts to stdout. The
//! latency of one scan is the time from its crossing record (the one that reaches
//! `distinct_denied_ports`) becoming readable — its file write returned, or the broker acknowledged
//! it — to the early alert for that workload arriving on the daemon's stdout, so it includes the
//! source's polling (and the broker's fetch), decode, aggregation, the alert's JSON and the pipe.

use crate::bench::Percentiles;
use crate::config::Config;
use crate::simulate::{SimConfig, Simulator};
use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the records go.
#[derive(Debug, Clone)]
pub enum Via {
    /// A file the daemon follows (`[source] follow = true`).
    File,
    /// A Kafka topic the daemon consumes in a consumer group.
    Kafka {
        /// Bootstrap servers.
        brokers: String,
        /// Topic (created when missing, one partition).
        topic: String,
        /// Producer `linger.ms`.
        linger_ms: u32,
        /// Consumer `fetch.wait.max.ms` (how long the broker may hold a fetch).
        fetch_wait_ms: u32,
    },
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    /// Source the daemon reads.
    pub via: Via,
    /// Records per second written.
    pub rate: u64,
    /// How long to write.
    pub duration: Duration,
    /// One injected scan per this interval.
    pub scan_every: Duration,
    /// Daemon worker threads.
    pub threads: usize,
    /// Seed of the background traffic.
    pub seed: u64,
    /// Grow the simulated cluster to about this many workloads.
    pub workloads: Option<usize>,
}

/// The result (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// `file` or `kafka`.
    pub via: String,
    /// Target records per second.
    pub rate: u64,
    /// Records written.
    pub records_written: u64,
    /// Records per second actually written.
    pub achieved_rate: f64,
    /// Scans injected.
    pub scans: u64,
    /// Scans whose early alert arrived.
    pub scans_alerted: u64,
    /// Crossing record readable (file write returned, or broker acknowledged) → early alert on the
    /// daemon's stdout, in µs. For Kafka a lower bound: the alert may beat the acknowledgement.
    pub latency_us: Percentiles,
    /// Crossing record handed to the file or the producer → early alert, in µs. For Kafka an upper
    /// bound: it includes the producer's batching and the broker's append.
    pub from_handover_us: Percentiles,
    /// Early alerts of other workloads (background traffic crossing a threshold).
    pub other_early_alerts: u64,
    /// The five slowest scans: (seconds into the run the crossing record was written, latency µs),
    /// to line spikes up with window closes.
    pub slowest: Vec<(f64, u64)>,
}

/// Namespace of the injected scanners (the background never uses it).
const SCANNER_NAMESPACE: &str = "latency-probe";

/// Runs one measurement; `exe` is the flowwarden binary to start as the daemon.
pub fn run(exe: &Path, opts: &LatencyOptions) -> anyhow::Result<LatencyReport> {
    anyhow::ensure!(opts.rate > 0, "--rate must be positive");
    let dir = std::env::temp_dir().join(format!("flowwarden-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let background = background_lines(opts.seed, opts.workloads)?;
    let threshold = Config::default().detect.port_scan.distinct_denied_ports;
    let flows = dir.join("flows.log");
    std::fs::File::create(&flows).with_context(|| format!("creating {}", flows.display()))?;
    let config = dir.join("flowwarden.toml");
    std::fs::write(&config, daemon_config(opts, &flows))?;
    let mut sink = match &opts.via {
        Via::File => Sink::File(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&flows)
                .with_context(|| format!("opening {}", flows.display()))?,
        ),
        Via::Kafka {
            brokers,
            topic,
            linger_ms,
            ..
        } => {
            let mut kcfg = crate::kafka::KafkaConfig {
                bootstrap_servers: brokers.clone(),
                ..Default::default()
            };
            crate::kafka::produce::ensure_topic(&kcfg, topic, 1, 1, false)?;
            kcfg.librdkafka
                .0
                .insert("linger.ms".into(), linger_ms.to_string());
            Sink::Kafka(crate::kafka::sink::TopicProducer::new(&kcfg, topic)?)
        }
    };
    let mut daemon = Daemon::start(exe, &config)?;
    // Let the daemon open its source (and join the group) before the clock starts.
    daemon.wait_ready(Duration::from_secs(30))?;

    let started = Instant::now();
    let mut written = 0u64;
    let mut scans = 0u64;
    let mut next_scan = started + opts.scan_every;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut bg = background.iter().cycle();
    while started.elapsed() < opts.duration {
        let now_s = wall_clock_s();
        let due = (started.elapsed().as_secs_f64() * opts.rate as f64) as u64;
        buf.clear();
        let mut lines = Vec::new();
        while written + (lines.len() as u64) < due {
            let Some(line) = bg.next() else { break };
            let mut l = Vec::with_capacity(line.len() + 16);
            retime(line, now_s, &mut l);
            lines.push(l);
        }
        let mut crossing = None;
        if Instant::now() >= next_scan {
            scans += 1;
            next_scan += opts.scan_every;
            let name = format!("scanner-{scans}");
            for port in 1..=threshold {
                lines.push(scan_line(&name, port as u16, now_s).into_bytes());
            }
            crossing = Some(name);
        }
        if !lines.is_empty() {
            written += lines.len() as u64;
            let enqueued = Instant::now();
            sink.write(&lines, &mut buf)?;
            if let Some(name) = crossing {
                // The crossing record counts as arrived once it is readable: written to the file,
                // or acknowledged by the broker (so the producer's own batching is not counted).
                sink.settle()?;
                daemon.expect(name, enqueued, Instant::now());
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let writing = started.elapsed();
    sink.finish()?;
    // Give the last scans time to come through, then stop the daemon.
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.alerted() < scans && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let measured = daemon.stop()?;
    let mut slowest: Vec<(f64, u64)> = measured
        .samples
        .iter()
        .map(|(at, us)| (at.saturating_duration_since(started).as_secs_f64(), *us))
        .collect();
    slowest.sort_by_key(|s| std::cmp::Reverse(s.1));
    slowest.truncate(5);
    let _ = std::fs::remove_dir_all(&dir);
    let histogram = |values: &[u64]| -> anyhow::Result<Percentiles> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        for us in values {
            h.saturating_record(*us);
        }
        Ok(Percentiles::of(&h))
    };
    Ok(LatencyReport {
        via: match opts.via {
            Via::File => "file".into(),
            Via::Kafka { .. } => "kafka".into(),
        },
        rate: opts.rate,
        records_written: written,
        achieved_rate: written as f64 / writing.as_secs_f64().max(1e-9),
        scans,
        scans_alerted: measured.samples.len() as u64,
        latency_us: histogram(
            &measured
                .samples
                .iter()
                .map(|(_, us)| *us)
                .collect::<Vec<_>>(),
        )?,
        from_handover_us: histogram(&measured.from_enqueue_us)?,
        other_early_alerts: measured.other,
        slowest,
    })
}

/// Benign background lines from the simulator (no attacks), in Calico format.
fn background_lines(seed: u64, workloads: Option<usize>) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut sim = Simulator::try_new(SimConfig {
        seed,
        duration_s: 6 * 3600,
        workloads,
        attacks: Vec::new(),
        surprises: false,
        ..SimConfig::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut text = Vec::new();
    let mut lines = Vec::new();
    while sim.next_window(&mut text, None) {
        lines.extend(
            text.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
        text.clear();
        if lines.len() >= 200_000 {
            break;
        }
    }
    anyhow::ensure!(!lines.is_empty(), "the simulator produced no lines");
    Ok(lines)
}

/// Copies `line` with its `start_time` / `end_time` replaced: the record ends now and covers the
/// last 10 seconds, as if Felix had just flushed it.
fn retime(line: &[u8], now_s: i64, out: &mut Vec<u8>) {
    let mut rest = line;
    for (key, value) in [
        (&b"\"start_time\":"[..], now_s - 10),
        (&b"\"end_time\":"[..], now_s),
    ] {
        let Some(at) = find(rest, key) else {
            out.extend_from_slice(rest);
            return;
        };
        let digits_at = at + key.len();
        let digits = rest[digits_at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        out.extend_from_slice(&rest[..digits_at]);
        out.extend_from_slice(value.to_string().as_bytes());
        rest = &rest[digits_at + digits..];
    }
    out.extend_from_slice(rest);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One denied probe of `port` from the injected scanner `name`.
fn scan_line(name: &str, port: u16, now_s: i64) -> String {
    format!(
        concat!(
            r#"{{"start_time":{start},"end_time":{end},"action":"deny","bytes_in":0,"bytes_out":60,"#,
            r#""dest_ip":"10.9.0.1","dest_labels":{{"labels":["app=db"]}},"dest_name":"-","#,
            r#""dest_name_aggr":"db-*","dest_namespace":"storefront","dest_port":{port},"#,
            r#""dest_service_name":"-","dest_service_namespace":"-","dest_service_port":"-","#,
            r#""dest_type":"wep","num_flows":1,"num_flows_completed":1,"num_flows_started":1,"#,
            r#""packets_in":0,"packets_out":1,"policies":{{"all_policies":["0|__PROFILE__|__PROFILE__.kns.storefront|deny|0"]}},"#,
            r#""proto":"tcp","reporter":"src","source_ip":"10.9.1.7","#,
            r#""source_labels":{{"labels":["app=probe"]}},"source_name":"-","#,
            r#""source_name_aggr":"{name}-*","source_namespace":"{ns}","source_port":null,"#,
            r#""source_type":"wep"}}"#
        ),
        start = now_s - 10,
        end = now_s,
        port = port,
        name = name,
        ns = SCANNER_NAMESPACE,
    )
}

fn wall_clock_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The daemon's config: the source, a fixed 60 s window, alerts on stdout, nothing else on.
fn daemon_config(opts: &LatencyOptions, flows: &Path) -> String {
    let source = match &opts.via {
        Via::File => format!(
            "[source]\nkind = \"file\"\npaths = [{:?}]\nfollow = true\n",
            flows.display().to_string()
        ),
        Via::Kafka {
            brokers,
            topic,
            fetch_wait_ms,
            ..
        } => format!(
            concat!(
                "[source]\nkind = \"kafka\"\n\n[kafka]\nbootstrap_servers = {:?}\n",
                "topics = [{:?}]\ngroup_id = \"flowwarden-latency-{}\"\nstart = \"latest\"\n\n",
                "[kafka.librdkafka]\n\"fetch.wait.max.ms\" = \"{}\"\n"
            ),
            brokers,
            topic,
            std::process::id(),
            fetch_wait_ms
        ),
    };
    format!(
        concat!(
            "{source}\n[pipeline]\nthreads = {threads}\n\n[window]\nlength = \"60s\"\n",
            "allowed_lateness = \"10s\"\n\n[alerts]\nstdout = true\n\n[metrics]\nenabled = false\n\n",
            "[respond]\nenabled = false\n\n[log]\nlevel = \"info\"\n"
        ),
        source = source,
        threads = opts.threads.max(1),
    )
}

/// Where the writer puts lines.
enum Sink {
    File(std::fs::File),
    Kafka(crate::kafka::sink::TopicProducer),
}

impl Sink {
    fn write(&mut self, lines: &[Vec<u8>], buf: &mut Vec<u8>) -> anyhow::Result<()> {
        match self {
            Sink::File(f) => {
                for l in lines {
                    buf.extend_from_slice(l);
                    buf.push(b'\n');
                }
                f.write_all(buf)?;
                Ok(())
            }
            Sink::Kafka(p) => {
                for l in lines {
                    p.send_bytes(b"-", l)?;
                }
                Ok(())
            }
        }
    }

    /// Waits until what was written is readable by the daemon.
    fn settle(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::File(_) => Ok(()),
            Sink::Kafka(p) => p.flush(),
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::File(f) => Ok(f.flush()?),
            Sink::Kafka(p) => p.flush(),
        }
    }
}

/// Scans waiting for their alert, and the latencies measured.
#[derive(Default)]
struct Waiting {
    /// Scan → (its lines handed to the file or producer, readable by the daemon).
    sent: HashMap<String, (Instant, Instant)>,
    early: HashMap<String, Instant>,
    from_enqueue_us: Vec<u64>,
    /// (write instant, latency) per settled scan.
    samples: Vec<(Instant, u64)>,
    other: u64,
    ready: bool,
}

impl Waiting {
    fn settle(&mut self, name: &str) {
        if let (Some((enqueued, sent)), Some(seen)) = (self.sent.get(name), self.early.get(name)) {
            // An alert can arrive before the broker's acknowledgement reaches the writer: that
            // latency counts as 0 from "readable" and is still bounded by the one from the hand-over.
            let us = seen.saturating_duration_since(*sent).as_micros() as u64;
            self.from_enqueue_us
                .push(seen.saturating_duration_since(*enqueued).as_micros() as u64);
            self.samples.push((*sent, us));
            self.sent.remove(name);
        }
    }
}

/// What the reader measured.
struct Measured {
    from_enqueue_us: Vec<u64>,
    other: u64,
    samples: Vec<(Instant, u64)>,
}

/// The daemon child process and the thread reading its stdout.
struct Daemon {
    child: Child,
    waiting: Arc<Mutex<Waiting>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: PathBuf,
}

impl Daemon {
    fn start(exe: &Path, config: &Path) -> anyhow::Result<Self> {
        let stderr = config.with_file_name("daemon.err");
        let mut child = Command::new(exe)
            .args(["run", "--config"])
            .arg(config)
            .args(["--log-format", "json"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = child.stdout.take().context("daemon stdout")?;
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let w = Arc::clone(&waiting);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let seen = Instant::now();
                let Ok(alert) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if alert.get("provisional").and_then(|v| v.as_bool()) != Some(true) {
                    continue;
                }
                let ns = alert["source_namespace"].as_str().unwrap_or("");
                let name = alert["source_name_aggr"].as_str().unwrap_or("");
                let Ok(mut g) = w.lock() else { break };
                match name.strip_suffix("-*") {
                    Some(n) if ns == SCANNER_NAMESPACE => {
                        let n = n.to_string();
                        g.early.entry(n.clone()).or_insert(seen);
                        g.settle(&n);
                    }
                    _ => g.other += 1,
                }
            }
        });
        Ok(Daemon {
            child,
            waiting,
            reader: Some(reader),
            stderr,
        })
    }

    /// Waits until the daemon logs that it is running.
    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            if log.contains("flowwarden running") {
                // The consumer group assignment (Kafka) or the first poll (file) follows shortly.
                std::thread::sleep(Duration::from_secs(2));
                if let Ok(mut g) = self.waiting.lock() {
                    g.ready = true;
                }
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("the daemon exited ({status}) before it was ready:\n{log}");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the daemon was not ready after {timeout:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn expect(&self, name: String, enqueued: Instant, sent: Instant) {
        if let Ok(mut g) = self.waiting.lock() {
            g.sent.insert(name.clone(), (enqueued, sent));
            g.settle(&name);
        }
    }

    fn alerted(&self) -> u64 {
        self.waiting.lock().map_or(0, |g| g.samples.len() as u64)
    }

    fn stop(mut self) -> anyhow::Result<Measured> {
        // SIGTERM: the daemon flushes and exits 0.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let g = self
            .waiting
            .lock()
            .map_err(|_| anyhow::anyhow!("latency reader panicked"))?;
        Ok(Measured {
            from_enqueue_us: g.from_enqueue_us.clone(),
            other: g.other,
            samples: g.samples.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retime_replaces_both_timestamps_and_keeps_the_rest() {
        let line = br#"{"start_time":1700000000,"end_time":1700000300,"x":1}"#;
        let mut out = Vec::new();
        retime(line, 1800000000, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).expect("utf8"),
            r#"{"start_time":1799999990,"end_time":1800000000,"x":1}"#
        );
    }

    #[test]
    fn scan_lines_decode_as_denied_probes_of_the_scanner() {
        let mut dec = crate::flow::Decoder::default();
        let rec = dec
            .decode(scan_line("scanner-3", 22, 1800000000).as_bytes())
            .expect("decodes");
        assert_eq!(rec.dst.port, Some(22));
        assert_eq!(rec.action, crate::flow::Action::Deny);
        let info = crate::flow::WorkloadRegistry::global()
            .get(rec.src.id)
            .expect("registered");
        assert_eq!(info.namespace, SCANNER_NAMESPACE);
        assert_eq!(info.name_aggr, "scanner-3-*");
    }
}
