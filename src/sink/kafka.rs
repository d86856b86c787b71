//! Kafka sinks: alerts, actions and dead letters as JSON messages on topics.
//!
//! One idempotent producer (`enable.idempotence=true`, `acks=all`) per sink; messages are keyed
//! (alerts and actions by workload, dead letters by source) so one key's messages stay in order on
//! one partition. librdkafka retries deliveries itself; a message it finally gives up on is re-sent
//! up to `delivery_retries` times by [`TopicProducer::flush`], then queued once more and reported as
//! an error (logged, counted in `flowwarden_sink_errors_total{sink="kafka"}`); the next flush waits
//! for it again, so nothing is dropped while the broker is away. `flush` blocks until
//! every delivery is settled: the daemon checkpoints only after it, so alerts before a checkpoint
//! are delivered, and a slow broker back-pressures the (synchronous) daemon loop.

use crate::alert::Alert;
use crate::kafka::source::KafkaConfig;
use crate::sink::{AlertSink, DeadLetter, DeadLetterSink};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A message librdkafka could not deliver, kept for a re-send.
#[derive(Debug, Clone)]
struct Failed {
    key: Vec<u8>,
    payload: Vec<u8>,
    error: String,
}

/// Collects failed deliveries (the callback runs on librdkafka's polling thread).
#[derive(Default)]
pub struct DeliveryTracker {
    failed: Mutex<Vec<Failed>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, msg)) = result {
            if let Ok(mut f) = self.failed.lock() {
                f.push(Failed {
                    key: msg.key().unwrap_or_default().to_vec(),
                    payload: msg.payload().unwrap_or_default().to_vec(),
                    error: e.to_string(),
                });
            }
        }
    }
}

/// A keyed JSON producer for one topic.
pub struct TopicProducer {
    producer: ThreadedProducer<DeliveryTracker>,
    context: Arc<DeliveryTracker>,
    topic: String,
    retries: u32,
    buf: Vec<u8>,
}

impl TopicProducer {
    /// An idempotent producer writing to `topic`.
    pub fn new(cfg: &KafkaConfig, topic: &str) -> anyhow::Result<Self> {
        let mut client = cfg.client_config();
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5");
        // The pass-through table wins over our defaults.
        for (k, v) in &cfg.librdkafka {
            client.set(k, v);
        }
        let producer: ThreadedProducer<DeliveryTracker> = client
            .create_with_context(DeliveryTracker::default())
            .map_err(|e| {
                anyhow::anyhow!(
                    "kafka producer for topic {topic} at {}: {e}",
                    cfg.bootstrap_servers
                )
            })?;
        let context = Arc::clone(producer.context());
        Ok(TopicProducer {
            producer,
            context,
            topic: topic.to_string(),
            retries: cfg.delivery_retries,
            buf: Vec::with_capacity(2048),
        })
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queues one value as JSON under `key`; waits while librdkafka's queue is full.
    pub fn send_json<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> anyhow::Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, value)?;
        let payload = std::mem::take(&mut self.buf);
        let r = self.send_bytes(key.as_bytes(), &payload);
        self.buf = payload;
        r
    }

    /// Queues raw bytes under `key`; waits while librdkafka's queue is full.
    pub fn send_bytes(&self, key: &[u8], payload: &[u8]) -> anyhow::Result<()> {
        loop {
            let record = BaseRecord::to(&self.topic).key(key).payload(payload);
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // Back-pressure: wait for deliveries to drain the queue.
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    metrics::counter!("flowwarden_sink_errors_total", "sink" => "kafka")
                        .increment(1);
                    anyhow::bail!("kafka send to {}: {e}", self.topic);
                }
            }
        }
    }

    /// Queues a prepared record (tests and tools that pick the partition themselves).
    pub fn send_record<K, P>(&self, record: BaseRecord<'_, K, P>) -> anyhow::Result<()>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        self.producer
            .send(record)
            .map_err(|(e, _)| anyhow::anyhow!("kafka send to {}: {e}", self.topic))
    }

    /// Waits until every queued message is delivered; re-sends failures up to `delivery_retries`
    /// times, then returns an error naming how many were lost.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        let mut attempt = 0;
        loop {
            // librdkafka bounds each delivery by `delivery.timeout.ms`, so this returns.
            while let Err(e) = self.producer.flush(Duration::from_secs(30)) {
                tracing::warn!(topic = %self.topic, error = %e, "kafka flush still waiting for deliveries");
            }
            let failed = match self.context.failed.lock() {
                Ok(mut f) => std::mem::take(&mut *f),
                Err(_) => anyhow::bail!("kafka delivery tracker poisoned"),
            };
            if failed.is_empty() {
                return Ok(());
            }
            metrics::counter!("flowwarden_sink_errors_total", "sink" => "kafka")
                .increment(failed.len() as u64);
            tracing::warn!(topic = %self.topic, failed = failed.len(), attempt, error = %failed[0].error, "kafka deliveries failed");
            attempt += 1;
            for f in &failed {
                self.send_bytes(&f.key, &f.payload)?;
            }
            if attempt > self.retries {
                // Queued again, not dropped: the caller's next flush waits for them (the daemon's
                // delivery layer retries the flush with backoff until the broker takes them).
                anyhow::bail!(
                    "{} message(s) to kafka topic {} not delivered after {} re-sends ({}); queued again",
                    failed.len(),
                    self.topic,
                    self.retries,
                    failed[0].error
                );
            }
        }
    }
}

/// Alerts to a topic, keyed by the alert's workload.
pub struct KafkaAlertSink(pub TopicProducer);

impl AlertSink for KafkaAlertSink {
    fn send(&mut self, alert: &Alert) -> anyhow::Result<()> {
        let key = alert.workload.clone();
        self.0.send_json(&key, alert)
    }
    fn flush(&mut self) -> anyhow::Result<()> {
        self.0.flush()
    }
}

/// Dead letters to a topic, keyed by their source.
pub struct KafkaDeadLetterSink(pub TopicProducer);

impl DeadLetterSink for KafkaDeadLetterSink {
    fn send(&mut self, dl: &DeadLetter) -> anyhow::Result<()> {
        let key = dl.source.clone();
        self.0.send_json(&key, dl)
    }
    fn flush(&mut self) -> anyhow::Result<()> {
        self.0.flush()
    }
}

/// Responder actions (any JSON value) to a topic, keyed by workload.
pub struct KafkaActionSink(pub TopicProducer);

impl KafkaActionSink {
    /// Sends one action.
    pub fn send<T: Serialize + ?Sized>(
        &mut self,
        workload: &str,
        action: &T,
    ) -> anyhow::Result<()> {
        self.0.send_json(workload, action)
    }
    /// Waits for every delivery.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::MockCluster;

    #[test]
    fn values_are_delivered_keyed_and_flush_waits_for_them() {
        let cluster = match MockCluster::new(1) {
            Ok(c) => c,
            Err(e) => panic!("mock cluster: {e}"),
        };
        cluster.create_topic("actions", 3, 1).expect("topic");
        let cfg = KafkaConfig {
            bootstrap_servers: cluster.bootstrap_servers(),
            ..KafkaConfig::default()
        };
        let mut sink = KafkaActionSink(TopicProducer::new(&cfg, "actions").expect("producer"));
        for i in 0..20 {
            sink.send(&format!("ns/w{}", i % 4), &serde_json::json!({"n": i}))
                .expect("send");
        }
        sink.flush().expect("flush");
        let consumer: BaseConsumer = cfg
            .client_config()
            .set("group.id", "t")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&["actions"]).expect("subscribe");
        let mut by_key: std::collections::BTreeMap<String, (i32, Vec<i64>)> = Default::default();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut got = 0;
        while got < 20 && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                let v: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).expect("json");
                let e = by_key.entry(key).or_insert((m.partition(), Vec::new()));
                assert_eq!(e.0, m.partition(), "one key, one partition");
                e.1.push(v["n"].as_i64().unwrap_or(-1));
                got += 1;
            }
        }
        assert_eq!(got, 20);
        for (_, (_, ns)) in by_key {
            assert!(
                ns.windows(2).all(|w| w[0] < w[1]),
                "per-key order kept: {ns:?}"
            );
        }
    }
}
