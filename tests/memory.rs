//! Memory per tracked workload with 100k distinct workloads: each gets twelve windows of history
//! (warm), four peers (two services, DNS, a public API: known peers and an external edge) and one
//! window ten times its usual volume (so it also carries an hour-of-day peak profile, the worst
//! case). Reports `BaselineStore::bytes_per_workload` (structs and heap of the baselines) and the
//! process's resident-set growth per workload, which also counts the workload registry's names;
//! both must stay at or under 2 KiB.

use flowwarden::baseline::{BaselineConfig, BaselineStore};
use flowwarden::flow::Decoder;
use flowwarden::window::{Side, WindowAggregate};

const WORKLOADS: usize = 100_000;
const WINDOWS: i64 = 13;
const WINDOW_S: i64 = 300;
const T0: i64 = 1_750_000_200;
const MAX_BYTES_PER_WORKLOAD: f64 = 2048.0;

fn line(i: usize, dst_ns: &str, dst: &str, dst_type: &str, dst_ip: &str, port: u16) -> String {
    format!(
        concat!(
            r#"{{"start_time":{},"end_time":{},"source_ip":null,"source_name":"-","source_name_aggr":"app{}-7d9c8b6f4-*","#,
            r#""source_namespace":"ns{}","source_type":"wep","dest_ip":{},"dest_name":"-","dest_name_aggr":"{}","#,
            r#""dest_namespace":"{}","dest_type":"{}","dest_port":{},"proto":"tcp","action":"allow","reporter":"src","#,
            r#""bytes_in":9000,"bytes_out":4000,"packets_in":60,"packets_out":50,"num_flows":10,"num_flows_started":10,"num_flows_completed":10}}"#
        ),
        T0,
        T0 + WINDOW_S,
        i,
        i % 500,
        dst_ip,
        dst,
        dst_ns,
        dst_type,
        port
    )
}

/// Resident set and its peak (kB) from /proc/self/status; None off Linux.
fn rss_kb() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[test]
fn a_tracked_workload_costs_at_most_two_kib() {
    let before = rss_kb();
    let store = BaselineStore::new(BaselineConfig::default());
    let mut dec = Decoder::default();
    for i in 0..WORKLOADS {
        let mut agg = WindowAggregate::default();
        for l in [
            line(i, "shop", "cart-5d8f7c9b6-*", "wep", "null", 7070),
            line(i, "finance", "postgres-6c9d8b7f5-*", "wep", "null", 5432),
            line(i, "kube-system", "coredns-576cbf47c7-*", "wep", "null", 53),
            line(
                i,
                "-",
                "pub",
                "net",
                &format!("\"52.{}.{}.10\"", (i / 250) % 250, i % 250),
                443,
            ),
        ] {
            let rec = dec.decode(l.as_bytes()).expect("test line decodes");
            agg.add(&rec, Side::Source);
        }
        agg.normalize();
        for w in 0..WINDOWS {
            let start = T0 + w * WINDOW_S;
            store.update(agg.group, &agg, start / WINDOW_S, start, false);
        }
        let mut spike = agg.clone();
        spike.bytes_out *= 10;
        spike.bytes_to_public *= 10;
        let start = T0 + WINDOWS * WINDOW_S;
        store.update(spike.group, &spike, start / WINDOW_S, start, false);
    }
    assert_eq!(store.len(), WORKLOADS, "one baseline per workload group");
    let with_profile = store
        .snapshot()
        .iter()
        .filter(|(_, b)| b.daily.is_some() && !b.edges.is_empty() && b.known_peers.len() >= 4)
        .count();
    assert_eq!(
        with_profile, WORKLOADS,
        "every baseline holds peers, an external edge and a peak profile"
    );
    let per_workload = store.bytes_per_workload();
    println!("bytes_per_workload (BaselineStore estimate): {per_workload:.0}");
    if let (Some((rss0, _)), Some((rss1, peak1))) = (before, rss_kb()) {
        let delta = (rss1.saturating_sub(rss0) * 1024) as f64 / WORKLOADS as f64;
        let peak = (peak1.saturating_sub(rss0) * 1024) as f64 / WORKLOADS as f64;
        println!(
            "resident set: +{} kB for {WORKLOADS} workloads = {delta:.0} bytes per workload (peak +{peak:.0} per workload), registry names included",
            rss1.saturating_sub(rss0)
        );
        assert!(
            delta <= MAX_BYTES_PER_WORKLOAD,
            "resident set grew {delta:.0} bytes per workload"
        );
    }
    assert!(
        per_workload <= MAX_BYTES_PER_WORKLOAD,
        "{per_workload:.0} bytes per workload"
    );
}
