//! docker-compose.yml and Dockerfile are parsed and checked (no Docker engine runs here): the
//! services, images, dependencies and mounts of the demo, and the multi-stage image build.

use std::collections::BTreeMap;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn service<'a>(compose: &'a serde_yaml::Value, name: &str) -> &'a serde_yaml::Value {
    let s = &compose["services"][name];
    assert!(!s.is_null(), "service {name} missing");
    s
}

fn depends_on(s: &serde_yaml::Value) -> Vec<String> {
    match &s["depends_on"] {
        serde_yaml::Value::Sequence(v) => v
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        serde_yaml::Value::Mapping(m) => m
            .keys()
            .filter_map(|k| k.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn compose_runs_kafka_flowwarden_and_a_replayer() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docker-compose.yml"))
        .expect("docker-compose.yml");
    let compose: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");

    let kafka = service(&compose, "kafka");
    let image = kafka["image"].as_str().expect("kafka image");
    assert!(image.starts_with("apache/kafka"), "{image}");
    let env = &kafka["environment"];
    assert_eq!(
        env["KAFKA_PROCESS_ROLES"].as_str(),
        Some("broker,controller"),
        "single-node KRaft"
    );

    let fw = service(&compose, "flowwarden");
    assert!(
        !fw["build"].is_null(),
        "flowwarden is built from the Dockerfile"
    );
    assert!(depends_on(fw).contains(&"kafka".to_string()));
    let mounts: Vec<&str> = fw["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let config_mount = mounts
        .iter()
        .find(|m| m.contains("flowwarden-kafka.toml"))
        .expect("config mounted");
    let host_path = config_mount.split(':').next().expect("host path");
    let container_path = config_mount.split(':').nth(1).expect("container path");
    let command: Vec<&str> = fw["command"]
        .as_sequence()
        .expect("command")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        command.contains(&container_path),
        "the daemon runs with the mounted config: {command:?}"
    );
    let cfg = flowwarden::config::Config::load(&Path::new(ROOT).join(host_path))
        .expect("mounted config is valid");
    assert_eq!(cfg.source.kind, "kafka");
    assert_eq!(
        cfg.kafka.bootstrap_servers, "kafka:9092",
        "compose service name"
    );

    let replayer = service(&compose, "replayer");
    assert!(depends_on(replayer).contains(&"kafka".to_string()));
    let cmd = serde_yaml::to_string(&replayer["command"]).expect("command");
    assert!(
        cmd.contains("produce") && cmd.contains(&format!("--topic {}", cfg.kafka.topics[0])),
        "{cmd}"
    );
    assert!(
        compose["volumes"].get("flowwarden-state").is_some(),
        "named state volume"
    );
}

#[test]
fn dockerfile_builds_in_rust_and_runs_on_debian_slim() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).expect("Dockerfile");
    let mut stages: BTreeMap<String, String> = BTreeMap::new();
    let mut last_stage = String::new();
    let mut copies_from: Vec<(String, String)> = Vec::new();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["FROM", image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                stages.insert(name.to_string(), image.to_string());
                last_stage = name.to_string();
            }
            ["FROM", ..] => panic!("every stage is named: {line}"),
            ["COPY", from, rest @ ..] if from.starts_with("--from=") => {
                copies_from.push((
                    from.trim_start_matches("--from=").to_string(),
                    rest.join(" "),
                ));
            }
            _ => {}
        }
    }
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let builder = stages.values().next().expect("first stage");
    assert!(
        stages.values().any(|i| i.starts_with("rust:")),
        "a Rust builder stage: {builder}"
    );
    assert!(
        stages[&last_stage].starts_with("debian:") && stages[&last_stage].contains("slim"),
        "runtime: {}",
        stages[&last_stage]
    );
    assert!(!copies_from.is_empty());
    for (from, what) in &copies_from {
        assert!(
            stages.contains_key(from) && *from != last_stage,
            "COPY --from={from} names an earlier stage"
        );
        assert!(what.contains("flowwarden"), "{what}");
    }
    assert!(
        copies_from
            .iter()
            .any(|(_, w)| w.contains("target/release/flowwarden")),
        "the binary is copied"
    );
    assert!(text.contains("cargo build --release"));
}
