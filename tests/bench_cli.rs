//! `flowwarden bench` through the real binary: `--warm-up` feeds one file through the pipeline
//! untimed and measures the next from the state it left (the per-record cost curve's protocol in
//! docs/performance.md), a warm-up file that cannot be read is an error naming it, and a measured
//! file behind the warm-up is counted and warned about.

use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_flowwarden");

/// Windows of five minutes, as `config/curve.toml` has them.
const WINDOW_S: i64 = 300;

/// `workloads` workloads, each sending two records a window to the next one in its namespace of
/// ten, over windows `first..first + windows` (a small `scripts/scale-input.py`).
fn write_flows(path: &Path, workloads: u64, first: i64, windows: i64) -> u64 {
    let mut text = String::new();
    let mut lines = 0;
    for w in first..first + windows {
        let start = 1_748_822_400 + w * WINDOW_S;
        for i in 0..workloads {
            let (ns, peer) = (i / 10, (i / 10) * 10 + (i % 10 + 1) % 10);
            for r in 0..2u64 {
                writeln!(
                    text,
                    r#"{{"start_time":{start},"end_time":{end},"source_name":"-","source_name_aggr":"app{i}-7d9c8b6f4-*","source_namespace":"ns{ns}","source_type":"wep","dest_name":"-","dest_name_aggr":"app{peer}-5f6b7c8d9-*","dest_namespace":"ns{ns}","dest_port":8080,"dest_type":"wep","proto":"tcp","action":"allow","reporter":"src","bytes_in":{bin},"bytes_out":{bout},"packets_in":2,"packets_out":3,"num_flows":1,"num_flows_started":1,"num_flows_completed":1}}"#,
                    end = start + WINDOW_S,
                    bin = 300 + 7 * r,
                    bout = 1000 + 13 * i + r,
                )
                .expect("write to a String");
                lines += 1;
            }
        }
    }
    std::fs::write(path, text).expect("write flows");
    lines
}

fn bench(dir: &Path, args: &[&str]) -> Output {
    std::fs::write(dir.join("bench.toml"), "[window]\nlength = \"300s\"\n").expect("config");
    Command::new(BIN)
        .current_dir(dir)
        .args([
            "bench",
            "--threads",
            "1",
            "--config",
            "bench.toml",
            "--json",
        ])
        .args(args)
        .output()
        .expect("run flowwarden bench")
}

/// [`bench`] that must succeed: its JSON report and its stderr.
fn bench_report(dir: &Path, args: &[&str]) -> (Value, String) {
    let out = bench(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report = serde_json::from_slice(&out.stdout).expect("one JSON document");
    (report, stderr)
}

#[test]
fn warm_up_input_is_processed_untimed_and_the_next_file_is_measured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warm = write_flows(&dir.path().join("warm.jsonl"), 40, 0, 4);
    let steady = write_flows(&dir.path().join("steady.jsonl"), 40, 4, 3);
    let (report, stderr) = bench_report(dir.path(), &["steady.jsonl", "--warm-up", "warm.jsonl"]);
    assert_eq!(report["records"].as_u64(), Some(steady));
    assert_eq!(report["warm_up_records"].as_u64(), Some(warm));
    // One pipeline saw both files: the warm-up's records, and windows it left open that the
    // measured file closed, are in its counters.
    let stats = &report["stats"];
    assert_eq!(stats["records"].as_u64(), Some(warm + steady));
    assert_eq!(stats["late_records"].as_u64(), Some(0));
    assert_eq!(report["late_measured_records"].as_u64(), Some(0));
    assert!(!stderr.contains("watermark"), "{stderr}");
    assert_eq!(stats["windows_closed"].as_u64(), Some(7));
    assert!(report["steady_us_per_record"].as_f64().unwrap_or(0.0) > 0.0);

    // Without a warm-up the same file is measured from a fresh pipeline.
    let (report, _) = bench_report(dir.path(), &["steady.jsonl"]);
    assert_eq!(report["warm_up_records"].as_u64(), Some(0));
    assert_eq!(report["stats"]["windows_closed"].as_u64(), Some(3));
}

#[test]
fn an_unreadable_warm_up_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_flows(&dir.path().join("steady.jsonl"), 5, 0, 1);
    let out = bench(
        dir.path(),
        &["steady.jsonl", "--warm-up", "no-such-warm-up.jsonl"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("no-such-warm-up.jsonl"), "{stderr}");
    assert!(out.stdout.is_empty(), "no report without the warm-up");
}

#[test]
fn a_measured_input_behind_the_warm_up_is_counted_and_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The warm-up covers windows 4-6; the "measured" file goes back to windows 0-1.
    write_flows(&dir.path().join("warm.jsonl"), 10, 4, 3);
    let behind = write_flows(&dir.path().join("behind.jsonl"), 10, 0, 2);
    let (report, stderr) = bench_report(dir.path(), &["behind.jsonl", "--warm-up", "warm.jsonl"]);
    assert_eq!(report["late_measured_records"].as_u64(), Some(behind));
    assert!(stderr.contains("watermark"), "{stderr}");
}
