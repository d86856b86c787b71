//! `flowwarden produce`: send flow-log files (or stdin) to a Kafka topic, one message per line,
//! keyed by source workload so one workload's records share a partition.

use crate::kafka::produce::{ensure_topic, produce_lines};
use crate::kafka::sink::TopicProducer;
use std::io::BufRead;
use std::path::PathBuf;

/// `produce` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ProduceArgs {
    /// Input files (`-` for stdin; `.gz` read transparently).
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Topic to write to.
    #[arg(long)]
    pub topic: String,
    /// Partitions of the topic when it has to be created.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Replication factor when the topic has to be created.
    #[arg(long, default_value_t = 1)]
    pub replication: i32,
    /// Brokers (default: `[kafka] bootstrap_servers` of the config).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Config file (brokers, security, librdkafka properties from `[kafka]`).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs `produce`.
pub fn run(a: ProduceArgs) -> anyhow::Result<()> {
    let mut cfg = super::load_config(a.config.as_deref())?.kafka;
    if let Some(b) = a.brokers {
        cfg.bootstrap_servers = b;
    }
    ensure_topic(&cfg, &a.topic, a.partitions, a.replication, false)?;
    let mut producer = TopicProducer::new(&cfg, &a.topic)?;
    let (mut lines, mut unkeyed) = (0u64, 0u64);
    for input in &a.inputs {
        let mut reader: Box<dyn BufRead> = if input == "-" {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            let f = std::fs::File::open(input)
                .map_err(|e| anyhow::anyhow!("cannot open {input}: {e}"))?;
            if input.ends_with(".gz") {
                Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
                    f,
                )))
            } else {
                Box::new(std::io::BufReader::with_capacity(1 << 20, f))
            }
        };
        let s = produce_lines(&mut producer, &mut *reader)?;
        lines += s.lines;
        unkeyed += s.unkeyed;
    }
    tracing::info!(topic = %a.topic, lines, unkeyed, "produce finished");
    Ok(())
}
