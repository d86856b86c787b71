//! Kafka source: a consumer in a consumer group whose partitions are merged in event-time order.
//!
//! The pipeline keeps one watermark, so handing it partition 0 entirely before partition 1 would
//! push the watermark ahead and turn partition 1's records late. [`EventTimeMerger`] buffers lines
//! per partition (bounded; a full partition is paused) and always emits the smallest head
//! `start_time`; a partition with nothing buffered holds emission back until it has data, reached
//! its end (`enable.partition.eof`) or has been idle for `idle_timeout`. A partition not heard from
//! since its assignment (no message, no end) is not idle but not fetched yet, and one known to lag
//! (its cached high watermark is past what it delivered) is never idle: its records are on their way,
//! and letting the others run ahead would make them late (a cut network link or a slow fetch would
//! otherwise change the alerts).
//!
//! Offsets are committed only in [`LineSource::checkpoint_done`], i.e. after the checkpoint that
//! covers them is durable; on a revoke, the consumer context commits synchronously what the last
//! durable checkpoint covers, so a partition's new owner resumes exactly there.
//! This module owns the `[kafka]` config section (shared with the Kafka sinks in `sink::kafka`).

use crate::secret::{Secret, SecretRef, REDACTED};
use crate::source::{LineBatch, LineSource, Poll, SourceCheckpoint};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `[kafka]`: brokers, security, the input topics and the output topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Input topics (`[source] kind = "kafka"`).
    pub topics: Vec<String>,
    /// Consumer group; daemons sharing it split the partitions.
    pub group_id: String,
    /// Where to start on a partition: `committed` (the group's committed offset, else the
    /// beginning), `earliest` or `latest` (ignore committed offsets).
    pub start: String,
    /// `security.protocol`: `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: Option<String>,
    /// `ssl.ca.location`: CA bundle used to verify the brokers.
    pub ssl_ca_location: Option<String>,
    /// `ssl.certificate.location`: client certificate (PEM) for mutual TLS.
    pub ssl_certificate_location: Option<String>,
    /// `ssl.key.location`: the client certificate's private key (PEM).
    pub ssl_key_location: Option<String>,
    /// `ssl.key.password`: the private key's passphrase. Printed as `***`.
    pub ssl_key_password: Option<Secret>,
    /// Read `ssl.key.password` from this file instead.
    pub ssl_key_password_file: Option<PathBuf>,
    /// Read `ssl.key.password` from this environment variable instead.
    pub ssl_key_password_env: Option<String>,
    /// `sasl.mechanism`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, ...
    pub sasl_mechanism: Option<String>,
    /// `sasl.username`.
    pub sasl_username: Option<String>,
    /// `sasl.password`. Printed as `***`; prefer `sasl_password_file` or `sasl_password_env`.
    pub sasl_password: Option<Secret>,
    /// Read `sasl.password` from this file instead (surrounding whitespace ignored).
    pub sasl_password_file: Option<PathBuf>,
    /// Read `sasl.password` from this environment variable instead.
    pub sasl_password_env: Option<String>,
    /// A partition with nothing buffered holds event-time merging back at most this long.
    pub idle_timeout: String,
    /// Lines buffered per partition before the partition is paused (back-pressure).
    pub max_buffered_lines: usize,
    /// End the daemon once every assigned partition has been read to its end (tests, backfills).
    pub stop_at_end: bool,
    /// Topic for alerts (JSON, keyed by workload). Unset = no Kafka alert output.
    pub alerts_topic: Option<String>,
    /// Topic for responder actions (JSON, keyed by workload).
    pub actions_topic: Option<String>,
    /// Topic for dead letters (JSON, keyed by source).
    pub dead_letter_topic: Option<String>,
    /// Compacted topic holding per-partition baseline state (key = input partition number).
    pub state_topic: Option<String>,
    /// Times a failed delivery is re-sent (after librdkafka's own retries) before it is an error.
    pub delivery_retries: u32,
    /// Extra librdkafka properties passed through verbatim (`"fetch.min.bytes" = "1"`). Values of
    /// secret-looking properties (`*password*`, `*secret*`, `*token*`, ...) print as `***`.
    pub librdkafka: LibrdkafkaProperties,
}

/// The `[kafka.librdkafka]` pass-through table. A map like any other, except that printing it
/// (`Debug`, `Serialize`: `check-config`, logs) hides the values of properties that hold secrets.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct LibrdkafkaProperties(pub BTreeMap<String, String>);

/// Whether a librdkafka property holds a secret (its value is never printed).
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "oauthbearer.config",
        "key.pem",
        "keystore",
    ]
    .iter()
    .any(|s| k.contains(s))
}

impl LibrdkafkaProperties {
    /// The properties with secret values replaced by `***`, for printing.
    fn redacted(&self) -> BTreeMap<&str, &str> {
        self.0
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_property(k) {
                    REDACTED
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect()
    }

    /// Iterates over (property, value).
    pub fn iter(&self) -> std::collections::btree_map::Iter<'_, String, String> {
        self.0.iter()
    }
}

impl std::fmt::Debug for LibrdkafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.redacted().fmt(f)
    }
}

impl Serialize for LibrdkafkaProperties {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(s)
    }
}

impl<'a> IntoIterator for &'a LibrdkafkaProperties {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<(String, String)> for LibrdkafkaProperties {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        LibrdkafkaProperties(iter.into_iter().collect())
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "localhost:9092".into(),
            topics: vec!["flows".into()],
            group_id: "flowwarden".into(),
            start: "committed".into(),
            security_protocol: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            ssl_key_password_file: None,
            ssl_key_password_env: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            sasl_password_file: None,
            sasl_password_env: None,
            idle_timeout: "2s".into(),
            max_buffered_lines: 50_000,
            stop_at_end: false,
            alerts_topic: None,
            actions_topic: None,
            dead_letter_topic: None,
            state_topic: None,
            delivery_retries: 3,
            librdkafka: LibrdkafkaProperties::default(),
        }
    }
}

impl KafkaConfig {
    /// Checks values; errors are `(key, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let key = |k: &str, m: String| (format!("kafka.{k}"), m);
        if !["committed", "earliest", "latest"].contains(&self.start.as_str()) {
            return Err(key(
                "start",
                format!("{:?} is not one of committed, earliest, latest", self.start),
            ));
        }
        humantime::parse_duration(&self.idle_timeout)
            .map_err(|e| key("idle_timeout", e.to_string()))?;
        if self.max_buffered_lines == 0 {
            return Err(key("max_buffered_lines", "must be at least 1".into()));
        }
        if self.bootstrap_servers.trim().is_empty() {
            return Err(key("bootstrap_servers", "must not be empty".into()));
        }
        if let Some(p) = &self.security_protocol {
            if !SECURITY_PROTOCOLS.contains(&p.to_ascii_lowercase().as_str()) {
                return Err(key(
                    "security_protocol",
                    format!("{p:?} is not one of {}", SECURITY_PROTOCOLS.join(", ")),
                ));
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return Err(key(
                "ssl_certificate_location",
                "ssl_certificate_location and ssl_key_location must be set together".into(),
            ));
        }
        for secret in self.secrets() {
            secret.validate().map_err(|e| (e.key, e.message))?;
        }
        Ok(())
    }

    /// The secrets of this section, each with its inline, `_file` and `_env` settings.
    pub fn secrets(&self) -> [SecretRef<'_>; 2] {
        [
            SecretRef::new(
                "kafka.sasl_password",
                self.sasl_password.as_ref(),
                self.sasl_password_file.as_ref(),
                self.sasl_password_env.as_ref(),
            ),
            SecretRef::new(
                "kafka.ssl_key_password",
                self.ssl_key_password.as_ref(),
                self.ssl_key_password_file.as_ref(),
                self.ssl_key_password_env.as_ref(),
            ),
        ]
    }

    /// The librdkafka properties this section sets, secrets read from their files or variables:
    /// brokers, security, then the `[kafka.librdkafka]` pass-through (last, so it can override
    /// anything). Errors name the key of a secret that cannot be read.
    pub fn client_properties(&self) -> Result<Vec<(String, String)>, crate::secret::SecretError> {
        let mut props = vec![(
            "bootstrap.servers".to_string(),
            self.bootstrap_servers.clone(),
        )];
        let plain = [
            ("security.protocol", &self.security_protocol),
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
            ("sasl.mechanism", &self.sasl_mechanism),
            ("sasl.username", &self.sasl_username),
        ];
        for (k, v) in plain {
            if let Some(v) = v {
                props.push((k.to_string(), v.clone()));
            }
        }
        let [sasl_password, ssl_key_password] = self.secrets();
        for (k, secret) in [
            ("sasl.password", sasl_password),
            ("ssl.key.password", ssl_key_password),
        ] {
            if let Some(v) = secret.resolve()? {
                props.push((k.to_string(), v.expose().to_string()));
            }
        }
        for (k, v) in &self.librdkafka {
            props.push((k.clone(), v.clone()));
        }
        Ok(props)
    }

    /// Client properties shared by consumers, producers and admin clients ([`Self::client_properties`]).
    /// A secret that cannot be read (checked when the config was loaded, so only if its file
    /// vanished since) is logged by key and left out, and the broker then refuses the login.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        let props = self.client_properties().unwrap_or_else(|e| {
            tracing::error!(key = %e.key, error = %e.message, "kafka secret unavailable");
            let mut without_secrets = self.clone();
            without_secrets.sasl_password = None;
            without_secrets.sasl_password_file = None;
            without_secrets.sasl_password_env = None;
            without_secrets.ssl_key_password = None;
            without_secrets.ssl_key_password_file = None;
            without_secrets.ssl_key_password_env = None;
            without_secrets.client_properties().unwrap_or_default()
        });
        for (k, v) in props {
            c.set(k, v);
        }
        c
    }

    fn idle_timeout(&self) -> Duration {
        humantime::parse_duration(&self.idle_timeout).unwrap_or(Duration::from_secs(2))
    }
}

/// `kafka.security_protocol` values librdkafka knows.
const SECURITY_PROTOCOLS: &[&str] = &["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];

/// Where a partition resumes: the next offset to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Next offset to read (one past the last message fully handed to the pipeline).
    pub next_offset: i64,
}

/// A topic partition.
pub type PartitionKey = (Arc<str>, i32);

/// Finds the top-level-ish `"start_time":<int>` in a JSON line without parsing it: the first
/// occurrence is taken (Calico and Goldmane lines both carry it at top level).
pub fn extract_start_time(line: &[u8]) -> Option<i64> {
    const NEEDLE: &[u8] = b"\"start_time\"";
    let pos = line.windows(NEEDLE.len()).position(|w| w == NEEDLE)?;
    let mut rest = line[pos + NEEDLE.len()..]
        .iter()
        .copied()
        .skip_while(|b| b.is_ascii_whitespace());
    if rest.next() != Some(b':') {
        return None;
    }
    let mut rest = rest.skip_while(|b| b.is_ascii_whitespace()).peekable();
    let negative = rest.peek() == Some(&b'-');
    if negative {
        rest.next();
    }
    let mut value: i64 = 0;
    let mut digits = 0;
    for b in rest {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
        digits += 1;
    }
    (digits > 0).then_some(if negative { -value } else { value })
}

/// One buffered line (or, with `line == None`, an empty message that only advances the offset).
#[derive(Debug)]
struct PendingLine {
    line: Option<Box<[u8]>>,
    start_time: Option<i64>,
    offset: i64,
    byte_offset: u64,
    last_of_message: bool,
}

#[derive(Debug)]
struct PartitionQueue {
    source: Arc<str>,
    lines: VecDeque<PendingLine>,
    eof: bool,
    last_message: Instant,
    paused: bool,
    next_offset: Option<i64>,
    /// One past the last message received (not necessarily emitted).
    received_to: Option<i64>,
    /// The broker's high watermark as last seen by the consumer (`None` = unknown).
    high_watermark: Option<i64>,
    /// A message or the end of the partition arrived since assignment: until then the partition
    /// is not idle, only not fetched yet (or unreachable).
    heard: bool,
}

/// Merges partitions in event-time order (pure logic, no Kafka: unit-testable).
#[derive(Debug)]
pub struct EventTimeMerger {
    partitions: BTreeMap<PartitionKey, PartitionQueue>,
    idle_timeout: Duration,
    buffered: usize,
}

impl EventTimeMerger {
    /// A merger holding emission back at most `idle_timeout` for an empty partition.
    pub fn new(idle_timeout: Duration) -> Self {
        EventTimeMerger {
            partitions: BTreeMap::new(),
            idle_timeout,
            buffered: 0,
        }
    }

    /// Starts tracking a partition (assignment). Its idle clock starts now.
    pub fn add_partition(&mut self, key: PartitionKey, now: Instant) {
        let source: Arc<str> = Arc::from(format!("kafka:{}/{}", key.0, key.1));
        self.partitions.entry(key).or_insert(PartitionQueue {
            source,
            lines: VecDeque::new(),
            eof: false,
            last_message: now,
            paused: false,
            next_offset: None,
            received_to: None,
            high_watermark: None,
            heard: false,
        });
    }

    /// Records where reading a just-assigned partition starts when that offset is known (a
    /// resume, or a partition given back by an eager rebalance): everything before it is
    /// processed, so the next checkpoint commits it even if no new message ever arrives. Without
    /// it an idle partition would keep the older offset its revoke committed, and its next owner
    /// would aggregate the lines in between twice.
    pub fn resume_at(&mut self, key: &PartitionKey, offset: i64) {
        if let Some(q) = self.partitions.get_mut(key) {
            q.next_offset.get_or_insert(offset);
        }
    }

    /// Stops tracking a partition (revoke), dropping what it buffered: the next owner re-reads it.
    pub fn remove_partition(&mut self, key: &PartitionKey) {
        if let Some(q) = self.partitions.remove(key) {
            self.buffered -= q.lines.len();
        }
    }

    /// Partitions tracked.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionKey> {
        self.partitions.keys()
    }

    /// Buffers one message, split into its newline-separated lines.
    pub fn push_message(&mut self, key: &PartitionKey, offset: i64, payload: &[u8], now: Instant) {
        if !self.partitions.contains_key(key) {
            self.add_partition(key.clone(), now);
        }
        let Some(q) = self.partitions.get_mut(key) else {
            return;
        };
        q.eof = false;
        q.last_message = now;
        q.received_to = Some(offset + 1);
        q.heard = true;
        let before = q.lines.len();
        let mut byte_offset = 0u64;
        let mut pieces = payload.split(|&b| b == b'\n').peekable();
        while let Some(piece) = pieces.next() {
            let this_offset = byte_offset;
            byte_offset += piece.len() as u64 + 1;
            // A trailing newline leaves one empty piece: not a line.
            if piece.is_empty() && pieces.peek().is_none() {
                break;
            }
            let piece = piece.strip_suffix(b"\r").unwrap_or(piece);
            q.lines.push_back(PendingLine {
                line: Some(piece.into()),
                start_time: extract_start_time(piece),
                offset,
                byte_offset: this_offset,
                last_of_message: false,
            });
        }
        let added = q.lines.len() > before;
        match q.lines.back_mut() {
            Some(last) if added => last.last_of_message = true,
            _ => q.lines.push_back(PendingLine {
                line: None,
                start_time: None,
                offset,
                byte_offset: 0,
                last_of_message: true,
            }),
        }
        self.buffered += q.lines.len() - before;
    }

    /// Records that a partition has been read to its current end.
    pub fn mark_eof(&mut self, key: &PartitionKey) {
        if let Some(q) = self.partitions.get_mut(key) {
            q.eof = true;
            q.heard = true;
        }
    }

    /// Records the partition's high watermark (from the consumer's cached fetch metadata).
    pub fn set_high_watermark(&mut self, key: &PartitionKey, high: i64) {
        if let Some(q) = self.partitions.get_mut(key) {
            q.high_watermark = (high >= 0).then_some(high);
        }
    }

    /// Lines buffered in one partition.
    pub fn buffered_in(&self, key: &PartitionKey) -> usize {
        self.partitions.get(key).map_or(0, |q| q.lines.len())
    }

    /// Lines buffered in all partitions.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Whether every tracked partition is at its end with nothing buffered (false when none tracked).
    pub fn all_at_end(&self) -> bool {
        !self.partitions.is_empty() && self.buffered == 0 && self.partitions.values().all(|q| q.eof)
    }

    /// Pause bookkeeping: partitions that crossed the high mark (to pause) or fell below half of it
    /// (to resume). Each is reported once per crossing.
    pub fn flow_control(&mut self, high: usize) -> (Vec<PartitionKey>, Vec<PartitionKey>) {
        let (mut pause, mut resume) = (Vec::new(), Vec::new());
        for (k, q) in &mut self.partitions {
            if !q.paused && q.lines.len() >= high {
                q.paused = true;
                pause.push(k.clone());
            } else if q.paused && q.lines.len() <= high / 2 {
                q.paused = false;
                resume.push(k.clone());
            }
        }
        (pause, resume)
    }

    /// Next offsets of partitions that handed at least one whole message to the pipeline.
    pub fn positions(&self) -> Vec<PartitionOffset> {
        self.partitions
            .iter()
            .filter_map(|((t, p), q)| {
                q.next_offset.map(|o| PartitionOffset {
                    topic: t.to_string(),
                    partition: *p,
                    next_offset: o,
                })
            })
            .collect()
    }

    /// Moves up to `max_lines` lines (about `max_bytes`) into `batch` in event-time order; returns
    /// how many. Stops when an empty partition that is neither at its end nor idle could still
    /// deliver an earlier record.
    pub fn emit(
        &mut self,
        batch: &mut LineBatch,
        max_lines: usize,
        max_bytes: usize,
        now: Instant,
    ) -> usize {
        let mut emitted = 0;
        let start_bytes = batch.data.len();
        while emitted < max_lines && batch.data.len() - start_bytes < max_bytes {
            let mut best: Option<(&PartitionKey, i64)> = None;
            let mut blocked = false;
            for (k, q) in &self.partitions {
                match q.lines.front() {
                    // A line without start_time goes through at once: the pipeline dead-letters it.
                    Some(head) => {
                        let t = head.start_time.unwrap_or(i64::MIN);
                        if best.is_none_or(|(_, b)| t < b) {
                            best = Some((k, t));
                        }
                    }
                    None => {
                        let lagging = matches!(
                            (q.received_to, q.high_watermark),
                            (Some(r), Some(h)) if r < h
                        );
                        let idle =
                            q.heard && now.duration_since(q.last_message) >= self.idle_timeout;
                        if !q.eof && (lagging || !idle) {
                            blocked = true;
                        }
                    }
                }
            }
            let Some((key, t)) = best else { break };
            if blocked && t != i64::MIN {
                break;
            }
            let key = key.clone();
            let Some(q) = self.partitions.get_mut(&key) else {
                break;
            };
            let Some(head) = q.lines.pop_front() else {
                break;
            };
            self.buffered -= 1;
            if head.last_of_message {
                q.next_offset = Some(head.offset + 1);
            }
            if let Some(line) = head.line {
                batch.push_line(
                    &q.source,
                    &line,
                    head.offset.max(0) as u64,
                    head.byte_offset,
                );
                emitted += 1;
            }
        }
        emitted
    }
}

/// What the rebalance callback tells the polling thread.
#[derive(Debug)]
enum GroupEvent {
    /// Partitions gained, each with its start offset when this process set one.
    Assigned(Vec<(String, i32, Option<i64>)>),
    Revoked(Vec<(String, i32)>),
}

/// State shared between the consumer context (rebalance callbacks) and the source.
#[derive(Debug, Default)]
struct GroupState {
    events: Vec<GroupEvent>,
    /// Offsets covered by the last durable checkpoint: committed on revoke.
    covered: BTreeMap<(String, i32), i64>,
    /// Start offsets for partitions not yet assigned in this process (from `start` or a resume).
    first_assignment: BTreeMap<(String, i32), Offset>,
    /// Applies to partitions of `first_assignment`'s absence: `earliest`/`latest`.
    default_start: Option<Offset>,
    seen: std::collections::BTreeSet<(String, i32)>,
    /// Next offset after the lines the pipeline has processed, per partition (updated after each
    /// batch).
    processed: BTreeMap<(String, i32), i64>,
    /// Processed positions of the partitions the last eager revoke took away. If the assignment
    /// that follows gives one back, no other member can have read it in between (a rebalance is a
    /// barrier) and this process still holds its state: reading resumes where processing stopped,
    /// not at the last checkpoint, so nothing is aggregated twice.
    last_revoked: BTreeMap<(String, i32), i64>,
}

/// Consumer context: rebalances commit covered offsets before revoking and report to the source.
pub struct GroupContext {
    state: Arc<Mutex<GroupState>>,
}

impl ClientContext for GroupContext {
    /// librdkafka also reports every end-of-partition through the error callback; the source
    /// handles those from `poll`, so they are not logged as errors here.
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        ) {
            return;
        }
        tracing::error!(error = %error, reason, "librdkafka error");
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut assigned = Vec::with_capacity(parts.len());
                for (t, p) in &parts {
                    let key = (t.clone(), *p);
                    let start = if state.seen.insert(key.clone()) {
                        state
                            .first_assignment
                            .get(&key)
                            .copied()
                            .or(state.default_start)
                    } else {
                        state.last_revoked.get(&key).map(|&o| Offset::Offset(o))
                    };
                    if let Some(offset) = start {
                        if let Err(e) = tpl.set_partition_offset(t, *p, offset) {
                            tracing::warn!(topic = %t, partition = p, error = %e, "cannot set start offset");
                        }
                    }
                    let known = match start {
                        Some(Offset::Offset(o)) => Some(o),
                        _ => None,
                    };
                    assigned.push((t.clone(), *p, known));
                }
                state.last_revoked.clear();
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "partition assignment failed");
                }
                tracing::info!(partitions = ?parts, "kafka partitions assigned");
                state.events.push(GroupEvent::Assigned(assigned));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Checkpoint first: what the last durable checkpoint covers is committed now, so
                // the partition's next owner resumes exactly there (it re-reads the rest).
                let mut commit = TopicPartitionList::new();
                for (t, p) in &parts {
                    if let Some(&o) = state.covered.get(&(t.clone(), *p)) {
                        let _ = commit.add_partition_offset(t, *p, Offset::Offset(o));
                    }
                }
                let lost = consumer.assignment_lost();
                if commit.count() > 0 && !lost {
                    if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
                        tracing::warn!(error = %e, "commit on revoke failed");
                    }
                }
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "partition revocation failed");
                }
                tracing::info!(partitions = ?parts, "kafka partitions revoked");
                state.last_revoked.clear();
                for key in &parts {
                    state.covered.remove(key);
                    // A lost assignment may have been read by another member meanwhile.
                    if !cooperative && !lost {
                        if let Some(o) = state.processed.remove(key) {
                            state.last_revoked.insert(key.clone(), o);
                        }
                    } else {
                        state.processed.remove(key);
                    }
                }
                state.events.push(GroupEvent::Revoked(parts));
            }
            other => tracing::error!(error = ?other, "kafka rebalance error"),
        }
    }
}

/// The Kafka [`LineSource`].
pub struct KafkaSource {
    consumer: BaseConsumer<GroupContext>,
    state: Arc<Mutex<GroupState>>,
    merger: EventTimeMerger,
    max_buffered: usize,
    stop_at_end: bool,
    /// Positions captured by the last `checkpoint()`, committed by `checkpoint_done()`.
    pending_commit: Mutex<Vec<PartitionOffset>>,
    topics: BTreeMap<String, Arc<str>>,
    lines_total: u64,
    changes: Vec<AssignmentChange>,
}

/// A partition this daemon gained or lost (scale-out: restore or drop its workloads' state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentChange {
    /// Now consumed here: (topic, partition).
    Assigned(String, i32),
    /// No longer consumed here.
    Revoked(String, i32),
}

impl KafkaSource {
    /// Connects and subscribes. `resume`: next offsets from a checkpoint (they win over `start`).
    pub fn new(cfg: &KafkaConfig, resume: &[PartitionOffset]) -> anyhow::Result<Self> {
        cfg.validate()
            .map_err(|(k, m)| anyhow::anyhow!("{k}: {m}"))?;
        if cfg.topics.is_empty() {
            anyhow::bail!("kafka.topics: [source] kind = \"kafka\" needs at least one topic");
        }
        let mut state = GroupState {
            default_start: match cfg.start.as_str() {
                "earliest" => Some(Offset::Beginning),
                "latest" => Some(Offset::End),
                _ => None,
            },
            ..GroupState::default()
        };
        for r in resume {
            state.first_assignment.insert(
                (r.topic.clone(), r.partition),
                Offset::Offset(r.next_offset),
            );
        }
        let state = Arc::new(Mutex::new(state));
        let mut client = cfg.client_config();
        client
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set(
                "auto.offset.reset",
                if cfg.start == "latest" {
                    "latest"
                } else {
                    "earliest"
                },
            );
        for (k, v) in &cfg.librdkafka {
            client.set(k, v);
        }
        let consumer: BaseConsumer<GroupContext> = client
            .create_with_context(GroupContext {
                state: Arc::clone(&state),
            })
            .map_err(|e| anyhow::anyhow!("kafka consumer for {}: {e}", cfg.bootstrap_servers))?;
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| anyhow::anyhow!("kafka subscribe {topics:?}: {e}"))?;
        Ok(KafkaSource {
            consumer,
            state,
            merger: EventTimeMerger::new(cfg.idle_timeout()),
            max_buffered: cfg.max_buffered_lines,
            stop_at_end: cfg.stop_at_end,
            pending_commit: Mutex::new(Vec::new()),
            topics: cfg
                .topics
                .iter()
                .map(|t| (t.clone(), Arc::from(t.as_str())))
                .collect(),
            lines_total: 0,
            changes: Vec::new(),
        })
    }

    /// Next offsets per partition of everything handed to the pipeline so far (for a checkpoint).
    pub fn positions(&self) -> Vec<PartitionOffset> {
        self.merger.positions()
    }

    /// Lines handed to the pipeline so far.
    pub fn lines_total(&self) -> u64 {
        self.lines_total
    }

    /// Pulls messages into the merger until it holds `want` lines or nothing arrives for `wait`.
    fn fill(&mut self, want: usize, wait: Duration) {
        let deadline = Instant::now() + wait;
        let (consumer, merger, topics, state, changes) = (
            &self.consumer,
            &mut self.merger,
            &mut self.topics,
            &self.state,
            &mut self.changes,
        );
        // Wait for the first message only, then take what is already fetched: a trickle is handed
        // to the pipeline at once (record-to-alert latency), a backlog still fills whole batches.
        let mut received = false;
        loop {
            let now = Instant::now();
            let timeout = if received || merger.buffered() >= want {
                Duration::ZERO
            } else {
                deadline.saturating_duration_since(now)
            };
            let Some(result) = consumer.poll(timeout) else {
                break;
            };
            received = true;
            // Rebalance callbacks run inside `poll`: apply them before the messages that follow.
            apply_group_events(state, merger, topics, changes);
            match result {
                Ok(msg) => {
                    let key = (intern(topics, msg.topic()), msg.partition());
                    merger.push_message(
                        &key,
                        msg.offset(),
                        msg.payload().unwrap_or(&[]),
                        Instant::now(),
                    );
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    // librdkafka's EOF event names the partition only: mark it in every topic.
                    let keys: Vec<PartitionKey> =
                        merger.partitions().filter(|k| k.1 == p).cloned().collect();
                    for k in keys {
                        merger.mark_eof(&k);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "kafka consumer error (librdkafka retries)"),
            }
            if merger.buffered() >= want.saturating_mul(4) {
                break;
            }
        }
        apply_group_events(state, merger, topics, changes);
        // Cached high watermarks (no network round trip) tell a lagging partition from an idle one.
        let empty: Vec<PartitionKey> = merger
            .partitions()
            .filter(|k| merger.buffered_in(k) == 0)
            .cloned()
            .collect();
        for k in empty {
            if let Some(high) = cached_high_watermark(consumer, &k.0, k.1) {
                merger.set_high_watermark(&k, high);
            }
        }
        self.flow_control();
    }

    /// Pauses partitions whose buffer is full and resumes those drained below half.
    fn flow_control(&mut self) {
        let (pause, resume) = self.merger.flow_control(self.max_buffered);
        for (keys, pause) in [(pause, true), (resume, false)] {
            if keys.is_empty() {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            for (t, p) in &keys {
                tpl.add_partition(t, *p);
            }
            let r = if pause {
                self.consumer.pause(&tpl)
            } else {
                self.consumer.resume(&tpl)
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, pause, "kafka pause/resume failed");
            }
        }
    }
}

/// The partition's high watermark from the consumer's last fetch response, without a network call
/// (`rd_kafka_get_watermark_offsets`; rust-rdkafka only wraps the querying variant).
fn cached_high_watermark(
    consumer: &BaseConsumer<GroupContext>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; the topic is a NUL-terminated
    // string that outlives the call; librdkafka only writes the two out-parameters.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_client().ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

fn intern(topics: &mut BTreeMap<String, Arc<str>>, name: &str) -> Arc<str> {
    if let Some(t) = topics.get(name) {
        return Arc::clone(t);
    }
    let t: Arc<str> = Arc::from(name);
    topics.insert(name.to_string(), Arc::clone(&t));
    t
}

fn apply_group_events(
    state: &Mutex<GroupState>,
    merger: &mut EventTimeMerger,
    topics: &mut BTreeMap<String, Arc<str>>,
    changes: &mut Vec<AssignmentChange>,
) {
    let events = match state.lock() {
        Ok(mut s) => std::mem::take(&mut s.events),
        Err(_) => return,
    };
    let now = Instant::now();
    for ev in events {
        match ev {
            GroupEvent::Assigned(parts) => {
                for (t, p, start) in parts {
                    let key = (intern(topics, &t), p);
                    merger.add_partition(key.clone(), now);
                    if let Some(o) = start {
                        merger.resume_at(&key, o);
                    }
                    changes.push(AssignmentChange::Assigned(t, p));
                }
            }
            GroupEvent::Revoked(parts) => {
                for (t, p) in parts {
                    merger.remove_partition(&(intern(topics, &t), p));
                    changes.push(AssignmentChange::Revoked(t, p));
                }
            }
        }
    }
}

impl KafkaSource {}

impl LineSource for KafkaSource {
    fn poll_batch(
        &mut self,
        batch: &mut LineBatch,
        max_lines: usize,
        max_bytes: usize,
    ) -> std::io::Result<Poll> {
        self.fill(max_lines, Duration::from_millis(100));
        let n = self
            .merger
            .emit(batch, max_lines, max_bytes, Instant::now());
        self.lines_total += n as u64;
        metrics::counter!("flowwarden_kafka_lines_total").increment(n as u64);
        if n == 0 && self.merger.buffered() > 0 {
            tracing::debug!(
                buffered = self.merger.buffered(),
                "kafka lines held back for event-time order"
            );
        }
        Ok(if n > 0 {
            Poll::Data
        } else if self.stop_at_end && self.merger.all_at_end() {
            tracing::info!(lines = self.lines_total, positions = ?self.merger.positions(), "kafka partitions read to their end");
            Poll::End
        } else {
            Poll::Idle
        })
    }

    fn checkpoint(&self) -> SourceCheckpoint {
        let positions = self.merger.positions();
        if let Ok(mut p) = self.pending_commit.lock() {
            *p = positions.clone();
        }
        SourceCheckpoint {
            kafka: positions,
            ..SourceCheckpoint::default()
        }
    }

    fn take_assignment_changes(&mut self) -> Vec<AssignmentChange> {
        std::mem::take(&mut self.changes)
    }

    fn batch_done(&mut self) {
        if let Ok(mut state) = self.state.lock() {
            for p in self.merger.positions() {
                state
                    .processed
                    .insert((p.topic, p.partition), p.next_offset);
            }
        }
    }

    fn checkpoint_done(&mut self) {
        let positions = match self.pending_commit.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return,
        };
        if positions.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for p in &positions {
            let _ = tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(error = %e, "kafka offset commit failed (the next checkpoint retries)");
        }
        if let Ok(mut s) = self.state.lock() {
            for p in positions {
                s.covered.insert((p.topic, p.partition), p.next_offset);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        (Arc::from("flows"), p)
    }

    fn line(t: i64, tag: &str) -> String {
        format!(
            "{{\"start_time\":{t},\"end_time\":{},\"tag\":\"{tag}\"}}",
            t + 15
        )
    }

    fn tags(batch: &LineBatch) -> Vec<String> {
        (0..batch.len())
            .map(|i| {
                let v: serde_json::Value =
                    serde_json::from_slice(batch.line(i)).unwrap_or_default();
                v["tag"].as_str().unwrap_or("?").to_string()
            })
            .collect()
    }

    #[test]
    fn start_time_is_found_without_parsing() {
        assert_eq!(
            extract_start_time(br#"{"a":1,"start_time":1577834657,"x":2}"#),
            Some(1577834657)
        );
        assert_eq!(
            extract_start_time(br#"{"Key":{"a":1},"start_time" : 17}"#),
            Some(17)
        );
        assert_eq!(extract_start_time(br#"{"start_time":"soon"}"#), None);
        assert_eq!(extract_start_time(br#"{"end_time":5}"#), None);
        assert_eq!(
            extract_start_time(br#"{"start_time":99999999999999999999999}"#),
            None
        );
        assert_eq!(extract_start_time(b"\"start_time\""), None);
    }

    #[test]
    fn partitions_are_merged_in_event_time_order() {
        let now = Instant::now();
        let mut m = EventTimeMerger::new(Duration::from_secs(2));
        m.add_partition(key(0), now);
        m.add_partition(key(1), now);
        m.push_message(
            &key(0),
            0,
            format!("{}\n{}", line(10, "a"), line(30, "c")).as_bytes(),
            now,
        );
        m.push_message(&key(1), 0, line(20, "b").as_bytes(), now);
        let mut b = LineBatch::new();
        // Partition 1 is empty after "b" and neither at its end nor idle: "c" waits.
        assert_eq!(m.emit(&mut b, 100, 1 << 20, now), 2);
        assert_eq!(tags(&b), ["a", "b"]);
        m.mark_eof(&key(1));
        assert_eq!(m.emit(&mut b, 100, 1 << 20, now), 1);
        assert_eq!(tags(&b), ["a", "b", "c"]);
        assert_eq!(b.position(2).source, "kafka:flows/0");
        assert_eq!(b.position(2).line, 0);
        assert!(b.position(2).offset > 0, "byte offset inside the message");
        assert!(m.all_at_end() || m.buffered() == 0);
    }

    #[test]
    fn an_idle_partition_stops_holding_back() {
        let now = Instant::now();
        let mut m = EventTimeMerger::new(Duration::from_millis(500));
        m.add_partition(key(0), now);
        m.add_partition(key(1), now);
        m.push_message(&key(0), 5, line(10, "a").as_bytes(), now);
        let mut b = LineBatch::new();
        // Partition 1 has not been heard from: however long that takes, it is not idle.
        assert_eq!(
            m.emit(&mut b, 100, 1 << 20, now + Duration::from_secs(60)),
            0
        );
        m.push_message(&key(1), 0, line(1, "x").as_bytes(), now);
        assert_eq!(m.emit(&mut b, 100, 1 << 20, now), 1);
        // Heard from, drained, watermark unknown: idle after the timeout.
        assert_eq!(
            m.emit(&mut b, 100, 1 << 20, now + Duration::from_secs(1)),
            1
        );
        assert_eq!(tags(&b), ["x", "a"]);
        assert_eq!(
            m.positions(),
            vec![
                PartitionOffset {
                    topic: "flows".into(),
                    partition: 0,
                    next_offset: 6
                },
                PartitionOffset {
                    topic: "flows".into(),
                    partition: 1,
                    next_offset: 1
                }
            ]
        );
    }

    #[test]
    fn a_partition_given_back_at_a_known_offset_is_committed_there_without_new_messages() {
        // An eager rebalance revoked partition 1 after its lines up to offset 41 were processed
        // but before a checkpoint covered them, then gave it back: reading resumes at 42. If no
        // message arrives, the checkpoint must still commit 42, not leave the revoke's older one.
        let state = Mutex::new(GroupState {
            events: vec![GroupEvent::Assigned(vec![
                ("flows".into(), 0, None),
                ("flows".into(), 1, Some(42)),
            ])],
            ..GroupState::default()
        });
        let mut m = EventTimeMerger::new(Duration::from_secs(2));
        let (mut topics, mut changes) = (BTreeMap::new(), Vec::new());
        apply_group_events(&state, &mut m, &mut topics, &mut changes);
        assert_eq!(changes.len(), 2);
        let at = |m: &EventTimeMerger| -> Vec<(i32, i64)> {
            m.positions()
                .iter()
                .map(|p| (p.partition, p.next_offset))
                .collect()
        };
        assert_eq!(at(&m), [(1, 42)], "partition 0 has no known start");
        // Messages move the position on as usual; a second resume does not move it back.
        m.push_message(&key(1), 42, line(10, "a").as_bytes(), Instant::now());
        let mut b = LineBatch::new();
        m.mark_eof(&key(0));
        assert_eq!(m.emit(&mut b, 100, 1 << 20, Instant::now()), 1);
        m.resume_at(&key(1), 42);
        assert_eq!(at(&m), [(1, 43)]);
    }

    #[test]
    fn a_lagging_partition_holds_back_however_long_it_is_silent() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut m = EventTimeMerger::new(Duration::from_millis(500));
        m.add_partition(key(0), now);
        m.add_partition(key(1), now);
        m.push_message(&key(0), 0, line(10, "a").as_bytes(), now);
        m.push_message(&key(1), 0, line(5, "x").as_bytes(), now);
        m.push_message(&key(0), 1, line(30, "b").as_bytes(), now);
        // Partition 1 delivered offset 0 of 3: its link is down, not idle.
        m.set_high_watermark(&key(1), 3);
        let mut b = LineBatch::new();
        assert_eq!(m.emit(&mut b, 100, 1 << 20, later), 1);
        assert_eq!(tags(&b), ["x"]);
        // Caught up (or the watermark unknown): the idle timeout applies again.
        m.set_high_watermark(&key(1), 1);
        assert_eq!(m.emit(&mut b, 100, 1 << 20, later), 2);
        assert_eq!(tags(&b), ["x", "a", "b"]);
    }

    #[test]
    fn lines_without_start_time_pass_at_once_and_offsets_advance_per_whole_message() {
        let now = Instant::now();
        let mut m = EventTimeMerger::new(Duration::from_secs(2));
        m.add_partition(key(0), now);
        m.add_partition(key(1), now);
        m.push_message(&key(0), 7, b"not json\r\n", now);
        m.push_message(&key(0), 8, b"", now);
        let mut b = LineBatch::new();
        assert_eq!(m.emit(&mut b, 100, 1 << 20, now), 1);
        assert_eq!(b.line(0), b"not json");
        assert_eq!(
            m.positions()[0].next_offset,
            9,
            "the empty message counts as handled"
        );
        m.push_message(
            &key(1),
            0,
            format!("{}\n{}\n", line(1, "x"), line(2, "y")).as_bytes(),
            now,
        );
        assert_eq!(
            m.emit(&mut b, 2, 1 << 20, now),
            0,
            "partition 0 is empty and not at its end"
        );
        m.mark_eof(&key(0));
        assert_eq!(m.emit(&mut b, 1, 1 << 20, now), 1);
        assert_eq!(
            m.positions().len(),
            1,
            "a message is covered only once all its lines are out"
        );
        assert_eq!(m.emit(&mut b, 1, 1 << 20, now), 1);
        assert_eq!(m.positions()[1].next_offset, 1);
    }

    #[test]
    fn full_partitions_are_paused_and_resumed() {
        let now = Instant::now();
        let mut m = EventTimeMerger::new(Duration::from_secs(2));
        for i in 0..4 {
            m.push_message(&key(0), i, line(i, "a").as_bytes(), now);
        }
        assert_eq!(m.flow_control(4), (vec![key(0)], vec![]));
        assert_eq!(m.flow_control(4), (vec![], vec![]));
        m.mark_eof(&key(0));
        let mut b = LineBatch::new();
        assert_eq!(m.emit(&mut b, 3, 1 << 20, now), 3);
        assert_eq!(m.flow_control(4), (vec![], vec![key(0)]));
        m.remove_partition(&key(0));
        assert_eq!(m.buffered(), 0);
    }

    #[test]
    fn source_merges_a_mock_cluster_topic_in_event_time_order_and_commits_on_checkpoint() {
        use rdkafka::mocking::MockCluster;
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("flows", 3, 1).expect("topic");
        let cfg = KafkaConfig {
            bootstrap_servers: cluster.bootstrap_servers(),
            stop_at_end: true,
            idle_timeout: "5s".into(),
            ..KafkaConfig::default()
        };
        let mut producer = crate::kafka::sink::TopicProducer::new(&cfg, "flows").expect("producer");
        // Partition p holds times p, p+3, p+6, ...; two lines per message.
        let mut expected = 0;
        for p in 0..3i64 {
            for i in 0..20i64 {
                let t = p + 6 * i;
                let payload = format!("{}\n{}\n", line(t, "x"), line(t + 3, "y"));
                let record = rdkafka::producer::BaseRecord::to("flows")
                    .partition(p as i32)
                    .key("k")
                    .payload(&payload);
                producer_send(&mut producer, record);
                expected += 2;
            }
        }
        producer.flush().expect("flush");
        let mut source = KafkaSource::new(&cfg, &[]).expect("source");
        let mut times = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "source did not reach the end");
            let mut b = LineBatch::new();
            let poll = source.poll_batch(&mut b, 7, 1 << 20).expect("poll");
            for i in 0..b.len() {
                times.push(extract_start_time(b.line(i)).expect("time"));
                assert!(b.position(i).source.starts_with("kafka:flows/"));
            }
            if poll == Poll::End {
                break;
            }
        }
        assert_eq!(times.len(), expected);
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "event-time order across partitions: {times:?}"
        );
        assert_eq!(source.lines_total(), expected as u64);
        let positions = source.positions();
        assert_eq!(positions.len(), 3);
        assert!(positions.iter().all(|p| p.next_offset == 20));
        let _ = source.checkpoint();
        source.checkpoint_done();
    }

    fn producer_send(
        producer: &mut crate::kafka::sink::TopicProducer,
        record: rdkafka::producer::BaseRecord<'_, str, String>,
    ) {
        producer.send_record(record).expect("send");
    }
}
