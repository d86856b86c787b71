//! The Goldmane HTTP push receiver, end to end: the real `flowwarden run` binary fed over HTTP gives the
//! same alerts as `flowwarden replay` on the same lines; and, at the library level, duplicates, 400,
//! 413, 503, 401/404/405 and TLS with client certificates against a receiver whose queue the test
//! drains itself (standing in for the daemon loop).

use flowwarden::source::goldmane_http::{
    GoldmaneHttpConfig, GoldmaneHttpSource, GoldmaneHttpStats, BULK_PATH,
};
use flowwarden::source::{LineBatch, LineSource, Poll};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Start of the first 15 s bucket (a multiple of 15).
const T0: i64 = 1_749_999_990;

/// One Goldmane flow line as the emitter writes it (Go's protobuf JSON: enums as integers, zero
/// values omitted), both ends pods in namespace `shop`. `action`: 1 allow, 2 deny; `reporter`: 1 src,
/// 2 dst.
fn flow(src: &str, dst: &str, port: u16, action: u8, reporter: u8, start: i64) -> String {
    let ns = "shop";
    let policy = if action == 2 {
        r#"{"kind":2,"name":"default-deny","tier":"security","action":2,"rule_index":-1}"#
    } else {
        r#"{"kind":1,"namespace":"shop","name":"allow-app","tier":"default","action":1}"#
    };
    format!(
        concat!(
            r#"{{"Key":{{"source_name":"{}","source_namespace":"{}","source_type":1,"dest_name":"{}","#,
            r#""dest_namespace":"{}","dest_type":1,"dest_port":{},"proto":"tcp","reporter":{},"action":{},"#,
            r#""policies":{{"enforced_policies":[{}]}}}},"start_time":{},"end_time":{},"#,
            r#""source_labels":["app={}"],"dest_labels":["app={}"],"packets_in":{},"packets_out":{},"#,
            r#""bytes_in":{},"bytes_out":{},"num_connections_started":{},"num_connections_completed":{}}}"#
        ),
        src,
        ns,
        dst,
        ns,
        port,
        reporter,
        action,
        policy,
        start,
        start + 15,
        src.trim_end_matches("-*"),
        dst.trim_end_matches("-*"),
        if action == 1 { 40 } else { 0 },
        if action == 1 { 40 } else { 2 },
        if action == 1 { 24_000 } else { 0 },
        if action == 1 { 3_200 } else { 120 },
        if action == 1 { 4 } else { 1 },
        if action == 1 { 4 } else { 0 },
    )
}

/// The steady traffic of one bucket: frontend → api → db, reported by both ends.
fn benign_bucket(start: i64) -> Vec<String> {
    let mut v = Vec::new();
    for reporter in [1, 2] {
        v.push(flow(
            "frontend-7d9c8b6f4-*",
            "api-5c8d7f6b9-*",
            8080,
            1,
            reporter,
            start,
        ));
        v.push(flow("api-5c8d7f6b9-*", "db-0-*", 5432, 1, reporter, start));
    }
    v
}

/// A port scan: one pod to 40 distinct denied destination ports in one bucket.
fn port_scan(start: i64) -> Vec<String> {
    (0..40)
        .map(|i| flow("recon-6b7f9c5d4-*", "db-0-*", 1000 + i * 7, 2, 1, start))
        .collect()
}

fn body(lines: &[String]) -> String {
    // Goldmane sends no trailing newline.
    lines.join("\n")
}

fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

fn post(client: &reqwest::blocking::Client, url: &str, body: String) -> (u16, String) {
    let resp = client
        .post(url)
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// The real binary.

struct Daemon {
    child: Child,
    addr: String,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `flowwarden run` and waits for the receiver's address in its JSON log.
    fn start(config: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowwarden"))
            .args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flowwarden starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let log_w = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let msg = v["fields"]["message"].as_str().unwrap_or_default();
                    if msg.starts_with("goldmane-http listening") {
                        if let Some(a) = v["fields"]["addr"].as_str() {
                            let _ = addr_tx.send(a.to_string());
                        }
                    }
                }
                log_w.lock().unwrap().push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the daemon did not report its address; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Daemon { child, addr, log }
    }

    fn url(&self) -> String {
        format!("http://{}{BULK_PATH}", self.addr)
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "daemon exited with {status}; log:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the daemon did not stop after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn alert_ids(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("alert is JSON");
            v["id"].as_str().expect("alert has an id").to_string()
        })
        .collect()
}

fn alert_detectors(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["detector"].as_str().map(str::to_string))
        .collect()
}

/// Runs `flowwarden replay` on `input` with the tests' common config; returns its alerts file.
fn replay(dir: &Path, input: &Path) -> std::path::PathBuf {
    let replay_alerts = dir.join("replay-alerts.jsonl");
    let replay_cfg = dir.join("replay.toml");
    std::fs::write(
        &replay_cfg,
        format!("{COMMON_CONFIG}\n[alerts]\nstdout = false\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowwarden"))
        .arg("replay")
        .arg(input)
        .arg("--config")
        .arg(&replay_cfg)
        .arg("--alerts")
        .arg(&replay_alerts)
        .output()
        .expect("replay runs");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    replay_alerts
}

const COMMON_CONFIG: &str = r#"
[goldmane_http]
listen = "127.0.0.1:0"

[pipeline]
threads = 2

[window]
length = "15s"
allowed_lateness = "30s"
"#;

#[test]
fn daemon_fed_over_http_alerts_like_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run_alerts = dir.path().join("run-alerts.jsonl");
    let run_dead = dir.path().join("run-dead.jsonl");
    let run_cfg = dir.path().join("run.toml");
    std::fs::write(
        &run_cfg,
        format!(
            "[source]\nkind = \"goldmane-http\"\npoll_interval = \"20ms\"\n{COMMON_CONFIG}\n[alerts]\nstdout = false\nfile = {:?}\n\n[dead_letter]\nfile = {:?}\n",
            run_alerts, run_dead
        ),
    )
    .unwrap();

    // Nine 15 s buckets of steady traffic, a port scan in bucket 3, and a malformed line in
    // bucket 5. One request per bucket, as Goldmane's emitter does.
    const BAD_LINE: &str =
        r#"{"Key":{"source_name":"frontend-7d9c8b6f4-*"},"start_time":"yesterday"}"#;
    let mut requests: Vec<Vec<String>> = Vec::new();
    for b in 0..9 {
        let start = T0 + 15 * b;
        let mut lines = benign_bucket(start);
        if b == 3 {
            lines.extend(port_scan(start));
        }
        if b == 5 {
            lines.insert(1, BAD_LINE.to_string());
        }
        requests.push(lines);
    }
    let all_lines: Vec<String> = requests.iter().flatten().cloned().collect();
    let replay_input = dir.path().join("flows.ndjson");
    std::fs::write(&replay_input, all_lines.join("\n") + "\n").unwrap();

    let daemon = Daemon::start(&run_cfg);
    let client = http_client();
    let url = daemon.url();
    for (b, lines) in requests.iter().enumerate() {
        let (status, text) = post(&client, &url, body(lines));
        if b == 5 {
            assert_eq!(status, 400, "{text}");
            assert!(
                text.starts_with("line 2: "),
                "the reply names the first bad line: {text}"
            );
        } else {
            assert_eq!(status, 200, "bucket {b}: {text}");
        }
        if b == 3 {
            // Goldmane re-sends a bucket after a restart: counted once.
            let (status, text) = post(&client, &url, body(lines));
            assert_eq!(status, 200, "a duplicate is acknowledged: {text}");
        }
    }
    daemon.stop();

    let replay_alerts = replay(dir.path(), &replay_input);

    let from_run = alert_ids(&run_alerts);
    let from_replay = alert_ids(&replay_alerts);
    assert!(
        alert_detectors(&replay_alerts).contains("port_scan"),
        "the scan is detected: {:?}",
        std::fs::read_to_string(&replay_alerts)
    );
    assert_eq!(
        from_run, from_replay,
        "the daemon fed over HTTP alerts exactly like replay"
    );
    println!(
        "{} alerts, the same from run and replay: {:?}",
        from_run.len(),
        alert_detectors(&run_alerts)
    );

    // The bad line was dead-lettered with its position in the request body.
    let dead = std::fs::read_to_string(&run_dead).expect("dead letters written");
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let text = dead[0].to_string();
    assert!(
        text.contains("goldmane-http:127.0.0.1:"),
        "position names the peer: {text}"
    );
    assert!(text.contains("yesterday"), "the raw line is kept: {text}");
}

// ---------------------------------------------------------------------------------------------
// Library level: the receiver with the test as the daemon loop.

/// A line the test's "daemon" received.
#[derive(Debug, Clone)]
struct Received {
    source: String,
    line: u64,
    offset: u64,
    text: String,
}

/// Drains a receiver on a thread like the daemon loop does (poll, then `batch_done`).
struct Drainer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(Vec<Received>, GoldmaneHttpStats)>,
}

impl Drainer {
    fn start(mut source: GoldmaneHttpSource) -> Drainer {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_r = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut batch = LineBatch::new();
            while !stop_r.load(Ordering::SeqCst) {
                batch.clear();
                // Small batches so a body spans several of them.
                let poll = source.poll_batch(&mut batch, 3, 1 << 20).expect("poll");
                for i in 0..batch.len() {
                    let pos = batch.position(i);
                    got.push(Received {
                        source: pos.source.to_string(),
                        line: pos.line,
                        offset: pos.offset,
                        text: String::from_utf8_lossy(batch.line(i)).into_owned(),
                    });
                }
                if !batch.is_empty() {
                    source.batch_done();
                }
                if poll == Poll::Idle && batch.is_empty() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            let stats = source.stats();
            (got, stats)
        });
        Drainer { stop, handle }
    }

    fn finish(self) -> (Vec<Received>, GoldmaneHttpStats) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("drainer")
    }
}

fn local_config() -> GoldmaneHttpConfig {
    GoldmaneHttpConfig {
        listen: "127.0.0.1:0".into(),
        ..GoldmaneHttpConfig::default()
    }
}

fn start(cfg: &GoldmaneHttpConfig) -> (GoldmaneHttpSource, String) {
    let source = GoldmaneHttpSource::start(cfg, 1 << 20).expect("receiver starts");
    let url = format!("http://{}{BULK_PATH}", source.local_addr());
    (source, url)
}

#[test]
fn the_same_bucket_posted_twice_counts_once() {
    let (source, url) = start(&local_config());
    let drainer = Drainer::start(source);
    let client = http_client();
    let first = port_scan(T0);
    assert_eq!(post(&client, &url, body(&first)).0, 200);
    assert_eq!(
        post(&client, &url, body(&first)).0,
        200,
        "a re-sent bucket is acknowledged"
    );
    // A re-send with other counters and another field order is still the same bucket; a flow of
    // the next bucket is new.
    let reordered = r#"{"end_time":1750000005,"start_time":1749999990,"bytes_out":1,"Key":{"action":2,"reporter":1,"proto":"tcp","dest_port":1000,"dest_type":1,"dest_namespace":"shop","dest_name":"db-0-*","source_type":1,"source_namespace":"shop","source_name":"recon-6b7f9c5d4-*","policies":{"enforced_policies":[{"rule_index":-1,"action":2,"tier":"security","name":"default-deny","kind":2}]}}}"#;
    let next_bucket = flow("recon-6b7f9c5d4-*", "db-0-*", 1000, 2, 1, T0 + 15);
    let (status, _) = post(
        &client,
        &url,
        body(&[reordered.to_string(), next_bucket.clone()]),
    );
    assert_eq!(status, 200);
    let (got, stats) = drainer.finish();
    assert_eq!(
        got.len(),
        first.len() + 1,
        "40 flows once, plus the one new flow"
    );
    let texts: Vec<&str> = got.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(
        texts[..first.len()],
        first.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    assert_eq!(texts[first.len()], next_bucket);
    assert_eq!(got[first.len()].line, 2, "line number in its own body");
    assert_eq!(stats.duplicates, 41);
    assert_eq!(stats.accepted_lines, 41);
}

#[test]
fn a_malformed_line_gets_400_naming_it_and_the_valid_lines_go_on() {
    let (source, url) = start(&local_config());
    let drainer = Drainer::start(source);
    let client = http_client();
    let good = benign_bucket(T0);
    let lines = vec![
        good[0].clone(),
        good[1].clone(),
        r#"{"Key":{"source_name":"x"},"start_time":1749999990,"bytes_out":-5"#.to_string(),
        good[2].clone(),
        "not json at all".to_string(),
    ];
    let text_body = body(&lines);
    let (status, text) = post(&client, &url, text_body.clone());
    assert_eq!(status, 400);
    assert!(text.starts_with("line 3: "), "{text}");
    assert!(text.contains("2 bad line(s)"), "{text}");
    let (got, stats) = drainer.finish();
    // Every line goes to the pipeline, whose decoder dead-letters the bad ones with their position.
    assert_eq!(got.len(), 5);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.line, i as u64 + 1);
        assert_eq!(r.text, lines[i]);
        let offset = r.offset as usize;
        assert_eq!(
            &text_body[offset..offset + r.text.len()],
            r.text,
            "offset is the byte offset in the body"
        );
        assert!(
            r.source.starts_with("goldmane-http:127.0.0.1:"),
            "{}",
            r.source
        );
    }
    assert_eq!(stats.malformed_requests, 1);
}

#[test]
fn an_oversized_body_gets_413() {
    let cfg = GoldmaneHttpConfig {
        max_body_bytes: 4096,
        ..local_config()
    };
    let (source, url) = start(&cfg);
    let drainer = Drainer::start(source);
    let client = http_client();
    let big = body(&port_scan(T0));
    assert!(big.len() > 4096);
    let (status, _) = post(&client, &url, big);
    assert_eq!(status, 413);
    // Chunked, so the size is only known while reading (raw HTTP/1.1: the whole body is written
    // before the answer is read).
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches(BULK_PATH)
        .to_string();
    let mut raw = format!(
        "POST {BULK_PATH} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for line in port_scan(T0) {
        let chunk = line + "\n";
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(chunk.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = std::io::Write::write_all(&mut stream, &raw);
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let small = body(&benign_bucket(T0));
    assert_eq!(
        post(&client, &url, small).0,
        200,
        "the receiver still works"
    );
    let (got, _) = drainer.finish();
    assert_eq!(
        got.len(),
        4,
        "nothing of the oversized bodies reached the pipeline"
    );
}

#[test]
fn a_full_queue_gets_503_and_the_retry_is_not_a_duplicate() {
    let cfg = GoldmaneHttpConfig {
        queue_batches: 1,
        ..local_config()
    };
    let (source, url) = start(&cfg);
    // Nobody drains yet: the first request fills the queue and waits for its acknowledgement.
    let first = body(&benign_bucket(T0));
    let (url1, first1) = (url.clone(), first.clone());
    let waiting = std::thread::spawn(move || post(&http_client(), &url1, first1));
    let deadline = Instant::now() + Duration::from_secs(30);
    while source.stats().accepted_requests < 1 {
        assert!(Instant::now() < deadline, "the first request never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    let client = http_client();
    let second = body(&benign_bucket(T0 + 15));
    let resp = client.post(&url).body(second.clone()).send().expect("sent");
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(source.stats().backpressured, 1);
    assert!(
        !waiting.is_finished(),
        "no answer before the pipeline took the records"
    );

    // The pipeline catches up: the first request is answered, and the refused one's retry is new.
    let drainer = Drainer::start(source);
    assert_eq!(waiting.join().expect("first request").0, 200);
    assert_eq!(post(&client, &url, second).0, 200);
    let (got, stats) = drainer.finish();
    assert_eq!(got.len(), 8);
    assert_eq!(stats.duplicates, 0);
}

#[test]
fn a_pending_request_gets_503_when_the_receiver_stops() {
    let (source, url) = start(&local_config());
    let waiting = std::thread::spawn(move || post(&http_client(), &url, body(&benign_bucket(T0))));
    let deadline = Instant::now() + Duration::from_secs(30);
    while source.stats().accepted_requests < 1 {
        assert!(Instant::now() < deadline, "the request never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(source);
    assert_eq!(
        waiting.join().expect("request").0,
        503,
        "never 200 for records the pipeline did not take"
    );
}

#[test]
fn bearer_token_paths_and_methods() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let cfg = GoldmaneHttpConfig {
        bearer_token_file: Some(token_file),
        ..local_config()
    };
    let (source, url) = start(&cfg);
    let drainer = Drainer::start(source);
    let client = http_client();
    let lines = body(&benign_bucket(T0));
    let resp = client.post(&url).body(lines.clone()).send().unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        resp.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let resp = client
        .post(&url)
        .bearer_auth("wrong-token!")
        .body(lines.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = client
        .post(&url)
        .bearer_auth("s3cret-token")
        .body(lines.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let other_path = url.replace(BULK_PATH, "/api/v1/flows");
    let resp = client
        .post(&other_path)
        .bearer_auth("s3cret-token")
        .body(lines.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let resp = client.get(&url).bearer_auth("s3cret-token").send().unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(
        resp.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let (got, _) = drainer.finish();
    assert_eq!(
        got.len(),
        4,
        "only the authorised request reached the pipeline"
    );
}

#[test]
fn tls_with_client_certificates() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "flowwarden test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "goldmane");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    // A client certificate from another CA must be refused too.
    let rogue_ca_key = KeyPair::generate().unwrap();
    let mut rogue_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    rogue_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let rogue_ca = rogue_params.self_signed(&rogue_ca_key).unwrap();
    let rogue_key = KeyPair::generate().unwrap();
    let mut rogue_client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    rogue_client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let rogue_client = rogue_client_params
        .signed_by(&rogue_key, &rogue_ca, &rogue_ca_key)
        .unwrap();

    let cfg = GoldmaneHttpConfig {
        tls_cert: Some(write("server.crt", &server.pem())),
        tls_key: Some(write("server.key", &server_key.serialize_pem())),
        client_ca: Some(write("ca.crt", &ca.pem())),
        ..local_config()
    };
    let source = GoldmaneHttpSource::start(&cfg, 1 << 20).expect("TLS receiver starts");
    let url = format!(
        "https://127.0.0.1:{}{BULK_PATH}",
        source.local_addr().port()
    );
    let drainer = Drainer::start(source);

    let ca_cert = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let tls_client = |identity: Option<String>| {
        let mut b = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca_cert.clone())
            .timeout(Duration::from_secs(30));
        if let Some(pem) = identity {
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    };
    let lines = body(&benign_bucket(T0));

    let anonymous = tls_client(None).post(&url).body(lines.clone()).send();
    assert!(
        anonymous.is_err(),
        "a client without a certificate is refused: {anonymous:?}"
    );
    let rogue = tls_client(Some(rogue_client.pem() + &rogue_key.serialize_pem()))
        .post(&url)
        .body(lines.clone())
        .send();
    assert!(
        rogue.is_err(),
        "a certificate from another CA is refused: {rogue:?}"
    );
    let plain = http_client()
        .post(url.replace("https://", "http://"))
        .body(lines.clone())
        .send();
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP is not served on the TLS port"
    );
    let resp = tls_client(Some(client_cert.pem() + &client_key.serialize_pem()))
        .post(&url)
        .body(lines)
        .send()
        .expect("a client with a certificate from the CA gets through");
    assert_eq!(resp.status().as_u16(), 200);
    let (got, _) = drainer.finish();
    assert_eq!(
        got.len(),
        4,
        "only the authenticated request reached the pipeline"
    );
}

/// Simulator output in Goldmane format (every attack of the default mix), posted over HTTP in
/// request-sized chunks: the daemon's alerts equal `replay`'s on the same lines.
#[test]
fn simulated_goldmane_push_alerts_like_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("sim.ndjson");
    let out = Command::new(env!("CARGO_BIN_EXE_flowwarden"))
        .args([
            "generate",
            "--format",
            "goldmane",
            "--seed",
            "5",
            "--duration",
            "2h",
            "--out",
        ])
        .arg(&flows)
        .output()
        .expect("generate runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = std::fs::read_to_string(&flows)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // A last record a day later closes every simulated window in the daemon too (it does not close
    // open windows on SIGTERM; they would be checkpointed).
    let last_start = lines
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["start_time"].as_i64())
        .expect("a start_time");
    let closer = format!(
        r#"{{"Key":{{"source_name":"closer-*","source_namespace":"zz","source_type":1,"dest_name":"pub","dest_type":4,"dest_port":443,"proto":"tcp","reporter":1,"action":1}},"start_time":{},"end_time":{},"packets_out":1,"bytes_out":60,"num_connections_started":1}}"#,
        last_start + 86_400,
        last_start + 86_415
    );
    lines.push(closer);
    let all = dir.path().join("all.ndjson");
    std::fs::write(&all, lines.join("\n") + "\n").unwrap();

    let run_alerts = dir.path().join("run-alerts.jsonl");
    let run_cfg = dir.path().join("run.toml");
    std::fs::write(
        &run_cfg,
        format!(
            "[source]\nkind = \"goldmane-http\"\npoll_interval = \"20ms\"\n{COMMON_CONFIG}\n[alerts]\nstdout = false\nfile = {:?}\n",
            run_alerts
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&run_cfg);
    let client = http_client();
    let url = daemon.url();
    for chunk in lines.chunks(2000) {
        let (status, text) = post(&client, &url, body(chunk));
        assert_eq!(status, 200, "{text}");
    }
    daemon.stop();

    let replay_alerts = replay(dir.path(), &all);
    // The closer's own window closes only at replay's end of input.
    let before_closer = |path: &Path| -> BTreeSet<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|a| {
                a["window_start"]
                    .as_i64()
                    .is_some_and(|s| s < last_start + 86_400)
            })
            .filter_map(|a| a["id"].as_str().map(str::to_string))
            .collect()
    };
    let from_replay = before_closer(&replay_alerts);
    assert!(
        !from_replay.is_empty(),
        "the simulated attacks raise alerts"
    );
    assert_eq!(
        before_closer(&run_alerts),
        from_replay,
        "HTTP push alerts exactly like replay"
    );
}
