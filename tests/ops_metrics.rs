//! `flowwarden run` exposes Prometheus metrics, liveness and readiness while it follows a file: the
//! counters move as lines are appended.

mod ops_common;
use ops_common::*;

#[test]
fn metrics_move_while_following_a_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let flows = dir.path().join("flows.jsonl");
    let alerts = dir.path().join("alerts.jsonl");
    let config = dir.path().join("flowwarden.toml");
    let port = free_port();
    let first: String = (0..4).map(normal_window).collect();
    append(&flows, &first);
    std::fs::write(&config, daemon_config(&flows, &alerts, port, "")).expect("config");

    let mut d = Daemon::start(&config, &dir.path().join("daemon.log"), port);
    d.wait_healthy();
    d.wait_records(first.lines().count());
    let before = d.scrape();
    let records_before =
        metric(&before, "flowwarden_records_total", &["source=\"file\""]).expect("records_total");
    assert_eq!(records_before, first.lines().count() as f64);
    assert!(
        metric(&before, "flowwarden_build_info", &[]).is_some(),
        "{before}"
    );

    // Appending lines of later windows moves the record counter and closes windows.
    let second: String = (4..8)
        .map(normal_window)
        .chain([scan_window(8, "scanner", 3)])
        .collect();
    append(&flows, &second);
    let total = first.lines().count() + second.lines().count();
    d.wait_records(total);
    let after = d.scrape();
    assert_eq!(
        metric(&after, "flowwarden_records_total", &["source=\"file\""]),
        Some(total as f64)
    );
    let closed =
        metric(&after, "flowwarden_windows_closed_total", &[]).expect("windows_closed_total");
    assert!(
        closed >= 4.0,
        "windows 0..7 closed at least in part: {after}"
    );
    assert!(
        after.contains("flowwarden_window_close_seconds_bucket"),
        "{after}"
    );
    assert!(
        metric(&after, "flowwarden_workloads", &[]).unwrap_or(0.0) >= 4.0,
        "{after}"
    );
    assert_eq!(
        metric(&after, "flowwarden_bad_records_total", &[]),
        None,
        "no bad line yet"
    );

    // A bad line is counted as such.
    append(&flows, "this is not a flow log\n");
    wait_for("bad record counted", || {
        metric(
            &d.scrape(),
            "flowwarden_bad_records_total",
            &["source=\"file\""],
        )
        .filter(|v| *v >= 1.0)
    });

    let (status, _) = http_get(d.metrics, "/healthz").expect("healthz");
    assert_eq!(status, 200);
    let (status, body) = http_get(d.metrics, "/readyz").expect("readyz");
    assert_eq!(
        status, 200,
        "ready: source open, no checkpoint required: {body}"
    );
    let (status, _) = http_get(d.metrics, "/nope").expect("404");
    assert_eq!(status, 404);

    d.signal("TERM");
    let status = d.wait_exit();
    assert!(status.success(), "exit {status}:\n{}", d.log_text());
}
