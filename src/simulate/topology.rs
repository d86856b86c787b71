//! The simulated cluster: nodes (with the Felix version that decides their policy-string shape),
//! namespaces, workloads with replicas and pods, Services, external destinations, the policies that
//! allow or deny each path, and the call graph ([`Edge`]s with their rates and sizes).
//!
//! The default topology is the microservices storefront of the SOC 2 workshop (Google's Online
//! Boutique) plus ingress, monitoring, kube-system DNS, a finance namespace the shop never calls, a
//! nightly batch job and a backup agent. [`Cluster::build`] grows it with generated team namespaces
//! to any number of workloads. This module describes the cluster; it does not emit records.

use crate::flow::policy::PolicyKind;
use crate::flow::{Action, EndpointType};
use crate::simulate::rng::SimRng;

/// How a node's Felix writes policy strings (a rolling upgrade is in progress, so all three coexist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyShape {
    /// `idx|tier|name|action` (old Felix, no rule index, no pending policies).
    Legacy,
    /// `idx|tier|name|action|rule` with qualified names (`ns/tier.policy`, `ns/knp.default.x`).
    Qualified,
    /// `idx|tier|kind:[ns/]name|action|rule` (Calico 3.32+).
    Kinded,
}

/// A Kubernetes node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Node name (written as the shipper's `host` field).
    pub name: String,
    /// Policy-string shape of its Felix.
    pub shape: PolicyShape,
}

/// One policy hit as the simulator models it; rendered per shape by the emitter.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRef {
    /// Tier (`security`, `platform`, `default`, `__PROFILE__`).
    pub tier: String,
    /// Kind of policy.
    pub kind: PolicyKind,
    /// Namespace of a namespaced policy or profile, empty for global ones.
    pub namespace: String,
    /// Bare policy name (`allow-cart`, `threat-feeds`).
    pub name: String,
    /// Verdict of the hit.
    pub action: Action,
    /// Rule index (-1 end-of-tier default).
    pub rule: i32,
}

impl PolicyRef {
    fn new(tier: &str, kind: PolicyKind, ns: &str, name: &str, action: Action, rule: i32) -> Self {
        PolicyRef {
            tier: tier.into(),
            kind,
            namespace: ns.into(),
            name: name.into(),
            action,
            rule,
        }
    }
    /// The security tier's threat-feed policy passing a flow on to the next tier.
    pub fn threat_feed_pass() -> Self {
        Self::new(
            "security",
            PolicyKind::GlobalNetworkPolicy,
            "",
            "threat-feeds",
            Action::Pass,
            2,
        )
    }
    /// A global security-tier deny (`block-cloud-metadata`, `restrict-private-egress`, ...).
    pub fn security_deny(name: &str, rule: i32) -> Self {
        Self::new(
            "security",
            PolicyKind::GlobalNetworkPolicy,
            "",
            name,
            Action::Deny,
            rule,
        )
    }
    /// The namespace profile allowing what no policy selects.
    pub fn profile(ns: &str) -> Self {
        Self::new(
            "__PROFILE__",
            PolicyKind::Profile,
            ns,
            &format!("kns.{ns}"),
            Action::Allow,
            0,
        )
    }
    /// A platform-tier global allow (`allow-kube-dns`, `allow-prometheus-scrape`).
    pub fn platform_allow(name: &str, rule: i32) -> Self {
        Self::new(
            "platform",
            PolicyKind::GlobalNetworkPolicy,
            "",
            name,
            Action::Allow,
            rule,
        )
    }
    /// A namespaced Calico allow in the default tier.
    pub fn np_allow(ns: &str, name: &str, rule: i32) -> Self {
        Self::new(
            "default",
            PolicyKind::CalicoNetworkPolicy,
            ns,
            name,
            Action::Allow,
            rule,
        )
    }
    /// A Kubernetes NetworkPolicy allow.
    pub fn knp_allow(ns: &str, name: &str, rule: i32) -> Self {
        Self::new(
            "default",
            PolicyKind::KubernetesNetworkPolicy,
            ns,
            name,
            Action::Allow,
            rule,
        )
    }
    /// The namespace's Kubernetes default-deny (end of tier, rule -1).
    pub fn default_deny(ns: &str) -> Self {
        Self::new(
            "default",
            PolicyKind::KubernetesNetworkPolicy,
            ns,
            "default-deny",
            Action::Deny,
            -1,
        )
    }
    /// A staged (pending) namespaced policy.
    pub fn staged(ns: &str, name: &str, action: Action, rule: i32) -> Self {
        Self::new(
            "default",
            PolicyKind::StagedNetworkPolicy,
            ns,
            name,
            action,
            rule,
        )
    }
}

/// The Service in front of a workload.
#[derive(Debug, Clone)]
pub struct ServicePort {
    /// Service name.
    pub name: String,
    /// Service port name (`grpc`, `http`, `dns`).
    pub port_name: String,
    /// Service port number.
    pub port: u16,
}

/// One running pod.
#[derive(Debug, Clone)]
pub struct Pod {
    /// `<deployment>-<hash>-<suffix>`.
    pub name: String,
    /// Pod IP.
    pub ip: String,
    /// Index of its node.
    pub node: usize,
}

/// What kind of controller owns the pods (decides how name and hash change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// A Deployment: the hash is the pod-template-hash, new on every rollout.
    Deployment,
    /// A CronJob: a new Job (named after its schedule time) every night.
    CronJob,
}

/// A workload: the pods of one controller.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Namespace.
    pub namespace: String,
    /// Controller name (`frontend`).
    pub name: String,
    /// Label key carrying the app name (`app`, or `k8s-app` for kube-dns).
    pub app_label_key: &'static str,
    /// Label value carrying the app name (`frontend`, `kube-dns`).
    pub app_label: String,
    /// Current pod-template-hash (or Job suffix).
    pub hash: String,
    /// Number of replicas.
    pub replicas: usize,
    /// Current pods.
    pub pods: Vec<Pod>,
    /// Listening port of the pods (0 = none).
    pub port: u16,
    /// Service in front of it.
    pub service: Option<ServicePort>,
    /// Main process name.
    pub process: &'static str,
    /// Owning controller.
    pub controller: Controller,
    /// Cached `name-hash-*`.
    pub name_aggr: String,
    /// Cached labels (`app=...`, `pod-template-hash=...`).
    pub labels: Vec<String>,
}

impl Workload {
    /// The canonical workload key flowwarden uses (`ns/name-hash-*`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name_aggr)
    }
    /// `ns/name`, the form `--attack target=` takes.
    pub fn short(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
    fn refresh_names(&mut self) {
        self.name_aggr = format!("{}-{}-*", self.name, self.hash);
        let hash_label = match self.controller {
            Controller::Deployment => format!("pod-template-hash={}", self.hash),
            Controller::CronJob => format!("job-name={}-{}", self.name, self.hash),
        };
        self.labels = vec![
            format!("{}={}", self.app_label_key, self.app_label),
            hash_label,
        ];
    }
}

/// A destination (or client) outside the cluster.
#[derive(Debug, Clone)]
pub struct External {
    /// `pub` (true) or `pvt`.
    pub public: bool,
    /// Its address.
    pub ip: String,
    /// Domains Felix links to it.
    pub domains: Vec<String>,
}

impl External {
    /// `pub` or `pvt`.
    pub fn name_aggr(&self) -> &'static str {
        if self.public {
            "pub"
        } else {
            "pvt"
        }
    }
}

/// One end of an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A workload (index into [`Cluster::workloads`]).
    Pod(usize),
    /// An external network (index into [`Cluster::externals`]).
    Ext(usize),
}

/// Where a flow is denied, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed both ways.
    Allow,
    /// Denied by the source's egress policy: only a `src` record, level 1.
    DenyEgress,
    /// Denied by the destination's ingress policy: `src` allowed (level 2), `dst` denied (level 1).
    DenyIngress,
}

/// When an edge carries traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Always (following the daily and weekly cycle if `Edge::diurnal`).
    Always,
    /// From this offset (seconds since the simulation start) on: a new dependency.
    From(u64),
    /// Every night from `start` seconds after midnight UTC for `duration` seconds.
    Nightly {
        /// Seconds after midnight.
        start: u64,
        /// Length in seconds.
        duration: u64,
    },
}

/// A call-graph edge: who calls whom, on which port, how often and how much.
#[derive(Debug, Clone)]
pub struct Edge {
    /// Caller.
    pub src: Peer,
    /// Callee.
    pub dst: Peer,
    /// Destination port.
    pub port: u16,
    /// `tcp` / `udp`.
    pub proto: &'static str,
    /// Connections per second at the daily peak.
    pub rate: f64,
    /// Median request bytes per connection.
    pub req_bytes: f64,
    /// Median response bytes per connection.
    pub resp_bytes: f64,
    /// HTTP requests per connection (0 = not HTTP).
    pub http_per_conn: f64,
    /// Whether it follows the daily/weekly cycle of user traffic.
    pub diurnal: bool,
    /// When it is active.
    pub schedule: Schedule,
    /// Allowed or where denied.
    pub verdict: Verdict,
    /// Enforced policies on the source's node.
    pub src_policies: Vec<PolicyRef>,
    /// Enforced policies on the destination's node.
    pub dst_policies: Vec<PolicyRef>,
    /// Pending (staged) policies on the source's node.
    pub src_pending: Vec<PolicyRef>,
    /// Scenario whose traffic this edge carries now (labels), empty when benign.
    pub label: &'static str,
}

/// The whole simulated cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// External endpoints.
    pub externals: Vec<External>,
    /// Call graph.
    pub edges: Vec<Edge>,
    /// Namespaces with a default-deny ingress policy.
    pub managed_namespaces: Vec<String>,
    next_pod_ip: u32,
}

/// Alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
const K8S_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A Kubernetes-style random string of `len` characters.
pub fn k8s_suffix(rng: &mut SimRng, len: usize) -> String {
    (0..len)
        .map(|_| K8S_ALPHABET[rng.below(K8S_ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn ipv4(v: u32) -> String {
    format!(
        "{}.{}.{}.{}",
        v >> 24,
        (v >> 16) & 255,
        (v >> 8) & 255,
        v & 255
    )
}

/// Spec of a workload to add: (name, replicas, port, service port name, process).
struct WorkloadSpec<'a> {
    ns: &'a str,
    name: &'a str,
    replicas: usize,
    port: u16,
    service: Option<(&'a str, &'a str, u16)>,
    process: &'static str,
}

impl Cluster {
    /// The storefront, grown with team namespaces to about `workloads` workloads when given.
    pub fn build(rng: &mut SimRng, workloads: Option<usize>) -> Self {
        let target = workloads.unwrap_or(0);
        let node_count = (target / 8).clamp(6, 400);
        let nodes = (0..node_count)
            .map(|i| Node {
                name: format!("ip-10-0-{}-{}.ec2.internal", 1 + i / 200, 10 + i % 200),
                shape: match i % 3 {
                    0 => PolicyShape::Legacy,
                    1 => PolicyShape::Qualified,
                    _ => PolicyShape::Kinded,
                },
            })
            .collect();
        let mut c = Cluster {
            nodes,
            workloads: Vec::new(),
            externals: Vec::new(),
            edges: Vec::new(),
            managed_namespaces: vec!["shop".into(), "finance".into()],
            next_pod_ip: (10 << 24) | (244 << 16),
        };
        c.add_storefront(rng);
        let mut team = 0;
        while c.workloads.len() < target {
            c.add_team(rng, team, target - c.workloads.len());
            team += 1;
        }
        c
    }

    /// Index of a workload by `ns/name` (or `ns/name-hash-*`, or just `name`).
    pub fn find(&self, spec: &str) -> Option<usize> {
        let (ns, name) = match spec.split_once('/') {
            Some((ns, n)) => (Some(ns), n),
            None => (None, spec),
        };
        self.workloads.iter().position(|w| {
            ns.is_none_or(|ns| ns == w.namespace) && (w.name == name || w.name_aggr == name)
        })
    }

    /// Whether the namespace has a default-deny ingress policy.
    pub fn is_managed(&self, ns: &str) -> bool {
        self.managed_namespaces.iter().any(|m| m == ns)
    }

    fn add_workload(&mut self, rng: &mut SimRng, s: WorkloadSpec<'_>) -> usize {
        let (key, label) = if s.name == "coredns" {
            ("k8s-app", "kube-dns".to_string())
        } else {
            ("app", s.name.to_string())
        };
        let mut w = Workload {
            namespace: s.ns.into(),
            name: s.name.into(),
            app_label_key: key,
            app_label: label,
            hash: String::new(),
            replicas: s.replicas,
            pods: Vec::new(),
            port: s.port,
            service: s.service.map(|(name, port_name, port)| ServicePort {
                name: name.into(),
                port_name: port_name.into(),
                port,
            }),
            process: s.process,
            controller: Controller::Deployment,
            name_aggr: String::new(),
            labels: Vec::new(),
        };
        let len = 9 + rng.below(2) as usize;
        w.hash = k8s_suffix(rng, len);
        w.refresh_names();
        self.workloads.push(w);
        let idx = self.workloads.len() - 1;
        self.respawn_pods(rng, idx);
        idx
    }

    /// Replaces a workload's pods (new names, IPs and nodes) after its hash changed.
    pub fn respawn_pods(&mut self, rng: &mut SimRng, w: usize) {
        let first_node = rng.below(self.nodes.len() as u64) as usize;
        let n = self.workloads[w].replicas;
        let mut pods = Vec::with_capacity(n);
        for r in 0..n {
            let ip = ipv4(self.next_pod_ip);
            self.next_pod_ip = self.next_pod_ip.wrapping_add(1);
            let wl = &self.workloads[w];
            pods.push(Pod {
                name: format!("{}-{}-{}", wl.name, wl.hash, k8s_suffix(rng, 5)),
                ip,
                node: (first_node + r) % self.nodes.len(),
            });
        }
        self.workloads[w].pods = pods;
    }

    /// Gives workload `w` a new hash (a rollout, or tonight's Job) and new pods.
    pub fn redeploy(&mut self, rng: &mut SimRng, w: usize, hash: String) {
        self.workloads[w].hash = hash;
        self.workloads[w].refresh_names();
        self.respawn_pods(rng, w);
    }

    fn add_external(&mut self, public: bool, ip: &str, domains: &[&str]) -> usize {
        self.externals.push(External {
            public,
            ip: ip.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
        });
        self.externals.len() - 1
    }

    /// Adds an edge with the policies its path implies.
    #[allow(clippy::too_many_arguments)]
    fn connect(
        &mut self,
        src: Peer,
        dst: Peer,
        port: u16,
        proto: &'static str,
        rate: f64,
        sizes: (f64, f64),
        http_per_conn: f64,
    ) -> usize {
        let diurnal = !matches!(
            (src, dst),
            (Peer::Pod(s), _) if ["prometheus", "coredns", "grafana", "alertmanager"]
                .contains(&self.workloads[s].name.as_str())
        );
        let mut edge = Edge {
            src,
            dst,
            port,
            proto,
            rate,
            req_bytes: sizes.0,
            resp_bytes: sizes.1,
            http_per_conn,
            diurnal,
            schedule: Schedule::Always,
            verdict: Verdict::Allow,
            src_policies: Vec::new(),
            dst_policies: Vec::new(),
            src_pending: Vec::new(),
            label: "",
        };
        self.assign_policies(&mut edge, None);
        self.edges.push(edge);
        self.edges.len() - 1
    }

    /// Fills the policies of `edge`; `deny` forces a verdict (a blocked path).
    pub fn assign_policies(&self, edge: &mut Edge, deny: Option<(Verdict, PolicyRef)>) {
        edge.src_policies.clear();
        edge.dst_policies.clear();
        edge.src_pending.clear();
        if let Peer::Pod(s) = edge.src {
            let ns = self.workloads[s].namespace.clone();
            edge.src_policies.push(PolicyRef::threat_feed_pass());
            edge.src_policies.push(PolicyRef::profile(&ns));
            if ns == "shop" {
                edge.src_pending.push(PolicyRef::threat_feed_pass());
                edge.src_pending
                    .push(PolicyRef::staged(&ns, "restrict-egress", Action::Allow, 1));
            }
        }
        if let Peer::Pod(d) = edge.dst {
            let w = &self.workloads[d];
            edge.dst_policies.push(PolicyRef::threat_feed_pass());
            let from_prometheus =
                matches!(edge.src, Peer::Pod(s) if self.workloads[s].name == "prometheus");
            if w.name == "coredns" {
                edge.dst_policies
                    .push(PolicyRef::platform_allow("allow-kube-dns", 0));
            } else if from_prometheus {
                edge.dst_policies
                    .push(PolicyRef::platform_allow("allow-prometheus-scrape", 0));
            } else if self.is_managed(&w.namespace) {
                if w.process == "redis-server" || w.process == "postgres" {
                    edge.dst_policies.push(PolicyRef::knp_allow(
                        &w.namespace,
                        &format!("allow-to-{}", w.name),
                        0,
                    ));
                } else {
                    let rule = match edge.src {
                        Peer::Pod(s) => (self.workloads[s].name.len() % 4) as i32,
                        Peer::Ext(_) => 0,
                    };
                    edge.dst_policies.push(PolicyRef::np_allow(
                        &w.namespace,
                        &format!("allow-{}", w.name),
                        rule,
                    ));
                }
            } else {
                edge.dst_policies.push(PolicyRef::profile(&w.namespace));
            }
        }
        if let Some((verdict, policy)) = deny {
            edge.verdict = verdict;
            match verdict {
                Verdict::Allow => {}
                Verdict::DenyEgress => {
                    edge.dst_policies.clear();
                    edge.src_pending.clear();
                    edge.src_policies = if policy.tier == "security" {
                        vec![policy]
                    } else {
                        vec![PolicyRef::threat_feed_pass(), policy]
                    };
                }
                Verdict::DenyIngress => {
                    edge.dst_policies = vec![PolicyRef::threat_feed_pass(), policy];
                }
            }
        }
    }

    /// `policy-loosening`: a broad allow in the platform tier (`allow-debug-all`) now decides every
    /// ingress to `victim` that the default tier decided, so what its namespace's default-deny
    /// stopped from `attacker` is allowed (those edges are labelled `label`). Returns the edges
    /// changed, with their previous state.
    pub fn loosen_ingress(
        &mut self,
        victim: usize,
        attacker: usize,
        label: &'static str,
    ) -> Vec<(usize, Edge)> {
        let mut changed = Vec::new();
        for (i, e) in self.edges.iter_mut().enumerate() {
            let decided_in_platform = e.dst_policies.last().is_some_and(|p| p.tier == "platform");
            if e.dst != Peer::Pod(victim) || e.verdict == Verdict::DenyEgress || decided_in_platform
            {
                continue;
            }
            changed.push((i, e.clone()));
            e.dst_policies = vec![
                PolicyRef::threat_feed_pass(),
                PolicyRef::platform_allow("allow-debug-all", 0),
            ];
            if e.verdict == Verdict::DenyIngress && e.src == Peer::Pod(attacker) {
                e.label = label;
            }
            e.verdict = Verdict::Allow;
        }
        changed
    }

    /// `staged-default-deny`: a staged `default-deny-egress` in `ns` that allows only traffic inside
    /// the namespace and DNS, written as the pending policies of every egress edge of `ns` that its
    /// enforced policies allow. Returns the edges changed, with their previous state.
    pub fn stage_default_deny(&mut self, ns: &str) -> Vec<(usize, Edge)> {
        let mut changed = Vec::new();
        for i in 0..self.edges.len() {
            let e = &self.edges[i];
            let Peer::Pod(s) = e.src else { continue };
            if self.workloads[s].namespace != ns || e.verdict == Verdict::DenyEgress {
                continue;
            }
            let inside = match e.dst {
                Peer::Pod(d) => {
                    self.workloads[d].namespace == ns || self.workloads[d].name == "coredns"
                }
                Peer::Ext(_) => false,
            };
            let staged = if inside {
                PolicyRef::staged(ns, "default-deny-egress", Action::Allow, 0)
            } else {
                PolicyRef::staged(ns, "default-deny-egress", Action::Deny, -1)
            };
            changed.push((i, e.clone()));
            self.edges[i].src_pending = vec![PolicyRef::threat_feed_pass(), staged];
        }
        changed
    }

    fn add_storefront(&mut self, rng: &mut SimRng) {
        let wl = |ns, name, replicas, port, service, process| WorkloadSpec {
            ns,
            name,
            replicas,
            port,
            service,
            process,
        };
        let dns = self.add_workload(
            rng,
            wl(
                "kube-system",
                "coredns",
                2,
                53,
                Some(("kube-dns", "dns", 53)),
                "coredns",
            ),
        );
        let metrics = self.add_workload(
            rng,
            wl(
                "kube-system",
                "metrics-server",
                1,
                4443,
                Some(("metrics-server", "https", 443)),
                "metrics-server",
            ),
        );
        let ingress = self.add_workload(
            rng,
            wl(
                "ingress-nginx",
                "ingress-nginx-controller",
                2,
                443,
                Some(("ingress-nginx-controller", "https", 443)),
                "nginx",
            ),
        );
        let frontend = self.add_workload(
            rng,
            wl(
                "shop",
                "frontend",
                3,
                8080,
                Some(("frontend", "http", 80)),
                "server",
            ),
        );
        let cart = self.add_workload(
            rng,
            wl(
                "shop",
                "cart",
                2,
                7070,
                Some(("cartservice", "grpc", 7070)),
                "cartservice",
            ),
        );
        let checkout = self.add_workload(
            rng,
            wl(
                "shop",
                "checkout",
                2,
                5050,
                Some(("checkoutservice", "grpc", 5050)),
                "checkoutservice",
            ),
        );
        let payment = self.add_workload(
            rng,
            wl(
                "shop",
                "payment",
                2,
                50051,
                Some(("paymentservice", "grpc", 50051)),
                "node",
            ),
        );
        let shipping = self.add_workload(
            rng,
            wl(
                "shop",
                "shipping",
                2,
                50051,
                Some(("shippingservice", "grpc", 50051)),
                "shippingservice",
            ),
        );
        let email = self.add_workload(
            rng,
            wl(
                "shop",
                "email",
                1,
                8080,
                Some(("emailservice", "grpc", 5000)),
                "python",
            ),
        );
        let currency = self.add_workload(
            rng,
            wl(
                "shop",
                "currency",
                2,
                7000,
                Some(("currencyservice", "grpc", 7000)),
                "node",
            ),
        );
        let recommendation = self.add_workload(
            rng,
            wl(
                "shop",
                "recommendation",
                2,
                8080,
                Some(("recommendationservice", "grpc", 8080)),
                "python",
            ),
        );
        let catalog = self.add_workload(
            rng,
            wl(
                "shop",
                "productcatalog",
                3,
                3550,
                Some(("productcatalogservice", "grpc", 3550)),
                "server",
            ),
        );
        let ad = self.add_workload(
            rng,
            wl(
                "shop",
                "ad",
                1,
                9555,
                Some(("adservice", "grpc", 9555)),
                "java",
            ),
        );
        let redis = self.add_workload(
            rng,
            wl(
                "shop",
                "redis-cart",
                1,
                6379,
                Some(("redis-cart", "tcp-redis", 6379)),
                "redis-server",
            ),
        );
        let loadgen = self.add_workload(rng, wl("shop", "loadgenerator", 1, 0, None, "locust"));
        let prometheus = self.add_workload(
            rng,
            wl(
                "monitoring",
                "prometheus",
                1,
                9090,
                Some(("prometheus", "web", 9090)),
                "prometheus",
            ),
        );
        let grafana = self.add_workload(
            rng,
            wl(
                "monitoring",
                "grafana",
                1,
                3000,
                Some(("grafana", "http", 3000)),
                "grafana",
            ),
        );
        let alertmanager = self.add_workload(
            rng,
            wl(
                "monitoring",
                "alertmanager",
                1,
                9093,
                Some(("alertmanager", "web", 9093)),
                "alertmanager",
            ),
        );
        let ledger = self.add_workload(
            rng,
            wl(
                "finance",
                "ledger",
                2,
                8443,
                Some(("ledger", "https", 8443)),
                "java",
            ),
        );
        let postgres = self.add_workload(
            rng,
            wl(
                "finance",
                "postgres",
                1,
                5432,
                Some(("postgres", "tcp-postgresql", 5432)),
                "postgres",
            ),
        );
        let batch = self.add_workload(rng, wl("batch", "report-builder", 1, 0, None, "python"));
        self.workloads[batch].controller = Controller::CronJob;
        let velero = self.add_workload(rng, wl("backup", "velero", 1, 8085, None, "velero"));

        let internet = self.add_external(true, "203.0.113.50", &[]);
        let stripe = self.add_external(true, "54.187.174.169", &["api.stripe.com"]);
        let sendgrid = self.add_external(true, "167.89.115.18", &["smtp.sendgrid.net"]);
        let ecb = self.add_external(true, "172.67.9.74", &["www.ecb.europa.eu"]);
        let slack = self.add_external(true, "34.236.30.92", &["hooks.slack.com"]);
        let s3 = self.add_external(
            true,
            "52.219.170.34",
            &[
                "s3.eu-central-1.amazonaws.com",
                "velero-backups.s3.eu-central-1.amazonaws.com",
            ],
        );
        let carrier = self.add_external(false, "10.20.4.10", &["gateway.logistics.internal"]);
        let vpc_dns = self.add_external(false, "10.0.0.2", &[]);
        let metadata = self.add_external(false, "169.254.169.254", &[]);

        use Peer::{Ext, Pod};
        let http = 5.0;
        let grpc = 20.0;
        self.connect(
            Ext(internet),
            Pod(ingress),
            443,
            "tcp",
            20.0,
            (800.0, 12_000.0),
            http,
        );
        self.connect(
            Pod(ingress),
            Pod(frontend),
            8080,
            "tcp",
            20.0,
            (900.0, 12_000.0),
            http,
        );
        self.connect(
            Pod(loadgen),
            Pod(frontend),
            8080,
            "tcp",
            8.0,
            (700.0, 9_000.0),
            http,
        );
        for (dst, rate, req, resp) in [
            (ad, 6.0, 300.0, 400.0),
            (cart, 10.0, 250.0, 350.0),
            (checkout, 1.5, 600.0, 500.0),
            (currency, 25.0, 150.0, 200.0),
            (catalog, 20.0, 150.0, 2_500.0),
            (recommendation, 6.0, 200.0, 300.0),
            (shipping, 2.0, 300.0, 200.0),
        ] {
            let port = self.workloads[dst].port;
            self.connect(
                Pod(frontend),
                Pod(dst),
                port,
                "tcp",
                rate,
                (req, resp),
                grpc,
            );
        }
        for (dst, rate) in [
            (cart, 1.5),
            (currency, 3.0),
            (email, 1.5),
            (payment, 1.5),
            (catalog, 3.0),
            (shipping, 1.5),
        ] {
            let port = self.workloads[dst].port;
            self.connect(
                Pod(checkout),
                Pod(dst),
                port,
                "tcp",
                rate,
                (400.0, 300.0),
                grpc,
            );
        }
        self.connect(
            Pod(recommendation),
            Pod(catalog),
            3550,
            "tcp",
            6.0,
            (150.0, 2_500.0),
            grpc,
        );
        self.connect(Pod(cart), Pod(redis), 6379, "tcp", 4.0, (200.0, 150.0), 0.0);
        self.connect(
            Pod(payment),
            Ext(stripe),
            443,
            "tcp",
            1.5,
            (1_500.0, 3_000.0),
            0.0,
        );
        self.connect(
            Pod(email),
            Ext(sendgrid),
            587,
            "tcp",
            1.5,
            (4_000.0, 600.0),
            0.0,
        );
        self.connect(
            Pod(currency),
            Ext(ecb),
            443,
            "tcp",
            0.01,
            (600.0, 9_000.0),
            0.0,
        );
        self.connect(
            Pod(shipping),
            Ext(carrier),
            443,
            "tcp",
            1.5,
            (900.0, 700.0),
            0.0,
        );
        self.connect(
            Pod(grafana),
            Pod(prometheus),
            9090,
            "tcp",
            0.2,
            (500.0, 40_000.0),
            http,
        );
        self.connect(
            Pod(prometheus),
            Pod(alertmanager),
            9093,
            "tcp",
            0.05,
            (1_200.0, 200.0),
            1.0,
        );
        self.connect(
            Pod(alertmanager),
            Ext(slack),
            443,
            "tcp",
            0.005,
            (2_000.0, 300.0),
            0.0,
        );
        self.connect(
            Pod(prometheus),
            Pod(metrics),
            4443,
            "tcp",
            0.0667,
            (300.0, 30_000.0),
            1.0,
        );
        self.connect(
            Pod(ledger),
            Pod(postgres),
            5432,
            "tcp",
            2.0,
            (500.0, 4_000.0),
            0.0,
        );
        self.connect(Pod(dns), Ext(vpc_dns), 53, "udp", 1.0, (70.0, 140.0), 0.0);
        // Benign denials: the python SDK probing cloud metadata, a load test hitting payment directly.
        let probe = self.connect(
            Pod(recommendation),
            Ext(metadata),
            80,
            "tcp",
            0.02,
            (60.0, 0.0),
            0.0,
        );
        let mut e = self.edges[probe].clone();
        self.assign_policies(
            &mut e,
            Some((
                Verdict::DenyEgress,
                PolicyRef::security_deny("block-cloud-metadata", 0),
            )),
        );
        self.edges[probe] = e;
        let direct = self.connect(
            Pod(loadgen),
            Pod(payment),
            50051,
            "tcp",
            0.05,
            (60.0, 0.0),
            0.0,
        );
        let mut e = self.edges[direct].clone();
        self.assign_policies(
            &mut e,
            Some((Verdict::DenyIngress, PolicyRef::default_deny("shop"))),
        );
        self.edges[direct] = e;
        // Nightly: the report Job reads the catalog and the ledger database; velero backs up to S3.
        let nightly = Schedule::Nightly {
            start: 2 * 3600,
            duration: 40 * 60,
        };
        for (dst, port, rate, resp) in [
            (catalog, 3550, 30.0, 2_500.0),
            (postgres, 5432, 10.0, 200_000.0),
        ] {
            let e = self.connect(Pod(batch), Pod(dst), port, "tcp", rate, (400.0, resp), 0.0);
            self.edges[e].schedule = nightly;
            self.edges[e].diurnal = false;
        }
        let backup = self.connect(
            Pod(velero),
            Ext(s3),
            443,
            "tcp",
            0.2,
            (8_000_000.0, 2_000.0),
            0.0,
        );
        self.edges[backup].schedule = Schedule::Nightly {
            start: 3 * 3600,
            duration: 30 * 60,
        };
        self.edges[backup].diurnal = false;
        self.add_platform_edges(dns, prometheus, 0);
        let _ = (self.managed_namespaces.len(), velero);
    }

    /// DNS from every workload added since `from`, and Prometheus scraping them.
    fn add_platform_edges(&mut self, dns: usize, prometheus: usize, from: usize) {
        for w in from..self.workloads.len() {
            if w == dns {
                continue;
            }
            let e = self.connect(
                Peer::Pod(w),
                Peer::Pod(dns),
                53,
                "udp",
                1.0,
                (70.0, 140.0),
                0.0,
            );
            self.edges[e].diurnal = self.workloads[w].namespace != "monitoring";
            if matches!(self.workloads[w].controller, Controller::CronJob) {
                self.edges[e].schedule = Schedule::Nightly {
                    start: 2 * 3600,
                    duration: 40 * 60,
                };
            }
            if w != prometheus && self.workloads[w].port != 0 && w != dns {
                let port = self.workloads[w].port;
                self.connect(
                    Peer::Pod(prometheus),
                    Peer::Pod(w),
                    port,
                    "tcp",
                    0.0667,
                    (250.0, 20_000.0),
                    1.0,
                );
            }
        }
    }

    /// Adds one generated team namespace with up to `room` workloads.
    fn add_team(&mut self, rng: &mut SimRng, team: usize, room: usize) {
        const NAMES: [&str; 24] = [
            "gateway",
            "api",
            "web",
            "auth",
            "users",
            "orders",
            "billing",
            "search",
            "inventory",
            "notifier",
            "profile",
            "media",
            "pricing",
            "reviews",
            "catalog",
            "sessions",
            "reports",
            "scheduler",
            "worker",
            "importer",
            "exporter",
            "cache",
            "db",
            "queue",
        ];
        let ns = format!("team-{team:03}");
        self.managed_namespaces.push(ns.clone());
        let size = (6 + rng.below(14) as usize).min(room).max(1);
        let first = self.workloads.len();
        let mut members = Vec::with_capacity(size);
        for i in 0..size {
            let base = NAMES[i % NAMES.len()];
            let name = if i < NAMES.len() {
                base.to_string()
            } else {
                format!("{base}-{}", i / NAMES.len())
            };
            let (port, port_name, process) = match base {
                "cache" => (6379, "tcp-redis", "redis-server"),
                "db" => (5432, "tcp-postgresql", "postgres"),
                "queue" => (9092, "tcp-kafka", "java"),
                "web" | "gateway" => (8080, "http", "node"),
                _ => (8080, "grpc", ["server", "java", "python", "node"][i % 4]),
            };
            let replicas = 1 + rng.below(3) as usize;
            let svc_name = name.clone();
            let idx = self.add_workload(
                rng,
                WorkloadSpec {
                    ns: &ns,
                    name: &name,
                    replicas,
                    port,
                    service: Some((&svc_name, port_name, port)),
                    process,
                },
            );
            members.push(idx);
        }
        let dns = self.find("kube-system/coredns").unwrap_or(0);
        let prometheus = self.find("monitoring/prometheus").unwrap_or(0);
        let ingress = self
            .find("ingress-nginx/ingress-nginx-controller")
            .unwrap_or(0);
        // A layered call graph: the gateway is called by the ingress, each member calls 1-3 later ones.
        self.connect(
            Peer::Pod(ingress),
            Peer::Pod(members[0]),
            self.workloads[members[0]].port,
            "tcp",
            2.0 * rng.lognormal(0.8),
            (800.0, 8_000.0),
            5.0,
        );
        for i in 0..members.len() {
            let later = members.len() - i - 1;
            if later == 0 {
                break;
            }
            let calls = (1 + rng.below(3) as usize).min(later);
            for _ in 0..calls {
                let j = members[i + 1 + rng.below(later as u64) as usize];
                if self
                    .edges
                    .iter()
                    .rev()
                    .take(4)
                    .any(|e| e.src == Peer::Pod(members[i]) && e.dst == Peer::Pod(j))
                {
                    continue;
                }
                let rate = 0.5 * rng.lognormal(1.0);
                let sizes = (300.0 * rng.lognormal(0.7), 2_000.0 * rng.lognormal(1.0));
                self.connect(
                    Peer::Pod(members[i]),
                    Peer::Pod(j),
                    self.workloads[j].port,
                    "tcp",
                    rate,
                    sizes,
                    10.0,
                );
            }
            if rng.chance(0.15) {
                let ext = self.add_external(
                    true,
                    &ipv4(0x3400_0000 | rng.below(1 << 24) as u32),
                    &["api.partner.example.com"],
                );
                self.connect(
                    Peer::Pod(members[i]),
                    Peer::Ext(ext),
                    443,
                    "tcp",
                    0.2 * rng.lognormal(0.8),
                    (1_000.0, 3_000.0),
                    0.0,
                );
            }
        }
        self.add_platform_edges(dns, prometheus, first);
    }

    /// Endpoint type of a peer.
    pub fn kind(&self, p: Peer) -> EndpointType {
        match p {
            Peer::Pod(_) => EndpointType::Wep,
            Peer::Ext(_) => EndpointType::Net,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storefront_has_the_workshop_services_and_dns_for_everyone() {
        let mut rng = SimRng::new(1);
        let c = Cluster::build(&mut rng, None);
        for name in [
            "frontend",
            "cart",
            "checkout",
            "payment",
            "shipping",
            "email",
            "currency",
            "recommendation",
            "productcatalog",
            "ad",
            "redis-cart",
            "loadgenerator",
        ] {
            assert!(c.find(&format!("shop/{name}")).is_some(), "{name}");
        }
        let dns = c.find("kube-system/coredns").unwrap();
        assert!(c.workloads[dns]
            .labels
            .contains(&"k8s-app=kube-dns".to_string()));
        for (i, w) in c.workloads.iter().enumerate() {
            if i != dns {
                assert!(
                    c.edges
                        .iter()
                        .any(|e| e.src == Peer::Pod(i) && e.dst == Peer::Pod(dns)),
                    "{}",
                    w.name
                );
            }
            assert!(w
                .pods
                .iter()
                .all(|p| p.name.starts_with(&format!("{}-{}-", w.name, w.hash))));
        }
    }

    #[test]
    fn scales_to_thousands_of_workloads() {
        let mut rng = SimRng::new(2);
        let c = Cluster::build(&mut rng, Some(3000));
        assert!(
            c.workloads.len() >= 3000 && c.workloads.len() < 3100,
            "{}",
            c.workloads.len()
        );
        let namespaces: std::collections::HashSet<_> =
            c.workloads.iter().map(|w| &w.namespace).collect();
        assert!(namespaces.len() > 100);
    }
}
