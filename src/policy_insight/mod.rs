//! Policy-aware detection: what Calico's `policies` field says about each flow, used for the
//! questions auditors ask (SOC 2 CC6.1/CC6.6 least privilege, CC7.1/CC8.1 change detection).
//!
//! - [`ledger`]: the per-flow record of which policy decided it; raises `policy_loosened`,
//!   `policy_drift` and `staged_policy_impact` findings in the pipeline;
//! - [`impact`]: `flowwarden staged-impact`, the flows staged policies would deny that are allowed today;
//! - [`recommend`]: `flowwarden recommend`, least-privilege projectcalico.org/v3 policies from usage;
//! - [`evaluate`]: a small evaluator of those policies, for the round-trip check;
//! - [`cli`]: the two subcommands.
//!
//! It reads decoded [`crate::flow::FlowRecord`]s only; it must not touch baselines or windows.

pub mod cli;
pub mod decision;
pub mod evaluate;
pub mod impact;
pub mod ledger;
pub mod recommend;

pub use ledger::{PolicyLedger, PolicyLedgerState};

use serde::{Deserialize, Serialize};

/// `[detect.policy_drift]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyDriftConfig {
    /// Keep the policy ledger and raise `policy_loosened` / `policy_drift`.
    pub enabled: bool,
    /// Also raise `staged_policy_impact` when a staged policy would deny established traffic.
    pub staged_impact: bool,
    /// Records a decision needs before a change of it is reported (one flush window of one node is
    /// one record), and allowed records a flow needs to count as established for staged impact.
    pub min_records: u64,
    /// Flows remembered at most; when full, the eighth idle longest is evicted (counted).
    pub max_entries: usize,
}

impl Default for PolicyDriftConfig {
    fn default() -> Self {
        PolicyDriftConfig {
            enabled: true,
            staged_impact: true,
            min_records: 3,
            max_entries: 200_000,
        }
    }
}

impl PolicyDriftConfig {
    /// Checks values; errors name the key (relative to `detect.policy_drift`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.min_records == 0 {
            return Err(("min_records".into(), "must be at least 1".into()));
        }
        if self.max_entries < 8 {
            return Err(("max_entries".into(), "must be at least 8".into()));
        }
        Ok(())
    }
}
