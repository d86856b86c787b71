//! Flow records: the one compact [`FlowRecord`] every later stage reads, its enums, and the decoders
//! that turn Calico Enterprise JSON lines and Goldmane ndjson flows into it.
//!
//! This module owns the input formats (see `calico-flow-logs.md`). It must not know about windows,
//! detectors or sinks. Strings a detector never reads stay borrowed from the input line ([`RawFlow`]);
//! workload keys become stable integer ids ([`WorkloadId`]) registered once in [`registry`].

pub mod decode;
pub mod fields;
pub mod id_map;
pub mod keyed_table;
pub mod policy;
pub mod raw;
pub mod registry;
pub mod scanner;

pub use decode::{DecodeError, Decoder};
pub use id_map::IdMap;
pub use raw::RawFlow;
pub use registry::{WorkloadId, WorkloadInfo, WorkloadRegistry};

use policy::PolicyKind;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Input format of one line, detected per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Calico Enterprise / Cloud flow log (Felix `flows.log`).
    #[default]
    Calico,
    /// Calico open source Goldmane flow (protobuf JSON with `Key`).
    Goldmane,
}

/// Verdict of the flow's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Allowed.
    #[default]
    Allow,
    /// Denied.
    Deny,
    /// Passed to the next tier (policy hits only).
    Pass,
    /// Missing or unrecognised.
    Unknown,
}

impl Action {
    /// From Calico's string form.
    pub fn from_calico(s: &str) -> Self {
        match s {
            "allow" => Self::Allow,
            "deny" => Self::Deny,
            "pass" => Self::Pass,
            _ => Self::Unknown,
        }
    }
    /// From Goldmane's enum.
    pub fn from_goldmane(v: i64) -> Self {
        match v {
            1 => Self::Allow,
            2 => Self::Deny,
            3 => Self::Pass,
            _ => Self::Unknown,
        }
    }
    /// Lower-case name as Calico writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Pass => "pass",
            Self::Unknown => "unknown",
        }
    }
}

/// Which node reported the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reporter {
    /// The initiator's node.
    #[default]
    Src,
    /// The receiver's node.
    Dst,
    /// A forwarding node.
    Fwd,
    /// Missing or unrecognised.
    Unknown,
}

impl Reporter {
    /// From Calico's string form.
    pub fn from_calico(s: &str) -> Self {
        match s {
            "src" => Self::Src,
            "dst" => Self::Dst,
            "fwd" => Self::Fwd,
            _ => Self::Unknown,
        }
    }
    /// From Goldmane's enum.
    pub fn from_goldmane(v: i64) -> Self {
        match v {
            1 => Self::Src,
            2 => Self::Dst,
            _ => Self::Unknown,
        }
    }
    /// Lower-case name as Calico writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Src => "src",
            Self::Dst => "dst",
            Self::Fwd => "fwd",
            Self::Unknown => "unknown",
        }
    }
}

/// Kind of endpoint at one end of a flow.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum EndpointType {
    /// A pod (workload endpoint).
    Wep,
    /// A host endpoint.
    Hep,
    /// A network set.
    Ns,
    /// Any other network (`pub` / `pvt`).
    #[default]
    Net,
}

impl EndpointType {
    /// From Calico's string form (unknown strings count as `net`).
    pub fn from_calico(s: &str) -> Self {
        match s {
            "wep" => Self::Wep,
            "hep" => Self::Hep,
            "ns" => Self::Ns,
            _ => Self::Net,
        }
    }
    /// From Goldmane's enum.
    pub fn from_goldmane(v: i64) -> Self {
        match v {
            1 => Self::Wep,
            2 => Self::Hep,
            3 => Self::Ns,
            _ => Self::Net,
        }
    }
    /// Calico's short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wep => "wep",
            Self::Hep => "hep",
            Self::Ns => "ns",
            Self::Net => "net",
        }
    }
    /// Whether Calico reports flows for this endpoint itself (so it has its own reporter record).
    pub fn is_calico_endpoint(self) -> bool {
        matches!(self, Self::Wep | Self::Hep)
    }
}

/// IP protocol number (`tcp` = 6, `udp` = 17, ...); 255 when the string was not recognised.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, PartialOrd, Ord,
)]
pub struct Proto(pub u8);

impl Proto {
    /// TCP.
    pub const TCP: Proto = Proto(6);
    /// UDP.
    pub const UDP: Proto = Proto(17);
    /// ICMP.
    pub const ICMP: Proto = Proto(1);
    /// Unrecognised protocol.
    pub const UNKNOWN: Proto = Proto(255);

    /// Parses Calico's protocol string: a name or a number.
    pub fn parse(s: &str) -> Self {
        match s {
            "tcp" | "TCP" => Self::TCP,
            "udp" | "UDP" => Self::UDP,
            "icmp" | "ICMP" => Self::ICMP,
            "icmp6" | "ICMPv6" | "icmpv6" => Proto(58),
            "sctp" | "SCTP" => Proto(132),
            "ipip" => Proto(4),
            "esp" => Proto(50),
            "udplite" => Proto(136),
            other => other.parse::<u8>().map(Proto).unwrap_or(Self::UNKNOWN),
        }
    }

    /// The name Calico uses, or the number.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self.0 {
            6 => "tcp".into(),
            17 => "udp".into(),
            1 => "icmp".into(),
            58 => "icmp6".into(),
            132 => "sctp".into(),
            4 => "ipip".into(),
            50 => "esp".into(),
            136 => "udplite".into(),
            n => n.to_string().into(),
        }
    }
}

/// One end of a flow as the detectors see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Endpoint {
    /// Stable workload id (see [`registry`]).
    pub id: WorkloadId,
    /// The workload's group: its id with the replica-set hash removed (`shop/frontend`), so a
    /// deploy that rolls out a new hash keeps its history and peers.
    pub group: WorkloadId,
    /// Endpoint kind.
    pub kind: EndpointType,
    /// [`registry::namespace_hash`] of the namespace as written (the registry keeps the same
    /// string): the window close groups workloads by namespace without looking each one up.
    pub namespace: u64,
    /// IP when the record keeps one (aggregation level 0/1, or external addresses).
    pub ip: Option<IpAddr>,
    /// Port when the record keeps one.
    pub port: Option<u16>,
    /// A network outside the cluster on a public address (`pub`, or a global IP).
    pub public: bool,
}

/// TCP statistics (0 unless Felix collects them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TcpStats {
    /// Mean send congestion window.
    pub mean_send_congestion_window: u32,
    /// Minimum send congestion window.
    pub min_send_congestion_window: u32,
    /// Mean smoothed RTT (µs).
    pub mean_smooth_rtt: u32,
    /// Max smoothed RTT (µs).
    pub max_smooth_rtt: u32,
    /// Mean min RTT (µs).
    pub mean_min_rtt: u32,
    /// Max min RTT (µs).
    pub max_min_rtt: u32,
    /// Mean MSS.
    pub mean_mss: u32,
    /// Min MSS.
    pub min_mss: u32,
    /// Retransmissions.
    pub total_retransmissions: u32,
    /// Lost packets.
    pub lost_packets: u32,
    /// Unrecovered timeouts.
    pub unrecovered_to: u32,
}

/// Interned id of a string (0 = none); see [`registry::StringTable`].
pub type StrId = u32;

/// A decoded flow: compact, owned, no strings (they are interned ids).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Which format the line was in.
    pub format: Format,
    /// Start of the record's aggregation window (epoch s).
    pub start_time: i64,
    /// End of the record's aggregation window (epoch s).
    pub end_time: i64,
    /// Source endpoint.
    pub src: Endpoint,
    /// Destination endpoint.
    pub dst: Endpoint,
    /// IP protocol.
    pub proto: Proto,
    /// Verdict.
    pub action: Action,
    /// Reporting side.
    pub reporter: Reporter,
    /// Bytes received by the reporter's endpoint.
    pub bytes_in: u64,
    /// Bytes sent by the reporter's endpoint.
    pub bytes_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Connections seen in the window (Goldmane: completed + live).
    pub num_flows: u64,
    /// Connections started in the window.
    pub num_flows_started: u64,
    /// Connections completed in the window.
    pub num_flows_completed: u64,
    /// HTTP requests allowed in.
    pub http_requests_allowed_in: u32,
    /// HTTP requests denied in.
    pub http_requests_denied_in: u32,
    /// `ns/service:port-name` of the matched Service, interned.
    pub dest_service: StrId,
    /// Service port number.
    pub dest_service_port_num: Option<u16>,
    /// First linked domain of an external destination, interned.
    pub dest_domain: StrId,
    /// Number of linked domains.
    pub num_dest_domains: u16,
    /// Process name (`-` none, `*` several), interned.
    pub process_name: StrId,
    /// Distinct process names aggregated.
    pub num_process_names: u32,
    /// Distinct client IPs seen through an ingress.
    pub num_original_source_ips: u32,
    /// Number of SNAT ports.
    pub num_nat_outgoing_ports: u16,
    /// The enforced policy that decided the verdict (last enforced hit), `tier|kind|ns/name`, interned.
    pub deciding_policy: StrId,
    /// Number of enforced policy hits.
    pub num_enforced_policies: u16,
    /// Number of pending (staged) policy hits.
    pub num_pending_policies: u16,
    /// Kind of the deciding enforced hit (`Unknown` when there is none).
    pub deciding_kind: PolicyKind,
    /// Action of the deciding enforced hit (meaningful only when `deciding_policy` is set).
    pub deciding_action: Action,
    /// Rule index of the deciding enforced hit (-1 end of tier, -2 unknown).
    pub deciding_rule: i32,
    /// The last pending hit (what would decide with staged policies enforced), `tier|ns/name`,
    /// interned; 0 when the record has no pending list.
    pub pending_policy: StrId,
    /// Kind of the last pending hit.
    pub pending_kind: PolicyKind,
    /// Action of the last pending hit (meaningful only when `pending_policy` is set).
    pub pending_action: Action,
    /// Rule index of the last pending hit.
    pub pending_rule: i32,
    /// TCP statistics.
    pub tcp: TcpStats,
}

impl FlowRecord {
    /// Event time of the record (its end).
    pub fn event_time(&self) -> i64 {
        self.end_time
    }
}
