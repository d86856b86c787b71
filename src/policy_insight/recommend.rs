//! Least-privilege recommendations: from the policy ledger's usage history, one projectcalico.org/v3
//! (Staged)NetworkPolicy per workload that allows exactly the (peer, port, protocol) sets it used in
//! enough windows, and denies the rest; each rule with its evidence (first seen, last seen, volume).
//!
//! Workloads whose history is shorter than `min_history_s`, that were the subject of a high-severity
//! alert in the learning period, or that carry no label to select them are left out and listed with
//! the reason. [`round_trip`] replays the learning flows through the policies read back from disk
//! (see [`super::evaluate`]) and counts what they would deny.

use super::evaluate::{
    CalicoPolicy, EntityRule, Evaluator, Metadata, Peer, PolicySpec, Rule, SideVerdict,
    PRIVATE_NETS,
};
use super::impact::{group_display, time_text};
use super::ledger::FlowUsage;
use crate::flow::{EndpointType, Proto, WorkloadId, WorkloadInfo, WorkloadRegistry};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What to recommend.
#[derive(Debug, Clone)]
pub struct RecommendOptions {
    /// Only workloads of this namespace.
    pub namespace: Option<String>,
    /// Windows a (peer, port, protocol) must have been used in to be allowed.
    pub min_windows: u32,
    /// History a workload needs (first to last allowed flow), seconds.
    pub min_history_s: i64,
    /// Write NetworkPolicy (enforced) instead of StagedNetworkPolicy.
    pub enforce: bool,
    /// Tier and order of the policies.
    pub tier: String,
    /// See `tier`.
    pub order: f64,
}

impl Default for RecommendOptions {
    fn default() -> Self {
        RecommendOptions {
            namespace: None,
            min_windows: 3,
            min_history_s: 6 * 3600,
            enforce: false,
            tier: "default".into(),
            order: 100.0,
        }
    }
}

/// Evidence of one allow rule.
#[derive(Debug, Clone, Serialize)]
pub struct RuleEvidence {
    /// `ingress` or `egress`.
    pub direction: &'static str,
    /// Index of the rule in its list.
    pub rule: usize,
    /// The peer (`shop/cart`, `pub:api.stripe.com`, `pvt`, ...).
    pub peer: String,
    /// Ports allowed.
    pub ports: Vec<u16>,
    /// Protocol.
    pub proto: String,
    /// First and last time the traffic was seen allowed.
    pub first_seen: String,
    /// See `first_seen`.
    pub last_seen: String,
    /// Windows with traffic, records, connections and bytes.
    pub windows: u32,
    /// See `windows`.
    pub records: u64,
    /// See `windows`.
    pub connections: u64,
    /// See `windows`.
    pub bytes: u64,
}

/// One recommended policy and why.
#[derive(Debug, Clone, Serialize)]
pub struct Recommended {
    /// `namespace/name` of the workload group.
    pub workload: String,
    /// File written (relative to the output directory).
    pub file: String,
    /// The policy.
    pub policy: CalicoPolicy,
    /// One entry per allow rule.
    pub evidence: Vec<RuleEvidence>,
    /// Flows seen too rarely to allow (denied by the policy).
    pub left_out: Vec<RuleEvidence>,
}

/// A workload with no recommendation, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Excluded {
    /// `namespace/name`.
    pub workload: String,
    /// Why.
    pub reason: String,
}

/// Result of replaying the learning flows through the recommended policies.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RoundTrip {
    /// Allowed flows (side, source, destination, port, protocol) replayed.
    pub flows_checked: usize,
    /// Flows seen in at least `min_windows` windows that the policies would deny (must be 0).
    pub regular_flows_denied: usize,
    /// Rarer flows the policies deny (left out on purpose).
    pub rare_flows_denied: usize,
    /// Flows of workloads no recommended policy selects.
    pub not_selected: usize,
    /// The regular flows denied, for the operator.
    pub denied: Vec<String>,
}

/// All recommendations of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendations {
    /// The policies.
    pub policies: Vec<Recommended>,
    /// Workloads left out.
    pub excluded: Vec<Excluded>,
    /// Round trip of the learning flows through the written policies.
    pub round_trip: RoundTrip,
}

/// Labels that change with every rollout or Job and so must not be in a selector.
const VOLATILE_LABELS: [&str; 4] = [
    "pod-template-hash",
    "controller-revision-hash",
    "job-name",
    "pod-template-generation",
];

fn selector_of(info: &WorkloadInfo) -> Option<String> {
    let mut terms: Vec<String> = info
        .labels
        .iter()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, v)| !VOLATILE_LABELS.contains(k) && !v.contains('\'') && !k.contains(' '))
        .map(|(k, v)| format!("{k} == '{v}'"))
        .collect();
    terms.sort();
    terms.dedup();
    (!terms.is_empty()).then(|| terms.join(" && "))
}

/// The evaluator's view of a registered workload.
pub fn peer_view(info: Option<&WorkloadInfo>) -> Peer {
    let Some(info) = info else {
        return Peer::default();
    };
    let suffix = info.key.split_once(':').map(|(_, s)| s.to_string());
    let ip = suffix.as_deref().and_then(|s| s.parse().ok());
    Peer {
        namespace: info.namespace.clone(),
        labels: info.labels.clone(),
        pod: info.kind == EndpointType::Wep,
        ip,
        public: info.name_aggr == "pub",
        domain: suffix.filter(|_| ip.is_none()),
    }
}

/// The rule's peer for a workload or network.
fn entity_for(info: Option<&WorkloadInfo>, egress: bool) -> EntityRule {
    let v = peer_view(info);
    let mut e = EntityRule::default();
    if v.pod {
        if let Some(info) = info {
            e.selector = selector_of(info);
            e.namespace_selector = Some(format!("projectcalico.org/name == '{}'", info.namespace));
        }
        return e;
    }
    match (v.ip, &v.domain) {
        (Some(ip), _) => {
            e.nets = vec![match ip {
                std::net::IpAddr::V4(a) => format!("{a}/32"),
                std::net::IpAddr::V6(a) => format!("{a}/128"),
            }]
        }
        (None, Some(d)) if egress => e.domains = vec![d.clone()],
        _ if v.public => {
            e.nets = vec!["0.0.0.0/0".into()];
            e.not_nets = PRIVATE_NETS.iter().map(|s| s.to_string()).collect();
        }
        _ => e.nets = PRIVATE_NETS.iter().map(|s| s.to_string()).collect(),
    }
    e
}

fn protocol_name(p: u8) -> String {
    Proto(p).name().to_ascii_uppercase()
}

fn peer_name(info: Option<&WorkloadInfo>, id: WorkloadId) -> String {
    match info {
        Some(i) if i.kind == EndpointType::Wep => group_display(id),
        Some(i) => i.key.clone(),
        None => WorkloadRegistry::global().key(id),
    }
}

/// Builds the recommendations from the ledger's flows; `anomalous` holds `namespace/name` groups
/// to leave out with the reason.
pub fn recommend(
    flows: &[FlowUsage],
    anomalous: &BTreeMap<String, String>,
    o: &RecommendOptions,
) -> Recommendations {
    let reg = WorkloadRegistry::global();
    // Subject group → its allowed flows (ingress ones from its own records, egress likewise).
    let mut by_subject: BTreeMap<WorkloadId, Vec<&FlowUsage>> = BTreeMap::new();
    for f in flows.iter().filter(|f| f.entry.allowed_records > 0) {
        let group = if f.key.ingress { f.key.dst } else { f.key.src };
        by_subject.entry(group).or_default().push(f);
    }
    let mut policies = Vec::new();
    let mut excluded = Vec::new();
    for subject_flows in by_subject.values() {
        let subject = subject_flows[0].entry.subject;
        let Some(info) = reg.get(subject) else {
            continue;
        };
        if info.kind != EndpointType::Wep {
            continue;
        }
        if o.namespace.as_ref().is_some_and(|ns| *ns != info.namespace) {
            continue;
        }
        let workload = group_display(subject);
        let first = subject_flows
            .iter()
            .map(|f| f.entry.first_allowed)
            .min()
            .unwrap_or(0);
        let last = subject_flows
            .iter()
            .map(|f| f.entry.last_allowed)
            .max()
            .unwrap_or(0);
        if let Some(reason) = anomalous.get(&workload) {
            excluded.push(Excluded {
                workload,
                reason: reason.clone(),
            });
            continue;
        }
        if last - first < o.min_history_s {
            excluded.push(Excluded {
                workload,
                reason: format!(
                    "history too short: {} s of traffic, {} s needed",
                    last - first,
                    o.min_history_s
                ),
            });
            continue;
        }
        let Some(selector) = selector_of(&info) else {
            excluded.push(Excluded {
                workload,
                reason: "no stable label to select it".into(),
            });
            continue;
        };
        policies.push(build_policy(&workload, &info, selector, subject_flows, o));
    }
    Recommendations {
        policies,
        excluded,
        round_trip: RoundTrip::default(),
    }
}

fn build_policy(
    workload: &str,
    info: &Arc<WorkloadInfo>,
    selector: String,
    flows: &[&FlowUsage],
    o: &RecommendOptions,
) -> Recommended {
    let reg = WorkloadRegistry::global();
    // (ingress, peer group, proto) → ports with their evidence; BTreeMap keeps the output stable.
    // Per port: windows, records, connections, bytes, first and last allowed.
    type Acc = (u32, u64, u64, u64, i64, i64);
    type Rules = BTreeMap<(bool, String, u8), (WorkloadId, BTreeMap<u16, Acc>)>;
    let mut allowed: Rules = BTreeMap::new();
    let mut left_out = Vec::new();
    for f in flows {
        let peer_id = f.entry.peer;
        let peer_info = reg.get(peer_id);
        let peer = peer_name(peer_info.as_deref(), peer_id);
        let e = &f.entry;
        let ev = || RuleEvidence {
            direction: if f.key.ingress { "ingress" } else { "egress" },
            rule: 0,
            peer: peer.clone(),
            ports: vec![f.key.port],
            proto: protocol_name(f.key.proto),
            first_seen: time_text(e.first_allowed),
            last_seen: time_text(e.last_allowed),
            windows: e.allowed_windows,
            records: e.allowed_records,
            connections: e.allowed_connections,
            bytes: e.allowed_bytes,
        };
        if e.allowed_windows < o.min_windows {
            left_out.push(ev());
            continue;
        }
        let slot = allowed
            .entry((f.key.ingress, peer.clone(), f.key.proto))
            .or_insert_with(|| (peer_id, BTreeMap::new()));
        let a = slot
            .1
            .entry(f.key.port)
            .or_insert((0, 0, 0, 0, i64::MAX, 0));
        a.0 += e.allowed_windows;
        a.1 += e.allowed_records;
        a.2 += e.allowed_connections;
        a.3 += e.allowed_bytes;
        a.4 = a.4.min(e.first_allowed);
        a.5 = a.5.max(e.last_allowed);
    }
    let (mut ingress, mut egress, mut evidence) = (Vec::new(), Vec::new(), Vec::new());
    for ((is_ingress, peer, proto), (peer_id, ports)) in allowed {
        let peer_info = reg.get(peer_id);
        let entity = entity_for(peer_info.as_deref(), !is_ingress);
        let port_list: Vec<u16> = ports.keys().copied().filter(|p| *p != 0).collect();
        let ports_rule = EntityRule {
            ports: port_list.clone(),
            ..EntityRule::default()
        };
        let rule = Rule {
            action: "Allow".into(),
            protocol: Some(protocol_name(proto)),
            source: if is_ingress {
                entity.clone()
            } else {
                EntityRule::default()
            },
            destination: if is_ingress {
                ports_rule
            } else {
                EntityRule {
                    ports: port_list.clone(),
                    ..entity
                }
            },
        };
        let list = if is_ingress {
            &mut ingress
        } else {
            &mut egress
        };
        let sum = ports.values().fold((0, 0, 0, 0, i64::MAX, 0), |s, a| {
            (
                s.0 + a.0,
                s.1 + a.1,
                s.2 + a.2,
                s.3 + a.3,
                s.4.min(a.4),
                s.5.max(a.5),
            )
        });
        evidence.push(RuleEvidence {
            direction: if is_ingress { "ingress" } else { "egress" },
            rule: list.len(),
            peer,
            ports: port_list,
            proto: protocol_name(proto),
            first_seen: time_text(sum.4),
            last_seen: time_text(sum.5),
            windows: sum.0,
            records: sum.1,
            connections: sum.2,
            bytes: sum.3,
        });
        list.push(rule);
    }
    // Deny the rest explicitly, so a later policy of the tier cannot widen it.
    for list in [&mut ingress, &mut egress] {
        list.push(Rule {
            action: "Deny".into(),
            protocol: None,
            source: EntityRule::default(),
            destination: EntityRule::default(),
        });
    }
    let base = workload.rsplit('/').next().unwrap_or(workload);
    let name = format!("flowwarden-lp-{base}");
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "flowwarden.io/generated-by".to_string(),
        "flowwarden recommend: least privilege from observed flows".to_string(),
    );
    annotations.insert("flowwarden.io/workload".to_string(), workload.to_string());
    let policy = CalicoPolicy {
        api_version: "projectcalico.org/v3".into(),
        kind: if o.enforce {
            "NetworkPolicy"
        } else {
            "StagedNetworkPolicy"
        }
        .into(),
        metadata: Metadata {
            name: name.clone(),
            namespace: info.namespace.clone(),
            annotations,
        },
        spec: PolicySpec {
            staged_action: (!o.enforce).then(|| "Set".to_string()),
            tier: o.tier.clone(),
            order: o.order,
            selector,
            types: vec!["Ingress".into(), "Egress".into()],
            ingress,
            egress,
        },
    };
    Recommended {
        workload: workload.to_string(),
        file: format!("{}-{base}.yaml", info.namespace),
        policy,
        evidence,
        left_out,
    }
}

/// The YAML of a recommendation: a comment block explaining each rule, then the policy.
pub fn to_yaml(r: &Recommended) -> Result<String, serde_yaml::Error> {
    let mut s = format!(
        "# Least-privilege policy for {} recommended by flowwarden from observed flows.\n",
        r.workload
    );
    for e in &r.evidence {
        s.push_str(&format!(
            "# {}[{}] allow {} {:?} {} {}: first seen {}, last seen {}, {} windows, {} connections, {} bytes\n",
            e.direction,
            e.rule,
            e.proto,
            e.ports,
            if e.direction == "ingress" { "from" } else { "to" },
            e.peer,
            e.first_seen,
            e.last_seen,
            e.windows,
            e.connections,
            e.bytes
        ));
    }
    for e in &r.left_out {
        s.push_str(&format!(
            "# not allowed (seen in only {} windows): {} {} {:?} {} {}\n",
            e.windows,
            e.direction,
            e.proto,
            e.ports,
            if e.direction == "ingress" {
                "from"
            } else {
                "to"
            },
            e.peer
        ));
    }
    s.push_str("# Everything else is denied.\n");
    s.push_str(&serde_yaml::to_string(&r.policy)?);
    Ok(s)
}

/// Replays the ledger's allowed flows through `policies` (read back from disk by the caller).
pub fn round_trip(
    flows: &[FlowUsage],
    policies: Vec<CalicoPolicy>,
    min_windows: u32,
) -> Result<RoundTrip, super::evaluate::EvalError> {
    let ev = Evaluator::new(policies)?;
    let reg = WorkloadRegistry::global();
    let mut rt = RoundTrip::default();
    let mut denied = BTreeSet::new();
    for f in flows.iter().filter(|f| f.entry.allowed_records > 0) {
        let subject = reg.get(f.entry.subject);
        let peer = reg.get(f.entry.peer);
        let proto = Proto(f.key.proto).name();
        rt.flows_checked += 1;
        let v = ev.side(
            f.key.ingress,
            &peer_view(subject.as_deref()),
            &peer_view(peer.as_deref()),
            f.key.port,
            &proto,
        )?;
        match v {
            SideVerdict::NotSelected => rt.not_selected += 1,
            SideVerdict::Allow => {}
            SideVerdict::Deny if f.entry.allowed_windows >= min_windows => {
                rt.regular_flows_denied += 1;
                denied.insert(format!(
                    "{} {} {} {}/{}",
                    if f.key.ingress { "ingress" } else { "egress" },
                    reg.key(f.entry.subject),
                    reg.key(f.entry.peer),
                    proto,
                    f.key.port
                ));
            }
            SideVerdict::Deny => rt.rare_flows_denied += 1,
        }
    }
    rt.denied = denied.into_iter().collect();
    Ok(rt)
}
