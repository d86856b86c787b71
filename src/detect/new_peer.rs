//! New peer / lateral movement: a (peer, port) this workload has never used, weighted up when it
//! crosses namespaces (lateral movement rarely stays inside one app) and down for DNS. Public
//! destinations are the egress detector's. Peers are compared by group, so a rollout's new replica
//! hash is not a new peer.

use crate::alert::Band;
use crate::baseline::{peer_key, Baseline};
use crate::detect::{peer_names, severity_for, DetectContext, Detector, Finding, Scope};
use crate::flow::{EndpointType, WorkloadId, WorkloadRegistry};
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// `[detect.new_peer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewPeerConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight of a new peer in another namespace.
    pub cross_namespace_weight: f64,
    /// Weight of a new peer in the same namespace.
    pub same_namespace_weight: f64,
    /// Weight of a new DNS (port 53) peer.
    pub dns_weight: f64,
    /// Summed weight that raises an alert.
    pub threshold: f64,
}

impl Default for NewPeerConfig {
    fn default() -> Self {
        NewPeerConfig {
            enabled: true,
            cross_namespace_weight: 1.0,
            same_namespace_weight: 0.34,
            dns_weight: 0.1,
            threshold: 1.0,
        }
    }
}

/// The new-peer detector.
pub struct NewPeer;

impl Detector for NewPeer {
    fn name(&self) -> &'static str {
        "new_peer"
    }

    fn evaluate(
        &self,
        ctx: &DetectContext<'_>,
        workload: WorkloadId,
        agg: &WindowAggregate,
        baseline: Option<&Baseline>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &ctx.cfg.new_peer;
        let Some(b) = baseline.filter(|b| ctx.is_warm(Some(b))) else {
            return;
        };
        let reg = WorkloadRegistry::global();
        let mut total = 0.0;
        let mut peers = Vec::new();
        let mut ports = Vec::new();
        let mut evidence = Vec::new();
        for p in agg
            .peers
            .iter()
            .filter(|p| p.egress && p.peer_kind != EndpointType::Net)
        {
            if b.knows(peer_key(p)) {
                continue;
            }
            // Only a new peer is looked up: the registry is a cache miss per workload at 100k.
            let cross_namespace = reg.get(p.peer).is_none_or(|i| {
                crate::flow::registry::namespace_hash(&i.namespace) != agg.namespace
            });
            let w = if p.port == 53 {
                cfg.dns_weight
            } else if cross_namespace {
                cfg.cross_namespace_weight
            } else {
                cfg.same_namespace_weight
            };
            total += w;
            peers.push(p.peer);
            if !ports.contains(&p.port) {
                ports.push(p.port);
            }
            evidence.push(serde_json::json!({
                "peer": reg.key(p.peer),
                "port": p.port,
                "cross_namespace": cross_namespace,
                "records": p.records,
                "denied": p.denied,
                "weight": w,
            }));
        }
        let score = total / cfg.threshold;
        if peers.is_empty() || (score < 1.0 && !ctx.soft) {
            return;
        }
        out.push(Finding {
            detector: self.name(),
            workload,
            score,
            severity: severity_for(score, 50),
            feature: "new_peers",
            observed: peers.len() as f64,
            expected: 0.0,
            band: Band { lower: 0.0, upper: 0.0 },
            description: format!(
                "{} never-seen peer(s): {}",
                peers.len(),
                peer_names(&peers[..peers.len().min(5)]).join(", ")
            ),
            evidence: serde_json::json!({ "new_peers": evidence.into_iter().take(20).collect::<Vec<_>>() }),
            peer: (peers.len() == 1).then(|| peers[0]),
            dest_port: (ports.len() == 1).then(|| ports[0]),
            scope: Scope {
                egress: true,
                peers,
                ports,
                denied_only: false,
            },
        });
    }
}
