//! `flowwarden generate`: a deterministic simulator of a Kubernetes cluster's Calico flow logs, with
//! labelled attacks, for tests, benchmarks, demos and detector evaluation.
//!
//! It owns the cluster model ([`topology`]), the attack scenarios ([`attack`]), the wire formats it
//! writes ([`render`], the formats `crate::flow` decodes) and the command line ([`cli`]). It follows
//! Felix's rules: both reporters when both ends are pods, one record when the peer is outside the
//! cluster, aggregation level 2 for allowed flows and level 1 for denied ones, records stamped with
//! their flush window and written in event-time order. It must not depend on the detection pipeline.
//!
//! Speed: every benign edge renders its record "middle" once (re-rendered only when a rollout changes
//! its pods) and each window only formats counters into a reusable buffer.

pub mod attack;
pub mod cli;
pub mod render;
pub mod rng;
pub mod topology;
pub mod write;

pub use attack::{AttackKind, AttackParseError, AttackSpec};
pub use cli::{run_generate, GenerateArgs};
pub use render::{Counters, OutputFormat};

use crate::flow::Action;
use attack::{level1, level2, service, ActiveAttack, AttackSetupError};
use render::{push_counters, push_prefix, render_middle, EndView, RecordSpec};
use rng::SimRng;
use rustc_hash::FxHashMap;
use topology::{k8s_suffix, Cluster, Controller, Edge, Peer, Schedule, Verdict};

/// Monday 2025-06-02 00:00:00 UTC: the default start, so runs are reproducible.
pub const DEFAULT_START: i64 = 1_748_822_400;

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Random seed: same seed, same bytes.
    pub seed: u64,
    /// Simulated time in seconds.
    pub duration_s: u64,
    /// Epoch second of the first window.
    pub start: i64,
    /// Felix flush interval (length of every record's window) in seconds.
    pub flush_s: u64,
    /// Grow the storefront to about this many workloads (None: the storefront alone).
    pub workloads: Option<usize>,
    /// Wire format.
    pub format: OutputFormat,
    /// Attacks to inject (empty: benign only).
    pub attacks: Vec<AttackSpec>,
    /// Benign surprises (nightly batch, backup, new dependency, marketing spike).
    pub surprises: bool,
    /// Rollouts per Deployment per day (new pod-template hashes).
    pub deploys_per_day: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            duration_s: 86_400,
            start: DEFAULT_START,
            flush_s: 300,
            workloads: None,
            format: OutputFormat::Calico,
            attacks: Vec::new(),
            surprises: true,
            deploys_per_day: 0.3,
        }
    }
}

impl SimConfig {
    /// A week of benign traffic (the baseline a detector trains on).
    pub fn benign_week() -> Self {
        SimConfig {
            duration_s: 7 * 86_400,
            ..Self::default()
        }
    }

    /// `duration_s` of traffic with the default attack mix in its second half.
    pub fn with_default_attacks(duration_s: u64) -> Self {
        SimConfig {
            duration_s,
            attacks: AttackSpec::default_mix(),
            ..Self::default()
        }
    }
}

/// Ground truth for one output line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRow {
    /// Whether the record carries attack traffic.
    pub label: bool,
    /// Scenario name (`port-scan`, ...), empty when benign.
    pub attack_type: String,
    /// Source workload key as flowwarden derives it (`shop/frontend-7d9c8b6f4-*`, `pub`, ...).
    pub src_workload: String,
    /// Destination workload key.
    pub dst_workload: String,
    /// The record's `start_time`.
    pub start_time: i64,
}

/// One injected attack (or benign surprise) as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    /// Scenario name (benign surprises are prefixed `benign:`).
    pub scenario: String,
    /// Attacker workload key.
    pub attacker: String,
    /// Victim workload key.
    pub victim: String,
    /// Epoch start.
    pub start: i64,
    /// Epoch end.
    pub end: i64,
}

/// Why a configuration cannot be simulated.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// An attack names a workload the cluster does not have.
    #[error(transparent)]
    Attack(#[from] AttackSetupError),
    /// Flush interval of zero.
    #[error("flush interval must be at least 1 second")]
    ZeroFlush,
}

/// A scheduled rollout (new hash) of one workload.
#[derive(Debug, Clone)]
struct Deploy {
    at: i64,
    workload: usize,
    hash: String,
}

/// The pre-rendered record of one reporter's share of an edge.
#[derive(Debug, Clone)]
struct Part {
    weight: u64,
    /// Scenario label of the edge (empty: benign).
    label: &'static str,
    middle: Vec<u8>,
    src_key: String,
    dst_key: String,
}

#[derive(Debug, Clone, Default)]
struct EdgeParts {
    src: Vec<Part>,
    dst: Vec<Part>,
}

/// Goldmane aggregates all nodes' records of one key: attack records are merged per key and window.
#[derive(Debug, Default)]
struct Merge {
    index: FxHashMap<Vec<u8>, usize>,
    items: Vec<(Vec<u8>, Counters, &'static str, String, String)>,
}

/// Writes one window's lines (and labels) into the caller's buffers.
pub struct WindowWriter<'a> {
    format: OutputFormat,
    out: &'a mut Vec<u8>,
    labels: Option<&'a mut Vec<LabelRow>>,
    prefix: &'a [u8],
    start: i64,
    scratch: &'a mut Vec<u8>,
    merge: &'a mut Merge,
    records: &'a mut u64,
}

impl WindowWriter<'_> {
    #[inline]
    fn line(&mut self, middle: &[u8], c: &Counters) {
        *self.records += 1;
        self.out.extend_from_slice(self.prefix);
        self.out.extend_from_slice(middle);
        push_counters(self.format, c, self.out);
    }

    fn label(&mut self, attack: &str, src: &str, dst: &str) {
        if let Some(labels) = self.labels.as_deref_mut() {
            labels.push(LabelRow {
                label: !attack.is_empty(),
                attack_type: attack.to_string(),
                src_workload: src.to_string(),
                dst_workload: dst.to_string(),
                start_time: self.start,
            });
        }
    }

    /// A pre-rendered benign record.
    #[inline]
    fn part(&mut self, p: &Part, c: &Counters) {
        self.line(&p.middle, c);
        if self.labels.is_some() {
            self.label(p.label, &p.src_key, &p.dst_key);
        }
    }

    /// A record rendered now (attacks); merged per key in Goldmane format.
    pub fn dynamic(&mut self, spec: &RecordSpec<'_>, c: &Counters, attack: &'static str) {
        self.scratch.clear();
        render_middle(self.format, spec, self.scratch);
        let keys = |f| (render::end_key(f, &spec.src), render::dst_key(f, spec));
        match self.format {
            OutputFormat::Calico => {
                let middle = std::mem::take(self.scratch);
                self.line(&middle, c);
                *self.scratch = middle;
                if self.labels.is_some() {
                    let (s, d) = keys(self.format);
                    self.label(attack, &s, &d);
                }
            }
            OutputFormat::Goldmane => {
                if let Some(&i) = self.merge.index.get(self.scratch.as_slice()) {
                    self.merge.items[i].1.add(c);
                } else {
                    let (s, d) = keys(self.format);
                    self.merge
                        .index
                        .insert(self.scratch.clone(), self.merge.items.len());
                    self.merge
                        .items
                        .push((self.scratch.clone(), *c, attack, s, d));
                }
            }
        }
    }

    fn finish(mut self) {
        let items = std::mem::take(&mut self.merge.items);
        for (middle, c, attack, s, d) in &items {
            self.line(middle, c);
            self.label(attack, s, d);
        }
        self.merge.index.clear();
    }
}

/// The simulator: call [`Simulator::next_window`] until it returns false.
pub struct Simulator {
    cfg: SimConfig,
    cluster: Cluster,
    traffic_rng: SimRng,
    churn_rng: SimRng,
    window: u64,
    windows: u64,
    parts: Vec<Option<EdgeParts>>,
    edges_of: Vec<Vec<usize>>,
    deploys: Vec<Deploy>,
    next_deploy: usize,
    attacks: Vec<ActiveAttack>,
    episodes: Vec<Episode>,
    benign: Vec<Episode>,
    spike: (i64, i64),
    /// Per attack: the edges a policy-change scenario replaced (restored when it ends), or None.
    policy_saved: Vec<Option<Vec<(usize, Edge)>>>,
    prefix: Vec<u8>,
    scratch: Vec<u8>,
    merge: Merge,
    records: u64,
}

impl Simulator {
    /// A simulator for `cfg`; attacks naming unknown workloads are dropped with a warning
    /// (use [`Simulator::try_new`] to get the error instead).
    pub fn new(cfg: SimConfig) -> Self {
        match Self::try_new(cfg.clone()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{e}; simulating without the attacks that cannot be placed");
                let mut cfg = cfg;
                cfg.flush_s = cfg.flush_s.max(1);
                let mut probe_rng = SimRng::new(cfg.seed);
                let cluster = Cluster::build(&mut probe_rng, cfg.workloads);
                cfg.attacks.retain(|a| {
                    ActiveAttack::new(a, &cluster, cfg.start, cfg.duration_s, cfg.seed, 0).is_ok()
                });
                match Self::try_new(cfg) {
                    Ok(s) => s,
                    Err(_) => {
                        Self::try_new(SimConfig::default()).unwrap_or_else(|_| unreachable!())
                    }
                }
            }
        }
    }

    /// A simulator for `cfg`, or why it cannot run.
    pub fn try_new(cfg: SimConfig) -> Result<Self, SimError> {
        if cfg.flush_s == 0 {
            return Err(SimError::ZeroFlush);
        }
        let mut build_rng = SimRng::new(cfg.seed);
        let mut cluster = Cluster::build(&mut build_rng, cfg.workloads);
        let mut churn_rng = SimRng::fork(cfg.seed, 1);
        let total = cfg.duration_s;
        let mut attacks = Vec::with_capacity(cfg.attacks.len());
        for (i, spec) in cfg.attacks.iter().enumerate() {
            attacks.push(ActiveAttack::new(
                spec, &cluster, cfg.start, total, cfg.seed, i as u64,
            )?);
        }
        let end = cfg.start + total as i64;
        let mut deploys = Vec::new();
        let mut benign = Vec::new();
        // Benign surprise: a new version of recommendation starts caching in redis-cart.
        let new_dep_at = cfg.start + (total as f64 * 0.45) as i64;
        if cfg.surprises {
            if let (Some(rec), Some(redis)) = (
                cluster.find("shop/recommendation"),
                cluster.find("shop/redis-cart"),
            ) {
                let hash = k8s_suffix(&mut churn_rng, 10);
                deploys.push(Deploy {
                    at: new_dep_at,
                    workload: rec,
                    hash,
                });
                let mut e = cluster
                    .edges
                    .iter()
                    .find(|e| e.dst == Peer::Pod(redis))
                    .cloned()
                    .unwrap_or_else(|| unreachable!());
                e.src = Peer::Pod(rec);
                e.rate = 3.0;
                e.schedule = Schedule::From((new_dep_at - cfg.start) as u64);
                cluster.assign_policies(&mut e, None);
                cluster.edges.push(e);
            }
        }
        // Random rollouts, none during an attack on the workloads it involves (clean ground truth).
        let rate = cfg.deploys_per_day / 86_400.0;
        for (w, wl) in cluster.workloads.iter().enumerate() {
            if wl.controller == Controller::CronJob {
                let mut day = cfg.start.div_euclid(86_400) * 86_400 + 2 * 3600;
                while day < end {
                    if day >= cfg.start && cfg.surprises {
                        deploys.push(Deploy {
                            at: day,
                            workload: w,
                            hash: (day / 60).to_string(),
                        });
                    }
                    day += 86_400;
                }
                continue;
            }
            if rate <= 0.0 {
                continue;
            }
            let mut t = cfg.start as f64;
            loop {
                t += -(1.0 - churn_rng.f64()).ln() / rate;
                if t >= end as f64 {
                    break;
                }
                let at = t as i64;
                let busy = attacks.iter().any(|a| {
                    (a.target == w || a.victim == Some(w))
                        && at >= a.start - 2 * cfg.flush_s as i64
                        && at <= a.end + cfg.flush_s as i64
                });
                let len = 9 + churn_rng.below(2) as usize;
                let hash = k8s_suffix(&mut churn_rng, len);
                if !busy {
                    deploys.push(Deploy {
                        at,
                        workload: w,
                        hash,
                    });
                }
            }
        }
        deploys.sort_by_key(|d| (d.at, d.workload));
        let spike_start = cfg.start + (total as f64 * 0.4) as i64;
        let spike = if cfg.surprises {
            (spike_start, spike_start + (total as i64 / 20).min(2 * 3600))
        } else {
            (0, 0)
        };
        let mut edges_of = vec![Vec::new(); cluster.workloads.len()];
        for (i, e) in cluster.edges.iter().enumerate() {
            for p in [e.src, e.dst] {
                if let Peer::Pod(w) = p {
                    edges_of[w].push(i);
                }
            }
        }
        let windows = total.div_ceil(cfg.flush_s);
        let mut sim = Simulator {
            parts: vec![None; cluster.edges.len()],
            edges_of,
            traffic_rng: SimRng::fork(cfg.seed, 2),
            churn_rng,
            window: 0,
            windows,
            deploys,
            next_deploy: 0,
            attacks,
            episodes: Vec::new(),
            benign: Vec::new(),
            policy_saved: Vec::new(),
            spike,
            prefix: Vec::with_capacity(64),
            scratch: Vec::with_capacity(2048),
            merge: Merge::default(),
            records: 0,
            cluster,
            cfg,
        };
        sim.episodes = sim.compute_episodes();
        if sim.cfg.surprises {
            let key = |s: &str| {
                sim.cluster
                    .find(s)
                    .map(|w| sim.cluster.workloads[w].key())
                    .unwrap_or_default()
            };
            benign.push(Episode {
                scenario: "benign:marketing-spike".into(),
                attacker: "pub".into(),
                victim: key("ingress-nginx/ingress-nginx-controller"),
                start: sim.spike.0,
                end: sim.spike.1,
            });
            benign.push(Episode {
                scenario: "benign:new-dependency".into(),
                attacker: format!(
                    "shop/recommendation-{}-*",
                    sim.hash_at("shop/recommendation", new_dep_at)
                ),
                victim: key("shop/redis-cart"),
                start: new_dep_at,
                end,
            });
            let mut day = sim.cfg.start.div_euclid(86_400) * 86_400;
            while day < end {
                for (name, who, whom, off, len) in [
                    (
                        "benign:nightly-batch",
                        "batch/report-builder",
                        "finance/postgres",
                        2 * 3600,
                        40 * 60,
                    ),
                    ("benign:backup", "backup/velero", "", 3 * 3600, 30 * 60),
                ] {
                    let at = day + off;
                    if at >= sim.cfg.start && at < end {
                        let attacker = if who == "batch/report-builder" {
                            format!("batch/report-builder-{}-*", at / 60)
                        } else {
                            format!("{}/{}-{}-*", "backup", "velero", sim.hash_at(who, at))
                        };
                        let victim = if whom.is_empty() {
                            "pub".into()
                        } else {
                            key(whom)
                        };
                        benign.push(Episode {
                            scenario: name.into(),
                            attacker,
                            victim,
                            start: at,
                            end: (at + len).min(end),
                        });
                    }
                }
                day += 86_400;
            }
        }
        sim.benign = benign;
        Ok(sim)
    }

    /// The hash `ns/name` has at epoch `t`, following the rollout plan.
    fn hash_at(&self, short: &str, t: i64) -> String {
        let Some(w) = self.cluster.find(short) else {
            return String::new();
        };
        self.deploys
            .iter()
            .rfind(|d| d.workload == w && d.at <= t)
            .map(|d| d.hash.clone())
            .unwrap_or_else(|| self.cluster.workloads[w].hash.clone())
    }

    fn compute_episodes(&self) -> Vec<Episode> {
        // Keys as they will be when the attack runs (rollouts before it have happened by then).
        let mut future = self.cluster.clone();
        let mut rng = SimRng::new(0);
        let mut out = Vec::new();
        let mut order: Vec<usize> = (0..self.attacks.len()).collect();
        order.sort_by_key(|&i| self.attacks[i].start);
        let mut d = 0;
        for i in order {
            let a = &self.attacks[i];
            let first_window =
                a.start - (a.start - self.cfg.start).rem_euclid(self.cfg.flush_s as i64);
            while d < self.deploys.len() && self.deploys[d].at <= first_window {
                let dep = &self.deploys[d];
                future.workloads[dep.workload].hash = dep.hash.clone();
                future.redeploy(&mut rng, dep.workload, dep.hash.clone());
                d += 1;
            }
            let (attacker, victim) = a.parties(&future);
            out.push(Episode {
                scenario: a.kind.name().into(),
                attacker,
                victim,
                start: a.start,
                end: a.end,
            });
        }
        out
    }

    /// The injected attacks (scenario, attacker, victim, start, end), in start order.
    pub fn episodes(&self) -> &[Episode] {
        &self.episodes
    }

    /// The benign surprises (marketing spike, new dependency, nightly batch, backups): traffic a
    /// detector should not page anyone for.
    pub fn benign_events(&self) -> &[Episode] {
        &self.benign
    }

    /// The simulated cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Lines emitted so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Number of flush windows the run has.
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// Appends every line of the next flush window (newline-terminated) to `out`, and one label row
    /// per line to `labels` when given. Returns false, appending nothing, once the run is over.
    pub fn next_window(&mut self, out: &mut Vec<u8>, labels: Option<&mut Vec<LabelRow>>) -> bool {
        if self.window >= self.windows {
            return false;
        }
        let flush = self.cfg.flush_s as i64;
        let t0 = self.cfg.start + self.window as i64 * flush;
        let t1 = t0 + flush;
        self.window += 1;
        self.apply_deploys(t0);
        self.apply_policy_changes(t0);
        self.prefix.clear();
        push_prefix(&mut self.prefix, t0, t1);
        let mut w = WindowWriter {
            format: self.cfg.format,
            out,
            labels,
            prefix: &self.prefix,
            start: t0,
            scratch: &mut self.scratch,
            merge: &mut self.merge,
            records: &mut self.records,
        };
        let cycle = daily_weekly_factor(t0);
        let in_spike = t0 >= self.spike.0 && t0 < self.spike.1;
        for (i, edge) in self.cluster.edges.iter().enumerate() {
            if !active(edge, t0 - self.cfg.start, t0) {
                continue;
            }
            let mut factor = if edge.diurnal { cycle } else { 1.0 };
            if in_spike && edge.diurnal && touches_storefront(&self.cluster, edge) {
                factor *= 4.0;
            }
            let n = self.traffic_rng.poisson(edge.rate * factor * flush as f64);
            if n == 0 {
                continue;
            }
            if self.parts[i].is_none() {
                self.parts[i] = Some(build_parts(&self.cluster, edge, self.cfg.format));
            }
            let Some(parts) = self.parts[i].as_ref() else {
                continue;
            };
            emit_edge(&mut w, &mut self.traffic_rng, edge, parts, n);
        }
        for a in &mut self.attacks {
            a.emit(&self.cluster, t0, t1, &mut w);
        }
        w.finish();
        true
    }

    /// Starts and ends the policy-change scenarios whose time has come (at window boundaries).
    fn apply_policy_changes(&mut self, t0: i64) {
        self.policy_saved.resize(self.attacks.len(), None);
        for (i, a) in self.attacks.iter().enumerate() {
            if !a.kind.is_policy_change() {
                continue;
            }
            let running = self.policy_saved[i].is_some();
            if !running && t0 >= a.start && t0 < a.end {
                let saved = match a.kind {
                    AttackKind::PolicyLoosening => self.cluster.loosen_ingress(
                        a.victim.unwrap_or(a.target),
                        a.target,
                        a.kind.name(),
                    ),
                    _ => {
                        let ns = self.cluster.workloads[a.target].namespace.clone();
                        self.cluster.stage_default_deny(&ns)
                    }
                };
                for (e, _) in &saved {
                    self.parts[*e] = None;
                }
                self.policy_saved[i] = Some(saved);
            } else if running && t0 >= a.end {
                for (e, edge) in self.policy_saved[i].take().unwrap_or_default() {
                    self.cluster.edges[e] = edge;
                    self.parts[e] = None;
                }
            }
        }
    }

    fn apply_deploys(&mut self, t0: i64) {
        while self.next_deploy < self.deploys.len() && self.deploys[self.next_deploy].at <= t0 {
            let d = self.deploys[self.next_deploy].clone();
            self.next_deploy += 1;
            self.cluster
                .redeploy(&mut self.churn_rng, d.workload, d.hash);
            for &e in &self.edges_of[d.workload] {
                self.parts[e] = None;
            }
        }
    }
}

/// Traffic level of user-driven edges: low at 04:00 UTC, peak at 16:00, weekends at 70 %.
fn daily_weekly_factor(t: i64) -> f64 {
    let hour = t.rem_euclid(86_400) as f64 / 3600.0;
    let daily = 0.35 + 0.65 * (0.5 - 0.5 * ((hour - 4.0) / 24.0 * std::f64::consts::TAU).cos());
    let weekday = (t.div_euclid(86_400) + 3).rem_euclid(7); // 0 = Monday
    daily * if weekday >= 5 { 0.7 } else { 1.0 }
}

fn active(edge: &Edge, offset: i64, t0: i64) -> bool {
    match edge.schedule {
        Schedule::Always => true,
        Schedule::From(at) => offset >= at as i64,
        Schedule::Nightly { start, duration } => {
            let sod = t0.rem_euclid(86_400);
            sod >= start as i64 && sod < (start + duration) as i64
        }
    }
}

fn touches_storefront(c: &Cluster, e: &Edge) -> bool {
    [e.src, e.dst].iter().any(|p| match p {
        Peer::Pod(w) => matches!(c.workloads[*w].namespace.as_str(), "shop" | "ingress-nginx"),
        Peer::Ext(_) => false,
    })
}

/// Renders the parts (one per reporting node, or per pod pair at level 1) of an edge.
fn build_parts(c: &Cluster, e: &Edge, format: OutputFormat) -> EdgeParts {
    let goldmane = format == OutputFormat::Goldmane;
    let svc = match e.dst {
        Peer::Pod(d) => service(&c.workloads[d]),
        Peer::Ext(_) => None,
    };
    let no_domains: &[String] = &[];
    let domains = match e.dst {
        Peer::Ext(x) => c.externals[x].domains.as_slice(),
        Peer::Pod(_) => no_domains,
    };
    let ext_view = |x: usize, with_ip: bool| {
        let ext = &c.externals[x];
        EndView {
            kind: crate::flow::EndpointType::Net,
            namespace: "-",
            name_aggr: ext.name_aggr(),
            name: "-",
            ip: with_ip.then_some(ext.ip.as_str()),
            labels: &[],
        }
    };
    let mut parts = EdgeParts::default();
    let push = |side: &mut Vec<Part>, spec: &RecordSpec<'_>, weight: u64| {
        let mut middle = Vec::with_capacity(1024);
        render_middle(format, spec, &mut middle);
        side.push(Part {
            weight,
            label: e.label,
            middle,
            src_key: render::end_key(format, &spec.src),
            dst_key: render::dst_key(format, spec),
        });
    };
    if let Peer::Pod(s) = e.src {
        let sw = &c.workloads[s];
        let denied = e.verdict == Verdict::DenyEgress;
        let action = if denied { Action::Deny } else { Action::Allow };
        let base = |src, dst, node: usize, pids: u32| RecordSpec {
            src,
            dst,
            dest_port: e.port,
            proto: e.proto,
            action,
            reporter: crate::flow::Reporter::Src,
            service: svc,
            domains,
            policies: &e.src_policies,
            pending: &e.src_pending,
            shape: c.nodes[node].shape,
            process: Some((sw.process, pids)),
            host: &c.nodes[node].name,
        };
        if !denied || goldmane {
            let dst = match e.dst {
                Peer::Pod(d) => level2(&c.workloads[d]),
                Peer::Ext(x) => ext_view(x, false),
            };
            for (node, count) in node_groups(sw, goldmane) {
                push(
                    &mut parts.src,
                    &base(level2(sw), dst, node, count as u32),
                    count,
                );
            }
        } else {
            for pod in &sw.pods {
                match e.dst {
                    Peer::Ext(x) => push(
                        &mut parts.src,
                        &base(level1(sw, pod), ext_view(x, true), pod.node, 1),
                        1,
                    ),
                    Peer::Pod(d) => {
                        let dw = &c.workloads[d];
                        for dp in &dw.pods {
                            push(
                                &mut parts.src,
                                &base(level1(sw, pod), level1(dw, dp), pod.node, 1),
                                1,
                            );
                        }
                    }
                }
            }
        }
    }
    if let (Peer::Pod(d), false) = (e.dst, e.verdict == Verdict::DenyEgress) {
        let dw = &c.workloads[d];
        let denied = e.verdict == Verdict::DenyIngress;
        let base = |src, dst, node: usize, pids: u32| RecordSpec {
            src,
            dst,
            dest_port: e.port,
            proto: e.proto,
            action: if denied { Action::Deny } else { Action::Allow },
            reporter: crate::flow::Reporter::Dst,
            service: svc,
            domains,
            policies: &e.dst_policies,
            pending: &[],
            shape: c.nodes[node].shape,
            process: (!denied).then_some((dw.process, pids)),
            host: &c.nodes[node].name,
        };
        if !denied || goldmane {
            let src = match e.src {
                Peer::Pod(s) => level2(&c.workloads[s]),
                Peer::Ext(x) => ext_view(x, false),
            };
            for (node, count) in node_groups(dw, goldmane) {
                push(
                    &mut parts.dst,
                    &base(src, level2(dw), node, count as u32),
                    count,
                );
            }
        } else {
            for dp in &dw.pods {
                match e.src {
                    Peer::Ext(x) => push(
                        &mut parts.dst,
                        &base(ext_view(x, true), level1(dw, dp), dp.node, 1),
                        1,
                    ),
                    Peer::Pod(s) => {
                        let sw = &c.workloads[s];
                        for sp in &sw.pods {
                            push(
                                &mut parts.dst,
                                &base(level1(sw, sp), level1(dw, dp), dp.node, 1),
                                1,
                            );
                        }
                    }
                }
            }
        }
    }
    parts
}

/// (node, pods on it) for a workload; one group in Goldmane, which aggregates across nodes.
fn node_groups(w: &topology::Workload, single: bool) -> Vec<(usize, u64)> {
    if single {
        return vec![(
            w.pods.first().map(|p| p.node).unwrap_or(0),
            w.pods.len() as u64,
        )];
    }
    let mut groups: Vec<(usize, u64)> = Vec::new();
    for p in &w.pods {
        match groups.iter_mut().find(|g| g.0 == p.node) {
            Some(g) => g.1 += 1,
            None => groups.push((p.node, 1)),
        }
    }
    groups.sort_unstable();
    groups
}

/// Splits `n` connections over the parts by weight (remainder to a random part).
fn split(rng: &mut SimRng, parts: &[Part], n: u64, shares: &mut Vec<u64>) {
    shares.clear();
    let total: u64 = parts.iter().map(|p| p.weight).sum::<u64>().max(1);
    let mut given = 0;
    for p in parts {
        let k = n * p.weight / total;
        shares.push(k);
        given += k;
    }
    let len = shares.len() as u64;
    if len > 0 {
        let mut i = rng.below(len);
        while given < n {
            shares[i as usize] += 1;
            given += 1;
            i = (i + 1) % len;
        }
    }
}

/// Emits one window of an edge carrying `n` connections: src parts then dst parts, bytes split so
/// that the src records' bytes_out sum equals the dst records' bytes_in sum.
fn emit_edge(w: &mut WindowWriter<'_>, rng: &mut SimRng, e: &Edge, parts: &EdgeParts, n: u64) {
    let allowed = e.verdict == Verdict::Allow;
    let (req, resp) = if allowed {
        // Heavy tails: log-normal per window, and now and then a Pareto-sized transfer.
        let mut m = rng.lognormal(0.35);
        if rng.chance(0.02) {
            m *= rng.pareto(1.3).min(500.0);
        }
        let req = (n as f64 * e.req_bytes * m * rng.lognormal(0.15)) as u64;
        let resp = (n as f64 * e.resp_bytes * m * rng.lognormal(0.15)) as u64;
        (req.max(n * 40), resp.max(n * 40))
    } else {
        (n * 180, 0)
    };
    let udp = e.proto == "udp";
    let http = (n as f64 * e.http_per_conn * rng.lognormal(0.1)) as u64;
    let live = if udp { 0 } else { rng.below(n / 10 + 1).min(n) };
    let mut shares = Vec::with_capacity(4);
    for (is_src, side) in [(true, &parts.src), (false, &parts.dst)] {
        if side.is_empty() {
            continue;
        }
        split(rng, side, n, &mut shares);
        let (mut req_left, mut resp_left, mut http_left) = (req, resp, http);
        let last = shares.iter().rposition(|&k| k > 0).unwrap_or(0);
        for (i, (p, &k)) in side.iter().zip(shares.iter()).enumerate() {
            if k == 0 {
                continue;
            }
            let (q, r, h) = if i == last {
                (req_left, resp_left, http_left)
            } else {
                (req * k / n, resp * k / n, http * k / n)
            };
            req_left -= q;
            resp_left -= r;
            http_left -= h;
            let (pq, pr) = if udp {
                (k, if resp > 0 { k } else { 0 })
            } else if allowed {
                (q / 1448 + 2 * k, r / 1448 + 2 * k)
            } else {
                (3 * k, 0)
            };
            let l = live * k / n;
            let mut c = Counters {
                flows: k,
                started: k,
                completed: k - l,
                ..Counters::default()
            };
            // src reports request bytes as out; dst reports them as in.
            if is_src {
                (c.bytes_out, c.bytes_in, c.packets_out, c.packets_in) = (q, r, pq, pr);
            } else {
                (c.bytes_in, c.bytes_out, c.packets_in, c.packets_out) = (q, r, pq, pr);
                if e.verdict == Verdict::DenyIngress {
                    c.http_denied_in = 0;
                } else {
                    c.http_allowed_in = h;
                }
                if matches!(e.src, Peer::Ext(_)) && c.http_allowed_in > 0 {
                    c.original_source_ips = (k / 3).max(1);
                }
            }
            w.part(p, &c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: SimConfig) -> (Vec<u8>, Vec<LabelRow>) {
        let mut sim = Simulator::try_new(cfg).unwrap();
        let (mut out, mut labels) = (Vec::new(), Vec::new());
        while sim.next_window(&mut out, Some(&mut labels)) {}
        (out, labels)
    }

    #[test]
    fn deterministic_and_labelled_line_by_line() {
        let cfg = SimConfig {
            duration_s: 6 * 3600,
            attacks: AttackSpec::default_mix(),
            ..SimConfig::default()
        };
        let (a, la) = run(cfg.clone());
        let (b, _) = run(cfg);
        assert_eq!(a, b);
        let lines = a.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count();
        assert_eq!(lines, la.len());
        assert!(la.iter().any(|l| l.label) && la.iter().any(|l| !l.label));
    }

    #[test]
    fn windows_are_in_time_order() {
        let cfg = SimConfig {
            duration_s: 3 * 3600,
            flush_s: 15,
            format: OutputFormat::Goldmane,
            ..SimConfig::default()
        };
        let (_, labels) = run(cfg);
        assert!(labels
            .windows(2)
            .all(|p| p[0].start_time <= p[1].start_time));
    }

    #[test]
    fn daily_cycle_peaks_in_the_afternoon() {
        let day = DEFAULT_START;
        assert!(daily_weekly_factor(day + 16 * 3600) > 0.99);
        assert!(daily_weekly_factor(day + 4 * 3600) < 0.36);
        assert!(
            daily_weekly_factor(day + 5 * 86_400 + 16 * 3600) < 0.71,
            "Saturday"
        );
    }
}
