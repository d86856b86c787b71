//! The report page: layout, CSS and tables around the SVG charts of [`super::svg`]. Every string that
//! comes from an input file goes through [`esc`].

use super::fmt::{esc, fmt_gap, fmt_time, human};
use super::load::{Quarantine, ReportAlert};
use super::series::is_bytes;
use super::svg::{self, colour, BANDS};
use super::ReportData;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Workloads listed in the top-workloads table.
const TOP_WORKLOADS: usize = 12;

const CSS: &str = r#"
:root{--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f3f4f6}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"DejaVu Sans",sans-serif}
main{max-width:1320px;margin:0 auto;padding:24px 28px 40px}
header h1{margin:0 0 4px;font-size:26px;letter-spacing:-.01em}
header .sub{color:var(--muted);margin:0}
h2{font-size:16px;margin:0 0 10px}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 18px;margin-top:18px}
.hint{color:var(--muted);font-size:12.5px;margin:-4px 0 10px}
.tiles{display:grid;grid-template-columns:repeat(7,1fr);gap:12px;margin-top:18px}
.tile{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 14px;border-top:4px solid #9ca3af}
.tile .n{font-size:26px;font-weight:700}
.tile .l{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.two{display:grid;grid-template-columns:1fr 1.2fr;gap:18px;align-items:start}
.two .card{margin-top:18px}
td.mono{white-space:nowrap}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.03em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px}
.bar{height:8px;border-radius:4px;background:#ea580c;display:inline-block;vertical-align:middle}
.badge{display:inline-block;white-space:nowrap;border-radius:999px;padding:1px 9px;color:#fff;font-size:11.5px;font-weight:600;text-transform:uppercase;letter-spacing:.03em}
.grid{display:grid;grid-template-columns:repeat(2,1fr);gap:16px}
.alert{background:#fff;border:1px solid var(--line);border-left:5px solid #9ca3af;border-radius:10px;padding:12px 14px}
.alert .head{display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.alert .wl{font-weight:600}
.alert .meta{color:var(--muted);font-size:12.5px;margin:4px 0 2px}
.alert .desc{margin:2px 0 6px;font-size:13px}
.legend span{display:inline-block;margin-right:14px;font-size:12.5px;color:var(--muted)}
.legend i{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:5px;vertical-align:-1px}
svg{max-width:100%;height:auto;display:block}
svg text{font-family:inherit}
svg .tick{font-size:11px;fill:#6b7280}
svg .lane{font-size:12.5px;fill:#374151}
footer{color:var(--muted);font-size:12px;margin-top:24px}
.empty{color:var(--muted);font-style:italic}
.small{font-size:12px;color:#4b5563}
"#;

/// Renders the whole page.
pub fn render(d: &ReportData) -> String {
    let mut p = String::with_capacity(64 * 1024 + d.charts.len() * 8 * 1024);
    let _ = write!(
        p,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{}</title><style>{CSS}</style></head><body><main>"#,
        esc(&d.title)
    );
    header(&mut p, d);
    tiles(&mut p, d);
    timeline(&mut p, d);
    let _ = write!(p, r#"<div class="two"><div>"#);
    detectors(&mut p, d);
    quarantines(&mut p, d);
    p.push_str("</div><div>");
    workloads(&mut p, d);
    p.push_str("</div></div>");
    details(&mut p, d);
    let _ = write!(
        p,
        "<footer>Made by flowwarden {} from {}. Times are event times (UTC) from the flow logs.{}</footer></main></body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(&d.sources.join("; ")),
        if d.alerts_skipped > 0 || d.actions_read.skipped > 0 {
            format!(
                " Skipped lines that were not JSON: {} in the alerts file, {} in the actions file.",
                d.alerts_skipped, d.actions_read.skipped
            )
        } else {
            String::new()
        }
    );
    p
}

fn header(p: &mut String, d: &ReportData) {
    let range = match (
        d.alerts.iter().map(|a| a.window_start).min(),
        d.alerts.iter().map(|a| a.time).max(),
    ) {
        (Some(a), Some(b)) => format!("{} → {}", fmt_time(a), fmt_time(b)),
        _ => "no alerts".into(),
    };
    let _ = write!(
        p,
        r#"<header><h1>{}</h1><p class="sub">{} · {}</p></header>"#,
        esc(&d.title),
        esc(&range),
        esc(&d.sources.join(" · "))
    );
}

fn tiles(p: &mut String, d: &ReportData) {
    p.push_str(r#"<section class="tiles">"#);
    let tile = |p: &mut String, n: usize, label: &str, col: &str| {
        let _ = write!(
            p,
            r#"<div class="tile" style="border-top-color:{col}"><div class="n">{n}</div><div class="l">{}</div></div>"#,
            esc(label)
        );
    };
    tile(p, d.alerts.len(), "alerts", "#111827");
    for (band, name, col) in BANDS {
        tile(
            p,
            d.alerts.iter().filter(|a| a.band_label() == band).count(),
            name,
            col,
        );
    }
    let workloads: BTreeSet<&str> = d.alerts.iter().map(|a| a.workload.as_str()).collect();
    tile(p, workloads.len(), "workloads alerted", "#4b5563");
    match &d.quarantines {
        Some(q) => tile(p, q.len(), "quarantines", "#7c3aed"),
        None => tile(p, 0, "quarantines (no actions file)", "#d1d5db"),
    }
    p.push_str("</section>");
}

fn timeline(p: &mut String, d: &ReportData) {
    p.push_str(r#"<section class="card"><h2>Alert timeline</h2><p class="hint">One dot per alert, by severity; bigger dots are more severe. Long quiet periods are folded into a break mark labelled with their length. Hover a dot for details.</p>"#);
    if d.alerts.is_empty() {
        p.push_str(r#"<p class="empty">No alerts in this run.</p>"#);
    } else {
        p.push_str(&svg::timeline(&d.alerts, 1260.0));
    }
    p.push_str("</section>");
}

fn detectors(p: &mut String, d: &ReportData) {
    let mut by: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    for a in &d.alerts {
        let k = BANDS
            .iter()
            .position(|b| b.0 == a.band_label())
            .unwrap_or(3);
        by.entry(a.detector.as_str()).or_default()[k] += 1;
    }
    let mut counts: Vec<(String, [usize; 4])> =
        by.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    counts.sort_by(|a, b| {
        b.1.iter()
            .sum::<usize>()
            .cmp(&a.1.iter().sum::<usize>())
            .then(a.0.cmp(&b.0))
    });
    p.push_str(r#"<section class="card"><h2>Alerts per detector</h2><p class="legend">"#);
    for (_, name, col) in BANDS {
        let _ = write!(p, r#"<span><i style="background:{col}"></i>{name}</span>"#);
    }
    p.push_str("</p>");
    if counts.is_empty() {
        p.push_str(r#"<p class="empty">None.</p>"#);
    } else {
        p.push_str(&svg::detector_bars(&counts, 520.0));
    }
    p.push_str("</section>");
}

fn workloads(p: &mut String, d: &ReportData) {
    struct Row<'a> {
        alerts: usize,
        max: &'a ReportAlert,
        detectors: BTreeSet<&'a str>,
    }
    let mut rows: BTreeMap<&str, Row<'_>> = BTreeMap::new();
    for a in &d.alerts {
        let r = rows.entry(a.workload.as_str()).or_insert(Row {
            alerts: 0,
            max: a,
            detectors: BTreeSet::new(),
        });
        r.alerts += 1;
        if a.severity > r.max.severity {
            r.max = a;
        }
        r.detectors.insert(a.detector.as_str());
    }
    let mut rows: Vec<(&str, Row<'_>)> = rows.into_iter().collect();
    rows.sort_by(|a, b| {
        b.1.max
            .severity
            .cmp(&a.1.max.severity)
            .then(b.1.alerts.cmp(&a.1.alerts))
            .then(a.0.cmp(b.0))
    });
    let most = rows.iter().map(|r| r.1.alerts).max().unwrap_or(1).max(1);
    let _ = write!(
        p,
        r#"<section class="card"><h2>Top workloads</h2><p class="hint">{} workloads raised alerts; the {} most severe are listed.</p>"#,
        rows.len(),
        rows.len().min(TOP_WORKLOADS)
    );
    if rows.is_empty() {
        p.push_str(r#"<p class="empty">None.</p></section>"#);
        return;
    }
    p.push_str(
        "<table><tr><th>Workload</th><th>Max severity</th><th>Alerts</th><th>Detectors</th></tr>",
    );
    for (w, r) in rows.iter().take(TOP_WORKLOADS) {
        let band = r.max.band_label();
        let _ = write!(
            p,
            r#"<tr><td class="mono">{}</td><td><span class="badge" style="background:{}">{} {}</span></td><td class="num">{} <span class="bar" style="width:{}px;background:{}"></span></td><td>{}</td></tr>"#,
            esc(w),
            colour(band),
            band_name(band),
            r.max.severity,
            r.alerts,
            4 + 80 * r.alerts / most,
            colour(band),
            esc(&r.detectors.iter().copied().collect::<Vec<_>>().join(", "))
        );
    }
    p.push_str("</table></section>");
}

fn band_name(s: crate::alert::Severity) -> &'static str {
    BANDS.iter().find(|b| b.0 == s).map(|b| b.1).unwrap_or("?")
}

fn quarantines(p: &mut String, d: &ReportData) {
    p.push_str(r#"<section class="card"><h2>Quarantines</h2>"#);
    let Some(qs) = &d.quarantines else {
        p.push_str(r#"<p class="empty">No actions file given (--actions): quarantines are not shown.</p></section>"#);
        return;
    };
    if qs.is_empty() {
        let _ = write!(
            p,
            r#"<p class="empty">No quarantine in the actions file ({} lines read).</p></section>"#,
            d.actions_read.parsed
        );
        return;
    }
    p.push_str(r#"<p class="hint">Each isolation with its start, end (release, or planned expiry when no release was seen) and duration.</p><table><tr><th>Workload</th><th>Period (UTC)</th><th>Duration</th><th>Status</th></tr>"#);
    for q in qs {
        let _ = write!(
            p,
            r#"<tr title="{}"><td><span class="mono">{}</span><div class="small">{}</div></td><td class="small">{}<br>→ {}</td><td class="num">{}</td><td class="small">{}</td></tr>"#,
            esc(&q.reason),
            esc(&q.workload),
            esc(&shorten(&q.reason, 90)),
            q.start.map(fmt_time).unwrap_or_else(|| "?".into()),
            q.end().map(fmt_time).unwrap_or_else(|| "open".into()),
            q.duration_s().map(fmt_gap).unwrap_or_else(|| "–".into()),
            esc(&status(q)),
        );
    }
    p.push_str("</table></section>");
}

/// The first `max` characters of `s`, with an ellipsis when cut.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn status(q: &Quarantine) -> String {
    let mut s = match (q.released, q.expires_at) {
        (Some(_), _) => "released".to_string(),
        (None, Some(_)) => "until expiry".to_string(),
        (None, None) => "open".to_string(),
    };
    if q.escalated {
        s.push_str(", escalated");
    }
    if q.dry_run {
        s.push_str(" (dry run)");
    }
    s
}

fn details(p: &mut String, d: &ReportData) {
    let _ = write!(
        p,
        r#"<section class="card"><h2>Most severe alerts ({} of {})</h2><p class="hint">{}</p><div class="grid">"#,
        d.charts.len(),
        d.alerts.len(),
        esc(&d.series_note)
    );
    if d.charts.is_empty() {
        p.push_str(r#"<p class="empty">No alerts.</p>"#);
    }
    for (i, data) in &d.charts {
        let a = &d.alerts[*i];
        let band = a.band_label();
        let others: Vec<&ReportAlert> = d
            .alerts
            .iter()
            .filter(|o| o.workload == a.workload && o.feature == a.feature)
            .collect();
        let bytes = is_bytes(&a.feature);
        let _ = write!(
            p,
            r#"<div class="alert" style="border-left-color:{col}"><div class="head"><span class="badge" style="background:{col}">{} {}</span><span class="wl mono">{}</span></div><div class="meta">{} · {} · {} observed {} vs expected {} (band {} – {}) · score {:.2}{}</div><div class="desc">{}</div>{}</div>"#,
            band_name(band),
            a.severity,
            esc(&a.workload),
            esc(&fmt_time(a.window_start)),
            esc(&a.detector),
            esc(&a.feature),
            esc(&human(a.observed, bytes)),
            esc(&human(a.expected, bytes)),
            esc(&human(a.band.lower, bytes)),
            esc(&human(a.band.upper, bytes)),
            a.score,
            if a.mitre_ids.is_empty() {
                String::new()
            } else {
                format!(" · MITRE {}", esc(&a.mitre_ids.join(", ")))
            },
            esc(&a.description),
            svg::series_chart(a, data, &others, bytes),
            col = colour(band),
        );
    }
    p.push_str("</div></section>");
}
