//! The human-readable form of an [`EvalReport`]: aligned text tables, one section per measure.

use super::{AucRow, EpisodeSource, EvalReport, HostResult};
use std::fmt::Write;

/// How many episodes the text lists one by one (the JSON has all of them).
const EPISODES_LISTED: usize = 40;
/// How many benign workloads named in alerts the text lists.
const BENIGN_LISTED: usize = 20;

/// Renders the report as text tables.
pub fn render(r: &EvalReport) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, r);
    out
}

fn write_report(out: &mut String, r: &EvalReport) -> std::fmt::Result {
    let p = &r.pipeline;
    writeln!(
        out,
        "records {}  bad {}  late {}  windows {} ({} s)  alerts {}",
        p.records, p.bad_records, p.late_records, p.windows_closed, r.window_length_s, p.alerts
    )?;
    let c = &r.records;
    writeln!(
        out,
        "labels {} rows ({} unparsable); evaluated {}; unscored (did not decode) {}{}; labels past input {}; unlabelled lines {}",
        c.label_rows,
        c.bad_label_rows,
        c.evaluated,
        c.unscored,
        if c.unscored_lines.is_empty() {
            String::new()
        } else {
            format!(" e.g. lines {:?}", c.unscored_lines)
        },
        c.labels_past_input,
        c.unlabelled_lines
    )?;

    writeln!(
        out,
        "\n== Per-record scores (each attack type vs all benign records)"
    )?;
    let mut rows = vec![auc_cells(&r.scores.overall)];
    rows.extend(r.scores.by_attack_type.iter().map(auc_cells));
    table(
        out,
        &[
            "attack_type",
            "positives",
            "negatives",
            "ROC-AUC",
            "PR-AUC",
            "pos>0",
            "neg>0",
        ],
        &rows,
    )?;

    let e = &r.episodes;
    writeln!(
        out,
        "\n== Episodes ({}): {} of {} detected{}, median time to detect {}",
        match e.source {
            EpisodeSource::File => "from the episode file",
            EpisodeSource::Labels => "derived from labels",
        },
        e.detected,
        e.total,
        e.detection_rate
            .map(|v| format!(" ({:.1}%)", v * 100.0))
            .unwrap_or_default(),
        seconds(e.median_time_to_detect_s)
    )?;
    let rows: Vec<Vec<String>> = e
        .by_scenario
        .iter()
        .map(|s| {
            vec![
                s.scenario.clone(),
                s.episodes.to_string(),
                s.detected.to_string(),
                seconds(s.median_time_to_detect_s),
            ]
        })
        .collect();
    table(
        out,
        &["scenario", "episodes", "detected", "median TTD"],
        &rows,
    )?;
    writeln!(out)?;
    let rows: Vec<Vec<String>> = e
        .list
        .iter()
        .take(EPISODES_LISTED)
        .map(|x| {
            vec![
                x.episode.scenario.clone(),
                x.episode.attacker.clone(),
                x.episode.victim.clone(),
                x.episode.start.to_string(),
                (x.episode.end - x.episode.start).to_string(),
                if x.episode.is_benign() {
                    "benign".into()
                } else if x.detected {
                    "yes".into()
                } else {
                    "no".into()
                },
                list_or_dash(&x.detectors),
                seconds(x.time_to_detect_s),
            ]
        })
        .collect();
    table(
        out,
        &[
            "scenario",
            "attacker",
            "victim",
            "start",
            "length s",
            "detected",
            "detectors",
            "TTD",
        ],
        &rows,
    )?;
    if e.list.len() > EPISODES_LISTED {
        writeln!(
            out,
            "... {} more episodes in --json",
            e.list.len() - EPISODES_LISTED
        )?;
    }

    let f = &r.false_alerts;
    writeln!(
        out,
        "\n== False alerts: {} of {} alerts match no attack episode; {} workloads × {:.2} days ({} covered hours) → {} per workload-day",
        f.false_alerts,
        f.alerts,
        f.workloads,
        f.covered_days,
        f.covered_hours,
        f.per_workload_day.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
    )?;
    let rows: Vec<Vec<String>> = f
        .top_pairs
        .iter()
        .map(|p| vec![p.detector.clone(), p.workload.clone(), p.alerts.to_string()])
        .collect();
    table(out, &["detector", "workload", "false alerts"], &rows)?;

    let h = &r.hosts;
    writeln!(
        out,
        "\n== Infected hosts named in alerts: {} of {}",
        h.infected_named, h.infected_total
    )?;
    let host_rows = |hosts: &[HostResult], limit: usize| -> Vec<Vec<String>> {
        hosts
            .iter()
            .take(limit)
            .map(|x| {
                vec![
                    x.workload.clone(),
                    x.attack_records.to_string(),
                    if x.named { "yes".into() } else { "no".into() },
                    x.alerts.to_string(),
                    list_or_dash(&x.detectors),
                ]
            })
            .collect()
    };
    let header = ["workload", "attack records", "named", "alerts", "detectors"];
    table(out, &header, &host_rows(&h.infected, usize::MAX))?;
    writeln!(
        out,
        "\n== Benign-only workloads named in alerts: {}",
        h.benign_named.len()
    )?;
    table(out, &header, &host_rows(&h.benign_named, BENIGN_LISTED))?;
    if h.benign_named.len() > BENIGN_LISTED {
        writeln!(
            out,
            "... {} more in --json",
            h.benign_named.len() - BENIGN_LISTED
        )?;
    }
    Ok(())
}

fn auc_cells(a: &AucRow) -> Vec<String> {
    let num = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    vec![
        a.attack_type.clone(),
        a.positives.to_string(),
        a.negatives.to_string(),
        num(a.roc_auc),
        num(a.pr_auc),
        a.positives_scored.to_string(),
        a.negatives_scored.to_string(),
    ]
}

fn seconds(v: Option<i64>) -> String {
    v.map(|s| format!("{s} s")).unwrap_or_else(|| "-".into())
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

/// Writes rows under a header, columns padded to their widest cell.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) -> std::fmt::Result {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| -> std::fmt::Result {
        let mut text = String::new();
        for (cell, w) in cells.zip(&widths) {
            write!(text, "{cell:<w$}  ")?;
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, &mut header.iter().copied())?;
    if rows.is_empty() {
        writeln!(out, "(none)")?;
    }
    for row in rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut s = String::new();
        table(&mut s, &["a", "bb"], &[vec!["long".into(), "x".into()]]).expect("fmt");
        assert_eq!(s, "a     bb\nlong  x\n");
    }
}
