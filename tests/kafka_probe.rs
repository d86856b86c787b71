//! What the tansu broker supports, checked once: admin create_topics, keyed produce, a consumer
//! group with offset commits read back, and a compacted topic. The other Kafka tests rely on these.

mod kafka_support;

use kafka_support::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

#[test]
fn tansu_supports_topics_groups_commits_and_compaction() {
    let Some(broker) = broker_or_skip("tansu_supports_topics_groups_commits_and_compaction") else {
        return;
    };
    let brokers = broker.brokers();
    create_topic(&brokers, "probe", 3);
    let cfg = flowwarden::kafka::KafkaConfig {
        bootstrap_servers: brokers.clone(),
        ..Default::default()
    };
    flowwarden::kafka::produce::ensure_topic(&cfg, "probe-state", 1, 1, true)
        .expect("compacted topic");
    // Creating an existing topic is not an error.
    flowwarden::kafka::produce::ensure_topic(&cfg, "probe", 3, 1, false)
        .expect("idempotent create");

    let mut producer =
        flowwarden::kafka::sink::TopicProducer::new(&cfg, "probe").expect("producer");
    for i in 0..30 {
        producer
            .send_bytes(
                format!("k{}", i % 5).as_bytes(),
                format!("{{\"n\":{i}}}").as_bytes(),
            )
            .expect("send");
    }
    producer.flush().expect("flush");
    let msgs = read_topic(&brokers, "probe");
    assert_eq!(msgs.len(), 30);
    let partitions: std::collections::BTreeSet<i32> = msgs.iter().map(|m| m.0).collect();
    assert!(
        partitions.len() > 1,
        "keys spread over partitions: {partitions:?}"
    );

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "probe-group")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["probe"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = 0;
    while got < 30 && Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            got += 1;
        }
    }
    assert_eq!(got, 30, "group consumer reads everything");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("probe", 0, Offset::Offset(1))
        .expect("tpl");
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(consumer);
    assert_eq!(
        committed_total(&brokers, "probe-group", "probe", 1),
        1,
        "committed offset read back"
    );
}
