//! Property tests of the decoder: it never panics on arbitrary bytes nor on arbitrary JSON objects built
//! from the reference's field names with values of random types; a generated valid record decodes to
//! exactly the values it was built from; policy strings built from random parts parse back into them.

use flowwarden::flow::policy::{parse_policy_str, PolicyKind, RULE_UNKNOWN};
use flowwarden::flow::registry::StringTable;
use flowwarden::flow::{
    Action, DecodeError, Decoder, EndpointType, Format, Proto, Reporter, WorkloadRegistry,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Every key of the reference's table (section 1) and Goldmane's flow and key (section 2).
const FIELDS: &[&str] = &[
    "start_time",
    "end_time",
    "source_ip",
    "dest_ip",
    "source_port",
    "dest_port",
    "source_name",
    "dest_name",
    "source_name_aggr",
    "dest_name_aggr",
    "source_namespace",
    "dest_namespace",
    "source_type",
    "dest_type",
    "source_labels",
    "dest_labels",
    "nat_outgoing_ports",
    "dest_service_namespace",
    "dest_service_name",
    "dest_service_port",
    "dest_service_port_num",
    "dest_domains",
    "proto",
    "action",
    "reporter",
    "policies",
    "bytes_in",
    "bytes_out",
    "packets_in",
    "packets_out",
    "num_flows",
    "num_flows_started",
    "num_flows_completed",
    "http_requests_allowed_in",
    "http_requests_denied_in",
    "process_name",
    "process_id",
    "process_args",
    "num_process_names",
    "num_process_ids",
    "num_process_args",
    "original_source_ips",
    "num_original_source_ips",
    "tcp_mean_send_congestion_window",
    "tcp_min_send_congestion_window",
    "tcp_mean_smooth_rtt",
    "tcp_max_smooth_rtt",
    "tcp_mean_min_rtt",
    "tcp_max_min_rtt",
    "tcp_mean_mss",
    "tcp_min_mss",
    "tcp_total_retransmissions",
    "tcp_lost_packets",
    "tcp_unrecovered_to",
    "host",
    "@timestamp",
    "Key",
    "num_connections_started",
    "num_connections_completed",
    "num_connections_live",
    "all_policies",
    "enforced_policies",
    "pending_policies",
    "transit_policies",
    "labels",
    "kind",
    "namespace",
    "name",
    "tier",
    "policy_index",
    "rule_index",
    "trigger",
    "dest_service_port_name",
];

/// A JSON value of any type, nested a little, with strings that look like real field values.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-70_000i64..70_000).prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN/inf", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("wep"),
            Just("net"),
            Just("tcp"),
            Just("allow"),
            Just("dst"),
            Just("-"),
            Just("*"),
            Just("pub"),
            Just("10.0.0.1"),
            Just("::1"),
            Just("0|t|t.p|allow|0"),
            Just("a=b"),
            Just("x|y"),
            Just("kns.default"),
            Just("")
        ]
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn any_record_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(FIELDS), any_value()), 0..24).prop_map(|kv| {
        Value::Object(
            kv.into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<Map<_, _>>(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut dec = Decoder::new(4096);
        let _ = dec.decode(&bytes);
        let _ = dec.with_raw(&bytes, |_| ());
    }

    #[test]
    fn never_panics_on_json_like_bytes(
        parts in prop::collection::vec(
            prop_oneof![
                Just("{"), Just("}"), Just("["), Just("]"), Just(","), Just(":"), Just("\""),
                Just("\\"), Just("\\u12"), Just("null"), Just("-1"), Just("1e999"), Just("\"start_time\""),
                Just("\"Key\""), Just("\"policies\""), Just(" "), Just("\u{ff}"), Just("\u{0}"),
            ],
            0..64,
        )
    ) {
        let line: String = parts.concat();
        let _ = Decoder::default().decode(line.as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_objects_of_reference_fields(obj in any_record_object()) {
        let line = serde_json::to_vec(&obj).expect("serialise");
        let mut dec = Decoder::default();
        match dec.decode(&line) {
            Ok(rec) => {
                prop_assert!(rec.end_time >= rec.start_time);
                // Keys of both endpoints are registered, never left dangling.
                prop_assert!(WorkloadRegistry::global().get(rec.src.id).is_some());
                prop_assert!(WorkloadRegistry::global().get(rec.dst.id).is_some());
            }
            Err(DecodeError::Empty | DecodeError::TooLong(..)) => {
                prop_assert!(false, "a serialised object is neither empty nor too long");
            }
            Err(_) => {}
        }
        let _ = dec.with_raw(&line, |_| ());
    }
}

/// A valid Calico record: the values that went in, and the line.
#[derive(Debug, Clone)]
struct Valid {
    start: i64,
    span: i64,
    src_kind: &'static str,
    src_ns: String,
    src_name: String,
    src_ip: Option<std::net::Ipv4Addr>,
    src_port: Option<u16>,
    dst_ns: String,
    dst_name: String,
    dst_port: Option<u16>,
    proto: (&'static str, u8),
    action: (&'static str, Action),
    reporter: (&'static str, Reporter),
    counters: [u64; 7],
    http: (u32, u32),
    process: String,
    domains: Vec<String>,
    nat_ports: Vec<u16>,
    tcp_rtt: u32,
}

fn valid_record() -> impl Strategy<Value = Valid> {
    let name = "[a-z][a-z0-9-]{0,14}[a-z0-9]";
    (
        (0i64..4_000_000_000, 0i64..3600),
        (prop::sample::select(vec!["wep", "hep", "ns"]), name, name),
        (prop::option::of(any::<[u8; 4]>()), prop::option::of(1u16..)),
        (name, name, prop::option::of(1u16..)),
        (
            prop::sample::select(vec![
                ("tcp", 6u8),
                ("udp", 17),
                ("icmp", 1),
                ("sctp", 132),
                ("47", 47),
            ]),
            prop::sample::select(vec![("allow", Action::Allow), ("deny", Action::Deny)]),
            prop::sample::select(vec![
                ("src", Reporter::Src),
                ("dst", Reporter::Dst),
                ("fwd", Reporter::Fwd),
            ]),
        ),
        (any::<[u64; 7]>(), any::<(u32, u32)>()),
        (
            "[a-z/]{1,20}",
            prop::collection::vec("[a-z]{1,8}\\.example", 0..4),
            prop::collection::vec(any::<u16>(), 0..5),
            any::<u32>(),
        ),
    )
        .prop_map(
            |(
                (start, span),
                (src_kind, src_ns, src_name),
                (ip, src_port),
                (dst_ns, dst_name, dst_port),
                (proto, action, reporter),
                (counters, http),
                (process, domains, nat_ports, tcp_rtt),
            )| Valid {
                start,
                span,
                src_kind,
                src_ns,
                src_name: format!("{src_name}-*"),
                src_ip: ip.map(std::net::Ipv4Addr::from),
                src_port,
                dst_ns,
                dst_name: format!("{dst_name}-*"),
                dst_port,
                proto,
                action,
                reporter,
                counters,
                http,
                process,
                domains,
                nat_ports,
                tcp_rtt,
            },
        )
}

impl Valid {
    fn to_json(&self) -> Value {
        let c = &self.counters;
        json!({
            "start_time": self.start, "end_time": self.start + self.span,
            "source_type": self.src_kind, "source_namespace": self.src_ns,
            "source_name_aggr": self.src_name, "source_name": "-",
            "source_ip": self.src_ip.map(|ip| ip.to_string()), "source_port": self.src_port,
            "dest_type": "wep", "dest_namespace": self.dst_ns, "dest_name_aggr": self.dst_name,
            "dest_ip": null, "dest_port": self.dst_port,
            "proto": self.proto.0, "action": self.action.0, "reporter": self.reporter.0,
            "bytes_in": c[0], "bytes_out": c[1], "packets_in": c[2], "packets_out": c[3],
            "num_flows": c[4], "num_flows_started": c[5], "num_flows_completed": c[6],
            "http_requests_allowed_in": self.http.0, "http_requests_denied_in": self.http.1,
            "process_name": self.process, "dest_domains": self.domains,
            "nat_outgoing_ports": self.nat_ports, "tcp_mean_smooth_rtt": self.tcp_rtt,
            "source_labels": {"labels": ["app=x"]}, "dest_labels": null,
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn a_valid_record_round_trips(v in valid_record()) {
        let line = serde_json::to_vec(&v.to_json()).expect("serialise");
        let rec = Decoder::default().decode(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let reg = WorkloadRegistry::global();
        let strings = StringTable::global();
        prop_assert_eq!(rec.format, Format::Calico);
        prop_assert_eq!((rec.start_time, rec.end_time), (v.start, v.start + v.span));
        let src_kind = EndpointType::from_calico(v.src_kind);
        prop_assert_eq!(rec.src.kind, src_kind);
        let src_key = match src_kind {
            EndpointType::Wep => format!("{}/{}", v.src_ns, v.src_name),
            EndpointType::Hep => format!("hep:{}", v.src_name),
            _ => format!("ns:{}/{}", v.src_ns, v.src_name),
        };
        prop_assert_eq!(reg.key(rec.src.id), src_key);
        prop_assert_eq!(rec.src.ip, v.src_ip.map(std::net::IpAddr::V4));
        prop_assert_eq!(rec.src.port, v.src_port);
        prop_assert!(!rec.src.public);
        prop_assert_eq!(rec.dst.kind, EndpointType::Wep);
        prop_assert_eq!(reg.key(rec.dst.id), format!("{}/{}", v.dst_ns, v.dst_name));
        prop_assert_eq!(rec.dst.port, v.dst_port);
        prop_assert_eq!(rec.proto, Proto(v.proto.1));
        prop_assert_eq!(rec.action, v.action.1);
        prop_assert_eq!(rec.reporter, v.reporter.1);
        let c = v.counters;
        prop_assert_eq!(
            [rec.bytes_in, rec.bytes_out, rec.packets_in, rec.packets_out, rec.num_flows, rec.num_flows_started, rec.num_flows_completed],
            c
        );
        prop_assert_eq!((rec.http_requests_allowed_in, rec.http_requests_denied_in), v.http);
        prop_assert_eq!(&*strings.resolve(rec.process_name), v.process.as_str());
        prop_assert_eq!(rec.num_dest_domains as usize, v.domains.len());
        prop_assert_eq!(
            strings.resolve(rec.dest_domain).to_string(),
            v.domains.first().cloned().unwrap_or_default()
        );
        prop_assert_eq!(rec.num_nat_outgoing_ports as usize, v.nat_ports.len());
        prop_assert_eq!(rec.tcp.mean_smooth_rtt, v.tcp_rtt);
        prop_assert_eq!(reg.get(rec.src.id).map(|i| i.labels.clone()), Some(vec!["app=x".to_string()]));
    }
}

/// The name part of a policy string, and the (kind, namespace, name) it must parse into.
fn policy_name() -> impl Strategy<Value = (String, String, PolicyKind, String, String)> {
    let ident = "[a-z][a-z0-9-]{0,12}";
    let kinds = vec![
        ("gnp", PolicyKind::GlobalNetworkPolicy),
        ("np", PolicyKind::CalicoNetworkPolicy),
        ("knp", PolicyKind::KubernetesNetworkPolicy),
        ("snp", PolicyKind::StagedNetworkPolicy),
        ("sgnp", PolicyKind::StagedGlobalNetworkPolicy),
        ("sknp", PolicyKind::StagedKubernetesNetworkPolicy),
        ("kcnp", PolicyKind::ClusterNetworkPolicy),
        ("pro", PolicyKind::Profile),
        ("eot", PolicyKind::EndOfTier),
    ];
    (
        ident,
        ident,
        ident,
        0..7u8,
        prop::sample::select(kinds),
        any::<bool>(),
    )
        .prop_map(|(tier, ns, policy, shape, (prefix, kind), namespaced)| {
            let (name_part, kind, want_ns, want_name) = match shape {
                0 => (
                    format!("{tier}.{policy}"),
                    PolicyKind::GlobalNetworkPolicy,
                    String::new(),
                    policy,
                ),
                1 => (
                    format!("{ns}/{tier}.{policy}"),
                    PolicyKind::CalicoNetworkPolicy,
                    ns,
                    policy,
                ),
                2 => (
                    format!("{ns}/knp.default.{policy}"),
                    PolicyKind::KubernetesNetworkPolicy,
                    ns,
                    policy,
                ),
                3 => (
                    format!("staged:{tier}.{policy}"),
                    PolicyKind::StagedGlobalNetworkPolicy,
                    String::new(),
                    policy,
                ),
                4 => (
                    format!("staged:{ns}/{tier}.{policy}"),
                    PolicyKind::StagedNetworkPolicy,
                    ns,
                    policy,
                ),
                5 => (
                    format!("staged:{ns}/knp.default.{policy}"),
                    PolicyKind::StagedKubernetesNetworkPolicy,
                    ns,
                    policy,
                ),
                _ if namespaced => (format!("{prefix}:{ns}/{policy}"), kind, ns, policy),
                _ => (format!("{prefix}:{policy}"), kind, String::new(), policy),
            };
            (tier, name_part, kind, want_ns, want_name)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn policy_strings_parse_back_into_their_parts(
        index in any::<i32>(),
        (tier, name_part, kind, ns, name) in policy_name(),
        action in prop::sample::select(vec![("allow", Action::Allow), ("deny", Action::Deny), ("pass", Action::Pass)]),
        rule in prop::option::of(any::<i32>()),
    ) {
        let s = match rule {
            Some(r) => format!("{index}|{tier}|{name_part}|{}|{r}", action.0),
            None => format!("{index}|{tier}|{name_part}|{}", action.0),
        };
        let hit = parse_policy_str(&s).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        prop_assert_eq!(hit.index, index, "{}", s);
        prop_assert_eq!(hit.tier, tier.as_str(), "{}", s);
        prop_assert_eq!(hit.kind, kind, "{}", s);
        prop_assert_eq!(hit.namespace, ns.as_str(), "{}", s);
        prop_assert_eq!(hit.name, name.as_str(), "{}", s);
        prop_assert_eq!(hit.action, action.1, "{}", s);
        prop_assert_eq!(hit.rule, rule.unwrap_or(RULE_UNKNOWN), "{}", s);
    }

    #[test]
    fn profile_policies_parse_back(ns in "[a-z][a-z0-9-]{0,20}", index in 0i32..100, rule in -2i32..10) {
        let s = format!("{index}|__PROFILE__|__PROFILE__.kns.{ns}|allow|{rule}");
        let hit = parse_policy_str(&s).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        let want_name = format!("kns.{ns}");
        prop_assert_eq!(
            (hit.index, hit.tier, hit.kind, hit.namespace, hit.name, hit.action, hit.rule),
            (index, "__PROFILE__", PolicyKind::Profile, ns.as_str(), want_name.as_str(), Action::Allow, rule)
        );
    }

    #[test]
    fn policy_parsing_never_panics(s in "[0-9a-z|:/._-]{0,40}") {
        let _ = parse_policy_str(&s);
    }
}
