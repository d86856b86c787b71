//! End-to-end checks of `flowwarden generate`: Felix's reporting and aggregation rules on the
//! generated lines, labels that line up with what the decoder derives, both formats decoding, and the
//! command line (default attacks, determinism, sane sizes).

use flowwarden::flow::policy::parse_policy_str;
use flowwarden::flow::raw::PolicyEntry;
use flowwarden::flow::{Decoder, EndpointType, Reporter, WorkloadRegistry};
use flowwarden::simulate::{AttackSpec, LabelRow, OutputFormat, SimConfig, Simulator};
use std::collections::HashMap;
use std::process::Command;

fn generate(cfg: SimConfig) -> (Vec<u8>, Vec<LabelRow>) {
    let mut sim = Simulator::try_new(cfg).expect("valid config");
    let (mut out, mut labels) = (Vec::new(), Vec::new());
    while sim.next_window(&mut out, Some(&mut labels)) {}
    (out, labels)
}

fn lines(out: &[u8]) -> Vec<&[u8]> {
    out.split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

fn attack_run(format: OutputFormat, flush_s: u64, hours: u64) -> SimConfig {
    SimConfig {
        seed: 11,
        duration_s: hours * 3600,
        flush_s,
        format,
        attacks: AttackSpec::default_mix(),
        ..SimConfig::default()
    }
}

/// (window, src key, dst key, dest port) of a pod-to-pod flow.
type FlowKey = (i64, String, String, Option<u16>);
/// (records, bytes_in, bytes_out) of one reporter side.
type SideSums = (usize, u64, u64);

/// Per line: (window, src key, dst key, dest port, reporter, bytes_in, bytes_out).
type Row = (i64, String, String, Option<u16>, Reporter, u64, u64);

fn decode_all(out: &[u8], labels: &[LabelRow]) -> Vec<Row> {
    let mut dec = Decoder::default();
    let reg = WorkloadRegistry::global();
    let ls = lines(out);
    assert_eq!(ls.len(), labels.len(), "one label row per line");
    ls.iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (line, label))| {
            let r = dec.decode(line).unwrap_or_else(|e| {
                panic!(
                    "line {i} does not decode: {e}: {}",
                    String::from_utf8_lossy(line)
                )
            });
            let (s, d) = (reg.key(r.src.id), reg.key(r.dst.id));
            assert_eq!(
                (&s, &d),
                (&label.src_workload, &label.dst_workload),
                "line {i} keys"
            );
            assert_eq!(r.start_time, label.start_time, "line {i} start_time");
            (
                r.start_time,
                s,
                d,
                r.dst.port,
                r.reporter,
                r.bytes_in,
                r.bytes_out,
            )
        })
        .collect()
}

#[test]
fn calico_lines_follow_felix_rules() {
    let (out, labels) = generate(attack_run(OutputFormat::Calico, 300, 8));
    let rows = decode_all(&out, &labels);
    assert!(labels.iter().any(|l| l.label) && labels.iter().any(|l| !l.label));

    let mut dec = Decoder::default();
    let mut shapes = [0usize; 3];
    let mut prev_start = i64::MIN;
    for (i, line) in lines(&out).iter().enumerate() {
        dec.with_raw(line, |raw| {
            let (start, end) = (raw.start_time.unwrap(), raw.end_time.unwrap());
            assert_eq!(end - start, 300, "records span the flush window");
            assert!(start >= prev_start, "line {i}: event-time order");
            prev_start = start;
            assert_eq!(
                raw.source_port, None,
                "line {i}: source port is aggregated away at levels 1 and 2"
            );
            assert!(raw.dest_port.is_some(), "line {i}: dest port kept");
            let src_type = EndpointType::from_calico(raw.source_type.unwrap());
            let dst_type = EndpointType::from_calico(raw.dest_type.unwrap());
            match raw.action.unwrap() {
                "allow" => {
                    // Level 2: IPs null, names "-", pods under `<deploy>-<hash>-*`.
                    assert_eq!((raw.source_ip, raw.dest_ip), (None, None), "line {i}");
                    assert_eq!(
                        (raw.source_name, raw.dest_name),
                        (Some("-"), Some("-")),
                        "line {i}"
                    );
                    for (t, aggr) in [
                        (src_type, raw.source_name_aggr),
                        (dst_type, raw.dest_name_aggr),
                    ] {
                        let aggr = aggr.unwrap();
                        if t == EndpointType::Wep {
                            assert!(
                                aggr.ends_with("-*") && aggr.matches('-').count() >= 2,
                                "line {i}: {aggr}"
                            );
                        } else {
                            assert!(aggr == "pub" || aggr == "pvt", "line {i}: {aggr}");
                        }
                    }
                }
                "deny" => {
                    // Level 1: IPs and pod names kept.
                    assert!(
                        raw.source_ip.is_some() && raw.dest_ip.is_some(),
                        "line {i}: denied keeps IPs"
                    );
                    if src_type == EndpointType::Wep {
                        assert_ne!(raw.source_name, Some("-"), "line {i}");
                    }
                }
                other => panic!("line {i}: action {other}"),
            }
            // A peer outside the cluster has no node to report from.
            let reporter = raw.reporter.unwrap();
            if src_type == EndpointType::Net {
                assert_eq!(reporter, "dst", "line {i}");
            }
            if dst_type == EndpointType::Net {
                assert_eq!(reporter, "src", "line {i}");
            }
            let policies = raw.policies.as_ref().expect("policies");
            for list in [
                &policies.all_policies,
                &policies.enforced_policies,
                &policies.pending_policies,
            ]
            .into_iter()
            .flatten()
            {
                for p in list {
                    let PolicyEntry::Str(s) = p else {
                        panic!("line {i}: Calico policies are strings")
                    };
                    parse_policy_str(s).unwrap_or_else(|e| panic!("line {i}: policy {s:?}: {e}"));
                    let name = s.split('|').nth(2).unwrap_or("");
                    let shape = if name
                        .split_once(':')
                        .is_some_and(|(k, _)| ["gnp", "np", "knp", "snp", "pro"].contains(&k))
                    {
                        2
                    } else if s.split('|').count() == 4 {
                        0
                    } else {
                        1
                    };
                    shapes[shape] += 1;
                }
            }
            let last = policies
                .enforced()
                .last()
                .and_then(|p| p.parse().ok())
                .expect("a deciding policy");
            assert_eq!(
                last.action.as_str(),
                raw.action.unwrap(),
                "line {i}: the last enforced hit decides"
            );
        })
        .unwrap();
    }
    assert!(
        shapes.iter().all(|&n| n > 0),
        "all three policy shapes appear: {shapes:?}"
    );

    // Both reporters for pod-to-pod flows, with matching byte sums.
    let mut pairs: HashMap<FlowKey, [SideSums; 2]> = HashMap::new();
    for (t, s, d, port, rep, bin, bout) in &rows {
        let pod_to_pod = !s.starts_with("pub")
            && !s.starts_with("pvt")
            && !d.starts_with("pub")
            && !d.starts_with("pvt");
        if !pod_to_pod {
            continue;
        }
        let side = usize::from(*rep == Reporter::Dst);
        let e = pairs.entry((*t, s.clone(), d.clone(), *port)).or_default();
        e[side].0 += 1;
        e[side].1 += bin;
        e[side].2 += bout;
    }
    assert!(pairs.len() > 100);
    for (k, [src, dst]) in &pairs {
        assert!(
            src.0 > 0 && dst.0 > 0,
            "{k:?}: a pod-to-pod flow has both a src and a dst record"
        );
        assert_eq!(src.2, dst.1, "{k:?}: bytes_out of src = bytes_in of dst");
        assert_eq!(src.1, dst.2, "{k:?}: bytes_in of src = bytes_out of dst");
    }
}

#[test]
fn goldmane_lines_decode_with_integer_enums_and_no_zero_values() {
    let (out, labels) = generate(attack_run(OutputFormat::Goldmane, 15, 2));
    let rows = decode_all(&out, &labels);
    assert!(rows.len() > 1000);
    let text = String::from_utf8(out).unwrap();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v.get("Key").unwrap_or_else(|| panic!("line {i}: Key"));
        for f in ["source_type", "dest_type", "reporter", "action"] {
            assert!(key[f].is_u64(), "line {i}: {f} is an integer enum");
        }
        for (name, value) in v.as_object().unwrap() {
            assert_ne!(
                value,
                &serde_json::json!(0),
                "line {i}: zero value {name} must be omitted"
            );
        }
        if let Some(l) = v.get("source_labels") {
            assert!(l.is_array(), "line {i}: labels are arrays");
        }
        assert_eq!(
            v["end_time"].as_i64().unwrap() - v["start_time"].as_i64().unwrap(),
            15
        );
        for hit in key["policies"]["enforced_policies"].as_array().unwrap() {
            assert!(
                hit["kind"].is_u64() && hit["action"].is_u64(),
                "line {i}: {hit}"
            );
        }
    }
}

#[test]
fn attacks_are_labelled_with_their_scenario() {
    let (_, labels) = generate(attack_run(OutputFormat::Calico, 300, 8));
    for name in [
        "port-scan",
        "slow-port-scan",
        "ip-sweep",
        "lateral-movement",
        "exfiltration",
        "slow-exfiltration",
        "c2-beacon",
        "ddos",
        "deny-surge",
        "crypto-miner",
    ] {
        assert!(
            labels.iter().any(|l| l.label && l.attack_type == name),
            "{name} has labelled lines"
        );
    }
    // A fast port scan touches hundreds of distinct ports within one window, visible in denied records.
    let (out, labels) = generate(SimConfig {
        duration_s: 3600,
        attacks: vec!["port-scan:start=10m,duration=10m".parse().unwrap()],
        ..SimConfig::default()
    });
    let mut dec = Decoder::default();
    let mut ports = std::collections::HashSet::new();
    for (line, l) in lines(&out).iter().zip(&labels) {
        let r = dec.decode(line).unwrap();
        if l.attack_type == "port-scan" && r.action == flowwarden::flow::Action::Deny {
            ports.insert(r.dst.port);
        }
    }
    assert!(ports.len() > 500, "{} distinct denied ports", ports.len());
}

#[test]
fn benign_run_has_no_attack_labels() {
    let (_, labels) = generate(SimConfig {
        duration_s: 4 * 3600,
        ..SimConfig::default()
    });
    assert!(!labels.is_empty() && labels.iter().all(|l| !l.label && l.attack_type.is_empty()));
}

#[test]
fn scales_to_thousands_of_workloads() {
    let cfg = SimConfig {
        duration_s: 600,
        workloads: Some(2000),
        ..SimConfig::default()
    };
    let (out, labels) = generate(cfg);
    let distinct: std::collections::HashSet<_> = labels.iter().map(|l| &l.src_workload).collect();
    assert!(distinct.len() > 1500, "{} source workloads", distinct.len());
    decode_all(&out, &labels);
}

#[test]
fn cli_generates_two_days_with_default_attacks_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let out = dir.path().join(format!("{name}.jsonl"));
        let labels = dir.path().join(format!("{name}.labels.csv"));
        let episodes = dir.path().join(format!("{name}.episodes.csv"));
        let status = Command::new(env!("CARGO_BIN_EXE_flowwarden"))
            .args(["generate", "--seed", "7", "--duration", "2d", "--out"])
            .arg(&out)
            .arg("--labels")
            .arg(&labels)
            .arg("--episodes")
            .arg(&episodes)
            .status()
            .unwrap();
        assert!(status.success());
        (
            std::fs::read(out).unwrap(),
            std::fs::read_to_string(labels).unwrap(),
            std::fs::read_to_string(episodes).unwrap(),
        )
    };
    let (a, la, ea) = run("a");
    let (b, lb, eb) = run("b");
    assert!(a == b && la == lb && ea == eb, "same seed, same bytes");
    let n = a.iter().filter(|&&c| c == b'\n').count();
    assert!(
        (100_000..=1_000_000).contains(&n),
        "{n} lines for 2 days of the storefront"
    );
    let mut rows = la.lines();
    assert_eq!(
        rows.next(),
        Some("line,label,attack_type,src_workload,dst_workload,start_time")
    );
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), n);
    assert!(rows
        .iter()
        .enumerate()
        .all(|(i, r)| r.starts_with(&format!("{i},"))));
    assert!(
        rows.iter().any(|r| r.split(',').nth(1) == Some("1")),
        "default attacks are on"
    );
    assert_eq!(
        ea.lines().next(),
        Some("scenario,attacker,victim,start,end")
    );
    assert_eq!(ea.lines().count(), 11, "the default mix has ten scenarios");
}

#[test]
fn cli_rejects_bad_attacks_and_honours_no_attacks() {
    let bad = Command::new(env!("CARGO_BIN_EXE_flowwarden"))
        .args([
            "generate",
            "--duration",
            "1h",
            "--attack",
            "port-scan:target=nowhere/none",
            "--out",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nowhere/none"));
    let ok = Command::new(env!("CARGO_BIN_EXE_flowwarden"))
        .args([
            "generate",
            "--duration",
            "1h",
            "--no-attacks",
            "--format",
            "goldmane",
            "--out",
            "-",
        ])
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(ok.stdout.starts_with(b"{\"start_time\":"));
}
