//! [`ResponseStage`]: the responder as a pipeline stage. It feeds alerts (and the workloads the
//! registry knows, for the selector-overlap check) to the [`Responder`], ticks expiries in event time,
//! hands actionable records to the actuator, and writes every record to the actions output.

use crate::alert::Alert;
use crate::flow::WorkloadRegistry;
use crate::respond::{build_actuator, ActionRecord, Actuator, RespondConfig, Responder};
use crate::sink::JsonLinesSink;
use std::collections::HashSet;
use std::fs::File;
use std::io::BufWriter;

/// Responder, actuator and actions output together.
pub struct ResponseStage {
    responder: Responder,
    actuator: Option<Box<dyn Actuator>>,
    actions_out: Option<JsonLinesSink<BufWriter<File>>>,
    observed_namespaces: HashSet<String>,
    /// Records produced so far, by decision (for summaries).
    pub counts: std::collections::BTreeMap<String, u64>,
    /// Actuator failures.
    pub actuator_errors: u64,
}

impl ResponseStage {
    /// Builds the stage; `actions_out` receives every action record as a JSON line.
    pub fn new(cfg: &RespondConfig, actions_out: Option<&std::path::Path>) -> anyhow::Result<Self> {
        Ok(ResponseStage {
            responder: Responder::new(cfg.clone())?,
            actuator: build_actuator(cfg)?,
            actions_out: actions_out.map(JsonLinesSink::create).transpose()?,
            observed_namespaces: HashSet::new(),
            counts: Default::default(),
            actuator_errors: 0,
        })
    }

    /// Takes new guardrails, keeping active quarantines.
    pub fn reload(&mut self, cfg: &RespondConfig) -> anyhow::Result<()> {
        self.responder.reload(cfg.clone())
    }

    /// Decides on a batch of alerts (in emission order) and runs expiries up to `now` (event time).
    pub fn handle(&mut self, alerts: &[Alert], now: i64) -> anyhow::Result<Vec<ActionRecord>> {
        let mut records = Vec::new();
        for a in alerts {
            self.observe_namespace(&a.source_namespace);
            records.extend(self.responder.on_alert(a, a.time));
        }
        records.extend(self.responder.tick(now));
        for r in &records {
            *self
                .counts
                .entry(format!("{:?}", r.decision).to_lowercase())
                .or_default() += 1;
            crate::telemetry::record_action(r);
            if r.is_actionable() {
                if let Some(act) = &mut self.actuator {
                    if let Err(e) = act.apply(r) {
                        self.actuator_errors += 1;
                        tracing::error!(workload = %r.workload, error = %format!("{e:#}"), "actuator failed");
                    }
                }
            }
            if let Some(out) = &mut self.actions_out {
                out.write_value(r)?;
            }
        }
        Ok(records)
    }

    /// Flushes the actions output.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(out) = &mut self.actions_out {
            crate::sink::AlertSink::flush(out)?;
        }
        Ok(())
    }

    /// Active quarantines.
    pub fn active(&self) -> usize {
        self.responder.active().len()
    }

    /// Tells the responder every workload of a namespace, so a selector that would also match a
    /// sibling is refused.
    fn observe_namespace(&mut self, ns: &str) {
        if !self.observed_namespaces.insert(ns.to_string()) {
            return;
        }
        for info in WorkloadRegistry::global().in_namespace(ns) {
            self.responder
                .observe_workload(&info.key, &info.namespace, &info.labels);
        }
    }
}
