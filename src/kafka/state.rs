//! The compacted state topic of scale-out: one message per input partition (key = the partition
//! number) holding that partition's pipeline state, so a partition that moves to another daemon in
//! the group takes its baselines with it.
//!
//! Which workloads belong to a partition follows from the producer's keying: input messages are
//! keyed by source workload and librdkafka's default partitioner puts key `k` on partition
//! `crc32(k) % partitions` ([`partition_of`]). The state bytes are opaque here; the pipeline owns
//! their format.

use crate::kafka::produce::ensure_topic;
use crate::kafka::sink::TopicProducer;
use crate::kafka::source::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
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
