//! Rendering of quarantine manifests (projectcalico.org/v3 and networking.k8s.io/v1) as YAML: the
//! install-time Tier and GlobalNetworkPolicy, and the per-action label patch, Calico NetworkPolicy or
//! Kubernetes NetworkPolicy.
//!
//! Pure functions from config and workload to YAML text; no decisions and no I/O.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::config::{QuarantineMode, RespondConfig};
use super::selector::{calico_selector, k8s_label_selector, QUARANTINE_LABEL};

/// Name of the tier-wide policy selecting quarantined pods (without the tier prefix).
pub const GLOBAL_POLICY_NAME: &str = "quarantine";
/// Order of the tier-wide policy inside the tier.
const GLOBAL_POLICY_ORDER: f64 = 1000.0;
/// Order of per-workload policies inside the tier (before the tier-wide one; same rules anyway).
const WORKLOAD_POLICY_ORDER: f64 = 100.0;
/// Label marking objects flowwarden manages.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "flowwarden");

/// What a rendered action targets, for actuators that need it in structured form.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedAction {
    /// YAML text (one document, with a leading comment).
    pub manifest: String,
    /// Object name for policy modes; empty in label mode.
    pub object_name: String,
}

/// `flowwarden policy install`: the Tier and the GlobalNetworkPolicy selecting `quarantine == "true"`.
pub fn render_install(cfg: &RespondConfig) -> String {
    let tier = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Tier",
        "metadata": { "name": cfg.tier.name, "labels": managed_labels() },
        "spec": { "order": cfg.tier.order },
    });
    let gnp = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {
            "name": format!("{}.{}", cfg.tier.name, GLOBAL_POLICY_NAME),
            "labels": managed_labels(),
        },
        "spec": {
            "tier": cfg.tier.name,
            "order": GLOBAL_POLICY_ORDER,
            "selector": format!("{QUARANTINE_LABEL} == \"true\""),
            "types": ["Ingress", "Egress"],
            "ingress": calico_ingress_rules(cfg),
            "egress": calico_egress_rules(cfg),
        },
    });
    let mode_note = match cfg.mode {
        QuarantineMode::Label => "mode label: flowwarden labels a workload's pods quarantine=true",
        QuarantineMode::Policy => "mode policy: per-workload NetworkPolicies go into this tier; the global policy also isolates pods labelled by hand",
        QuarantineMode::K8s => "mode k8s: this Calico tier is unused by flowwarden's actions (Kubernetes NetworkPolicies are used instead)",
    };
    format!(
        "# flowwarden quarantine tier (projectcalico.org/v3). Apply with: kubectl apply -f -\n# {mode_note}\n---\n{}---\n{}",
        to_yaml(&tier),
        to_yaml(&gnp)
    )
}

/// Renders the manifest for quarantining a workload (`release = false`) or the object/patch that a
/// release removes/reverts (`release = true`).
pub fn render_action(
    cfg: &RespondConfig,
    namespace: &str,
    name_aggr: &str,
    match_labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    release: bool,
) -> RenderedAction {
    match cfg.mode {
        QuarantineMode::Label => {
            let value = if release {
                Value::Null
            } else {
                Value::String("true".into())
            };
            let patch = json!({ "metadata": { "labels": { QUARANTINE_LABEL: value } } });
            let verb = if release { "remove label" } else { "label" };
            RenderedAction {
                manifest: format!(
                    "# merge patch ({verb}) for pods in namespace {namespace} matching {}\n{}",
                    k8s_label_selector(match_labels),
                    to_yaml(&patch)
                ),
                object_name: String::new(),
            }
        }
        QuarantineMode::Policy => {
            let name = format!("{}.{}", cfg.tier.name, policy_base_name(name_aggr));
            let np = json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "NetworkPolicy",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": managed_labels(),
                    "annotations": annotations,
                },
                "spec": {
                    "tier": cfg.tier.name,
                    "order": WORKLOAD_POLICY_ORDER,
                    "selector": calico_selector(match_labels),
                    "types": ["Ingress", "Egress"],
                    "ingress": calico_ingress_rules(cfg),
                    "egress": calico_egress_rules(cfg),
                },
            });
            RenderedAction {
                manifest: format!(
                    "# Calico NetworkPolicy isolating {namespace}/{name_aggr}\n{}",
                    to_yaml(&np)
                ),
                object_name: name,
            }
        }
        QuarantineMode::K8s => {
            let name = format!("{}-{}", cfg.tier.name, policy_base_name(name_aggr));
            let mut ingress = Vec::new();
            if let Some(ns) = &cfg.forensics_namespace {
                ingress.push(json!({ "from": [ { "namespaceSelector": { "matchLabels": {
                    "kubernetes.io/metadata.name": ns } } } ] }));
            }
            let mut egress = Vec::new();
            if cfg.allow_dns {
                egress.push(json!({
                    "to": [ {
                        "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } },
                        "podSelector": { "matchLabels": { "k8s-app": "kube-dns" } },
                    } ],
                    "ports": [ { "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 } ],
                }));
            }
            let np = json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": managed_labels(),
                    "annotations": annotations,
                },
                "spec": {
                    "podSelector": { "matchLabels": match_labels },
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": ingress,
                    "egress": egress,
                },
            });
            RenderedAction {
                manifest: format!(
                    "# Kubernetes NetworkPolicy isolating {namespace}/{name_aggr}.\n# WEAKER than Calico: allow-only and additive, so any other policy allowing these pods still applies.\n{}",
                    to_yaml(&np)
                ),
                object_name: name,
            }
        }
    }
}

/// A DNS-label-safe, unique, bounded name for a workload's policy: `q-<name>-<hash8>`.
fn policy_base_name(name_aggr: &str) -> String {
    let mut cleaned: String = name_aggr
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while cleaned.contains("--") {
        cleaned = cleaned.replace("--", "-");
    }
    let cleaned: String = cleaned.trim_matches('-').chars().take(40).collect();
    let hash = xxhash_rust::xxh3::xxh3_64(name_aggr.as_bytes()) as u32;
    format!("q-{}-{hash:08x}", cleaned.trim_end_matches('-'))
}

fn managed_labels() -> Value {
    json!({ MANAGED_BY.0: MANAGED_BY.1 })
}

fn calico_ingress_rules(cfg: &RespondConfig) -> Vec<Value> {
    let mut rules = Vec::new();
    if let Some(ns) = &cfg.forensics_namespace {
        rules.push(json!({
            "action": "Allow",
            "source": { "namespaceSelector": format!("projectcalico.org/name == \"{ns}\"") },
        }));
    }
    rules.push(json!({ "action": "Log" }));
    rules.push(json!({ "action": "Deny" }));
    rules
}

fn calico_egress_rules(cfg: &RespondConfig) -> Vec<Value> {
    let mut rules = Vec::new();
    if cfg.allow_dns {
        for protocol in ["UDP", "TCP"] {
            rules.push(json!({
                "action": "Allow",
                "protocol": protocol,
                "destination": {
                    "selector": "k8s-app == \"kube-dns\"",
                    "namespaceSelector": "projectcalico.org/name == \"kube-system\"",
                    "ports": [53],
                },
            }));
        }
    }
    rules.push(json!({ "action": "Log" }));
    rules.push(json!({ "action": "Deny" }));
    rules
}

fn to_yaml(v: &Value) -> String {
    // Serializing a serde_json::Value cannot fail (string keys, finite numbers from config).
    serde_yaml::to_string(v).unwrap_or_else(|e| format!("# render error: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn docs(yaml: &str) -> Vec<serde_yaml::Value> {
        serde_yaml::Deserializer::from_str(yaml)
            .map(serde_yaml::Value::deserialize)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .into_iter()
            .filter(|d| !d.is_null())
            .collect()
    }

    fn actions(rules: &serde_yaml::Value) -> Vec<String> {
        rules
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| r["action"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn install_renders_tier_and_global_policy() {
        let cfg = RespondConfig {
            forensics_namespace: Some("forensics".into()),
            ..RespondConfig::default()
        };
        let d = docs(&render_install(&cfg));
        assert_eq!(d.len(), 2);
        assert_eq!(d[0]["kind"].as_str(), Some("Tier"));
        assert_eq!(d[0]["apiVersion"].as_str(), Some("projectcalico.org/v3"));
        assert_eq!(d[0]["spec"]["order"].as_f64(), Some(150.0));
        let g = &d[1];
        assert_eq!(g["kind"].as_str(), Some("GlobalNetworkPolicy"));
        assert_eq!(
            g["metadata"]["name"].as_str(),
            Some("flowwarden-quarantine.quarantine")
        );
        assert_eq!(g["spec"]["tier"].as_str(), Some("flowwarden-quarantine"));
        assert!(g["spec"]["order"].as_f64().is_some());
        assert_eq!(
            g["spec"]["selector"].as_str(),
            Some("quarantine == \"true\"")
        );
        let types: Vec<_> = g["spec"]["types"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(types, ["Ingress", "Egress"]);
        assert_eq!(actions(&g["spec"]["ingress"]), ["Allow", "Log", "Deny"]);
        assert_eq!(
            actions(&g["spec"]["egress"]),
            ["Allow", "Allow", "Log", "Deny"]
        );
        let dns = &g["spec"]["egress"][0];
        assert_eq!(dns["protocol"].as_str(), Some("UDP"));
        assert_eq!(g["spec"]["egress"][1]["protocol"].as_str(), Some("TCP"));
        assert_eq!(
            dns["destination"]["selector"].as_str(),
            Some("k8s-app == \"kube-dns\"")
        );
        assert_eq!(
            dns["destination"]["namespaceSelector"].as_str(),
            Some("projectcalico.org/name == \"kube-system\"")
        );
        assert_eq!(dns["destination"]["ports"][0].as_u64(), Some(53));
        assert_eq!(
            g["spec"]["ingress"][0]["source"]["namespaceSelector"].as_str(),
            Some("projectcalico.org/name == \"forensics\"")
        );
    }

    #[test]
    fn install_without_allow_rules_is_log_then_deny() {
        let cfg = RespondConfig {
            allow_dns: false,
            ..RespondConfig::default()
        };
        let d = docs(&render_install(&cfg));
        assert_eq!(actions(&d[1]["spec"]["ingress"]), ["Log", "Deny"]);
        assert_eq!(actions(&d[1]["spec"]["egress"]), ["Log", "Deny"]);
    }

    fn sel() -> BTreeMap<String, String> {
        [
            ("app".to_string(), "cart".to_string()),
            ("tier".to_string(), "web".to_string()),
        ]
        .into()
    }

    #[test]
    fn calico_network_policy_per_workload() {
        let cfg = RespondConfig {
            mode: QuarantineMode::Policy,
            ..RespondConfig::default()
        };
        let r = render_action(
            &cfg,
            "shop",
            "cart-7d9c8b6f4-*",
            &sel(),
            &BTreeMap::new(),
            false,
        );
        let d = docs(&r.manifest);
        let np = &d[0];
        assert_eq!(np["apiVersion"].as_str(), Some("projectcalico.org/v3"));
        assert_eq!(np["kind"].as_str(), Some("NetworkPolicy"));
        assert_eq!(np["metadata"]["namespace"].as_str(), Some("shop"));
        let name = np["metadata"]["name"].as_str().unwrap();
        assert!(
            name.starts_with("flowwarden-quarantine.q-cart-7d9c8b6f4-"),
            "{name}"
        );
        assert_eq!(name, r.object_name);
        assert_eq!(np["spec"]["tier"].as_str(), Some("flowwarden-quarantine"));
        assert_eq!(
            np["spec"]["selector"].as_str(),
            Some("app == \"cart\" && tier == \"web\"")
        );
        assert_eq!(actions(&np["spec"]["ingress"]), ["Log", "Deny"]);
        assert_eq!(
            actions(&np["spec"]["egress"]),
            ["Allow", "Allow", "Log", "Deny"]
        );
    }

    #[test]
    fn kubernetes_network_policy_fallback() {
        let cfg = RespondConfig {
            mode: QuarantineMode::K8s,
            ..RespondConfig::default()
        };
        let r = render_action(
            &cfg,
            "shop",
            "cart-7d9c8b6f4-*",
            &sel(),
            &BTreeMap::new(),
            false,
        );
        assert!(r.manifest.contains("WEAKER"));
        let np = &docs(&r.manifest)[0];
        assert_eq!(np["apiVersion"].as_str(), Some("networking.k8s.io/v1"));
        assert_eq!(np["metadata"]["namespace"].as_str(), Some("shop"));
        assert_eq!(
            np["spec"]["podSelector"]["matchLabels"]["app"].as_str(),
            Some("cart")
        );
        assert_eq!(
            np["spec"]["podSelector"]["matchLabels"]["tier"].as_str(),
            Some("web")
        );
        let types: Vec<_> = np["spec"]["policyTypes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(types, ["Ingress", "Egress"]);
        assert_eq!(np["spec"]["ingress"].as_sequence().map(Vec::len), Some(0));
        assert_eq!(
            np["spec"]["egress"][0]["ports"][0]["port"].as_u64(),
            Some(53)
        );
    }

    #[test]
    fn label_patch_sets_and_removes_the_label() {
        let cfg = RespondConfig::default();
        let on = render_action(&cfg, "shop", "cart-*", &sel(), &BTreeMap::new(), false);
        assert_eq!(
            docs(&on.manifest)[0]["metadata"]["labels"]["quarantine"].as_str(),
            Some("true")
        );
        assert!(on.manifest.contains("app=cart,tier=web"));
        let off = render_action(&cfg, "shop", "cart-*", &sel(), &BTreeMap::new(), true);
        assert!(docs(&off.manifest)[0]["metadata"]["labels"]["quarantine"].is_null());
    }

    #[test]
    fn policy_names_are_dns_safe_and_distinct() {
        let a = policy_base_name("cart-7d9c8b6f4-*");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert_ne!(a, policy_base_name("cart-7d9c8b6f5-*"));
        assert!(policy_base_name(&"x".repeat(300)).len() < 60);
    }
}
