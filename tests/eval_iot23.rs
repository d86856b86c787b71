//! `flowwarden eval` on the IoT-23 conversion (skipped when ../shared/data does not hold it): the
//! per-record scores must rank attack records above benign ones (ROC-AUC >= 0.95) and alerts must
//! name both heavily infected hosts.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flowwarden");
const MIN_ROC_AUC: f64 = 0.95;
const INFECTED: [&str; 2] = ["lan-192-168-100/host113-*", "lan-192-168-1/host195-*"];

#[test]
fn iot23_scores_rank_attacks_and_alerts_name_the_infected_hosts() {
    // FLOWWARDEN_SHARED_DATA points elsewhere (a worktree that is not beside shared/).
    let data = std::env::var_os("FLOWWARDEN_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")).into()
        });
    let (input, labels) = (data.join("iot23.jsonl"), data.join("iot23.labels.csv"));
    if !input.is_file() || !labels.is_file() {
        eprintln!(
            "SKIP iot23 eval: {} or {} is absent",
            input.display(),
            labels.display()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("eval.json");
    let out = Command::new(BIN)
        .args(["eval", "--log-format", "json", "--input"])
        .arg(&input)
        .arg("--labels")
        .arg(&labels)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run flowwarden eval");
    assert!(
        out.status.success(),
        "eval failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("eval JSON written")).expect("JSON");
    let overall = &report["scores"]["overall"];
    let auc = overall["roc_auc"].as_f64().expect("overall ROC-AUC");
    println!(
        "iot23: ROC-AUC {auc:.4}, PR-AUC {:.4}, {} positives / {} negatives; false alerts per workload-day {}",
        overall["pr_auc"].as_f64().unwrap_or(f64::NAN),
        overall["positives"],
        overall["negatives"],
        report["false_alerts"]["per_workload_day"]
    );
    assert!(
        overall["positives"].as_u64().unwrap_or(0) > 1000,
        "labels carry attacks"
    );
    assert!(
        auc >= MIN_ROC_AUC,
        "per-record ROC-AUC {auc:.4} < {MIN_ROC_AUC}"
    );
    let infected = report["hosts"]["infected"]
        .as_array()
        .expect("infected hosts");
    for host in INFECTED {
        let row = infected
            .iter()
            .find(|h| h["workload"] == host)
            .unwrap_or_else(|| panic!("{host} is not among the infected hosts: {infected:?}"));
        assert_eq!(row["named"], true, "no alert names {host}: {row}");
        println!("{host}: {} alerts by {}", row["alerts"], row["detectors"]);
    }
}
