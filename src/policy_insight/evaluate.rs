//! A small evaluator of projectcalico.org/v3 (Staged)NetworkPolicies, enough for the policies
//! `recommend` writes: equality selectors joined by `&&`, `namespaceSelector` on
//! `projectcalico.org/name`, protocol, ports, `nets`/`notNets`, `domains`, Allow/Deny rules, and the
//! end-of-tier deny for a selected endpoint. It is the round-trip check: flows replayed through the
//! recommended policies must not be denied. A selector it does not understand is an error, never a
//! silent match.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use thiserror::Error;

/// A policy document as written and read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoPolicy {
    /// `projectcalico.org/v3`.
    pub api_version: String,
    /// `StagedNetworkPolicy` or `NetworkPolicy`.
    pub kind: String,
    /// Name, namespace, annotations.
    pub metadata: Metadata,
    /// The policy.
    pub spec: PolicySpec,
}

/// `metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Policy name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Evidence and provenance.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// `spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// `Set` for staged policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_action: Option<String>,
    /// Tier.
    pub tier: String,
    /// Order within the tier (lower first).
    pub order: f64,
    /// Endpoints the policy applies to.
    pub selector: String,
    /// `Ingress`, `Egress`.
    pub types: Vec<String>,
    /// Ingress rules, in order.
    #[serde(default)]
    pub ingress: Vec<Rule>,
    /// Egress rules, in order.
    #[serde(default)]
    pub egress: Vec<Rule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// `Allow` or `Deny`.
    pub action: String,
    /// `TCP`, `UDP`, ... (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Peer and ports on the source side.
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    /// Peer and ports on the destination side.
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
}

/// `source` / `destination` of a rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityRule {
    /// Endpoint selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Namespace selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    /// Excluded CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    /// Domains (egress destinations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
}

impl EntityRule {
    fn is_empty(&self) -> bool {
        *self == EntityRule::default()
    }
}

/// Why a policy cannot be evaluated.
#[derive(Debug, Error, PartialEq)]
pub enum EvalError {
    /// A selector term that is not `key == 'value'` or `all()`.
    #[error("policy {0}: selector term {1:?} is not supported (only `key == 'value'` joined by &&, or all())")]
    Selector(String, String),
    /// A CIDR that does not parse.
    #[error("policy {0}: {1:?} is not a CIDR")]
    Cidr(String, String),
}

/// One end of a flow as the evaluator sees it.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// Namespace (`-` for networks).
    pub namespace: String,
    /// Labels `k=v` (pods).
    pub labels: Vec<String>,
    /// A pod (selectors apply) rather than a network.
    pub pod: bool,
    /// Address when known.
    pub ip: Option<IpAddr>,
    /// Public network (`pub`) rather than private.
    pub public: bool,
    /// Domain the flow log linked to it.
    pub domain: Option<String>,
}

/// The verdict of the evaluated policies on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideVerdict {
    /// No policy selects the endpoint: the existing policies decide.
    NotSelected,
    /// A rule allows.
    Allow,
    /// A rule denies, or the end of the tier does.
    Deny,
}

/// Parsed equality terms of a selector.
type Terms = Vec<(String, String)>;

fn parse_selector(policy: &str, s: &str) -> Result<Terms, EvalError> {
    let s = s.trim();
    if s.is_empty() || s == "all()" {
        return Ok(Vec::new());
    }
    s.split("&&")
        .map(|t| {
            let t = t.trim();
            let bad = || EvalError::Selector(policy.to_string(), t.to_string());
            let (k, v) = t.split_once("==").ok_or_else(bad)?;
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .ok_or_else(bad)?;
            Ok((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

fn matches(terms: &Terms, labels: &[String]) -> bool {
    terms.iter().all(|(k, v)| {
        labels
            .iter()
            .any(|l| l.split_once('=').is_some_and(|(lk, lv)| lk == k && lv == v))
    })
}

fn cidr_contains(policy: &str, cidr: &str, ip: IpAddr) -> Result<bool, EvalError> {
    let bad = || EvalError::Cidr(policy.to_string(), cidr.to_string());
    let (net, len) = cidr.split_once('/').ok_or_else(bad)?;
    let net: IpAddr = net.parse().map_err(|_| bad())?;
    let len: u32 = len.parse().map_err(|_| bad())?;
    Ok(match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    })
}

/// The private ranges `recommend` writes for `pvt` and excludes from `pub`.
pub const PRIVATE_NETS: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

fn peer_matches(policy: &str, e: &EntityRule, peer: &Peer) -> Result<bool, EvalError> {
    if e.selector.is_some() || e.namespace_selector.is_some() {
        if !peer.pod {
            return Ok(false);
        }
        let sel = parse_selector(policy, e.selector.as_deref().unwrap_or("all()"))?;
        let ns = parse_selector(policy, e.namespace_selector.as_deref().unwrap_or("all()"))?;
        let ns_labels = [format!("projectcalico.org/name={}", peer.namespace)];
        if !matches(&sel, &peer.labels) || !matches(&ns, &ns_labels) {
            return Ok(false);
        }
    }
    if !e.domains.is_empty() && !peer.domain.as_ref().is_some_and(|d| e.domains.contains(d)) {
        return Ok(false);
    }
    if !e.nets.is_empty() {
        if peer.pod {
            return Ok(false);
        }
        match peer.ip {
            Some(ip) => {
                let mut inside = false;
                for n in &e.nets {
                    inside |= cidr_contains(policy, n, ip)?;
                }
                for n in &e.not_nets {
                    inside &= !cidr_contains(policy, n, ip)?;
                }
                if !inside {
                    return Ok(false);
                }
            }
            // An address aggregated away: only its class (`pub` / `pvt`) is known.
            None => {
                let class = if peer.public {
                    "0.0.0.0/0"
                } else {
                    PRIVATE_NETS[0]
                };
                if !e.nets.iter().any(|n| n == class) {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

/// Policies ready to evaluate.
#[derive(Debug, Clone)]
pub struct Evaluator {
    policies: Vec<(CalicoPolicy, Terms)>,
}

impl Evaluator {
    /// Checks every selector once.
    pub fn new(mut policies: Vec<CalicoPolicy>) -> Result<Self, EvalError> {
        policies.sort_by(|a, b| {
            a.spec
                .order
                .total_cmp(&b.spec.order)
                .then(a.metadata.name.cmp(&b.metadata.name))
        });
        let policies = policies
            .into_iter()
            .map(|p| {
                let terms = parse_selector(&p.metadata.name, &p.spec.selector)?;
                Ok((p, terms))
            })
            .collect::<Result<Vec<_>, EvalError>>()?;
        Ok(Evaluator { policies })
    }

    /// The verdict for the `ingress` or egress side of `subject` talking to `peer` on `port`.
    pub fn side(
        &self,
        ingress: bool,
        subject: &Peer,
        peer: &Peer,
        port: u16,
        proto: &str,
    ) -> Result<SideVerdict, EvalError> {
        let ty = if ingress { "Ingress" } else { "Egress" };
        let mut selected = false;
        for (p, terms) in &self.policies {
            if !subject.pod
                || p.metadata.namespace != subject.namespace
                || !p.spec.types.iter().any(|t| t == ty)
                || !matches(terms, &subject.labels)
            {
                continue;
            }
            selected = true;
            let rules = if ingress {
                &p.spec.ingress
            } else {
                &p.spec.egress
            };
            for r in rules {
                if r.protocol
                    .as_deref()
                    .is_some_and(|x| !x.eq_ignore_ascii_case(proto))
                {
                    continue;
                }
                let (peer_side, port_side) = if ingress {
                    (&r.source, &r.destination)
                } else {
                    (&r.destination, &r.destination)
                };
                if !port_side.ports.is_empty() && !port_side.ports.contains(&port) {
                    continue;
                }
                if !peer_matches(&p.metadata.name, peer_side, peer)? {
                    continue;
                }
                return Ok(if r.action == "Allow" {
                    SideVerdict::Allow
                } else {
                    SideVerdict::Deny
                });
            }
        }
        // A selected endpoint that no rule allowed meets the tier's end: deny.
        Ok(if selected {
            SideVerdict::Deny
        } else {
            SideVerdict::NotSelected
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> CalicoPolicy {
        serde_yaml::from_str(yaml).expect("test policy parses")
    }

    const CART: &str = r#"
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: lp-cart, namespace: shop}
spec:
  tier: default
  order: 100
  selector: app == 'cart'
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == 'frontend', namespaceSelector: projectcalico.org/name == 'shop'}
    destination: {ports: [7070]}
  - action: Deny
  egress:
  - action: Allow
    protocol: TCP
    destination: {nets: [0.0.0.0/0], notNets: [10.0.0.0/8], ports: [443]}
"#;

    fn pod(ns: &str, app: &str) -> Peer {
        Peer {
            namespace: ns.into(),
            labels: vec![format!("app={app}"), "pod-template-hash=abc12".into()],
            pod: true,
            ..Peer::default()
        }
    }

    #[test]
    fn rules_in_order_then_the_end_of_tier_denies() {
        let ev = Evaluator::new(vec![policy(CART)]).expect("valid");
        let cart = pod("shop", "cart");
        let v = |ingress, peer: &Peer, port, proto| {
            ev.side(ingress, &cart, peer, port, proto).expect("ok")
        };
        assert_eq!(
            v(true, &pod("shop", "frontend"), 7070, "tcp"),
            SideVerdict::Allow
        );
        assert_eq!(
            v(true, &pod("shop", "frontend"), 7071, "tcp"),
            SideVerdict::Deny
        );
        assert_eq!(
            v(true, &pod("other", "frontend"), 7070, "tcp"),
            SideVerdict::Deny
        );
        assert_eq!(
            v(true, &pod("shop", "frontend"), 7070, "udp"),
            SideVerdict::Deny
        );
        let public = Peer {
            public: true,
            ..Peer::default()
        };
        assert_eq!(v(false, &public, 443, "tcp"), SideVerdict::Allow);
        let inside = Peer {
            ip: Some("10.1.2.3".parse().expect("ip")),
            ..Peer::default()
        };
        assert_eq!(v(false, &inside, 443, "tcp"), SideVerdict::Deny, "notNets");
        let other = pod("shop", "email");
        assert_eq!(
            ev.side(true, &other, &cart, 1, "tcp").expect("ok"),
            SideVerdict::NotSelected
        );
    }

    #[test]
    fn unsupported_selectors_are_errors() {
        let mut p = policy(CART);
        p.spec.selector = "app in {'a','b'}".into();
        assert!(matches!(
            Evaluator::new(vec![p]),
            Err(EvalError::Selector(..))
        ));
    }
}
