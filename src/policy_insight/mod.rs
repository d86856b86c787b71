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
    /// Flows remembered at most; when full, the eighth idle longest is evicted (counted). 0 (the
    /// default) derives it from `limits.state_memory` ([`PolicyDriftConfig::max_flows`]).
    pub max_entries: usize,
}

/// Flows a derived ledger holds at least: the old fixed default, so a small budget (512 MiB derives
/// about 76k) remembers no fewer flows than before.
pub const MIN_DERIVED_FLOWS: usize = 200_000;
/// A derived ledger takes this fraction of `limits.state_memory`: a cluster given a larger budget
/// for more workloads has more flows too, and a ledger smaller than its flows forgets each one
/// before it is seen again, and scans itself to evict an eighth every time that eighth fills up.
const LEDGER_SHARE: f64 = 1.0 / 16.0;

impl Default for PolicyDriftConfig {
    fn default() -> Self {
        PolicyDriftConfig {
            enabled: true,
            staged_impact: true,
            min_records: 3,
            max_entries: 0,
        }
    }
}

impl PolicyDriftConfig {
    /// Flows the ledger may hold under a `state_memory` budget of that many bytes: `max_entries`
    /// when set, else a sixteenth of the budget at the ledger's worst-case bytes per flow, and
    /// [`MIN_DERIVED_FLOWS`] at least (about 2.4 million flows at 16 GiB).
    pub fn max_flows(&self, state_memory: usize) -> usize {
        if self.max_entries > 0 {
            return self.max_entries;
        }
        let derived = (state_memory as f64 * LEDGER_SHARE) as usize / ledger::flow_bytes();
        derived.max(MIN_DERIVED_FLOWS)
    }

    /// Checks values; errors name the key (relative to `detect.policy_drift`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.min_records == 0 {
            return Err(("min_records".into(), "must be at least 1".into()));
        }
        if self.max_entries != 0 && self.max_entries < 8 {
            return Err((
                "max_entries".into(),
                "must be 0 (derived from limits.state_memory) or at least 8".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_cap_follows_the_state_budget_unless_set() {
        let derived = PolicyDriftConfig::default();
        assert_eq!(derived.validate(), Ok(()));
        // The default 512 MiB budget keeps the floor; a budget for a million workloads holds
        // millions of flows, in proportion to it.
        assert_eq!(derived.max_flows(512 << 20), MIN_DERIVED_FLOWS);
        let big = derived.max_flows(16 << 30);
        assert!(big > 2_000_000, "{big}");
        assert_eq!(derived.max_flows(32 << 30) / 2, big);
        assert!(big * ledger::flow_bytes() <= (16usize << 30) / 16);
        let set = PolicyDriftConfig {
            max_entries: 1000,
            ..derived.clone()
        };
        assert_eq!(set.max_flows(16 << 30), 1000);
        let tiny = PolicyDriftConfig {
            max_entries: 4,
            ..derived
        };
        let (key, why) = tiny.validate().expect_err("4 flows is too few");
        assert_eq!(key, "max_entries");
        assert!(why.contains("at least 8"), "{why}");
    }
}
