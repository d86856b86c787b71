//! The `staged-impact` and `recommend` subcommands: arguments, reading inputs, writing reports.

use super::impact::{to_html, ImpactBuilder};
use super::recommend::{recommend, round_trip, to_yaml, RecommendOptions};
use crate::flow::Decoder;
use crate::pipeline::{Pipeline, PipelineOptions};
use crate::source::{open_inputs, FileSourceOptions, LineBatch, Poll};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// `staged-impact` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct StagedImpactArgs {
    /// Flow-log files, directories or globs (Calico or Goldmane; `.gz` read transparently).
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Report file: `.html` for a page, anything else JSON.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `staged-impact`.
pub fn run_staged_impact(a: StagedImpactArgs) -> anyhow::Result<()> {
    let mut source = open_inputs(&a.inputs, &FileSourceOptions::default())?;
    let mut dec = Decoder::default();
    let mut builder = ImpactBuilder::default();
    let mut batch = LineBatch::new();
    let mut bad = 0u64;
    loop {
        batch.clear();
        match source.poll_batch(&mut batch, 8192, 64 << 20)? {
            Poll::End if batch.is_empty() => break,
            Poll::Idle if batch.is_empty() => continue,
            _ => {}
        }
        for i in 0..batch.len() {
            match dec.decode(batch.line(i)) {
                Ok(rec) => builder.add(&rec),
                Err(_) => bad += 1,
            }
        }
    }
    let report = builder.finish();
    let body = if a.out.extension().is_some_and(|e| e == "html") {
        to_html(&report).into_bytes()
    } else {
        serde_json::to_vec_pretty(&report)?
    };
    std::fs::write(&a.out, body).with_context(|| format!("cannot write {}", a.out.display()))?;
    eprintln!(
        "{} records ({} unreadable, {} with staged decisions): {} flows in {} workloads would be denied by {}; report written to {}",
        report.records,
        bad,
        report.records_with_pending,
        report.flows,
        report.workloads.len(),
        if report.staged_policies.is_empty() { "no staged policy".to_string() } else { report.staged_policies.join(", ") },
        a.out.display()
    );
    Ok(())
}

/// `recommend` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct RecommendArgs {
    /// Flow logs of the learning period (replayed through the pipeline: workloads with a
    /// high-severity alert are left out).
    #[arg(required_unless_present = "model", conflicts_with = "model")]
    pub inputs: Vec<String>,
    /// A trained model (`flowwarden train --out DIR`) instead of flow logs.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Only workloads of this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Output directory: one YAML per workload and `recommendations.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Write enforced NetworkPolicies instead of StagedNetworkPolicies.
    #[arg(long)]
    pub enforce: bool,
    /// Windows a (peer, port, protocol) must have been used in to be allowed.
    #[arg(long, default_value_t = 3)]
    pub min_windows: u32,
    /// Traffic history a workload needs (e.g. `6h`, `2d`).
    #[arg(long, default_value = "6h", value_parser = humantime::parse_duration)]
    pub min_history: std::time::Duration,
    /// Leave out workloads that raised an alert of at least this severity while learning.
    #[arg(long, default_value_t = 70)]
    pub exclude_severity: u8,
    /// Tier of the policies.
    #[arg(long, default_value = "default")]
    pub tier: String,
    /// Order of the policies in their tier (lower is evaluated first).
    #[arg(long, default_value_t = 100.0)]
    pub order: f64,
    /// Config file for the learning replay (defaults apply when omitted).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs `recommend`.
pub fn run_recommend(a: RecommendArgs) -> anyhow::Result<()> {
    let cfg = Arc::new(crate::cli::load_config(a.config.as_deref())?);
    let mut anomalous: BTreeMap<String, String> = BTreeMap::new();
    let flows = match &a.model {
        Some(model) => {
            let mut p = Pipeline::new(Arc::clone(&cfg), PipelineOptions::default())?;
            crate::cli::train::load_model(&mut p, model)?;
            p.policy_ledger().flows()
        }
        None => {
            let mut flows = Vec::new();
            crate::cli::replay::run_pipeline_with(
                &cfg,
                &a.inputs,
                PipelineOptions {
                    threads: cfg.effective_threads(None),
                    scores: false,
                    keep_names: false,
                },
                None,
                &mut |alert| {
                    if alert.severity >= a.exclude_severity {
                        anomalous
                            .entry(group_of_key(&alert.workload))
                            .or_insert_with(|| {
                                format!(
                                    "anomalous while learning: {} alert (severity {}) at {}",
                                    alert.detector,
                                    alert.severity,
                                    super::impact::time_text(alert.time)
                                )
                            });
                    }
                    Ok(())
                },
                &mut |_| Ok(()),
                &mut |p: &Pipeline| flows = p.policy_ledger().flows(),
            )?;
            flows
        }
    };
    let opts = RecommendOptions {
        namespace: a.namespace.clone(),
        min_windows: a.min_windows.max(1),
        min_history_s: a.min_history.as_secs() as i64,
        enforce: a.enforce,
        tier: a.tier.clone(),
        order: a.order,
    };
    let mut rec = recommend(&flows, &anomalous, &opts);
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    for r in &rec.policies {
        let path = a.out.join(&r.file);
        std::fs::write(&path, to_yaml(r)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The round trip reads the files back, so it checks what an operator would apply.
    let mut written = Vec::new();
    for r in &rec.policies {
        let path = a.out.join(&r.file);
        let text = std::fs::read_to_string(&path)?;
        written.push(
            serde_yaml::from_str(&text)
                .with_context(|| format!("{} does not parse back", path.display()))?,
        );
    }
    let scope: Vec<_> = flows
        .into_iter()
        .filter(|f| {
            opts.namespace.as_ref().is_none_or(|ns| {
                crate::flow::WorkloadRegistry::global()
                    .get(f.entry.subject)
                    .is_some_and(|i| i.namespace == *ns)
            })
        })
        .collect();
    rec.round_trip = round_trip(&scope, written, opts.min_windows)?;
    let summary = a.out.join("recommendations.json");
    std::fs::write(&summary, serde_json::to_vec_pretty(&rec)?)
        .with_context(|| format!("cannot write {}", summary.display()))?;
    let rules: usize = rec.policies.iter().map(|p| p.evidence.len()).sum();
    eprintln!(
        "{} policies ({} allow rules), {} workloads left out; round trip: {} flows replayed, {} regular flows denied, {} rare flows denied, {} not selected; written to {}",
        rec.policies.len(),
        rules,
        rec.excluded.len(),
        rec.round_trip.flows_checked,
        rec.round_trip.regular_flows_denied,
        rec.round_trip.rare_flows_denied,
        rec.round_trip.not_selected,
        a.out.display()
    );
    Ok(())
}

/// `namespace/name` group of an alert's workload key (`shop/frontend-7d9c8b6f4-*`).
fn group_of_key(key: &str) -> String {
    match key.split_once('/') {
        Some((ns, name)) => format!(
            "{ns}/{}",
            crate::flow::decode::group_name(name).unwrap_or(name)
        ),
        None => key.to_string(),
    }
}
