//! Guardrail, expiry, escalation, persistence and idempotency tests of the responder.

use super::*;
use crate::alert::{alert_id, Alert, Band, Severity};
use crate::respond::config::QuarantineMode;

const T0: i64 = 1_700_000_000;

fn alert(workload: &str, labels: &[&str], detector: &str, severity: u8, time: i64) -> Alert {
    let (ns, name) = workload.split_once('/').unwrap_or(("-", workload));
    Alert {
        id: alert_id(detector, workload, time),
        time,
        kind: crate::alert::ALERT_TYPE.into(),
        origin: detector.into(),
        severity,
        severity_label: Severity::from_score(severity),
        description: "test".into(),
        source_ip: None,
        source_port: None,
        source_name: "-".into(),
        source_name_aggr: name.into(),
        source_namespace: ns.into(),
        dest_ip: None,
        dest_port: None,
        dest_name: "-".into(),
        dest_name_aggr: "pub".into(),
        dest_namespace: "-".into(),
        host: None,
        attack_vector: "Network".into(),
        mitre_tactic: "Discovery".into(),
        mitre_ids: vec!["T1046".into()],
        mitigations: vec![],
        record: serde_json::Value::Null,
        dismissed: false,
        detector: detector.into(),
        workload: workload.into(),
        workload_labels: labels.iter().map(|s| s.to_string()).collect(),
        window_start: time - 60,
        window_end: time,
        score: 9.5,
        observed: 100.0,
        expected: 3.0,
        band: Band {
            lower: 0.0,
            upper: 10.0,
        },
        feature: "distinct_dest_ports".into(),
        soc2: vec!["CC7.2".into()],
        provisional: false,
    }
}

fn cart(time: i64) -> Alert {
    alert(
        "shop/cart-7d9c8b6f4-*",
        &["app=cart", "pod-template-hash=7d9c8b6f4"],
        "port_scan",
        90,
        time,
    )
}

fn responder(f: impl FnOnce(&mut RespondConfig)) -> Responder {
    let mut cfg = RespondConfig::default();
    f(&mut cfg);
    Responder::new(cfg).unwrap()
}

fn decision(r: &mut Responder, a: &Alert, now: i64) -> ActionRecord {
    r.on_alert(a, now).pop().expect("a decision")
}

#[track_caller]
fn assert_skip(rec: &ActionRecord, rule: &str) {
    assert_eq!(rec.action, ActionKind::Skip, "{rec:?}");
    assert_eq!(rec.decision, Decision::Skipped);
    assert_eq!(rec.rule.as_deref(), Some(rule), "{}", rec.reason);
}

#[test]
fn quarantines_in_dry_run_by_default() {
    let mut r = responder(|_| {});
    let rec = decision(&mut r, &cart(T0), T0);
    assert_eq!(rec.action, ActionKind::Quarantine);
    assert_eq!(rec.decision, Decision::Quarantined);
    assert!(rec.dry_run, "dry-run is the default");
    assert!(!rec.is_actionable());
    assert_eq!(rec.actor, SELF_ACTOR);
    assert_eq!(rec.namespace, "shop");
    assert_eq!(rec.selector, "app == \"cart\"");
    assert_eq!(rec.expires_at, Some(T0 + 600));
    assert_eq!(rec.escalation_level, 0);
    assert!(
        rec.manifest.contains("quarantine: 'true'")
            || rec.manifest.contains("quarantine: \"true\"")
    );
    assert_eq!(r.active().len(), 1);
    let live = responder(|c| c.dry_run = false)
        .on_alert(&cart(T0), T0)
        .pop()
        .unwrap();
    assert!(!live.dry_run && live.is_actionable());
    assert_eq!(
        live.id, rec.id,
        "id depends on kind, workload and episode start only"
    );
}

#[test]
fn protected_namespaces_including_glob_and_own() {
    let mut r = responder(|c| c.own_namespace = "fw".into());
    for (i, ns) in [
        "kube-system",
        "calico-system",
        "tigera-operator",
        "tigera-prometheus",
        "fw",
    ]
    .iter()
    .enumerate()
    {
        let a = alert(
            &format!("{ns}/x-*"),
            &["app=x"],
            "port_scan",
            95,
            T0 + i as i64,
        );
        assert_skip(&decision(&mut r, &a, T0), rules::PROTECTED_NAMESPACE);
    }
    let ok = alert("tigera/x-*", &["app=x"], "port_scan", 95, T0);
    assert_eq!(
        decision(&mut r, &ok, T0).action,
        ActionKind::Quarantine,
        "tigera-* does not match tigera"
    );
}

#[test]
fn detector_and_min_severity_filter() {
    let mut r = responder(|_| {});
    let a = alert("shop/cart-*", &["app=cart"], "volume", 95, T0);
    assert_skip(&decision(&mut r, &a, T0), rules::DETECTOR);
    let a = alert("shop/cart-*", &["app=cart"], "port_scan", 69, T0 + 1);
    assert_skip(&decision(&mut r, &a, T0), rules::MIN_SEVERITY);
    let a = alert("shop/cart-*", &["app=cart"], "port_scan", 70, T0 + 2);
    assert_eq!(decision(&mut r, &a, T0).action, ActionKind::Quarantine);
}

#[test]
fn only_pods_can_be_quarantined() {
    let mut r = responder(|_| {});
    for (i, w) in ["hep:node-1", "pub:203.0.113.9", "-/pvt"]
        .iter()
        .enumerate()
    {
        let a = alert(w, &[], "egress", 95, T0 + i as i64);
        assert_skip(&decision(&mut r, &a, T0), rules::NOT_A_POD);
    }
}

#[test]
fn include_and_exclude_namespaces() {
    let mut r = responder(|c| {
        c.include_namespaces = vec!["shop*".into()];
        c.exclude_namespaces = vec!["shop-legacy".into()];
    });
    assert_skip(
        &decision(
            &mut r,
            &alert("billing/a-*", &["app=a"], "port_scan", 95, T0),
            T0,
        ),
        rules::INCLUDE_NAMESPACES,
    );
    assert_skip(
        &decision(
            &mut r,
            &alert("shop-legacy/a-*", &["app=a"], "port_scan", 95, T0),
            T0,
        ),
        rules::EXCLUDE_NAMESPACES,
    );
    assert_eq!(
        decision(
            &mut r,
            &alert("shop-eu/a-*", &["app=a"], "port_scan", 95, T0),
            T0
        )
        .action,
        ActionKind::Quarantine
    );
}

#[test]
fn include_and_exclude_labels() {
    let mut r = responder(|c| {
        c.include_labels = vec!["team=shop".into()];
        c.exclude_labels = vec!["app=payment".into()];
    });
    let no_team = alert("shop/a-*", &["app=a"], "port_scan", 95, T0);
    assert_skip(&decision(&mut r, &no_team, T0), rules::INCLUDE_LABELS);
    let payment = alert(
        "shop/payment-*",
        &["app=payment", "team=shop"],
        "port_scan",
        95,
        T0,
    );
    assert_skip(&decision(&mut r, &payment, T0), rules::EXCLUDE_LABELS);
    let ok = alert(
        "shop/cart-*",
        &["app=cart", "team=shop"],
        "port_scan",
        95,
        T0,
    );
    assert_eq!(decision(&mut r, &ok, T0).action, ActionKind::Quarantine);
}

#[test]
fn concurrent_cap() {
    let mut r = responder(|c| {
        c.max_active = 2;
        c.max_per_hour = 100;
    });
    for i in 0..2 {
        let a = alert(
            &format!("shop/w{i}-*"),
            &[&format!("app=w{i}")],
            "port_scan",
            95,
            T0 + i,
        );
        assert_eq!(decision(&mut r, &a, T0 + i).action, ActionKind::Quarantine);
    }
    let a = alert("shop/w9-*", &["app=w9"], "port_scan", 95, T0 + 5);
    assert_skip(&decision(&mut r, &a, T0 + 5), rules::MAX_ACTIVE);
}

#[test]
fn hourly_rate_cap_slides_with_event_time() {
    let mut r = responder(|c| {
        c.max_per_hour = 2;
        c.expiry_ladder = vec!["1m".into()];
    });
    let mk = |i: i64, t: i64| {
        alert(
            &format!("shop/w{i}-*"),
            &[&format!("app=w{i}")],
            "port_scan",
            95,
            t,
        )
    };
    assert_eq!(
        decision(&mut r, &mk(0, T0), T0).action,
        ActionKind::Quarantine
    );
    assert_eq!(
        decision(&mut r, &mk(1, T0 + 10), T0 + 10).action,
        ActionKind::Quarantine
    );
    // Both expired after a minute, so only the rate cap can stop the third.
    assert_skip(
        &decision(&mut r, &mk(2, T0 + 600), T0 + 600),
        rules::MAX_PER_HOUR,
    );
    assert_eq!(
        decision(&mut r, &mk(3, T0 + 3601), T0 + 3601).action,
        ActionKind::Quarantine
    );
}

#[test]
fn cooldown_after_release() {
    let mut r = responder(|c| c.cooldown = "30m".into());
    decision(&mut r, &cart(T0), T0);
    let rel = r
        .release("shop/cart-7d9c8b6f4-*", "alice", T0 + 60)
        .unwrap();
    assert_eq!(rel.decision, Decision::Released);
    assert_skip(
        &decision(&mut r, &cart(T0 + 120), T0 + 120),
        rules::COOLDOWN,
    );
    let again = decision(&mut r, &cart(T0 + 60 + 1800), T0 + 60 + 1800);
    assert_eq!(again.action, ActionKind::Quarantine);
}

#[test]
fn selector_overlap_is_refused() {
    let mut r = responder(|c| c.mode = QuarantineMode::Policy);
    r.observe_workload(
        "shop/cart-canary-*",
        "shop",
        &["app=cart".into(), "track=canary".into()],
    );
    let rec = decision(&mut r, &cart(T0), T0);
    assert_skip(&rec, rules::SELECTOR_OVERLAP);
    assert!(rec.reason.contains("shop/cart-canary-*"), "{}", rec.reason);
    // The canary itself has a narrower selector that does not match cart.
    let canary = alert(
        "shop/cart-canary-*",
        &["app=cart", "track=canary"],
        "port_scan",
        95,
        T0,
    );
    let rec = decision(&mut r, &canary, T0);
    assert_eq!(rec.action, ActionKind::Quarantine);
    assert!(rec.manifest.contains("kind: NetworkPolicy"));
    assert_eq!(rec.selector, "app == \"cart\" && track == \"canary\"");
}

#[test]
fn labels_from_the_registry_and_selector_sanity() {
    let mut r = responder(|_| {});
    let bare = alert("shop/a-*", &[], "port_scan", 95, T0);
    assert_skip(&decision(&mut r, &bare, T0), rules::NO_LABELS);
    let hash_only = alert("shop/b-*", &["pod-template-hash=abc"], "port_scan", 95, T0);
    assert_skip(&decision(&mut r, &hash_only, T0), rules::EMPTY_SELECTOR);
    r.observe_workload("shop/c-*", "shop", &["app=c".into()]);
    let c = alert("shop/c-*", &[], "port_scan", 95, T0);
    assert_eq!(decision(&mut r, &c, T0).selector, "app == \"c\"");
}

#[test]
fn disabled_responder_skips_everything() {
    let mut r = responder(|c| c.enabled = false);
    assert_skip(&decision(&mut r, &cart(T0), T0), rules::DISABLED);
}

#[test]
fn already_quarantined_adds_the_alert() {
    let mut r = responder(|_| {});
    decision(&mut r, &cart(T0), T0);
    let second = alert(
        "shop/cart-7d9c8b6f4-*",
        &["app=cart"],
        "ip_sweep",
        95,
        T0 + 30,
    );
    assert_skip(
        &decision(&mut r, &second, T0 + 30),
        rules::ALREADY_QUARANTINED,
    );
    assert_eq!(r.active()[0].alert_ids.len(), 2);
}

#[test]
fn expiry_then_escalation_for_a_repeat_offender() {
    let mut r = responder(|c| c.cooldown = "5m".into());
    let first = decision(&mut r, &cart(T0), T0);
    assert_eq!(first.expires_at, Some(T0 + 600));
    assert!(r.tick(T0 + 599).is_empty());
    let expired = r.tick(T0 + 600);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].action, ActionKind::Release);
    assert_eq!(expired[0].decision, Decision::Expired);
    assert_eq!(expired[0].actor, SELF_ACTOR);
    assert_eq!(expired[0].episode_start, Some(T0));
    assert!(r.active().is_empty());

    let t = T0 + 600 + 300;
    let second = decision(&mut r, &cart(t), t);
    assert_eq!(second.decision, Decision::Escalated);
    assert_eq!(second.escalation_level, 1);
    assert_eq!(second.expires_at, Some(t + 3600), "second offence: 1 h");
    assert_ne!(second.id, first.id);
}

#[test]
fn escalation_is_forgotten_after_the_reset_period() {
    let mut r = responder(|c| c.escalation_reset = "1d".into());
    decision(&mut r, &cart(T0), T0);
    r.tick(T0 + 600);
    let t = T0 + 600 + 2 * 86_400;
    let rec = decision(&mut r, &cart(t), t);
    assert_eq!(
        (rec.decision, rec.escalation_level),
        (Decision::Quarantined, 0)
    );
}

#[test]
fn same_alert_twice_gives_one_action_also_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |c: &mut RespondConfig| c.state_dir = Some(dir.path().to_path_buf());
    let mut r = responder(cfg);
    let a = cart(T0);
    assert_eq!(r.on_alert(&a, T0).len(), 1);
    assert!(
        r.on_alert(&a, T0).is_empty(),
        "same alert twice: one action"
    );
    drop(r);
    let mut restarted = responder(cfg);
    assert!(
        restarted.on_alert(&a, T0 + 5).is_empty(),
        "replay after restart: no second action"
    );
    assert_eq!(restarted.active().len(), 1);
}

#[test]
fn restart_reloads_and_still_expires() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |c: &mut RespondConfig| c.state_dir = Some(dir.path().to_path_buf());
    let started = decision(&mut responder(cfg), &cart(T0), T0);
    let mut restarted = responder(cfg);
    assert_eq!(restarted.active().len(), 1);
    let expired = restarted.tick(T0 + 600);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].episode_start, started.episode_start);
    assert!(responder(cfg).active().is_empty(), "release persisted");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let decisions: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["decision"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(decisions, ["quarantined", "expired"]);
}

#[test]
fn operator_release_is_audited_with_the_actor() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(|c| c.audit_file = Some(dir.path().join("a/audit.jsonl")));
    decision(&mut r, &cart(T0), T0);
    assert!(r.release("shop/none-*", "alice", T0 + 1).is_none());
    let rec = r
        .release("shop/cart-7d9c8b6f4-*", "alice", T0 + 60)
        .unwrap();
    assert_eq!(
        (rec.action, rec.decision, rec.actor.as_str()),
        (ActionKind::Release, Decision::Released, "alice")
    );
    assert!(rec.dry_run);
    let last = std::fs::read_to_string(dir.path().join("a/audit.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(last["actor"], "alice");
    assert_eq!(last["workload"], "shop/cart-7d9c8b6f4-*");
    assert_eq!(last["alert_ids"][0], cart(T0).id);
    assert_eq!(last["dry_run"], true);
    assert!(last["expires_at"].is_i64());
    assert!(last["manifest"].as_str().is_some_and(|m| !m.is_empty()));
}

#[test]
fn release_by_another_process_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |c: &mut RespondConfig| c.state_dir = Some(dir.path().to_path_buf());
    let mut daemon = responder(cfg);
    decision(&mut daemon, &cart(T0), T0);
    let mut operator = responder(cfg);
    assert!(operator
        .release("shop/cart-7d9c8b6f4-*", "bob", T0 + 10)
        .is_some());
    assert!(daemon.tick(T0 + 20).is_empty(), "no second release");
    assert!(daemon.active().is_empty());
}

#[test]
fn reload_keeps_state_and_applies_new_guardrails() {
    let mut r = responder(|_| {});
    decision(&mut r, &cart(T0), T0);
    let cfg = RespondConfig {
        min_severity: 95,
        ..RespondConfig::default()
    };
    r.reload(cfg).unwrap();
    assert_eq!(r.active().len(), 1);
    let a = alert("shop/x-*", &["app=x"], "port_scan", 90, T0 + 1);
    assert_skip(&decision(&mut r, &a, T0 + 1), rules::MIN_SEVERITY);
    let bad = RespondConfig {
        min_severity: 200,
        ..RespondConfig::default()
    };
    assert!(r.reload(bad).is_err());
}

#[test]
fn corrupt_state_file_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(crate::respond::STATE_FILE), "{not json").unwrap();
    let cfg = RespondConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..RespondConfig::default()
    };
    let err = Responder::new(cfg).unwrap_err();
    assert!(format!("{err:#}").contains("responder state"), "{err:#}");
}
