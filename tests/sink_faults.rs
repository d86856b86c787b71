//! Slow and failing outputs against the real binary: a webhook that stalls then fails, an alert file
//! whose path breaks, a checkpoint directory that cannot be written, a Kafka broker out of reach.
//! In each case the daemon logs and counts the fault, reports `/readyz` degraded, keeps what it has
//! not delivered (a stalled sink pauses the input instead of buffering), and catches up when the
//! fault clears: the alerts delivered are the alerts `replay` raises for the same input, and every
//! record is processed once.
//!
//! Each fault lasts `FLOWWARDEN_FAULT_SECS` seconds (default 5, enough for CI); the 60 s
//! stall / broker outage is the same test with `FLOWWARDEN_FAULT_SECS=60`. Root bypasses file
//! permissions, so "unwritable" is made by putting a directory where a file must be written
//! (the alert file; the checkpoint's temp file), which fails for root and non-root alike. "Full"
//! is a real ENOSPC on a 2 MB tmpfs the test mounts (skipped, saying so, where mounting is not
//! allowed).

mod kafka_support;
mod ops_common;

use ops_common::{
    append, free_port, http_get, metric, normal_window, read_alerts, scan_window, wait_for, Daemon,
    T0, WINDOW,
};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long each injected fault lasts.
fn fault() -> Duration {
    let secs = std::env::var("FLOWWARDEN_FAULT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    Duration::from_secs(secs)
}

/// Windows `range` of normal traffic with a 40-port scan by `scanner-<w>` in every window of
/// `scans`.
fn traffic(range: std::ops::Range<i64>, scans: &[i64]) -> String {
    range
        .map(|w| {
            let mut s = normal_window(w);
            if scans.contains(&w) {
                s.push_str(&scan_window(w, &format!("scanner-{w}"), 40));
            }
            s
        })
        .collect()
}

/// A daemon config reading `flows` (followed or read to its end) with alerts to `alerts` (when
/// given) and metrics on `port`. Delivery is compared with replay's window-close alerts in order,
/// so early (fast-path) alerts, which a followed file also raises for still-open windows, are off.
fn config(flows: &Path, alerts: Option<&Path>, port: u16, follow: bool, extra: &str) -> String {
    let file = alerts
        .map(|a| format!("file = {:?}\n", a.display().to_string()))
        .unwrap_or_default();
    format!(
        "[source]\nkind = \"file\"\npaths = [{flows:?}]\nfollow = {follow}\npoll_interval = \"50ms\"\n\n\
         [pipeline]\nthreads = 1\n\n[window]\nlength = \"15s\"\nallowed_lateness = \"0s\"\n\n\
         [detect.fast_path]\nenabled = false\n\n\
         [alerts]\nstdout = false\n{file}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [daemon]\nshutdown_timeout = \"{bound}s\"\n\n\
         [delivery]\nretry_initial = \"50ms\"\nretry_max = \"500ms\"\nstall_after = \"1s\"\n{extra}\n",
        flows = flows.display().to_string(),
        bound = fault().as_secs() + 60,
    )
}

/// Alert ids (in order) and the record count that `replay` gives for `flows` under `config`.
fn replay(config: &Path, flows: &Path, dir: &Path) -> (Vec<String>, u64) {
    let alerts = dir.join("replay-alerts.jsonl");
    let summary = dir.join("replay-summary.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowwarden"))
        .args(["replay", "--config"])
        .arg(config)
        .arg("--alerts")
        .arg(&alerts)
        .arg("--summary-json")
        .arg(&summary)
        .arg(flows)
        .output()
        .expect("replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary")).expect("json");
    (
        ids(&read_alerts(&alerts)),
        summary["records"].as_u64().expect("records"),
    )
}

fn ids(alerts: &[serde_json::Value]) -> Vec<String> {
    alerts
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_string))
        .collect()
}

/// Ids of alerts whose window starts before window `w` (the windows a followed file has closed).
fn before_window(alerts: &[serde_json::Value], w: i64) -> Vec<String> {
    let limit = T0 + w * WINDOW;
    let closed: Vec<serde_json::Value> = alerts
        .iter()
        .filter(|a| a["window_start"].as_i64().is_some_and(|s| s < limit))
        .cloned()
        .collect();
    ids(&closed)
}

/// Fields of the daemon's JSON log lines whose message is `message`.
fn log_events(log: &str, message: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .map(|v| v["fields"].clone())
        .collect()
}

/// Records (decoded + rejected) of the final "flowwarden stopped" line.
/// Starts the daemon again on `config` and checks it resumed from a checkpoint covering `records`.
fn assert_restart_resumes_at(config: &Path, dir: &Path, port: u16, records: u64) {
    let mut again = Daemon::start(config, &dir.join("again.log"), port);
    again.wait_healthy();
    again.wait_log("resumed from checkpoint");
    let resumed = log_events(&again.log_text(), "resumed from checkpoint");
    assert_eq!(resumed[0]["records"].as_u64(), Some(records));
    again.signal("TERM");
    assert!(again.wait_exit().success(), "{}", again.log_text());
}

fn stopped_records(log: &str) -> u64 {
    let e = log_events(log, "flowwarden stopped");
    let last = e.last().unwrap_or_else(|| panic!("no final stats:\n{log}"));
    last["records"].as_u64().unwrap_or(0) + last["bad"].as_u64().unwrap_or(0)
}

/// `/readyz`: (status, body).
fn readyz(d: &Daemon) -> (u16, String) {
    http_get(d.metrics, "/readyz").unwrap_or((0, String::new()))
}

fn rss_kb(d: &Daemon) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", d.child.id()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A webhook receiver: holds every request while stalled, then answers `failures` requests with
/// 503 and the rest with 200, recording the alert ids it accepted in order.
struct Webhook {
    url: String,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

struct Gate {
    stalled: bool,
    failures: usize,
    accepted: Vec<String>,
}

impl Webhook {
    fn start(failures: usize) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/alerts", listener.local_addr().expect("addr"));
        let gate = Arc::new((
            Mutex::new(Gate {
                stalled: true,
                failures,
                accepted: Vec::new(),
            }),
            Condvar::new(),
        ));
        let g = Arc::clone(&gate);
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let g = Arc::clone(&g);
                std::thread::spawn(move || serve(conn, &g));
            }
        });
        Webhook { url, gate }
    }

    fn release(&self) {
        let (m, cv) = &*self.gate;
        m.lock().expect("lock").stalled = false;
        cv.notify_all();
    }

    fn accepted(&self) -> Vec<String> {
        self.gate.0.lock().expect("lock").accepted.clone()
    }
}

/// One keep-alive connection: request after request.
fn serve(conn: TcpStream, gate: &(Mutex<Gate>, Condvar)) {
    let mut out = match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if first {
                first = false;
                continue;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (m, cv) = gate;
        let mut g = m.lock().expect("lock");
        while g.stalled {
            g = cv.wait(g).expect("wait");
        }
        let status = if g.failures > 0 {
            g.failures -= 1;
            "503 Service Unavailable"
        } else {
            let v: serde_json::Value = serde_json::from_slice(&body).expect("alert json");
            g.accepted
                .push(v["id"].as_str().expect("alert id").to_string());
            "200 OK"
        };
        drop(g);
        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn a_stalled_then_failing_webhook_pauses_the_input_and_gets_every_alert_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let flows = dir.path().join("flows.jsonl");
    let input = traffic(0..40, &[3, 6, 9, 12, 15, 18, 21, 24, 27, 30]);
    append(&flows, &input);
    let hook = Webhook::start(3);
    let port = free_port();
    // Small batches and a queue of 2 so the stall reaches the input quickly; the request timeout
    // outlasts the stall, so a held request is one delivery, not a timeout and a duplicate.
    let extra = format!(
        "max_pending = 2\n\n[input]\nbatch_lines = 20\n\n[webhook]\nurl = {:?}\ntimeout = \"{}s\"\n",
        hook.url,
        fault().as_secs() + 60
    );
    let cfg_path = dir.path().join("flowwarden.toml");
    std::fs::write(&cfg_path, config(&flows, None, port, false, &extra)).expect("config");
    let (expected, records) = replay(&cfg_path, &flows, dir.path());
    assert!(
        expected.len() >= 8,
        "the input must raise alerts: {expected:?}"
    );
    assert_eq!(records as usize, input.lines().count());

    let mut d = Daemon::start(&cfg_path, &dir.path().join("daemon.log"), port);
    // The queue is full and the loop waits in front of it: the input is paused.
    d.wait_log("alert queue full");
    wait_for("readyz degraded", || {
        let (status, body) = readyz(&d);
        (status == 503 && body.contains("degraded") && body.contains("webhook")).then_some(())
    });
    let scrape = d.scrape();
    let pending = metric(&scrape, "flowwarden_sink_pending", &["sink=\"webhook\""]);
    assert!(pending.unwrap_or(0.0) >= 2.0, "{scrape}");
    let (records_at_stall, rss_at_stall) = (d.records(), rss_kb(&d));
    std::thread::sleep(fault());
    let (records_after, rss_after) = (d.records(), rss_kb(&d));
    eprintln!(
        "stall: records {records_at_stall} -> {records_after} of {records}, rss {rss_at_stall} -> {rss_after} kB"
    );
    assert_eq!(
        records_at_stall, records_after,
        "a stalled sink must pause the input"
    );
    assert!(
        (records_after as u64) < records,
        "the stall must hit before the end of the input"
    );
    assert!(
        rss_after <= rss_at_stall + 16 * 1024,
        "memory grew during the stall: {rss_at_stall} -> {rss_after} kB"
    );
    assert!(
        stalled_seconds(&d.scrape(), "webhook") >= 1.0,
        "flowwarden_sink_stalled_seconds must show the stall"
    );

    hook.release();
    let status = d.wait_exit();
    let log = d.log_text();
    assert!(status.success(), "{log}");
    assert_eq!(hook.accepted(), expected, "every alert once, in order");
    assert_eq!(stopped_records(&log), records, "every record processed");
    let failures: Vec<_> = log_events(&log, "sink failed; retrying")
        .into_iter()
        .filter(|e| e["sink"] == "webhook")
        .collect();
    assert_eq!(failures.len(), 3, "each 503 is logged and retried:\n{log}");
    assert!(!log_events(&log, "sink recovered").is_empty(), "{log}");
}

fn stalled_seconds(scrape: &str, sink: &str) -> f64 {
    metric(
        scrape,
        "flowwarden_sink_stalled_seconds",
        &[&format!("sink=\"{sink}\"")],
    )
    .unwrap_or(0.0)
}

#[test]
fn an_alert_file_path_that_breaks_and_heals_loses_no_alert() {
    let dir = tempfile::tempdir().expect("tmp");
    let flows = dir.path().join("flows.jsonl");
    let alerts = dir.path().join("alerts.jsonl");
    let moved = dir.path().join("alerts.part1.jsonl");
    let port = free_port();
    let cfg_path = dir.path().join("flowwarden.toml");
    std::fs::write(&cfg_path, config(&flows, Some(&alerts), port, true, "")).expect("config");
    let part1 = traffic(0..9, &[3]);
    append(&flows, &part1);
    let mut d = Daemon::start(&cfg_path, &dir.path().join("daemon.log"), port);
    d.wait_healthy();
    wait_for("first alert in the file", || {
        (!read_alerts(&alerts).is_empty()).then_some(())
    });

    // The file moves away and a directory takes its path: every write now fails (also for root).
    std::fs::rename(&alerts, &moved).expect("move the alert file");
    std::fs::create_dir(&alerts).expect("directory in the way");
    let part2 = traffic(9..16, &[11, 13]) + &normal_window(20);
    append(&flows, &part2);
    let total = part1.lines().count() + part2.lines().count();
    d.wait_records(total);
    wait_for("file sink errors and readyz degraded", || {
        let errors = metric(
            &d.scrape(),
            "flowwarden_sink_errors_total",
            &["sink=\"file\""],
        );
        let (status, body) = readyz(&d);
        (errors.unwrap_or(0.0) >= 2.0 && status == 503 && body.contains("alert sink file"))
            .then_some(())
    });
    std::thread::sleep(fault());
    std::fs::remove_dir(&alerts).expect("heal the path");
    wait_for("readyz ready again", || (readyz(&d).0 == 200).then_some(()));
    wait_for("the held alerts in the new file", || {
        (read_alerts(&alerts).len() >= 2).then_some(())
    });
    d.signal("TERM");
    let status = d.wait_exit();
    let log = d.log_text();
    assert!(status.success(), "{log}");
    assert_eq!(stopped_records(&log), total as u64);

    let mut delivered = ids(&read_alerts(&moved));
    delivered.extend(ids(&read_alerts(&alerts)));
    let (_, _) = replay(&cfg_path, &flows, dir.path());
    let expected = before_window(&read_alerts(&dir.path().join("replay-alerts.jsonl")), 20);
    assert_eq!(
        delivered, expected,
        "every alert once, in order, across the break"
    );
}

#[test]
fn an_unwritable_checkpoint_directory_is_counted_and_retried_while_the_daemon_runs() {
    let dir = tempfile::tempdir().expect("tmp");
    let flows = dir.path().join("flows.jsonl");
    let alerts = dir.path().join("alerts.jsonl");
    let checkpoints = dir.path().join("checkpoints");
    let port = free_port();
    let cfg_path = dir.path().join("flowwarden.toml");
    let extra = format!(
        "\n[checkpoint]\ndir = {:?}\ninterval = \"200ms\"\n",
        checkpoints.display().to_string()
    );
    std::fs::write(&cfg_path, config(&flows, Some(&alerts), port, true, &extra)).expect("config");
    let part1 = traffic(0..6, &[]);
    append(&flows, &part1);
    let mut d = Daemon::start(&cfg_path, &dir.path().join("daemon.log"), port);
    d.wait_healthy();
    d.wait_records(part1.lines().count());
    let checkpoint = checkpoints.join("checkpoint.bin");
    wait_for("a first checkpoint", || checkpoint.exists().then_some(()));

    // The checkpoint's temp file cannot be created: a directory holds its name.
    let blocker = checkpoints.join("checkpoint.tmp");
    std::fs::create_dir(&blocker).expect("block the temp file");
    wait_for("checkpoint failures counted and readyz degraded", || {
        let failures = metric(&d.scrape(), "flowwarden_checkpoint_failures_total", &[]);
        let (status, body) = readyz(&d);
        (failures.unwrap_or(0.0) >= 2.0 && status == 503 && body.contains("checkpoint failed"))
            .then_some(())
    });
    // Still running: new input is processed while checkpoints fail.
    let part2 = traffic(6..12, &[8]) + &normal_window(20);
    append(&flows, &part2);
    let total = part1.lines().count() + part2.lines().count();
    d.wait_records(total);
    std::thread::sleep(fault());
    assert!(
        d.log_text()
            .contains("checkpoint failed; retrying at the next interval"),
        "{}",
        d.log_text()
    );
    std::fs::remove_dir(&blocker).expect("unblock");
    wait_for("readyz ready after a good checkpoint", || {
        (readyz(&d).0 == 200).then_some(())
    });
    d.signal("TERM");
    assert!(d.wait_exit().success(), "{}", d.log_text());
    drop(d);

    // The last checkpoint covers everything: a restart resumes at the full count.
    assert_restart_resumes_at(&cfg_path, dir.path(), port, total as u64);
}

#[test]
fn alerts_raised_while_the_kafka_broker_is_unreachable_land_after_it_returns() {
    if kafka_support::tansu_path().is_none() {
        eprintln!("SKIP alerts_raised_while_the_kafka_broker_is_unreachable_land_after_it_returns: tansu is not installed (scripts/install-tansu.sh)");
        return;
    }
    let broker = kafka_support::Broker::start(true);
    let brokers = broker.brokers();
    kafka_support::create_topic(&brokers, "alerts", 3);
    let dir = tempfile::tempdir().expect("tmp");
    let flows = dir.path().join("flows.jsonl");
    let port = free_port();
    let cfg_path = dir.path().join("flowwarden.toml");
    let extra = format!("\n[kafka]\nbootstrap_servers = {brokers:?}\nalerts_topic = \"alerts\"\n");
    std::fs::write(&cfg_path, config(&flows, None, port, true, &extra)).expect("config");
    let part1 = traffic(0..9, &[3]);
    append(&flows, &part1);
    let mut d = Daemon::start(&cfg_path, &dir.path().join("daemon.log"), port);
    d.wait_healthy();
    wait_for("first alert in the topic", || {
        (!kafka_support::alert_ids_in_topic(&brokers, "alerts").is_empty()).then_some(())
    });

    let proxy = broker.proxy.as_ref().expect("proxy");
    proxy.cut();
    let part2 = traffic(9..16, &[11, 13]) + &normal_window(20);
    append(&flows, &part2);
    let total = part1.lines().count() + part2.lines().count();
    d.wait_records(total);
    wait_for("readyz degraded by the kafka sink", || {
        let (status, body) = readyz(&d);
        (status == 503 && body.contains("alert sink kafka")).then_some(())
    });
    std::thread::sleep(fault());
    proxy.restore();

    let (_, _) = replay(&cfg_path, &flows, dir.path());
    let expected: BTreeSet<String> =
        before_window(&read_alerts(&dir.path().join("replay-alerts.jsonl")), 20)
            .into_iter()
            .collect();
    assert!(expected.len() >= 3, "{expected:?}");
    wait_for("every alert in the topic", || {
        let got = kafka_support::alert_ids_in_topic(&brokers, "alerts");
        expected.is_subset(&got).then_some(())
    });
    wait_for("readyz ready again", || (readyz(&d).0 == 200).then_some(()));
    d.signal("TERM");
    let status = d.wait_exit();
    let log = d.log_text();
    assert!(status.success(), "{log}");
    assert_eq!(stopped_records(&log), total as u64);
    assert_eq!(
        kafka_support::alert_ids_in_topic(&brokers, "alerts"),
        expected,
        "the topic holds exactly the alerts replay raises"
    );
}

#[test]
fn kafka_offsets_are_not_committed_while_checkpoints_fail() {
    if kafka_support::tansu_path().is_none() {
        eprintln!("SKIP kafka_offsets_are_not_committed_while_checkpoints_fail: tansu is not installed (scripts/install-tansu.sh)");
        return;
    }
    let broker = kafka_support::Broker::start(false);
    let brokers = broker.brokers();
    let dir = tempfile::tempdir().expect("tmp");
    let flows = dir.path().join("flows.jsonl");
    let input = traffic(0..8, &[3]);
    append(&flows, &input);
    let total = input.lines().count() as i64;
    kafka_support::produce(&brokers, &flows, "flows", 3);
    // The checkpoint's temp file is blocked from the start: no checkpoint can succeed.
    let checkpoints = dir.path().join("checkpoints");
    let blocker = checkpoints.join("checkpoint.tmp");
    std::fs::create_dir_all(&blocker).expect("block the temp file");
    let port = free_port();
    let cfg_path = dir.path().join("flowwarden.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[source]\nkind = \"kafka\"\n\n[alerts]\nstdout = false\n\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [checkpoint]\ndir = {:?}\ninterval = \"200ms\"\n\n\
             [kafka]\nbootstrap_servers = {brokers:?}\ntopics = [\"flows\"]\ngroup_id = \"g-cp\"\n",
            checkpoints.display().to_string()
        ),
    )
    .expect("config");
    let mut d = Daemon::start(&cfg_path, &dir.path().join("daemon.log"), port);
    d.wait_healthy();
    d.wait_records(total as usize);
    wait_for("checkpoint failures", || {
        let failures = metric(&d.scrape(), "flowwarden_checkpoint_failures_total", &[]);
        (failures.unwrap_or(0.0) >= 3.0).then_some(())
    });
    assert_eq!(
        kafka_support::committed_total(&brokers, "g-cp", "flows", 3),
        0,
        "offsets committed without a durable checkpoint"
    );
    std::thread::sleep(fault());
    std::fs::remove_dir(&blocker).expect("unblock");
    wait_for("offsets committed after the first good checkpoint", || {
        (kafka_support::committed_total(&brokers, "g-cp", "flows", 3) == total).then_some(())
    });
    d.signal("TERM");
    assert!(d.wait_exit().success(), "{}", d.log_text());
}

/// A small tmpfs mounted for one test and unmounted on drop (also when the test fails).
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    /// Mounts `size` of tmpfs at `at`; `None` when this process may not mount (not root, no
    /// CAP_SYS_ADMIN, no tmpfs).
    fn mount(at: &Path, size: &str) -> Option<SmallFs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallFs(at.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the filesystem holding `path` with one file until it is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

/// What a full filesystem is under.
#[derive(Clone, Copy, PartialEq)]
enum FullUnder {
    AlertFile,
    Checkpoints,
}

/// A small tmpfs holding the alert file or the checkpoint directory fills up mid-run (ENOSPC,
/// possibly after a partial write), then gets space back. (Checkpoints wait for the alerts they
/// cover, so the two faults are tested apart: a full disk under both shows as the sink fault.)
fn full_disk(under: FullUnder) {
    let test = "full disk";
    let dir = tempfile::tempdir().expect("tmp");
    let Some(fs) = SmallFs::mount(&dir.path().join("small"), "2m") else {
        eprintln!("SKIP {test}: cannot mount a tmpfs here (needs root)");
        return;
    };
    let flows = dir.path().join("flows.jsonl");
    let (alerts, checkpoints) = match under {
        FullUnder::AlertFile => (fs.0.join("alerts.jsonl"), dir.path().join("checkpoints")),
        FullUnder::Checkpoints => (dir.path().join("alerts.jsonl"), fs.0.join("checkpoints")),
    };
    let filler = fs.0.join("filler");
    let port = free_port();
    let cfg_path = dir.path().join("flowwarden.toml");
    let extra = format!(
        "\n[checkpoint]\ndir = {:?}\ninterval = \"200ms\"\n",
        checkpoints.display().to_string()
    );
    std::fs::write(&cfg_path, config(&flows, Some(&alerts), port, true, &extra)).expect("config");
    let part1 = traffic(0..9, &[3]);
    append(&flows, &part1);
    let mut d = Daemon::start(&cfg_path, &dir.path().join("daemon.log"), port);
    d.wait_healthy();
    wait_for("first alert and a checkpoint", || {
        (!read_alerts(&alerts).is_empty() && checkpoints.join("checkpoint.bin").exists())
            .then_some(())
    });

    fill(&filler);
    let part2 = traffic(9..16, &[10, 11, 12, 13, 14]) + &normal_window(20);
    append(&flows, &part2);
    let total = part1.lines().count() + part2.lines().count();
    d.wait_records(total);
    wait_for("ENOSPC counted and readyz degraded", || {
        let scrape = d.scrape();
        let (counted, why) = match under {
            FullUnder::AlertFile => (
                metric(&scrape, "flowwarden_sink_errors_total", &["sink=\"file\""]),
                "alert sink file",
            ),
            FullUnder::Checkpoints => (
                metric(&scrape, "flowwarden_checkpoint_failures_total", &[]),
                "checkpoint failed",
            ),
        };
        let (status, body) = readyz(&d);
        (counted.unwrap_or(0.0) >= 2.0 && status == 503 && body.contains(why)).then_some(())
    });
    assert!(
        d.log_text().contains("No space left on device"),
        "{}",
        d.log_text()
    );
    std::thread::sleep(fault());
    std::fs::remove_file(&filler).expect("free the space");
    wait_for("readyz ready again", || (readyz(&d).0 == 200).then_some(()));
    d.signal("TERM");
    let status = d.wait_exit();
    let log = d.log_text();
    assert!(status.success(), "{log}");
    assert_eq!(stopped_records(&log), total as u64);
    // Every line of the file parses (a torn write was rolled back) and the alerts are replay's.
    let text = std::fs::read_to_string(&alerts).expect("alerts");
    assert_eq!(
        text.lines().count(),
        read_alerts(&alerts).len(),
        "torn line:\n{text}"
    );
    let (_, _) = replay(&cfg_path, &flows, dir.path());
    let expected = before_window(&read_alerts(&dir.path().join("replay-alerts.jsonl")), 20);
    assert_eq!(ids(&read_alerts(&alerts)), expected);
    drop(d);
    if under == FullUnder::Checkpoints {
        // The last checkpoint, written after the space came back, covers every record.
        assert_restart_resumes_at(&cfg_path, dir.path(), port, total as u64);
    }
}

#[test]
fn a_full_disk_under_the_alert_file_loses_no_alert() {
    full_disk(FullUnder::AlertFile);
}

#[test]
fn a_full_disk_under_the_checkpoints_is_counted_and_retried() {
    full_disk(FullUnder::Checkpoints);
}
