//! Feeding flow logs into Kafka: the partition key of a flow line (its source workload, so one
//! workload's records share a partition and stay in order), topic creation through the admin API,
//! and a line producer used by `flowwarden produce` and tests.

use crate::kafka::sink::TopicProducer;
use crate::kafka::source::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;
use std::borrow::Cow;
use std::io::BufRead;

#[derive(Deserialize)]
struct GoldmaneKey<'a> {
    #[serde(borrow, default)]
    source_namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source_name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct KeyFields<'a> {
    #[serde(borrow, default)]
    source_namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source_name_aggr: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "Key")]
    key: Option<GoldmaneKey<'a>>,
}

/// The partition key of a flow line: `<source_namespace>/<source_name_aggr>` (Calico) or
/// `<Key.source_namespace>/<Key.source_name>` (Goldmane); `None` when the line is not such JSON.
pub fn workload_key(line: &[u8]) -> Option<String> {
    let f: KeyFields<'_> = serde_json::from_slice(line).ok()?;
    let (ns, name) = match f.key {
        Some(k) => (k.source_namespace, k.source_name),
        None => (f.source_namespace, f.source_name_aggr),
    };
    if ns.is_none() && name.is_none() {
        return None;
    }
    Some(format!(
        "{}/{}",
        ns.as_deref().unwrap_or("-"),
        name.as_deref().unwrap_or("-")
    ))
}

/// Creates `topic` with `partitions` partitions unless it exists. `compact` sets
/// `cleanup.policy=compact` (state topics).
pub fn ensure_topic(
    cfg: &KafkaConfig,
    topic: &str,
    partitions: i32,
    replication: i32,
    compact: bool,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = cfg
        .client_config()
        .create()
        .map_err(|e| anyhow::anyhow!("kafka admin client for {}: {e}", cfg.bootstrap_servers))?;
    // An existing topic is left alone (and brokers without the CreateTopics API still work).
    let timeout = std::time::Duration::from_secs(10);
    if let Ok(md) = admin.inner().fetch_metadata(Some(topic), timeout) {
        if md
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        {
            return Ok(());
        }
    }
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    if compact {
        new = new.set("cleanup.policy", "compact");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opts = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(30)));
    let results = rt
        .block_on(admin.create_topics([&new], &opts))
        .map_err(|e| anyhow::anyhow!("creating kafka topic {topic}: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating kafka topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Counters of one `produce` run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProduceStats {
    /// Lines sent.
    pub lines: u64,
    /// Lines that had no workload key (sent under the key `-`).
    pub unkeyed: u64,
}

/// Sends every non-empty line of `input` as one message keyed by its source workload, then waits
/// for all deliveries.
pub fn produce_lines(
    producer: &mut TopicProducer,
    input: &mut dyn BufRead,
) -> anyhow::Result<ProduceStats> {
    let mut stats = ProduceStats::default();
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        let key = workload_key(&line).unwrap_or_else(|| {
            stats.unkeyed += 1;
            "-".to_string()
        });
        producer.send_bytes(key.as_bytes(), &line)?;
        stats.lines += 1;
    }
    producer.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_source_workloads() {
        assert_eq!(
            workload_key(
                br#"{"source_namespace":"app","source_name_aggr":"web-7d-*","dest_port":80}"#
            )
            .as_deref(),
            Some("app/web-7d-*")
        );
        assert_eq!(
            workload_key(
                br#"{"Key":{"source_name":"client-*","source_namespace":"ns"},"start_time":1}"#
            )
            .as_deref(),
            Some("ns/client-*")
        );
        assert_eq!(
            workload_key(br#"{"source_name_aggr":"pub"}"#).as_deref(),
            Some("-/pub")
        );
        assert_eq!(workload_key(b"garbage"), None);
        assert_eq!(workload_key(b"{}"), None);
    }
}
