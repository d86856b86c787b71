//! Hot-path micro benchmarks (issue 7): decode (IoT-23 lines when present, else simulator lines; and
//! full-field Calico lines from the simulator), aggregate, window close with every detector, and
//! sketch updates. `cargo bench --bench pipeline`; `flowwarden bench` gives the end-to-end figures.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flowwarden::baseline::sketch::{CountMinSketch, DistinctCounter};
use flowwarden::baseline::{BaselineConfig, BaselineStore, ClusterState};
use flowwarden::detect::{build_suite, DetectConfig, DetectContext};
use flowwarden::flow::{Decoder, FlowRecord, WorkloadId};
use flowwarden::simulate::{AttackSpec, SimConfig, Simulator};
use flowwarden::window::{Side, WindowAggregate, WindowTable};
use rustc_hash::FxHashMap;
use std::hint::black_box;

/// Simulated Calico lines (every field the simulator writes).
fn simulated_lines(duration_s: u64, max: usize) -> Vec<Vec<u8>> {
    let mut sim = Simulator::new(SimConfig {
        duration_s,
        attacks: AttackSpec::default_mix(),
        ..SimConfig::default()
    });
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    while lines.len() < max && sim.next_window(&mut buf, None) {
        lines.extend(
            buf.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
        buf.clear();
    }
    lines.truncate(max);
    lines
}

/// IoT-23 lines from the shared data set, when it is there.
fn iot23_lines(max: usize) -> Option<Vec<Vec<u8>>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/iot23.jsonl");
    let text = std::fs::read(path).ok()?;
    Some(
        text.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .take(max)
            .map(<[u8]>::to_vec)
            .collect(),
    )
}

fn decode_all(lines: &[Vec<u8>]) -> Vec<FlowRecord> {
    let mut dec = Decoder::default();
    lines.iter().filter_map(|l| dec.decode(l).ok()).collect()
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let sets = [
        (
            "iot23_or_simulated",
            iot23_lines(20_000).unwrap_or_else(|| {
                eprintln!("iot23.jsonl not found: decoding simulator lines instead");
                simulated_lines(6 * 3600, 20_000)
            }),
        ),
        ("calico_full_field", simulated_lines(6 * 3600, 20_000)),
    ];
    for (name, lines) in &sets {
        let bytes: usize = lines.iter().map(Vec::len).sum();
        group.throughput(Throughput::Elements(lines.len() as u64));
        let mut dec = Decoder::default();
        // Warm the per-thread caches, as a running decoder has them.
        for l in lines {
            let _ = dec.decode(l);
        }
        group.bench_function(format!("{name}_{}B", bytes / lines.len().max(1)), |b| {
            b.iter(|| {
                for l in lines {
                    let _ = black_box(dec.decode(l));
                }
            })
        });
    }
    group.finish();
}

/// Folds records into one window's table, as a pipeline shard does.
fn aggregate(records: &[FlowRecord]) -> WindowTable {
    let mut table = WindowTable::default();
    for rec in records {
        table.entry(rec.src.id).add(rec, Side::Source);
        if rec.dst.id != rec.src.id {
            table.entry(rec.dst.id).add(rec, Side::Destination);
        }
    }
    table
}

fn bench_aggregate(c: &mut Criterion) {
    let records = decode_all(&simulated_lines(6 * 3600, 20_000));
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("calico_records", |b| {
        b.iter(|| black_box(aggregate(&records)))
    });
    group.finish();
}

fn bench_close(c: &mut Criterion) {
    // One flush window of the storefront, scored by every detector against warm baselines.
    let records = decode_all(&simulated_lines(2 * 86_400, usize::MAX));
    let first = records.first().map_or(0, |r| r.start_time);
    let flush = 300;
    let mut windows: std::collections::BTreeMap<i64, Vec<FlowRecord>> = Default::default();
    for r in records {
        windows
            .entry((r.start_time - first).div_euclid(flush))
            .or_default()
            .push(r);
    }
    let store = BaselineStore::new(BaselineConfig::default());
    let last = windows.keys().next_back().copied().unwrap_or(0);
    for (w, recs) in &windows {
        if *w == last {
            break;
        }
        for (_, agg) in aggregate(recs).iter() {
            store.update(agg.group, agg, *w, first + w * flush, false);
        }
    }
    let mut items: Vec<(WorkloadId, WindowAggregate)> =
        aggregate(windows.get(&last).map_or(&[][..], Vec::as_slice)).into_entries();
    items.sort_unstable_by_key(|(id, _)| *id);
    for (_, agg) in &mut items {
        agg.normalize();
    }
    let cfg = DetectConfig::default();
    let detectors = build_suite(&cfg);
    let cluster = ClusterState::default();
    let profiles = FxHashMap::default();
    let ctx = DetectContext {
        window: last,
        window_start: first + last * flush,
        window_end: first + (last + 1) * flush,
        cfg: &cfg,
        soft: false,
        cluster: &cluster,
        warmup_windows: store.config().warmup_windows,
        namespace_profiles: &profiles,
    };
    let mut group = c.benchmark_group("close");
    group.throughput(Throughput::Elements(items.len() as u64));
    group.bench_function(format!("every_detector_{}_workloads", items.len()), |b| {
        b.iter(|| {
            let mut findings = Vec::new();
            for (id, agg) in &items {
                let base = store.get(agg.group);
                for d in &detectors {
                    d.evaluate(&ctx, *id, agg, base.as_deref(), &mut findings);
                }
            }
            black_box(findings)
        })
    });
    group.finish();
}

fn bench_sketches(c: &mut Criterion) {
    let mut group = c.benchmark_group("sketch");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("distinct_counter_10k_inserts", |b| {
        b.iter_batched(
            DistinctCounter::default,
            |mut d| {
                for v in 0..10_000u64 {
                    d.insert(v % 3000);
                }
                black_box(d.count())
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("count_min_10k_adds", |b| {
        let mut s = CountMinSketch::new(4, 1024);
        b.iter(|| {
            for k in 0..10_000u64 {
                s.add(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1.0);
            }
            black_box(s.estimate(42))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_decode, bench_aggregate, bench_close, bench_sketches
}
criterion_main!(benches);
