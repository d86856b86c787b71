//! [`CalicoFields`]: the fields of a Calico flow-log line that [`crate::flow::FlowRecord`] is built
//! from, with lists reduced to what the record keeps (a length, a first or last element).
//!
//! Two ways in: [`CalicoFields::from_raw`] from the full serde view ([`RawFlow`]), and
//! [`CalicoFields::scan`], the hot path, which walks simd-json's tape once, matches keys by length
//! and bytes, and allocates nothing. `scan` accepts only what the serde view would accept with the
//! same meaning; anything it is not sure of (a Goldmane `Key`, a duplicate key, a float where an
//! integer goes, a policy object...) makes it give up with `None`, and the decoder falls back to the
//! serde view, which then decides, with its own error message. So both paths give the same record or
//! the same error for every line.

use crate::flow::raw::{PolicyEntry, RawFlow};
use simd_json::{Node, StaticNode};

/// What a record keeps of the `policies` object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySummary<'a> {
    /// Number of enforced hits (`enforced_policies`, else `all_policies`).
    pub enforced: usize,
    /// The last enforced hit: the one that decided the verdict.
    pub last_enforced: Option<PolicyEntry<'a>>,
    /// Number of pending (staged) hits, when the list is present.
    pub pending: Option<usize>,
    /// The last pending hit: what would decide the verdict if staged policies were enforced.
    pub last_pending: Option<PolicyEntry<'a>>,
}

/// The Calico fields a record is built from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CalicoFields<'a> {
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub timestamp_ms: Option<i64>,
    pub source_ip: Option<&'a str>,
    pub dest_ip: Option<&'a str>,
    pub source_port: Option<i64>,
    pub dest_port: Option<i64>,
    pub source_name_aggr: Option<&'a str>,
    pub dest_name_aggr: Option<&'a str>,
    pub source_namespace: Option<&'a str>,
    pub dest_namespace: Option<&'a str>,
    pub source_type: Option<&'a str>,
    pub dest_type: Option<&'a str>,
    pub dest_service_namespace: Option<&'a str>,
    pub dest_service_name: Option<&'a str>,
    pub dest_service_port: Option<&'a str>,
    pub dest_service_port_num: Option<i64>,
    /// Length of `dest_domains` and its first element, when the list is present.
    pub dest_domains: Option<(usize, Option<&'a str>)>,
    pub proto: Option<&'a str>,
    pub action: Option<&'a str>,
    pub reporter: Option<&'a str>,
    pub policies: Option<PolicySummary<'a>>,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
    pub packets_in: Option<u64>,
    pub packets_out: Option<u64>,
    pub num_flows: Option<u64>,
    pub num_flows_started: Option<u64>,
    pub num_flows_completed: Option<u64>,
    pub http_requests_allowed_in: Option<u64>,
    pub http_requests_denied_in: Option<u64>,
    pub process_name: Option<&'a str>,
    pub num_process_names: Option<u64>,
    /// Length of `original_source_ips`, when present.
    pub original_source_ips: Option<usize>,
    pub num_original_source_ips: Option<u64>,
    /// Length of `nat_outgoing_ports`, when present.
    pub nat_outgoing_ports: Option<usize>,
    /// `tcp_*` in [`TCP_FIELDS`] order.
    pub tcp: [Option<u64>; 11],
    /// Whether `source_labels` / `dest_labels` hold any label (a workload registered without
    /// labels is registered again from a record that has some).
    pub source_labelled: bool,
    pub dest_labelled: bool,
}

/// The `tcp_*` keys, in the order of [`CalicoFields::tcp`].
pub const TCP_FIELDS: [&str; 11] = [
    "tcp_mean_send_congestion_window",
    "tcp_min_send_congestion_window",
    "tcp_mean_smooth_rtt",
    "tcp_max_smooth_rtt",
    "tcp_mean_min_rtt",
    "tcp_max_min_rtt",
    "tcp_mean_mss",
    "tcp_min_mss",
    "tcp_total_retransmissions",
    "tcp_lost_packets",
    "tcp_unrecovered_to",
];

/// A top-level key the serde view knows: a [`Field`], or an index into [`TCP_FIELDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(Result<Field, usize>);

impl Slot {
    /// The slot of `key`; `None` for a key the serde view ignores.
    #[inline]
    pub fn of(key: &str) -> Option<Slot> {
        match key.strip_prefix("tcp_") {
            Some(_) => TCP_FIELDS
                .iter()
                .position(|t| *t == key)
                .map(|k| Slot(Err(k))),
            None => Field::of(key).map(|f| Slot(Ok(f))),
        }
    }
}

/// The keys of one object already set, for the duplicate check.
#[derive(Debug, Default)]
pub struct Seen(u128);

impl<'a> CalicoFields<'a> {
    /// From the full serde view (Calico records; a Goldmane line has its own path).
    pub fn from_raw(raw: &RawFlow<'a>) -> Self {
        let r = raw;
        CalicoFields {
            start_time: r.start_time,
            end_time: r.end_time,
            timestamp_ms: r.timestamp_ms,
            source_ip: r.source_ip,
            dest_ip: r.dest_ip,
            source_port: r.source_port,
            dest_port: r.dest_port,
            source_name_aggr: r.source_name_aggr,
            dest_name_aggr: r.dest_name_aggr,
            source_namespace: r.source_namespace,
            dest_namespace: r.dest_namespace,
            source_type: r.source_type,
            dest_type: r.dest_type,
            dest_service_namespace: r.dest_service_namespace,
            dest_service_name: r.dest_service_name,
            dest_service_port: r.dest_service_port,
            dest_service_port_num: r.dest_service_port_num,
            dest_domains: r
                .dest_domains
                .as_ref()
                .map(|d| (d.len(), d.first().copied())),
            proto: r.proto,
            action: r.action,
            reporter: r.reporter,
            policies: r.policies.as_ref().map(|p| PolicySummary {
                enforced: p.enforced().len(),
                last_enforced: p.enforced().last().cloned(),
                pending: p.pending_policies.as_ref().map(Vec::len),
                last_pending: p.pending_policies.as_ref().and_then(|v| v.last().cloned()),
            }),
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            packets_in: r.packets_in,
            packets_out: r.packets_out,
            num_flows: r.num_flows,
            num_flows_started: r.num_flows_started,
            num_flows_completed: r.num_flows_completed,
            http_requests_allowed_in: r.http_requests_allowed_in,
            http_requests_denied_in: r.http_requests_denied_in,
            process_name: r.process_name,
            num_process_names: r.num_process_names,
            original_source_ips: r.original_source_ips.as_ref().map(Vec::len),
            num_original_source_ips: r.num_original_source_ips,
            nat_outgoing_ports: r.nat_outgoing_ports.as_ref().map(Vec::len),
            tcp: [
                r.tcp_mean_send_congestion_window,
                r.tcp_min_send_congestion_window,
                r.tcp_mean_smooth_rtt,
                r.tcp_max_smooth_rtt,
                r.tcp_mean_min_rtt,
                r.tcp_max_min_rtt,
                r.tcp_mean_mss,
                r.tcp_min_mss,
                r.tcp_total_retransmissions,
                r.tcp_lost_packets,
                r.tcp_unrecovered_to,
            ],
            source_labelled: !r.source_labels.0.is_empty(),
            dest_labelled: !r.dest_labels.0.is_empty(),
        }
    }

    /// Walks a parsed line's tape; `None` when the line needs the serde view (see the module doc).
    pub fn scan(tape: &[Node<'a>]) -> Option<Self> {
        let Some(&Node::Object { len, .. }) = tape.first() else {
            return None;
        };
        let mut f = CalicoFields::default();
        let mut seen = Seen::default();
        let mut i = 1;
        for _ in 0..len {
            let Node::String(key) = *tape.get(i)? else {
                return None;
            };
            i += 1;
            let value = tape.get(i)?;
            let next = i + node_count(value);
            let v = tape.get(i..next)?;
            i = next;
            if let Some(slot) = Slot::of(key) {
                f.put(slot, v, &mut seen)?;
            }
            // unknown keys are ignored, as serde does
        }
        Some(f)
    }

    /// Sets the field `slot` names from its value's nodes; `None` (give up) on a type the serde
    /// view would reject or read differently, or on a key seen before (serde rejects duplicates).
    #[inline]
    pub fn put(&mut self, slot: Slot, v: &[Node<'a>], seen: &mut Seen) -> Option<()> {
        let bit = 1u128
            << match slot.0 {
                Ok(field) => field as u32,
                Err(k) => 64 + k as u32,
            };
        if seen.0 & bit != 0 {
            return None;
        }
        seen.0 |= bit;
        match slot.0 {
            Ok(field) => self.set(field, v),
            Err(k) => {
                *self.tcp.get_mut(k)? = opt_u64(v)?;
                Some(())
            }
        }
    }

    fn set(&mut self, field: Field, v: &[Node<'a>]) -> Option<()> {
        use Field as F;
        match field {
            F::StartTime => self.start_time = opt_i64(v)?,
            F::EndTime => self.end_time = opt_i64(v)?,
            F::Timestamp => self.timestamp_ms = opt_i64(v)?,
            F::SourceIp => self.source_ip = opt_str(v)?,
            F::DestIp => self.dest_ip = opt_str(v)?,
            F::SourcePort => self.source_port = opt_i64(v)?,
            F::DestPort => self.dest_port = opt_i64(v)?,
            F::SourceNameAggr => self.source_name_aggr = opt_str(v)?,
            F::DestNameAggr => self.dest_name_aggr = opt_str(v)?,
            F::SourceNamespace => self.source_namespace = opt_str(v)?,
            F::DestNamespace => self.dest_namespace = opt_str(v)?,
            F::SourceType => self.source_type = opt_str(v)?,
            F::DestType => self.dest_type = opt_str(v)?,
            F::DestServiceNamespace => self.dest_service_namespace = opt_str(v)?,
            F::DestServiceName => self.dest_service_name = opt_str(v)?,
            F::DestServicePort => self.dest_service_port = opt_str(v)?,
            F::DestServicePortNum => self.dest_service_port_num = opt_i64(v)?,
            F::DestDomains => self.dest_domains = str_list(v)?,
            F::Proto => self.proto = opt_str(v)?,
            F::Action => self.action = opt_str(v)?,
            F::Reporter => self.reporter = opt_str(v)?,
            F::Policies => self.policies = policies(v)?,
            F::BytesIn => self.bytes_in = opt_u64(v)?,
            F::BytesOut => self.bytes_out = opt_u64(v)?,
            F::PacketsIn => self.packets_in = opt_u64(v)?,
            F::PacketsOut => self.packets_out = opt_u64(v)?,
            F::NumFlows => self.num_flows = opt_u64(v)?,
            F::NumFlowsStarted => self.num_flows_started = opt_u64(v)?,
            F::NumFlowsCompleted => self.num_flows_completed = opt_u64(v)?,
            F::HttpAllowedIn => self.http_requests_allowed_in = opt_u64(v)?,
            F::HttpDeniedIn => self.http_requests_denied_in = opt_u64(v)?,
            F::ProcessName => self.process_name = opt_str(v)?,
            F::NumProcessNames => self.num_process_names = opt_u64(v)?,
            F::OriginalSourceIps => self.original_source_ips = str_list(v)?.map(|(n, _)| n),
            F::NumOriginalSourceIps => self.num_original_source_ips = opt_u64(v)?,
            F::NatOutgoingPorts => self.nat_outgoing_ports = i64_list(v)?,
            // Read by no detector, but the serde view would reject a wrong type.
            F::SourceName | F::DestName | F::ProcessId | F::Host => {
                opt_str(v)?;
            }
            F::ProcessArgs => {
                str_list(v)?;
            }
            F::NumProcessIds
            | F::NumProcessArgs
            | F::NumConnectionsStarted
            | F::NumConnectionsCompleted
            | F::NumConnectionsLive => {
                opt_u64(v)?;
            }
            F::SourceLabels => self.source_labelled = labels(v)?,
            F::DestLabels => self.dest_labelled = labels(v)?,
            F::Key => return None, // Goldmane: the serde view handles it
        }
        Some(())
    }
}

/// Nodes a value takes on the tape (1 for scalars, 1 + nested for containers).
#[inline]
fn node_count(n: &Node<'_>) -> usize {
    match n {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// `Option<i64>`: null, or an integer that fits; `None` (give up) otherwise.
#[inline]
fn opt_i64(v: &[Node<'_>]) -> Option<Option<i64>> {
    match v.first()? {
        Node::Static(StaticNode::Null) => Some(None),
        Node::Static(StaticNode::I64(n)) => Some(Some(*n)),
        Node::Static(StaticNode::U64(n)) => i64::try_from(*n).ok().map(Some),
        _ => None,
    }
}

/// `Option<u64>`: null, or a non-negative integer.
#[inline]
fn opt_u64(v: &[Node<'_>]) -> Option<Option<u64>> {
    match v.first()? {
        Node::Static(StaticNode::Null) => Some(None),
        Node::Static(StaticNode::U64(n)) => Some(Some(*n)),
        Node::Static(StaticNode::I64(n)) => u64::try_from(*n).ok().map(Some),
        _ => None,
    }
}

/// `Option<&str>`: null or a string.
#[inline]
fn opt_str<'a>(v: &[Node<'a>]) -> Option<Option<&'a str>> {
    match v.first()? {
        Node::Static(StaticNode::Null) => Some(None),
        Node::String(s) => Some(Some(*s)),
        _ => None,
    }
}

/// `Option<Vec<&str>>` reduced to (length, first element).
fn str_list<'a>(v: &[Node<'a>]) -> Option<Option<(usize, Option<&'a str>)>> {
    match v.first()? {
        Node::Static(StaticNode::Null) => Some(None),
        Node::Array { len, .. } => {
            let items = v.get(1..1 + len)?;
            let mut first = None;
            for (k, n) in items.iter().enumerate() {
                let Node::String(s) = n else {
                    return None;
                };
                if k == 0 {
                    first = Some(*s);
                }
            }
            Some(Some((*len, first)))
        }
        _ => None,
    }
}

/// `Option<Vec<i64>>` reduced to its length.
fn i64_list(v: &[Node<'_>]) -> Option<Option<usize>> {
    match v.first()? {
        Node::Static(StaticNode::Null) => Some(None),
        Node::Array { len, .. } => {
            for n in v.get(1..1 + len)? {
                opt_i64(std::slice::from_ref(n))??;
            }
            Some(Some(*len))
        }
        _ => None,
    }
}

/// Checks a labels value: null, an array of strings, or an object whose `labels` keys hold null or
/// an array of strings (other keys ignored; the last `labels` counts, as in serde). Returns whether
/// there are any labels. The record does not keep labels: the registry takes them from the serde
/// view the first time a workload is seen.
fn labels(v: &[Node<'_>]) -> Option<bool> {
    match v.first()? {
        Node::Static(StaticNode::Null) => Some(false),
        Node::Array { .. } => str_list(v).map(|l| l.is_some_and(|(n, _)| n > 0)),
        Node::Object { len, .. } => {
            let mut any = false;
            let mut i = 1;
            for _ in 0..*len {
                let Node::String(key) = *v.get(i)? else {
                    return None;
                };
                i += 1;
                let next = i + node_count(v.get(i)?);
                if key == "labels" {
                    match v.get(i)? {
                        Node::Static(StaticNode::Null) | Node::Array { .. } => {
                            any = str_list(v.get(i..next)?)?.is_some_and(|(n, _)| n > 0);
                        }
                        _ => return None,
                    }
                }
                i = next;
            }
            Some(any)
        }
        _ => None,
    }
}

/// The `policies` object with string entries only (Felix's form).
fn policies<'a>(v: &[Node<'a>]) -> Option<Option<PolicySummary<'a>>> {
    let len = match v.first()? {
        Node::Static(StaticNode::Null) => return Some(None),
        Node::Object { len, .. } => *len,
        _ => return None,
    };
    // (length, last) of all/enforced/pending; transit is only checked.
    let mut lists: [Option<(usize, Option<&'a str>)>; 3] = [None; 3];
    let mut seen = 0u8;
    let mut i = 1;
    for _ in 0..len {
        let Node::String(key) = *v.get(i)? else {
            return None;
        };
        i += 1;
        let next = i + node_count(v.get(i)?);
        let slot = match key {
            "all_policies" => 0,
            "enforced_policies" => 1,
            "pending_policies" => 2,
            "transit_policies" => 3,
            _ => {
                i = next;
                continue;
            }
        };
        if seen & (1 << slot) != 0 {
            return None;
        }
        seen |= 1 << slot;
        let list = policy_list(v.get(i..next)?)?;
        if let Some(l) = lists.get_mut(slot) {
            *l = list;
        }
        i = next;
    }
    let enforced = lists[1].or(lists[0]);
    Some(Some(PolicySummary {
        enforced: enforced.map_or(0, |(n, _)| n),
        last_enforced: enforced.and_then(|(_, last)| last).map(PolicyEntry::Str),
        pending: lists[2].map(|(n, _)| n),
        last_pending: lists[2].and_then(|(_, last)| last).map(PolicyEntry::Str),
    }))
}

/// A policy list of strings reduced to (length, last element).
fn policy_list<'a>(v: &[Node<'a>]) -> Option<Option<(usize, Option<&'a str>)>> {
    match v.first()? {
        Node::Static(StaticNode::Null) => Some(None),
        Node::Array { len, .. } => {
            let mut last = None;
            for n in v.get(1..1 + len)? {
                let Node::String(s) = n else {
                    return None; // Goldmane-style hit objects: serde view
                };
                last = Some(*s);
            }
            Some(Some((*len, last)))
        }
        _ => None,
    }
}

/// Every top-level key the serde view knows except `tcp_*` ([`TCP_FIELDS`]); the discriminant is
/// the key's bit in the duplicate check (tcp keys use bits 64 and up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Field {
    StartTime,
    EndTime,
    Timestamp,
    SourceIp,
    DestIp,
    SourcePort,
    DestPort,
    SourceName,
    DestName,
    SourceNameAggr,
    DestNameAggr,
    SourceNamespace,
    DestNamespace,
    SourceType,
    DestType,
    SourceLabels,
    DestLabels,
    NatOutgoingPorts,
    DestServiceNamespace,
    DestServiceName,
    DestServicePort,
    DestServicePortNum,
    DestDomains,
    Proto,
    Action,
    Reporter,
    Policies,
    BytesIn,
    BytesOut,
    PacketsIn,
    PacketsOut,
    NumFlows,
    NumFlowsStarted,
    NumFlowsCompleted,
    HttpAllowedIn,
    HttpDeniedIn,
    ProcessName,
    ProcessId,
    ProcessArgs,
    NumProcessNames,
    NumProcessIds,
    NumProcessArgs,
    OriginalSourceIps,
    NumOriginalSourceIps,
    Host,
    Key,
    NumConnectionsStarted,
    NumConnectionsCompleted,
    NumConnectionsLive,
}

impl Field {
    /// Matches a key: first on its length, then on its bytes, so a key costs one or two compares
    /// instead of a walk down every field name.
    #[inline]
    fn of(key: &str) -> Option<Field> {
        use Field as F;
        Some(match (key.len(), key) {
            (3, "Key") => F::Key,
            (4, "host") => F::Host,
            (5, "proto") => F::Proto,
            (6, "action") => F::Action,
            (7, "dest_ip") => F::DestIp,
            (8, "end_time") => F::EndTime,
            (8, "reporter") => F::Reporter,
            (8, "bytes_in") => F::BytesIn,
            (8, "policies") => F::Policies,
            (9, "source_ip") => F::SourceIp,
            (9, "dest_port") => F::DestPort,
            (9, "dest_name") => F::DestName,
            (9, "dest_type") => F::DestType,
            (9, "bytes_out") => F::BytesOut,
            (9, "num_flows") => F::NumFlows,
            (10, "start_time") => F::StartTime,
            (10, "packets_in") => F::PacketsIn,
            (10, "process_id") => F::ProcessId,
            (10, "@timestamp") => F::Timestamp,
            (11, "source_port") => F::SourcePort,
            (11, "source_name") => F::SourceName,
            (11, "source_type") => F::SourceType,
            (11, "dest_labels") => F::DestLabels,
            (11, "packets_out") => F::PacketsOut,
            (12, "dest_domains") => F::DestDomains,
            (12, "process_name") => F::ProcessName,
            (12, "process_args") => F::ProcessArgs,
            (13, "source_labels") => F::SourceLabels,
            (14, "dest_name_aggr") => F::DestNameAggr,
            (14, "dest_namespace") => F::DestNamespace,
            (16, "source_name_aggr") => F::SourceNameAggr,
            (16, "source_namespace") => F::SourceNamespace,
            (15, "num_process_ids") => F::NumProcessIds,
            (16, "num_process_args") => F::NumProcessArgs,
            (17, "dest_service_name") => F::DestServiceName,
            (17, "dest_service_port") => F::DestServicePort,
            (17, "num_flows_started") => F::NumFlowsStarted,
            (17, "num_process_names") => F::NumProcessNames,
            (18, "nat_outgoing_ports") => F::NatOutgoingPorts,
            (19, "num_flows_completed") => F::NumFlowsCompleted,
            (19, "original_source_ips") => F::OriginalSourceIps,
            (20, "num_connections_live") => F::NumConnectionsLive,
            (21, "dest_service_port_num") => F::DestServicePortNum,
            (22, "dest_service_namespace") => F::DestServiceNamespace,
            (23, "http_requests_denied_in") => F::HttpDeniedIn,
            (23, "num_original_source_ips") => F::NumOriginalSourceIps,
            (23, "num_connections_started") => F::NumConnectionsStarted,
            (24, "http_requests_allowed_in") => F::HttpAllowedIn,
            (25, "num_connections_completed") => F::NumConnectionsCompleted,
            _ => return None,
        })
    }
}
