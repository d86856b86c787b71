//! The detector suite on simulated traffic, in-process (Simulator → Pipeline): each detector fires on
//! the attack it exists for, on the right workload, within one window of the attack's start. (The
//! benign week that must stay quiet is `tests/benign_week.rs`.)
//!
//! Runs use the default configuration (5-minute flush windows, `baseline.warmup_windows` = 12) with
//! three hours of benign history before the attack, so every baseline is warm. Rollouts and benign
//! surprises are switched off in the attack runs so each run shows one thing.

mod sim_support;

use flowwarden::alert::Alert;
use flowwarden::config::Config;
use flowwarden::pipeline::{Pipeline, PipelineOptions};
use flowwarden::simulate::{AttackKind, AttackSpec, Episode, SimConfig, Simulator};
use std::sync::Arc;

/// Flush interval = window length of the attack runs.
const FLUSH_S: u64 = 300;
/// Benign history before each attack: 36 windows, three times the warm-up.
const ATTACK_AT_S: u64 = 3 * 3600;

/// What one simulated run produced.
struct Run {
    alerts: Vec<Alert>,
    episodes: Vec<Episode>,
    window_s: i64,
}

/// Simulates `sim` and feeds every window's lines to a pipeline with the default config.
fn run(sim: SimConfig) -> Run {
    let window_s = sim.flush_s as i64;
    let mut cfg = Config::default();
    cfg.window.length = format!("{window_s}s");
    cfg.alerts.stdout = false;
    let mut pipeline =
        Pipeline::new(Arc::new(cfg), PipelineOptions::default()).expect("default config builds");
    let mut sim = Simulator::try_new(sim).expect("valid simulation");
    let episodes = sim.episodes().to_vec();
    let (alerts, _) = sim_support::run(&mut pipeline, &mut sim, "simulated");
    Run {
        alerts,
        episodes,
        window_s,
    }
}

/// One attack of `kind` at [`ATTACK_AT_S`] lasting `duration_s`, then `tail_s` of benign traffic.
fn attack_run(kind: AttackKind, duration_s: u64, tail_s: u64) -> Run {
    run(SimConfig {
        seed: 7,
        duration_s: ATTACK_AT_S + duration_s + tail_s,
        flush_s: FLUSH_S,
        attacks: vec![AttackSpec {
            start_s: Some(ATTACK_AT_S),
            duration_s: Some(duration_s),
            ..AttackSpec::new(kind)
        }],
        surprises: false,
        deploys_per_day: 0.0,
        ..SimConfig::default()
    })
}

/// Asserts that `detector` alerted on `workload` no later than `windows_after_start` windows after
/// the one the attack starts in, and not before the attack; prints the alert.
fn assert_fires(r: &Run, detector: &str, workload: &str, windows_after_start: i64) {
    let ep = &r.episodes[0];
    let first_window = ep.start.div_euclid(r.window_s) * r.window_s;
    let deadline = first_window + windows_after_start * r.window_s;
    let hit = r
        .alerts
        .iter()
        .filter(|a| a.detector == detector && a.workload == workload)
        .min_by_key(|a| a.window_start);
    let summary: Vec<String> = r
        .alerts
        .iter()
        .map(|a| {
            format!(
                "{}@+{}w {}",
                a.detector,
                (a.window_start - first_window).div_euclid(r.window_s),
                a.workload
            )
        })
        .collect();
    let Some(hit) = hit else {
        panic!(
            "{}: no {detector} alert on {workload}; alerts: {summary:?}",
            ep.scenario
        )
    };
    assert!(
        hit.window_start >= first_window && hit.window_start <= deadline,
        "{}: first {detector} alert on {workload} in window starting {} (attack window {first_window}, deadline {deadline}); alerts: {summary:?}",
        ep.scenario,
        hit.window_start
    );
    println!(
        "{} -> {detector} on {workload} after {} window(s), score {}: {}",
        ep.scenario,
        (hit.window_start - first_window) / r.window_s,
        hit.score,
        hit.description
    );
}

#[test]
fn port_scan_fires_on_a_port_scan() {
    let r = attack_run(AttackKind::PortScan, 10 * 60, 600);
    let attacker = r.episodes[0].attacker.clone();
    assert_fires(&r, "port_scan", &attacker, 1);
}

#[test]
fn port_scan_fires_on_a_slow_port_scan() {
    // A few probes a minute: never the absolute thresholds of a fast scan, but far above this
    // workload's usual handful of destination ports, and denied.
    let r = attack_run(AttackKind::SlowPortScan, 2 * 3600, 600);
    let attacker = r.episodes[0].attacker.clone();
    assert_fires(&r, "port_scan", &attacker, 1);
}

#[test]
fn ip_sweep_fires_on_an_ip_sweep() {
    let r = attack_run(AttackKind::IpSweep, 20 * 60, 600);
    let attacker = r.episodes[0].attacker.clone();
    assert_fires(&r, "ip_sweep", &attacker, 1);
}

#[test]
fn new_peer_fires_on_lateral_movement() {
    let r = attack_run(AttackKind::LateralMovement, 30 * 60, 600);
    let attacker = r.episodes[0].attacker.clone();
    assert_fires(&r, "new_peer", &attacker, 1);
}

#[test]
fn deny_surge_fires_on_a_deny_surge() {
    let r = attack_run(AttackKind::DenySurge, 20 * 60, 600);
    let attacker = r.episodes[0].attacker.clone();
    assert_fires(&r, "deny_surge", &attacker, 1);
}

#[test]
fn rarity_and_egress_fire_on_a_crypto_miner() {
    // New public pools on stratum ports no other workload uses.
    let r = attack_run(AttackKind::CryptoMiner, 40 * 60, 600);
    let attacker = r.episodes[0].attacker.clone();
    assert_fires(&r, "rarity", &attacker, 1);
    assert_fires(&r, "egress", &attacker, 1);
}

#[test]
fn egress_volume_and_multivariate_fire_on_exfiltration() {
    let r = attack_run(AttackKind::Exfiltration, 20 * 60, 600);
    let attacker = r.episodes[0].attacker.clone();
    assert_fires(&r, "egress", &attacker, 1);
    assert_fires(&r, "volume", &attacker, 1);
    // Bytes, packets and bytes to public networks move together.
    assert_fires(&r, "multivariate", &attacker, 1);
}

#[test]
fn beaconing_fires_on_a_c2_beacon() {
    // Beaconing is persistence by definition: the edge must have been active in
    // `min_active_windows` windows before it is judged, so the bound here is
    // `min_active_windows` + 1 windows after the first beacon, not one window.
    let min_active = Config::default().detect.beaconing.min_active_windows as i64;
    let r = attack_run(AttackKind::C2Beacon, 2 * 3600, 0);
    let attacker = r.episodes[0].attacker.clone();
    assert_fires(&r, "beaconing", &attacker, min_active + 1);
}

#[test]
fn volume_and_edge_burst_fire_on_the_ddos_victim() {
    let r = attack_run(AttackKind::Ddos, 30 * 60, 600);
    // The flood comes from `pub`; the alerts name the victim, the workload one can act on.
    let victim = r.episodes[0].victim.clone();
    assert_fires(&r, "volume", &victim, 1);
    assert_fires(&r, "edge_burst", &victim, 1);
}
