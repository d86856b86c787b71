//! Helpers shared by the operations tests: synthetic Calico flow lines, a daemon child process with
//! its log in a file, a plain HTTP/1.1 GET, metric parsing, and bounded waits.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Start of the synthetic traffic (a multiple of 15 s).
pub const T0: i64 = 1_700_000_010;
/// Window length the tests configure.
pub const WINDOW: i64 = 15;
/// Longest any wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// One Calico flow-log line from `src` (a pod workload in namespace `shop`) to `dst` on `port`.
pub fn flow_line(t: i64, src: &str, dst: &str, port: u16, action: &str, bytes: u64) -> String {
    format!(
        concat!(
            "{{\"start_time\":{t},\"end_time\":{e},\"source_ip\":null,\"source_name\":\"-\",",
            "\"source_name_aggr\":\"{src}-*\",\"source_namespace\":\"shop\",\"source_type\":\"wep\",",
            "\"dest_ip\":null,\"dest_name\":\"-\",\"dest_name_aggr\":\"{dst}-*\",\"dest_namespace\":\"shop\",",
            "\"dest_type\":\"wep\",\"dest_port\":{port},\"proto\":\"tcp\",\"action\":\"{action}\",",
            "\"reporter\":\"src\",\"bytes_in\":{bi},\"bytes_out\":{bytes},\"packets_in\":3,\"packets_out\":3,",
            "\"num_flows\":1,\"num_flows_started\":1,\"num_flows_completed\":1}}\n"
        ),
        t = t,
        e = t + WINDOW,
        src = src,
        dst = dst,
        port = port,
        action = action,
        bytes = bytes,
        bi = bytes / 2,
    )
}

/// Ordinary traffic for window `w`: a few steady conversations.
pub fn normal_window(w: i64) -> String {
    let t = T0 + w * WINDOW;
    let mut s = String::new();
    for (src, dst, port) in [
        ("web", "api", 8080),
        ("api", "db", 5432),
        ("api", "cache", 6379),
    ] {
        s.push_str(&flow_line(
            t,
            src,
            dst,
            port,
            "allow",
            2000 + (w as u64 % 3) * 10,
        ));
    }
    s
}

/// `ports` denied connections from `scanner` to distinct ports of `db` in window `w`.
pub fn scan_window(w: i64, scanner: &str, ports: u16) -> String {
    let t = T0 + w * WINDOW;
    (0..ports)
        .map(|i| flow_line(t, scanner, "db", 1000 + i, "deny", 60))
        .collect()
}

/// Appends text to a file (creating it).
pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
    f.flush().expect("flush");
}

/// A free local TCP port (bound then released; good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET path` over plain HTTP/1.1: (status, body), or `None` when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Sum of the samples of `name` whose labels contain every `k="v"` in `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric_name, label_part) = match key.split_once('{') {
            Some((n, l)) => (n, l),
            None => (key, ""),
        };
        if metric_name != name || !labels.iter().all(|l| label_part.contains(l)) {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Polls `f` until it returns `Some` or [`WAIT`] passes.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `flowwarden run` child; killed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub metrics: SocketAddr,
}

impl Daemon {
    /// Starts `flowwarden run --config config`, stderr (JSON logs) to `log`.
    pub fn start(config: &Path, log: &Path, metrics_port: u16) -> Daemon {
        let err = std::fs::File::create(log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_flowwarden"))
            .args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn flowwarden run");
        Daemon {
            child,
            log: log.to_path_buf(),
            metrics: SocketAddr::from(([127, 0, 0, 1], metrics_port)),
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/healthz` answers.
    pub fn wait_healthy(&mut self) {
        wait_for("/healthz", || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("daemon exited early ({status}):\n{}", self.log_text());
            }
            http_get(self.metrics, "/healthz").filter(|(s, _)| *s == 200)
        });
    }

    /// The `/metrics` text.
    pub fn scrape(&self) -> String {
        http_get(self.metrics, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// Records decoded so far (`flowwarden_records_total`, all sources).
    pub fn records(&self) -> f64 {
        metric(&self.scrape(), "flowwarden_records_total", &[]).unwrap_or(0.0)
    }

    /// Waits until at least `n` records were decoded.
    pub fn wait_records(&mut self, n: usize) {
        let log = self.log.clone();
        wait_for(&format!("{n} records (log: {})", log.display()), || {
            (self.records() >= n as f64).then_some(())
        });
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        wait_for(&format!("log line {needle:?}"), || {
            self.log_text().contains(needle).then_some(())
        });
    }

    /// Sends a signal by name (`TERM`, `HUP`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_for("daemon exit", || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A daemon config following `flows`, with alerts to `alerts` and metrics on `port`.
pub fn daemon_config(flows: &Path, alerts: &Path, port: u16, extra: &str) -> String {
    format!(
        r#"[source]
kind = "file"
paths = [{flows:?}]
follow = true
poll_interval = "50ms"

[pipeline]
threads = 1

[window]
length = "15s"
allowed_lateness = "0s"

[alerts]
stdout = false
file = {alerts:?}

[metrics]
listen = "127.0.0.1:{port}"

[daemon]
shutdown_timeout = "20s"
{extra}
"#,
        flows = flows.display().to_string(),
        alerts = alerts.display().to_string(),
    )
}

/// Alerts in a JSON-lines file (empty when absent).
pub fn read_alerts(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
