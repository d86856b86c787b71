//! The `flowwarden generate` command: arguments, output files (records, labels, episodes) and
//! real-time pacing (`--rate`).

use crate::simulate::{
    AttackKind, AttackSpec, Episode, LabelRow, OutputFormat, SimConfig, Simulator,
};
use anyhow::{bail, Context};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `flowwarden generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Random seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated time, e.g. `2d`, `6h`, `90m`.
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Epoch second of the first window (default 2025-06-02T00:00:00Z, a Monday).
    #[arg(long)]
    pub start: Option<i64>,
    /// Felix flush interval = each record's window (default 300s; 15s for --format goldmane).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub flush: Option<Duration>,
    /// Grow the storefront to about N workloads in many namespaces.
    #[arg(long, value_name = "N")]
    pub workloads: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Calico)]
    pub format: OutputFormat,
    /// Inject an attack: NAME[:start=6h,duration=30m,intensity=1.0,target=shop/cart,victim=ns/name]
    /// (repeatable). Names: port-scan, slow-port-scan, ip-sweep, lateral-movement, exfiltration,
    /// slow-exfiltration, c2-beacon, ddos, deny-surge, crypto-miner; policy changes (not in the
    /// default mix): policy-loosening, staged-default-deny.
    #[arg(long = "attack", value_name = "SPEC")]
    pub attack: Vec<AttackSpec>,
    /// `default` (every scenario once in the second half of the run; the default when neither
    /// --attack nor --no-attacks is given) or a comma-separated list of scenario names.
    #[arg(long, value_name = "MIX")]
    pub attacks: Option<String>,
    /// Benign traffic only.
    #[arg(long, conflicts_with_all = ["attack", "attacks"])]
    pub no_attacks: bool,
    /// Leave out the benign surprises (nightly batch, backup, new dependency, traffic spike).
    #[arg(long)]
    pub no_surprises: bool,
    /// Emit in real time at R records per second (for the daemon following a file).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Output file (`-` = stdout).
    #[arg(long, default_value = "-")]
    pub out: PathBuf,
    /// Write ground truth, one row per output line (line,label,attack_type,src_workload,dst_workload,start_time).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Write the injected episodes (scenario,attacker,victim,start,end).
    #[arg(long, value_name = "FILE")]
    pub episodes: Option<PathBuf>,
}

impl GenerateArgs {
    /// The simulator configuration these arguments ask for.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let flush = match self.flush {
            Some(d) => d.as_secs(),
            None if self.format == OutputFormat::Goldmane => 15,
            None => 300,
        };
        if flush == 0 {
            bail!("--flush must be at least 1s");
        }
        let mut attacks = self.attack.clone();
        match self.attacks.as_deref() {
            _ if self.no_attacks => attacks.clear(),
            Some("default") => attacks.extend(AttackSpec::default_mix()),
            Some("none") => {}
            Some(list) => {
                for name in list.split(',').filter(|s| !s.trim().is_empty()) {
                    let kind: AttackKind = name.parse()?;
                    attacks.push(AttackSpec::new(kind));
                }
            }
            None if attacks.is_empty() => attacks = AttackSpec::default_mix(),
            None => {}
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                bail!("--rate must be a positive number of records per second");
            }
        }
        Ok(SimConfig {
            seed: self.seed,
            duration_s: self.duration.as_secs().max(1),
            start: self.start.unwrap_or(crate::simulate::DEFAULT_START),
            flush_s: flush,
            workloads: self.workloads,
            format: self.format,
            attacks,
            surprises: !self.no_surprises,
            ..SimConfig::default()
        })
    }
}

fn create(path: &PathBuf, what: &str) -> anyhow::Result<BufWriter<File>> {
    let f = File::create(path)
        .with_context(|| format!("cannot create {what} file {}", path.display()))?;
    Ok(BufWriter::with_capacity(1 << 20, f))
}

/// Writes episodes as CSV (`scenario,attacker,victim,start,end`).
pub fn write_episodes(w: &mut impl Write, episodes: &[Episode]) -> std::io::Result<()> {
    writeln!(w, "scenario,attacker,victim,start,end")?;
    for e in episodes {
        writeln!(
            w,
            "{},{},{},{},{}",
            e.scenario, e.attacker, e.victim, e.start, e.end
        )?;
    }
    Ok(())
}

fn write_labels(w: &mut impl Write, first_line: u64, rows: &[LabelRow]) -> std::io::Result<()> {
    for (i, r) in rows.iter().enumerate() {
        writeln!(
            w,
            "{},{},{},{},{},{}",
            first_line + i as u64,
            u8::from(r.label),
            r.attack_type,
            r.src_workload,
            r.dst_workload,
            r.start_time
        )?;
    }
    Ok(())
}

/// Runs `flowwarden generate`.
pub fn run_generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let cfg = args.to_config()?;
    let mut sim = Simulator::try_new(cfg)?;
    if let Some(path) = &args.episodes {
        let mut w = create(path, "episodes")?;
        write_episodes(&mut w, sim.episodes())?;
        w.flush()?;
    }
    let mut labels_out = match &args.labels {
        Some(p) => {
            let mut w = create(p, "labels")?;
            writeln!(
                w,
                "line,label,attack_type,src_workload,dst_workload,start_time"
            )?;
            Some(w)
        }
        None => None,
    };
    let sink: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            File::create(&args.out)
                .with_context(|| format!("cannot create output file {}", args.out.display()))?,
        )
    };
    // Windows accumulate in `buf` and go to the sink in large writes: no second copy through a
    // BufWriter, no per-line syscalls.
    let mut out = sink;
    let mut buf = Vec::with_capacity(FLUSH_AT + (1 << 20));
    let mut rows = Vec::new();
    let mut line_no = 0u64;
    let started = Instant::now();
    let result = (|| -> std::io::Result<()> {
        let mut written = 0u64;
        loop {
            rows.clear();
            let want_labels = labels_out.is_some();
            let more = sim.next_window(&mut buf, want_labels.then_some(&mut rows));
            if let Some(w) = labels_out.as_mut() {
                write_labels(w, line_no, &rows)?;
            }
            line_no = sim.records();
            if args.rate.is_some() || buf.len() >= FLUSH_AT || !more {
                match args.rate {
                    Some(rate) => paced_write(&mut out, &buf, rate, started, written)?,
                    None => out.write_all(&buf)?,
                }
                written = line_no;
                buf.clear();
            }
            if !more {
                break;
            }
        }
        out.flush()?;
        if let Some(w) = labels_out.as_mut() {
            w.flush()?;
        }
        Ok(())
    })();
    match result {
        // A closed pipe (`generate | head`) is a normal way to stop.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("writing generated records"),
        Ok(()) => {
            tracing::info!(
                records = line_no,
                secs = started.elapsed().as_secs_f64(),
                "generated"
            );
            Ok(())
        }
    }
}

/// Output is written in pieces of about this many bytes.
const FLUSH_AT: usize = 8 << 20;

/// Writes `buf` line by line so that line k (counted from the run's start) is out at `k / rate`
/// seconds, flushing every chunk so a follower sees it.
fn paced_write(
    out: &mut impl Write,
    buf: &[u8],
    rate: f64,
    started: Instant,
    first: u64,
) -> std::io::Result<()> {
    let chunk = ((rate / 20.0) as usize).max(1);
    let mut line = first;
    let mut rest = buf;
    while !rest.is_empty() {
        let mut end = 0;
        let mut n = 0;
        for (i, &c) in rest.iter().enumerate() {
            if c == b'\n' {
                n += 1;
                end = i + 1;
                if n == chunk {
                    break;
                }
            }
        }
        if end == 0 {
            end = rest.len();
        }
        let due = started + Duration::from_secs_f64(line as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        out.write_all(&rest[..end])?;
        out.flush()?;
        line += n as u64;
        rest = &rest[end..];
    }
    Ok(())
}
