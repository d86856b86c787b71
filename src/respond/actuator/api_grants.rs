//! What the Kubernetes actuator needs from the API server's RBAC, as data: every request
//! [`super::KubeActuator`] sends (resource, verb, scope), plus what those requests imply (a
//! server-side apply of a new object is also a create; Calico's tiered RBAC also checks the tier
//! and `tier.*` pseudo-resources). `config/rbac.yaml` must grant exactly this, nothing more:
//! `tests/privilege.rs` compares the manifest with these lists, and `tests/respond_actuators.rs`
//! checks that the requests the actuator really makes are the [`GrantKind::Request`] entries.
//!
//! Names are for the default tier (`respond.tier.name = "flowwarden-quarantine"`); with another
//! tier name, change the `resourceNames` in the manifest the same way.

/// Why a grant is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// The actuator sends this request.
    Request,
    /// A server-side apply that creates the object is also authorised as `create`.
    ApplyCreates,
    /// Calico's tiered RBAC checks it for a request on a policy in the tier (no request of its own).
    TierCheck,
}

/// One RBAC rule entry: an API group, a resource, a verb, optionally restricted to names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiGrant {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Resource (plural), or a Calico tier pseudo-resource (`tier.networkpolicies`).
    pub resource: &'static str,
    /// RBAC verb.
    pub verb: &'static str,
    /// `resourceNames` the rule is restricted to; empty = any name.
    pub names: &'static [&'static str],
    /// Why it is needed.
    pub kind: GrantKind,
}

const fn grant(
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
    names: &'static [&'static str],
    kind: GrantKind,
) -> ApiGrant {
    ApiGrant {
        group,
        resource,
        verb,
        names,
        kind,
    }
}

const CORE: &str = "";
const CALICO: &str = "projectcalico.org";
const NETWORKING: &str = "networking.k8s.io";
/// The default quarantine tier.
const TIER: &[&str] = &["flowwarden-quarantine"];
/// Policies in the default quarantine tier (Calico's tiered RBAC accepts this wildcard).
const IN_TIER: &[&str] = &["flowwarden-quarantine.*"];
/// The install-time GlobalNetworkPolicy (`<tier>.quarantine`).
const GLOBAL_POLICY: &[&str] = &["flowwarden-quarantine.quarantine"];

/// What `flowwarden run` needs (ClusterRole `flowwarden-responder`): in any namespace, because the
/// workload to quarantine can live in any namespace the responder's filters allow.
pub const RESPONDER_GRANTS: &[ApiGrant] = &[
    // mode label: list the workload's pods by its selector, merge-patch the quarantine label.
    grant(CORE, "pods", "list", &[], GrantKind::Request),
    grant(CORE, "pods", "patch", &[], GrantKind::Request),
    // mode policy: server-side apply / delete a Calico NetworkPolicy in the quarantine tier.
    grant(CALICO, "networkpolicies", "patch", &[], GrantKind::Request),
    grant(
        CALICO,
        "networkpolicies",
        "create",
        &[],
        GrantKind::ApplyCreates,
    ),
    grant(CALICO, "networkpolicies", "delete", &[], GrantKind::Request),
    grant(CALICO, "tiers", "get", TIER, GrantKind::TierCheck),
    grant(
        CALICO,
        "tier.networkpolicies",
        "patch",
        IN_TIER,
        GrantKind::TierCheck,
    ),
    grant(
        CALICO,
        "tier.networkpolicies",
        "create",
        IN_TIER,
        GrantKind::TierCheck,
    ),
    grant(
        CALICO,
        "tier.networkpolicies",
        "delete",
        IN_TIER,
        GrantKind::TierCheck,
    ),
    // mode k8s: create / delete a Kubernetes NetworkPolicy.
    grant(
        NETWORKING,
        "networkpolicies",
        "create",
        &[],
        GrantKind::Request,
    ),
    grant(
        NETWORKING,
        "networkpolicies",
        "delete",
        &[],
        GrantKind::Request,
    ),
];

/// What `flowwarden policy install --apply` needs (ClusterRole `flowwarden-installer`, not bound
/// by default: an administrator usually applies the tier once with `kubectl`).
pub const INSTALLER_GRANTS: &[ApiGrant] = &[
    grant(CALICO, "tiers", "patch", TIER, GrantKind::Request),
    grant(CALICO, "tiers", "create", TIER, GrantKind::ApplyCreates),
    grant(CALICO, "tiers", "get", TIER, GrantKind::TierCheck),
    grant(
        CALICO,
        "globalnetworkpolicies",
        "patch",
        GLOBAL_POLICY,
        GrantKind::Request,
    ),
    grant(
        CALICO,
        "globalnetworkpolicies",
        "create",
        GLOBAL_POLICY,
        GrantKind::ApplyCreates,
    ),
    grant(
        CALICO,
        "tier.globalnetworkpolicies",
        "patch",
        IN_TIER,
        GrantKind::TierCheck,
    ),
    grant(
        CALICO,
        "tier.globalnetworkpolicies",
        "create",
        IN_TIER,
        GrantKind::TierCheck,
    ),
];

/// What one raw API request needs from RBAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredGrant {
    /// API group (`""` for the core group).
    pub group: String,
    /// Resource (plural).
    pub resource: String,
    /// RBAC verb.
    pub verb: String,
    /// The object's name, when the request names one.
    pub name: Option<String>,
}

/// The RBAC grant a raw API request needs, from its method and path: `GET` on a collection is
/// `list`, on an object `get`; `POST` is `create`; `PATCH` `patch`; `PUT` `update`; `DELETE`
/// `delete`. `None` for a path that is not a resource path.
pub fn required_by_request(method: &str, path: &str) -> Option<RequiredGrant> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Core: api/v1/..., others: apis/<group>/<version>/...
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (resource, name) = match rest {
        ["namespaces", _ns, resource] => (*resource, None),
        ["namespaces", _ns, resource, name] => (*resource, Some(*name)),
        [resource] => (*resource, None),
        [resource, name] => (*resource, Some(*name)),
        _ => return None,
    };
    let verb = match (method, name) {
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", None) => "create",
        ("PATCH", Some(_)) => "patch",
        ("PUT", Some(_)) => "update",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        _ => return None,
    };
    Some(RequiredGrant {
        group: group.to_string(),
        resource: resource.to_string(),
        verb: verb.to_string(),
        name: name.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_rbac_verbs() {
        let r = |m, p| required_by_request(m, p).map(|g| (g.group, g.resource, g.verb, g.name));
        assert_eq!(
            r("GET", "/api/v1/namespaces/shop/pods"),
            Some(("".into(), "pods".into(), "list".into(), None))
        );
        assert_eq!(
            r("PATCH", "/apis/projectcalico.org/v3/tiers/t"),
            Some((
                "projectcalico.org".into(),
                "tiers".into(),
                "patch".into(),
                Some("t".into())
            ))
        );
        assert_eq!(r("GET", "/version"), None);
    }

    #[test]
    fn every_request_grant_has_its_implied_grants() {
        // A server-side apply (patch) of a Calico policy in the tier needs create, and the tier's
        // own checks; a grant list missing one of them would fail in a real cluster only.
        for grants in [RESPONDER_GRANTS, INSTALLER_GRANTS] {
            for g in grants.iter().filter(|g| g.kind == GrantKind::Request) {
                if g.group == CALICO && g.verb == "patch" {
                    assert!(grants
                        .iter()
                        .any(|c| c.resource == g.resource && c.verb == "create"));
                }
                if g.group == CALICO && g.resource.ends_with("networkpolicies") {
                    let tiered = format!("tier.{}", g.resource);
                    assert!(
                        grants
                            .iter()
                            .any(|c| c.resource == tiered && c.verb == g.verb),
                        "{tiered} {}",
                        g.verb
                    );
                    assert!(grants
                        .iter()
                        .any(|c| c.resource == "tiers" && c.verb == "get"));
                }
            }
        }
    }
}
