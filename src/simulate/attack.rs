//! Attack scenarios: their names, the `--attack NAME[:start=..,duration=..,intensity=..,target=..]`
//! syntax, the default mix, and the records each scenario adds to a flush window.
//!
//! Every scenario is a small state machine ([`ActiveAttack`]) with its own random stream, so adding or
//! removing one never changes the benign traffic or the other attacks. Records are rendered as Felix
//! would write them: denied probes at aggregation level 1 (IPs and pod names kept, so ports and hosts
//! are visible), allowed flows at level 2, a single record when the peer is outside the cluster.

use crate::flow::{Action, EndpointType, Reporter};
use crate::simulate::render::{Counters, EndView, RecordSpec, ServiceView};
use crate::simulate::rng::SimRng;
use crate::simulate::topology::{Cluster, PolicyRef, Workload};
use crate::simulate::WindowWriter;
use std::str::FromStr;
use thiserror::Error;

/// The attack scenarios the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttackKind {
    /// Many destination ports on one host within minutes, from a compromised pod.
    PortScan,
    /// The same, a few ports per window for hours.
    SlowPortScan,
    /// Many destination hosts on one port.
    IpSweep,
    /// Connections to a namespace/service the attacker never talked to.
    LateralMovement,
    /// A burst of gigabytes to a new public address.
    Exfiltration,
    /// Low-and-slow upload to a new public address over many hours.
    SlowExfiltration,
    /// Periodic small connections to one external host, with jitter.
    C2Beacon,
    /// Flood of connections from many public sources into one service.
    Ddos,
    /// A pod probing services that policies block: a surge of denied flows.
    DenySurge,
    /// A miner reaching new public pools on stratum ports.
    CryptoMiner,
    /// Policy change: a broad allow in the platform tier opens the victim's ingress, so a flow the
    /// namespace's default-deny used to stop (the target's) is now allowed. Not in the default mix.
    PolicyLoosening,
    /// Policy change: a staged default-deny egress policy in the target's namespace that would cut
    /// its external and cross-namespace traffic (recorded in `pending_policies`, nothing enforced).
    /// Not in the default mix.
    StagedDefaultDeny,
}

impl AttackKind {
    /// Every scenario.
    pub const ALL: [AttackKind; 10] = [
        AttackKind::PortScan,
        AttackKind::SlowPortScan,
        AttackKind::IpSweep,
        AttackKind::LateralMovement,
        AttackKind::Exfiltration,
        AttackKind::SlowExfiltration,
        AttackKind::C2Beacon,
        AttackKind::Ddos,
        AttackKind::DenySurge,
        AttackKind::CryptoMiner,
    ];

    /// Policy-change scenarios: they change benign edges' policies instead of adding traffic.
    pub const POLICY_CHANGES: [AttackKind; 2] =
        [AttackKind::PolicyLoosening, AttackKind::StagedDefaultDeny];

    /// Whether the scenario changes policies rather than adding traffic.
    pub fn is_policy_change(self) -> bool {
        Self::POLICY_CHANGES.contains(&self)
    }

    /// The name used on the command line, in labels and in episodes.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::PortScan => "port-scan",
            AttackKind::SlowPortScan => "slow-port-scan",
            AttackKind::IpSweep => "ip-sweep",
            AttackKind::LateralMovement => "lateral-movement",
            AttackKind::Exfiltration => "exfiltration",
            AttackKind::SlowExfiltration => "slow-exfiltration",
            AttackKind::C2Beacon => "c2-beacon",
            AttackKind::Ddos => "ddos",
            AttackKind::DenySurge => "deny-surge",
            AttackKind::CryptoMiner => "crypto-miner",
            AttackKind::PolicyLoosening => "policy-loosening",
            AttackKind::StagedDefaultDeny => "staged-default-deny",
        }
    }

    /// Default length in seconds.
    pub fn default_duration(self) -> u64 {
        match self {
            AttackKind::PortScan => 10 * 60,
            AttackKind::SlowPortScan => 6 * 3600,
            AttackKind::IpSweep => 20 * 60,
            AttackKind::LateralMovement => 30 * 60,
            AttackKind::Exfiltration => 20 * 60,
            AttackKind::SlowExfiltration => 12 * 3600,
            AttackKind::C2Beacon => 12 * 3600,
            AttackKind::Ddos => 30 * 60,
            AttackKind::DenySurge => 20 * 60,
            AttackKind::CryptoMiner => 8 * 3600,
            // Until the end of the run (see `resolve_times`).
            AttackKind::PolicyLoosening | AttackKind::StagedDefaultDeny => u64::MAX,
        }
    }

    /// Default compromised workload (the DDoS victim for `ddos`).
    pub fn default_target(self) -> &'static str {
        match self {
            AttackKind::PortScan => "shop/ad",
            AttackKind::SlowPortScan => "shop/email",
            AttackKind::IpSweep => "shop/currency",
            AttackKind::LateralMovement => "shop/productcatalog",
            AttackKind::Exfiltration => "shop/payment",
            AttackKind::SlowExfiltration => "shop/cart",
            AttackKind::C2Beacon => "shop/checkout",
            AttackKind::Ddos => "shop/frontend",
            AttackKind::DenySurge => "shop/shipping",
            AttackKind::CryptoMiner => "shop/recommendation",
            AttackKind::PolicyLoosening => "shop/loadgenerator",
            AttackKind::StagedDefaultDeny => "shop/frontend",
        }
    }

    /// Default victim where the scenario has one inside the cluster.
    pub fn default_victim(self) -> Option<&'static str> {
        match self {
            AttackKind::PortScan => Some("finance/postgres"),
            AttackKind::SlowPortScan => Some("shop/payment"),
            AttackKind::LateralMovement => Some("finance/ledger"),
            AttackKind::PolicyLoosening => Some("shop/payment"),
            _ => None,
        }
    }

    /// Where the default mix starts it, as a fraction of the simulated duration (after a baseline).
    fn default_start_fraction(self) -> f64 {
        match self {
            AttackKind::C2Beacon => 0.52,
            AttackKind::PortScan => 0.54,
            AttackKind::SlowPortScan => 0.56,
            AttackKind::SlowExfiltration => 0.58,
            AttackKind::IpSweep => 0.62,
            AttackKind::LateralMovement => 0.66,
            AttackKind::Exfiltration => 0.70,
            AttackKind::DenySurge => 0.75,
            AttackKind::Ddos => 0.80,
            AttackKind::CryptoMiner => 0.84,
            AttackKind::PolicyLoosening | AttackKind::StagedDefaultDeny => 0.5,
        }
    }
}

impl FromStr for AttackKind {
    type Err = AttackParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        AttackKind::ALL
            .into_iter()
            .chain(AttackKind::POLICY_CHANGES)
            .find(|k| k.name() == norm || (norm == "c2" && *k == AttackKind::C2Beacon))
            .ok_or_else(|| AttackParseError::UnknownScenario(s.to_string()))
    }
}

/// Why an `--attack` argument did not parse.
#[derive(Debug, Error, PartialEq)]
pub enum AttackParseError {
    /// Not a scenario name.
    #[error("unknown attack scenario {0:?}; known: port-scan, slow-port-scan, ip-sweep, lateral-movement, exfiltration, slow-exfiltration, c2-beacon, ddos, deny-surge, crypto-miner, policy-loosening, staged-default-deny")]
    UnknownScenario(String),
    /// A `key=value` with an unknown key.
    #[error("unknown attack parameter {0:?}; use start, duration, intensity, target or victim")]
    UnknownParam(String),
    /// A value that does not parse.
    #[error("bad value for attack parameter {0}: {1}")]
    BadValue(&'static str, String),
}

/// One requested attack: scenario, timing, strength and target.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackSpec {
    /// Scenario.
    pub kind: AttackKind,
    /// Start, seconds after the simulation start (None: where the default mix puts it).
    pub start_s: Option<u64>,
    /// Length in seconds (None: the scenario's default, clipped to the simulation).
    pub duration_s: Option<u64>,
    /// Strength multiplier (1.0 = the scenario's nominal rate).
    pub intensity: f64,
    /// Compromised workload `ns/name` (the victim service for `ddos`).
    pub target: Option<String>,
    /// Victim workload `ns/name` for scans and lateral movement.
    pub victim: Option<String>,
}

impl AttackSpec {
    /// A scenario with its defaults.
    pub fn new(kind: AttackKind) -> Self {
        AttackSpec {
            kind,
            start_s: None,
            duration_s: None,
            intensity: 1.0,
            target: None,
            victim: None,
        }
    }

    /// The default mix: every scenario once, in the second half of the run.
    pub fn default_mix() -> Vec<AttackSpec> {
        AttackKind::ALL.into_iter().map(AttackSpec::new).collect()
    }

    /// Start and end offsets (seconds from the simulation start) within a run of `total` seconds.
    pub fn resolve_times(&self, total: u64) -> (u64, u64) {
        let start = self
            .start_s
            .unwrap_or((total as f64 * self.kind.default_start_fraction()) as u64)
            .min(total);
        let default_len = if self.kind.is_policy_change() {
            total - start
        } else {
            self.kind.default_duration().min((total / 5).max(60))
        };
        let len = self.duration_s.unwrap_or(default_len);
        (start, (start + len).min(total))
    }
}

fn parse_duration(key: &'static str, v: &str) -> Result<u64, AttackParseError> {
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(secs);
    }
    humantime::parse_duration(v)
        .map(|d| d.as_secs())
        .map_err(|e| AttackParseError::BadValue(key, format!("{v:?}: {e}")))
}

impl FromStr for AttackSpec {
    type Err = AttackParseError;
    /// `NAME[:start=6h,duration=30m,intensity=1.0,target=shop/cart,victim=finance/postgres]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, params) = match s.split_once(':') {
            Some((n, p)) => (n, p),
            None => (s, ""),
        };
        let mut spec = AttackSpec::new(name.parse()?);
        for kv in params.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| AttackParseError::UnknownParam(kv.to_string()))?;
            let v = v.trim();
            match k.trim() {
                "start" => spec.start_s = Some(parse_duration("start", v)?),
                "duration" => spec.duration_s = Some(parse_duration("duration", v)?),
                "intensity" => {
                    let x: f64 = v
                        .parse()
                        .map_err(|_| AttackParseError::BadValue("intensity", v.to_string()))?;
                    if !(x.is_finite() && x > 0.0 && x <= 1000.0) {
                        return Err(AttackParseError::BadValue("intensity", v.to_string()));
                    }
                    spec.intensity = x;
                }
                "target" => spec.target = Some(v.to_string()),
                "victim" => spec.victim = Some(v.to_string()),
                other => return Err(AttackParseError::UnknownParam(other.to_string())),
            }
        }
        Ok(spec)
    }
}

/// An external host an attack talks to.
#[derive(Debug, Clone)]
struct Remote {
    public: bool,
    ip: String,
    domains: Vec<String>,
    port: u16,
    /// Blocked by the security tier's threat feed.
    blocked: bool,
}

/// A resolved attack and its running state.
#[derive(Debug, Clone)]
pub struct ActiveAttack {
    /// Scenario.
    pub kind: AttackKind,
    /// Epoch start.
    pub start: i64,
    /// Epoch end.
    pub end: i64,
    intensity: f64,
    /// Compromised workload (or DDoS victim).
    pub target: usize,
    /// In-cluster victim, when there is one.
    pub victim: Option<usize>,
    rng: SimRng,
    next_port: u32,
    next_beacon: f64,
    remotes: Vec<Remote>,
    probe_targets: Vec<usize>,
}

/// Why an attack cannot be placed in this cluster.
#[derive(Debug, Error)]
pub enum AttackSetupError {
    /// The target or victim names no workload.
    #[error(
        "attack {0}: no workload {1:?} in the simulated cluster (use ns/name, e.g. shop/cart)"
    )]
    NoSuchWorkload(&'static str, String),
}

fn ip(v: u32) -> String {
    format!(
        "{}.{}.{}.{}",
        v >> 24,
        (v >> 16) & 255,
        (v >> 8) & 255,
        v & 255
    )
}

impl ActiveAttack {
    /// Places `spec` in `cluster` for a run starting at `sim_start` lasting `total` seconds.
    pub fn new(
        spec: &AttackSpec,
        cluster: &Cluster,
        sim_start: i64,
        total: u64,
        seed: u64,
        stream: u64,
    ) -> Result<Self, AttackSetupError> {
        let kind = spec.kind;
        let find = |s: &str| {
            cluster
                .find(s)
                .ok_or_else(|| AttackSetupError::NoSuchWorkload(kind.name(), s.to_string()))
        };
        let target = find(spec.target.as_deref().unwrap_or(kind.default_target()))?;
        let victim = match spec.victim.as_deref().or(kind.default_victim()) {
            Some(v) => Some(find(v)?),
            None => None,
        };
        let (s, e) = spec.resolve_times(total);
        let mut rng = SimRng::fork(seed, 1000 + stream);
        let remote = |ip: &str, domain: &str, port: u16, blocked: bool| Remote {
            public: true,
            ip: ip.into(),
            domains: if domain.is_empty() {
                vec![]
            } else {
                vec![domain.into()]
            },
            port,
            blocked,
        };
        let remotes = match kind {
            AttackKind::Exfiltration => {
                vec![remote("45.137.21.9", "files.transfer-drop.net", 443, false)]
            }
            AttackKind::SlowExfiltration => {
                vec![remote("91.215.85.142", "api.telemetry-sync.io", 443, false)]
            }
            AttackKind::C2Beacon => vec![remote(
                "185.220.101.47",
                "cdn-update.edge-cache.top",
                443,
                false,
            )],
            AttackKind::CryptoMiner => vec![
                remote("51.15.69.136", "pool.supportxmr.com", 3333, false),
                remote("94.130.164.163", "xmr.2miners.com", 4444, true),
                remote("178.128.242.134", "gulf.moneroocean.stream", 10128, false),
                remote("142.44.242.100", "pool.minexmr.com", 4444, true),
                remote("45.76.65.21", "xmr-eu1.nanopool.org", 14444, false),
                remote("139.99.68.128", "", 3333, false),
            ],
            AttackKind::Ddos => (0..4000)
                .map(|_| {
                    // Public sources outside 10/8, 172.16/12, 192.168/16 and 127/8.
                    let a = [23u32, 31, 45, 61, 77, 89, 103, 117, 151, 186, 201, 212]
                        [rng.below(12) as usize];
                    Remote {
                        public: true,
                        ip: ip((a << 24) | rng.below(1 << 24) as u32),
                        domains: vec![],
                        port: 0,
                        blocked: true,
                    }
                })
                .collect(),
            _ => vec![],
        };
        // Deny surge: services in default-deny namespaces the attacker never calls.
        let probe_targets = if kind == AttackKind::DenySurge {
            let called: Vec<usize> = cluster
                .edges
                .iter()
                .filter_map(|e| match (e.src, e.dst) {
                    (
                        crate::simulate::topology::Peer::Pod(s),
                        crate::simulate::topology::Peer::Pod(d),
                    ) if s == target => Some(d),
                    _ => None,
                })
                .collect();
            cluster
                .workloads
                .iter()
                .enumerate()
                .filter(|(i, w)| {
                    *i != target
                        && w.port != 0
                        && cluster.is_managed(&w.namespace)
                        && !called.contains(i)
                })
                .map(|(i, _)| i)
                .take(8)
                .collect()
        } else {
            vec![]
        };
        Ok(ActiveAttack {
            kind,
            start: sim_start + s as i64,
            end: sim_start + e as i64,
            intensity: spec.intensity,
            target,
            victim,
            rng,
            next_port: 1,
            next_beacon: (sim_start + s as i64) as f64,
            remotes,
            probe_targets,
        })
    }

    /// The episode's attacker and victim keys (with the workloads' hashes at `at`).
    pub fn parties(&self, cluster: &Cluster) -> (String, String) {
        let t = cluster.workloads[self.target].key();
        let v = self.victim.map(|v| cluster.workloads[v].key());
        match self.kind {
            AttackKind::Ddos => ("pub".into(), t),
            AttackKind::IpSweep => (t, "pvt".into()),
            AttackKind::DenySurge => (
                t,
                self.probe_targets
                    .first()
                    .map(|&p| cluster.workloads[p].key())
                    .unwrap_or_else(|| "pvt".into()),
            ),
            AttackKind::Exfiltration
            | AttackKind::SlowExfiltration
            | AttackKind::C2Beacon
            | AttackKind::CryptoMiner
            | AttackKind::StagedDefaultDeny => (t, "pub".into()),
            _ => (t, v.unwrap_or_else(|| "pvt".into())),
        }
    }

    /// Adds this attack's records for the window `[t0, t1)`.
    pub fn emit(&mut self, cluster: &Cluster, t0: i64, t1: i64, w: &mut WindowWriter<'_>) {
        let from = t0.max(self.start);
        let to = t1.min(self.end);
        if to <= from {
            return;
        }
        let secs = (to - from) as f64;
        let intensity = self.intensity;
        let name: &'static str = self.kind.name();
        let a = &cluster.workloads[self.target];
        let a_pod = &a.pods[0];
        match self.kind {
            // They change benign edges' policies (`Simulator::apply_policy_changes`), adding no traffic.
            AttackKind::PolicyLoosening | AttackKind::StagedDefaultDeny => {}
            AttackKind::PortScan | AttackKind::SlowPortScan => {
                let per_sec = if self.kind == AttackKind::PortScan {
                    4.0
                } else {
                    0.05
                };
                let n = self.rng.poisson(per_sec * intensity * secs);
                let v = &cluster.workloads[self.victim.unwrap_or(self.target)];
                for _ in 0..n {
                    let port = self.next_port as u16;
                    self.next_port = self.next_port % 65535 + 1;
                    let vp = self.rng.below(v.pods.len() as u64) as usize;
                    probe(
                        w,
                        cluster,
                        self.target,
                        0,
                        self.victim.unwrap_or(self.target),
                        vp,
                        port,
                        1,
                        name,
                    );
                }
            }
            AttackKind::IpSweep => {
                let n = self.rng.poisson(2.0 * intensity * secs);
                for _ in 0..n {
                    if self.rng.chance(0.7) {
                        // Hosts of the node/VPC network: the security tier blocks private egress.
                        let host = ip((10 << 24) | self.rng.below(1 << 16) as u32);
                        let ext = Remote {
                            public: false,
                            ip: host,
                            domains: vec![],
                            port: 22,
                            blocked: true,
                        };
                        egress_denied(
                            w,
                            cluster,
                            a,
                            0,
                            &ext,
                            22,
                            1,
                            PolicyRef::security_deny("restrict-private-egress", 1),
                            "sh",
                            name,
                        );
                    } else {
                        let vw = self.rng.below(cluster.workloads.len() as u64) as usize;
                        if vw == self.target || cluster.workloads[vw].pods.is_empty() {
                            continue;
                        }
                        let vp = self.rng.below(cluster.workloads[vw].pods.len() as u64) as usize;
                        probe(w, cluster, self.target, 0, vw, vp, 22, 1, name);
                    }
                }
            }
            AttackKind::LateralMovement => {
                let mut victims = vec![self.victim.unwrap_or(self.target)];
                victims.extend(
                    ["monitoring/prometheus", "kube-system/metrics-server"]
                        .iter()
                        .filter_map(|s| cluster.find(s)),
                );
                for &vw in &victims {
                    let n = self.rng.poisson(0.1 * intensity * secs);
                    if n == 0 || vw == self.target {
                        continue;
                    }
                    let v = &cluster.workloads[vw];
                    let req = n * (2_000 + self.rng.below(3_000));
                    let resp = n * (20_000 + self.rng.below(80_000));
                    let dst_policy = if cluster.is_managed(&v.namespace) {
                        // A too-broad rule (`from all namespaces`) lets the attacker in.
                        PolicyRef::np_allow(&v.namespace, &format!("allow-{}", v.name), 3)
                    } else {
                        PolicyRef::profile(&v.namespace)
                    };
                    allowed_pair(
                        w,
                        cluster,
                        self.target,
                        vw,
                        v.port,
                        n,
                        req,
                        resp,
                        dst_policy,
                        name,
                    );
                }
            }
            AttackKind::Exfiltration | AttackKind::SlowExfiltration => {
                let (total, conn_every) = if self.kind == AttackKind::Exfiltration {
                    (3.0e9, 2.0)
                } else {
                    (1.5e8, 120.0)
                };
                let len = (self.end - self.start).max(1) as f64;
                let bytes = (total * intensity * secs / len * self.rng.lognormal(0.2)) as u64;
                let n = self.rng.poisson(secs / conn_every) + 1;
                let r = self.remotes[0].clone();
                egress_allowed(
                    w,
                    cluster,
                    a,
                    &r,
                    n,
                    bytes,
                    n * 4_000 + bytes / 200,
                    "curl",
                    name,
                );
            }
            AttackKind::C2Beacon => {
                let mut n = 0;
                while self.next_beacon < to as f64 {
                    if self.next_beacon >= from as f64 {
                        n += 1;
                    }
                    self.next_beacon += 60.0 / intensity * (0.8 + 0.4 * self.rng.f64());
                }
                if n > 0 {
                    let r = self.remotes[0].clone();
                    let out = n * (400 + self.rng.below(120));
                    let inn = n * (900 + self.rng.below(600));
                    egress_allowed(w, cluster, a, &r, n, out, inn, a.process, name);
                }
            }
            AttackKind::Ddos => {
                let v = a;
                let n = self.rng.poisson(400.0 * intensity * secs);
                // The allowed part, one level-2 record per victim node: `pub` in, huge packet counts.
                let mut nodes: Vec<usize> = v.pods.iter().map(|p| p.node).collect();
                nodes.sort_unstable();
                nodes.dedup();
                for &node in &nodes {
                    let k = n / nodes.len() as u64;
                    if k == 0 {
                        continue;
                    }
                    let pids = v.pods.iter().filter(|p| p.node == node).count() as u32;
                    let src = EndView {
                        kind: EndpointType::Net,
                        namespace: "-",
                        name_aggr: "pub",
                        name: "-",
                        ip: None,
                        labels: &[],
                    };
                    let policies = [
                        PolicyRef::threat_feed_pass(),
                        PolicyRef::np_allow(&v.namespace, &format!("allow-{}", v.name), 0),
                    ];
                    let spec = RecordSpec {
                        src,
                        dst: level2(v),
                        dest_port: v.port,
                        proto: "tcp",
                        action: Action::Allow,
                        reporter: Reporter::Dst,
                        service: service(v),
                        domains: &[],
                        policies: &policies,
                        pending: &[],
                        shape: cluster.nodes[node].shape,
                        process: Some((v.process, pids)),
                        host: &cluster.nodes[node].name,
                    };
                    let c = Counters {
                        bytes_in: k * 3_000,
                        bytes_out: k * 600,
                        packets_in: k * 12,
                        packets_out: k * 5,
                        flows: k,
                        started: k,
                        completed: k,
                        http_allowed_in: k * 10,
                        ..Counters::default()
                    };
                    w.dynamic(&spec, &c, name);
                }
                // The rate limiter denies the heaviest sources: level 1, one record per source IP.
                let m = self
                    .rng
                    .poisson(0.5 * intensity * secs)
                    .min(self.remotes.len() as u64);
                for _ in 0..m {
                    let r = &self.remotes[self.rng.below(self.remotes.len() as u64) as usize];
                    let vp = &v.pods[self.rng.below(v.pods.len() as u64) as usize];
                    let src = EndView {
                        kind: EndpointType::Net,
                        namespace: "-",
                        name_aggr: "pub",
                        name: "-",
                        ip: Some(&r.ip),
                        labels: &[],
                    };
                    let policies = [PolicyRef::security_deny("ddos-rate-limit", 0)];
                    let spec = RecordSpec {
                        src,
                        dst: level1(v, vp),
                        dest_port: v.port,
                        proto: "tcp",
                        action: Action::Deny,
                        reporter: Reporter::Dst,
                        service: service(v),
                        domains: &[],
                        policies: &policies,
                        pending: &[],
                        shape: cluster.nodes[vp.node].shape,
                        process: None,
                        host: &cluster.nodes[vp.node].name,
                    };
                    let k = 20 + self.rng.below(200);
                    let c = Counters {
                        bytes_in: k * 60,
                        packets_in: k,
                        flows: k,
                        started: k,
                        completed: k,
                        ..Counters::default()
                    };
                    w.dynamic(&spec, &c, name);
                }
            }
            AttackKind::DenySurge => {
                let n = self.rng.poisson(3.0 * intensity * secs);
                let targets = self.probe_targets.len() as u64 + 1;
                for _ in 0..n {
                    let t = self.rng.below(targets) as usize;
                    if let Some(&vw) = self.probe_targets.get(t) {
                        let v = &cluster.workloads[vw];
                        let vp = self.rng.below(v.pods.len() as u64) as usize;
                        probe(w, cluster, self.target, 0, vw, vp, v.port, 1, name);
                    } else {
                        let ext = Remote {
                            public: false,
                            ip: "169.254.169.254".into(),
                            domains: vec![],
                            port: 80,
                            blocked: true,
                        };
                        egress_denied(
                            w,
                            cluster,
                            a,
                            0,
                            &ext,
                            80,
                            1,
                            PolicyRef::security_deny("block-cloud-metadata", 0),
                            "sh",
                            name,
                        );
                    }
                }
            }
            AttackKind::CryptoMiner => {
                // One more pool every tenth of the attack: "new public pools" keep appearing.
                let len = (self.end - self.start).max(1) as f64;
                let reached = (((to - self.start) as f64 / len) * 10.0).ceil() as usize;
                for (i, r) in self.remotes.clone().iter().enumerate().take(reached.max(1)) {
                    if r.blocked {
                        let n = self.rng.poisson(secs / 60.0 * intensity).max(1);
                        egress_denied(
                            w,
                            cluster,
                            a,
                            0,
                            r,
                            r.port,
                            n,
                            PolicyRef::security_deny("threat-feeds", 0),
                            "xmrig",
                            name,
                        );
                    } else {
                        let started = u64::from(i + 1 == reached);
                        let out = (150.0 * secs * intensity) as u64;
                        let inn = (90.0 * secs * intensity) as u64;
                        let mut c = stream_counters(1, out, inn);
                        c.started = started;
                        c.completed = 0;
                        egress_counters(w, cluster, a, r, &c, "xmrig", name);
                    }
                }
                let _ = a_pod;
            }
        }
    }
}

/// Level-2 view of a workload (names aggregated, no IP).
pub(crate) fn level2(wl: &Workload) -> EndView<'_> {
    EndView {
        kind: EndpointType::Wep,
        namespace: &wl.namespace,
        name_aggr: &wl.name_aggr,
        name: "-",
        ip: None,
        labels: &wl.labels,
    }
}

/// Level-1 view of one pod (name and IP kept).
pub(crate) fn level1<'a>(wl: &'a Workload, pod: &'a crate::simulate::topology::Pod) -> EndView<'a> {
    EndView {
        kind: EndpointType::Wep,
        namespace: &wl.namespace,
        name_aggr: &wl.name_aggr,
        name: &pod.name,
        ip: Some(&pod.ip),
        labels: &wl.labels,
    }
}

/// The Service view of a workload.
pub(crate) fn service(wl: &Workload) -> Option<ServiceView<'_>> {
    wl.service.as_ref().map(|s| ServiceView {
        namespace: &wl.namespace,
        name: &s.name,
        port_name: &s.port_name,
        port: s.port,
    })
}

/// Counters of `n` TCP connections carrying `out` bytes out and `inn` bytes in.
pub(crate) fn stream_counters(n: u64, out: u64, inn: u64) -> Counters {
    Counters {
        bytes_out: out,
        bytes_in: inn,
        packets_out: out / 1448 + 2 * n,
        packets_in: inn / 1448 + 2 * n,
        flows: n,
        started: n,
        completed: n,
        ..Counters::default()
    }
}

/// A probe from the attacker's pod to a victim pod: allowed at level 2 by the source, denied at
/// level 1 by a default-deny destination (or allowed there too in an open namespace).
#[allow(clippy::too_many_arguments)]
fn probe(
    w: &mut WindowWriter<'_>,
    c: &Cluster,
    aw: usize,
    ap: usize,
    vw: usize,
    vp: usize,
    port: u16,
    n: u64,
    name: &'static str,
) {
    let a = &c.workloads[aw];
    let v = &c.workloads[vw];
    let (apod, vpod) = (
        &a.pods[ap.min(a.pods.len() - 1)],
        &v.pods[vp.min(v.pods.len() - 1)],
    );
    let src_policies = [
        PolicyRef::threat_feed_pass(),
        PolicyRef::profile(&a.namespace),
    ];
    let syn = Counters {
        bytes_out: n * 180,
        packets_out: n * 3,
        flows: n,
        started: n,
        completed: n,
        ..Counters::default()
    };
    let spec = RecordSpec {
        src: level2(a),
        dst: level2(v),
        dest_port: port,
        proto: "tcp",
        action: Action::Allow,
        reporter: Reporter::Src,
        service: service(v).filter(|_| port == v.port),
        domains: &[],
        policies: &src_policies,
        pending: &[],
        shape: c.nodes[apod.node].shape,
        process: Some(("sh", 1)),
        host: &c.nodes[apod.node].name,
    };
    w.dynamic(&spec, &syn, name);
    let managed = c.is_managed(&v.namespace);
    let dst_policies = if managed {
        [
            PolicyRef::threat_feed_pass(),
            PolicyRef::default_deny(&v.namespace),
        ]
    } else {
        [
            PolicyRef::threat_feed_pass(),
            PolicyRef::profile(&v.namespace),
        ]
    };
    let mut spec = RecordSpec {
        reporter: Reporter::Dst,
        policies: &dst_policies,
        shape: c.nodes[vpod.node].shape,
        host: &c.nodes[vpod.node].name,
        process: None,
        ..spec
    };
    let recv = Counters {
        bytes_in: n * 180,
        packets_in: n * 3,
        flows: n,
        started: n,
        completed: n,
        ..Counters::default()
    };
    if managed {
        spec.action = Action::Deny;
        spec.src = level1(a, apod);
        spec.dst = level1(v, vpod);
    }
    w.dynamic(&spec, &recv, name);
}

/// Egress to an external host denied on the source's node: one level-1 `src` record.
#[allow(clippy::too_many_arguments)]
fn egress_denied(
    w: &mut WindowWriter<'_>,
    c: &Cluster,
    a: &Workload,
    ap: usize,
    r: &Remote,
    port: u16,
    n: u64,
    policy: PolicyRef,
    process: &str,
    name: &'static str,
) {
    let pod = &a.pods[ap.min(a.pods.len() - 1)];
    let policies = [policy];
    let spec = RecordSpec {
        src: level1(a, pod),
        dst: EndView {
            kind: EndpointType::Net,
            namespace: "-",
            name_aggr: if r.public { "pub" } else { "pvt" },
            name: "-",
            ip: Some(&r.ip),
            labels: &[],
        },
        dest_port: port,
        proto: "tcp",
        action: Action::Deny,
        reporter: Reporter::Src,
        service: None,
        domains: &r.domains,
        policies: &policies,
        pending: &[],
        shape: c.nodes[pod.node].shape,
        process: Some((process, 1)),
        host: &c.nodes[pod.node].name,
    };
    let cnt = Counters {
        bytes_out: n * 180,
        packets_out: n * 3,
        flows: n,
        started: n,
        completed: n,
        ..Counters::default()
    };
    w.dynamic(&spec, &cnt, name);
}

/// Allowed egress to an external host: one level-2 `src` record.
#[allow(clippy::too_many_arguments)]
fn egress_allowed(
    w: &mut WindowWriter<'_>,
    c: &Cluster,
    a: &Workload,
    r: &Remote,
    n: u64,
    out: u64,
    inn: u64,
    process: &str,
    name: &'static str,
) {
    egress_counters(w, c, a, r, &stream_counters(n, out, inn), process, name);
}

fn egress_counters(
    w: &mut WindowWriter<'_>,
    c: &Cluster,
    a: &Workload,
    r: &Remote,
    cnt: &Counters,
    process: &str,
    name: &'static str,
) {
    let pod = &a.pods[0];
    let policies = [
        PolicyRef::threat_feed_pass(),
        PolicyRef::profile(&a.namespace),
    ];
    let spec = RecordSpec {
        src: level2(a),
        dst: EndView {
            kind: EndpointType::Net,
            namespace: "-",
            name_aggr: if r.public { "pub" } else { "pvt" },
            name: "-",
            ip: None,
            labels: &[],
        },
        dest_port: r.port,
        proto: "tcp",
        action: Action::Allow,
        reporter: Reporter::Src,
        service: None,
        domains: &r.domains,
        policies: &policies,
        pending: &[],
        shape: c.nodes[pod.node].shape,
        process: Some((process, 1)),
        host: &c.nodes[pod.node].name,
    };
    w.dynamic(&spec, cnt, name);
}

/// An allowed pod-to-pod flow: a level-2 `src` record and a level-2 `dst` record.
#[allow(clippy::too_many_arguments)]
fn allowed_pair(
    w: &mut WindowWriter<'_>,
    c: &Cluster,
    aw: usize,
    vw: usize,
    port: u16,
    n: u64,
    req: u64,
    resp: u64,
    dst_policy: PolicyRef,
    name: &'static str,
) {
    let a = &c.workloads[aw];
    let v = &c.workloads[vw];
    let (apod, vpod) = (&a.pods[0], &v.pods[0]);
    let src_policies = [
        PolicyRef::threat_feed_pass(),
        PolicyRef::profile(&a.namespace),
    ];
    let spec = RecordSpec {
        src: level2(a),
        dst: level2(v),
        dest_port: port,
        proto: "tcp",
        action: Action::Allow,
        reporter: Reporter::Src,
        service: service(v),
        domains: &[],
        policies: &src_policies,
        pending: &[],
        shape: c.nodes[apod.node].shape,
        process: Some((a.process, 1)),
        host: &c.nodes[apod.node].name,
    };
    w.dynamic(&spec, &stream_counters(n, req, resp), name);
    let dst_policies = [PolicyRef::threat_feed_pass(), dst_policy];
    let spec = RecordSpec {
        reporter: Reporter::Dst,
        policies: &dst_policies,
        shape: c.nodes[vpod.node].shape,
        host: &c.nodes[vpod.node].name,
        process: Some((v.process, 1)),
        ..spec
    };
    w.dynamic(&spec, &stream_counters(n, resp, req), name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_parameters() {
        let s: AttackSpec = "port-scan:start=6h,duration=30m,intensity=2.5,target=shop/cart"
            .parse()
            .unwrap();
        assert_eq!(s.kind, AttackKind::PortScan);
        assert_eq!(s.start_s, Some(6 * 3600));
        assert_eq!(s.duration_s, Some(1800));
        assert_eq!(s.intensity, 2.5);
        assert_eq!(s.target.as_deref(), Some("shop/cart"));
        assert_eq!(
            "C2_BEACON".parse::<AttackSpec>().unwrap().kind,
            AttackKind::C2Beacon
        );
        for k in AttackKind::ALL {
            assert_eq!(k.name().parse::<AttackKind>().unwrap(), k);
        }
        assert!(matches!(
            "nope".parse::<AttackSpec>(),
            Err(AttackParseError::UnknownScenario(_))
        ));
        assert!(matches!(
            "ddos:colour=red".parse::<AttackSpec>(),
            Err(AttackParseError::UnknownParam(_))
        ));
        assert!(matches!(
            "ddos:intensity=-1".parse::<AttackSpec>(),
            Err(AttackParseError::BadValue(..))
        ));
        assert!(matches!(
            "ddos:start=soon".parse::<AttackSpec>(),
            Err(AttackParseError::BadValue(..))
        ));
    }

    #[test]
    fn default_mix_fits_in_the_run() {
        for total in [3600u64, 6 * 3600, 2 * 86400, 7 * 86400] {
            for s in AttackSpec::default_mix() {
                let (a, b) = s.resolve_times(total);
                assert!(a < b && b <= total, "{:?} {a} {b} {total}", s.kind);
                assert!(a >= total / 2, "attacks come after a baseline");
            }
        }
    }
}
