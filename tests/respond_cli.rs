//! End-to-end: the `flowwarden policy install` and `flowwarden quarantine list|release` commands of the
//! real binary, on a state dir written by the library's responder.

use std::process::Command;

use flowwarden::alert::{alert_id, Alert, Band, Severity, ALERT_TYPE};
use flowwarden::respond::{RespondConfig, Responder};
use serde::Deserialize;

const T0: i64 = 1_700_000_000;
const WORKLOAD: &str = "shop/cart-7d9c8b6f4-*";

fn flowwarden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowwarden"))
        .args(args)
        .env("USER", "ci-user")
        .output()
        .unwrap()
}

fn alert() -> Alert {
    Alert {
        id: alert_id("beaconing", WORKLOAD, T0),
        time: T0,
        kind: ALERT_TYPE.into(),
        origin: "beaconing".into(),
        severity: 85,
        severity_label: Severity::High,
        description: "beaconing to 203.0.113.9".into(),
        source_ip: None,
        source_port: None,
        source_name: "-".into(),
        source_name_aggr: "cart-7d9c8b6f4-*".into(),
        source_namespace: "shop".into(),
        dest_ip: Some("203.0.113.9".into()),
        dest_port: Some(443),
        dest_name: "-".into(),
        dest_name_aggr: "pub".into(),
        dest_namespace: "-".into(),
        host: None,
        attack_vector: "Network".into(),
        mitre_tactic: "Command and Control".into(),
        mitre_ids: vec!["T1071".into()],
        mitigations: vec![],
        record: serde_json::Value::Null,
        dismissed: false,
        detector: "beaconing".into(),
        workload: WORKLOAD.into(),
        workload_labels: vec!["app=cart".into()],
        window_start: T0 - 300,
        window_end: T0,
        score: 8.0,
        observed: 1.0,
        expected: 0.0,
        band: Band::default(),
        feature: "period_regularity".into(),
        soc2: vec!["CC7.2".into()],
        provisional: false,
    }
}

#[test]
fn policy_install_prints_parseable_calico_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flowwarden.toml");
    std::fs::write(
        &config,
        "[respond]\nforensics_namespace = \"forensics\"\n[respond.tier]\norder = 120\n",
    )
    .unwrap();
    let out = flowwarden(&["policy", "install", "--config", config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(serde_yaml::Value::deserialize)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["kind"].as_str(), Some("Tier"));
    assert_eq!(docs[0]["spec"]["order"].as_f64(), Some(120.0));
    assert_eq!(docs[1]["kind"].as_str(), Some("GlobalNetworkPolicy"));
    assert_eq!(
        docs[1]["spec"]["ingress"][0]["action"].as_str(),
        Some("Allow")
    );

    std::fs::write(&config, "[respond]\nmin_severity = 300\n").unwrap();
    let bad = flowwarden(&["policy", "install", "--config", config.to_str().unwrap()]);
    assert!(!bad.status.success());
    std::fs::write(
        &config,
        "[respond]\nmin_severity = 100\n[respond.tier]\norder = 2000000\n",
    )
    .unwrap();
    let bad = flowwarden(&["policy", "install", "--config", config.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("respond.tier.order"));
}

#[test]
fn quarantine_list_and_operator_release() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let cfg = RespondConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..RespondConfig::default()
    };
    let mut responder = Responder::new(cfg).unwrap();
    assert_eq!(responder.on_alert(&alert(), T0).len(), 1);
    drop(responder);

    let list = flowwarden(&["quarantine", "list", "--state", state]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let table = String::from_utf8(list.stdout).unwrap();
    assert!(
        table.contains(WORKLOAD) && table.contains("2023-11-14T22:23:20Z"),
        "{table}"
    );

    let json = flowwarden(&["quarantine", "list", "--state", state, "--json"]);
    let row: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(row["expires_at"], T0 + 600);

    let missing = flowwarden(&["quarantine", "release", "shop/nope-*", "--state", state]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not quarantined"));

    let release = flowwarden(&[
        "quarantine",
        "release",
        WORKLOAD,
        "--state",
        state,
        "--now",
        &(T0 + 60).to_string(),
    ]);
    assert!(
        release.status.success(),
        "{}",
        String::from_utf8_lossy(&release.stderr)
    );
    let rec: serde_json::Value = serde_json::from_slice(&release.stdout).unwrap();
    assert_eq!(rec["action"], "release");
    assert_eq!(rec["actor"], "ci-user", "actor defaults to $USER");
    assert_eq!(rec["time"], T0 + 60);

    let empty = flowwarden(&["quarantine", "list", "--state", state]);
    assert!(String::from_utf8_lossy(&empty.stdout).contains("no active quarantines"));
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let actors: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["actor"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(actors, ["flowwarden", "ci-user"]);
}
