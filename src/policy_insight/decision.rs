//! What decided a flow: [`Decision`] (policy, kind, action, rule) and the canonical policy names the
//! ledger and reports compare, whatever shape Felix wrote the policy string in.
//!
//! The decoder interns a hit as `tier|ns/name` exactly as parsed. The three string shapes name the
//! same policy differently (`shop/default.allow-web` vs `np:shop/default.allow-web` vs
//! `np:shop/allow-web`; profiles as `kns.shop` with or without a namespace), so
//! [`canonical_policy`] strips the tier prefix and the profile's namespace before anything compares.

use crate::flow::policy::{PolicyKind, RULE_UNKNOWN};
use crate::flow::Action;
use serde::{Deserialize, Serialize};

/// One policy decision on one side of a flow, with the policy as a canonical name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Decision {
    /// `tier|ns/name` (namespaced) or `tier|name` (global, profile), see [`canonical_policy`].
    pub policy: String,
    /// Kind of policy.
    pub kind: PolicyKind,
    /// allow, deny or pass.
    pub action: Action,
    /// Rule index; -1 end-of-tier default, -2 unknown (old Felix writes no rule).
    pub rule: i32,
}

impl Decision {
    /// The tier part of the policy name.
    pub fn tier(&self) -> &str {
        self.policy.split_once('|').map_or("", |(t, _)| t)
    }
    /// The policy part of the name (`ns/name` or `name`).
    pub fn name(&self) -> &str {
        self.policy
            .split_once('|')
            .map_or(self.policy.as_str(), |(_, n)| n)
    }
    /// Whether `other` is the same decision; an unknown rule matches any rule.
    pub fn same_as(&self, other: &Decision) -> bool {
        self.policy == other.policy
            && self.action == other.action
            && (self.rule == other.rule || self.rule == RULE_UNKNOWN || other.rule == RULE_UNKNOWN)
    }
    /// `default/shop/allow-payment rule 0: allow`, for descriptions.
    pub fn describe(&self) -> String {
        let rule = match self.rule {
            RULE_UNKNOWN => String::new(),
            -1 => " end-of-tier".to_string(),
            r => format!(" rule {r}"),
        };
        format!(
            "{} {} ({}{rule}: {})",
            self.tier(),
            self.name(),
            kind_name(self.kind),
            self.action.as_str()
        )
    }
    /// Evidence object: tier, policy, kind, rule, action.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tier": self.tier(),
            "policy": self.name(),
            "kind": kind_name(self.kind),
            "rule": self.rule,
            "action": self.action.as_str(),
        })
    }
}

/// Short name of a policy kind as Calico's 3.32+ strings write it (`np`, `gnp`, `snp`, ...).
pub fn kind_name(k: PolicyKind) -> &'static str {
    match k {
        PolicyKind::CalicoNetworkPolicy => "np",
        PolicyKind::GlobalNetworkPolicy => "gnp",
        PolicyKind::StagedNetworkPolicy => "snp",
        PolicyKind::StagedGlobalNetworkPolicy => "sgnp",
        PolicyKind::StagedKubernetesNetworkPolicy => "sknp",
        PolicyKind::KubernetesNetworkPolicy => "knp",
        PolicyKind::ClusterNetworkPolicy => "kcnp",
        PolicyKind::Profile => "profile",
        PolicyKind::EndOfTier => "eot",
        PolicyKind::Unknown => "unknown",
    }
}

/// The same policy's name whatever the string shape: `tier|ns/name` with any `tier.` prefix of the
/// name removed, and `__PROFILE__|kns.<ns>` for namespace profiles.
pub fn canonical_policy(raw: &str) -> String {
    let Some((tier, rest)) = raw.split_once('|') else {
        return raw.to_string();
    };
    let (ns, name) = match rest.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => ("", rest),
    };
    let name = name
        .strip_prefix(tier)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or(name);
    if tier == "__PROFILE__" || ns.is_empty() {
        format!("{tier}|{name}")
    } else {
        format!("{tier}|{ns}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_of_one_policy_is_one_name() {
        for raw in ["default|shop/allow-web", "default|shop/default.allow-web"] {
            assert_eq!(canonical_policy(raw), "default|shop/allow-web");
        }
        for raw in ["platform|platform.allow-dns", "platform|allow-dns"] {
            assert_eq!(canonical_policy(raw), "platform|allow-dns");
        }
        for raw in ["__PROFILE__|shop/kns.shop", "__PROFILE__|kns.shop"] {
            assert_eq!(canonical_policy(raw), "__PROFILE__|kns.shop");
        }
        assert_eq!(canonical_policy("junk"), "junk");
    }

    #[test]
    fn unknown_rules_match_any_rule_but_actions_must_agree() {
        let d = |rule, action| Decision {
            policy: "default|shop/allow-web".into(),
            kind: PolicyKind::CalicoNetworkPolicy,
            action,
            rule,
        };
        assert!(d(RULE_UNKNOWN, Action::Allow).same_as(&d(2, Action::Allow)));
        assert!(!d(1, Action::Allow).same_as(&d(2, Action::Allow)));
        assert!(!d(1, Action::Allow).same_as(&d(1, Action::Deny)));
        assert_eq!(
            d(0, Action::Allow).describe(),
            "default shop/allow-web (np rule 0: allow)"
        );
    }
}
