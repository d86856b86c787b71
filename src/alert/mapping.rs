//! What each detector means to an analyst and an auditor: MITRE ATT&CK technique and tactic, SOC 2
//! criteria, and mitigation text. One table, so every alert of a detector says the same thing.

/// The fixed vocabulary of one detector.
#[derive(Debug, Clone, Copy)]
pub struct DetectorMapping {
    /// Detector name as it appears in alerts.
    pub detector: &'static str,
    /// MITRE ATT&CK tactic.
    pub mitre_tactic: &'static str,
    /// MITRE ATT&CK technique ids.
    pub mitre_ids: &'static [&'static str],
    /// SOC 2 criteria the alert evidences.
    pub soc2: &'static [&'static str],
    /// What an analyst should do.
    pub mitigations: &'static [&'static str],
}

const SOC2: &[&str] = &["CC7.2", "CC7.3"];

/// Every detector's mapping.
pub const MAPPINGS: &[DetectorMapping] = &[
    DetectorMapping {
        detector: "port_scan",
        mitre_tactic: "Discovery",
        mitre_ids: &["T1046"],
        soc2: SOC2,
        mitigations: &[
            "Check whether the workload runs a scanner legitimately; if not, isolate it and inspect its image and process list.",
            "Deny undeclared egress from the workload with a Calico policy.",
        ],
    },
    DetectorMapping {
        detector: "ip_sweep",
        mitre_tactic: "Discovery",
        mitre_ids: &["T1018", "T1046"],
        soc2: SOC2,
        mitigations: &[
            "Confirm the sweep is not a monitoring or service-discovery job; if not, isolate the workload.",
            "Restrict the workload's egress to the peers it needs.",
        ],
    },
    DetectorMapping {
        detector: "slow_scan",
        mitre_tactic: "Discovery",
        mitre_ids: &["T1046", "T1018"],
        soc2: SOC2,
        mitigations: &[
            "A scan spread over hours to stay under per-window thresholds is deliberate: isolate the workload and inspect it.",
            "Deny undeclared egress from the workload with a Calico policy.",
        ],
    },
    DetectorMapping {
        detector: "volume",
        mitre_tactic: "Exfiltration",
        mitre_ids: &["T1048", "T1030"],
        soc2: SOC2,
        mitigations: &[
            "Compare with recent deploys and batch jobs; if unexplained, isolate the workload and review what it sent.",
        ],
    },
    DetectorMapping {
        detector: "new_peer",
        mitre_tactic: "Lateral Movement",
        mitre_ids: &["T1021", "T1210"],
        soc2: SOC2,
        mitigations: &[
            "Check whether a new version added this dependency; if not, deny the connection and investigate the source.",
        ],
    },
    DetectorMapping {
        detector: "rarity",
        mitre_tactic: "Command and Control",
        mitre_ids: &["T1571"],
        soc2: SOC2,
        mitigations: &["Review why the workload uses a port or peer almost no other workload uses."],
    },
    DetectorMapping {
        detector: "deny_surge",
        mitre_tactic: "Discovery",
        mitre_ids: &["T1046", "T1595"],
        soc2: SOC2,
        mitigations: &[
            "Denied flows show the workload probing what policy blocks: inspect it and isolate if compromised.",
        ],
    },
    DetectorMapping {
        detector: "egress",
        mitre_tactic: "Exfiltration",
        mitre_ids: &["T1041", "T1048", "T1567"],
        soc2: SOC2,
        mitigations: &[
            "Block the external destination with a GlobalNetworkSet deny; isolate the workload if data left.",
        ],
    },
    DetectorMapping {
        detector: "beaconing",
        mitre_tactic: "Command and Control",
        mitre_ids: &["T1071", "T1573"],
        soc2: SOC2,
        mitigations: &[
            "Regular small connections to one rarely used external host look like C2: block the host and isolate the workload.",
        ],
    },
    DetectorMapping {
        detector: "edge_burst",
        mitre_tactic: "Impact",
        mitre_ids: &["T1498", "T1499"],
        soc2: SOC2,
        mitigations: &[
            "A sudden burst on one edge: rate-limit or deny the source; check the destination's health.",
        ],
    },
    DetectorMapping {
        detector: "multivariate",
        mitre_tactic: "Discovery",
        mitre_ids: &["T1046"],
        soc2: SOC2,
        mitigations: &["Several features moved together away from the workload's history and its peers: review the evidence."],
    },
    DetectorMapping {
        detector: "policy_loosened",
        mitre_tactic: "Defense Evasion",
        mitre_ids: &["T1562", "T1562.007"],
        soc2: &["CC6.6", "CC7.1", "CC8.1"],
        mitigations: &[
            "A flow that policy denied is now allowed: find the policy change (GitOps history, Calico audit log) and confirm it was approved; if not, revert it.",
        ],
    },
    DetectorMapping {
        detector: "policy_drift",
        mitre_tactic: "Defense Evasion",
        mitre_ids: &[],
        soc2: &["CC7.1", "CC8.1"],
        mitigations: &[
            "Another policy or tier now decides an established flow: check that the change was intended and reviewed.",
        ],
    },
    DetectorMapping {
        detector: "staged_policy_impact",
        mitre_tactic: "Impact",
        mitre_ids: &[],
        soc2: &["CC8.1"],
        mitigations: &[
            "A staged policy would deny traffic that flows today: add the missing allow rules before enforcing it (`flowwarden staged-impact` lists every flow).",
        ],
    },
    DetectorMapping {
        detector: "cardinality_flood",
        mitre_tactic: "Impact",
        mitre_ids: &["T1499", "T1562"],
        soc2: &["CC7.2"],
        mitigations: &[
            "Many never-seen identities at once (spoofed addresses, invented pod names) exhaust monitoring state: rate-limit or block the source named in the alert.",
            "While the flood lasts new workloads may go unmonitored: check flowwarden_evictions_total and flowwarden_records_over_budget_total.",
        ],
    },
];

/// Mapping of a detector; unknown detectors get a neutral one.
pub fn mapping(detector: &str) -> DetectorMapping {
    MAPPINGS
        .iter()
        .find(|m| m.detector == detector)
        .copied()
        .unwrap_or(DetectorMapping {
            detector: "unknown",
            mitre_tactic: "Discovery",
            mitre_ids: &[],
            soc2: SOC2,
            mitigations: &[],
        })
}
