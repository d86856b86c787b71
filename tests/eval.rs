//! End-to-end tests of `flowwarden eval`: the real binary on a small synthetic port scan among benign
//! traffic, and on the IoT-23 conversion when /work/shared/data holds it.

use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flowwarden");
const T0: i64 = 1_750_000_000;
const WINDOW: i64 = 15;
const SCAN_WINDOW: i64 = 40;
const SCANNER: &str = "cart-*";

fn record(t: i64, src: &str, dst: &str, port: u16, action: &str) -> String {
    format!(
        concat!(
            r#"{{"start_time":{},"end_time":{},"source_ip":null,"source_name":"-","source_name_aggr":"{}","#,
            r#""source_namespace":"shop","source_type":"wep","dest_ip":null,"dest_name":"-","dest_name_aggr":"{}","#,
            r#""dest_namespace":"shop","dest_type":"wep","dest_port":{},"proto":"tcp","action":"{}","reporter":"src","#,
            r#""bytes_in":900,"bytes_out":400,"packets_in":6,"packets_out":5,"num_flows":1,"num_flows_started":1,"num_flows_completed":1}}"#
        ),
        t,
        t + WINDOW,
        src,
        dst,
        port,
        action
    )
}

/// Writes `flows.jsonl`, `labels.csv` and `episodes.csv` into `dir`: 80 windows of four workloads
/// talking to their usual peers, one undecodable line, and in window 40 `shop/cart-*` probing 40
/// distinct denied ports of `shop/db-*` (the only label=1 lines).
fn write_scan_scenario(dir: &Path) -> (usize, usize) {
    let mut flows = String::new();
    let mut labels = String::from("line,label,attack_type,src_workload,dst_workload,start_time\n");
    let mut line = 0usize;
    let mut attack_lines = 0usize;
    let mut push = |flows: &mut String,
                    labels: &mut String,
                    text: String,
                    attack: bool,
                    src: &str,
                    dst: &str,
                    t: i64| {
        flows.push_str(&text);
        flows.push('\n');
        let (label, kind) = if attack { (1, "port-scan") } else { (0, "") };
        writeln!(labels, "{line},{label},{kind},shop/{src},shop/{dst},{t}")
            .expect("write to String");
        line += 1;
    };
    let benign = [
        ("frontend-*", "cart-*", 8080),
        ("cart-*", "db-*", 5432),
        ("checkout-*", "cart-*", 8080),
        ("checkout-*", "db-*", 5432),
    ];
    for w in 0..80 {
        let t = T0 + w * WINDOW;
        for (src, dst, port) in benign {
            push(
                &mut flows,
                &mut labels,
                record(t, src, dst, port, "allow"),
                false,
                src,
                dst,
                t,
            );
        }
        if w == 10 {
            push(
                &mut flows,
                &mut labels,
                "{\"start_time\": oops".into(),
                false,
                "frontend-*",
                "cart-*",
                t,
            );
        }
        if w == SCAN_WINDOW {
            for port in 1000..1040u16 {
                push(
                    &mut flows,
                    &mut labels,
                    record(t, SCANNER, "db-*", port, "deny"),
                    true,
                    SCANNER,
                    "db-*",
                    t,
                );
                attack_lines += 1;
            }
        }
    }
    std::fs::write(dir.join("flows.jsonl"), flows).expect("write flows");
    std::fs::write(dir.join("labels.csv"), labels).expect("write labels");
    let start = T0 + SCAN_WINDOW * WINDOW;
    std::fs::write(
        dir.join("episodes.csv"),
        format!(
            "scenario,attacker,victim,start,end\nport-scan,shop/{SCANNER},shop/db-*,{start},{}\n",
            start + WINDOW
        ),
    )
    .expect("write episodes");
    (line, attack_lines)
}

fn run_eval(args: &[&str]) -> (String, Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("eval.json");
    let out = Command::new(BIN)
        .arg("eval")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run flowwarden eval");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "eval failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("read json")).expect("json report");
    (stdout, report)
}

fn f64_at(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing or not a number in {v:#}"))
}

fn assert_scan_found(report: &Value, total_lines: usize, attack_lines: usize) {
    assert_eq!(f64_at(report, "/records/input_lines") as usize, total_lines);
    assert_eq!(
        f64_at(report, "/records/unscored"),
        1.0,
        "the broken line is reported"
    );
    assert_eq!(
        f64_at(report, "/records/evaluated") as usize,
        total_lines - 1
    );
    let by_type = report
        .pointer("/scores/by_attack_type")
        .and_then(Value::as_array)
        .expect("by_attack_type");
    assert_eq!(by_type.len(), 1);
    assert_eq!(by_type[0]["attack_type"], "port-scan");
    assert_eq!(by_type[0]["positives"].as_u64(), Some(attack_lines as u64));
    assert!(
        f64_at(report, "/scores/overall/roc_auc") > 0.9,
        "{:#}",
        report["scores"]
    );
    assert!(
        f64_at(report, "/scores/overall/pr_auc") > 0.9,
        "{:#}",
        report["scores"]
    );

    assert_eq!(f64_at(report, "/episodes/total"), 1.0);
    let episode = &report["episodes"]["list"][0];
    assert_eq!(episode["attacker"], format!("shop/{SCANNER}"));
    assert_eq!(episode["detected"], true, "{episode:#}");
    let detectors: Vec<&str> = episode["detectors"]
        .as_array()
        .expect("detectors")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(detectors.contains(&"port_scan"), "{detectors:?}");
    let ttd = f64_at(episode, "/time_to_detect_s");
    assert!(
        (0.0..=3.0 * WINDOW as f64).contains(&ttd),
        "time to detect {ttd}"
    );

    assert_eq!(f64_at(report, "/hosts/infected_total"), 1.0);
    assert_eq!(f64_at(report, "/hosts/infected_named"), 1.0);
    let alerts = f64_at(report, "/false_alerts/alerts");
    let false_alerts = f64_at(report, "/false_alerts/false_alerts");
    assert!(
        alerts >= 1.0 && false_alerts < alerts,
        "{:#}",
        report["false_alerts"]
    );
    assert_eq!(f64_at(report, "/false_alerts/workloads"), 4.0);
}

#[test]
fn port_scan_is_ranked_and_detected_with_an_episode_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (lines, attacks) = write_scan_scenario(dir.path());
    let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let alerts_out = p("alerts.jsonl");
    let (stdout, report) = run_eval(&[
        "--input",
        &p("flows.jsonl"),
        "--labels",
        &p("labels.csv"),
        "--episodes",
        &p("episodes.csv"),
        "--threads",
        "2",
        "--alerts",
        &alerts_out,
    ]);
    assert_scan_found(&report, lines, attacks);
    assert_eq!(report["episodes"]["source"], "file");
    for section in [
        "Per-record scores",
        "Episodes",
        "False alerts",
        "Infected hosts named in alerts: 1 of 1",
    ] {
        assert!(stdout.contains(section), "missing {section:?} in\n{stdout}");
    }
    let written = std::fs::read_to_string(&alerts_out).expect("alerts file");
    assert_eq!(
        written.lines().count() as f64,
        f64_at(&report, "/false_alerts/alerts")
    );
    assert!(written.contains("port_scan"));
}

#[test]
fn port_scan_episode_derived_from_labels() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (lines, attacks) = write_scan_scenario(dir.path());
    let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let (_, report) = run_eval(&[
        "--input",
        &p("flows.jsonl"),
        "--labels",
        &p("labels.csv"),
        "--threads",
        "1",
    ]);
    assert_scan_found(&report, lines, attacks);
    assert_eq!(report["episodes"]["source"], "labels");
    assert_eq!(report["episodes"]["list"][0]["victim"], "shop/db-*");
}

#[test]
fn iot23_report_is_complete() {
    // FLOWWARDEN_DATA_DIR lets a worktree that is not next to shared/ point at the data.
    let data = std::env::var_os("FLOWWARDEN_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")).to_path_buf()
        });
    let (input, labels) = (data.join("iot23.jsonl"), data.join("iot23.labels.csv"));
    if !input.exists() || !labels.exists() {
        eprintln!("skipping: {} not present", input.display());
        return;
    }
    let (stdout, report) = run_eval(&[
        "--input",
        &input.to_string_lossy(),
        "--labels",
        &labels.to_string_lossy(),
    ]);
    assert_eq!(f64_at(&report, "/pipeline/records"), 21_141.0);
    assert_eq!(f64_at(&report, "/pipeline/bad_records"), 0.0);
    assert_eq!(f64_at(&report, "/records/evaluated"), 21_141.0);
    assert_eq!(f64_at(&report, "/scores/overall/positives"), 8_689.0);
    assert_eq!(f64_at(&report, "/scores/overall/negatives"), 12_452.0);
    for pointer in [
        "/window_length_s",
        "/records/unscored",
        "/scores/overall/roc_auc",
        "/scores/overall/pr_auc",
        "/episodes/total",
        "/episodes/detected",
        "/episodes/detection_rate",
        "/false_alerts/false_alerts",
        "/false_alerts/workloads",
        "/false_alerts/covered_days",
        "/hosts/infected_total",
        "/hosts/infected_named",
    ] {
        f64_at(&report, pointer);
    }
    for pointer in [
        "/scores/by_attack_type",
        "/episodes/by_scenario",
        "/episodes/list",
        "/false_alerts/top_pairs",
        "/hosts/infected",
        "/hosts/benign_named",
    ] {
        assert!(
            report.pointer(pointer).is_some_and(Value::is_array),
            "{pointer} missing"
        );
    }
    assert!(report
        .pointer("/episodes/median_time_to_detect_s")
        .is_some());
    assert!(report.pointer("/false_alerts/per_workload_day").is_some());
    assert_eq!(
        report["scores"]["by_attack_type"].as_array().map(Vec::len),
        Some(6)
    );
    assert_eq!(f64_at(&report, "/hosts/infected_total"), 5.0);
    assert!(stdout.contains("C&C"));
}
