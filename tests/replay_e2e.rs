//! End-to-end `flowwarden replay` through the real binary: the IoT-23 data decodes completely, alerts do
//! not depend on the thread count or on how the input is split into files (invariant 1), on real data
//! (when present) and on simulator output, and `--scores` gives one line per input line.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flowwarden");
const IOT23: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/iot23.jsonl");
/// Generous bound on one run of the debug binary; a stall fails the test instead of hanging it.
const RUN_BOUND: Duration = Duration::from_secs(600);

/// Runs the binary with `args` in `dir`, stdout/stderr to files (a full pipe cannot block it), killing
/// it if it outlives [`RUN_BOUND`]. Returns the exit code and stderr.
fn flowwarden(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = std::fs::File::create(dir.join("stdout.txt")).expect("stdout file");
    let err_path = dir.join(format!("stderr-{}.txt", std::process::id()));
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn flowwarden");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > RUN_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("flowwarden {args:?} did not finish within {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    (status.code().unwrap_or(-1), stderr)
}

fn replay_ok(dir: &Path, args: &[&str]) {
    let mut full = vec!["replay", "--log-format", "json"];
    full.extend_from_slice(args);
    let (code, stderr) = flowwarden(dir, &full);
    assert_eq!(code, 0, "flowwarden {full:?} failed: {stderr}");
}

/// The alert lines of a file, sorted (a set of lines; order within a window is not part of the contract).
fn alert_set(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("alerts file");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("summary file")).expect("summary is JSON")
}

/// Splits `input` into two files at the line nearest its middle.
fn split_in_two(input: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read(input).expect("input");
    let mid = text.len() / 2;
    let cut = text[mid..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| mid + i + 1)
        .expect("a newline after the middle");
    let (a, b) = (dir.join("part-1.jsonl"), dir.join("part-2.jsonl"));
    std::fs::write(&a, &text[..cut]).expect("write part 1");
    std::fs::write(&b, &text[cut..]).expect("write part 2");
    (a, b)
}

fn iot23() -> Option<&'static Path> {
    let p = Path::new(IOT23);
    if p.exists() {
        Some(p)
    } else {
        println!("skipped: {IOT23} is absent");
        None
    }
}

/// Replays `input` on 1 and 2 threads and split into two files; all three alert sets must be equal and
/// not empty. Returns the 1-thread summary.
fn assert_alerts_independent_of_threads_and_split(input: &Path, dir: &Path) -> serde_json::Value {
    let input_s = input.to_str().expect("utf-8 path");
    replay_ok(
        dir,
        &[
            input_s,
            "--threads",
            "1",
            "--alerts",
            "alerts-1.jsonl",
            "--summary-json",
            "summary-1.json",
        ],
    );
    replay_ok(
        dir,
        &[input_s, "--threads", "2", "--alerts", "alerts-2.jsonl"],
    );
    let (a, b) = split_in_two(input, dir);
    replay_ok(
        dir,
        &[
            a.to_str().expect("utf-8"),
            b.to_str().expect("utf-8"),
            "--threads",
            "2",
            "--alerts",
            "alerts-split.jsonl",
            "--summary-json",
            "summary-split.json",
        ],
    );
    let one = alert_set(&dir.join("alerts-1.jsonl"));
    let two = alert_set(&dir.join("alerts-2.jsonl"));
    let split = alert_set(&dir.join("alerts-split.jsonl"));
    assert!(
        !one.is_empty(),
        "no alerts at all: the comparison would prove nothing"
    );
    assert_eq!(
        one.len(),
        two.len(),
        "alert count differs between 1 and 2 threads"
    );
    assert!(one == two, "alerts differ between 1 and 2 threads");
    assert_eq!(
        one.len(),
        split.len(),
        "alert count differs for split input"
    );
    assert!(
        one == split,
        "alerts differ when the input is split into two files"
    );
    let s1 = summary(&dir.join("summary-1.json"));
    let ss = summary(&dir.join("summary-split.json"));
    assert_eq!(s1["records"], ss["records"]);
    // Window-close alerts plus the fast path's early ones.
    assert_eq!(
        s1["alerts"].as_u64().unwrap_or(0) + s1["early_alerts"].as_u64().unwrap_or(0),
        one.len() as u64
    );
    s1
}

#[test]
fn iot23_decodes_every_line() {
    let Some(data) = iot23() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    replay_ok(
        dir.path(),
        &[
            data.to_str().expect("utf-8"),
            "--alerts",
            "alerts.jsonl",
            "--summary-json",
            "s.json",
            "--dead-letter",
            "dead.jsonl",
        ],
    );
    let s = summary(&dir.path().join("s.json"));
    assert_eq!(s["records"], 21141, "{s}");
    assert_eq!(s["bad_records"], 0, "{s}");
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap_or_default();
    assert!(dead.is_empty(), "dead letters on iot23: {dead}");
}

#[test]
fn iot23_alerts_do_not_depend_on_threads_or_file_split() {
    let Some(data) = iot23() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let s = assert_alerts_independent_of_threads_and_split(data, dir.path());
    assert_eq!(s["records"], 21141);
}

#[test]
fn simulator_alerts_do_not_depend_on_threads_or_file_split() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stderr) = flowwarden(
        dir.path(),
        &[
            "generate",
            "--seed",
            "3",
            "--duration",
            "12h",
            "--out",
            "x.jsonl",
        ],
    );
    assert_eq!(code, 0, "generate failed: {stderr}");
    let input = dir.path().join("x.jsonl");
    let lines = std::fs::read_to_string(&input)
        .expect("x.jsonl")
        .lines()
        .count() as u64;
    let s = assert_alerts_independent_of_threads_and_split(&input, dir.path());
    assert_eq!(s["records"].as_u64(), Some(lines), "{s}");
    assert_eq!(s["bad_records"], 0, "{s}");
}

#[test]
fn scores_give_one_line_per_input_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stderr) = flowwarden(
        dir.path(),
        &[
            "generate",
            "--seed",
            "5",
            "--duration",
            "6h",
            "--out",
            "sim.jsonl",
        ],
    );
    assert_eq!(code, 0, "generate failed: {stderr}");
    let sim = std::fs::read_to_string(dir.path().join("sim.jsonl")).expect("sim.jsonl");
    // Undecodable lines at the start, in the middle, at the end, and a blank one.
    let mut lines: Vec<&str> = sim.lines().collect();
    let n = lines.len();
    assert!(n > 1000, "simulator wrote only {n} lines");
    let bad = [
        (0, "not json"),
        (n / 2, r#"{"start_time":1,"dest_port":70000}"#),
        (n / 2 + 1, ""),
    ];
    for (i, line) in bad {
        lines.insert(i, line);
    }
    lines.push(r#"{"start_time":"late"}"#);
    let bad_at: Vec<usize> = bad
        .iter()
        .map(|(i, _)| *i)
        .chain([lines.len() - 1])
        .collect();
    let mut input = lines.join("\n");
    input.push('\n');
    std::fs::write(dir.path().join("in.jsonl"), input).expect("write input");
    replay_ok(
        dir.path(),
        &[
            "in.jsonl",
            "--alerts",
            "alerts.jsonl",
            "--scores",
            "scores.txt",
            "--summary-json",
            "s.json",
        ],
    );
    let scores = std::fs::read_to_string(dir.path().join("scores.txt")).expect("scores");
    let scores: Vec<&str> = scores.lines().collect();
    assert_eq!(scores.len(), lines.len(), "one score line per input line");
    let mut distinct = std::collections::BTreeSet::new();
    for (i, s) in scores.iter().enumerate() {
        if bad_at.contains(&i) {
            assert_eq!(*s, "", "line {i} did not decode: its score must be empty");
        } else {
            let v: f64 = s
                .parse()
                .unwrap_or_else(|e| panic!("line {i}: score {s:?} is not a float: {e}"));
            assert!(v.is_finite() && v >= 0.0, "line {i}: score {v}");
            distinct.insert(s.to_string());
        }
    }
    assert!(
        distinct.len() > 1,
        "every score is the same ({distinct:?}): the scores say nothing"
    );
    let s = summary(&dir.path().join("s.json"));
    assert_eq!(s["bad_records"].as_u64(), Some(bad_at.len() as u64), "{s}");
    assert_eq!(
        s["records"].as_u64(),
        Some((lines.len() - bad_at.len()) as u64)
    );
}
