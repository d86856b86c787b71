//! Renders simulated records into the two wire formats the decoder reads: Calico Enterprise flow-log
//! JSON lines and Goldmane ndjson.
//!
//! A line is `{"start_time":S,"end_time":E` + a *middle* (every field that does not change between
//! windows: identities, IPs, ports, policies, ...) + the counters + `}`. Hot edges render their middle
//! once and reuse it every window ([`render_middle`]); only the counters are formatted per record
//! ([`push_counters`]). JSON key order is free, which is what makes this split possible.

use crate::flow::policy::PolicyKind;
use crate::flow::registry::canonical_key;
use crate::flow::{Action, EndpointType, Reporter};
use crate::simulate::topology::{PolicyRef, PolicyShape};
use crate::simulate::write::{push_i64, push_json_str, push_u64};

/// Output format of `flowwarden generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Calico Enterprise / Cloud flow logs (Felix `flows.log`, JSON lines).
    #[default]
    Calico,
    /// Calico open source Goldmane flows (ndjson, integer enums, zero values omitted).
    Goldmane,
}

/// One end of a record as written.
#[derive(Debug, Clone, Copy)]
pub struct EndView<'a> {
    /// Endpoint type.
    pub kind: EndpointType,
    /// Namespace (`-` for none).
    pub namespace: &'a str,
    /// Aggregated name (`frontend-7d9c8b6f4-*`, `pub`, `pvt`).
    pub name_aggr: &'a str,
    /// Pod name at aggregation level 1, `-` otherwise.
    pub name: &'a str,
    /// IP at aggregation level 1 (and for the external end of a level-1 record), else None.
    pub ip: Option<&'a str>,
    /// `k=v` labels.
    pub labels: &'a [String],
}

/// The Service a destination was reached through.
#[derive(Debug, Clone, Copy)]
pub struct ServiceView<'a> {
    /// Service namespace.
    pub namespace: &'a str,
    /// Service name.
    pub name: &'a str,
    /// Port name.
    pub port_name: &'a str,
    /// Port number.
    pub port: u16,
}

/// Everything static about one record.
#[derive(Debug, Clone, Copy)]
pub struct RecordSpec<'a> {
    /// Source end.
    pub src: EndView<'a>,
    /// Destination end.
    pub dst: EndView<'a>,
    /// Destination port (kept at levels 1 and 2).
    pub dest_port: u16,
    /// `tcp` / `udp`.
    pub proto: &'a str,
    /// Verdict.
    pub action: Action,
    /// Reporting side.
    pub reporter: Reporter,
    /// Matched Service.
    pub service: Option<ServiceView<'a>>,
    /// Domains of an external destination.
    pub domains: &'a [String],
    /// Enforced policies.
    pub policies: &'a [PolicyRef],
    /// Pending (staged) policies.
    pub pending: &'a [PolicyRef],
    /// Policy-string shape of the reporting node.
    pub shape: PolicyShape,
    /// Process of the reporting endpoint and how many pids were aggregated.
    pub process: Option<(&'a str, u32)>,
    /// Reporting node (`host`, as a shipper adds it).
    pub host: &'a str,
}

/// Per-record counters, from the reporter's point of view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes received by the reporter's endpoint.
    pub bytes_in: u64,
    /// Bytes sent by the reporter's endpoint.
    pub bytes_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Connections in the window.
    pub flows: u64,
    /// Connections started.
    pub started: u64,
    /// Connections completed.
    pub completed: u64,
    /// HTTP requests allowed in.
    pub http_allowed_in: u64,
    /// HTTP requests denied in.
    pub http_denied_in: u64,
    /// Distinct client IPs seen through an ingress.
    pub original_source_ips: u64,
}

impl Counters {
    /// Adds another record's counters (Goldmane merges records of one key).
    pub fn add(&mut self, o: &Counters) {
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.packets_in += o.packets_in;
        self.packets_out += o.packets_out;
        self.flows += o.flows;
        self.started += o.started;
        self.completed += o.completed;
        self.http_allowed_in += o.http_allowed_in;
        self.http_denied_in += o.http_denied_in;
        self.original_source_ips = self.original_source_ips.max(o.original_source_ips);
    }
}

/// The canonical workload key the decoder derives for the destination of a record in `format`:
/// an external destination without an address is named by its first linked domain.
pub fn dst_key(format: OutputFormat, spec: &RecordSpec<'_>) -> String {
    match (format, spec.dst.kind, spec.dst.ip, spec.domains.first()) {
        (OutputFormat::Calico, EndpointType::Net, None, Some(domain)) => {
            let mut s = String::with_capacity(48);
            canonical_key(
                &mut s,
                spec.dst.kind,
                spec.dst.namespace,
                spec.dst.name_aggr,
                Some(domain),
            );
            s
        }
        _ => end_key(format, &spec.dst),
    }
}

/// The canonical workload key the decoder derives for this end in `format`.
pub fn end_key(format: OutputFormat, end: &EndView<'_>) -> String {
    let mut s = String::with_capacity(48);
    // Goldmane carries no IPs, so an external end is always just `pub`/`pvt` there.
    let ip = match format {
        OutputFormat::Calico if end.kind == EndpointType::Net => end.ip,
        _ => None,
    };
    canonical_key(&mut s, end.kind, end.namespace, end.name_aggr, ip);
    s
}

/// Appends the static middle of a record (starts with `,`, no closing brace).
pub fn render_middle(format: OutputFormat, spec: &RecordSpec<'_>, out: &mut Vec<u8>) {
    match format {
        OutputFormat::Calico => render_calico(spec, out),
        OutputFormat::Goldmane => render_goldmane(spec, out),
    }
}

fn opt_str(out: &mut Vec<u8>, key: &[u8], v: Option<&str>) {
    out.extend_from_slice(key);
    match v {
        Some(s) => push_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn str_field(out: &mut Vec<u8>, key: &[u8], v: &str) {
    out.extend_from_slice(key);
    push_json_str(out, v);
}

fn str_array(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, s);
    }
    out.push(b']');
}

fn calico_labels(out: &mut Vec<u8>, key: &[u8], labels: &[String]) {
    out.extend_from_slice(key);
    if labels.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        out.extend_from_slice(b"{\"labels\":");
        str_array(out, labels);
        out.push(b'}');
    }
}

fn render_calico(s: &RecordSpec<'_>, out: &mut Vec<u8>) {
    opt_str(out, b",\"source_ip\":", s.src.ip);
    str_field(out, b",\"source_name\":", s.src.name);
    str_field(out, b",\"source_name_aggr\":", s.src.name_aggr);
    str_field(out, b",\"source_namespace\":", s.src.namespace);
    out.extend_from_slice(b",\"source_port\":null");
    str_field(out, b",\"source_type\":", s.src.kind.as_str());
    calico_labels(out, b",\"source_labels\":", s.src.labels);
    opt_str(out, b",\"dest_ip\":", s.dst.ip);
    str_field(out, b",\"dest_name\":", s.dst.name);
    str_field(out, b",\"dest_name_aggr\":", s.dst.name_aggr);
    str_field(out, b",\"dest_namespace\":", s.dst.namespace);
    out.extend_from_slice(b",\"dest_port\":");
    push_u64(out, s.dest_port as u64);
    str_field(out, b",\"dest_type\":", s.dst.kind.as_str());
    calico_labels(out, b",\"dest_labels\":", s.dst.labels);
    match s.service {
        Some(svc) => {
            str_field(out, b",\"dest_service_namespace\":", svc.namespace);
            str_field(out, b",\"dest_service_name\":", svc.name);
            str_field(out, b",\"dest_service_port\":", svc.port_name);
            out.extend_from_slice(b",\"dest_service_port_num\":");
            push_u64(out, svc.port as u64);
        }
        None => out.extend_from_slice(
            b",\"dest_service_namespace\":\"-\",\"dest_service_name\":\"-\",\"dest_service_port\":\"-\",\"dest_service_port_num\":null",
        ),
    }
    out.extend_from_slice(b",\"dest_domains\":");
    if s.domains.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        str_array(out, s.domains);
    }
    str_field(out, b",\"proto\":", s.proto);
    str_field(out, b",\"action\":", s.action.as_str());
    str_field(out, b",\"reporter\":", s.reporter.as_str());
    out.extend_from_slice(b",\"policies\":{");
    out.extend_from_slice(b"\"all_policies\":");
    policy_strings(out, s.policies, s.shape);
    if s.shape != PolicyShape::Legacy {
        out.extend_from_slice(b",\"enforced_policies\":");
        policy_strings(out, s.policies, s.shape);
        out.extend_from_slice(b",\"pending_policies\":");
        policy_strings(out, s.pending, s.shape);
    }
    out.push(b'}');
    match s.process {
        Some((name, pids)) => {
            str_field(out, b",\"process_name\":", name);
            str_field(out, b",\"process_id\":", if pids > 1 { "*" } else { "-" });
            out.extend_from_slice(b",\"process_args\":null,\"num_process_names\":1,\"num_process_ids\":");
            push_u64(out, pids as u64);
            out.extend_from_slice(b",\"num_process_args\":0");
        }
        None => out.extend_from_slice(
            b",\"process_name\":\"-\",\"process_id\":\"-\",\"process_args\":null,\"num_process_names\":0,\"num_process_ids\":0,\"num_process_args\":0",
        ),
    }
    out.extend_from_slice(b",\"original_source_ips\":null,\"nat_outgoing_ports\":null");
    str_field(out, b",\"host\":", s.host);
}

fn policy_strings(out: &mut Vec<u8>, policies: &[PolicyRef], shape: PolicyShape) {
    out.push(b'[');
    let mut buf = String::with_capacity(64);
    for (i, p) in policies.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        buf.clear();
        policy_string(&mut buf, i, p, shape);
        push_json_str(out, &buf);
    }
    out.push(b']');
}

/// Felix's string for policy hit number `idx` in the node's shape.
pub fn policy_string(out: &mut String, idx: usize, p: &PolicyRef, shape: PolicyShape) {
    use std::fmt::Write;
    let _ = write!(out, "{idx}|{}|", p.tier);
    match shape {
        PolicyShape::Legacy | PolicyShape::Qualified => match p.kind {
            PolicyKind::Profile => out.push_str(&format!("__PROFILE__.{}", p.name)),
            PolicyKind::KubernetesNetworkPolicy => {
                let _ = write!(out, "{}/knp.default.{}", p.namespace, p.name);
            }
            PolicyKind::StagedNetworkPolicy => {
                let _ = write!(out, "staged:{}/{}.{}", p.namespace, p.tier, p.name);
            }
            _ if p.namespace.is_empty() => {
                let _ = write!(out, "{}.{}", p.tier, p.name);
            }
            _ => {
                let _ = write!(out, "{}/{}.{}", p.namespace, p.tier, p.name);
            }
        },
        PolicyShape::Kinded => match p.kind {
            PolicyKind::Profile => {
                let _ = write!(out, "pro:{}", p.name);
            }
            PolicyKind::KubernetesNetworkPolicy => {
                let _ = write!(out, "knp:{}/{}", p.namespace, p.name);
            }
            PolicyKind::StagedNetworkPolicy => {
                let _ = write!(out, "snp:{}/{}.{}", p.namespace, p.tier, p.name);
            }
            _ if p.namespace.is_empty() => {
                let _ = write!(out, "gnp:{}.{}", p.tier, p.name);
            }
            _ => {
                let _ = write!(out, "np:{}/{}.{}", p.namespace, p.tier, p.name);
            }
        },
    }
    let _ = write!(out, "|{}", p.action.as_str());
    if shape != PolicyShape::Legacy {
        let _ = write!(out, "|{}", p.rule);
    }
}

fn goldmane_kind(k: PolicyKind) -> u64 {
    match k {
        PolicyKind::CalicoNetworkPolicy => 1,
        PolicyKind::GlobalNetworkPolicy => 2,
        PolicyKind::StagedNetworkPolicy => 3,
        PolicyKind::StagedGlobalNetworkPolicy => 4,
        PolicyKind::StagedKubernetesNetworkPolicy => 5,
        PolicyKind::KubernetesNetworkPolicy => 6,
        PolicyKind::Profile => 9,
        PolicyKind::EndOfTier => 10,
        PolicyKind::ClusterNetworkPolicy => 11,
        PolicyKind::Unknown => 0,
    }
}

fn goldmane_action(a: Action) -> u64 {
    match a {
        Action::Allow => 1,
        Action::Deny => 2,
        Action::Pass => 3,
        Action::Unknown => 0,
    }
}

fn goldmane_type(k: EndpointType) -> u64 {
    match k {
        EndpointType::Wep => 1,
        EndpointType::Hep => 2,
        EndpointType::Ns => 3,
        EndpointType::Net => 4,
    }
}

fn goldmane_hits(out: &mut Vec<u8>, policies: &[PolicyRef]) {
    out.push(b'[');
    for (i, p) in policies.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"kind\":");
        push_u64(out, goldmane_kind(p.kind));
        if !p.namespace.is_empty() {
            str_field(out, b",\"namespace\":", &p.namespace);
        }
        str_field(out, b",\"name\":", &p.name);
        str_field(out, b",\"tier\":", &p.tier);
        out.extend_from_slice(b",\"action\":");
        push_u64(out, goldmane_action(p.action));
        // Protobuf JSON omits zero values.
        if i != 0 {
            out.extend_from_slice(b",\"policy_index\":");
            push_u64(out, i as u64);
        }
        if p.rule != 0 {
            out.extend_from_slice(b",\"rule_index\":");
            push_i64(out, p.rule as i64);
        }
        out.push(b'}');
    }
    out.push(b']');
}

fn render_goldmane(s: &RecordSpec<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"Key\":{");
    str_field(out, b"\"source_name\":", s.src.name_aggr);
    if s.src.namespace != "-" {
        str_field(out, b",\"source_namespace\":", s.src.namespace);
    }
    out.extend_from_slice(b",\"source_type\":");
    push_u64(out, goldmane_type(s.src.kind));
    str_field(out, b",\"dest_name\":", s.dst.name_aggr);
    if s.dst.namespace != "-" {
        str_field(out, b",\"dest_namespace\":", s.dst.namespace);
    }
    out.extend_from_slice(b",\"dest_type\":");
    push_u64(out, goldmane_type(s.dst.kind));
    out.extend_from_slice(b",\"dest_port\":");
    push_u64(out, s.dest_port as u64);
    if let Some(svc) = s.service {
        str_field(out, b",\"dest_service_name\":", svc.name);
        str_field(out, b",\"dest_service_namespace\":", svc.namespace);
        str_field(out, b",\"dest_service_port_name\":", svc.port_name);
        out.extend_from_slice(b",\"dest_service_port\":");
        push_u64(out, svc.port as u64);
    }
    str_field(out, b",\"proto\":", s.proto);
    out.extend_from_slice(b",\"reporter\":");
    push_u64(out, if s.reporter == Reporter::Dst { 2 } else { 1 });
    out.extend_from_slice(b",\"action\":");
    push_u64(out, goldmane_action(s.action));
    out.extend_from_slice(b",\"policies\":{\"enforced_policies\":");
    goldmane_hits(out, s.policies);
    if !s.pending.is_empty() {
        out.extend_from_slice(b",\"pending_policies\":");
        goldmane_hits(out, s.pending);
    }
    out.extend_from_slice(b"}}");
    if !s.src.labels.is_empty() {
        out.extend_from_slice(b",\"source_labels\":");
        str_array(out, s.src.labels);
    }
    if !s.dst.labels.is_empty() {
        out.extend_from_slice(b",\"dest_labels\":");
        str_array(out, s.dst.labels);
    }
}

/// Appends the window prefix `{"start_time":S,"end_time":E`.
pub fn push_prefix(out: &mut Vec<u8>, start: i64, end: i64) {
    out.extend_from_slice(b"{\"start_time\":");
    push_i64(out, start);
    out.extend_from_slice(b",\"end_time\":");
    push_i64(out, end);
}

/// Appends the counters and closes the line (`}` and newline).
#[inline]
pub fn push_counters(format: OutputFormat, c: &Counters, out: &mut Vec<u8>) {
    match format {
        OutputFormat::Calico => {
            out.extend_from_slice(b",\"bytes_in\":");
            push_u64(out, c.bytes_in);
            out.extend_from_slice(b",\"bytes_out\":");
            push_u64(out, c.bytes_out);
            out.extend_from_slice(b",\"packets_in\":");
            push_u64(out, c.packets_in);
            out.extend_from_slice(b",\"packets_out\":");
            push_u64(out, c.packets_out);
            out.extend_from_slice(b",\"num_flows\":");
            push_u64(out, c.flows);
            out.extend_from_slice(b",\"num_flows_started\":");
            push_u64(out, c.started);
            out.extend_from_slice(b",\"num_flows_completed\":");
            push_u64(out, c.completed);
            out.extend_from_slice(b",\"http_requests_allowed_in\":");
            push_u64(out, c.http_allowed_in);
            out.extend_from_slice(b",\"http_requests_denied_in\":");
            push_u64(out, c.http_denied_in);
            out.extend_from_slice(b",\"num_original_source_ips\":");
            push_u64(out, c.original_source_ips);
        }
        OutputFormat::Goldmane => {
            // Zero values are omitted, as Go's protobuf JSON does.
            for (key, v) in [
                (&b",\"packets_in\":"[..], c.packets_in),
                (b",\"packets_out\":", c.packets_out),
                (b",\"bytes_in\":", c.bytes_in),
                (b",\"bytes_out\":", c.bytes_out),
                (b",\"num_connections_started\":", c.started),
                (b",\"num_connections_completed\":", c.completed),
                (
                    b",\"num_connections_live\":",
                    c.flows.saturating_sub(c.completed),
                ),
            ] {
                if v != 0 {
                    out.extend_from_slice(key);
                    push_u64(out, v);
                }
            }
        }
    }
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::policy::parse_policy_str;

    #[test]
    fn every_shape_parses_back_to_the_same_policy() {
        let policies = [
            PolicyRef::threat_feed_pass(),
            PolicyRef::profile("shop"),
            PolicyRef::np_allow("shop", "allow-cart", 2),
            PolicyRef::knp_allow("shop", "allow-to-redis-cart", 0),
            PolicyRef::default_deny("shop"),
            PolicyRef::staged("shop", "restrict-egress", Action::Allow, 1),
            PolicyRef::security_deny("block-cloud-metadata", 0),
        ];
        for shape in [
            PolicyShape::Legacy,
            PolicyShape::Qualified,
            PolicyShape::Kinded,
        ] {
            for (i, p) in policies.iter().enumerate() {
                let mut s = String::new();
                policy_string(&mut s, i, p, shape);
                let hit = parse_policy_str(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
                assert_eq!(hit.index, i as i32, "{s}");
                assert_eq!(hit.tier, p.tier, "{s}");
                assert_eq!(hit.action, p.action, "{s}");
                assert_eq!(hit.kind, p.kind, "{s}");
                if shape != PolicyShape::Legacy {
                    assert_eq!(hit.rule, p.rule, "{s}");
                }
            }
        }
    }
}
