//! Generation rate of the simulator (records per second, one core, into a reused buffer).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowwarden::simulate::{AttackSpec, OutputFormat, SimConfig, Simulator};

fn run(cfg: &SimConfig) -> u64 {
    let mut sim = Simulator::new(cfg.clone());
    let mut buf = Vec::with_capacity(8 << 20);
    while {
        buf.clear();
        sim.next_window(&mut buf, None)
    } {
        std::hint::black_box(&buf);
    }
    sim.records()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("generate");
    group.sample_size(10);
    let cases = [
        (
            "storefront_2d_calico_default_attacks",
            SimConfig {
                duration_s: 2 * 86_400,
                attacks: AttackSpec::default_mix(),
                ..SimConfig::default()
            },
        ),
        (
            "storefront_6h_goldmane_15s",
            SimConfig {
                duration_s: 6 * 3600,
                flush_s: 15,
                format: OutputFormat::Goldmane,
                ..SimConfig::default()
            },
        ),
        (
            "2000_workloads_30m_calico",
            SimConfig {
                duration_s: 1800,
                workloads: Some(2000),
                ..SimConfig::default()
            },
        ),
    ];
    for (name, cfg) in cases {
        let records = run(&cfg);
        group.throughput(Throughput::Elements(records));
        group.bench_function(name, |b| b.iter(|| run(&cfg)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
