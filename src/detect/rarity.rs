//! Rarity: a workload starts using a destination port that no other workload group in the cluster
//! uses (a miner's stratum port, an IRC C2 port, a backdoor). Only *new* pairs count: a service's own
//! long-standing unique dependency is normal in a microservice cluster.

use crate::alert::Band;
use crate::baseline::{peer_key, Baseline};
use crate::detect::{peer_names, severity_for, DetectContext, Detector, Finding, Scope};
use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// `[detect.rarity]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RarityConfig {
    /// Run this detector.
    pub enabled: bool,
    /// A port used by at most this many other groups counts as rare.
    pub max_other_users: usize,
    /// Rarity means little in a tiny cluster: active groups needed.
    pub min_active_groups: f64,
}

impl Default for RarityConfig {
    fn default() -> Self {
        RarityConfig {
            enabled: true,
            max_other_users: 0,
            min_active_groups: 5.0,
        }
    }
}

/// The rarity detector.
pub struct Rarity;

impl Detector for Rarity {
    fn name(&self) -> &'static str {
        "rarity"
    }

    fn evaluate(
        &self,
        ctx: &DetectContext<'_>,
        workload: WorkloadId,
        agg: &WindowAggregate,
        baseline: Option<&Baseline>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &ctx.cfg.rarity;
        if ctx.cluster.active_groups < cfg.min_active_groups {
            return;
        }
        let Some(b) = baseline.filter(|b| ctx.is_warm(Some(b))) else {
            return;
        };
        let mut peers = Vec::new();
        let mut ports = Vec::new();
        for p in agg
            .peers
            .iter()
            .filter(|p| p.egress && p.port != 0 && p.denied == 0)
        {
            if b.knows(peer_key(p)) {
                continue;
            }
            if ctx.cluster.port_others(p.port, p.proto, agg.group) <= cfg.max_other_users {
                peers.push(p.peer);
                if !ports.contains(&p.port) {
                    ports.push(p.port);
                }
            }
        }
        if ports.is_empty() {
            return;
        }
        let score = 1.0 + 0.25 * (ports.len() as f64 - 1.0).min(4.0);
        out.push(Finding {
            detector: self.name(),
            workload,
            score,
            severity: severity_for(score, 45),
            feature: "rare_dest_ports",
            observed: ports.len() as f64,
            expected: 0.0,
            band: Band {
                lower: 0.0,
                upper: 0.0,
            },
            description: format!(
                "started using port(s) {:?} that no other workload uses, to {}",
                ports,
                peer_names(&peers[..peers.len().min(5)]).join(", ")
            ),
            evidence: serde_json::json!({ "ports": ports, "peers": peer_names(&peers) }),
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
