//! The fast path end to end: the daemon following a file raises an early (provisional) port-scan
//! alert while the scan's window is still open, and the set of early alerts of a replay does not
//! depend on the batch size or the thread count.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flowwarden");

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fw-fast-path-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// One denied probe of `port` from `scanner`, in a 300 s window starting at `t`.
fn probe(scanner: &str, port: u16, t: i64) -> String {
    format!(
        concat!(
            r#"{{"start_time":{t},"end_time":{e},"action":"deny","bytes_in":0,"bytes_out":60,"#,
            r#""dest_ip":"10.9.0.1","dest_name":"-","dest_name_aggr":"db-*","dest_namespace":"shop","#,
            r#""dest_port":{port},"dest_type":"wep","num_flows":1,"num_flows_completed":1,"#,
            r#""num_flows_started":1,"packets_in":0,"packets_out":1,"proto":"tcp","reporter":"src","#,
            r#""source_ip":"10.9.1.7","source_name":"-","source_name_aggr":"{scanner}-*","#,
            r#""source_namespace":"shop","source_type":"wep"}}"#
        ),
        t = t,
        e = t + 300,
        port = port,
        scanner = scanner
    )
}

#[test]
fn the_daemon_raises_an_early_alert_while_the_window_is_open() {
    let dir = tempdir("follow");
    let flows = dir.join("flows.log");
    std::fs::write(&flows, "").expect("flows file");
    let config = dir.join("flowwarden.toml");
    std::fs::write(
        &config,
        format!(
            concat!(
                "[source]\nkind = \"file\"\npaths = [{:?}]\nfollow = true\n\n",
                "[window]\nlength = \"300s\"\n\n[metrics]\nenabled = false\n\n",
                "[respond]\nenabled = false\n"
            ),
            flows.display().to_string()
        ),
    )
    .expect("config");
    let mut child = Command::new(BIN)
        .args(["run", "--log-format", "json", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn daemon");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // All probes share one window and nothing later arrives, so the window cannot close: only the
    // fast path can alert.
    let t0 = 1_700_000_100;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&flows)
        .expect("open flows");
    for port in 1..=40u16 {
        writeln!(f, "{}", probe("scanner", port, t0)).expect("write probe");
    }
    f.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut early = None;
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let alert: serde_json::Value = serde_json::from_str(&line).expect("alert JSON");
        assert_eq!(
            alert["provisional"], true,
            "only early alerts can come from an open window: {line}"
        );
        early = Some(alert);
        break;
    }
    let _ = child.kill();
    let _ = child.wait();
    let alert = early.expect("an early alert within 120 s");
    assert_eq!(alert["detector"], "port_scan");
    assert_eq!(alert["source_name_aggr"], "scanner-*");
    assert_eq!(alert["window_start"], t0);
    // The crossing record is the 15th distinct denied port (the default threshold).
    assert_eq!(alert["observed"], 15.0);
    let _ = std::fs::remove_dir_all(&dir);
}

fn replay(dir: &Path, input: &str, out: &str, extra: &[&str]) {
    let status = Command::new(BIN)
        .current_dir(dir)
        .args(["replay", "--log-format", "json", input, "--alerts", out])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("replay");
    assert!(status.success(), "replay {extra:?} failed");
}

fn early_alerts(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("alerts")
        .lines()
        .filter(|l| l.contains("\"provisional\":true"))
        .map(str::to_string)
        .collect()
}

#[test]
fn early_alerts_do_not_depend_on_batch_size_or_threads() {
    let dir = tempdir("determinism");
    let status = Command::new(BIN)
        .current_dir(&dir)
        .args([
            "generate",
            "--seed",
            "7",
            "--duration",
            "1d",
            "--out",
            "sim.jsonl",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("generate");
    assert!(status.success());
    std::fs::write(dir.join("small.toml"), "[input]\nbatch_lines = 7\n").expect("config");
    replay(&dir, "sim.jsonl", "a.jsonl", &["--threads", "1"]);
    replay(
        &dir,
        "sim.jsonl",
        "b.jsonl",
        &["--threads", "2", "--config", "small.toml"],
    );
    let a = early_alerts(&dir.join("a.jsonl"));
    let b = early_alerts(&dir.join("b.jsonl"));
    assert!(
        !a.is_empty(),
        "the default attack mix has scans the fast path must see"
    );
    assert_eq!(a, b, "same early alerts, same order, same evidence");
    // Every early alert is confirmed at close: a final alert with the same id follows it, or an
    // earlier final alert of the same detector and workload is still open (suppression).
    let all = std::fs::read_to_string(dir.join("a.jsonl")).expect("alerts");
    for e in &a {
        let v: serde_json::Value = serde_json::from_str(e).expect("json");
        let confirmed = all.lines().any(|l| {
            !l.contains("\"provisional\":true")
                && serde_json::from_str::<serde_json::Value>(l)
                    .is_ok_and(|f| f["detector"] == v["detector"] && f["workload"] == v["workload"])
        });
        assert!(confirmed, "early alert without a final one: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
