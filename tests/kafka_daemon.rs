//! The daemon against a real broker (tansu): iot23 through a 3-partition topic gives the alerts of
//! `replay`; a `kill -9` mid-stream and a cut network path lose nothing. Skips without tansu or
//! without the iot23 data.

mod kafka_support;

use kafka_support::*;
use std::time::Duration;

const IOT23_RECORDS: u64 = 21141;
const DAEMON_LIMIT: Duration = Duration::from_secs(600);

fn setup(test: &str, proxied: bool) -> Option<(Broker, std::path::PathBuf, tempfile::TempDir)> {
    let Some(data) = data_file("iot23.jsonl") else {
        eprintln!("SKIP {test}: ../shared/data/iot23.jsonl is absent");
        return None;
    };
    if tansu_path().is_none() {
        eprintln!("SKIP {test}: tansu is not installed (scripts/install-tansu.sh)");
        return None;
    }
    let broker = Broker::start(proxied);
    let dir = tempfile::tempdir().expect("tempdir");
    produce(&broker.brokers(), &data, "flows", 3);
    create_topic(&broker.brokers(), "alerts", 3);
    Some((broker, data, dir))
}

#[test]
fn iot23_through_three_partitions_gives_the_alerts_of_replay() {
    let Some((broker, data, dir)) = setup(
        "iot23_through_three_partitions_gives_the_alerts_of_replay",
        false,
    ) else {
        return;
    };
    let brokers = broker.brokers();
    let cfg = daemon_config(dir.path(), "d", &brokers, "flows", "g-equal", "alerts", "");
    let (status, log) = spawn_daemon(&cfg).wait(DAEMON_LIMIT);
    assert!(status.success(), "daemon failed:\n{log}");
    assert_eq!(
        daemon_records(&log),
        IOT23_RECORDS,
        "every record consumed once"
    );
    let from_kafka = alert_ids_in_topic(&brokers, "alerts");
    let from_replay = replay_ids(dir.path(), &data);
    eprintln!(
        "alerts: kafka {} replay {}",
        from_kafka.len(),
        from_replay.len()
    );
    assert_eq!(from_kafka, from_replay);
}

#[test]
fn kill_9_mid_stream_then_restart_loses_nothing() {
    let Some((broker, data, dir)) = setup("kill_9_mid_stream_then_restart_loses_nothing", false)
    else {
        return;
    };
    let brokers = broker.brokers();
    let checkpoints = dir.path().join("checkpoints");
    let extra = format!(
        // A short session lets the group drop the killed member quickly (default 45 s).
        "\n[checkpoint]\ndir = \"{}\"\ninterval = \"1s\"\n\n[kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n",
        checkpoints.display()
    );
    let cfg = daemon_config(
        dir.path(),
        "d",
        &brokers,
        "flows",
        "g-kill",
        "alerts",
        &extra,
    );
    let first = spawn_daemon(&cfg);
    // Kill once a checkpoint (pipeline state + offsets) is on disk, so the restart resumes mid-way.
    let file = checkpoints.join("checkpoint.bin");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = first.kill9();
    assert!(file.exists(), "no checkpoint before the kill:\n{log}");
    assert!(
        !log.contains("flowwarden stopped"),
        "the first daemon finished before the kill; the test proves nothing:\n{log}"
    );
    let (status, log) = spawn_daemon(&cfg).wait(DAEMON_LIMIT);
    assert!(status.success(), "restarted daemon failed:\n{log}");
    let resumed = resumed_records(&log).expect("the restart resumes from the checkpoint");
    eprintln!("resumed at {resumed} of {IOT23_RECORDS} records");
    assert!(resumed > 0 && resumed < IOT23_RECORDS, "{resumed}");
    // The restored counter plus what the restart read covers every record exactly once.
    assert_eq!(
        daemon_records(&log),
        IOT23_RECORDS,
        "no record skipped or counted twice after the restart"
    );
    // Alerts of both runs together: ids are idempotent, so a re-raised alert is the same id.
    assert_eq!(
        alert_ids_in_topic(&brokers, "alerts"),
        replay_ids(dir.path(), &data)
    );
}

/// The broker "restart" is a cut of the network path (a TCP proxy between daemon and broker
/// resets every connection and refuses new ones for 4 s): tansu's `memory://` storage loses every
/// topic when the process really restarts, so a real restart would test data loss of the broker,
/// not the daemon's reconnection. What the daemon sees is the same: connections reset, brokers
/// down, then back.
#[test]
fn broker_link_cut_mid_stream_reconnects_and_finishes() {
    let Some((broker, data, dir)) =
        setup("broker_link_cut_mid_stream_reconnects_and_finishes", true)
    else {
        return;
    };
    let brokers = broker.brokers();
    let cfg = daemon_config(dir.path(), "d", &brokers, "flows", "g-cut", "alerts", "");
    let mut daemon = spawn_daemon(&cfg);
    assert!(
        daemon.wait_for_log("kafka partitions assigned", Duration::from_secs(60)),
        "no assignment:\n{}",
        daemon.log()
    );
    let proxy = broker.proxy.as_ref().expect("proxy");
    proxy.cut();
    std::thread::sleep(Duration::from_secs(4));
    proxy.restore();
    let was_running = daemon.running();
    let (status, log) = daemon.wait(DAEMON_LIMIT);
    assert!(status.success(), "daemon failed:\n{log}");
    if !was_running {
        eprintln!("note: the daemon finished before the link came back");
    }
    assert_eq!(daemon_records(&log), IOT23_RECORDS, "nothing lost");
    assert_eq!(
        alert_ids_in_topic(&brokers, "alerts"),
        replay_ids(dir.path(), &data)
    );
}
