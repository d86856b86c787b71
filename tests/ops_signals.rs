//! Signals on `flowwarden run`: SIGTERM stops cleanly (exit 0) and a restart loses nothing; SIGHUP
//! reloads thresholds, and a bad config on SIGHUP keeps the old one and says why.

mod ops_common;
use ops_common::*;
use std::collections::BTreeSet;
use std::path::Path;

/// Workloads with a port-scan alert.
fn port_scanners(alerts: &Path) -> BTreeSet<String> {
    read_alerts(alerts)
        .iter()
        .filter(|a| a["detector"] == "port_scan")
        .filter_map(|a| a["workload"].as_str().map(str::to_string))
        .collect()
}

/// Alert ids in a file.
fn ids(alerts: &Path) -> BTreeSet<String> {
    read_alerts(alerts)
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn sigterm_exits_zero_and_a_restart_loses_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let flows = dir.path().join("flows.jsonl");
    let config = dir.path().join("flowwarden.toml");
    let port = free_port();
    let checkpoint = dir.path().join("checkpoint");
    let extra = format!(
        "[checkpoint]\ndir = {:?}\ninterval = \"1h\"\n",
        checkpoint.display().to_string()
    );
    let write_config = |alerts: &Path| {
        std::fs::write(&config, daemon_config(&flows, alerts, port, &extra)).expect("config");
    };

    // Run 1: windows 0-8, a port scan in window 6.
    let part1: String = (0..9)
        .map(|w| {
            if w == 6 {
                normal_window(w) + &scan_window(w, "scanner-a", 40)
            } else {
                normal_window(w)
            }
        })
        .collect();
    append(&flows, &part1);
    let run1 = dir.path().join("alerts-1.jsonl");
    write_config(&run1);
    let mut d = Daemon::start(&config, &dir.path().join("run1.log"), port);
    d.wait_healthy();
    d.wait_records(part1.lines().count());
    d.signal("TERM");
    let status = d.wait_exit();
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}:\n{}",
        d.log_text()
    );
    assert!(
        d.log_text().contains("flowwarden stopped"),
        "{}",
        d.log_text()
    );
    // The interval is an hour: only the shutdown path can have written it.
    assert!(
        checkpoint.join("checkpoint.bin").exists(),
        "SIGTERM must leave a checkpoint in {}",
        checkpoint.display()
    );
    drop(d);

    // While it is down: windows 9-14 with a second scan in window 12, then a record far enough
    // ahead that every window before it closes.
    let part2: String = (9..15)
        .map(|w| {
            if w == 12 {
                normal_window(w) + &scan_window(w, "scanner-b", 40)
            } else {
                normal_window(w)
            }
        })
        .chain([normal_window(20)])
        .collect();
    append(&flows, &part2);

    // Run 2 resumes from the checkpoint: file offsets, baselines and open windows.
    let run2 = dir.path().join("alerts-2.jsonl");
    write_config(&run2);
    let mut d = Daemon::start(&config, &dir.path().join("run2.log"), port);
    d.wait_healthy();
    d.wait_records(part2.lines().count());
    // Window 19 closes once window 20's record is in: wait for that record's batch to be done.
    wait_for("scanner-b alert", || {
        port_scanners(&run2)
            .contains("shop/scanner-b-*")
            .then_some(())
    });
    d.signal("TERM");
    assert!(d.wait_exit().success(), "{}", d.log_text());
    assert!(
        d.log_text().contains("resumed from checkpoint"),
        "run 2 must resume from run 1's checkpoint:\n{}",
        d.log_text()
    );
    // Resumed at run 1's file offset: scanner-a's window is not read (nor alerted) again.
    assert!(
        !port_scanners(&run2).contains("shop/scanner-a-*"),
        "run 2 re-read what run 1 had checkpointed"
    );

    // Everything a one-shot replay of the whole file alerts on (windows before 20) was alerted on
    // by run 1 or run 2.
    let reference = dir.path().join("reference.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowwarden"))
        .args(["replay", "--config"])
        .arg(&config)
        .arg("--alerts")
        .arg(&reference)
        .arg(&flows)
        .output()
        .expect("replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let closed_before = T0 + 20 * WINDOW;
    let expected: BTreeSet<String> = read_alerts(&reference)
        .iter()
        .filter(|a| {
            a["window_start"]
                .as_i64()
                .is_some_and(|s| s < closed_before)
        })
        .filter_map(|a| a["id"].as_str().map(str::to_string))
        .collect();
    let scanners = port_scanners(&reference);
    assert!(
        scanners.contains("shop/scanner-a-*") && scanners.contains("shop/scanner-b-*"),
        "{scanners:?}"
    );
    let seen: BTreeSet<String> = ids(&run1).union(&ids(&run2)).cloned().collect();
    let lost: Vec<&String> = expected.difference(&seen).collect();
    assert!(lost.is_empty(), "alerts lost across the restart: {lost:?}");
}

#[test]
fn sighup_reloads_thresholds_and_keeps_the_old_config_when_the_new_one_is_bad() {
    let dir = tempfile::tempdir().expect("tmp");
    let flows = dir.path().join("flows.jsonl");
    let alerts = dir.path().join("alerts.jsonl");
    let config = dir.path().join("flowwarden.toml");
    let port = free_port();
    let with_threshold = |t: &str| {
        daemon_config(
            &flows,
            &alerts,
            port,
            &format!("[detect.port_scan]\ndistinct_denied_ports = {t}\n"),
        )
    };
    std::fs::write(&config, with_threshold("50")).expect("config");

    // 20 denied ports: below the first threshold (50).
    let part1: String = (0..6)
        .map(|w| {
            if w == 4 {
                normal_window(w) + &scan_window(w, "scanner-a", 20)
            } else {
                normal_window(w)
            }
        })
        .collect();
    append(&flows, &part1);
    let mut d = Daemon::start(&config, &dir.path().join("daemon.log"), port);
    d.wait_healthy();
    d.wait_records(part1.lines().count());

    // Lower the threshold to 10 and reload: the same scan now alerts.
    std::fs::write(&config, with_threshold("10")).expect("config");
    d.signal("HUP");
    d.wait_log("configuration reloaded");
    let part2: String = (6..10)
        .map(|w| {
            if w == 7 {
                normal_window(w) + &scan_window(w, "scanner-b", 20)
            } else {
                normal_window(w)
            }
        })
        .collect();
    append(&flows, &part2);
    let mut total = part1.lines().count() + part2.lines().count();
    d.wait_records(total);

    // A bad value: the reload fails, says which key, and threshold 10 stays in force.
    std::fs::write(&config, with_threshold("\"many\"")).expect("config");
    d.signal("HUP");
    d.wait_log("reload failed");
    let log = d.log_text();
    assert!(
        log.contains("detect.port_scan.distinct_denied_ports"),
        "the error names the key:\n{log}"
    );
    let part3: String = (10..14)
        .map(|w| {
            if w == 11 {
                normal_window(w) + &scan_window(w, "scanner-c", 20)
            } else {
                normal_window(w)
            }
        })
        .collect();
    append(&flows, &part3);
    total += part3.lines().count();
    d.wait_records(total);
    wait_for("scanner-c alert", || {
        port_scanners(&alerts)
            .contains("shop/scanner-c-*")
            .then_some(())
    });
    let reloads = d.scrape();
    assert_eq!(
        metric(
            &reloads,
            "flowwarden_config_reloads_total",
            &["result=\"ok\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &reloads,
            "flowwarden_config_reloads_total",
            &["result=\"error\""]
        ),
        Some(1.0)
    );

    d.signal("TERM");
    assert!(d.wait_exit().success(), "{}", d.log_text());
    let scanners = port_scanners(&alerts);
    assert!(
        !scanners.contains("shop/scanner-a-*"),
        "scanner-a was below the first threshold: {scanners:?}"
    );
    assert!(
        scanners.contains("shop/scanner-b-*"),
        "reloaded threshold applies: {scanners:?}"
    );
    assert!(
        scanners.contains("shop/scanner-c-*"),
        "bad reload keeps the previous threshold: {scanners:?}"
    );
}
