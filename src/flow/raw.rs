//! [`RawFlow`]: every field of a Calico flow-log line or a Goldmane flow, borrowed from the line.
//!
//! This is the "decode every field" view: tests, dead letters and evidence read it; the hot path turns it
//! into a compact [`crate::flow::FlowRecord`] at once. Every field is optional (older Felix versions write
//! fewer keys); a field of the wrong type fails the record.

use crate::flow::policy::{parse_policy_str, PolicyHit, PolicyKind, PolicyParseError};
use crate::flow::Action;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// One input line, every field of both formats, strings borrowed.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawFlow<'a> {
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    #[serde(borrow)]
    pub source_ip: Option<&'a str>,
    #[serde(borrow)]
    pub dest_ip: Option<&'a str>,
    pub source_port: Option<i64>,
    pub dest_port: Option<i64>,
    #[serde(borrow)]
    pub source_name: Option<&'a str>,
    #[serde(borrow)]
    pub dest_name: Option<&'a str>,
    #[serde(borrow)]
    pub source_name_aggr: Option<&'a str>,
    #[serde(borrow)]
    pub dest_name_aggr: Option<&'a str>,
    #[serde(borrow)]
    pub source_namespace: Option<&'a str>,
    #[serde(borrow)]
    pub dest_namespace: Option<&'a str>,
    #[serde(borrow)]
    pub source_type: Option<&'a str>,
    #[serde(borrow)]
    pub dest_type: Option<&'a str>,
    #[serde(borrow)]
    pub source_labels: Labels<'a>,
    #[serde(borrow)]
    pub dest_labels: Labels<'a>,
    pub nat_outgoing_ports: Option<Vec<i64>>,
    #[serde(borrow)]
    pub dest_service_namespace: Option<&'a str>,
    #[serde(borrow)]
    pub dest_service_name: Option<&'a str>,
    #[serde(borrow)]
    pub dest_service_port: Option<&'a str>,
    pub dest_service_port_num: Option<i64>,
    #[serde(borrow)]
    pub dest_domains: Option<Vec<&'a str>>,
    #[serde(borrow)]
    pub proto: Option<&'a str>,
    #[serde(borrow)]
    pub action: Option<&'a str>,
    #[serde(borrow)]
    pub reporter: Option<&'a str>,
    #[serde(borrow, deserialize_with = "object_or_null")]
    pub policies: Option<Policies<'a>>,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
    pub packets_in: Option<u64>,
    pub packets_out: Option<u64>,
    pub num_flows: Option<u64>,
    pub num_flows_started: Option<u64>,
    pub num_flows_completed: Option<u64>,
    pub http_requests_allowed_in: Option<u64>,
    pub http_requests_denied_in: Option<u64>,
    #[serde(borrow)]
    pub process_name: Option<&'a str>,
    #[serde(borrow)]
    pub process_id: Option<&'a str>,
    #[serde(borrow)]
    pub process_args: Option<Vec<&'a str>>,
    pub num_process_names: Option<u64>,
    pub num_process_ids: Option<u64>,
    pub num_process_args: Option<u64>,
    #[serde(borrow)]
    pub original_source_ips: Option<Vec<&'a str>>,
    pub num_original_source_ips: Option<u64>,
    pub tcp_mean_send_congestion_window: Option<u64>,
    pub tcp_min_send_congestion_window: Option<u64>,
    pub tcp_mean_smooth_rtt: Option<u64>,
    pub tcp_max_smooth_rtt: Option<u64>,
    pub tcp_mean_min_rtt: Option<u64>,
    pub tcp_max_min_rtt: Option<u64>,
    pub tcp_mean_mss: Option<u64>,
    pub tcp_min_mss: Option<u64>,
    pub tcp_total_retransmissions: Option<u64>,
    pub tcp_lost_packets: Option<u64>,
    pub tcp_unrecovered_to: Option<u64>,
    /// Added by a log shipper.
    #[serde(borrow)]
    pub host: Option<&'a str>,
    /// Added by a log shipper (epoch ms).
    #[serde(rename = "@timestamp")]
    pub timestamp_ms: Option<i64>,
    // Goldmane: the flow key and its own counters.
    #[serde(rename = "Key", borrow, deserialize_with = "object_or_null")]
    pub key: Option<GoldmaneKey<'a>>,
    pub num_connections_started: Option<u64>,
    pub num_connections_completed: Option<u64>,
    pub num_connections_live: Option<u64>,
}

/// Goldmane's `FlowKey`; enums are integers, zero values omitted.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GoldmaneKey<'a> {
    #[serde(borrow)]
    pub source_name: Option<&'a str>,
    #[serde(borrow)]
    pub source_namespace: Option<&'a str>,
    pub source_type: Option<i64>,
    #[serde(borrow)]
    pub dest_name: Option<&'a str>,
    #[serde(borrow)]
    pub dest_namespace: Option<&'a str>,
    pub dest_type: Option<i64>,
    pub dest_port: Option<i64>,
    #[serde(borrow)]
    pub dest_service_name: Option<&'a str>,
    #[serde(borrow)]
    pub dest_service_namespace: Option<&'a str>,
    #[serde(borrow)]
    pub dest_service_port_name: Option<&'a str>,
    pub dest_service_port: Option<i64>,
    #[serde(borrow)]
    pub proto: Option<&'a str>,
    pub reporter: Option<i64>,
    pub action: Option<i64>,
    #[serde(borrow, deserialize_with = "object_or_null")]
    pub policies: Option<Policies<'a>>,
}

/// A nested struct from a JSON object or null only: serde's derived struct visitor also takes an
/// array (fields by position), which would turn `"Key": []` into a Goldmane record.
fn object_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// Labels as `{"labels": ["k=v", ...]}` (Calico), `["k=v", ...]` (Goldmane) or null.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Labels<'a>(pub Vec<&'a str>);

impl<'de: 'a, 'a> Deserialize<'de> for Labels<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Labels<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("labels as {\"labels\": [...]}, an array of \"k=v\" strings, or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Labels::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Labels::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(s) = seq.next_element::<&'de str>()? {
                    v.push(s);
                }
                Ok(Labels(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Labels::default();
                while let Some(k) = map.next_key::<&'de str>()? {
                    if k == "labels" {
                        out = map.next_value::<Labels<'a>>()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A policy list element: a Felix string or a Goldmane `PolicyHit` object.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyEntry<'a> {
    /// `idx|tier|name|action[|rule]`.
    Str(&'a str),
    /// Goldmane object.
    Hit(GoldmanePolicyHit<'a>),
}

impl<'a> PolicyEntry<'a> {
    /// Parses the entry into a [`PolicyHit`].
    pub fn parse(&self) -> Result<PolicyHit<'a>, PolicyParseError> {
        match self {
            PolicyEntry::Str(s) => parse_policy_str(s),
            PolicyEntry::Hit(h) => Ok(h.to_hit()),
        }
    }
}

/// Goldmane's `PolicyHit` message.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GoldmanePolicyHit<'a> {
    pub kind: Option<i64>,
    #[serde(borrow)]
    pub namespace: Option<&'a str>,
    #[serde(borrow)]
    pub name: Option<&'a str>,
    #[serde(borrow)]
    pub tier: Option<&'a str>,
    pub action: Option<i64>,
    pub policy_index: Option<i64>,
    pub rule_index: Option<i64>,
    /// The policy that triggered a pass/end-of-tier hit; only its presence is kept.
    pub trigger: Option<IgnoredAny>,
}

impl<'a> GoldmanePolicyHit<'a> {
    /// As a [`PolicyHit`]; protobuf zero values were omitted, so absent numbers are 0.
    pub fn to_hit(&self) -> PolicyHit<'a> {
        PolicyHit {
            index: self.policy_index.unwrap_or(0) as i32,
            tier: self.tier.unwrap_or(""),
            kind: PolicyKind::from_goldmane(self.kind.unwrap_or(0)),
            namespace: self.namespace.unwrap_or(""),
            name: self.name.unwrap_or(""),
            action: Action::from_goldmane(self.action.unwrap_or(0)),
            rule: self.rule_index.unwrap_or(0) as i32,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for PolicyEntry<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = PolicyEntry<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a policy string or a PolicyHit object")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(PolicyEntry::Str(s))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                GoldmanePolicyHit::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(PolicyEntry::Hit)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The `policies` object of either format.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Policies<'a> {
    #[serde(borrow)]
    pub all_policies: Option<Vec<PolicyEntry<'a>>>,
    #[serde(borrow)]
    pub enforced_policies: Option<Vec<PolicyEntry<'a>>>,
    #[serde(borrow)]
    pub pending_policies: Option<Vec<PolicyEntry<'a>>>,
    #[serde(borrow)]
    pub transit_policies: Option<Vec<PolicyEntry<'a>>>,
}

impl<'a> Policies<'a> {
    /// The policies that decided the verdict: `enforced_policies`, else (older Felix) `all_policies`.
    pub fn enforced(&self) -> &[PolicyEntry<'a>] {
        self.enforced_policies
            .as_deref()
            .or(self.all_policies.as_deref())
            .unwrap_or(&[])
    }
}
