//! Library-level tests of the file and stdin sources: ordering, gzip, positions, odd lines, follow
//! mode (append, rotation, truncation) and resuming from a checkpoint.

use flate2::write::GzEncoder;
use flate2::Compression;
use flowwarden::source::{
    open_inputs, reader_source, FileSourceOptions, LineBatch, LineSource, Poll, SourceCheckpoint,
};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One received line: source, line number, byte offset, bytes, true length when truncated.
#[derive(Clone, Debug, PartialEq)]
struct Got {
    source: String,
    line: u64,
    offset: u64,
    bytes: Vec<u8>,
    truncated_len: Option<u64>,
}

fn take_batch(batch: &LineBatch, out: &mut Vec<Got>) {
    for i in 0..batch.len() {
        let pos = batch.position(i);
        out.push(Got {
            source: pos.source,
            line: pos.line,
            offset: pos.offset,
            bytes: batch.line(i).to_vec(),
            truncated_len: batch.truncated_len(i),
        });
    }
}

/// Reads a non-follow source to its end, in small batches to exercise batch boundaries.
fn read_all(src: &mut dyn LineSource) -> Vec<Got> {
    let mut out = Vec::new();
    let mut batch = LineBatch::new();
    loop {
        batch.clear();
        match src.poll_batch(&mut batch, 3, 1 << 20).expect("poll") {
            Poll::Data => take_batch(&batch, &mut out),
            Poll::Idle => panic!("a non-follow source must not be idle"),
            Poll::End => return out,
        }
    }
}

fn open(specs: &[&Path]) -> Box<dyn LineSource> {
    let specs: Vec<String> = specs
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    open_inputs(&specs, &FileSourceOptions::default()).expect("open inputs")
}

fn texts(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| String::from_utf8_lossy(&g.bytes).into_owned())
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn follow_opts() -> FileSourceOptions {
    FileSourceOptions {
        follow: true,
        poll_interval: Duration::from_millis(5),
        ..Default::default()
    }
}

/// Polls a follow-mode source until `out` holds `want` lines or 5 s passed.
fn collect_until(src: &mut dyn LineSource, out: &mut Vec<Got>, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut batch = LineBatch::new();
    while out.len() < want && Instant::now() < deadline {
        batch.clear();
        match src.poll_batch(&mut batch, 2, 1 << 20).expect("poll") {
            Poll::Data => take_batch(&batch, out),
            Poll::Idle => std::thread::sleep(Duration::from_millis(2)),
            Poll::End => panic!("a followed file never ends"),
        }
    }
}

/// Polls a few times over a short while and returns what arrived (expected: nothing).
fn poll_briefly(src: &mut dyn LineSource) -> Vec<Got> {
    let mut out = Vec::new();
    let mut batch = LineBatch::new();
    for _ in 0..10 {
        batch.clear();
        if src.poll_batch(&mut batch, 100, 1 << 20).expect("poll") == Poll::Data {
            take_batch(&batch, &mut out);
        }
        std::thread::sleep(Duration::from_millis(6));
    }
    out
}

fn append(path: &Path, data: &[u8]) {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}

#[test]
fn directory_reads_rotated_files_oldest_first_recursively() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("flows.log"), "live\n").unwrap();
    fs::write(d.join("flows.log.1"), "one\n").unwrap();
    fs::write(d.join("flows.log.2.gz"), gzip(b"two\n")).unwrap();
    fs::write(d.join("flows.log.10.gz"), gzip(b"ten\n")).unwrap();
    fs::write(d.join("a.txt"), "a\n").unwrap();
    fs::create_dir(d.join("sub")).unwrap();
    fs::write(d.join("sub/z.log"), "sub\n").unwrap();
    let got = read_all(open(&[d]).as_mut());
    assert_eq!(texts(&got), ["a", "ten", "two", "one", "live", "sub"]);
    assert!(got[1].source.ends_with("flows.log.10.gz"), "{:?}", got[1]);
    assert!(got[5].source.ends_with("sub/z.log"), "{:?}", got[5]);
}

#[test]
fn glob_pattern_selects_matching_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("b.log"), "b\n").unwrap();
    fs::write(d.join("a.log"), "a\n").unwrap();
    fs::write(d.join("c.txt"), "c\n").unwrap();
    let pattern = d.join("*.log");
    let got = read_all(open(&[&pattern]).as_mut());
    assert_eq!(texts(&got), ["a", "b"]);
    let none = d.join("*.nothing");
    let err = open_inputs(
        &[none.to_string_lossy().into_owned()],
        &FileSourceOptions::default(),
    )
    .err()
    .expect("a glob matching nothing is an error");
    assert!(err.to_string().contains("*.nothing"), "{err}");
}

#[test]
fn gzip_detected_by_magic_with_or_without_extension() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Two gzip members, as `cat a.gz b.gz` or logrotate with delaycompress can produce.
    let mut two_members = gzip(b"first\nsecond\n");
    two_members.extend(gzip(b"third\n"));
    fs::write(d.join("x.gz"), &two_members).unwrap();
    fs::write(d.join("y.log"), &two_members).unwrap();
    for name in ["x.gz", "y.log"] {
        let got = read_all(open(&[&d.join(name)]).as_mut());
        assert_eq!(texts(&got), ["first", "second", "third"], "{name}");
        let positions: Vec<_> = got.iter().map(|g| (g.line, g.offset)).collect();
        assert_eq!(
            positions,
            [(1, 0), (2, 6), (3, 13)],
            "{name}: offsets in the decompressed stream"
        );
    }
}

#[test]
fn positions_with_crlf_partial_last_line_empty_file_and_invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("a"), b"ab\r\n\r\ncd\nlast").unwrap();
    fs::write(d.join("b"), b"").unwrap();
    fs::write(d.join("c"), b"ok\n\xff\xfe bad \xc3\n").unwrap();
    let got = read_all(open(&[&d.join("a"), &d.join("b"), &d.join("c")]).as_mut());
    let summary: Vec<_> = got
        .iter()
        .map(|g| (g.bytes.clone(), g.line, g.offset))
        .collect();
    assert_eq!(
        summary,
        [
            (b"ab".to_vec(), 1, 0),
            (b"".to_vec(), 2, 4),
            (b"cd".to_vec(), 3, 6),
            (b"last".to_vec(), 4, 9),
            (b"ok".to_vec(), 1, 0),
            (b"\xff\xfe bad \xc3".to_vec(), 2, 3),
        ]
    );
    assert!(got[0].source.ends_with("/a") && got[4].source.ends_with("/c"));
    assert!(got.iter().all(|g| g.truncated_len.is_none()));
}

#[test]
fn ten_megabyte_line_is_truncated_and_next_lines_are_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    let mut data = b"before\n".to_vec();
    data.extend_from_slice(&vec![b'x'; 10 << 20]);
    data.extend_from_slice(b"\nafter\nend\n");
    fs::write(&path, &data).unwrap();
    let got = read_all(open(&[&path]).as_mut());
    assert_eq!(got.len(), 4);
    assert_eq!(got[1].truncated_len, Some(10 << 20));
    assert_eq!(got[1].bytes.len(), 4096);
    assert_eq!((got[1].line, got[1].offset), (2, 7));
    assert_eq!(texts(&got[2..]), ["after", "end"]);
    assert_eq!((got[2].line, got[2].offset), (3, 7 + (10 << 20) + 1));
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.log");
    let err = open_inputs(
        &[path.to_string_lossy().into_owned()],
        &FileSourceOptions::default(),
    )
    .err()
    .expect("missing file");
    assert!(err.to_string().contains("nope.log"), "{err}");
}

#[test]
fn reader_source_handles_gzip_streams() {
    let data = gzip(b"one\ntwo\r\nthree");
    let mut src = reader_source(
        "-",
        std::io::Cursor::new(data),
        &FileSourceOptions::default(),
    )
    .unwrap();
    let got = read_all(src.as_mut());
    assert_eq!(texts(&got), ["one", "two", "three"]);
    assert_eq!(got.iter().map(|g| g.offset).collect::<Vec<_>>(), [0, 4, 9]);
    assert!(got.iter().all(|g| g.source == "-"));
    assert!(
        src.checkpoint().files.is_empty(),
        "a stream cannot be resumed"
    );
}

/// Runs in a child process started by `stdin_dash_reads_piped_input`, with a pipe as stdin.
#[test]
#[ignore = "helper: run by stdin_dash_reads_piped_input in a child process"]
fn stdin_child_helper() {
    if std::env::var_os("FW_STDIN_CHILD").is_none() {
        return;
    }
    let mut src = open_inputs(&["-".to_string()], &FileSourceOptions::default()).unwrap();
    for g in read_all(src.as_mut()) {
        println!(
            "LINE\t{}:{}:{}\t{}",
            g.source,
            g.line,
            g.offset,
            String::from_utf8_lossy(&g.bytes)
        );
    }
}

#[test]
fn stdin_dash_reads_piped_input() {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "stdin_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FW_STDIN_CHILD", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"alpha\nbeta\r\ngamma").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints "test stdin_child_helper ... " on the same line as the first output.
    let lines: Vec<_> = stdout
        .split("LINE\t")
        .skip(1)
        .filter_map(|l| l.lines().next())
        .collect();
    assert_eq!(
        lines,
        ["-:1:0\talpha", "-:2:6\tbeta", "-:3:12\tgamma"],
        "child stdout: {stdout}"
    );
}

#[test]
fn follow_survives_append_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.log");
    fs::write(&path, "l1\nl2\n").unwrap();
    let specs = vec![path.to_string_lossy().into_owned()];
    let mut src = open_inputs(&specs, &follow_opts()).unwrap();
    let mut got = Vec::new();
    collect_until(src.as_mut(), &mut got, 2);

    // Append, with a partial line that is held back until its newline arrives.
    append(&path, b"l3\nl4 part");
    collect_until(src.as_mut(), &mut got, 3);
    assert!(
        poll_briefly(src.as_mut()).is_empty(),
        "partial line must be held back"
    );
    append(&path, b"ial\n");
    collect_until(src.as_mut(), &mut got, 4);

    // Rotate: write to the old file, rename it, write more to it, then create the new file.
    append(&path, b"l5\n");
    let rotated = dir.path().join("flows.log.1");
    fs::rename(&path, &rotated).unwrap();
    append(&rotated, b"l6\n");
    fs::write(&path, "n1\nn2\n").unwrap();
    collect_until(src.as_mut(), &mut got, 8);

    // Truncate: the file shrinks, reading restarts at 0.
    let mut f = File::create(&path).unwrap();
    f.write_all(b"t1\n").unwrap();
    drop(f);
    collect_until(src.as_mut(), &mut got, 9);
    got.extend(poll_briefly(src.as_mut()));

    assert_eq!(
        texts(&got),
        ["l1", "l2", "l3", "l4 partial", "l5", "l6", "n1", "n2", "t1"]
    );
    let positions: Vec<_> = got.iter().map(|g| (g.line, g.offset)).collect();
    assert_eq!(
        positions,
        [
            (1, 0),
            (2, 3),
            (3, 6),
            (4, 9),
            (5, 20),
            (6, 23),
            (1, 0),
            (2, 3),
            (1, 0)
        ]
    );
    assert!(got.iter().all(|g| g.source == specs[0]));
}

#[test]
fn follow_waits_for_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.log");
    let mut src = open_inputs(&[path.to_string_lossy().into_owned()], &follow_opts()).unwrap();
    assert!(poll_briefly(src.as_mut()).is_empty());
    fs::write(&path, "hello\n").unwrap();
    let mut got = Vec::new();
    collect_until(src.as_mut(), &mut got, 1);
    assert_eq!(texts(&got), ["hello"]);
}

#[test]
fn follow_reads_several_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    fs::write(&a, "a1\n").unwrap();
    fs::write(&b, "b1\n").unwrap();
    let specs = [&a, &b].map(|p| p.to_string_lossy().into_owned());
    let mut src = open_inputs(&specs, &follow_opts()).unwrap();
    let mut got = Vec::new();
    collect_until(src.as_mut(), &mut got, 2);
    assert_eq!(
        texts(&got),
        ["a1", "b1"],
        "existing content is read in order"
    );
    append(&b, b"b2\n");
    append(&a, b"a2\n");
    collect_until(src.as_mut(), &mut got, 4);
    let mut tail = texts(&got[2..]);
    tail.sort();
    assert_eq!(tail, ["a2", "b2"]);
}

#[test]
fn resume_from_checkpoint_skips_lines_already_read() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("p.log");
    let zipped = dir.path().join("z.log.gz");
    fs::write(&plain, "p1\np2\np3\np4\n").unwrap();
    fs::write(&zipped, gzip(b"z1\nz2\nz3\n")).unwrap();
    let specs = [&plain, &zipped].map(|p| p.to_string_lossy().into_owned());

    let mut src = open_inputs(&specs, &FileSourceOptions::default()).unwrap();
    let mut batch = LineBatch::new();
    assert_eq!(src.poll_batch(&mut batch, 2, 1 << 20).unwrap(), Poll::Data);
    let first = src.checkpoint();
    assert_eq!(first.files.len(), 1);
    assert_eq!((first.files[0].offset, first.files[0].line), (6, 2));
    // Read on to the first line of the gzip file.
    batch.clear();
    src.poll_batch(&mut batch, 3, 1 << 20).unwrap();
    assert_eq!(batch.len(), 3);
    let second = src.checkpoint();
    let json = serde_json::to_string(&second).unwrap();
    let second: SourceCheckpoint = serde_json::from_str(&json).unwrap();

    let resume = |cp: SourceCheckpoint| {
        let opts = FileSourceOptions {
            resume: Some(cp),
            ..Default::default()
        };
        read_all(open_inputs(&specs, &opts).unwrap().as_mut())
    };
    let got = resume(first);
    assert_eq!(texts(&got), ["p3", "p4", "z1", "z2", "z3"]);
    assert_eq!((got[0].line, got[0].offset), (3, 6));
    let got = resume(second);
    assert_eq!(texts(&got), ["z2", "z3"]);
    assert_eq!((got[0].line, got[0].offset), (2, 3));
}

#[test]
fn resume_follows_a_file_renamed_by_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("flows.log");
    fs::write(&live, "a1\na2\na3\n").unwrap();
    let spec = vec![dir.path().to_string_lossy().into_owned()];
    let mut src = open_inputs(&spec, &FileSourceOptions::default()).unwrap();
    let mut batch = LineBatch::new();
    src.poll_batch(&mut batch, 2, 1 << 20).unwrap();
    let cp = src.checkpoint();
    drop(src);
    // While stopped, the log rotated.
    fs::rename(&live, dir.path().join("flows.log.1")).unwrap();
    fs::write(&live, "b1\n").unwrap();
    let opts = FileSourceOptions {
        resume: Some(cp),
        ..Default::default()
    };
    let got = read_all(open_inputs(&spec, &opts).unwrap().as_mut());
    assert_eq!(texts(&got), ["a3", "b1"]);
}

/// Throughput of plain file reading. Run with
/// `FW_THROUGHPUT_FILE=/tmp/big.jsonl cargo test --release --test source_files -- --ignored --nocapture throughput`.
#[test]
#[ignore = "measurement, needs FW_THROUGHPUT_FILE"]
fn throughput() {
    let Some(path) = std::env::var_os("FW_THROUGHPUT_FILE") else {
        println!("FW_THROUGHPUT_FILE not set; skipping");
        return;
    };
    let mut src = open_inputs(
        &[path.to_string_lossy().into_owned()],
        &FileSourceOptions::default(),
    )
    .unwrap();
    let mut batch = LineBatch::new();
    let (mut lines, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    loop {
        batch.clear();
        match src.poll_batch(&mut batch, 8192, 4 << 20).unwrap() {
            Poll::End => break,
            _ => {
                lines += batch.len() as u64;
                bytes += batch.data.len() as u64 + batch.len() as u64;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{lines} lines, {:.0} MB in {secs:.2} s: {:.0} MB/s, {:.1} M lines/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        lines as f64 / 1e6 / secs
    );
}

#[test]
fn corrupt_gzip_is_an_error_naming_it_and_the_next_file_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gz");
    let good = dir.path().join("good.log");
    let text: String = (0..20_000)
        .map(|i| format!("line {i} {}\n", i * 7919 % 10007))
        .collect();
    let mut zipped = gzip(text.as_bytes());
    let mid = zipped.len() / 2;
    zipped.truncate(mid); // cut in the middle of the deflate stream
    fs::write(&bad, &zipped).unwrap();
    fs::write(&good, "fine\n").unwrap();
    let mut src = open(&[&bad, &good]);
    let mut batch = LineBatch::new();
    let (mut errors, mut got) = (Vec::new(), Vec::new());
    for _ in 0..100_000 {
        batch.clear();
        match src.poll_batch(&mut batch, 1000, 1 << 20) {
            Ok(Poll::Data) => take_batch(&batch, &mut got),
            Ok(Poll::Idle) => panic!("not following"),
            Ok(Poll::End) => break,
            Err(e) => errors.push(e.to_string()),
        }
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("bad.gz"), "{errors:?}");
    assert_eq!(got.last().map(|g| g.bytes.as_slice()), Some(&b"fine"[..]));
    // What came out of the damaged file before the error is a prefix of its content, in order.
    let from_bad: Vec<_> = got
        .iter()
        .filter(|g| g.source.ends_with("bad.gz"))
        .collect();
    assert!(from_bad.len() < 20_000, "the error must cut the file short");
    for ((i, g), expected) in from_bad.iter().enumerate().zip(text.lines()) {
        assert_eq!(g.line, i as u64 + 1);
        assert_eq!(g.bytes, expected.as_bytes());
    }
}
