//! Decoding the reference's example lines (`calico-flow-logs.md`): the real Felix line of section 1,
//! the Goldmane example of section 2 and a full modern Calico record with every field of the reference
//! table. Every field is asserted twice: as [`RawFlow`] (what was on the line) and as [`FlowRecord`]
//! (what the detectors see). Also the failure rules: absent fields take defaults, a field of the wrong
//! type fails that record only, an out-of-range port fails with a reason naming the field.

use flowwarden::flow::policy::{PolicyHit, PolicyKind, RULE_UNKNOWN};
use flowwarden::flow::raw::{PolicyEntry, RawFlow};
use flowwarden::flow::registry::StringTable;
use flowwarden::flow::{
    Action, DecodeError, Decoder, EndpointType, FlowRecord, Format, Proto, Reporter, TcpStats,
    WorkloadId, WorkloadRegistry,
};
use std::net::IpAddr;

/// Section 1: a real Felix line (aggregation level 2).
const FELIX_LINE: &str = r#"{"start_time":1577834657,"end_time":1577834965,"source_ip":null,"source_name":"-","source_name_aggr":"intrusion-detection-controller-5bdcdd9c97-*","source_namespace":"tigera-intrusion-detection","source_port":null,"source_type":"wep","source_labels":{"labels":["pod-template-hash=5bdcdd9c97","k8s-app=intrusion-detection-controller"]},"dest_ip":null,"dest_name":"-","dest_name_aggr":"coredns-576cbf47c7-*","dest_namespace":"kube-system","dest_port":53,"dest_type":"wep","dest_labels":{"labels":["pod-template-hash=576cbf47c7","k8s-app=kube-dns"]},"proto":"udp","action":"allow","reporter":"dst","policies":{"all_policies":["0|__PROFILE__|__PROFILE__.kns.kube-system|allow"]},"bytes_in":4288,"bytes_out":7644,"num_flows":41,"num_flows_started":37,"num_flows_completed":39,"packets_in":37,"packets_out":37,"http_requests_allowed_in":0,"http_requests_denied_in":0,"original_source_ips":null,"num_original_source_ips":0}"#;

/// Section 2: the Goldmane example.
const GOLDMANE_LINE: &str = r#"{"Key":{"source_name":"client-7d9c-*","source_namespace":"app","source_type":1,"dest_name":"pub","dest_type":4,"dest_port":443,"proto":"tcp","reporter":1,"action":2,"policies":{"enforced_policies":[{"kind":2,"name":"quarantine","tier":"security","action":2,"rule_index":1}]}},"start_time":1750000000,"end_time":1750000300,"source_labels":["app=client"],"packets_out":12,"bytes_out":960,"num_connections_started":3}"#;

/// A full modern Calico Enterprise record: every field of the reference table, policies in all three
/// string shapes, shipper fields (`host`, `@timestamp`) and `transit_policies`.
const MODERN_LINE: &str = r#"{
 "start_time": 1750000000, "end_time": 1750000015,
 "source_ip": "10.244.1.17", "source_name": "checkout-6f7b9c8d5-x2x9q", "source_name_aggr": "checkout-6f7b9c8d5-*",
 "source_namespace": "shop", "source_port": 43122, "source_type": "wep",
 "source_labels": {"labels": ["app=checkout", "tier=backend"]},
 "dest_ip": "93.184.216.34", "dest_name": "-", "dest_name_aggr": "pub", "dest_namespace": "-", "dest_port": 443,
 "dest_type": "net", "dest_labels": null,
 "nat_outgoing_ports": [40001, 40002, 40003],
 "dest_service_namespace": "payments", "dest_service_name": "gateway", "dest_service_port": "https",
 "dest_service_port_num": 8443,
 "dest_domains": ["api.example.com", "example.com"],
 "proto": "tcp", "action": "deny", "reporter": "src",
 "policies": {
  "all_policies": ["0|security|security.block-egress|pass|0", "1|default|shop/default.allow-web|deny|2"],
  "enforced_policies": ["0|security|security.block-egress|pass|0", "1|default|np:shop/default.allow-web|deny|2"],
  "pending_policies": ["0|default|staged:shop/default.trial|deny|-1", "1|default|shop/knp.default.deny-all|deny|-2", "2|default|sknp:shop/trial-knp|allow|4"],
  "transit_policies": ["0|__PROFILE__|__PROFILE__.kns.shop|allow|-1"]
 },
 "bytes_in": 1200, "bytes_out": 3400, "packets_in": 10, "packets_out": 12,
 "num_flows": 5, "num_flows_started": 4, "num_flows_completed": 3,
 "http_requests_allowed_in": 7, "http_requests_denied_in": 2,
 "process_name": "/usr/bin/curl", "process_id": "4242", "process_args": ["-s", "https://api.example.com"],
 "num_process_names": 1, "num_process_ids": 1, "num_process_args": 2,
 "original_source_ips": ["203.0.113.7", "198.51.100.9"], "num_original_source_ips": 2,
 "tcp_mean_send_congestion_window": 10, "tcp_min_send_congestion_window": 9, "tcp_mean_smooth_rtt": 1500,
 "tcp_max_smooth_rtt": 2500, "tcp_mean_min_rtt": 900, "tcp_max_min_rtt": 1100, "tcp_mean_mss": 1448,
 "tcp_min_mss": 1400, "tcp_total_retransmissions": 3, "tcp_lost_packets": 1, "tcp_unrecovered_to": 0,
 "host": "node-a", "@timestamp": 1750000016123
}"#;

/// The tuple form of a policy hit, for compact equality assertions.
type HitTuple<'a> = (i32, &'a str, PolicyKind, &'a str, &'a str, Action, i32);

fn tuple<'a>(h: &PolicyHit<'a>) -> HitTuple<'a> {
    (
        h.index,
        h.tier,
        h.kind,
        h.namespace,
        h.name,
        h.action,
        h.rule,
    )
}

fn hits<'a>(list: &Option<Vec<PolicyEntry<'a>>>) -> Vec<HitTuple<'a>> {
    list.as_ref()
        .expect("policy list present")
        .iter()
        .map(|e| tuple(&e.parse().expect("policy parses")))
        .collect()
}

fn key(id: WorkloadId) -> String {
    WorkloadRegistry::global().key(id)
}

fn resolve(id: u32) -> String {
    StringTable::global().resolve(id).to_string()
}

fn decode(line: &str) -> FlowRecord {
    Decoder::default()
        .decode(line.as_bytes())
        .unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn felix_line_every_raw_field() {
    let mut dec = Decoder::default();
    dec.with_raw(FELIX_LINE.as_bytes(), |r: &RawFlow<'_>| {
        assert_eq!(r.start_time, Some(1577834657));
        assert_eq!(r.end_time, Some(1577834965));
        assert_eq!(r.source_ip, None);
        assert_eq!(r.source_name, Some("-"));
        assert_eq!(
            r.source_name_aggr,
            Some("intrusion-detection-controller-5bdcdd9c97-*")
        );
        assert_eq!(r.source_namespace, Some("tigera-intrusion-detection"));
        assert_eq!(r.source_port, None);
        assert_eq!(r.source_type, Some("wep"));
        assert_eq!(
            r.source_labels.0,
            vec![
                "pod-template-hash=5bdcdd9c97",
                "k8s-app=intrusion-detection-controller"
            ]
        );
        assert_eq!(r.dest_ip, None);
        assert_eq!(r.dest_name, Some("-"));
        assert_eq!(r.dest_name_aggr, Some("coredns-576cbf47c7-*"));
        assert_eq!(r.dest_namespace, Some("kube-system"));
        assert_eq!(r.dest_port, Some(53));
        assert_eq!(r.dest_type, Some("wep"));
        assert_eq!(
            r.dest_labels.0,
            vec!["pod-template-hash=576cbf47c7", "k8s-app=kube-dns"]
        );
        assert_eq!(r.proto, Some("udp"));
        assert_eq!(r.action, Some("allow"));
        assert_eq!(r.reporter, Some("dst"));
        let p = r.policies.as_ref().expect("policies");
        assert_eq!(
            hits(&p.all_policies),
            vec![(
                0,
                "__PROFILE__",
                PolicyKind::Profile,
                "kube-system",
                "kns.kube-system",
                Action::Allow,
                RULE_UNKNOWN
            )]
        );
        assert!(p.enforced_policies.is_none());
        assert!(p.pending_policies.is_none());
        assert!(p.transit_policies.is_none());
        // Older Felix: the enforced list falls back to all_policies.
        assert_eq!(p.enforced().len(), 1);
        assert_eq!(r.bytes_in, Some(4288));
        assert_eq!(r.bytes_out, Some(7644));
        assert_eq!(r.num_flows, Some(41));
        assert_eq!(r.num_flows_started, Some(37));
        assert_eq!(r.num_flows_completed, Some(39));
        assert_eq!(r.packets_in, Some(37));
        assert_eq!(r.packets_out, Some(37));
        assert_eq!(r.http_requests_allowed_in, Some(0));
        assert_eq!(r.http_requests_denied_in, Some(0));
        assert_eq!(r.original_source_ips, None);
        assert_eq!(r.num_original_source_ips, Some(0));
        // Keys the line does not have.
        assert_eq!(r.nat_outgoing_ports, None);
        assert_eq!(r.dest_service_namespace, None);
        assert_eq!(r.dest_service_name, None);
        assert_eq!(r.dest_service_port, None);
        assert_eq!(r.dest_service_port_num, None);
        assert_eq!(r.dest_domains, None);
        assert_eq!(r.process_name, None);
        assert_eq!(r.process_id, None);
        assert_eq!(r.process_args, None);
        assert_eq!(r.num_process_names, None);
        assert_eq!(r.tcp_mean_smooth_rtt, None);
        assert_eq!(r.host, None);
        assert_eq!(r.timestamp_ms, None);
        assert!(r.key.is_none());
        assert_eq!(r.num_connections_started, None);
    })
    .expect("the Felix line decodes");
}

#[test]
fn felix_line_every_record_field() {
    let rec = decode(FELIX_LINE);
    assert_eq!(rec.format, Format::Calico);
    assert_eq!((rec.start_time, rec.end_time), (1577834657, 1577834965));
    assert_eq!(rec.event_time(), 1577834965);

    assert_eq!(rec.src.kind, EndpointType::Wep);
    assert_eq!(rec.src.ip, None);
    assert_eq!(rec.src.port, None);
    assert!(!rec.src.public);
    assert_eq!(
        key(rec.src.id),
        "tigera-intrusion-detection/intrusion-detection-controller-5bdcdd9c97-*"
    );
    assert_eq!(
        rec.src.group,
        WorkloadId::of_key("tigera-intrusion-detection/intrusion-detection-controller")
    );
    let info = WorkloadRegistry::global()
        .get(rec.src.id)
        .expect("registered");
    assert_eq!(info.namespace, "tigera-intrusion-detection");
    assert_eq!(
        info.name_aggr,
        "intrusion-detection-controller-5bdcdd9c97-*"
    );
    assert_eq!(
        info.labels,
        vec![
            "pod-template-hash=5bdcdd9c97",
            "k8s-app=intrusion-detection-controller"
        ]
    );

    assert_eq!(rec.dst.kind, EndpointType::Wep);
    assert_eq!(rec.dst.ip, None);
    assert_eq!(rec.dst.port, Some(53));
    assert!(!rec.dst.public);
    assert_eq!(key(rec.dst.id), "kube-system/coredns-576cbf47c7-*");
    assert_eq!(rec.dst.group, WorkloadId::of_key("kube-system/coredns"));

    assert_eq!(rec.proto, Proto::UDP);
    assert_eq!(rec.action, Action::Allow);
    assert_eq!(rec.reporter, Reporter::Dst);
    assert_eq!((rec.bytes_in, rec.bytes_out), (4288, 7644));
    assert_eq!((rec.packets_in, rec.packets_out), (37, 37));
    assert_eq!(
        (
            rec.num_flows,
            rec.num_flows_started,
            rec.num_flows_completed
        ),
        (41, 37, 39)
    );
    assert_eq!(
        (rec.http_requests_allowed_in, rec.http_requests_denied_in),
        (0, 0)
    );
    assert_eq!(rec.dest_service, 0);
    assert_eq!(rec.dest_service_port_num, None);
    assert_eq!((rec.dest_domain, rec.num_dest_domains), (0, 0));
    assert_eq!((rec.process_name, rec.num_process_names), (0, 0));
    assert_eq!(rec.num_original_source_ips, 0);
    assert_eq!(rec.num_nat_outgoing_ports, 0);
    assert_eq!(
        resolve(rec.deciding_policy),
        "__PROFILE__|kube-system/kns.kube-system"
    );
    assert_eq!(
        (rec.num_enforced_policies, rec.num_pending_policies),
        (1, 0)
    );
    assert_eq!(rec.tcp, TcpStats::default());
}

#[test]
fn goldmane_example_every_raw_field() {
    let mut dec = Decoder::default();
    dec.with_raw(GOLDMANE_LINE.as_bytes(), |r| {
        let k = r.key.as_ref().expect("Key");
        assert_eq!(k.source_name, Some("client-7d9c-*"));
        assert_eq!(k.source_namespace, Some("app"));
        assert_eq!(k.source_type, Some(1));
        assert_eq!(k.dest_name, Some("pub"));
        assert_eq!(k.dest_namespace, None);
        assert_eq!(k.dest_type, Some(4));
        assert_eq!(k.dest_port, Some(443));
        assert_eq!(k.dest_service_name, None);
        assert_eq!(k.dest_service_namespace, None);
        assert_eq!(k.dest_service_port_name, None);
        assert_eq!(k.dest_service_port, None);
        assert_eq!(k.proto, Some("tcp"));
        assert_eq!(k.reporter, Some(1));
        assert_eq!(k.action, Some(2));
        let p = k.policies.as_ref().expect("policies");
        assert_eq!(
            hits(&p.enforced_policies),
            vec![(
                0,
                "security",
                PolicyKind::GlobalNetworkPolicy,
                "",
                "quarantine",
                Action::Deny,
                1
            )]
        );
        assert!(p.pending_policies.is_none());
        assert_eq!(r.start_time, Some(1750000000));
        assert_eq!(r.end_time, Some(1750000300));
        assert_eq!(r.source_labels.0, vec!["app=client"]);
        assert!(r.dest_labels.0.is_empty());
        assert_eq!(r.packets_out, Some(12));
        assert_eq!(r.bytes_out, Some(960));
        assert_eq!(r.num_connections_started, Some(3));
        // Zero values are omitted by Go's protobuf JSON.
        assert_eq!(r.packets_in, None);
        assert_eq!(r.bytes_in, None);
        assert_eq!(r.num_connections_completed, None);
        assert_eq!(r.num_connections_live, None);
        // Calico-only keys are absent.
        assert_eq!(r.source_name_aggr, None);
        assert_eq!(r.proto, None);
        assert!(r.policies.is_none());
    })
    .expect("the Goldmane line decodes");
}

#[test]
fn goldmane_example_every_record_field() {
    let rec = decode(GOLDMANE_LINE);
    assert_eq!(rec.format, Format::Goldmane);
    assert_eq!((rec.start_time, rec.end_time), (1750000000, 1750000300));

    assert_eq!(rec.src.kind, EndpointType::Wep);
    assert_eq!(
        (rec.src.ip, rec.src.port, rec.src.public),
        (None, None, false)
    );
    assert_eq!(key(rec.src.id), "app/client-7d9c-*");
    // "7d9c" is too short to be a pod-template hash, so the group keeps it.
    assert_eq!(rec.src.group, WorkloadId::of_key("app/client-7d9c"));
    let info = WorkloadRegistry::global()
        .get(rec.src.id)
        .expect("registered");
    assert_eq!(info.labels, vec!["app=client"]);

    assert_eq!(rec.dst.kind, EndpointType::Net);
    assert_eq!(rec.dst.ip, None);
    assert_eq!(rec.dst.port, Some(443));
    assert!(rec.dst.public);
    assert_eq!(key(rec.dst.id), "pub");
    assert_eq!(rec.dst.group, rec.dst.id);

    assert_eq!(rec.proto, Proto::TCP);
    assert_eq!(rec.action, Action::Deny);
    assert_eq!(rec.reporter, Reporter::Src);
    assert_eq!((rec.bytes_in, rec.bytes_out), (0, 960));
    assert_eq!((rec.packets_in, rec.packets_out), (0, 12));
    assert_eq!(
        (
            rec.num_flows,
            rec.num_flows_started,
            rec.num_flows_completed
        ),
        (0, 3, 0)
    );
    assert_eq!(
        (rec.http_requests_allowed_in, rec.http_requests_denied_in),
        (0, 0)
    );
    assert_eq!(rec.dest_service, 0);
    assert_eq!(rec.dest_service_port_num, None);
    assert_eq!((rec.dest_domain, rec.num_dest_domains), (0, 0));
    assert_eq!((rec.process_name, rec.num_process_names), (0, 0));
    assert_eq!(rec.num_original_source_ips, 0);
    assert_eq!(rec.num_nat_outgoing_ports, 0);
    assert_eq!(resolve(rec.deciding_policy), "security|quarantine");
    assert_eq!(
        (rec.num_enforced_policies, rec.num_pending_policies),
        (1, 0)
    );
    assert_eq!(rec.tcp, TcpStats::default());
}

#[test]
fn goldmane_counts_live_connections_and_every_hit_field() {
    let line = r#"{"Key":{"source_name":"pvt","source_type":4,"dest_name":"api-*","dest_namespace":"shop","dest_type":1,"dest_port":8080,"dest_service_name":"api","dest_service_namespace":"shop","dest_service_port_name":"http","dest_service_port":80,"proto":"udp","reporter":2,"action":1,"policies":{"enforced_policies":[{"kind":1,"namespace":"shop","name":"allow-api","tier":"default","action":3,"policy_index":2,"rule_index":-1,"trigger":{"kind":2}}],"pending_policies":[{"kind":3,"namespace":"shop","name":"trial","tier":"default","action":2}]}},"start_time":10,"end_time":25,"num_connections_completed":4,"num_connections_live":2,"bytes_in":5,"packets_in":1}"#;
    let rec = decode(line);
    assert_eq!(rec.format, Format::Goldmane);
    assert_eq!(key(rec.src.id), "pvt");
    assert!(!rec.src.public, "pvt is not public");
    assert_eq!(key(rec.dst.id), "shop/api-*");
    assert_eq!(rec.dst.port, Some(8080));
    assert_eq!(rec.reporter, Reporter::Dst);
    assert_eq!(rec.action, Action::Allow);
    assert_eq!(rec.proto, Proto::UDP);
    assert_eq!(resolve(rec.dest_service), "shop/api:http");
    assert_eq!(rec.dest_service_port_num, Some(80));
    assert_eq!(
        (
            rec.num_flows,
            rec.num_flows_started,
            rec.num_flows_completed
        ),
        (6, 0, 4)
    );
    assert_eq!(resolve(rec.deciding_policy), "default|shop/allow-api");
    assert_eq!(
        (rec.num_enforced_policies, rec.num_pending_policies),
        (1, 1)
    );
    Decoder::default()
        .with_raw(line.as_bytes(), |r| {
            let p = r
                .key
                .as_ref()
                .and_then(|k| k.policies.as_ref())
                .expect("policies");
            assert_eq!(
                hits(&p.enforced_policies),
                vec![(
                    2,
                    "default",
                    PolicyKind::CalicoNetworkPolicy,
                    "shop",
                    "allow-api",
                    Action::Pass,
                    -1
                )]
            );
            assert_eq!(
                hits(&p.pending_policies),
                vec![(
                    0,
                    "default",
                    PolicyKind::StagedNetworkPolicy,
                    "shop",
                    "trial",
                    Action::Deny,
                    0
                )]
            );
        })
        .expect("decodes");
}

#[test]
fn modern_record_every_raw_field() {
    let mut dec = Decoder::default();
    dec.with_raw(MODERN_LINE.as_bytes(), |r| {
        assert_eq!(
            (r.start_time, r.end_time),
            (Some(1750000000), Some(1750000015))
        );
        assert_eq!(r.source_ip, Some("10.244.1.17"));
        assert_eq!(r.source_name, Some("checkout-6f7b9c8d5-x2x9q"));
        assert_eq!(r.source_name_aggr, Some("checkout-6f7b9c8d5-*"));
        assert_eq!(r.source_namespace, Some("shop"));
        assert_eq!(r.source_port, Some(43122));
        assert_eq!(r.source_type, Some("wep"));
        assert_eq!(r.source_labels.0, vec!["app=checkout", "tier=backend"]);
        assert_eq!(r.dest_ip, Some("93.184.216.34"));
        assert_eq!(r.dest_name, Some("-"));
        assert_eq!(r.dest_name_aggr, Some("pub"));
        assert_eq!(r.dest_namespace, Some("-"));
        assert_eq!(r.dest_port, Some(443));
        assert_eq!(r.dest_type, Some("net"));
        assert!(r.dest_labels.0.is_empty());
        assert_eq!(r.nat_outgoing_ports, Some(vec![40001, 40002, 40003]));
        assert_eq!(r.dest_service_namespace, Some("payments"));
        assert_eq!(r.dest_service_name, Some("gateway"));
        assert_eq!(r.dest_service_port, Some("https"));
        assert_eq!(r.dest_service_port_num, Some(8443));
        assert_eq!(r.dest_domains, Some(vec!["api.example.com", "example.com"]));
        assert_eq!(r.proto, Some("tcp"));
        assert_eq!(r.action, Some("deny"));
        assert_eq!(r.reporter, Some("src"));
        let p = r.policies.as_ref().expect("policies");
        assert_eq!(
            hits(&p.all_policies),
            vec![
                (
                    0,
                    "security",
                    PolicyKind::GlobalNetworkPolicy,
                    "",
                    "block-egress",
                    Action::Pass,
                    0
                ),
                (
                    1,
                    "default",
                    PolicyKind::CalicoNetworkPolicy,
                    "shop",
                    "allow-web",
                    Action::Deny,
                    2
                ),
            ]
        );
        assert_eq!(
            hits(&p.enforced_policies),
            vec![
                (
                    0,
                    "security",
                    PolicyKind::GlobalNetworkPolicy,
                    "",
                    "block-egress",
                    Action::Pass,
                    0
                ),
                (
                    1,
                    "default",
                    PolicyKind::CalicoNetworkPolicy,
                    "shop",
                    "default.allow-web",
                    Action::Deny,
                    2
                ),
            ]
        );
        assert_eq!(
            hits(&p.pending_policies),
            vec![
                (
                    0,
                    "default",
                    PolicyKind::StagedNetworkPolicy,
                    "shop",
                    "trial",
                    Action::Deny,
                    -1
                ),
                (
                    1,
                    "default",
                    PolicyKind::KubernetesNetworkPolicy,
                    "shop",
                    "deny-all",
                    Action::Deny,
                    -2
                ),
                (
                    2,
                    "default",
                    PolicyKind::StagedKubernetesNetworkPolicy,
                    "shop",
                    "trial-knp",
                    Action::Allow,
                    4
                ),
            ]
        );
        assert_eq!(
            hits(&p.transit_policies),
            vec![(
                0,
                "__PROFILE__",
                PolicyKind::Profile,
                "shop",
                "kns.shop",
                Action::Allow,
                -1
            )]
        );
        assert_eq!((r.bytes_in, r.bytes_out), (Some(1200), Some(3400)));
        assert_eq!((r.packets_in, r.packets_out), (Some(10), Some(12)));
        assert_eq!(
            (r.num_flows, r.num_flows_started, r.num_flows_completed),
            (Some(5), Some(4), Some(3))
        );
        assert_eq!(r.http_requests_allowed_in, Some(7));
        assert_eq!(r.http_requests_denied_in, Some(2));
        assert_eq!(r.process_name, Some("/usr/bin/curl"));
        assert_eq!(r.process_id, Some("4242"));
        assert_eq!(r.process_args, Some(vec!["-s", "https://api.example.com"]));
        assert_eq!(
            (r.num_process_names, r.num_process_ids, r.num_process_args),
            (Some(1), Some(1), Some(2))
        );
        assert_eq!(
            r.original_source_ips,
            Some(vec!["203.0.113.7", "198.51.100.9"])
        );
        assert_eq!(r.num_original_source_ips, Some(2));
        assert_eq!(r.tcp_mean_send_congestion_window, Some(10));
        assert_eq!(r.tcp_min_send_congestion_window, Some(9));
        assert_eq!(r.tcp_mean_smooth_rtt, Some(1500));
        assert_eq!(r.tcp_max_smooth_rtt, Some(2500));
        assert_eq!(r.tcp_mean_min_rtt, Some(900));
        assert_eq!(r.tcp_max_min_rtt, Some(1100));
        assert_eq!(r.tcp_mean_mss, Some(1448));
        assert_eq!(r.tcp_min_mss, Some(1400));
        assert_eq!(r.tcp_total_retransmissions, Some(3));
        assert_eq!(r.tcp_lost_packets, Some(1));
        assert_eq!(r.tcp_unrecovered_to, Some(0));
        assert_eq!(r.host, Some("node-a"));
        assert_eq!(r.timestamp_ms, Some(1750000016123));
        assert!(r.key.is_none());
    })
    .expect("the modern line decodes");
}

#[test]
fn modern_record_every_record_field() {
    let rec = decode(MODERN_LINE);
    assert_eq!(rec.format, Format::Calico);
    assert_eq!((rec.start_time, rec.end_time), (1750000000, 1750000015));

    assert_eq!(rec.src.kind, EndpointType::Wep);
    assert_eq!(rec.src.ip, Some("10.244.1.17".parse::<IpAddr>().unwrap()));
    assert_eq!(rec.src.port, Some(43122));
    assert!(!rec.src.public);
    assert_eq!(key(rec.src.id), "shop/checkout-6f7b9c8d5-*");
    assert_eq!(rec.src.group, WorkloadId::of_key("shop/checkout"));

    assert_eq!(rec.dst.kind, EndpointType::Net);
    assert_eq!(rec.dst.ip, Some("93.184.216.34".parse::<IpAddr>().unwrap()));
    assert_eq!(rec.dst.port, Some(443));
    assert!(rec.dst.public);
    // A kept address names the external peer (not its domain).
    assert_eq!(key(rec.dst.id), "pub:93.184.216.34");
    assert_eq!(rec.dst.group, rec.dst.id);

    assert_eq!(rec.proto, Proto::TCP);
    assert_eq!(rec.action, Action::Deny);
    assert_eq!(rec.reporter, Reporter::Src);
    assert_eq!((rec.bytes_in, rec.bytes_out), (1200, 3400));
    assert_eq!((rec.packets_in, rec.packets_out), (10, 12));
    assert_eq!(
        (
            rec.num_flows,
            rec.num_flows_started,
            rec.num_flows_completed
        ),
        (5, 4, 3)
    );
    assert_eq!(
        (rec.http_requests_allowed_in, rec.http_requests_denied_in),
        (7, 2)
    );
    assert_eq!(resolve(rec.dest_service), "payments/gateway:https");
    assert_eq!(rec.dest_service_port_num, Some(8443));
    assert_eq!(resolve(rec.dest_domain), "api.example.com");
    assert_eq!(rec.num_dest_domains, 2);
    assert_eq!(resolve(rec.process_name), "/usr/bin/curl");
    assert_eq!(rec.num_process_names, 1);
    assert_eq!(rec.num_original_source_ips, 2);
    assert_eq!(rec.num_nat_outgoing_ports, 3);
    // The last enforced hit decided the verdict.
    assert_eq!(
        resolve(rec.deciding_policy),
        "default|shop/default.allow-web"
    );
    assert_eq!(
        (rec.num_enforced_policies, rec.num_pending_policies),
        (2, 3)
    );
    assert_eq!(
        rec.tcp,
        TcpStats {
            mean_send_congestion_window: 10,
            min_send_congestion_window: 9,
            mean_smooth_rtt: 1500,
            max_smooth_rtt: 2500,
            mean_min_rtt: 900,
            max_min_rtt: 1100,
            mean_mss: 1448,
            min_mss: 1400,
            total_retransmissions: 3,
            lost_packets: 1,
            unrecovered_to: 0,
        }
    );
}

#[test]
fn external_destination_without_address_is_named_by_its_domain() {
    let line = r#"{"start_time":1,"end_time":2,"source_type":"wep","source_namespace":"shop","source_name_aggr":"cart-*","dest_type":"net","dest_name_aggr":"pub","dest_ip":null,"dest_domains":["c2.evil.example"]}"#;
    let rec = decode(line);
    assert_eq!(key(rec.dst.id), "pub:c2.evil.example");
    assert!(rec.dst.public);
    assert_eq!(rec.dst.ip, None);
    assert_eq!(resolve(rec.dest_domain), "c2.evil.example");
    assert_eq!(rec.num_dest_domains, 1);
    // Without original_source_ips' count, the list length is used.
    let rec = decode(r#"{"start_time":1,"original_source_ips":["1.2.3.4","5.6.7.8","9.9.9.9"]}"#);
    assert_eq!(rec.num_original_source_ips, 3);
}

#[test]
fn missing_fields_take_defaults() {
    let rec = decode(r#"{"start_time":1750000000}"#);
    assert_eq!(rec.format, Format::Calico);
    assert_eq!((rec.start_time, rec.end_time), (1750000000, 1750000000));
    assert_eq!(rec.src.kind, EndpointType::Net);
    assert_eq!(rec.dst.kind, EndpointType::Net);
    assert_eq!(key(rec.src.id), "pub");
    assert_eq!((rec.src.ip, rec.src.port), (None, None));
    assert_eq!((rec.dst.ip, rec.dst.port), (None, None));
    // An absent protocol is 0, distinct from an unrecognised string (255).
    assert_eq!(rec.proto, Proto::default());
    assert_eq!(rec.action, Action::Allow);
    assert_eq!(rec.reporter, Reporter::Src);
    let expected = FlowRecord {
        format: Format::Calico,
        start_time: 1750000000,
        end_time: 1750000000,
        src: rec.src,
        dst: rec.dst,
        ..FlowRecord::default()
    };
    assert_eq!(rec, expected, "every counter and id defaults to zero");

    // Only end_time, or only the shipper's @timestamp (ms), still give an event time.
    let rec = decode(r#"{"end_time":42}"#);
    assert_eq!((rec.start_time, rec.end_time), (42, 42));
    let rec = decode(r#"{"@timestamp":1750000016123}"#);
    assert_eq!((rec.start_time, rec.end_time), (1750000016, 1750000016));
    // An end before the start is clamped to the start.
    let rec = decode(r#"{"start_time":100,"end_time":90}"#);
    assert_eq!((rec.start_time, rec.end_time), (100, 100));
    // Unrecognised enum strings are kept as "unknown", not errors.
    let rec = decode(r#"{"start_time":1,"proto":"gre","action":"maybe","reporter":"xyz"}"#);
    assert_eq!(rec.proto, Proto::UNKNOWN);
    assert_eq!(rec.action, Action::Unknown);
    assert_eq!(rec.reporter, Reporter::Unknown);
    let rec = decode(r#"{"start_time":1,"proto":"47"}"#);
    assert_eq!(rec.proto, Proto(47));
    // Unknown keys are ignored (newer Felix versions add fields).
    let rec = decode(r#"{"start_time":1,"some_future_field":{"x":[1,2,{"y":null}]}}"#);
    assert_eq!(rec.start_time, 1);
    // Without any time the record is rejected.
    assert_eq!(
        Decoder::default().decode(br#"{"bytes_in":5}"#),
        Err(DecodeError::NoTime)
    );
}

#[test]
fn a_field_of_the_wrong_type_fails_that_record_only() {
    let mut dec = Decoder::default();
    for bad in [
        r#"{"start_time":1,"bytes_in":"x"}"#,
        r#"{"start_time":"1"}"#,
        r#"{"start_time":1,"source_ip":5}"#,
        r#"{"start_time":1,"dest_port":"443"}"#,
        r#"{"start_time":1,"bytes_out":-5}"#,
        r#"{"start_time":1,"bytes_in":1.5}"#,
        r#"{"start_time":1,"source_labels":"app=x"}"#,
        r#"{"start_time":1,"policies":{"all_policies":[7]}}"#,
        r#"{"start_time":1,"dest_domains":"example.com"}"#,
        r#"{"start_time":1,"Key":{"source_type":"wep"}}"#,
        r#"{"start_time":1,"Key":"flow"}"#,
    ] {
        match dec.decode(bad.as_bytes()) {
            Err(DecodeError::Json(reason)) => assert!(!reason.is_empty()),
            other => panic!("{bad}: expected a JSON type error, got {other:?}"),
        }
        // The same decoder goes on decoding the next good line.
        let good = dec
            .decode(FELIX_LINE.as_bytes())
            .expect("good line after a bad one");
        assert_eq!(good.bytes_in, 4288);
    }
}

#[test]
fn a_port_out_of_range_fails_with_a_reason_naming_the_field() {
    let mut dec = Decoder::default();
    for (line, field, value) in [
        (r#"{"start_time":1,"dest_port":70000}"#, "dest_port", 70000),
        (r#"{"start_time":1,"source_port":-1}"#, "source_port", -1),
        (
            r#"{"start_time":1,"dest_service_port_num":65536}"#,
            "dest_service_port_num",
            65536,
        ),
        (
            r#"{"start_time":1,"Key":{"dest_port":99999}}"#,
            "dest_port",
            99999,
        ),
        (
            r#"{"start_time":1,"Key":{"dest_service_port":-80}}"#,
            "dest_service_port",
            -80,
        ),
    ] {
        let err = dec.decode(line.as_bytes()).expect_err(line);
        assert_eq!(err, DecodeError::Range(field, value), "{line}");
        assert!(err.to_string().contains(field), "{err}");
    }
    // The bounds themselves are fine; 0 means "no port".
    let rec = dec
        .decode(br#"{"start_time":1,"source_port":65535,"dest_port":0}"#)
        .expect("in range");
    assert_eq!((rec.src.port, rec.dst.port), (Some(65535), None));
}

#[test]
fn only_a_json_object_is_a_record() {
    let mut dec = Decoder::default();
    for bad in [
        "[1577834657,1577834965]",
        "[]",
        "\"start_time\"",
        "42",
        "null",
        "true",
        r#"{"start_time":1,"Key":[]}"#,
        r#"{"start_time":1,"Key":["a","b",1]}"#,
        r#"{"start_time":1,"policies":[["0|t|t.p|allow"]]}"#,
        r#"{"start_time":1,"Key":{"policies":[]}}"#,
    ] {
        match dec.decode(bad.as_bytes()) {
            Err(DecodeError::Json(_)) => {}
            other => panic!("{bad}: expected a rejection, got {other:?}"),
        }
        assert!(dec.with_raw(bad.as_bytes(), |_| ()).is_err(), "{bad}");
    }
    // null nested objects are just absent.
    let rec = decode(r#"{"start_time":1,"Key":null,"policies":null}"#);
    assert_eq!(rec.format, Format::Calico);
}

#[test]
fn a_type_error_names_the_field() {
    let mut dec = Decoder::default();
    for (line, field) in [
        (r#"{"start_time":1,"bytes_in":"x"}"#, "bytes_in"),
        (
            r#"{"start_time":1,"Key":{"dest_port":"https"}}"#,
            "Key.dest_port",
        ),
        (
            r#"{"start_time":1,"policies":{"enforced_policies":["0|t|t.p|allow",{"kind":"gnp"}]}}"#,
            "policies.enforced_policies[1].kind",
        ),
    ] {
        let err = dec.decode(line.as_bytes()).expect_err(line).to_string();
        assert!(err.contains(field), "{line}: {err}");
    }
}

#[test]
fn the_fuzz_seeds_are_valid_records() {
    // The hand-written seeds (`*.json`); the fuzzer's own corpus entries (hash names) are anything.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/decode");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("fuzz/corpus/decode exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("seed");
        Decoder::default()
            .decode(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 3, "only {n} seeds");
}
