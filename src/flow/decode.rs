//! [`Decoder`]: one line in, one [`FlowRecord`] (or a [`DecodeError`] with the reason) out.
//!
//! One decoder per thread: it owns simd-json's scratch buffers, a copy of the line (simd-json unescapes
//! in place, and the dead-letter output needs the original bytes) and a cache of the workloads this
//! thread has already registered, so the shared registry is touched once per new workload.

use crate::flow::raw::{Labels, RawFlow};
use crate::flow::registry::{canonical_key, StringTable, WorkloadRegistry};
use crate::flow::{
    Action, Endpoint, EndpointType, FlowRecord, Format, Proto, Reporter, TcpStats, WorkloadId,
    WorkloadInfo,
};
use rustc_hash::FxHashSet;
use std::net::IpAddr;
use thiserror::Error;

/// Why a line is not a flow record.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DecodeError {
    /// Empty or whitespace only.
    #[error("empty line")]
    Empty,
    /// Longer than the configured maximum.
    #[error("line of {0} bytes exceeds the maximum of {1} bytes")]
    TooLong(usize, usize),
    /// Not valid JSON, not an object, or a field of the wrong type.
    #[error("invalid record: {0}")]
    Json(String),
    /// Neither `start_time`, `end_time` nor `@timestamp`.
    #[error("record has no event time (start_time, end_time or @timestamp)")]
    NoTime,
    /// A numeric field is out of its range.
    #[error("field {0} out of range: {1}")]
    Range(&'static str, i64),
}

/// Default maximum line length (1 MiB): Felix lines are ~2 KB, so anything far larger is garbage.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// Per-thread decoder.
pub struct Decoder {
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
    key_buf: String,
    registered: FxHashSet<u64>,
    max_line: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE)
    }
}

impl Decoder {
    /// A decoder that rejects lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Decoder {
            scratch: Vec::with_capacity(4096),
            buffers: simd_json::Buffers::new(4096),
            key_buf: String::with_capacity(128),
            registered: FxHashSet::default(),
            max_line,
        }
    }

    /// Decodes one line (without its newline) into a compact record.
    pub fn decode(&mut self, line: &[u8]) -> Result<FlowRecord, DecodeError> {
        let line = trim_ascii(line);
        if line.is_empty() {
            return Err(DecodeError::Empty);
        }
        if line.len() > self.max_line {
            return Err(DecodeError::TooLong(line.len(), self.max_line));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend_from_slice(line);
        let result = match simd_json::serde::from_slice_with_buffers::<RawFlow>(
            &mut scratch,
            &mut self.buffers,
        ) {
            Ok(raw) => self.to_record(&raw),
            Err(e) => Err(DecodeError::Json(e.to_string())),
        };
        self.scratch = scratch;
        result
    }

    /// Runs `f` on every field of the line ([`RawFlow`]), for tests, evidence and tools.
    pub fn with_raw<T>(
        &mut self,
        line: &[u8],
        f: impl FnOnce(&RawFlow<'_>) -> T,
    ) -> Result<T, DecodeError> {
        let mut scratch = trim_ascii(line).to_vec();
        let raw =
            simd_json::serde::from_slice_with_buffers::<RawFlow>(&mut scratch, &mut self.buffers)
                .map_err(|e| DecodeError::Json(e.to_string()))?;
        Ok(f(&raw))
    }

    /// Builds the compact record from the borrowed one.
    pub fn to_record(&mut self, raw: &RawFlow<'_>) -> Result<FlowRecord, DecodeError> {
        let (start_time, end_time) = match (raw.start_time, raw.end_time, raw.timestamp_ms) {
            (Some(s), Some(e), _) => (s, e.max(s)),
            (Some(s), None, _) => (s, s),
            (None, Some(e), _) => (e, e),
            (None, None, Some(ms)) => (ms / 1000, ms / 1000),
            (None, None, None) => return Err(DecodeError::NoTime),
        };
        let strings = StringTable::global();
        let mut rec = FlowRecord {
            start_time,
            end_time,
            ..FlowRecord::default()
        };
        let src_ip = parse_ip(raw.source_ip);
        let dst_ip = parse_ip(raw.dest_ip);
        if let Some(key) = &raw.key {
            // Goldmane: identity and verdict live in `Key`.
            rec.format = Format::Goldmane;
            let src_kind = EndpointType::from_goldmane(key.source_type.unwrap_or(0));
            let dst_kind = EndpointType::from_goldmane(key.dest_type.unwrap_or(0));
            rec.src = self.endpoint(
                src_kind,
                key.source_namespace.unwrap_or("-"),
                key.source_name.unwrap_or("-"),
                src_ip,
                raw.source_ip,
                &raw.source_labels,
            );
            rec.src.port = port(raw.source_port, "source_port")?;
            rec.dst = self.endpoint(
                dst_kind,
                key.dest_namespace.unwrap_or("-"),
                key.dest_name.unwrap_or("-"),
                dst_ip,
                raw.dest_ip,
                &raw.dest_labels,
            );
            rec.dst.port = port(key.dest_port.or(raw.dest_port), "dest_port")?;
            rec.proto = key
                .proto
                .or(raw.proto)
                .map(Proto::parse)
                .unwrap_or_default();
            rec.action = Action::from_goldmane(key.action.unwrap_or(0));
            rec.reporter = Reporter::from_goldmane(key.reporter.unwrap_or(0));
            rec.dest_service = intern_service(
                strings,
                key.dest_service_namespace,
                key.dest_service_name,
                key.dest_service_port_name,
            );
            rec.dest_service_port_num = port(key.dest_service_port, "dest_service_port")?;
            if let Some(p) = &key.policies {
                self.policies(&mut rec, p);
            }
            let completed = raw.num_connections_completed.unwrap_or(0);
            let live = raw.num_connections_live.unwrap_or(0);
            rec.num_flows_started = raw.num_connections_started.unwrap_or(0);
            rec.num_flows_completed = completed;
            rec.num_flows = raw.num_flows.unwrap_or(completed + live);
        } else {
            rec.format = Format::Calico;
            rec.src = self.endpoint(
                EndpointType::from_calico(raw.source_type.unwrap_or("net")),
                raw.source_namespace.unwrap_or("-"),
                raw.source_name_aggr.unwrap_or("-"),
                src_ip,
                raw.source_ip,
                &raw.source_labels,
            );
            rec.src.port = port(raw.source_port, "source_port")?;
            // An external destination aggregated past its address is named by its first linked
            // domain, so `pub` is not one giant peer that hides every C2 host behind it.
            let dst_kind = EndpointType::from_calico(raw.dest_type.unwrap_or("net"));
            let dst_name = match (
                dst_kind,
                raw.dest_ip,
                raw.dest_domains.as_ref().and_then(|d| d.first()),
            ) {
                (EndpointType::Net, None, Some(domain)) => Some(*domain),
                _ => raw.dest_ip,
            };
            rec.dst = self.endpoint(
                dst_kind,
                raw.dest_namespace.unwrap_or("-"),
                raw.dest_name_aggr.unwrap_or("-"),
                dst_ip,
                dst_name,
                &raw.dest_labels,
            );
            rec.dst.port = port(raw.dest_port, "dest_port")?;
            rec.proto = raw.proto.map(Proto::parse).unwrap_or_default();
            rec.action = raw.action.map(Action::from_calico).unwrap_or(Action::Allow);
            rec.reporter = raw
                .reporter
                .map(Reporter::from_calico)
                .unwrap_or(Reporter::Src);
            rec.dest_service = intern_service(
                strings,
                raw.dest_service_namespace,
                raw.dest_service_name,
                raw.dest_service_port,
            );
            rec.dest_service_port_num = port(raw.dest_service_port_num, "dest_service_port_num")?;
            if let Some(p) = &raw.policies {
                self.policies(&mut rec, p);
            }
            rec.num_flows = raw.num_flows.unwrap_or(0);
            rec.num_flows_started = raw.num_flows_started.unwrap_or(0);
            rec.num_flows_completed = raw.num_flows_completed.unwrap_or(0);
        }
        rec.bytes_in = raw.bytes_in.unwrap_or(0);
        rec.bytes_out = raw.bytes_out.unwrap_or(0);
        rec.packets_in = raw.packets_in.unwrap_or(0);
        rec.packets_out = raw.packets_out.unwrap_or(0);
        rec.http_requests_allowed_in = sat32(raw.http_requests_allowed_in);
        rec.http_requests_denied_in = sat32(raw.http_requests_denied_in);
        if let Some(domains) = &raw.dest_domains {
            rec.num_dest_domains = domains.len().min(u16::MAX as usize) as u16;
            rec.dest_domain = domains.first().map(|d| strings.intern(d)).unwrap_or(0);
        }
        if let Some(p) = raw.process_name {
            rec.process_name = strings.intern(p);
        }
        rec.num_process_names = sat32(raw.num_process_names);
        rec.num_original_source_ips = raw
            .num_original_source_ips
            .map(|n| n.min(u32::MAX as u64) as u32)
            .or_else(|| raw.original_source_ips.as_ref().map(|v| v.len() as u32))
            .unwrap_or(0);
        rec.num_nat_outgoing_ports = raw
            .nat_outgoing_ports
            .as_ref()
            .map(|v| v.len().min(u16::MAX as usize) as u16)
            .unwrap_or(0);
        rec.tcp = TcpStats {
            mean_send_congestion_window: sat32(raw.tcp_mean_send_congestion_window),
            min_send_congestion_window: sat32(raw.tcp_min_send_congestion_window),
            mean_smooth_rtt: sat32(raw.tcp_mean_smooth_rtt),
            max_smooth_rtt: sat32(raw.tcp_max_smooth_rtt),
            mean_min_rtt: sat32(raw.tcp_mean_min_rtt),
            max_min_rtt: sat32(raw.tcp_max_min_rtt),
            mean_mss: sat32(raw.tcp_mean_mss),
            min_mss: sat32(raw.tcp_min_mss),
            total_retransmissions: sat32(raw.tcp_total_retransmissions),
            lost_packets: sat32(raw.tcp_lost_packets),
            unrecovered_to: sat32(raw.tcp_unrecovered_to),
        };
        Ok(rec)
    }

    fn endpoint(
        &mut self,
        kind: EndpointType,
        namespace: &str,
        name_aggr: &str,
        ip: Option<IpAddr>,
        ip_str: Option<&str>,
        labels: &Labels<'_>,
    ) -> Endpoint {
        // Only networks outside the cluster are identified by address; pods by their controller.
        let key_ip = if kind == EndpointType::Net {
            ip_str
        } else {
            None
        };
        canonical_key(&mut self.key_buf, kind, namespace, name_aggr, key_ip);
        let id = WorkloadId::of_key(&self.key_buf);
        let group = match group_name(name_aggr) {
            Some(stripped) if kind == EndpointType::Wep => {
                canonical_key(&mut self.key_buf, kind, namespace, stripped, None);
                let g = WorkloadId::of_key(&self.key_buf);
                canonical_key(&mut self.key_buf, kind, namespace, name_aggr, key_ip);
                g
            }
            _ => id,
        };
        if self.registered.insert(id.0) {
            let key = self.key_buf.clone();
            WorkloadRegistry::global().register(id, || WorkloadInfo {
                key,
                kind,
                namespace: namespace.to_string(),
                name_aggr: name_aggr.to_string(),
                labels: labels.0.iter().map(|s| s.to_string()).collect(),
            });
        }
        let public = kind == EndpointType::Net
            && match ip {
                Some(ip) => is_public_ip(ip),
                None => name_aggr != "pvt",
            };
        Endpoint {
            id,
            group,
            kind,
            ip,
            port: None,
            public,
        }
    }

    fn policies(&mut self, rec: &mut FlowRecord, p: &crate::flow::raw::Policies<'_>) {
        let enforced = p.enforced();
        rec.num_enforced_policies = enforced.len().min(u16::MAX as usize) as u16;
        rec.num_pending_policies = p
            .pending_policies
            .as_ref()
            .map(|v| v.len().min(u16::MAX as usize) as u16)
            .unwrap_or(0);
        // The last enforced hit is the one that decided the verdict; unparseable strings are kept as
        // written so an operator still sees them.
        if let Some(last) = enforced.last() {
            let strings = StringTable::global();
            rec.deciding_policy = match last.parse() {
                Ok(hit) => {
                    self.key_buf.clear();
                    self.key_buf.push_str(hit.tier);
                    self.key_buf.push('|');
                    if !hit.namespace.is_empty() {
                        self.key_buf.push_str(hit.namespace);
                        self.key_buf.push('/');
                    }
                    self.key_buf.push_str(hit.name);
                    strings.intern(&self.key_buf)
                }
                Err(_) => match last {
                    crate::flow::raw::PolicyEntry::Str(s) => strings.intern(s),
                    crate::flow::raw::PolicyEntry::Hit(_) => 0,
                },
            };
        }
    }
}

fn trim_ascii(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// The deployment name inside a pod's aggregated name: `frontend-7d9c8b6f4-*` → `frontend`,
/// `redis-*` → `redis`; `None` when there is nothing to strip.
pub fn group_name(name_aggr: &str) -> Option<&str> {
    let base = name_aggr.strip_suffix('*')?.trim_end_matches('-');
    match base.rsplit_once('-') {
        Some((head, tail)) if looks_like_hash(tail) && !head.is_empty() => Some(head),
        _ => Some(base),
    }
}

/// Kubernetes pod-template hashes: 5-10 characters of `[a-z0-9]` with at least one digit, or drawn
/// only from the alphabet Kubernetes encodes hashes with (`SafeEncodeString`: no vowels, no 0/1/3),
/// which often has no digit at all (`gdvdshxtjd`); taking such a hash for part of the name would make
/// every rollout look like a brand-new workload to the peer, edge and baseline memories.
fn looks_like_hash(s: &str) -> bool {
    const K8S_SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (5..=10).contains(&s.len())
        && (s.bytes().all(|b| K8S_SAFE.contains(&b))
            || (s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && s.bytes().any(|b| b.is_ascii_digit())))
}

/// Whether an address is routable on the internet (not private, loopback, link-local, multicast...).
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let s0 = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unspecified()
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80)
        }
    }
}

fn parse_ip(s: Option<&str>) -> Option<IpAddr> {
    s.and_then(|s| s.parse().ok())
}

fn port(v: Option<i64>, field: &'static str) -> Result<Option<u16>, DecodeError> {
    match v {
        None | Some(0) => Ok(None),
        Some(p) if (1..=65535).contains(&p) => Ok(Some(p as u16)),
        Some(p) => Err(DecodeError::Range(field, p)),
    }
}

fn sat32(v: Option<u64>) -> u32 {
    v.map(|n| n.min(u32::MAX as u64) as u32).unwrap_or(0)
}

fn intern_service(
    strings: &StringTable,
    ns: Option<&str>,
    name: Option<&str>,
    port: Option<&str>,
) -> u32 {
    match name {
        None | Some("-") | Some("") => 0,
        Some(name) => {
            let mut s = String::with_capacity(48);
            if let Some(ns) = ns.filter(|n| !n.is_empty() && *n != "-") {
                s.push_str(ns);
                s.push('/');
            }
            s.push_str(name);
            if let Some(p) = port.filter(|p| !p.is_empty() && *p != "-") {
                s.push(':');
                s.push_str(p);
            }
            strings.intern(&s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_drop_the_replica_set_hash() {
        assert_eq!(group_name("frontend-7d9c8b6f4-*"), Some("frontend"));
        assert_eq!(group_name("coredns-576cbf47c7-*"), Some("coredns"));
        assert_eq!(group_name("redis-cart-*"), Some("redis-cart"));
        assert_eq!(group_name("host113-*"), Some("host113"));
        assert_eq!(
            group_name("recommendation-gdvdshxtjd-*"),
            Some("recommendation")
        );
        assert_eq!(
            group_name("report-builder-29147160-*"),
            Some("report-builder")
        );
        assert_eq!(group_name("payment-service-*"), Some("payment-service"));
        assert_eq!(group_name("pub"), None);
    }
}
