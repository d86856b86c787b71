//! [`Decoder`]: one line in, one [`FlowRecord`] (or a [`DecodeError`] with the reason) out.
//!
//! One decoder per thread: it owns simd-json's scratch buffers and tape, a copy of the line (simd-json
//! unescapes in place, and the dead-letter output needs the original bytes), the workloads this thread
//! has already registered (with their group, so the shared registry is touched once per new workload)
//! and a cache in front of the shared string table.
//!
//! Calico lines take the hot path: [`LineScanner`] reads the line's bytes once into [`CalicoFields`]
//! (no copy, no allocation, keys matched by length). A line the scanner does not read (escapes,
//! floats...) is parsed by simd-json and its tape walked into the same fields. A line the walk is
//! unsure of, a Goldmane line, or a record naming a workload this thread has not registered yet goes
//! through the full serde view ([`RawFlow`]) instead, which gives the same record or the same error.

use crate::flow::fields::{CalicoFields, PolicySummary};
use crate::flow::policy::PolicyKind;
use crate::flow::raw::{Labels, PolicyEntry, RawFlow};
use crate::flow::registry::{canonical_key, StringTable, WorkloadRegistry};
use crate::flow::scanner::LineScanner;
use crate::flow::{
    Action, Endpoint, EndpointType, FlowRecord, Format, IdMap, Proto, Reporter, TcpStats,
    WorkloadId, WorkloadInfo,
};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr};
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
    scanner: LineScanner,
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
    /// simd-json's tape, kept empty between lines to reuse its allocation.
    tape: Option<simd_json::tape::Tape<'static>>,
    key_buf: String,
    service_buf: String,
    /// Workloads this thread registered: id → (kind, group).
    known: IdMap<(EndpointType, WorkloadId)>,
    /// Entries `known` may hold before it starts over ([`KNOWN_CAP`] or more, see
    /// [`Decoder::remember`]).
    known_cap: usize,
    /// The registry's eviction generation `known` was filled under: when the registry drops names,
    /// the cache starts over so a returning workload registers its name again.
    known_generation: u64,
    /// Strings this thread interned, in front of the shared [`StringTable`].
    interned: FxHashMap<Box<str>, u32>,
    /// What the record keeps of a raw policy string (deciding or pending hit).
    policy_ids: FxHashMap<Box<str>, HitSummary>,
    max_line: usize,
}

/// A line after [`Decoder::begin`]: rejected, scanned (with its endpoints' ids), or left to simd-json.
enum Begun<'l> {
    Rejected(DecodeError),
    /// Scanned into the slot's `fields`.
    Scanned(&'l [u8], Sides<'l>),
    Unscanned(&'l [u8]),
}

/// Where a line is begun and later finished. The scanned fields (about a kilobyte) live here and
/// are scanned into in place: returned by value, they were moved three times per line on their
/// way into a slot (518 instructions per record in `memcpy`, a fifth of the decoder's beyond the
/// scan itself).
#[derive(Default)]
struct LineSlot<'l> {
    /// The line begun here and not yet finished, if any.
    begun: Option<Begun<'l>>,
    fields: CalicoFields<'l>,
}

/// The kinds and registry ids of a Calico record's two workloads, computed once per line.
#[derive(Clone, Copy)]
struct Sides<'l> {
    src_kind: EndpointType,
    dst_kind: EndpointType,
    /// The destination's name for its key: its address, or its first domain (see `sides`).
    dst_name: Option<&'l str>,
    src_id: WorkloadId,
    dst_id: WorkloadId,
}

/// Entries a per-thread string cache holds before it starts over (bounded memory, invariant 5).
const CACHE_CAP: usize = 1 << 16;
/// Workloads a decoder remembers having registered before it first asks the registry how many
/// workloads there are (about 3 MiB of cache at this size). A workload forgotten here is looked up in
/// the registry, or takes the full parse once more.
pub const KNOWN_CAP: usize = 1 << 16;

/// Entries a decoder's cache of registered workloads grows to: a quarter more than the registry
/// holds, and at least [`KNOWN_CAP`] (see `Decoder::remember`). The budget counts the caches at
/// this size.
pub fn known_room() -> usize {
    KNOWN_CAP.max(WorkloadRegistry::global().len().saturating_mul(5) / 4)
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
            scanner: LineScanner::default(),
            scratch: Vec::with_capacity(4096),
            buffers: simd_json::Buffers::new(4096),
            tape: None,
            key_buf: String::with_capacity(128),
            service_buf: String::with_capacity(128),
            known: IdMap::default(),
            known_cap: KNOWN_CAP,
            known_generation: WorkloadRegistry::global().generation(),
            interned: FxHashMap::default(),
            policy_ids: FxHashMap::default(),
            max_line,
        }
    }

    /// Decodes one line (without its newline) into a compact record.
    pub fn decode(&mut self, line: &[u8]) -> Result<FlowRecord, DecodeError> {
        let mut fields = CalicoFields::default();
        let begun = self.begin(line, &mut fields);
        self.finish(&begun, &fields)
    }

    /// Decodes lines in input order, handing each one's result to `out`. A line is scanned, and
    /// its workloads' slots in this thread's cache asked for, before the line ahead of it is
    /// finished: past a few hundred thousand workloads that cache misses, and the miss then runs
    /// while the previous line is finished and the next scanned instead of stalling the look-up
    /// (it was a tenth of the run at a million workloads). An `Err` item is passed through in its
    /// place (a line rejected before decoding).
    pub fn decode_each<'l>(
        &mut self,
        lines: impl IntoIterator<Item = Result<&'l [u8], DecodeError>>,
        mut out: impl FnMut(Result<FlowRecord, DecodeError>),
    ) {
        // Two slots used in turn, so the scanned fields (a kilobyte) are written once and read in
        // place rather than moved from slot to slot.
        let mut slots: [LineSlot<'l>; 2] = Default::default();
        let mut k = 0;
        for line in lines {
            let slot = &mut slots[k];
            slot.begun = Some(match line {
                Ok(line) => self.begin(line, &mut slot.fields),
                Err(e) => Begun::Rejected(e),
            });
            k ^= 1;
            let prev = &mut slots[k];
            if let Some(begun) = prev.begun.take() {
                out(self.finish(&begun, &prev.fields));
            }
        }
        let last = &slots[k ^ 1];
        if let Some(begun) = &last.begun {
            out(self.finish(begun, &last.fields));
        }
    }

    /// The first half of decoding a line: length checks, the byte scan and the endpoints' ids,
    /// whose cache slots are prefetched for [`Decoder::finish`].
    /// A scanned line's fields go into `fields`, which the caller keeps for [`Decoder::finish`].
    fn begin<'l>(&mut self, line: &'l [u8], fields: &mut CalicoFields<'l>) -> Begun<'l> {
        // Whitespace around the object is trimmed only where it matters: the scanner skips it
        // itself. Reading the line's last byte first, to trim it, jumped ahead of what the
        // hardware had streamed in and missed the cache on most lines of a large input; the scan
        // reads the line from its first byte, in order.
        if line.len() > self.max_line {
            let trimmed = trim_ascii(line);
            if trimmed.len() > self.max_line {
                return Begun::Rejected(DecodeError::TooLong(trimmed.len(), self.max_line));
            }
        }
        // The byte scanner reads what Felix writes; a line it gives up on takes the simd-json path.
        if self.scanner.scan_into(line, fields) {
            let sides = self.sides(fields);
            self.known.prefetch(sides.src_id);
            self.known.prefetch(sides.dst_id);
            Begun::Scanned(line, sides)
        } else {
            Begun::Unscanned(line)
        }
    }

    /// The second half: the record from the scanned fields when both workloads are registered with
    /// nothing this line could add, else the simd-json path.
    /// `fields` are what [`Decoder::begin`] scanned into, read only for a scanned line.
    fn finish(
        &mut self,
        begun: &Begun<'_>,
        fields: &CalicoFields<'_>,
    ) -> Result<FlowRecord, DecodeError> {
        self.sync_known();
        let (line, scanned) = match *begun {
            Begun::Rejected(ref e) => return Err(e.clone()),
            Begun::Scanned(line, ref sides) => {
                if let Ok(Some(rec)) = self.calico_record(fields, sides, None) {
                    return Ok(rec);
                }
                (line, true)
            }
            Begun::Unscanned(line) => (line, false),
        };
        let line = trim_ascii(line);
        if line.is_empty() {
            return Err(DecodeError::Empty);
        }
        check_shape(line)?;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend_from_slice(line);
        let mut tape = self
            .tape
            .take()
            .unwrap_or_else(simd_json::tape::Tape::null)
            .reset();
        let result = match simd_json::fill_tape(&mut scratch, &mut self.buffers, &mut tape) {
            Err(e) => Err(DecodeError::Json(e.to_string())),
            Ok(()) => {
                // A line the scanner read gives the tape walk the same fields and the same answer:
                // straight to the serde view.
                let fast = (!scanned)
                    .then(|| CalicoFields::scan(&tape.0))
                    .flatten()
                    .and_then(|fields| {
                        let sides = self.sides(&fields);
                        self.calico_record(&fields, &sides, None).ok().flatten()
                    });
                match fast {
                    Some(rec) => Ok(rec),
                    // The walk gave up: the serde view over the same tape decides (what
                    // `simd_json::serde::from_slice` would do, without parsing again).
                    None => {
                        let parsed = std::mem::replace(&mut tape, simd_json::tape::Tape::null());
                        match parsed.deserialize::<RawFlow>() {
                            Ok(raw) => self.to_record(&raw),
                            Err(e) => Err(explain_error(line, &e)),
                        }
                    }
                }
            }
        };
        self.tape = Some(tape.reset());
        self.scratch = scratch;
        result
    }

    /// Runs `f` on every field of the line ([`RawFlow`]), for tests, evidence and tools.
    pub fn with_raw<T>(
        &mut self,
        line: &[u8],
        f: impl FnOnce(&RawFlow<'_>) -> T,
    ) -> Result<T, DecodeError> {
        let line = trim_ascii(line);
        let mut scratch = line.to_vec();
        let raw = parse_raw(line, &mut scratch, &mut self.buffers)?;
        Ok(f(&raw))
    }

    /// Forgets which workloads this thread registered if the registry dropped names since. The
    /// cache's room goes too when it is four times what the registry now needs (the registry
    /// shrank after a flood or churn), so memory follows the state down.
    #[inline]
    fn sync_known(&mut self) {
        let generation = WorkloadRegistry::global().generation();
        if generation != self.known_generation {
            if self.known.capacity() > known_room().saturating_mul(4) {
                self.known.clear_and_free();
                self.known_cap = KNOWN_CAP;
            } else {
                self.known.clear();
            }
            self.known_generation = generation;
        }
    }

    /// Builds the compact record from the borrowed one.
    pub fn to_record(&mut self, raw: &RawFlow<'_>) -> Result<FlowRecord, DecodeError> {
        self.sync_known();
        let Some(key) = &raw.key else {
            let fields = CalicoFields::from_raw(raw);
            let labels = (&raw.source_labels, &raw.dest_labels);
            // With labels given every endpoint registers, so this is never `None`.
            let sides = self.sides(&fields);
            return Ok(self
                .calico_record(&fields, &sides, Some(labels))?
                .unwrap_or_default());
        };
        let (start_time, end_time) = event_times(raw.start_time, raw.end_time, raw.timestamp_ms)?;
        let mut rec = FlowRecord {
            start_time,
            end_time,
            ..FlowRecord::default()
        };
        let src_ip = parse_ip(raw.source_ip);
        let dst_ip = parse_ip(raw.dest_ip);
        {
            // Goldmane: identity and verdict live in `Key`.
            rec.format = Format::Goldmane;
            let src_kind = EndpointType::from_goldmane(key.source_type.unwrap_or(0));
            let dst_kind = EndpointType::from_goldmane(key.dest_type.unwrap_or(0));
            let src_id = self.workload_id(
                src_kind,
                key.source_namespace.unwrap_or("-"),
                key.source_name.unwrap_or("-"),
                raw.source_ip,
            );
            rec.src = self
                .endpoint(
                    src_kind,
                    src_id,
                    key.source_namespace.unwrap_or("-"),
                    key.source_name.unwrap_or("-"),
                    src_ip,
                    raw.source_ip,
                    Some(&raw.source_labels),
                )
                .unwrap_or_default(); // never None: labels are given
            rec.src.port = port(raw.source_port, "source_port")?;
            let dst_id = self.workload_id(
                dst_kind,
                key.dest_namespace.unwrap_or("-"),
                key.dest_name.unwrap_or("-"),
                raw.dest_ip,
            );
            rec.dst = self
                .endpoint(
                    dst_kind,
                    dst_id,
                    key.dest_namespace.unwrap_or("-"),
                    key.dest_name.unwrap_or("-"),
                    dst_ip,
                    raw.dest_ip,
                    Some(&raw.dest_labels),
                )
                .unwrap_or_default();
            rec.dst.port = port(key.dest_port.or(raw.dest_port), "dest_port")?;
            rec.proto = key
                .proto
                .or(raw.proto)
                .map(Proto::parse)
                .unwrap_or_default();
            rec.action = Action::from_goldmane(key.action.unwrap_or(0));
            rec.reporter = Reporter::from_goldmane(key.reporter.unwrap_or(0));
            rec.dest_service = self.intern_service(
                key.dest_service_namespace,
                key.dest_service_name,
                key.dest_service_port_name,
            );
            rec.dest_service_port_num = port(key.dest_service_port, "dest_service_port")?;
            if let Some(p) = &key.policies {
                let summary = PolicySummary {
                    enforced: p.enforced().len(),
                    last_enforced: p.enforced().last().cloned(),
                    pending: p.pending_policies.as_ref().map(Vec::len),
                    last_pending: p.pending_policies.as_ref().and_then(|v| v.last().cloned()),
                };
                self.policies(&mut rec, &summary);
            }
            let completed = raw.num_connections_completed.unwrap_or(0);
            let live = raw.num_connections_live.unwrap_or(0);
            rec.num_flows_started = raw.num_connections_started.unwrap_or(0);
            rec.num_flows_completed = completed;
            rec.num_flows = raw.num_flows.unwrap_or(completed + live);
        }
        rec.bytes_in = raw.bytes_in.unwrap_or(0);
        rec.bytes_out = raw.bytes_out.unwrap_or(0);
        rec.packets_in = raw.packets_in.unwrap_or(0);
        rec.packets_out = raw.packets_out.unwrap_or(0);
        rec.http_requests_allowed_in = sat32(raw.http_requests_allowed_in);
        rec.http_requests_denied_in = sat32(raw.http_requests_denied_in);
        if let Some(domains) = &raw.dest_domains {
            rec.num_dest_domains = domains.len().min(u16::MAX as usize) as u16;
            rec.dest_domain = domains.first().map(|d| self.intern(d)).unwrap_or(0);
        }
        if let Some(p) = raw.process_name {
            rec.process_name = self.intern(p);
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
        rec.tcp = tcp_stats(&CalicoFields::from_raw(raw).tcp);
        Ok(rec)
    }

    /// The kinds and registry ids of a Calico record's two workloads.
    fn sides<'a>(&mut self, f: &CalicoFields<'a>) -> Sides<'a> {
        let src_kind = EndpointType::from_calico(f.source_type.unwrap_or("net"));
        // An external destination aggregated past its address is named by its first linked
        // domain, so `pub` is not one giant peer that hides every C2 host behind it.
        let dst_kind = EndpointType::from_calico(f.dest_type.unwrap_or("net"));
        let dst_name = match (dst_kind, f.dest_ip, f.dest_domains.and_then(|(_, d)| d)) {
            (EndpointType::Net, None, Some(domain)) => Some(domain),
            _ => f.dest_ip,
        };
        let src_id = self.workload_id(
            src_kind,
            f.source_namespace.unwrap_or("-"),
            f.source_name_aggr.unwrap_or("-"),
            f.source_ip,
        );
        let dst_id = self.workload_id(
            dst_kind,
            f.dest_namespace.unwrap_or("-"),
            f.dest_name_aggr.unwrap_or("-"),
            dst_name,
        );
        Sides {
            src_kind,
            dst_kind,
            dst_name,
            src_id,
            dst_id,
        }
    }

    /// The registry id of a workload; `key_buf` is left holding its canonical key.
    fn workload_id(
        &mut self,
        kind: EndpointType,
        namespace: &str,
        name_aggr: &str,
        ip_str: Option<&str>,
    ) -> WorkloadId {
        self.fill_key(kind, namespace, name_aggr, ip_str);
        WorkloadId::of_key(&self.key_buf)
    }

    /// Writes a workload's canonical key into `key_buf`.
    fn fill_key(
        &mut self,
        kind: EndpointType,
        namespace: &str,
        name_aggr: &str,
        ip_str: Option<&str>,
    ) {
        // Only networks outside the cluster are identified by address; pods by their controller.
        let key_ip = if kind == EndpointType::Net {
            ip_str
        } else {
            None
        };
        canonical_key(&mut self.key_buf, kind, namespace, name_aggr, key_ip);
    }

    /// Builds a Calico record. Without `labels` (the hot path) it registers nothing and returns
    /// `Ok(None)` when an endpoint is new to this thread, so the caller retries with the serde view.
    fn calico_record(
        &mut self,
        f: &CalicoFields<'_>,
        sides: &Sides<'_>,
        labels: Option<(&Labels<'_>, &Labels<'_>)>,
    ) -> Result<Option<FlowRecord>, DecodeError> {
        let (start_time, end_time) = event_times(f.start_time, f.end_time, f.timestamp_ms)?;
        let mut rec = FlowRecord {
            start_time,
            end_time,
            format: Format::Calico,
            ..FlowRecord::default()
        };
        let Sides {
            src_kind,
            dst_kind,
            dst_name,
            src_id,
            dst_id,
        } = *sides;
        // Both ends must be known before anything has a side effect.
        if labels.is_none()
            && !(self.is_known(
                src_kind,
                src_id,
                f.source_namespace,
                f.source_name_aggr,
                f.source_labelled,
            ) && self.is_known(
                dst_kind,
                dst_id,
                f.dest_namespace,
                f.dest_name_aggr,
                f.dest_labelled,
            ))
        {
            return Ok(None);
        }
        let Some(src) = self.endpoint(
            src_kind,
            src_id,
            f.source_namespace.unwrap_or("-"),
            f.source_name_aggr.unwrap_or("-"),
            parse_ip(f.source_ip),
            f.source_ip,
            labels.map(|l| l.0),
        ) else {
            return Ok(None);
        };
        rec.src = src;
        rec.src.port = port(f.source_port, "source_port")?;
        let Some(dst) = self.endpoint(
            dst_kind,
            dst_id,
            f.dest_namespace.unwrap_or("-"),
            f.dest_name_aggr.unwrap_or("-"),
            parse_ip(f.dest_ip),
            dst_name,
            labels.map(|l| l.1),
        ) else {
            return Ok(None);
        };
        rec.dst = dst;
        rec.dst.port = port(f.dest_port, "dest_port")?;
        rec.proto = f.proto.map(Proto::parse).unwrap_or_default();
        rec.action = f.action.map(Action::from_calico).unwrap_or(Action::Allow);
        rec.reporter = f
            .reporter
            .map(Reporter::from_calico)
            .unwrap_or(Reporter::Src);
        rec.dest_service = self.intern_service(
            f.dest_service_namespace,
            f.dest_service_name,
            f.dest_service_port,
        );
        rec.dest_service_port_num = port(f.dest_service_port_num, "dest_service_port_num")?;
        if let Some(p) = &f.policies {
            self.policies(&mut rec, p);
        }
        rec.num_flows = f.num_flows.unwrap_or(0);
        rec.num_flows_started = f.num_flows_started.unwrap_or(0);
        rec.num_flows_completed = f.num_flows_completed.unwrap_or(0);
        rec.bytes_in = f.bytes_in.unwrap_or(0);
        rec.bytes_out = f.bytes_out.unwrap_or(0);
        rec.packets_in = f.packets_in.unwrap_or(0);
        rec.packets_out = f.packets_out.unwrap_or(0);
        rec.http_requests_allowed_in = sat32(f.http_requests_allowed_in);
        rec.http_requests_denied_in = sat32(f.http_requests_denied_in);
        if let Some((n, first)) = f.dest_domains {
            rec.num_dest_domains = n.min(u16::MAX as usize) as u16;
            rec.dest_domain = first.map(|d| self.intern(d)).unwrap_or(0);
        }
        if let Some(p) = f.process_name {
            rec.process_name = self.intern(p);
        }
        rec.num_process_names = sat32(f.num_process_names);
        rec.num_original_source_ips = f
            .num_original_source_ips
            .map(|n| n.min(u32::MAX as u64) as u32)
            .or(f.original_source_ips.map(|n| n as u32))
            .unwrap_or(0);
        rec.num_nat_outgoing_ports = f
            .nat_outgoing_ports
            .map(|n| n.min(u16::MAX as usize) as u16)
            .unwrap_or(0);
        rec.tcp = tcp_stats(&f.tcp);
        Ok(Some(rec))
    }

    /// Whether the endpoint's workload is registered with nothing this record could add: known to
    /// this thread, or found in the registry (and then remembered by this thread).
    fn is_known(
        &mut self,
        kind: EndpointType,
        id: WorkloadId,
        namespace: Option<&str>,
        name_aggr: Option<&str>,
        labelled: bool,
    ) -> bool {
        if self.known.contains(id) {
            return true;
        }
        // Not in this thread's cache (new to the thread, or the cache started over with more
        // workloads than it holds): a workload the registry has, and this record cannot add
        // labels to, needs no full parse.
        if !WorkloadRegistry::global().touch(id, labelled) {
            return false;
        }
        let group = self.group_of(kind, namespace.unwrap_or("-"), name_aggr.unwrap_or("-"), id);
        self.remember(id, kind, group);
        true
    }

    /// Notes that this thread registered `id`. A full cache grows to a quarter more than the
    /// registry holds, so with more live workloads than [`KNOWN_CAP`] it does not start over every
    /// few records and send each one to the shared map (at 2M workloads those look-ups were a tenth
    /// of the run). It starts over only when it holds more than that: the registry refused names
    /// (an identity flood), so the registry's bounded capacity bounds this cache too.
    fn remember(&mut self, id: WorkloadId, kind: EndpointType, group: WorkloadId) {
        if self.known.len() >= self.known_cap {
            let room = known_room();
            if room > self.known.len() {
                self.known_cap = room;
            } else {
                self.known.clear();
            }
        }
        self.known.insert(id, (kind, group));
    }

    /// Interns through this thread's cache.
    fn intern(&mut self, s: &str) -> u32 {
        if s.is_empty() || s == "-" {
            return 0;
        }
        if let Some(&id) = self.interned.get(s) {
            return id;
        }
        let id = StringTable::global().intern(s);
        if self.interned.len() >= CACHE_CAP {
            self.interned.clear();
        }
        self.interned.insert(Box::from(s), id);
        id
    }

    /// `ns/service:port-name` of the matched Service, interned (0 when none).
    fn intern_service(&mut self, ns: Option<&str>, name: Option<&str>, port: Option<&str>) -> u32 {
        match name {
            None | Some("-") | Some("") => 0,
            Some(name) => {
                let mut s = std::mem::take(&mut self.service_buf);
                s.clear();
                if let Some(ns) = ns.filter(|n| !n.is_empty() && *n != "-") {
                    s.push_str(ns);
                    s.push('/');
                }
                s.push_str(name);
                if let Some(p) = port.filter(|p| !p.is_empty() && *p != "-") {
                    s.push(':');
                    s.push_str(p);
                }
                let id = self.intern(&s);
                self.service_buf = s;
                id
            }
        }
    }

    /// One end of the flow. Registers the workload the first time this thread sees it, which needs
    /// its `labels`; without them (the hot path) an unregistered workload gives `None`.
    // The Calico and Goldmane paths name an endpoint from different fields, so they pass them.
    #[allow(clippy::too_many_arguments)]
    fn endpoint(
        &mut self,
        kind: EndpointType,
        id: WorkloadId,
        namespace: &str,
        name_aggr: &str,
        ip: Option<IpAddr>,
        ip_str: Option<&str>,
        labels: Option<&Labels<'_>>,
    ) -> Option<Endpoint> {
        let group = match self.known.get(id) {
            Some((k, g)) if k == kind => g,
            Some(_) => self.group_of(kind, namespace, name_aggr, id),
            None => {
                let labels = labels?;
                // The id came with the call; the key string is wanted only here, once per workload.
                self.fill_key(kind, namespace, name_aggr, ip_str);
                let key = self.key_buf.clone();
                let group = self.group_of(kind, namespace, name_aggr, id);
                self.remember(id, kind, group);
                WorkloadRegistry::global().register(id, || WorkloadInfo {
                    key,
                    kind,
                    namespace: namespace.to_string(),
                    name_aggr: name_aggr.to_string(),
                    labels: labels.0.iter().map(|s| s.to_string()).collect(),
                });
                group
            }
        };
        let public = kind == EndpointType::Net
            && match ip {
                Some(ip) => is_public_ip(ip),
                None => name_aggr != "pvt",
            };
        Some(Endpoint {
            id,
            group,
            kind,
            namespace: crate::flow::registry::namespace_hash(namespace),
            ip,
            port: None,
            public,
        })
    }

    /// The workload's group: pods without their replica-set hash, everything else itself.
    fn group_of(
        &mut self,
        kind: EndpointType,
        namespace: &str,
        name_aggr: &str,
        id: WorkloadId,
    ) -> WorkloadId {
        match group_name(name_aggr) {
            Some(stripped) if kind == EndpointType::Wep => {
                canonical_key(&mut self.key_buf, kind, namespace, stripped, None);
                WorkloadId::of_key(&self.key_buf)
            }
            _ => id,
        }
    }

    fn policies(&mut self, rec: &mut FlowRecord, p: &PolicySummary<'_>) {
        rec.num_enforced_policies = p.enforced.min(u16::MAX as usize) as u16;
        rec.num_pending_policies = p
            .pending
            .map(|n| n.min(u16::MAX as usize) as u16)
            .unwrap_or(0);
        // The last enforced hit is the one that decided the verdict; the last pending hit is what
        // would decide it with staged policies enforced. Both are interned only when present.
        if let Some(last) = &p.last_enforced {
            let h = self.hit_summary(last);
            rec.deciding_policy = h.id;
            rec.deciding_kind = h.kind;
            rec.deciding_action = h.action;
            rec.deciding_rule = h.rule;
        }
        if let Some(last) = &p.last_pending {
            let h = self.hit_summary(last);
            rec.pending_policy = h.id;
            rec.pending_kind = h.kind;
            rec.pending_action = h.action;
            rec.pending_rule = h.rule;
        }
    }

    /// The interned `tier|ns/name` of a hit with its kind, action and rule; unparseable strings are
    /// kept as written (action unknown) so an operator still sees them. Felix strings are cached.
    fn hit_summary(&mut self, entry: &PolicyEntry<'_>) -> HitSummary {
        if let PolicyEntry::Str(raw) = entry {
            if let Some(&h) = self.policy_ids.get(*raw) {
                return h;
            }
        }
        let h = match entry.parse() {
            Ok(hit) => {
                let mut key = std::mem::take(&mut self.key_buf);
                key.clear();
                key.push_str(hit.tier);
                key.push('|');
                if !hit.namespace.is_empty() {
                    key.push_str(hit.namespace);
                    key.push('/');
                }
                key.push_str(hit.name);
                let id = self.intern(&key);
                self.key_buf = key;
                HitSummary {
                    id,
                    kind: hit.kind,
                    action: hit.action,
                    rule: hit.rule,
                }
            }
            Err(_) => HitSummary {
                id: match entry {
                    PolicyEntry::Str(s) => self.intern(s),
                    PolicyEntry::Hit(_) => 0,
                },
                kind: PolicyKind::Unknown,
                action: Action::Unknown,
                rule: crate::flow::policy::RULE_UNKNOWN,
            },
        };
        if let PolicyEntry::Str(raw) = entry {
            if self.policy_ids.len() >= CACHE_CAP {
                self.policy_ids.clear();
            }
            self.policy_ids.insert(Box::from(*raw), h);
        }
        h
    }
}

/// What a record keeps of one policy hit.
#[derive(Debug, Clone, Copy)]
struct HitSummary {
    id: u32,
    kind: PolicyKind,
    action: Action,
    rule: i32,
}

/// Parses `scratch` (a copy of `line` that simd-json may rewrite) into a [`RawFlow`].
///
/// Only a JSON object is a record: serde's derived struct visitor would also take an array, filling
/// the fields by position. A type error is rare, so only then is the original line parsed again to
/// name the field in the reason (simd-json's own message says neither field nor position).
/// Rejects what is not a flat-enough JSON object before simd-json sees it.
fn check_shape(line: &[u8]) -> Result<(), DecodeError> {
    if line.first() != Some(&b'{') {
        return Err(DecodeError::Json("not a JSON object".into()));
    }
    if nested_deeper_than(line, MAX_NESTING) {
        return Err(DecodeError::Json(format!(
            "nested deeper than {MAX_NESTING} levels"
        )));
    }
    Ok(())
}

/// Parses every field of a line through serde (the full view: `with_raw`, dead letters, tests).
fn parse_raw<'a>(
    line: &[u8],
    scratch: &'a mut [u8],
    buffers: &mut simd_json::Buffers,
) -> Result<RawFlow<'a>, DecodeError> {
    check_shape(line)?;
    let mut de = simd_json::Deserializer::from_slice_with_buffers(scratch, buffers)
        .map_err(|e| DecodeError::Json(e.to_string()))?;
    RawFlow::deserialize(&mut de).map_err(|e| explain_error(line, &e))
}

/// A decode error naming the field when one is to blame: the (rare) failing line is parsed again
/// with path tracking, so good lines pay nothing for it.
fn explain_error(line: &[u8], e: &simd_json::Error) -> DecodeError {
    let mut again = line.to_vec();
    let path = simd_json::Deserializer::from_slice(&mut again)
        .ok()
        .and_then(|mut de| serde_path_to_error::deserialize::<_, RawFlow>(&mut de).err())
        .map(|e| e.path().to_string())
        .filter(|p| !p.is_empty() && p != ".");
    match path {
        Some(path) => DecodeError::Json(format!("{path}: {}", describe(e))),
        None => DecodeError::Json(describe(e)),
    }
}

/// Deepest nesting of arrays and objects accepted. Records nest about 5 levels; serde skips unknown
/// values recursively, so a line of 100 000 `[` would otherwise overflow the thread's stack.
pub const MAX_NESTING: usize = 128;

/// Whether `line` nests arrays/objects deeper than `max` (brackets inside strings do not count).
fn nested_deeper_than(line: &[u8], max: usize) -> bool {
    // Fast path: with at most `max` opening brackets the depth cannot exceed `max`.
    if memchr::memchr2_iter(b'[', b'{', line).nth(max).is_none() {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in line {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// simd-json's serde errors carry "at character 0" for type errors, which misleads; drop it.
fn describe(e: &simd_json::Error) -> String {
    let s = e.to_string();
    match s.strip_suffix(" at character 0") {
        Some(head) => head.to_string(),
        None => s,
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

/// Parses an address; dotted quads take a short path (same result as the standard parser, which
/// handles everything else).
fn parse_ip(s: Option<&str>) -> Option<IpAddr> {
    let s = s?;
    if let Some(v4) = parse_ipv4_plain(s.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    s.parse().ok()
}

/// `a.b.c.d` with 1-3 digit octets, no leading zeros, each at most 255; `None` for anything else.
fn parse_ipv4_plain(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = b.split(|&c| c == b'.');
    for o in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return None;
        }
        let mut v = 0u32;
        for &c in part {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        *o = u8::try_from(v).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
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

/// Record times from `start_time`, `end_time` or the shipper's `@timestamp` (ms).
fn event_times(
    start: Option<i64>,
    end: Option<i64>,
    timestamp_ms: Option<i64>,
) -> Result<(i64, i64), DecodeError> {
    match (start, end, timestamp_ms) {
        (Some(s), Some(e), _) => Ok((s, e.max(s))),
        (Some(s), None, _) => Ok((s, s)),
        (None, Some(e), _) => Ok((e, e)),
        (None, None, Some(ms)) => Ok((ms / 1000, ms / 1000)),
        (None, None, None) => Err(DecodeError::NoTime),
    }
}

fn tcp_stats(t: &[Option<u64>; 11]) -> TcpStats {
    TcpStats {
        mean_send_congestion_window: sat32(t[0]),
        min_send_congestion_window: sat32(t[1]),
        mean_smooth_rtt: sat32(t[2]),
        max_smooth_rtt: sat32(t[3]),
        mean_min_rtt: sat32(t[4]),
        max_min_rtt: sat32(t[5]),
        mean_mss: sat32(t[6]),
        min_mss: sat32(t[7]),
        total_retransmissions: sat32(t[8]),
        lost_packets: sat32(t[9]),
        unrecovered_to: sat32(t[10]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_ignores_brackets_in_strings() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(nested_deeper_than(deep.as_bytes(), MAX_NESTING));
        let quoted = format!("{{\"a\":\"{}\"}}", "[".repeat(200));
        assert!(!nested_deeper_than(quoted.as_bytes(), MAX_NESTING));
        let escaped = format!("{{\"a\":\"\\\"{}\"}}", "{".repeat(200));
        assert!(!nested_deeper_than(escaped.as_bytes(), MAX_NESTING));
        let wide = format!("{{\"a\":[{}]}}", vec!["[]"; 500].join(","));
        assert!(!nested_deeper_than(wide.as_bytes(), MAX_NESTING));
    }

    #[test]
    fn whitespace_around_a_line_changes_neither_its_record_nor_its_length_limit() {
        let bare = r#"{"start_time":10,"end_time":20,"source_name_aggr":"pad-a-*","source_namespace":"pad","source_type":"wep","dest_name_aggr":"pad-b-*","dest_namespace":"pad","dest_type":"wep","dest_port":80,"proto":"tcp","action":"allow","reporter":"src","bytes_out":7}"#;
        let want = Decoder::default()
            .decode(bare.as_bytes())
            .expect("bare line");
        // The scanner's path, and the simd-json path (an escape the scanner gives up on).
        let escaped = bare.replace("\"pad-b-*\"", "\"pad-\\u0062-*\"");
        for padded in [format!(" \t{bare}\r "), format!("\r\n{escaped}  ")] {
            let got = Decoder::default().decode(padded.as_bytes());
            assert_eq!(got.as_ref(), Ok(&want), "{padded:?}");
        }
        // The limit counts the line without its padding, and reports that length.
        let limit = bare.len();
        let padded = format!("   {bare}   ");
        assert_eq!(Decoder::new(limit).decode(padded.as_bytes()), Ok(want));
        assert_eq!(
            Decoder::new(limit - 1).decode(padded.as_bytes()),
            Err(DecodeError::TooLong(limit, limit - 1))
        );
        for blank in ["", " ", " \t\r\n "] {
            assert_eq!(
                Decoder::default().decode(blank.as_bytes()),
                Err(DecodeError::Empty),
                "{blank:?}"
            );
        }
    }

    #[test]
    fn decoding_a_batch_gives_each_line_the_result_it_gets_alone() {
        let line = |src: &str, dst: &str, extra: &str| {
            format!(
                r#"{{"start_time":10,"end_time":20,"source_name_aggr":"{src}-*","source_namespace":"batch","source_type":"wep","dest_name_aggr":"{dst}-*","dest_namespace":"batch","dest_type":"wep","dest_port":80,"proto":"tcp","action":"allow","reporter":"src","bytes_out":7{extra}}}"#
            )
        };
        let lines: Vec<Result<String, DecodeError>> = vec![
            Ok(line("each-a", "each-b", "")),
            Ok(line("each-a", "each-b", r#","bytes_in":3"#)),
            Ok("{not json".into()),
            Err(DecodeError::TooLong(9, 4)),
            Ok("   ".into()),
            // A field the scanner gives up on (an escape) takes the simd-json path.
            Ok(line("each-c", "each-b", r#","process_name":"a\u0041""#)),
            Ok(line("each-b", "each-d", r#","start_time":"x""#)),
            Ok(line(
                "each-d",
                "each-a",
                r#","source_labels":{"labels":["app=d"]}"#,
            )),
            Ok(line("each-a", "each-d", "")),
        ];
        let items = || {
            lines
                .iter()
                .map(|l| l.as_ref().map(|s| s.as_bytes()).map_err(Clone::clone))
        };
        let mut alone = Decoder::default();
        let want: Vec<_> = items().map(|l| l.and_then(|l| alone.decode(l))).collect();
        assert!(want[0].is_ok() && want[2].is_err() && want[8].is_ok());
        let mut batched = Decoder::default();
        let mut got = Vec::new();
        batched.decode_each(items(), |r| got.push(r));
        assert_eq!(got, want);
        // A one-line batch and an empty one.
        let mut one = Vec::new();
        Decoder::default().decode_each(items().take(1), |r| one.push(r));
        assert_eq!(one, want[..1]);
        Decoder::default().decode_each(items().take(0), |_| panic!("no line, no result"));
    }

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

    #[test]
    fn a_workload_whose_name_was_forgotten_registers_again_with_its_next_record() {
        let line = br#"{"start_time":1,"end_time":2,"source_name_aggr":"churn-test-5f6d7c8b9-*","source_namespace":"regen","source_type":"wep","source_labels":{"labels":["app=churn"]},"dest_name_aggr":"pub","dest_ip":"1.2.3.4","dest_type":"net","dest_port":443,"proto":"tcp","action":"allow","reporter":"src"}"#;
        let mut dec = Decoder::default();
        let rec = dec.decode(line).expect("decodes");
        let reg = WorkloadRegistry::global();
        assert!(reg.get(rec.src.id).is_some());
        // Idle passes in which nothing registers it (every other name is kept): the one that ends
        // its generation and two more.
        for _ in 0..3 {
            reg.forget_idle(|id| id != rec.src.id);
        }
        assert!(reg.get(rec.src.id).is_none(), "forgotten");
        let again = dec.decode(line).expect("decodes");
        assert_eq!(again, rec);
        assert_eq!(reg.key(rec.src.id), "regen/churn-test-5f6d7c8b9-*");
    }

    #[test]
    fn a_thread_new_to_a_workload_still_fills_in_labels_the_registry_lacks() {
        let line = |labels: &str| {
            format!(
                r#"{{"start_time":100,"end_time":115,"source_name_aggr":"labels-test-7c9d8f6b5-*","source_namespace":"touch","source_type":"wep","source_labels":{labels},"dest_type":"net","dest_name_aggr":"pub","dest_ip":"9.9.9.9"}}"#
            )
        };
        let reg = WorkloadRegistry::global();
        // One thread registers the workload from a record without labels...
        let bare = Decoder::default()
            .decode(line("null").as_bytes())
            .expect("decodes");
        assert!(reg.get(bare.src.id).expect("registered").labels.is_empty());
        // ...another, which never saw it, gets a record with labels: the registry learns them.
        let mut other = Decoder::default();
        let labelled = other
            .decode(line(r#"{"labels":["app=x"]}"#).as_bytes())
            .expect("decodes");
        assert_eq!(labelled, bare);
        assert_eq!(reg.get(bare.src.id).expect("registered").labels, ["app=x"]);
        // A third, new to it as well, takes it from the registry, same record.
        let again = Decoder::default()
            .decode(line("null").as_bytes())
            .expect("decodes");
        assert_eq!(again, bare);
    }

    /// Decodes `line` through the hot path (after a first call registered its workloads) and
    /// through the serde view, and checks they agree, record or error.
    fn assert_paths_agree(line: &[u8]) {
        let mut hot = Decoder::default();
        let first = hot.decode(line);
        let again = hot.decode(line);
        let mut full = Decoder::default();
        let reference = full
            .with_raw(line, |raw| Decoder::default().to_record(raw))
            .and_then(|r| r);
        assert_eq!(
            first,
            reference,
            "first decode of {}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(
            again,
            reference,
            "hot decode of {}",
            String::from_utf8_lossy(line)
        );
    }

    #[test]
    fn hot_path_matches_the_serde_view_on_simulated_lines() {
        let mut sim = crate::simulate::Simulator::new(crate::simulate::SimConfig {
            duration_s: 3600,
            attacks: crate::simulate::AttackSpec::default_mix(),
            ..Default::default()
        });
        let mut buf = Vec::new();
        let mut n = 0;
        while sim.next_window(&mut buf, None) && n < 3000 {
            for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert_paths_agree(line);
                n += 1;
            }
            buf.clear();
        }
        assert!(n > 100);
    }

    #[test]
    fn hot_path_matches_the_serde_view_on_odd_lines() {
        let base = r#""start_time":100,"end_time":115,"source_name_aggr":"a-abc12-*","source_namespace":"ns","source_type":"wep","dest_type":"net","dest_name_aggr":"pub""#;
        let cases = [
            format!("{{{base}}}"),
            format!("{{{base},\"dest_ip\":\"8.8.8.8\",\"source_ip\":\"010.1.1.1\"}}"),
            format!("{{{base},\"dest_ip\":\"::1\",\"source_ip\":\"256.1.1.1\"}}"),
            format!("{{{base},\"dest_domains\":[\"evil.example\",\"b\"]}}"),
            format!("{{{base},\"dest_domains\":[1]}}"),
            format!("{{{base},\"bytes_in\":1.5}}"),
            format!("{{{base},\"bytes_in\":-1}}"),
            format!("{{{base},\"dest_port\":70000}}"),
            format!("{{{base},\"dest_port\":null,\"proto\":null}}"),
            format!("{{{base},\"start_time\":5}}"),
            format!("{{{base},\"source_labels\":{{\"labels\":[\"a=b\"],\"x\":3}}}}"),
            format!("{{{base},\"source_labels\":{{\"labels\":[1]}}}}"),
            format!("{{{base},\"source_labels\":[\"a=b\"],\"dest_labels\":null}}"),
            format!("{{{base},\"source_labels\":5}}"),
            format!("{{{base},\"policies\":{{\"all_policies\":[\"0|t|t.p|allow\"],\"pending_policies\":[]}}}}"),
            format!("{{{base},\"policies\":{{\"enforced_policies\":[\"junk\"],\"all_policies\":[\"0|t|t.p|allow|0\"]}}}}"),
            format!("{{{base},\"policies\":{{\"enforced_policies\":[{{\"name\":\"p\",\"tier\":\"t\",\"kind\":2}}]}}}}"),
            format!("{{{base},\"policies\":{{\"enforced_policies\":[\"0|t|t.p|allow\"],\"enforced_policies\":[]}}}}"),
            format!("{{{base},\"policies\":null,\"host\":\"n1\",\"@timestamp\":1}}"),
            format!("{{{base},\"host\":7}}"),
            format!("{{{base},\"tcp_mean_mss\":1400,\"tcp_lost_packets\":2,\"tcp_unknown\":\"x\"}}"),
            format!("{{{base},\"tcp_mean_mss\":1400,\"tcp_mean_mss\":1}}"),
            format!("{{{base},\"nat_outgoing_ports\":[1,2,3],\"original_source_ips\":[\"1.2.3.4\"]}}"),
            format!("{{{base},\"nat_outgoing_ports\":[\"1\"]}}"),
            format!("{{{base},\"dest_service_name\":\"svc\",\"dest_service_namespace\":\"ns\",\"dest_service_port\":\"http\",\"dest_service_port_num\":80}}"),
            format!("{{{base},\"process_name\":\"curl\",\"process_args\":[\"-v\"],\"num_process_names\":1}}"),
            format!("{{{base},\"end_time\":1}}"),
            format!("{{{base},\"start_time\":100}}"),
            "{\"@timestamp\":1700000000000}".to_string(),
            "{\"proto\":\"tcp\"}".to_string(),
            "[1,2]".to_string(),
            "{\"start_time\":1".to_string(),
            r#"{"Key":{"source_name":"c-*","source_namespace":"app","source_type":1,"dest_name":"pub","dest_type":4,"dest_port":443,"proto":"tcp","reporter":1,"action":2},"start_time":1750000000,"end_time":1750000300,"bytes_out":960}"#.to_string(),
        ];
        for c in &cases {
            assert_paths_agree(c.as_bytes());
        }
    }

    #[test]
    fn plain_ipv4_parsing_agrees_with_std() {
        for s in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            "a.b.c.d",
            "1.2.3.4 ",
            "",
            "::1",
            "1.2.3.04",
            "192.168.100.113",
        ] {
            assert_eq!(parse_ip(Some(s)), s.parse().ok(), "{s}");
        }
    }
}
