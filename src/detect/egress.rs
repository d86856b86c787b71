//! Egress: traffic leaving the cluster. Two signals: new public destinations (a (destination, port)
//! the workload never used, weighted up when no other workload uses the port), and volume to public
//! networks far above history (exfiltration). For `--scores`, every public edge also gets a soft
//! novelty score weighted by how few workloads share the destination.

use crate::alert::Band;
use crate::baseline::{peer_key, Baseline, Feature};
use crate::detect::{
    peer_names, robust_z, severity_for, top_peers_json, DetectContext, Detector, Finding, Scope,
};
use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// `[detect.egress]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Summed weight of new public destinations that raises an alert (a new destination on a port no
    /// other workload uses weighs 1, on a shared port 0.4).
    pub new_public_threshold: f64,
    /// Bytes to public networks over history: robust z-score.
    pub exfil_z_threshold: f64,
    /// ... and ratio to the mean.
    pub exfil_ratio: f64,
    /// ... and minimum increase in bytes.
    pub exfil_min_bytes: u64,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            enabled: true,
            new_public_threshold: 1.0,
            exfil_z_threshold: 6.0,
            exfil_ratio: 5.0,
            exfil_min_bytes: 20_000_000,
        }
    }
}

/// The egress detector.
pub struct Egress;

impl Detector for Egress {
    fn name(&self) -> &'static str {
        "egress"
    }

    fn evaluate(
        &self,
        ctx: &DetectContext<'_>,
        workload: WorkloadId,
        agg: &WindowAggregate,
        baseline: Option<&Baseline>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &ctx.cfg.egress;
        let warm = ctx.is_warm(baseline);
        let mut new_weight = 0.0;
        let mut new_peers = Vec::new();
        let mut new_ports = Vec::new();
        for p in agg.peers.iter().filter(|p| p.egress && p.peer_public) {
            let known = baseline.is_some_and(|b| b.knows(peer_key(p)));
            if known {
                continue;
            }
            let sharers = ctx.cluster.dest_others(p.peer_group, agg.group);
            let port_rare = ctx.cluster.port_others(p.port, p.proto, agg.group) == 0;
            if ctx.soft {
                // Soft novelty: a never-seen public edge, discounted by how many workloads share it.
                let s = 0.5 / (1.0 + sharers as f64);
                out.push(soft(self.name(), workload, p.peer, p.port, s));
            }
            if warm {
                new_weight += if port_rare { 1.0 } else { 0.4 };
                new_peers.push(p.peer);
                if !new_ports.contains(&p.port) {
                    new_ports.push(p.port);
                }
            }
        }
        let score = new_weight / cfg.new_public_threshold;
        if score >= 1.0 {
            out.push(Finding {
                detector: self.name(),
                workload,
                score,
                severity: severity_for(score, 55),
                feature: "new_public_destinations",
                observed: new_peers.len() as f64,
                expected: 0.0,
                band: Band {
                    lower: 0.0,
                    upper: 0.0,
                },
                description: format!(
                    "{} new public destination(s) on port(s) {:?}: {}",
                    new_peers.len(),
                    new_ports,
                    peer_names(&new_peers[..new_peers.len().min(5)]).join(", ")
                ),
                evidence: serde_json::json!({
                    "new_destinations": peer_names(&new_peers),
                    "ports": new_ports,
                    "bytes_to_public": agg.bytes_to_public,
                }),
                peer: (new_peers.len() == 1).then(|| new_peers[0]),
                dest_port: (new_ports.len() == 1).then(|| new_ports[0]),
                scope: Scope {
                    egress: true,
                    peers: new_peers,
                    ports: new_ports,
                    denied_only: false,
                },
            });
        }
        let Some(b) = baseline.filter(|_| warm) else {
            return;
        };
        let x = agg.bytes_to_public as f64;
        let (mean, sd) = b.usual(Feature::BytesToPublic, ctx.window_start);
        let z = robust_z(x, mean, sd, 0.1, 1000.0);
        let exfil = (z / cfg.exfil_z_threshold)
            .min(x / mean.max(1.0) / cfg.exfil_ratio)
            .min((x - mean) / cfg.exfil_min_bytes as f64);
        if exfil >= 1.0 || (ctx.soft && exfil > 0.2) {
            let top = agg
                .peers
                .iter()
                .filter(|p| p.egress && p.peer_public)
                .max_by_key(|p| (p.bytes_out, std::cmp::Reverse(p.peer)));
            out.push(Finding {
                detector: self.name(),
                workload,
                score: exfil,
                severity: severity_for(exfil, 70),
                feature: "bytes_to_public",
                observed: x,
                expected: mean,
                band: Band {
                    lower: 0.0,
                    upper: mean + cfg.exfil_z_threshold * sd.max(0.1 * mean),
                },
                description: format!(
                    "{:.1} MB to public networks against a usual {:.1} MB",
                    x / 1e6,
                    mean / 1e6
                ),
                evidence: serde_json::json!({
                    "bytes_to_public": agg.bytes_to_public,
                    "top_public_peers": top_peers_json(agg, true, 5, |p| if p.peer_public { p.bytes_out } else { 0 }),
                }),
                peer: top.map(|p| p.peer),
                dest_port: top.map(|p| p.port),
                scope: Scope {
                    egress: true,
                    peers: top.map(|p| vec![p.peer]).unwrap_or_default(),
                    ..Scope::default()
                },
            });
        }
    }
}

/// A below-threshold finding on one edge, for per-record scores only.
pub fn soft(
    detector: &'static str,
    workload: WorkloadId,
    peer: WorkloadId,
    port: u16,
    score: f64,
) -> Finding {
    Finding {
        detector,
        workload,
        score,
        severity: 0,
        feature: "edge",
        observed: 0.0,
        expected: 0.0,
        band: Band::default(),
        description: String::new(),
        evidence: serde_json::Value::Null,
        peer: Some(peer),
        dest_port: Some(port),
        scope: Scope {
            egress: true,
            peers: vec![peer],
            ports: vec![port],
            denied_only: false,
        },
    }
}
