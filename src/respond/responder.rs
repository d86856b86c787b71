//! The responder: turns alerts into quarantine decisions under guardrails, expires and releases them,
//! escalates repeat offenders, persists its state and audits every decision.
//!
//! Works in event time only: every entry point takes `now` (epoch s) from the caller, so a replay gives
//! the same decisions as the live run. It does not talk to the cluster; actuators do that with the
//! [`ActionRecord`]s it returns.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;

use super::audit::AuditLog;
use super::config::{ConfigError, RespondConfig};
use super::record::{action_id, ActionKind, ActionRecord, ActiveQuarantine, Decision};
use super::render::render_action;
use super::selector::{
    calico_selector, parse_labels, pod_workload, workload_selector, LabelRequirement,
    WorkloadRegistry,
};
use super::state::{ResponderState, StateFile};
use crate::alert::Alert;

/// Actor name on decisions flowwarden takes itself.
pub const SELF_ACTOR: &str = "flowwarden";
/// Alert ids are remembered this long (alert event time) for idempotency across replays.
const PROCESSED_RETENTION_SECS: i64 = 8 * 86_400;
/// Hard cap on remembered alert ids (bounded memory).
const MAX_PROCESSED_ALERTS: usize = 200_000;
const HOUR: i64 = 3600;

/// Guardrail rule names, as they appear in skip records' `rule`.
pub mod rules {
    /// `respond.enabled = false`.
    pub const DISABLED: &str = "disabled";
    /// The alert's detector is not in `respond.detectors`.
    pub const DETECTOR: &str = "detectors";
    /// Severity below `respond.min_severity`.
    pub const MIN_SEVERITY: &str = "min_severity";
    /// The workload is not a pod workload with a namespace.
    pub const NOT_A_POD: &str = "not_a_pod";
    /// Namespace in `respond.protected_namespaces` or flowwarden's own.
    pub const PROTECTED_NAMESPACE: &str = "protected_namespaces";
    /// Namespace not in `respond.include_namespaces`.
    pub const INCLUDE_NAMESPACES: &str = "include_namespaces";
    /// Namespace in `respond.exclude_namespaces`.
    pub const EXCLUDE_NAMESPACES: &str = "exclude_namespaces";
    /// Labels match none of `respond.include_labels`.
    pub const INCLUDE_LABELS: &str = "include_labels";
    /// Labels match one of `respond.exclude_labels`.
    pub const EXCLUDE_LABELS: &str = "exclude_labels";
    /// Already quarantined (the alert id is added to the active episode).
    pub const ALREADY_QUARANTINED: &str = "already_quarantined";
    /// Released less than `respond.cooldown` ago.
    pub const COOLDOWN: &str = "cooldown";
    /// No labels known for the workload, so no selector can be built.
    pub const NO_LABELS: &str = "no_labels";
    /// Only per-pod labels: the selector would pick the whole namespace.
    pub const EMPTY_SELECTOR: &str = "empty_selector";
    /// The selector would also pick another known workload.
    pub const SELECTOR_OVERLAP: &str = "selector_overlap";
    /// `respond.max_active` quarantines already in force.
    pub const MAX_ACTIVE: &str = "max_active";
    /// `respond.max_per_hour` quarantines started in the last hour.
    pub const MAX_PER_HOUR: &str = "max_per_hour";
}

/// Config compiled into matchers and seconds.
#[derive(Debug)]
struct Guardrails {
    protected: Vec<glob::Pattern>,
    include_ns: Vec<glob::Pattern>,
    exclude_ns: Vec<glob::Pattern>,
    include_labels: Vec<LabelRequirement>,
    exclude_labels: Vec<LabelRequirement>,
    cooldown: i64,
    escalation_reset: i64,
    ladder: Vec<i64>,
}

impl Guardrails {
    fn compile(cfg: &RespondConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let globs = |v: &[String]| {
            v.iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect::<Vec<_>>()
        };
        let reqs = |v: &[String]| {
            v.iter()
                .filter_map(|s| LabelRequirement::parse(s).ok())
                .collect::<Vec<_>>()
        };
        let mut protected = globs(&cfg.protected_namespaces);
        protected.extend(glob::Pattern::new(&glob::Pattern::escape(&cfg.own_namespace)).ok());
        Ok(Self {
            protected,
            include_ns: globs(&cfg.include_namespaces),
            exclude_ns: globs(&cfg.exclude_namespaces),
            include_labels: reqs(&cfg.include_labels),
            exclude_labels: reqs(&cfg.exclude_labels),
            cooldown: cfg.cooldown_secs()?,
            escalation_reset: cfg.escalation_reset_secs()?,
            ladder: cfg.ladder()?,
        })
    }
}

/// A skip decision before a record is built.
struct Skip {
    rule: &'static str,
    reason: String,
}

fn skip(rule: &'static str, reason: impl Into<String>) -> Skip {
    Skip {
        rule,
        reason: reason.into(),
    }
}

/// The quarantine responder. See the module docs.
#[derive(Debug)]
pub struct Responder {
    cfg: RespondConfig,
    guard: Guardrails,
    state: ResponderState,
    state_file: Option<StateFile>,
    audit: Option<AuditLog>,
    registry: WorkloadRegistry,
    io_errors: u64,
}

impl Responder {
    /// Builds a responder; loads persisted state when `state_dir` is set.
    pub fn new(cfg: RespondConfig) -> anyhow::Result<Self> {
        let guard = Guardrails::compile(&cfg)?;
        let (state_file, state) = open_state(&cfg)?;
        let audit = open_audit(&cfg)?;
        Ok(Self {
            cfg,
            guard,
            state,
            state_file,
            audit,
            registry: WorkloadRegistry::default(),
            io_errors: 0,
        })
    }

    /// Applies new guardrails, keeping active quarantines, history and idempotency records.
    pub fn reload(&mut self, cfg: RespondConfig) -> anyhow::Result<()> {
        let guard = Guardrails::compile(&cfg)?;
        if cfg.state_dir != self.cfg.state_dir {
            self.state_file = match &cfg.state_dir {
                Some(dir) => Some(StateFile::open(dir)?),
                None => None,
            };
        }
        if audit_path(&cfg) != audit_path(&self.cfg) {
            self.audit = open_audit(&cfg)?;
        }
        self.cfg = cfg;
        self.guard = guard;
        self.persist();
        Ok(())
    }

    /// The config in force.
    pub fn config(&self) -> &RespondConfig {
        &self.cfg
    }

    /// Failed state or audit writes so far (they are logged; decisions go on).
    pub fn io_errors(&self) -> u64 {
        self.io_errors
    }

    /// Records a workload's labels (from alerts or flow records) for selectors and the overlap check.
    pub fn observe_workload(&mut self, key: &str, namespace: &str, labels: &[String]) {
        self.registry.observe(key, namespace, labels);
    }

    /// Decides on one alert at event time `now`. Returns expiries due at `now` first, then the decision
    /// (quarantine or skip). An alert id already decided on (also before a restart) returns no decision.
    pub fn on_alert(&mut self, alert: &Alert, now: i64) -> Vec<ActionRecord> {
        let mut out = self.tick(now);
        if self.state.processed_alerts.contains_key(&alert.id) {
            tracing::debug!(alert = %alert.id, "alert already acted on; no second action");
            return out;
        }
        let pod = pod_workload(&alert.workload);
        if let Some(p) = &pod {
            self.registry
                .observe(&alert.workload, &p.namespace, &alert.workload_labels);
        }
        let record = self.decide(alert, now);
        self.state
            .processed_alerts
            .insert(alert.id.clone(), alert.time);
        self.prune(now);
        self.persist();
        self.audit(&record);
        out.push(record);
        out
    }

    /// Releases quarantines whose expiry is at or before `now` (event time).
    pub fn tick(&mut self, now: i64) -> Vec<ActionRecord> {
        self.sync_from_disk();
        let due: Vec<String> = self
            .state
            .active
            .values()
            .filter(|q| q.expires_at <= now)
            .map(|q| q.workload.clone())
            .collect();
        due.into_iter()
            .filter_map(|w| self.end_episode(&w, SELF_ACTOR, now, Decision::Expired))
            .collect()
    }

    /// Operator release of a workload; `None` when it is not quarantined.
    pub fn release(&mut self, workload: &str, actor: &str, now: i64) -> Option<ActionRecord> {
        self.sync_from_disk();
        self.end_episode(workload, actor, now, Decision::Released)
    }

    /// Active quarantines, by workload key.
    pub fn active(&self) -> Vec<ActiveQuarantine> {
        self.state.active.values().cloned().collect()
    }

    fn end_episode(
        &mut self,
        workload: &str,
        actor: &str,
        now: i64,
        decision: Decision,
    ) -> Option<ActionRecord> {
        let q = self.state.active.remove(workload)?;
        let h = self.state.history.entry(workload.to_string()).or_default();
        h.last_release = Some(now);
        let reason = match decision {
            Decision::Expired => format!(
                "quarantine expired (level {} of the expiry ladder)",
                q.escalation_level
            ),
            _ => format!("released by {actor}"),
        };
        let record = ActionRecord {
            id: action_id(ActionKind::Release, workload, &q.started_at.to_string()),
            time: now,
            action: ActionKind::Release,
            decision,
            actor: actor.to_string(),
            dry_run: q.dry_run,
            workload: q.workload.clone(),
            namespace: q.namespace.clone(),
            selector: q.selector.clone(),
            match_labels: q.match_labels.clone(),
            alert_ids: q.alert_ids.clone(),
            detector: None,
            severity: None,
            reason,
            rule: None,
            expires_at: Some(q.expires_at),
            episode_start: Some(q.started_at),
            escalation_level: q.escalation_level,
            mode: q.mode,
            object_name: q.object_name.clone(),
            manifest: q.release_manifest.clone(),
        };
        self.persist();
        self.audit(&record);
        Some(record)
    }

    fn decide(&mut self, alert: &Alert, now: i64) -> ActionRecord {
        let mut base = ActionRecord {
            id: action_id(ActionKind::Skip, &alert.workload, &alert.id),
            time: now,
            action: ActionKind::Skip,
            decision: Decision::Skipped,
            actor: SELF_ACTOR.to_string(),
            dry_run: self.cfg.dry_run,
            workload: alert.workload.clone(),
            namespace: "-".to_string(),
            selector: String::new(),
            match_labels: BTreeMap::new(),
            alert_ids: vec![alert.id.clone()],
            detector: Some(alert.detector.clone()),
            severity: Some(alert.severity),
            reason: String::new(),
            rule: None,
            expires_at: None,
            episode_start: None,
            escalation_level: 0,
            mode: self.cfg.mode,
            object_name: String::new(),
            manifest: String::new(),
        };
        match self.check(alert, now, &mut base) {
            Err(s) => {
                base.rule = Some(s.rule.to_string());
                base.reason = s.reason;
                base
            }
            Ok(()) => self.start_episode(alert, now, base),
        }
    }

    /// Runs the guardrails in order; the first one that says no is named. Fills namespace and selector
    /// into `rec` as they become known.
    fn check(&mut self, alert: &Alert, now: i64, rec: &mut ActionRecord) -> Result<(), Skip> {
        let g = &self.guard;
        if !self.cfg.enabled {
            return Err(skip(rules::DISABLED, "responder disabled"));
        }
        if !self.cfg.detectors.iter().any(|d| d == &alert.detector) {
            return Err(skip(
                rules::DETECTOR,
                format!("detector {} may not quarantine", alert.detector),
            ));
        }
        if alert.severity < self.cfg.min_severity {
            return Err(skip(
                rules::MIN_SEVERITY,
                format!(
                    "severity {} below {}",
                    alert.severity, self.cfg.min_severity
                ),
            ));
        }
        let Some(pod) = pod_workload(&alert.workload) else {
            return Err(skip(
                rules::NOT_A_POD,
                format!("{} is not a pod workload", alert.workload),
            ));
        };
        rec.namespace = pod.namespace.clone();
        let ns = pod.namespace.as_str();
        if let Some(p) = g.protected.iter().find(|p| p.matches(ns)) {
            return Err(skip(
                rules::PROTECTED_NAMESPACE,
                format!("namespace {ns} is protected ({p})"),
            ));
        }
        if !g.include_ns.is_empty() && !g.include_ns.iter().any(|p| p.matches(ns)) {
            return Err(skip(
                rules::INCLUDE_NAMESPACES,
                format!("namespace {ns} not included"),
            ));
        }
        if let Some(p) = g.exclude_ns.iter().find(|p| p.matches(ns)) {
            return Err(skip(
                rules::EXCLUDE_NAMESPACES,
                format!("namespace {ns} excluded ({p})"),
            ));
        }
        let mut labels = parse_labels(&alert.workload_labels);
        if labels.is_empty() {
            labels = self
                .registry
                .labels(&alert.workload, ns)
                .cloned()
                .unwrap_or_default();
        }
        if !g.include_labels.is_empty() && !g.include_labels.iter().any(|r| r.matches(&labels)) {
            return Err(skip(
                rules::INCLUDE_LABELS,
                "labels match no include_labels selector",
            ));
        }
        if let Some(r) = g.exclude_labels.iter().find(|r| r.matches(&labels)) {
            return Err(skip(
                rules::EXCLUDE_LABELS,
                format!("labels match exclude_labels {r:?}"),
            ));
        }
        if let Some(q) = self.state.active.get_mut(&alert.workload) {
            if !q.alert_ids.contains(&alert.id) {
                q.alert_ids.push(alert.id.clone());
            }
            return Err(skip(
                rules::ALREADY_QUARANTINED,
                format!("already quarantined until {}", q.expires_at),
            ));
        }
        if let Some(released) = self
            .state
            .history
            .get(&alert.workload)
            .and_then(|h| h.last_release)
        {
            if now < released.saturating_add(g.cooldown) {
                return Err(skip(
                    rules::COOLDOWN,
                    format!(
                        "released at {released}; cool-down of {} until {}",
                        self.cfg.cooldown,
                        released + g.cooldown
                    ),
                ));
            }
        }
        if labels.is_empty() {
            return Err(skip(
                rules::NO_LABELS,
                "no labels known for the workload; cannot build a selector",
            ));
        }
        let match_labels = workload_selector(&labels);
        if match_labels.is_empty() {
            return Err(skip(
                rules::EMPTY_SELECTOR,
                "only per-pod labels; the selector would pick the whole namespace",
            ));
        }
        rec.selector = calico_selector(&match_labels);
        rec.match_labels = match_labels;
        let overlap = self
            .registry
            .overlapping(&alert.workload, ns, &rec.match_labels);
        if !overlap.is_empty() {
            return Err(skip(
                rules::SELECTOR_OVERLAP,
                format!(
                    "selector {} would also match {}",
                    rec.selector,
                    overlap.join(", ")
                ),
            ));
        }
        if self.state.active.len() >= self.cfg.max_active {
            return Err(skip(
                rules::MAX_ACTIVE,
                format!("{} quarantines already active", self.state.active.len()),
            ));
        }
        let last_hour = self
            .state
            .recent_starts
            .iter()
            .filter(|&&t| t > now - HOUR && t <= now)
            .count();
        if last_hour >= self.cfg.max_per_hour {
            return Err(skip(
                rules::MAX_PER_HOUR,
                format!("{last_hour} quarantines started in the last hour"),
            ));
        }
        Ok(())
    }

    fn start_episode(&mut self, alert: &Alert, now: i64, mut rec: ActionRecord) -> ActionRecord {
        let Some(pod) = pod_workload(&alert.workload) else {
            return rec;
        };
        let reset = self.guard.escalation_reset;
        let history = self
            .state
            .history
            .entry(alert.workload.clone())
            .or_default();
        let last_seen = history
            .last_release
            .unwrap_or(history.last_start)
            .max(history.last_start);
        if history.episodes > 0 && now.saturating_sub(last_seen) > reset {
            history.episodes = 0;
        }
        let level = history
            .episodes
            .min(self.guard.ladder.len().saturating_sub(1) as u32);
        let expires_at = now.saturating_add(self.guard.ladder[level as usize]);
        history.episodes += 1;
        history.last_start = now;
        let episode = history.episodes;

        let mut annotations = BTreeMap::new();
        annotations.insert("flowwarden.io/alert-ids".to_string(), alert.id.clone());
        annotations.insert(
            "flowwarden.io/expires-at".to_string(),
            expires_at.to_string(),
        );
        annotations.insert(
            "flowwarden.io/escalation-level".to_string(),
            level.to_string(),
        );
        let on = render_action(
            &self.cfg,
            &pod.namespace,
            &pod.name_aggr,
            &rec.match_labels,
            &annotations,
            false,
        );
        let off = render_action(
            &self.cfg,
            &pod.namespace,
            &pod.name_aggr,
            &rec.match_labels,
            &annotations,
            true,
        );

        rec.id = action_id(ActionKind::Quarantine, &alert.workload, &now.to_string());
        rec.action = ActionKind::Quarantine;
        rec.decision = if level > 0 {
            Decision::Escalated
        } else {
            Decision::Quarantined
        };
        rec.reason = format!(
            "{} alert severity {} (score {:.2}): {}{}",
            alert.detector,
            alert.severity,
            alert.score,
            alert.description,
            if level > 0 {
                format!("; repeat offender, episode {episode}")
            } else {
                String::new()
            }
        );
        rec.expires_at = Some(expires_at);
        rec.episode_start = Some(now);
        rec.escalation_level = level;
        rec.object_name = on.object_name.clone();
        rec.manifest = on.manifest;

        self.state.recent_starts.push_back(now);
        self.state.active.insert(
            alert.workload.clone(),
            ActiveQuarantine {
                workload: alert.workload.clone(),
                namespace: pod.namespace,
                name_aggr: pod.name_aggr,
                selector: rec.selector.clone(),
                match_labels: rec.match_labels.clone(),
                started_at: now,
                expires_at,
                escalation_level: level,
                alert_ids: rec.alert_ids.clone(),
                dry_run: rec.dry_run,
                mode: rec.mode,
                object_name: on.object_name,
                release_manifest: off.manifest,
                reason: rec.reason.clone(),
            },
        );
        rec
    }

    /// Bounded memory: forget old alert ids, old hourly-cap entries and long-quiet offenders.
    fn prune(&mut self, now: i64) {
        let s = &mut self.state;
        while s.recent_starts.front().is_some_and(|&t| t <= now - HOUR) {
            s.recent_starts.pop_front();
        }
        s.processed_alerts
            .retain(|_, t| *t > now - PROCESSED_RETENTION_SECS);
        if s.processed_alerts.len() > MAX_PROCESSED_ALERTS {
            let mut by_time: Vec<(i64, String)> = s
                .processed_alerts
                .iter()
                .map(|(id, t)| (*t, id.clone()))
                .collect();
            by_time.sort_unstable();
            let excess = by_time.len() - MAX_PROCESSED_ALERTS;
            for (_, id) in by_time.into_iter().take(excess) {
                s.processed_alerts.remove(&id);
            }
        }
        let reset = self.guard.escalation_reset;
        let active = &s.active;
        s.history.retain(|w, h| {
            active.contains_key(w)
                || now.saturating_sub(h.last_release.unwrap_or(h.last_start)) <= reset
        });
    }

    /// Picks up changes another process (an operator's `quarantine release`) wrote to the state file.
    fn sync_from_disk(&mut self) {
        let Some(file) = self.state_file.as_mut() else {
            return;
        };
        if !file.changed_on_disk() {
            return;
        }
        match file.load() {
            Ok(state) => self.state = state,
            Err(e) => {
                self.io_errors += 1;
                tracing::error!(error = %e, "state file changed on disk but cannot be read; keeping memory state");
            }
        }
    }

    fn persist(&mut self) {
        let Some(file) = self.state_file.as_mut() else {
            return;
        };
        if let Err(e) = file.save(&self.state) {
            self.io_errors += 1;
            tracing::error!(error = %e, "cannot persist responder state");
        }
    }

    fn audit(&mut self, record: &ActionRecord) {
        let Some(log) = self.audit.as_mut() else {
            return;
        };
        if let Err(e) = log.append(record) {
            self.io_errors += 1;
            tracing::error!(error = %e, "cannot write audit record");
        }
    }
}

fn open_state(cfg: &RespondConfig) -> anyhow::Result<(Option<StateFile>, ResponderState)> {
    match &cfg.state_dir {
        Some(dir) => {
            let mut file = StateFile::open(dir)?;
            let state = file.load()?;
            Ok((Some(file), state))
        }
        None => Ok((None, ResponderState::new())),
    }
}

fn audit_path(cfg: &RespondConfig) -> Option<PathBuf> {
    cfg.audit_file
        .clone()
        .or_else(|| cfg.state_dir.as_ref().map(|d| d.join("audit.jsonl")))
}

fn open_audit(cfg: &RespondConfig) -> anyhow::Result<Option<AuditLog>> {
    audit_path(cfg)
        .map(|p| AuditLog::open(&p).with_context(|| format!("audit log {}", p.display())))
        .transpose()
}

#[cfg(test)]
#[path = "responder_tests.rs"]
mod tests;
