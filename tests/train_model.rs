//! `flowwarden train` writes a model; `replay --model` starts warm from it: a lateral movement in
//! the very first hour of a new file (before a cold pipeline's warm-up ends) is alerted only when the
//! model is loaded.

use std::path::Path;
use std::process::Command;

fn flowwarden(args: &[&str], dir: &Path) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_flowwarden"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("flowwarden runs");
    assert!(
        out.status.success(),
        "flowwarden {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn alerts(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert is JSON"))
        .collect()
}

#[test]
fn a_trained_model_starts_replay_warm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let day = 86_400u64;
    let start = 1_748_822_400u64; // the simulator's default start (a Monday)
                                  // History: one benign day.
    flowwarden(
        &[
            "generate",
            "--seed",
            "11",
            "--duration",
            "1d",
            "--no-attacks",
            "--no-surprises",
            "--out",
            "history.jsonl",
        ],
        d,
    );
    flowwarden(&["train", "history.jsonl", "--out", "models/test"], d);
    assert!(d.join("models/test/model.bin").exists());
    // New data, the next day: lateral movement 20 minutes in.
    let next = (start + day).to_string();
    flowwarden(
        &[
            "generate",
            "--seed",
            "11",
            "--duration",
            "2h",
            "--start",
            &next,
            "--no-surprises",
            "--attack",
            "lateral-movement:start=20m,duration=30m",
            "--out",
            "today.jsonl",
        ],
        d,
    );
    flowwarden(&["replay", "today.jsonl", "--alerts", "cold.jsonl"], d);
    flowwarden(
        &[
            "replay",
            "today.jsonl",
            "--model",
            "models/test",
            "--alerts",
            "warm.jsonl",
        ],
        d,
    );
    let new_peer =
        |v: &[serde_json::Value]| v.iter().filter(|a| a["detector"] == "new_peer").count();
    let cold = alerts(&d.join("cold.jsonl"));
    let warm = alerts(&d.join("warm.jsonl"));
    assert_eq!(
        new_peer(&cold),
        0,
        "a cold pipeline is still warming up 20 minutes in"
    );
    assert!(
        new_peer(&warm) >= 1,
        "the model's baselines know the usual peers: {warm:?}"
    );
}
