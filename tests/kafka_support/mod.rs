//! Shared harness for the Kafka end-to-end tests: a tansu broker process on a free port (killed on
//! drop), an optional TCP proxy in front of it to cut the network path, topic helpers, and runners
//! for the `flowwarden` binary.
#![allow(dead_code)]

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_flowwarden");

/// The shared data directory (iot23 lives there).
/// `FLOWWARDEN_DATA_DIR` overrides it (worktrees live one level deeper than the main checkout).
pub fn data_file(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FLOWWARDEN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")));
    let p = dir.join(name);
    p.exists().then_some(p)
}

/// The tansu binary, if installed.
pub fn tansu_path() -> Option<PathBuf> {
    if let Ok(out) = Command::new("sh").args(["-c", "command -v tansu"]).output() {
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !s.is_empty() {
            return Some(PathBuf::from(s));
        }
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok()?;
    let p = home.join("bin/tansu");
    p.exists().then_some(p)
}

/// Returns `None` (and says why) when tansu is missing, so the test can skip.
pub fn broker_or_skip(test: &str) -> Option<Broker> {
    if tansu_path().is_none() {
        eprintln!("SKIP {test}: tansu is not installed (scripts/install-tansu.sh)");
        return None;
    }
    Some(Broker::start(false))
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// A tansu broker with in-memory storage; optionally advertised through a [`Proxy`].
pub struct Broker {
    child: Child,
    pub listen_port: u16,
    pub proxy: Option<Proxy>,
    advertised: u16,
}

impl Broker {
    /// Starts a broker; with `proxied`, clients reach it only through a proxy that can be cut.
    pub fn start(proxied: bool) -> Broker {
        let tansu = tansu_path().expect("tansu installed");
        let listen_port = free_port();
        let advertised = if proxied { free_port() } else { listen_port };
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("tansu-{listen_port}.log")))
                .expect("log");
        let child = Command::new(tansu)
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &format!("tcp://127.0.0.1:{listen_port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{advertised}"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        wait_port(listen_port);
        let proxy = proxied.then(|| Proxy::start(advertised, listen_port));
        Broker {
            child,
            listen_port,
            proxy,
            advertised,
        }
    }

    /// `bootstrap.servers` for clients.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.advertised)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy whose link can be cut (every connection reset, new ones refused) and restored.
pub struct Proxy {
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(port: u16, target: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("proxy bind");
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, conns2) = (Arc::clone(&up), Arc::clone(&conns));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
                    let mut list = conns2.lock().expect("lock");
                    list.push(c2);
                    list.push(s2);
                }
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        Proxy { up, conns }
    }

    /// Cuts the link: resets every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().expect("lock").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Restores the link.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Creates a topic through the library's admin helper.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let cfg = flowwarden::kafka::KafkaConfig {
        bootstrap_servers: brokers.to_string(),
        ..Default::default()
    };
    flowwarden::kafka::produce::ensure_topic(&cfg, topic, partitions, 1, false)
        .expect("create topic");
}

/// librdkafka settings making every produced message its own record batch. tansu 0.6.0 returns
/// nothing for a fetch that starts inside a record batch (Kafka returns the batch and the client
/// skips the earlier records), so a consumer resuming from a checkpoint or committed offset in the
/// middle of a batch would stall; one record per batch keeps every offset a batch boundary.
pub const ONE_RECORD_PER_BATCH: &str =
    "[kafka.librdkafka]\n\"batch.num.messages\" = \"1\"\n\"linger.ms\" = \"0\"\n";

/// `flowwarden produce FILE --topic T --partitions N` (one record per batch, see
/// [`ONE_RECORD_PER_BATCH`]).
pub fn produce(brokers: &str, file: &Path, topic: &str, partitions: i32) {
    // In the temp dir, never beside the input: the shared data directory is not ours to write.
    let config = std::env::temp_dir().join(format!(
        "flowwarden-produce-{}-{}.toml",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&config, ONE_RECORD_PER_BATCH).expect("produce config");
    let out = Command::new(BIN)
        .args([
            "produce",
            &file.to_string_lossy(),
            "--topic",
            topic,
            "--brokers",
            brokers,
            "--config",
            &config.to_string_lossy(),
        ])
        .args(["--partitions", &partitions.to_string()])
        .output()
        .expect("run produce");
    let _ = std::fs::remove_file(&config);
    assert!(
        out.status.success(),
        "produce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every message of a topic, from the beginning to the current end: (partition, key, payload).
pub fn read_topic(brokers: &str, topic: &str) -> Vec<(i32, String, Vec<u8>)> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", free_port()))
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut eof = BTreeSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while eof.len() < parts.len() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.partition(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            _ => {}
        }
    }
    assert_eq!(eof.len(), parts.len(), "topic {topic} not read to its end");
    out
}

/// Alert ids in a topic.
pub fn alert_ids_in_topic(brokers: &str, topic: &str) -> BTreeSet<String> {
    read_topic(brokers, topic)
        .iter()
        .map(|(_, _, payload)| {
            let v: serde_json::Value = serde_json::from_slice(payload).expect("alert json");
            v["id"].as_str().expect("alert id").to_string()
        })
        .collect()
}

/// Alert ids that `flowwarden replay` produces for a file.
pub fn replay_ids(dir: &Path, file: &Path) -> BTreeSet<String> {
    let alerts = dir.join("replay-alerts.jsonl");
    let out = Command::new(BIN)
        .args([
            "replay",
            &file.to_string_lossy(),
            "--alerts",
            &alerts.to_string_lossy(),
        ])
        .output()
        .expect("replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&alerts)
        .expect("alerts file")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("alert json");
            v["id"].as_str().expect("alert id").to_string()
        })
        .collect()
}

/// Writes a daemon config reading `topic` and writing alerts to `alerts_topic`.
pub fn daemon_config(
    dir: &Path,
    name: &str,
    brokers: &str,
    topic: &str,
    group: &str,
    alerts_topic: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "[source]\nkind = \"kafka\"\n\n[alerts]\nstdout = false\n\n[metrics]\nenabled = false\n\n[kafka]\nbootstrap_servers = \"{brokers}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{group}\"\nstop_at_end = true\nidle_timeout = \"1s\"\nalerts_topic = \"{alerts_topic}\"\n{extra}\n"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// A running daemon whose stderr (JSON logs) is collected by a thread.
pub struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// Starts `flowwarden run --config` with JSON logs on a captured stderr.
pub fn spawn_daemon(config: &Path) -> Daemon {
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "run",
            "--config",
            &config.to_string_lossy(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn daemon");
    let log: Arc<Mutex<String>> = Arc::default();
    let stderr = child.stderr.take().expect("stderr");
    let log2 = Arc::clone(&log);
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let mut l = log2.lock().expect("lock");
            l.push_str(&line);
            l.push('\n');
        }
    });
    Daemon {
        child,
        log,
        reader: Some(reader),
    }
}

impl Daemon {
    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("lock").clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, then waits.
    pub fn kill9(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_log()
    }

    /// SIGTERM (graceful stop), then waits.
    pub fn terminate(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait(limit)
    }

    /// Waits for the exit with a deadline; kills it and panics when exceeded.
    pub fn wait(&mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status, self.join_log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("daemon did not finish in {limit:?}:\n{}", self.join_log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn join_log(&mut self) -> String {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.log()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `records` counter of the daemon's final "flowwarden stopped" log line.
pub fn daemon_records(text: &str) -> u64 {
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "flowwarden stopped")
        .find_map(|v| v["fields"]["records"].as_u64())
        .unwrap_or_else(|| panic!("no final stats in daemon log:\n{text}"))
}

/// The `records` of the daemon's "resumed from checkpoint" log line, if it resumed.
pub fn resumed_records(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "resumed from checkpoint")
        .find_map(|v| v["fields"]["records"].as_u64())
}

/// Every JSON log line whose message is `message`, as its `fields`.
pub fn log_events(text: &str, message: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .map(|v| v["fields"].clone())
        .collect()
}

/// Sum of the group's committed offsets on `topic` (messages the group will not re-read).
pub fn committed_total(brokers: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}
