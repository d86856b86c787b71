//! Policy-aware detection end to end on simulator output, through the real binary: the loosened
//! policy's drift alert, quiet on benign traffic, the staged default-deny's impact report, and
//! least-privilege recommendations that parse and pass the round trip.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flowwarden");

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("binary runs");
    assert!(
        out.status.success(),
        "flowwarden {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn generate(dir: &Path, name: &str, extra: &[&str]) -> String {
    let out = dir.join(format!("{name}.jsonl"));
    let out = out.to_str().expect("utf-8 path").to_string();
    let mut args = vec![
        "generate",
        "--duration",
        "18h",
        "--seed",
        "11",
        "--out",
        &out,
    ];
    args.extend_from_slice(extra);
    run(&args);
    out
}

fn alerts(dir: &Path, input: &str) -> Vec<Value> {
    let path = dir.join("alerts.jsonl");
    let p = path.to_str().expect("utf-8 path");
    run(&["replay", input, "--alerts", p]);
    std::fs::read_to_string(&path)
        .expect("alerts written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert is JSON"))
        .collect()
}

fn is_policy_alert(a: &Value) -> bool {
    matches!(
        a["detector"].as_str(),
        Some("policy_loosened" | "policy_drift" | "staged_policy_impact")
    )
}

#[test]
fn a_loosened_policy_raises_drift_naming_the_policy_before_and_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = generate(dir.path(), "loose", &["--attack", "policy-loosening"]);
    let all = alerts(dir.path(), &input);
    let loosened: Vec<&Value> = all
        .iter()
        .filter(|a| a["detector"] == "policy_loosened")
        .collect();
    assert_eq!(loosened.len(), 1, "one loosening: {loosened:?}");
    let a = loosened[0];
    assert!(a["workload"]
        .as_str()
        .is_some_and(|w| w.starts_with("shop/payment-")));
    assert!(a["source_name_aggr"]
        .as_str()
        .is_some_and(|s| s.starts_with("loadgenerator-")));
    assert_eq!(a["dest_port"], 50051);
    assert!(a["mitre_ids"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == "T1562")));
    assert!(a["soc2"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == "CC8.1")));
    let change = &a["record"]["changes"][0];
    assert_eq!(change["before"]["policy"], "shop/default-deny");
    assert_eq!(change["before"]["action"], "deny");
    assert_eq!(change["after"]["policy"], "allow-debug-all");
    assert_eq!(change["after"]["tier"], "platform");
    assert!(change["before"]["first_seen"].as_i64() < change["after"]["first_seen"].as_i64());
    let d = a["description"].as_str().unwrap_or_default();
    assert!(
        d.contains("shop/default-deny") && d.contains("allow-debug-all"),
        "{d}"
    );
    // The other callers of payment now pass through the new platform-tier policy: drift.
    assert!(all.iter().any(|a| a["detector"] == "policy_drift"
        && a["record"]["changes"][0]["after"]["policy"] == "allow-debug-all"));
}

#[test]
fn the_benign_run_raises_no_policy_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = generate(dir.path(), "benign", &["--no-attacks"]);
    let noisy: Vec<Value> = alerts(dir.path(), &input)
        .into_iter()
        .filter(is_policy_alert)
        .collect();
    assert!(noisy.is_empty(), "false policy alerts: {noisy:?}");
}

/// (source namespace, source group, destination key, port) of every allowed `src` record whose
/// last pending hit is the staged default-deny denying it: read straight from the JSON lines.
fn cut_flows_in(input: &str) -> BTreeSet<(String, String, u64)> {
    let text = std::fs::read_to_string(input).expect("input");
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).expect("line is JSON");
        let Some(last) = r["policies"]["pending_policies"]
            .as_array()
            .and_then(|p| p.last())
            .and_then(Value::as_str)
        else {
            continue;
        };
        if r["action"] != "allow"
            || !last.contains("default-deny-egress")
            || !last.contains("|deny|")
        {
            continue;
        }
        let aggr = r["source_name_aggr"].as_str().unwrap_or_default();
        let group = aggr.trim_end_matches("-*");
        let group = group.rsplit_once('-').map_or(group, |(g, _)| g);
        let dest = match r["dest_domains"].as_array().and_then(|d| d.first()) {
            Some(d) => format!(
                "{}:{}",
                r["dest_name_aggr"].as_str().unwrap_or_default(),
                d.as_str().unwrap_or_default()
            ),
            None => r["dest_name_aggr"].as_str().unwrap_or_default().to_string(),
        };
        out.insert((
            format!(
                "{}/{group}",
                r["source_namespace"].as_str().unwrap_or_default()
            ),
            dest,
            r["dest_port"].as_u64().unwrap_or(0),
        ));
    }
    out
}

#[test]
fn the_staged_default_deny_impact_report_lists_the_flows_it_would_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = generate(dir.path(), "staged", &["--attack", "staged-default-deny"]);
    let report = dir.path().join("impact.json");
    run(&[
        "staged-impact",
        &input,
        "--out",
        report.to_str().expect("utf-8"),
    ]);
    let r: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("report is JSON");
    assert_eq!(r["report"], "impact");
    assert_eq!(r["staged_policies"][0], "default|shop/default-deny-egress");
    let mut listed = BTreeSet::new();
    for w in r["workloads"].as_array().expect("workloads") {
        for f in w["flows"].as_array().expect("flows") {
            assert_eq!(f["staged_policy"]["action"], "deny");
            assert_eq!(f["allowed_today_by"]["action"], "allow");
            assert!(f["connections"].as_u64() > Some(0));
            listed.insert((
                w["workload"].as_str().unwrap_or_default().to_string(),
                f["destination"].as_str().unwrap_or_default().to_string(),
                f["port"].as_u64().unwrap_or(0),
            ));
        }
    }
    let expected = cut_flows_in(&input);
    assert!(!expected.is_empty(), "the scenario cuts something");
    assert_eq!(listed, expected);
    assert_eq!(r["flows"].as_u64(), Some(expected.len() as u64));
    // Traffic inside the namespace and DNS stay allowed by the staged policy: never listed.
    assert!(listed
        .iter()
        .all(|(_, d, _)| d.starts_with("pub") || d.starts_with("pvt")));
    // The daemon path: one low-severity alert per workload whose established traffic would be cut.
    let all = alerts(dir.path(), &input);
    let staged: Vec<&Value> = all
        .iter()
        .filter(|a| a["detector"] == "staged_policy_impact")
        .collect();
    assert!(!staged.is_empty());
    assert!(staged.iter().all(|a| a["severity"].as_u64() < Some(40)));
    // And as HTML.
    let html = dir.path().join("impact.html");
    run(&[
        "staged-impact",
        &input,
        "--out",
        html.to_str().expect("utf-8"),
    ]);
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.contains("default-deny-egress") && page.contains("<table>"));
}

#[test]
fn storefront_recommendations_parse_and_allow_all_benign_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = generate(dir.path(), "learn", &["--no-attacks"]);
    let out = dir.path().join("rec");
    let out_s = out.to_str().expect("utf-8");
    run(&["recommend", &input, "--namespace", "shop", "--out", out_s]);
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("recommendations.json")).expect("summary"))
            .expect("summary is JSON");
    let policies = summary["policies"].as_array().expect("policies");
    assert!(
        policies.len() >= 8,
        "most storefront workloads get a policy"
    );
    let mut rules = 0;
    for p in policies {
        let file = out.join(p["file"].as_str().expect("file"));
        let y: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&file).expect("yaml"))
                .expect("valid YAML");
        assert_eq!(y["apiVersion"].as_str(), Some("projectcalico.org/v3"));
        assert_eq!(y["kind"].as_str(), Some("StagedNetworkPolicy"));
        assert_eq!(y["metadata"]["namespace"].as_str(), Some("shop"));
        assert!(y["spec"]["selector"]
            .as_str()
            .is_some_and(|s| s.starts_with("app == '")));
        let ingress = y["spec"]["ingress"].as_sequence().expect("ingress");
        let egress = y["spec"]["egress"].as_sequence().expect("egress");
        assert_eq!(
            ingress.last().and_then(|r| r["action"].as_str()),
            Some("Deny")
        );
        assert_eq!(
            egress.last().and_then(|r| r["action"].as_str()),
            Some("Deny")
        );
        // Every workload calls DNS.
        assert!(egress
            .iter()
            .any(|r| r["destination"]["ports"][0].as_u64() == Some(53)));
        for e in p["evidence"].as_array().expect("evidence") {
            rules += 1;
            assert!(e["windows"].as_u64() >= Some(3) && e["connections"].as_u64() > Some(0));
            assert!(e["first_seen"].as_str() <= e["last_seen"].as_str());
        }
    }
    assert!(rules >= 30, "{rules} rules");
    let rt = &summary["round_trip"];
    assert!(rt["flows_checked"].as_u64() > Some(40), "{rt}");
    assert_eq!(rt["regular_flows_denied"], 0, "{rt}");
    // Enforced variant.
    let out2 = dir.path().join("rec2");
    run(&[
        "recommend",
        &input,
        "--namespace",
        "shop",
        "--enforce",
        "--out",
        out2.to_str().expect("utf-8"),
    ]);
    let any = std::fs::read_dir(&out2)
        .expect("dir")
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .expect("a policy");
    let y: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(any.path()).expect("yaml")).expect("valid");
    assert_eq!(y["kind"].as_str(), Some("NetworkPolicy"));
}
