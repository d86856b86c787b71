//! Malformed input through the real binary (`flowwarden replay`): random bytes, a truncated line, a
//! 10 MB line, invalid UTF-8, wrong field types, non-object JSON, deeply nested JSON, an empty file and a
//! file of blank lines. The process exits 0, every bad line becomes one dead letter
//! `{source, position: {source, line, offset}, reason, raw}` with the right 1-based line and byte offset
//! and `raw` cut at 4 KiB, the summary counts them, and the good lines around them are still processed.
//! Nothing may crash or stall: each run has a generous bound and is killed (failing the test) past it.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flowwarden");
/// Generous bound on one run; a stall fails the test instead of hanging the suite.
const RUN_BOUND: Duration = Duration::from_secs(300);
/// `DeadLetter::raw` keeps at most this many bytes of the line.
const RAW_MAX: usize = 4096;

/// One input line and, when it is bad, a word its dead letter's reason must contain.
struct Line {
    bytes: Vec<u8>,
    bad: Option<&'static str>,
}

fn good(start: i64) -> Line {
    Line {
        bytes: format!(
            r#"{{"start_time":{start},"end_time":{},"source_type":"wep","source_namespace":"shop","source_name_aggr":"cart-*","dest_type":"wep","dest_namespace":"shop","dest_name_aggr":"redis-*","dest_port":6379,"proto":"tcp","action":"allow","reporter":"src","bytes_out":100,"packets_out":2,"num_flows":1}}"#,
            start + 15
        )
        .into_bytes(),
        bad: None,
    }
}

fn bad(bytes: impl Into<Vec<u8>>, reason: &'static str) -> Line {
    Line {
        bytes: bytes.into(),
        bad: Some(reason),
    }
}

/// Deterministic bytes without `\n` / `\r` (which would split or end lines) that do not start a JSON
/// object.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = (x >> 24) as u8;
        if b != b'\n' && b != b'\r' && !(out.is_empty() && (b == b'{' || b.is_ascii_whitespace())) {
            out.push(b);
        }
    }
    out
}

/// Runs the binary in `dir` with a bounded wait; stdout/stderr go to files so a full pipe cannot block.
fn flowwarden(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = std::fs::File::create(dir.join("stdout.txt")).expect("stdout file");
    let err = std::fs::File::create(dir.join("stderr.txt")).expect("stderr file");
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
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
            panic!("flowwarden {args:?} stalled: still running after {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default();
    (status.code().unwrap_or(-1), stderr)
}

/// Writes `lines` (each followed by `\n`) to `dir/name`, replays it and checks exit code, summary and
/// dead letters line by line.
fn replay_and_check(dir: &Path, name: &str, lines: &[Line]) {
    replay_and_check_with(dir, name, lines, &[]);
}

/// [`replay_and_check`] with more arguments for `replay`.
fn replay_and_check_with(dir: &Path, name: &str, lines: &[Line], extra: &[&str]) {
    let mut data = Vec::new();
    let mut offsets = Vec::with_capacity(lines.len());
    for l in lines {
        offsets.push(data.len() as u64);
        data.extend_from_slice(&l.bytes);
        data.push(b'\n');
    }
    std::fs::write(dir.join(name), &data).expect("write input");
    let (code, stderr) = flowwarden(
        dir,
        &[
            "replay",
            name,
            "--threads",
            "2",
            "--alerts",
            "alerts.jsonl",
            "--dead-letter",
            "dead.jsonl",
            "--summary-json",
            "summary.json",
            "--log-format",
            "json",
        ]
        .iter()
        .chain(extra)
        .copied()
        .collect::<Vec<_>>(),
    );
    assert_eq!(code, 0, "replay of {name} exited {code}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).expect("summary"))
            .expect("summary is JSON");
    let n_bad = lines.iter().filter(|l| l.bad.is_some()).count() as u64;
    let n_good = lines.len() as u64 - n_bad;
    assert_eq!(summary["bad_records"].as_u64(), Some(n_bad), "{summary}");
    assert_eq!(summary["records"].as_u64(), Some(n_good), "{summary}");

    let dead = std::fs::read(dir.join("dead.jsonl")).expect("dead-letter file exists");
    let dead: Vec<Value> = dead
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("each dead letter is one JSON line"))
        .collect();
    let expected: Vec<(usize, &Line)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.bad.is_some())
        .collect();
    assert_eq!(dead.len(), expected.len(), "one dead letter per bad line");
    for (dl, (i, line)) in dead.iter().zip(expected) {
        let obj = dl.as_object().expect("dead letter is an object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["position", "raw", "reason", "source"], "{dl}");
        assert_eq!(dl["source"], name, "{dl}");
        assert_eq!(dl["position"]["source"], name, "{dl}");
        assert_eq!(dl["position"]["line"].as_u64(), Some(i as u64 + 1), "{dl}");
        assert_eq!(dl["position"]["offset"].as_u64(), Some(offsets[i]), "{dl}");
        let reason = dl["reason"].as_str().expect("reason is a string");
        let want = line.bad.expect("bad line");
        assert!(
            reason.contains(want),
            "line {}: reason {reason:?} should mention {want:?}",
            i + 1
        );
        let cut = &line.bytes[..line.bytes.len().min(RAW_MAX)];
        assert_eq!(
            dl["raw"].as_str(),
            Some(String::from_utf8_lossy(cut).as_ref()),
            "line {}: raw must be the line's first {RAW_MAX} bytes",
            i + 1
        );
    }
    // The good lines went through the pipeline: windows were closed for them.
    if n_good > 0 {
        assert!(summary["windows_closed"].as_u64() > Some(0), "{summary}");
    }
}

#[test]
fn every_kind_of_bad_line_is_dead_lettered_at_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = good(1_750_000_000).bytes;
    let mut ten_mb = br#"{"start_time":1750000000,"pad":""#.to_vec();
    ten_mb.resize(10 * 1024 * 1024, b'x');
    ten_mb.extend_from_slice(br#""}"#);
    let mut long_bad = br#"{"start_time":1750000000,"bytes_in":"x","pad":""#.to_vec();
    long_bad.resize(9000, b'y');
    long_bad.extend_from_slice(br#""}"#);
    let mut invalid_utf8 = br#"{"start_time":1750000000,"source_name_aggr":"caf"#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid_utf8.extend_from_slice(br#"-*"}"#);
    let deep_array = format!(
        r#"{{"start_time":1750000000,"x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_object = format!(
        r#"{{"start_time":1750000000,"x":{}1{}}}"#,
        r#"{"a":"#.repeat(50_000),
        "}".repeat(50_000)
    );
    let deep_top = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));

    let mut lines = vec![good(1_750_000_000)];
    for seed in 1..=5 {
        lines.push(bad(
            random_bytes(seed, 50 + 97 * seed as usize),
            "invalid record",
        ));
        lines.push(good(1_750_000_000 + 15 * seed as i64));
    }
    lines.extend([
        bad(&full[..full.len() / 2], "invalid record"),
        good(1_750_000_100),
        bad(ten_mb, "exceeds the maximum line length"),
        good(1_750_000_115),
        bad(invalid_utf8, "invalid record"),
        bad(r#"{"start_time":1750000000,"bytes_in":"x"}"#, "bytes_in"),
        bad(r#"{"start_time":"1750000000"}"#, "start_time"),
        bad(
            r#"{"start_time":1750000000,"dest_port":"https"}"#,
            "dest_port",
        ),
        bad(
            r#"{"start_time":1750000000,"dest_port":70000}"#,
            "dest_port",
        ),
        bad(long_bad, "bytes_in"),
        good(1_750_000_130),
        bad("[1750000000,1750000015]", "not a JSON object"),
        bad("\"a string\"", "not a JSON object"),
        bad("42", "not a JSON object"),
        bad("null", "not a JSON object"),
        bad(r#"{"bytes_in":5}"#, "no event time"),
        bad(deep_array, "nested deeper"),
        bad(deep_object, "nested deeper"),
        bad(deep_top, "not a JSON object"),
        good(1_750_000_145),
    ]);
    replay_and_check(dir.path(), "mixed.jsonl", &lines);
}

/// Batches of 1,500 lines on two threads: after the first batch (which picks the window length),
/// each is decoded in chunks ahead of the thread that ingests them; bad lines in every chunk still
/// come out once each, in order, at their own position.
#[test]
fn bad_lines_in_overlapped_chunks_keep_their_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("batches.toml"),
        "[input]\nbatch_lines = 1500\n",
    )
    .expect("config");
    let lines: Vec<Line> = (0..6000u64)
        .map(|i| match i % 97 {
            13 => bad(random_bytes(i, 40 + (i % 50) as usize), "invalid record"),
            71 => bad(r#"{"start_time":1750000000,"bytes_in":"x"}"#, "bytes_in"),
            _ => good(1_750_000_000 + (i / 20) as i64),
        })
        .collect();
    replay_and_check_with(
        dir.path(),
        "chunks.jsonl",
        &lines,
        &["--config", "batches.toml"],
    );
}

#[test]
fn an_empty_file_is_fine() {
    let dir = tempfile::tempdir().expect("tempdir");
    replay_and_check(dir.path(), "empty.jsonl", &[]);
    let s = std::fs::read_to_string(dir.path().join("summary.json")).expect("summary");
    assert!(s.contains("\"records\": 0"), "{s}");
}

#[test]
fn blank_lines_are_counted_and_dead_lettered_as_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = [
        bad("", "empty line"),
        bad("   ", "empty line"),
        bad("\t", "empty line"),
        bad("", "empty line"),
    ];
    replay_and_check(dir.path(), "blank.jsonl", &lines);
}

#[test]
fn a_file_of_only_garbage_still_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines: Vec<Line> = (10..60)
        .map(|seed| bad(random_bytes(seed, 1 + seed as usize * 37), "invalid record"))
        .collect();
    replay_and_check(dir.path(), "garbage.jsonl", &lines);
}

#[test]
fn a_partial_last_line_without_newline_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut data = good(1_750_000_000).bytes;
    data.push(b'\n');
    let second_offset = data.len();
    data.extend_from_slice(br#"{"start_time":1750000015,"bytes_in":"#);
    std::fs::write(dir.path().join("partial.jsonl"), &data).expect("write");
    let (code, stderr) = flowwarden(
        dir.path(),
        &[
            "replay",
            "partial.jsonl",
            "--alerts",
            "a.jsonl",
            "--dead-letter",
            "dead.jsonl",
            "--summary-json",
            "s.json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).expect("dead letters");
    let dl: Value = serde_json::from_str(dead.trim()).expect("one dead letter");
    assert_eq!(dl["position"]["line"], 2);
    assert_eq!(
        dl["position"]["offset"].as_u64(),
        Some(second_offset as u64)
    );
    let s: Value = serde_json::from_slice(&std::fs::read(dir.path().join("s.json")).expect("s"))
        .expect("json");
    assert_eq!(
        (s["records"].as_u64(), s["bad_records"].as_u64()),
        (Some(1), Some(1))
    );
}
