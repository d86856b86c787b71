//! Workload identity for the responder: which alert workloads are pods, the label selector that picks
//! exactly a workload's pods (its labels minus per-pod/per-revision ones), config label requirements, and
//! the registry of known workloads used to refuse a selector that would also pick another workload.
//!
//! Pure data and functions; no I/O.

use std::collections::{BTreeMap, HashMap};

/// Labels that differ between pods or revisions of one workload; a selector built with them would miss
/// replicas (or match only one revision), so they are dropped.
const PER_POD_LABELS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "pod-template-generation",
    "apps.kubernetes.io/pod-index",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
    "controller-uid",
    "job-name",
    "quarantine",
];

/// Label flowwarden sets on quarantined pods (label mode) and that the tier policy selects.
pub const QUARANTINE_LABEL: &str = "quarantine";

/// A pod workload from an alert's canonical key `namespace/name_aggr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodWorkload {
    /// Namespace.
    pub namespace: String,
    /// Aggregated name (`cart-7d9c8b6f4-*`).
    pub name_aggr: String,
}

/// Parses a canonical workload key; `None` for host endpoints (`hep:`), networks (`pub:`, `pvt:`),
/// network sets and anything without a namespace.
pub fn pod_workload(key: &str) -> Option<PodWorkload> {
    if key.contains(':') {
        return None;
    }
    let (ns, name) = key.split_once('/')?;
    if ns.is_empty() || ns == "-" || name.is_empty() || name == "-" || name.contains('/') {
        return None;
    }
    Some(PodWorkload {
        namespace: ns.to_string(),
        name_aggr: name.to_string(),
    })
}

/// Parses `k=v` label strings into a map, ignoring malformed entries (they come from outside data).
pub fn parse_labels(labels: &[String]) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter_map(|l| l.split_once('=').or(Some((l.as_str(), ""))))
        .filter(|(k, _)| !k.trim().is_empty())
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The workload's own selector: its labels minus per-pod and per-revision ones.
pub fn workload_selector(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| !PER_POD_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Calico selector expression for `match_labels` (`app == "cart" && tier == "web"`).
pub fn calico_selector(match_labels: &BTreeMap<String, String>) -> String {
    match_labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k} == \"{}\"",
                v.replace('\\', "\\\\").replace('"', "\\\"")
            )
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

/// Kubernetes label selector string (`app=cart,tier=web`).
pub fn k8s_label_selector(match_labels: &BTreeMap<String, String>) -> String {
    match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One config label requirement: `k=v`, `k!=v` or `k` (exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRequirement {
    /// `k=v`.
    Equals(String, String),
    /// `k!=v` (also true when `k` is absent, as in Kubernetes).
    NotEquals(String, String),
    /// `k`.
    Exists(String),
}

impl LabelRequirement {
    /// Parses one requirement; the error says what is accepted.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a label selector (use k=v, k!=v or k)");
        let s = s.trim();
        let valid_key = |k: &str| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        };
        let req = if let Some((k, v)) = s.split_once("!=") {
            LabelRequirement::NotEquals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = s.split_once("==").or_else(|| s.split_once('=')) {
            LabelRequirement::Equals(k.trim().into(), v.trim().into())
        } else {
            LabelRequirement::Exists(s.into())
        };
        let key = match &req {
            LabelRequirement::Equals(k, _)
            | LabelRequirement::NotEquals(k, _)
            | LabelRequirement::Exists(k) => k,
        };
        if valid_key(key) {
            Ok(req)
        } else {
            Err(bad())
        }
    }

    /// Whether labels satisfy the requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelRequirement::Equals(k, v) => labels.get(k) == Some(v),
            LabelRequirement::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelRequirement::Exists(k) => labels.contains_key(k),
        }
    }
}

/// Workloads seen in alerts and records, with their labels, per namespace.
#[derive(Debug, Default, Clone)]
pub struct WorkloadRegistry {
    by_namespace: HashMap<String, BTreeMap<String, BTreeMap<String, String>>>,
}

/// Upper bound on remembered workloads per namespace (bounded memory on spoofed identities).
const MAX_WORKLOADS_PER_NAMESPACE: usize = 10_000;

impl WorkloadRegistry {
    /// Records (or refreshes) a workload's labels. Empty label sets are ignored: they say nothing.
    pub fn observe(&mut self, key: &str, namespace: &str, labels: &[String]) {
        let labels = parse_labels(labels);
        if labels.is_empty() || namespace.is_empty() || namespace == "-" {
            return;
        }
        let ns = self.by_namespace.entry(namespace.to_string()).or_default();
        if ns.len() >= MAX_WORKLOADS_PER_NAMESPACE && !ns.contains_key(key) {
            return;
        }
        ns.insert(key.to_string(), labels);
    }

    /// Labels last seen for a workload.
    pub fn labels(&self, key: &str, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.by_namespace.get(namespace)?.get(key)
    }

    /// Other workloads in `namespace` whose labels `match_labels` would also select.
    pub fn overlapping(
        &self,
        key: &str,
        namespace: &str,
        match_labels: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let Some(ns) = self.by_namespace.get(namespace) else {
            return Vec::new();
        };
        // Another replica set of the same Deployment (a rollout in progress) is the same workload:
        // isolating it too is what the operator wants, not an overlap.
        let group = same_deployment_key(key);
        ns.iter()
            .filter(|(other, labels)| {
                other.as_str() != key
                    && same_deployment_key(other) != group
                    && match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .map(|(other, _)| other.clone())
            .collect()
    }
}

/// `ns/frontend-7d9c8b6f4-*` → `ns/frontend`: the key without its replica-set hash.
fn same_deployment_key(key: &str) -> String {
    let (ns, name) = key.rsplit_once('/').unwrap_or(("", key));
    let name = crate::flow::decode::group_name(name).unwrap_or(name);
    format!("{ns}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_sets_of_one_deployment_do_not_overlap() {
        let mut r = WorkloadRegistry::default();
        r.observe(
            "shop/web-7d9c8b6f4-*",
            "shop",
            &labels(&["app=web", "pod-template-hash=7d9c8b6f4"]),
        );
        r.observe(
            "shop/web-5f6d7c8b9-*",
            "shop",
            &labels(&["app=web", "pod-template-hash=5f6d7c8b9"]),
        );
        let sel: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert!(r
            .overlapping("shop/web-7d9c8b6f4-*", "shop", &sel)
            .is_empty());
    }

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_namespaced_pods_are_pod_workloads() {
        assert_eq!(
            pod_workload("shop/cart-7d9c8b6f4-*"),
            Some(PodWorkload {
                namespace: "shop".into(),
                name_aggr: "cart-7d9c8b6f4-*".into()
            })
        );
        assert_eq!(pod_workload("hep:node-1"), None);
        assert_eq!(pod_workload("pub:1.2.3.4"), None);
        assert_eq!(pod_workload("-/pvt"), None);
        assert_eq!(pod_workload("noslash"), None);
    }

    #[test]
    fn selector_drops_per_pod_labels_and_renders() {
        let l = parse_labels(&labels(&[
            "app=cart",
            "pod-template-hash=7d9c8b6f4",
            "tier=web",
        ]));
        let sel = workload_selector(&l);
        assert_eq!(sel.len(), 2);
        assert_eq!(calico_selector(&sel), "app == \"cart\" && tier == \"web\"");
        assert_eq!(k8s_label_selector(&sel), "app=cart,tier=web");
    }

    #[test]
    fn requirements_parse_and_match() {
        let l = parse_labels(&labels(&["app=payment"]));
        assert!(LabelRequirement::parse("app=payment").unwrap().matches(&l));
        assert!(!LabelRequirement::parse("app!=payment").unwrap().matches(&l));
        assert!(LabelRequirement::parse("app").unwrap().matches(&l));
        assert!(!LabelRequirement::parse("team").unwrap().matches(&l));
        assert!(LabelRequirement::parse("=x").is_err());
        assert!(LabelRequirement::parse("a b").is_err());
    }

    #[test]
    fn registry_finds_overlaps_in_the_same_namespace_only() {
        let mut r = WorkloadRegistry::default();
        r.observe(
            "shop/cart-*",
            "shop",
            &labels(&["app=cart", "pod-template-hash=1"]),
        );
        r.observe(
            "shop/cart-canary-*",
            "shop",
            &labels(&["app=cart", "track=canary"]),
        );
        r.observe("other/cart-*", "other", &labels(&["app=cart"]));
        let sel = parse_labels(&labels(&["app=cart"]));
        assert_eq!(
            r.overlapping("shop/cart-*", "shop", &sel),
            vec!["shop/cart-canary-*".to_string()]
        );
        let narrow = parse_labels(&labels(&["app=cart", "track=canary"]));
        assert!(r
            .overlapping("shop/cart-canary-*", "shop", &narrow)
            .is_empty());
    }
}
