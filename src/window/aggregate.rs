//! [`WindowAggregate`]: what one workload did in one event-time window, built from commutative updates
//! (sums, maxima, distinct sketches, capped peer tables), so records may arrive in any order and on any
//! thread and the result is the same (invariant 2).
//!
//! Sums follow the reporter rule of the reference: a workload's egress is counted from `reporter=src`
//! records and its ingress from `reporter=dst` records; when the other end is not a Calico endpoint only
//! one side reports, and that record counts. Distinct sets are idempotent, so they take every record.

use crate::baseline::sketch::{mix64, DistinctCounter};
use crate::flow::{Action, Endpoint, EndpointType, FlowRecord, Reporter, WorkloadId};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// Peers an aggregate holds without a heap block.
pub const PEERS_INLINE: usize = 2;

/// Most peers kept per workload and window; the rest are only counted (`peers_overflow`).
pub const PEER_CAP: usize = 64;

/// Traffic between the workload and one (peer, port, proto) in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStat {
    /// The other end.
    pub peer: WorkloadId,
    /// The other end's group (replica-set hash removed).
    pub peer_group: WorkloadId,
    /// Destination port (0 when unknown).
    pub port: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Whether the workload initiated (egress) or received (ingress).
    pub egress: bool,
    /// Kind of the other end.
    pub peer_kind: EndpointType,
    /// The other end is a public network.
    pub peer_public: bool,
    /// Records.
    pub records: u32,
    /// Connections started.
    pub connections: u64,
    /// Bytes sent by the workload.
    pub bytes_out: u64,
    /// Bytes received by the workload.
    pub bytes_in: u64,
    /// Records denied.
    pub denied: u32,
}

/// One workload's activity in one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowAggregate {
    /// The workload's group (see [`crate::flow::Endpoint::group`]).
    pub group: WorkloadId,
    /// The workload is a network outside the cluster (`EndpointType::Net`); carried from the
    /// records so the detectors need no registry lookup at close (one per detector per workload
    /// was a fifth of a 100k-workload close).
    pub outside: bool,
    /// The workload's namespace ([`crate::flow::Endpoint::namespace`]).
    pub namespace: u64,
    /// Records that mention the workload as source.
    pub records_out: u64,
    /// Records that mention the workload as destination.
    pub records_in: u64,
    /// Bytes the workload sent as initiator (src view).
    pub bytes_out: u64,
    /// Bytes the workload received as initiator (responses).
    pub bytes_out_resp: u64,
    /// Bytes the workload received as destination (dst view).
    pub bytes_in: u64,
    /// Packets sent as initiator.
    pub packets_out: u64,
    /// Packets received as destination.
    pub packets_in: u64,
    /// Connections the workload started.
    pub conns_out: u64,
    /// Connections the workload received.
    pub conns_in: u64,
    /// Denied records with the workload as source.
    pub denied_out: u64,
    /// Denied records with the workload as destination.
    pub denied_in: u64,
    /// Bytes sent to public networks.
    pub bytes_to_public: u64,
    /// Distinct destination ports contacted.
    pub dst_ports: DistinctCounter,
    /// Distinct destination ports of denied flows.
    pub denied_ports: DistinctCounter,
    /// Distinct destination hosts (IP when known, else workload).
    pub dst_hosts: DistinctCounter,
    /// Distinct destination hosts of denied flows.
    pub denied_hosts: DistinctCounter,
    /// Distinct sources that reached the workload.
    pub src_hosts: DistinctCounter,
    /// Peers (capped at [`PEER_CAP`], kept sorted by key for determinism at close). The first
    /// [`PEERS_INLINE`] live in the aggregate: most workloads have one or two peers a window, and a
    /// heap block each was allocated, chased and freed per window (a sixth of a 100k-workload close
    /// was the free alone).
    pub peers: SmallVec<[PeerStat; PEERS_INLINE]>,
    /// Peer entries that did not fit.
    pub peers_overflow: u64,
    /// Largest single-record byte count to one peer (burst evidence).
    pub max_record_bytes: u64,
    /// Time of the first record (event time).
    pub first_seen: i64,
    /// Time of the last record.
    pub last_seen: i64,
    /// Fast-path detectors that already raised an early alert for this window
    /// ([`crate::detect::fast_path`] bits), so each fires at most once per workload and window.
    pub early_fired: u8,
}

/// Bits of [`WindowAggregate::add`]'s result: which distinct counters changed.
pub mod grew {
    /// `dst_ports`.
    pub const DST_PORTS: u8 = 1;
    /// `denied_ports`.
    pub const DENIED_PORTS: u8 = 2;
    /// `dst_hosts`.
    pub const DST_HOSTS: u8 = 4;
    /// `denied_hosts`.
    pub const DENIED_HOSTS: u8 = 8;
}

/// Which side of a record a workload is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The workload is the source.
    Source,
    /// The workload is the destination.
    Destination,
}

/// Whether a record's byte/packet/connection sums count for the source's egress.
#[inline]
pub fn counts_for_source(rec: &FlowRecord) -> bool {
    rec.reporter == Reporter::Src || !rec.src.kind.is_calico_endpoint()
}

/// Whether a record's sums count for the destination's ingress.
#[inline]
pub fn counts_for_destination(rec: &FlowRecord) -> bool {
    rec.reporter == Reporter::Dst || !rec.dst.kind.is_calico_endpoint()
}

/// Hash of one end's host: its IP when the record keeps one, else its workload id.
#[inline]
pub fn host_hash(ep: &Endpoint) -> u64 {
    match ep.ip {
        Some(std::net::IpAddr::V4(v4)) => mix64(u32::from(v4) as u64 ^ 0x4000_0000_0000),
        Some(std::net::IpAddr::V6(v6)) => {
            let v = u128::from(v6);
            mix64((v as u64) ^ ((v >> 64) as u64).rotate_left(17))
        }
        None => mix64(ep.id.0),
    }
}

impl WindowAggregate {
    /// Folds one record in, from the given side's point of view. Returns the [`grew`] bits of the
    /// source-side distinct counters that changed (the fast path re-checks thresholds only then).
    #[inline]
    pub fn add(&mut self, rec: &FlowRecord, side: Side) -> u8 {
        let mut changed = 0u8;
        if self.first_seen == 0 || rec.end_time < self.first_seen {
            self.first_seen = rec.end_time;
        }
        self.last_seen = self.last_seen.max(rec.end_time);
        let denied = rec.action == Action::Deny;
        let port = rec.dst.port.unwrap_or(0);
        match side {
            Side::Source => {
                self.group = rec.src.group;
                self.outside = rec.src.kind == EndpointType::Net;
                self.namespace = rec.src.namespace;
                self.records_out += 1;
                if denied {
                    self.denied_out += 1;
                }
                let counts = counts_for_source(rec);
                if counts {
                    self.bytes_out += rec.bytes_out;
                    self.bytes_out_resp += rec.bytes_in;
                    self.packets_out += rec.packets_out;
                    self.conns_out += rec
                        .num_flows_started
                        .max(u64::from(rec.num_flows > 0 && rec.num_flows_started == 0));
                    if rec.dst.public {
                        self.bytes_to_public += rec.bytes_out;
                    }
                    self.max_record_bytes = self.max_record_bytes.max(rec.bytes_out);
                }
                let port_key = u64::from(port) | (u64::from(rec.proto.0) << 16);
                let host = host_hash(&rec.dst);
                changed |= u8::from(self.dst_ports.insert(port_key)) * grew::DST_PORTS;
                changed |= u8::from(self.dst_hosts.insert_hash(host)) * grew::DST_HOSTS;
                if denied {
                    changed |= u8::from(self.denied_ports.insert(port_key)) * grew::DENIED_PORTS;
                    changed |= u8::from(self.denied_hosts.insert_hash(host)) * grew::DENIED_HOSTS;
                }
                self.add_peer(rec, &rec.dst, true, counts, denied);
            }
            Side::Destination => {
                self.group = rec.dst.group;
                self.outside = rec.dst.kind == EndpointType::Net;
                self.namespace = rec.dst.namespace;
                self.records_in += 1;
                if denied {
                    self.denied_in += 1;
                }
                let counts = counts_for_destination(rec);
                if counts {
                    self.bytes_in += rec.bytes_in;
                    self.packets_in += rec.packets_in;
                    self.conns_in += rec
                        .num_flows_started
                        .max(u64::from(rec.num_flows > 0 && rec.num_flows_started == 0));
                }
                self.src_hosts.insert_hash(host_hash(&rec.src));
                self.add_peer(rec, &rec.src, false, counts, denied);
            }
        }
        changed
    }

    /// Frees the heap blocks (peers, spilled counters) of an aggregate that was scored and folded
    /// in; the counts stay.
    pub fn release_heap(&mut self) {
        self.peers = SmallVec::new();
        for c in [
            &mut self.dst_ports,
            &mut self.denied_ports,
            &mut self.dst_hosts,
            &mut self.denied_hosts,
            &mut self.src_hosts,
        ] {
            *c = DistinctCounter::default();
        }
    }

    #[inline]
    fn add_peer(
        &mut self,
        rec: &FlowRecord,
        other: &Endpoint,
        egress: bool,
        counts: bool,
        denied: bool,
    ) {
        let (peer, peer_group, peer_kind) = (other.id, other.group, other.kind);
        let port = rec.dst.port.unwrap_or(0);
        let proto = rec.proto.0;
        let (bytes_out, bytes_in, conns) = if counts {
            if egress {
                (rec.bytes_out, rec.bytes_in, rec.num_flows_started)
            } else {
                (rec.bytes_in, rec.bytes_out, rec.num_flows_started)
            }
        } else {
            (0, 0, 0)
        };
        if let Some(p) = self
            .peers
            .iter_mut()
            .find(|p| p.peer == peer && p.port == port && p.proto == proto && p.egress == egress)
        {
            p.records += 1;
            p.connections += conns;
            p.bytes_out += bytes_out;
            p.bytes_in += bytes_in;
            p.denied += u32::from(denied);
            return;
        }
        if self.peers.len() >= PEER_CAP {
            self.peers_overflow += 1;
            return;
        }
        self.peers.push(PeerStat {
            peer,
            peer_group,
            port,
            proto,
            egress,
            peer_kind,
            peer_public: other.public,
            records: 1,
            connections: conns,
            bytes_out,
            bytes_in,
            denied: u32::from(denied),
        });
    }

    /// Sorts peers by key so iteration order does not depend on arrival order.
    pub fn normalize(&mut self) {
        self.peers
            .sort_unstable_by_key(|p| (p.peer, p.port, p.proto, p.egress));
    }

    /// Approximate memory held (for the bytes-per-workload figure).
    pub fn heap_bytes(&self) -> usize {
        self.dst_ports.heap_bytes()
            + self.denied_ports.heap_bytes()
            + self.dst_hosts.heap_bytes()
            + self.denied_hosts.heap_bytes()
            + self.src_hosts.heap_bytes()
            + if self.peers.spilled() {
                self.peers.capacity() * std::mem::size_of::<PeerStat>()
            } else {
                0
            }
    }
}
