//! Calico policy strings and Goldmane policy hits, parsed into one [`PolicyHit`].
//!
//! Felix writes policies as strings in three shapes (see the reference):
//! - `idx|tier|name|action` (old, no rule index)
//! - `idx|tier|name|action|rule` where `name` is `tier.policy`, `ns/tier.policy`, `ns/knp.default.x`,
//!   `staged:`-prefixed or `__PROFILE__.kns.<ns>`
//! - `idx|tier|kind:[ns/]name|action|rule` (Calico 3.32+)
//!
//! Goldmane sends the same facts as a JSON object with integer enums. Both parse into borrowed
//! [`PolicyHit`]s so the hot path copies no string.

use crate::flow::Action;
use thiserror::Error;

/// What kind of policy produced a hit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// projectcalico.org/v3 NetworkPolicy (namespaced).
    CalicoNetworkPolicy,
    /// projectcalico.org/v3 GlobalNetworkPolicy.
    GlobalNetworkPolicy,
    /// Staged (namespaced) NetworkPolicy.
    StagedNetworkPolicy,
    /// StagedGlobalNetworkPolicy.
    StagedGlobalNetworkPolicy,
    /// StagedKubernetesNetworkPolicy.
    StagedKubernetesNetworkPolicy,
    /// networking.k8s.io/v1 NetworkPolicy.
    KubernetesNetworkPolicy,
    /// Kubernetes (Admin/Baseline) ClusterNetworkPolicy.
    ClusterNetworkPolicy,
    /// A Calico profile (`__PROFILE__`), e.g. the namespace's default allow.
    Profile,
    /// The implicit end-of-tier rule.
    EndOfTier,
    /// Not stated or not recognised.
    #[default]
    Unknown,
}

impl PolicyKind {
    /// Kind from the 3.32+ prefix (`gnp`, `np`, ...).
    pub fn from_prefix(prefix: &str) -> Option<Self> {
        Some(match prefix {
            "gnp" => Self::GlobalNetworkPolicy,
            "np" => Self::CalicoNetworkPolicy,
            "knp" => Self::KubernetesNetworkPolicy,
            "snp" => Self::StagedNetworkPolicy,
            "sgnp" => Self::StagedGlobalNetworkPolicy,
            "sknp" => Self::StagedKubernetesNetworkPolicy,
            "kcnp" => Self::ClusterNetworkPolicy,
            "pro" => Self::Profile,
            "eot" => Self::EndOfTier,
            _ => return None,
        })
    }

    /// Kind from Goldmane's `PolicyKind` enum value.
    pub fn from_goldmane(v: i64) -> Self {
        match v {
            1 => Self::CalicoNetworkPolicy,
            2 => Self::GlobalNetworkPolicy,
            3 => Self::StagedNetworkPolicy,
            4 => Self::StagedGlobalNetworkPolicy,
            5 => Self::StagedKubernetesNetworkPolicy,
            6 => Self::KubernetesNetworkPolicy,
            9 => Self::Profile,
            10 => Self::EndOfTier,
            11 => Self::ClusterNetworkPolicy,
            _ => Self::Unknown,
        }
    }

    /// Whether the policy is staged (recorded, not enforced).
    pub fn is_staged(self) -> bool {
        matches!(
            self,
            Self::StagedNetworkPolicy
                | Self::StagedGlobalNetworkPolicy
                | Self::StagedKubernetesNetworkPolicy
        )
    }
}

/// One policy decision on a flow: (index, tier, kind, namespace, name, action, rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyHit<'a> {
    /// Order of the hit among the flow's policies.
    pub index: i32,
    /// Tier name (`default`, `security`, `__PROFILE__`, ...).
    pub tier: &'a str,
    /// Policy kind.
    pub kind: PolicyKind,
    /// Namespace for namespaced policies, empty for global ones.
    pub namespace: &'a str,
    /// Policy name without tier prefix, namespace or kind (e.g. `default-deny`).
    pub name: &'a str,
    /// allow, deny or pass.
    pub action: Action,
    /// Rule index; -1 end-of-tier default, -2 unknown (also when the string had no rule).
    pub rule: i32,
}

/// Why a policy string did not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyParseError {
    /// Fewer than four `|`-separated parts.
    #[error("policy string has {0} '|'-separated parts, expected 4 or 5")]
    Parts(usize),
    /// The index is not an integer.
    #[error("policy index {0:?} is not an integer")]
    Index(String),
    /// The rule is not an integer.
    #[error("policy rule {0:?} is not an integer")]
    Rule(String),
    /// The action is not allow, deny or pass.
    #[error("policy action {0:?} is not allow, deny or pass")]
    Action(String),
}

/// Rule index used when the string carries none.
pub const RULE_UNKNOWN: i32 = -2;

/// Parses a Felix policy string in any of its three shapes.
pub fn parse_policy_str(s: &str) -> Result<PolicyHit<'_>, PolicyParseError> {
    let mut parts = s.splitn(5, '|');
    let (Some(idx), Some(tier), Some(name_part), Some(action)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PolicyParseError::Parts(s.split('|').count()));
    };
    let rule = match parts.next() {
        None => RULE_UNKNOWN,
        Some(r) => r
            .trim()
            .parse::<i32>()
            .map_err(|_| PolicyParseError::Rule(r.to_string()))?,
    };
    let index = idx
        .trim()
        .parse::<i32>()
        .map_err(|_| PolicyParseError::Index(idx.to_string()))?;
    let action = match action {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        "pass" => Action::Pass,
        other => return Err(PolicyParseError::Action(other.to_string())),
    };
    let (kind, namespace, name) = parse_policy_name(tier, name_part);
    Ok(PolicyHit {
        index,
        tier,
        kind,
        namespace,
        name,
        action,
        rule,
    })
}

/// Splits the name part of a policy string into (kind, namespace, bare name).
fn parse_policy_name<'a>(tier: &str, name_part: &'a str) -> (PolicyKind, &'a str, &'a str) {
    // Calico 3.32+: `kind:[ns/]name`.
    if let Some((prefix, rest)) = name_part.split_once(':') {
        if let Some(kind) = PolicyKind::from_prefix(prefix) {
            let (ns, name) = split_namespace(rest);
            return (kind, ns, name);
        }
    }
    let (staged, name_part) = match name_part.strip_prefix("staged:") {
        Some(rest) => (true, rest),
        None => (false, name_part),
    };
    if let Some(ns) = name_part.strip_prefix("__PROFILE__.kns.") {
        // The profile's own name is `kns.<ns>`; `__PROFILE__.` is the tier prefix.
        let name = &name_part["__PROFILE__.".len()..];
        return (PolicyKind::Profile, ns, name);
    }
    if tier == "__PROFILE__" || name_part.starts_with("__PROFILE__") {
        let name = name_part.strip_prefix("__PROFILE__.").unwrap_or(name_part);
        return (PolicyKind::Profile, "", name);
    }
    let (ns, qualified) = split_namespace(name_part);
    if let Some(knp) = qualified.strip_prefix("knp.default.") {
        let kind = if staged {
            PolicyKind::StagedKubernetesNetworkPolicy
        } else {
            PolicyKind::KubernetesNetworkPolicy
        };
        return (kind, ns, knp);
    }
    // `tier.policy`: strip the tier prefix when present.
    let name = qualified
        .strip_prefix(tier)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or(qualified);
    let kind = match (staged, ns.is_empty()) {
        (false, true) => PolicyKind::GlobalNetworkPolicy,
        (false, false) => PolicyKind::CalicoNetworkPolicy,
        (true, true) => PolicyKind::StagedGlobalNetworkPolicy,
        (true, false) => PolicyKind::StagedNetworkPolicy,
    };
    (kind, ns, name)
}

fn split_namespace(s: &str) -> (&str, &str) {
    match s.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => ("", s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_shape_without_rule() {
        let p = parse_policy_str("0|__PROFILE__|__PROFILE__.kns.kube-system|allow").unwrap();
        assert_eq!(p.index, 0);
        assert_eq!(p.tier, "__PROFILE__");
        assert_eq!(p.kind, PolicyKind::Profile);
        assert_eq!(p.namespace, "kube-system");
        assert_eq!(p.name, "kns.kube-system");
        assert_eq!(p.action, Action::Allow);
        assert_eq!(p.rule, RULE_UNKNOWN);
    }

    #[test]
    fn global_and_namespaced_with_rule() {
        let p = parse_policy_str("1|security|security.quarantine|deny|-1").unwrap();
        assert_eq!(
            (
                p.index,
                p.tier,
                p.kind,
                p.namespace,
                p.name,
                p.action,
                p.rule
            ),
            (
                1,
                "security",
                PolicyKind::GlobalNetworkPolicy,
                "",
                "quarantine",
                Action::Deny,
                -1
            )
        );
        let p = parse_policy_str("2|default|shop/default.allow-frontend|allow|0").unwrap();
        assert_eq!(
            (p.kind, p.namespace, p.name, p.rule),
            (PolicyKind::CalicoNetworkPolicy, "shop", "allow-frontend", 0)
        );
        let p = parse_policy_str("0|default|shop/knp.default.deny-all|deny|-1").unwrap();
        assert_eq!(
            (p.kind, p.namespace, p.name),
            (PolicyKind::KubernetesNetworkPolicy, "shop", "deny-all")
        );
        let p = parse_policy_str("0|default|staged:shop/default.trial|deny|3").unwrap();
        assert_eq!(
            (p.kind, p.namespace, p.name),
            (PolicyKind::StagedNetworkPolicy, "shop", "trial")
        );
    }

    #[test]
    fn kind_prefixed_shape() {
        let p = parse_policy_str("0|platform|gnp:platform.block-egress|pass|2").unwrap();
        assert_eq!(
            (p.kind, p.namespace, p.name, p.action, p.rule),
            (
                PolicyKind::GlobalNetworkPolicy,
                "",
                "platform.block-egress",
                Action::Pass,
                2
            )
        );
        let p = parse_policy_str("3|default|np:shop/default.allow-web|allow|1").unwrap();
        assert_eq!(
            (p.kind, p.namespace, p.name),
            (PolicyKind::CalicoNetworkPolicy, "shop", "default.allow-web")
        );
        let p = parse_policy_str("4|default|eot:default|deny|-1").unwrap();
        assert_eq!(p.kind, PolicyKind::EndOfTier);
    }

    #[test]
    fn errors_name_the_part() {
        assert_eq!(parse_policy_str("x|y"), Err(PolicyParseError::Parts(2)));
        assert!(matches!(
            parse_policy_str("a|t|n|allow"),
            Err(PolicyParseError::Index(_))
        ));
        assert!(matches!(
            parse_policy_str("0|t|n|maybe"),
            Err(PolicyParseError::Action(_))
        ));
        assert!(matches!(
            parse_policy_str("0|t|n|allow|x"),
            Err(PolicyParseError::Rule(_))
        ));
    }
}
