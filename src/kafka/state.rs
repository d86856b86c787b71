//! The compacted state topic of scale-out: one message per input partition (key = the partition
//! number) holding that partition's pipeline state, so a partition that moves to another daemon in
//! the group takes its baselines with it.
//!
//! Which workloads belong to a partition follows from the producer's keying: input messages are
//! keyed by source workload and librdkafka's default partitioner puts key `k` on partition
//! `crc32(k) % partitions` ([`partition_of`]). [`StateTopic`] moves opaque bytes;
//! [`PartitionStates`] is what the daemon calls: it writes each owned partition's pipeline slice at
//! every checkpoint and merges a slice when a partition arrives from another daemon, so the new
//! owner scores that partition's workloads against their history at once (no second warm-up).

use crate::kafka::produce::ensure_topic;
use crate::kafka::sink::TopicProducer;
use crate::kafka::source::KafkaConfig;
use crate::kafka::source::{AssignmentChange, PartitionOffset};
use crate::pipeline::{Pipeline, PipelineSnapshot};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The input partition librdkafka's default (`consistent_random`) partitioner picks for a
/// non-empty key.
pub fn partition_of(key: &str, partitions: i32) -> i32 {
    let mut crc = flate2::Crc::new();
    crc.update(key.as_bytes());
    (crc.sum() % partitions.max(1) as u32) as i32
}

/// Reader and writer of the state topic.
pub struct StateTopic {
    cfg: KafkaConfig,
    producer: TopicProducer,
}

impl StateTopic {
    /// Opens (creating it compacted if missing) the state topic.
    pub fn open(cfg: &KafkaConfig, topic: &str) -> anyhow::Result<Self> {
        ensure_topic(cfg, topic, 1, 1, true)?;
        Ok(StateTopic {
            cfg: cfg.clone(),
            producer: TopicProducer::new(cfg, topic)?,
        })
    }

    /// Writes one partition's state and waits until it is delivered.
    pub fn put(&mut self, input_partition: i32, state: &[u8]) -> anyhow::Result<()> {
        self.producer
            .send_bytes(input_partition.to_string().as_bytes(), state)?;
        self.producer.flush()
    }

    /// The latest state of each of `input_partitions` (reads the topic to its end).
    pub fn load(&self, input_partitions: &[i32]) -> anyhow::Result<BTreeMap<i32, Vec<u8>>> {
        let topic = self.producer.topic();
        let wanted: BTreeSet<i32> = input_partitions.iter().copied().collect();
        let consumer: BaseConsumer = self
            .cfg
            .client_config()
            .set("group.id", format!("{}-state-reader", self.cfg.group_id))
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| anyhow::anyhow!("kafka state reader: {e}"))?;
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| anyhow::anyhow!("state topic {topic} metadata: {e}"))?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in &parts {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let mut eof = BTreeSet::new();
        let mut latest = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while eof.len() < parts.len() {
            if Instant::now() > deadline {
                anyhow::bail!("state topic {topic} could not be read to its end in 60s");
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let key = std::str::from_utf8(m.key().unwrap_or_default())
                        .ok()
                        .and_then(|k| k.parse::<i32>().ok());
                    if let Some(k) = key.filter(|k| wanted.contains(k)) {
                        latest.insert(k, m.payload().unwrap_or_default().to_vec());
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    eof.insert(p);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "state topic read"),
                None => {}
            }
        }
        Ok(latest)
    }
}

/// The partition key of a registered workload: what `flowwarden produce` keys its records by
/// (`<namespace>/<name_aggr>`, `-` for a missing part).
pub fn source_key(info: &crate::flow::WorkloadInfo) -> String {
    let part = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    format!("{}/{}", part(&info.namespace), part(&info.name_aggr))
}

/// One message of the state topic: a partition's slice and the input offset it covers.
#[derive(Serialize, Deserialize)]
struct PartitionState {
    /// Next input offset of the partition when the slice was taken.
    next_offset: i64,
    /// Registry entries, open windows and baselines of the partition's workloads.
    slice: PipelineSnapshot,
}

fn encode(state: &PartitionState) -> anyhow::Result<Vec<u8>> {
    let raw = bincode::serialize(state)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw)?;
    Ok(gz.finish()?)
}

fn decode(bytes: &[u8]) -> anyhow::Result<PartitionState> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut raw)?;
    Ok(bincode::deserialize(&raw)?)
}

/// The daemon's side of the state topic (`[kafka] state_topic`, single input topic).
pub struct PartitionStates {
    topic: StateTopic,
    input_topic: String,
    input_partitions: i32,
    owned: BTreeSet<i32>,
    /// Input offset covered by the state this process holds per partition (its own last write, or
    /// the resumed checkpoint): a slice in the topic is merged only when it covers more.
    covered: BTreeMap<i32, i64>,
    warmup_windows: u64,
}

impl PartitionStates {
    /// `None` unless `[kafka] state_topic` is set. `resumed`: positions of the checkpoint the
    /// daemon restored (its state already covers them).
    pub fn open(
        cfg: &KafkaConfig,
        resumed: &[PartitionOffset],
        warmup_windows: u64,
    ) -> anyhow::Result<Option<Self>> {
        let Some(state_topic) = &cfg.state_topic else {
            return Ok(None);
        };
        let [input_topic] = cfg.topics.as_slice() else {
            anyhow::bail!("kafka.state_topic: per-partition state needs exactly one input topic in kafka.topics");
        };
        let topic = StateTopic::open(cfg, state_topic)?;
        let consumer: BaseConsumer = cfg
            .client_config()
            .create()
            .map_err(|e| anyhow::anyhow!("kafka metadata client: {e}"))?;
        let md = consumer
            .fetch_metadata(Some(input_topic), Duration::from_secs(10))
            .map_err(|e| anyhow::anyhow!("metadata of {input_topic}: {e}"))?;
        let input_partitions = md
            .topics()
            .iter()
            .find(|t| t.name() == input_topic)
            .map_or(0, |t| t.partitions().len() as i32);
        if input_partitions == 0 {
            anyhow::bail!(
                "kafka.state_topic: input topic {input_topic} has no partitions (create it first)"
            );
        }
        Ok(Some(PartitionStates {
            topic,
            input_topic: input_topic.clone(),
            input_partitions,
            owned: BTreeSet::new(),
            covered: resumed
                .iter()
                .filter(|p| &p.topic == input_topic)
                .map(|p| (p.partition, p.next_offset))
                .collect(),
            warmup_windows,
        }))
    }

    /// Applies partitions gained or lost: a gained partition whose slice in the topic covers more
    /// input than this process holds (another daemon owned it) is merged into `pipeline`. Call it
    /// before pushing the batch that came with the change. Failures are logged: the partition then
    /// warms up again.
    pub fn on_assignment(&mut self, changes: &[AssignmentChange], pipeline: &mut Pipeline) {
        let mut gained = Vec::new();
        for change in changes {
            match change {
                AssignmentChange::Assigned(t, p) if *t == self.input_topic => {
                    self.owned.insert(*p);
                    gained.push(*p);
                }
                AssignmentChange::Revoked(t, p) if *t == self.input_topic => {
                    self.owned.remove(p);
                }
                _ => {}
            }
        }
        gained.retain(|p| self.owned.contains(p));
        if gained.is_empty() {
            return;
        }
        let slices = match self.topic.load(&gained) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), partitions = ?gained, "cannot read partition state; those workloads warm up again");
                return;
            }
        };
        for (p, bytes) in slices {
            let state = match decode(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "unreadable partition state skipped");
                    continue;
                }
            };
            let held = self.covered.get(&p).copied().unwrap_or(-1);
            if state.next_offset <= held {
                tracing::debug!(partition = p, held, "partition state already current");
                continue;
            }
            let workloads = state.slice.registry.len();
            let baselines = state.slice.baselines.len();
            let warm = state
                .slice
                .baselines
                .iter()
                .filter(|(_, b)| b.windows_seen >= self.warmup_windows)
                .count();
            let max_windows_seen = state
                .slice
                .baselines
                .iter()
                .map(|(_, b)| b.windows_seen)
                .max()
                .unwrap_or(0);
            match pipeline.merge_snapshot(state.slice) {
                Ok(()) => {
                    self.covered.insert(p, state.next_offset);
                    tracing::info!(
                        partition = p,
                        next_offset = state.next_offset,
                        workloads,
                        baselines,
                        warm_baselines = warm,
                        max_windows_seen,
                        "partition state restored"
                    );
                }
                Err(e) => tracing::error!(partition = p, error = %e, "partition state not merged"),
            }
        }
    }

    /// Writes the slice of every owned partition that has a position in `positions` (the
    /// checkpoint's). Call it after the checkpoint is durable and before offsets are committed.
    pub fn on_checkpoint(
        &mut self,
        pipeline: &Pipeline,
        positions: &[PartitionOffset],
    ) -> anyhow::Result<()> {
        for pos in positions.iter().filter(|p| p.topic == self.input_topic) {
            if !self.owned.contains(&pos.partition)
                || self.covered.get(&pos.partition) == Some(&pos.next_offset)
            {
                continue;
            }
            let n = self.input_partitions;
            let p = pos.partition;
            let slice =
                pipeline.snapshot_filtered(&|_, info| partition_of(&source_key(info), n) == p);
            let bytes = encode(&PartitionState {
                next_offset: pos.next_offset,
                slice,
            })?;
            self.topic.put(p, &bytes)?;
            self.covered.insert(p, pos.next_offset);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;

    #[test]
    fn partition_of_matches_librdkafkas_default_partitioner_and_state_reads_back_latest() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("in", 3, 1).expect("topic");
        cluster.create_topic("state", 1, 1).expect("topic");
        let cfg = KafkaConfig {
            bootstrap_servers: cluster.bootstrap_servers(),
            ..KafkaConfig::default()
        };
        let mut p = TopicProducer::new(&cfg, "in").expect("producer");
        let keys: Vec<String> = (0..24).map(|i| format!("ns-{i}/web-{i}-*")).collect();
        for k in &keys {
            p.send_bytes(k.as_bytes(), b"{}").expect("send");
        }
        p.flush().expect("flush");
        let consumer: BaseConsumer = cfg
            .client_config()
            .set("group.id", "t")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&["in"]).expect("subscribe");
        let (mut seen, deadline) = (0, Instant::now() + Duration::from_secs(20));
        while seen < keys.len() && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let k = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                assert_eq!(partition_of(&k, 3), m.partition(), "{k}");
                seen += 1;
            }
        }
        assert_eq!(seen, keys.len());

        let mut state = StateTopic::open(&cfg, "state").expect("state topic");
        state.put(0, b"old").expect("put");
        state.put(2, b"two").expect("put");
        state.put(0, b"new").expect("put");
        let got = state.load(&[0, 1]).expect("load");
        assert_eq!(got, BTreeMap::from([(0, b"new".to_vec())]));
    }
}
