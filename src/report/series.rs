//! Per-window series of the alerted workloads, recomputed from the flow logs with the same decoder
//! and [`WindowAggregate`] the daemon uses, so the report's curve is what the detector saw.
//!
//! Only the workloads named by the charted alerts are aggregated (records of other workloads are
//! decoded and dropped), so memory stays proportional to the charts, not to the input.

use crate::baseline::Feature;
use crate::flow::{Decoder, WorkloadId};
use crate::source::{open_inputs, FileSourceOptions, LineBatch, Poll};
use crate::window::{Side, WindowAggregate};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;

/// Window aggregates of the wanted workloads: workload → window index → aggregate.
#[derive(Debug, Default)]
pub struct WorkloadSeries {
    /// Window length in seconds the indexes refer to.
    pub window_len: i64,
    /// Aggregates per workload and window index (`start_time.div_euclid(window_len)`).
    pub windows: FxHashMap<WorkloadId, BTreeMap<i64, WindowAggregate>>,
    /// Lines that did not decode.
    pub bad_lines: u64,
    /// Records read.
    pub records: u64,
}

impl WorkloadSeries {
    /// Values of `feature` for `workload` in windows `from..=to` (0 where the workload was silent);
    /// `None` when the feature is not one the report knows how to recompute.
    pub fn values(
        &self,
        workload: WorkloadId,
        feature: &str,
        from: i64,
        to: i64,
    ) -> Option<Vec<(i64, f64)>> {
        let empty = BTreeMap::new();
        let wins = self.windows.get(&workload).unwrap_or(&empty);
        let zero = WindowAggregate::default();
        feature_value(&zero, feature)?;
        Some(
            (from..=to)
                .map(|w| {
                    let agg = wins.get(&w).unwrap_or(&zero);
                    (w, feature_value(agg, feature).unwrap_or(0.0))
                })
                .collect(),
        )
    }
}

/// Reads `inputs` and aggregates the records of `wanted` workloads into windows of `window_len` s.
pub fn compute(
    inputs: &[String],
    wanted: &FxHashSet<WorkloadId>,
    window_len: i64,
    max_line_bytes: usize,
) -> anyhow::Result<WorkloadSeries> {
    let window_len = window_len.max(1);
    let mut source = open_inputs(
        inputs,
        &FileSourceOptions {
            max_line_bytes,
            ..FileSourceOptions::default()
        },
    )?;
    let mut decoder = Decoder::new(max_line_bytes);
    let mut series = WorkloadSeries {
        window_len,
        ..WorkloadSeries::default()
    };
    let mut batch = LineBatch::new();
    loop {
        batch.clear();
        let poll = source.poll_batch(&mut batch, 8192, 16 << 20)?;
        for i in 0..batch.len() {
            let rec = match decoder.decode(batch.line(i)) {
                Ok(r) => r,
                Err(_) => {
                    series.bad_lines += 1;
                    continue;
                }
            };
            series.records += 1;
            let w = rec.start_time.div_euclid(window_len);
            if wanted.contains(&rec.src.id) {
                series
                    .windows
                    .entry(rec.src.id)
                    .or_default()
                    .entry(w)
                    .or_default()
                    .add(&rec, Side::Source);
            }
            if rec.dst.id != rec.src.id && wanted.contains(&rec.dst.id) {
                series
                    .windows
                    .entry(rec.dst.id)
                    .or_default()
                    .entry(w)
                    .or_default()
                    .add(&rec, Side::Destination);
            }
        }
        match poll {
            Poll::End if batch.is_empty() => break,
            Poll::Idle if batch.is_empty() => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => {}
        }
    }
    Ok(series)
}

/// The value of a detector feature in one aggregate: the baseline features
/// ([`crate::baseline::Feature`]) and the scan/sweep counters; `None` for a feature that is not a
/// per-window value (`edge_duty_cycle`, `new_peers`, ...), for which the chart falls back to the
/// alerts' own points.
pub fn feature_value(agg: &WindowAggregate, feature: &str) -> Option<f64> {
    if let Some(f) = Feature::ALL.iter().find(|f| f.name() == feature) {
        return Some(f.value(agg));
    }
    let v = match feature {
        "distinct_denied_dest_ports" => agg.denied_ports.count(),
        "distinct_denied_dest_hosts" => agg.denied_hosts.count(),
        "denied_in" => agg.denied_in,
        "records_out" => agg.records_out,
        "records_in" => agg.records_in,
        _ => return None,
    };
    Some(v as f64)
}

/// Whether values of `feature` are byte counts (for axis labels).
pub fn is_bytes(feature: &str) -> bool {
    feature.contains("bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_only_wanted_workloads_per_window() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("flows.jsonl");
        let line = |t: i64, port: u16, bytes: u64| {
            format!(
                concat!(
                    "{{\"start_time\":{t},\"end_time\":{e},\"source_name_aggr\":\"web-*\",\"source_namespace\":\"shop\",",
                    "\"source_type\":\"wep\",\"dest_name_aggr\":\"db-*\",\"dest_namespace\":\"shop\",\"dest_type\":\"wep\",",
                    "\"dest_port\":{port},\"proto\":\"tcp\",\"action\":\"allow\",\"reporter\":\"src\",",
                    "\"bytes_out\":{bytes},\"bytes_in\":1,\"packets_out\":1,\"packets_in\":1,\"num_flows\":1,",
                    "\"num_flows_started\":1,\"num_flows_completed\":1}}\n"
                ),
                t = t,
                e = t + 15,
                port = port,
                bytes = bytes
            )
        };
        let text = [
            line(0, 80, 100),
            line(5, 81, 50),
            line(15, 80, 7),
            "garbage\n".to_string(),
        ]
        .concat();
        std::fs::write(&path, text).expect("write");
        let web = WorkloadId::of_key("shop/web-*");
        let wanted: FxHashSet<WorkloadId> = [web].into_iter().collect();
        let s = compute(&[path.display().to_string()], &wanted, 15, 1 << 20).expect("compute");
        assert_eq!(s.records, 3);
        assert_eq!(s.bad_lines, 1);
        assert_eq!(s.windows.len(), 1, "db-* was not asked for");
        let bytes = s.values(web, "bytes_out", -1, 2).expect("known feature");
        assert_eq!(bytes, vec![(-1, 0.0), (0, 150.0), (1, 7.0), (2, 0.0)]);
        let ports = s
            .values(web, "distinct_dest_ports", 0, 1)
            .expect("known feature");
        assert_eq!(ports, vec![(0, 2.0), (1, 1.0)]);
        assert!(s.values(web, "mystery_feature", 0, 1).is_none());
    }
}
