//! `flowwarden report`: one self-contained HTML page about a run, for an analyst. Inline CSS and SVG,
//! no external assets, no JavaScript: it can be attached to a ticket or opened offline.
//!
//! It shows the alert timeline by severity, alerts per detector, the top workloads, the quarantines
//! (from the responder's actions file) and, for the most severe alerts, the workload's observed series
//! against the expected band with the alert marked. The series are recomputed from the flow logs
//! (`--input`) with the daemon's own decoder and window aggregates; without them, each chart plots the
//! alerts' own observed/expected/band points.
//!
//! This module reads outputs and writes a page; it must not score or decide anything.

pub mod fmt;
mod html;
pub mod load;
pub mod series;
pub mod svg;

use crate::flow::WorkloadId;
use load::{read_json_lines, ReadCounts, ReportAction, ReportAlert};
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Windows shown before the alert window in a series chart.
pub const CONTEXT_BEFORE: i64 = 40;
/// Windows shown after it.
pub const CONTEXT_AFTER: i64 = 12;

/// `report` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// Alerts (JSON lines, as written by `replay --alerts` or `[alerts] file`).
    #[arg(long)]
    pub alerts: PathBuf,
    /// Responder actions (JSON lines with `action`: quarantine | release, `workload`, `time`,
    /// `expires_at`), for the quarantine table.
    #[arg(long)]
    pub actions: Option<PathBuf>,
    /// Flow logs the alerts came from (files, directories, globs; `.gz` read transparently), to plot
    /// each alerted workload's per-window series.
    #[arg(long)]
    pub input: Vec<String>,
    /// Output HTML file.
    #[arg(long)]
    pub out: PathBuf,
    /// How many of the most severe alerts get a chart.
    #[arg(long, default_value_t = 50)]
    pub top: usize,
    /// Page title.
    #[arg(long, default_value = "flowwarden run report")]
    pub title: String,
}

/// Everything the page shows, gathered before rendering.
#[derive(Debug)]
pub struct ReportData {
    /// Page title.
    pub title: String,
    /// Sources named in the header.
    pub sources: Vec<String>,
    /// All alerts, most severe first.
    pub alerts: Vec<ReportAlert>,
    /// Lines of the alerts file that were skipped.
    pub alerts_skipped: usize,
    /// Quarantine episodes, when an actions file was given.
    pub quarantines: Option<Vec<load::Quarantine>>,
    /// Actions-file line counts.
    pub actions_read: ReadCounts,
    /// Charts to draw: (index into `alerts`, data).
    pub charts: Vec<(usize, svg::SeriesData)>,
    /// A note about how the series were made.
    pub series_note: String,
}

/// Orders alerts most severe first (then highest score, earliest, id) so the cap keeps what matters.
pub fn sort_most_severe(alerts: &mut [ReportAlert]) {
    alerts.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.score.total_cmp(&a.score))
            .then(a.time.cmp(&b.time))
            .then(a.id.cmp(&b.id))
    });
}

/// Reads the inputs and computes the series.
pub fn gather(a: &ReportArgs) -> anyhow::Result<ReportData> {
    let (mut alerts, counts) = read_json_lines::<ReportAlert>(&a.alerts)?;
    if counts.skipped > 0 {
        tracing::warn!(skipped = counts.skipped, file = %a.alerts.display(), "some alert lines were not JSON alerts");
    }
    sort_most_severe(&mut alerts);
    let mut sources = vec![format!("alerts: {}", a.alerts.display())];
    let (quarantines, actions_read) = match &a.actions {
        Some(path) => {
            let (actions, c) = read_json_lines::<ReportAction>(path)?;
            sources.push(format!("actions: {}", path.display()));
            (Some(load::quarantines(&actions)), c)
        }
        None => (None, ReadCounts::default()),
    };
    let top = a.top.min(alerts.len());
    let mut charts = Vec::with_capacity(top);
    let series_note;
    if a.input.is_empty() {
        series_note = "No flow logs given (--input): each chart plots the alerts' own observed value (dots) and \
                       expected band (green) for that workload and feature."
            .to_string();
        for i in 0..top {
            charts.push((i, svg::SeriesData::AlertPoints(same_series(&alerts, i))));
        }
    } else {
        sources.push(format!("flow logs: {}", a.input.join(", ")));
        let window_len = most_common_window(&alerts[..top]);
        let wanted: FxHashSet<WorkloadId> = alerts[..top]
            .iter()
            .map(|al| WorkloadId::of_key(&al.workload))
            .collect();
        let computed = series::compute(&a.input, &wanted, window_len, 1 << 20)?;
        series_note = format!(
            "Series recomputed from {} flow records in {}s windows (black line); the green band is the \
             expected range at the time of the alert, the red column the alert window.",
            computed.records, window_len
        );
        for i in 0..top {
            let al = &alerts[i];
            let w = al.window_start.div_euclid(window_len);
            let values = (al.window_len() == window_len)
                .then(|| {
                    computed.values(
                        WorkloadId::of_key(&al.workload),
                        &al.feature,
                        w - CONTEXT_BEFORE,
                        w + CONTEXT_AFTER,
                    )
                })
                .flatten();
            let data = match values {
                Some(v) => svg::SeriesData::Windows(
                    v.into_iter().map(|(w, v)| (w * window_len, v)).collect(),
                ),
                None => svg::SeriesData::AlertPoints(same_series(&alerts, i)),
            };
            charts.push((i, data));
        }
    }
    Ok(ReportData {
        title: a.title.clone(),
        sources,
        alerts,
        alerts_skipped: counts.skipped,
        quarantines,
        actions_read,
        charts,
        series_note,
    })
}

/// Alerts of the same workload and feature as `alerts[i]`, in time order.
fn same_series(alerts: &[ReportAlert], i: usize) -> Vec<ReportAlert> {
    let a = &alerts[i];
    let mut v: Vec<ReportAlert> = alerts
        .iter()
        .filter(|o| o.workload == a.workload && o.feature == a.feature)
        .cloned()
        .collect();
    v.sort_by_key(|o| o.window_start);
    v
}

/// The most common window length among `alerts` (60 s when there is none).
fn most_common_window(alerts: &[ReportAlert]) -> i64 {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for a in alerts {
        *counts.entry(a.window_len()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(len, n)| (*n, std::cmp::Reverse(*len)))
        .map(|(len, _)| len)
        .unwrap_or(60)
}

/// Runs `report`.
pub fn run(a: ReportArgs) -> anyhow::Result<()> {
    let data = gather(&a)?;
    let page = html::render(&data);
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&a.out, page)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", a.out.display()))?;
    tracing::info!(
        alerts = data.alerts.len(),
        charts = data.charts.len(),
        out = %a.out.display(),
        "report written"
    );
    Ok(())
}
