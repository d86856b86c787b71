//! The README's first command: `flowwarden run` on the embedded default (a simulated cluster with
//! attacks). Its output must show a scan, the scan's alert, a dry-run quarantine of the scanner and
//! that quarantine's expiry, and end with the summary.

use std::collections::BTreeSet;
use std::process::Command;

#[test]
fn the_embedded_demo_shows_alert_dry_run_quarantine_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowwarden"))
        .args(["--log-format", "json", "run"])
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .output()
        .expect("flowwarden run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {}: {stderr}", out.status);

    let alerts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("stdout holds alerts as JSON lines"))
        .collect();
    let scanners: BTreeSet<String> = alerts
        .iter()
        .filter(|a| a["detector"] == "port_scan")
        .filter_map(|a| a["workload"].as_str().map(str::to_string))
        .collect();
    assert!(!scanners.is_empty(), "no port_scan alert in the demo");

    let decisions: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "quarantine decision")
        .map(|l| l["fields"].clone())
        .collect();
    let scanner_decisions = |decision: &str| {
        decisions
            .iter()
            .filter(|d| d["decision"] == decision)
            .filter(|d| scanners.contains(d["workload"].as_str().unwrap_or("")))
            .cloned()
            .collect::<Vec<_>>()
    };
    let quarantined = scanner_decisions("Quarantined");
    assert!(
        !quarantined.is_empty(),
        "no scanner was quarantined: {decisions:?}"
    );
    assert!(
        quarantined.iter().all(|d| d["dry_run"] == true),
        "the default is dry-run: {quarantined:?}"
    );
    assert!(
        !scanner_decisions("Expired").is_empty(),
        "a scanner's quarantine never expired: {decisions:?}"
    );
    assert!(stderr.contains("flowwarden demo:"), "no summary: {stderr}");
}
