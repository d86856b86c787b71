//! A simulated benign week (`SimConfig::benign_week()`: deploy churn, nightly batch and backup, a
//! marketing spike, a new dependency; no attacks) through the whole detector suite must stay quiet:
//! false alerts per workload-day at most [`MAX_FALSE_ALERTS_PER_WORKLOAD_DAY`].
//!
//! Its own test binary, so the process-wide workload registry holds only this week's workloads.
//! About 450k lines: a minute or two in a debug build, a few seconds in release
//! (`cargo test --release --test benign_week -- --nocapture` prints the figure and every alert).

mod sim_support;

use flowwarden::config::Config;
use flowwarden::flow::{EndpointType, WorkloadRegistry};
use flowwarden::pipeline::{Pipeline, PipelineOptions};
use flowwarden::simulate::{SimConfig, Simulator};
use std::sync::Arc;

/// The bound, counted as `flowwarden eval` counts it: every alert is false here, workloads are the
/// in-cluster workload keys seen (each rollout's pod-template hash is a key), days of simulated time.
const MAX_FALSE_ALERTS_PER_WORKLOAD_DAY: f64 = 0.05;

#[test]
fn benign_week_stays_quiet() {
    let sim_cfg = SimConfig::benign_week();
    assert!(sim_cfg.attacks.is_empty() && sim_cfg.surprises && sim_cfg.deploys_per_day > 0.0);
    let (start, days) = (sim_cfg.start, sim_cfg.duration_s as f64 / 86_400.0);
    let mut cfg = Config::default();
    cfg.window.length = format!("{}s", sim_cfg.flush_s);
    cfg.alerts.stdout = false;
    let mut pipeline = Pipeline::new(
        Arc::new(cfg),
        // Every workload of the week stays named, so the count below is all it saw (as eval).
        PipelineOptions {
            keep_names: true,
            ..PipelineOptions::default()
        },
    )
    .expect("default config builds");
    let mut sim = Simulator::try_new(sim_cfg).expect("valid simulation");
    assert!(sim.episodes().is_empty(), "no attacks in a benign week");
    let (alerts, lines) = sim_support::run(&mut pipeline, &mut sim, "benign-week");
    let workloads = WorkloadRegistry::global()
        .snapshot()
        .into_iter()
        .filter(|(_, info)| info.kind != EndpointType::Net)
        .count();
    let per_workload_day = alerts.len() as f64 / (workloads as f64 * days);
    println!(
        "benign week: {lines} lines, {} alerts over {workloads} workloads x {days:.1} days = {per_workload_day:.4} false alerts per workload-day (bound {MAX_FALSE_ALERTS_PER_WORKLOAD_DAY})",
        alerts.len()
    );
    for a in &alerts {
        println!(
            "  day {:.2}  {:<12} {:<40} {}",
            (a.window_start - start) as f64 / 86_400.0,
            a.detector,
            a.workload,
            a.description
        );
    }
    assert!(workloads > 30, "the storefront has dozens of workloads");
    assert!(
        per_workload_day <= MAX_FALSE_ALERTS_PER_WORKLOAD_DAY,
        "{per_workload_day:.4} false alerts per workload-day"
    );
}
