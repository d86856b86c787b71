//! Scale-out on a real broker (tansu): two daemons in one consumer group split the partitions of a
//! 3-partition topic and both alert; when one stops, the other takes its partitions over and merges
//! their workloads' baselines from the compacted state topic before reading them, so those
//! workloads need no second warm-up. Skips without tansu.
//!
//! Input: 8 simulated hours, produced in two phases (the first 5 hours, then the rest) so the
//! hand-over happens at a known point: after phase 1 is consumed and committed.

mod kafka_support;

use kafka_support::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

const SIM_START: i64 = 1_748_822_400; // the simulator's default start
const SPLIT_AT: i64 = SIM_START + 5 * 3600;
const WARMUP_WINDOWS: u64 = 12; // the default [baseline] warmup_windows

fn config(dir: &Path, name: &str, brokers: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"[source]
kind = "kafka"

[alerts]
stdout = false

[metrics]
enabled = false

[checkpoint]
dir = "{dir}/{name}-checkpoints"
interval = "1s"

[kafka]
bootstrap_servers = "{brokers}"
topics = ["flows"]
group_id = "g-split"
idle_timeout = "1s"
alerts_topic = "alerts-{name}"
state_topic = "state"

[kafka.librdkafka]
"session.timeout.ms" = "6000"
"#,
        dir = dir.display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// The partitions of a daemon's last assignment, if its last group event is an assignment.
fn settled_assignment(log: &str) -> Option<BTreeSet<i32>> {
    let last = log
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            let m = &v["fields"]["message"];
            m == "kafka partitions assigned" || m == "kafka partitions revoked"
        })?;
    if last["fields"]["message"] != "kafka partitions assigned" {
        return None;
    }
    let text = last["fields"]["partitions"].as_str()?.to_string();
    Some(
        text.split("\"flows\",")
            .skip(1)
            .filter_map(|s| s.trim().split(')').next()?.trim().parse().ok())
            .collect(),
    )
}

fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn final_stats(log: &str) -> serde_json::Value {
    log_events(log, "flowwarden stopped")
        .pop()
        .unwrap_or_else(|| panic!("no final stats:\n{log}"))
}

#[test]
fn two_daemons_split_partitions_and_one_takes_over_with_warm_baselines() {
    let test = "two_daemons_split_partitions_and_one_takes_over_with_warm_baselines";
    let Some(broker) = broker_or_skip(test) else {
        return;
    };
    let brokers = broker.brokers();
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = dir.path().join("sim.jsonl");
    let out = std::process::Command::new(BIN)
        .args(["generate", "--duration", "8h", "--out"])
        .arg(&sim)
        .output()
        .expect("generate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut early, mut late) = (String::new(), String::new());
    for line in std::fs::read_to_string(&sim).expect("sim").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("sim line");
        let t = v["start_time"].as_i64().expect("start_time");
        let part = if t < SPLIT_AT { &mut early } else { &mut late };
        part.push_str(line);
        part.push('\n');
    }
    let (n_early, n_late) = (early.lines().count() as i64, late.lines().count() as i64);
    let phase1 = dir.path().join("phase1.jsonl");
    let phase2 = dir.path().join("phase2.jsonl");
    std::fs::write(&phase1, early).expect("phase 1");
    std::fs::write(&phase2, late).expect("phase 2");
    create_topic(&brokers, "flows", 3);
    // tansu does not create topics on first use.
    create_topic(&brokers, "alerts-a", 1);
    create_topic(&brokers, "alerts-b", 1);

    let a = spawn_daemon(&config(dir.path(), "a", &brokers));
    assert!(
        a.wait_for_log("kafka partitions assigned", Duration::from_secs(60)),
        "a got no partitions:\n{}",
        a.log()
    );
    let b = spawn_daemon(&config(dir.path(), "b", &brokers));
    let split = wait_until(Duration::from_secs(60), || {
        match (settled_assignment(&a.log()), settled_assignment(&b.log())) {
            (Some(pa), Some(pb)) => {
                !pa.is_empty()
                    && !pb.is_empty()
                    && pa.is_disjoint(&pb)
                    && pa.union(&pb).count() == 3
            }
            _ => false,
        }
    });
    assert!(
        split,
        "partitions not split:\n--- a\n{}\n--- b\n{}",
        a.log(),
        b.log()
    );
    let b_parts = settled_assignment(&b.log()).expect("b's partitions");
    eprintln!(
        "a owns {:?}, b owns {b_parts:?}",
        settled_assignment(&a.log())
    );

    produce(&brokers, &phase1, "flows", 3);
    assert!(
        wait_until(Duration::from_secs(120), || committed_total(
            &brokers, "g-split", "flows", 3
        ) == n_early),
        "phase 1 ({n_early} records) not consumed and committed:\n--- a\n{}\n--- b\n{}",
        a.log(),
        b.log()
    );

    let (status, b_log) = b.terminate(Duration::from_secs(60));
    assert!(status.success(), "b failed:\n{b_log}");
    let b_stats = final_stats(&b_log);
    assert!(
        b_stats["alerts"].as_u64() > Some(0),
        "b raised no alert:\n{b_log}"
    );
    assert!(!alert_ids_in_topic(&brokers, "alerts-b").is_empty());

    // a takes b's partitions over and merges their state before reading them.
    assert!(
        a.wait_for_log("partition state restored", Duration::from_secs(60)),
        "no state hand-over:\n{}",
        a.log()
    );
    // Each moved partition logs its own restore; wait (bounded) until all of b's have.
    let moved_now = || -> (Vec<serde_json::Value>, BTreeSet<i32>) {
        let restored = log_events(&a.log(), "partition state restored");
        let moved = restored
            .iter()
            .filter_map(|e| e["partition"].as_i64().map(|p| p as i32))
            .collect();
        (restored, moved)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut restored, mut moved) = moved_now();
    while moved != b_parts && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        (restored, moved) = moved_now();
    }
    assert_eq!(moved, b_parts, "exactly b's partitions were handed over");
    let warm: u64 = restored
        .iter()
        .filter_map(|e| e["warm_baselines"].as_u64())
        .sum();
    let max_seen = restored
        .iter()
        .filter_map(|e| e["max_windows_seen"].as_u64())
        .max()
        .unwrap_or(0);
    eprintln!("restored {restored:?}");
    assert!(
        warm > 0 && max_seen >= WARMUP_WINDOWS,
        "moved baselines arrive warm (no second warm-up): {restored:?}"
    );

    produce(&brokers, &phase2, "flows", 3);
    assert!(
        wait_until(Duration::from_secs(120), || committed_total(
            &brokers, "g-split", "flows", 3
        ) == n_early + n_late),
        "phase 2 not consumed by a:\n{}",
        a.log()
    );
    let (status, a_log) = a.terminate(Duration::from_secs(60));
    assert!(status.success(), "a failed:\n{a_log}");
    let a_stats = final_stats(&a_log);
    assert!(a_stats["alerts"].as_u64() > Some(0), "a raised no alert");
    assert!(!alert_ids_in_topic(&brokers, "alerts-a").is_empty());
    // The hand-over neither lost nor re-read a record.
    assert_eq!(
        a_stats["records"].as_i64().unwrap_or(0) + b_stats["records"].as_i64().unwrap_or(0),
        n_early + n_late
    );
}
