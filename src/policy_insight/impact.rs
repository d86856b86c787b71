//! `flowwarden staged-impact`: the flows that staged (pending) policies would deny although they
//! are allowed today, per workload, as JSON or a self-contained HTML page.
//!
//! A record's last pending hit is what would decide it with staged policies enforced
//! (`pending_policies`, Felix and Goldmane alike); a record that is allowed while that hit denies is
//! a flow the staged policy would cut. Flows are keyed like the policy ledger (side, source and
//! destination workload group, port, protocol, staged policy) and carry their volume and times.

use super::decision::{canonical_policy, Decision};
use crate::flow::registry::StringTable;
use crate::flow::{Action, FlowRecord, Proto, Reporter, WorkloadId, WorkloadRegistry};
use serde::Serialize;
use std::collections::BTreeMap;

/// One flow a staged policy would cut.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImpactFlow {
    /// `egress` (the source's staged policy) or `ingress` (the destination's).
    pub direction: &'static str,
    /// Source workload (latest name seen).
    pub source: String,
    /// Destination workload or network.
    pub destination: String,
    /// Destination port (0 when aggregated away).
    pub port: u16,
    /// Protocol name.
    pub proto: String,
    /// The staged hit that would deny it.
    pub staged_policy: Decision,
    /// The enforced hit that allows it today.
    pub allowed_today_by: Decision,
    /// Records, connections and bytes (both directions) of the flow while it was staged-denied.
    pub records: u64,
    /// See `records`.
    pub connections: u64,
    /// See `records`.
    pub bytes: u64,
    /// First and last record start (epoch s).
    pub first_seen: i64,
    /// See `first_seen`.
    pub last_seen: i64,
}

/// The flows of one workload (the side whose staged policy would cut them).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkloadImpact {
    /// `namespace/name` of the workload group.
    pub workload: String,
    /// Its flows, busiest first.
    pub flows: Vec<ImpactFlow>,
}

/// The `impact` report.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ImpactReport {
    /// Report kind (`impact`).
    pub report: &'static str,
    /// Records read.
    pub records: u64,
    /// Records that carried a pending (staged) decision.
    pub records_with_pending: u64,
    /// Staged policies that would deny something allowed today.
    pub staged_policies: Vec<String>,
    /// Flows listed.
    pub flows: usize,
    /// Per workload.
    pub workloads: Vec<WorkloadImpact>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    subject_group: WorkloadId,
    ingress: bool,
    src: WorkloadId,
    dst: WorkloadId,
    port: u16,
    proto: u8,
    staged: u32,
}

#[derive(Debug, Clone)]
struct Acc {
    src: WorkloadId,
    dst: WorkloadId,
    subject: WorkloadId,
    staged: Decision,
    today: Decision,
    records: u64,
    connections: u64,
    bytes: u64,
    first: i64,
    last: i64,
}

/// Folds records into an [`ImpactReport`].
#[derive(Debug, Default)]
pub struct ImpactBuilder {
    flows: BTreeMap<Key, Acc>,
    /// Decoder string id → index of its canonical name (shapes of one policy share one index).
    canonical: rustc_hash::FxHashMap<u32, u32>,
    names: rustc_hash::FxHashMap<String, u32>,
    records: u64,
    with_pending: u64,
}

fn decision(id: u32, kind: crate::flow::policy::PolicyKind, action: Action, rule: i32) -> Decision {
    Decision {
        policy: canonical_policy(&StringTable::global().resolve(id)),
        kind,
        action,
        rule,
    }
}

impl ImpactBuilder {
    fn canonical_index(&mut self, id: u32) -> u32 {
        if let Some(&n) = self.canonical.get(&id) {
            return n;
        }
        let name = canonical_policy(&StringTable::global().resolve(id));
        let next = self.names.len() as u32;
        let n = *self.names.entry(name).or_insert(next);
        self.canonical.insert(id, n);
        n
    }

    /// Adds one record.
    pub fn add(&mut self, rec: &FlowRecord) {
        self.records += 1;
        if rec.pending_policy == 0 {
            return;
        }
        self.with_pending += 1;
        if rec.action != Action::Allow || rec.pending_action != Action::Deny {
            return;
        }
        let ingress = rec.reporter == Reporter::Dst;
        let (subject, subject_group) = if ingress {
            (rec.dst.id, rec.dst.group)
        } else {
            (rec.src.id, rec.src.group)
        };
        let key = Key {
            subject_group,
            ingress,
            src: rec.src.group,
            dst: rec.dst.group,
            port: rec.dst.port.unwrap_or(0),
            proto: rec.proto.0,
            staged: self.canonical_index(rec.pending_policy),
        };
        let acc = self.flows.entry(key).or_insert_with(|| Acc {
            src: rec.src.id,
            dst: rec.dst.id,
            subject,
            staged: decision(
                rec.pending_policy,
                rec.pending_kind,
                rec.pending_action,
                rec.pending_rule,
            ),
            today: decision(
                rec.deciding_policy,
                rec.deciding_kind,
                rec.deciding_action,
                rec.deciding_rule,
            ),
            records: 0,
            connections: 0,
            bytes: 0,
            first: rec.start_time,
            last: rec.start_time,
        });
        acc.src = rec.src.id;
        acc.dst = rec.dst.id;
        acc.subject = subject;
        acc.records += 1;
        acc.connections += rec.num_flows.max(rec.num_flows_started);
        acc.bytes += rec.bytes_in + rec.bytes_out;
        acc.first = acc.first.min(rec.start_time);
        acc.last = acc.last.max(rec.start_time);
    }

    /// The report.
    pub fn finish(self) -> ImpactReport {
        let reg = WorkloadRegistry::global();
        let mut by_workload: BTreeMap<String, Vec<ImpactFlow>> = BTreeMap::new();
        let mut staged: Vec<String> = Vec::new();
        for (k, a) in self.flows {
            staged.push(a.staged.policy.clone());
            by_workload
                .entry(group_display(a.subject))
                .or_default()
                .push(ImpactFlow {
                    direction: if k.ingress { "ingress" } else { "egress" },
                    source: reg.key(a.src),
                    destination: reg.key(a.dst),
                    port: k.port,
                    proto: Proto(k.proto).name().into_owned(),
                    staged_policy: a.staged,
                    allowed_today_by: a.today,
                    records: a.records,
                    connections: a.connections,
                    bytes: a.bytes,
                    first_seen: a.first,
                    last_seen: a.last,
                });
        }
        staged.sort();
        staged.dedup();
        let workloads: Vec<WorkloadImpact> = by_workload
            .into_iter()
            .map(|(workload, mut flows)| {
                flows.sort_by(|a, b| b.connections.cmp(&a.connections).then(a.port.cmp(&b.port)));
                WorkloadImpact { workload, flows }
            })
            .collect();
        ImpactReport {
            report: "impact",
            records: self.records,
            records_with_pending: self.with_pending,
            staged_policies: staged,
            flows: workloads.iter().map(|w| w.flows.len()).sum(),
            workloads,
        }
    }
}

/// `namespace/name` of a workload's group (pods without their replica-set hash).
pub fn group_display(id: WorkloadId) -> String {
    let reg = WorkloadRegistry::global();
    match reg.get(id) {
        Some(info) if info.kind == crate::flow::EndpointType::Wep => {
            let name = crate::flow::decode::group_name(&info.name_aggr).unwrap_or(&info.name_aggr);
            format!("{}/{}", info.namespace, name)
        }
        Some(info) => info.key.clone(),
        None => reg.key(id),
    }
}

/// The report as a self-contained HTML page.
pub fn to_html(r: &ImpactReport) -> String {
    use crate::report::fmt::esc;
    let mut s = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>flowwarden: staged policy impact</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}\
         td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#eee}</style></head><body>",
    );
    s.push_str(&format!(
        "<h1>Staged policy impact</h1><p>{} records read, {} with staged (pending) decisions. \
         {} flows allowed today would be denied by: {}.</p>",
        r.records,
        r.records_with_pending,
        r.flows,
        esc(&r.staged_policies.join(", "))
    ));
    for w in &r.workloads {
        s.push_str(&format!("<h2>{}</h2><table><tr><th>direction</th><th>source</th><th>destination</th><th>port</th><th>staged policy</th><th>allowed today by</th><th>connections</th><th>bytes</th><th>first seen</th><th>last seen</th></tr>", esc(&w.workload)));
        for f in &w.flows {
            s.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                f.direction,
                esc(&f.source),
                esc(&f.destination),
                esc(&f.proto),
                f.port,
                esc(&f.staged_policy.describe()),
                esc(&f.allowed_today_by.describe()),
                f.connections,
                f.bytes,
                time_text(f.first_seen),
                time_text(f.last_seen),
            ));
        }
        s.push_str("</table>");
    }
    s.push_str("</body></html>\n");
    s
}

/// RFC 3339 UTC time of an epoch second.
pub fn time_text(t: i64) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    humantime::format_rfc3339_seconds(st).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Decoder;

    fn line(t: i64, dst: &str, action: &str, pending: &str) -> String {
        format!(
            r#"{{"start_time":{t},"end_time":{},"source_name_aggr":"cart-6b7c8d9f5-*","source_namespace":"imp","source_type":"wep","dest_name_aggr":"{dst}","dest_namespace":"-","dest_type":"net","dest_port":443,"proto":"tcp","action":"{action}","reporter":"src","policies":{{"enforced_policies":["0|__PROFILE__|__PROFILE__.kns.imp|{action}|0"],"pending_policies":[{pending}]}},"num_flows":2,"bytes_out":10}}"#,
            t + 300
        )
    }

    #[test]
    fn lists_allowed_flows_a_staged_policy_would_deny_and_nothing_else() {
        let mut dec = Decoder::default();
        let mut b = ImpactBuilder::default();
        let deny = r#""0|default|staged:imp/default.lockdown|deny|-1""#;
        let allow = r#""0|default|staged:imp/default.lockdown|allow|0""#;
        for (t, dst, action, pending) in [
            (0, "pub", "allow", deny),
            (300, "pub", "allow", deny),
            (0, "pvt", "allow", allow),
            (0, "pvt", "deny", deny),
            (0, "pub", "allow", ""),
        ] {
            let rec = dec
                .decode(line(t, dst, action, pending).as_bytes())
                .expect("decodes");
            b.add(&rec);
        }
        let r = b.finish();
        assert_eq!((r.records, r.records_with_pending, r.flows), (5, 4, 1));
        assert_eq!(r.staged_policies, vec!["default|imp/lockdown".to_string()]);
        let w = &r.workloads[0];
        assert_eq!(w.workload, "imp/cart");
        let f = &w.flows[0];
        assert_eq!(
            (f.destination.as_str(), f.port, f.records, f.connections),
            ("pub", 443, 2, 4)
        );
        assert_eq!((f.first_seen, f.last_seen), (0, 300));
        assert!(to_html(&r).contains("imp/lockdown"));
    }
}
