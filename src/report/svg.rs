//! Inline SVG charts for the report: the alert timeline, per-detector bars, and one series chart per
//! alert. Plain strings, no scripting: tooltips are SVG `<title>` elements, which browsers show on
//! hover without JavaScript.
//!
//! Event times in flow logs can have long gaps (captures from different days, a daemon that was
//! down), so the timeline uses a [`TimeAxis`] that compresses gaps into a fixed-width break mark.

use super::fmt::{esc, fmt_clock, fmt_date, fmt_gap, fmt_time, human};
use super::load::ReportAlert;
use crate::alert::Severity;
use std::fmt::Write;

/// Severity bands from most to least severe, with their colours.
pub const BANDS: [(Severity, &str, &str); 4] = [
    (Severity::Critical, "critical", "#b91c1c"),
    (Severity::High, "high", "#ea580c"),
    (Severity::Medium, "medium", "#ca8a04"),
    (Severity::Low, "low", "#2563eb"),
];

/// Colour of a severity band.
pub fn colour(s: Severity) -> &'static str {
    BANDS
        .iter()
        .find(|b| b.0 == s)
        .map(|b| b.2)
        .unwrap_or("#6b7280")
}

/// Gaps longer than this are drawn as a break in the timeline.
const GAP_BREAK_S: i64 = 6 * 3600;
/// Width of a break mark in pixels.
const GAP_PX: f64 = 26.0;

/// A time → x mapping over segments of activity separated by compressed gaps.
#[derive(Debug, Clone)]
pub struct TimeAxis {
    /// (t0, t1, x0, x1) per segment.
    segments: Vec<(i64, i64, f64, f64)>,
    /// (x of the break centre, gap length in s).
    breaks: Vec<(f64, i64)>,
}

impl TimeAxis {
    /// Builds an axis over `times` drawn between `x0` and `x1`; `pad` seconds are added around each
    /// segment so points at its edges are not on the border.
    pub fn new(times: &[i64], x0: f64, x1: f64, pad: i64) -> TimeAxis {
        let mut ts: Vec<i64> = times.to_vec();
        ts.sort_unstable();
        ts.dedup();
        let mut spans: Vec<(i64, i64)> = Vec::new();
        for t in ts {
            match spans.last_mut() {
                Some(last) if t - last.1 <= GAP_BREAK_S => last.1 = t,
                _ => spans.push((t, t)),
            }
        }
        if spans.is_empty() {
            spans.push((0, 1));
        }
        let pad = pad.max(1);
        let spans: Vec<(i64, i64)> = spans.into_iter().map(|(a, b)| (a - pad, b + pad)).collect();
        let n = spans.len() as f64;
        let usable = (x1 - x0 - GAP_PX * (n - 1.0)).max(n);
        // Widths grow with duration but every segment stays readable.
        let total: f64 = spans.iter().map(|(a, b)| (*b - *a) as f64).sum();
        let min_share = 0.6 / n;
        let shares: Vec<f64> = spans
            .iter()
            .map(|(a, b)| min_share + (1.0 - min_share * n) * ((*b - *a) as f64 / total.max(1.0)))
            .collect();
        let mut segments = Vec::new();
        let mut breaks = Vec::new();
        let mut x = x0;
        for (i, ((a, b), share)) in spans.iter().zip(&shares).enumerate() {
            if i > 0 {
                breaks.push((x + GAP_PX / 2.0, a - spans[i - 1].1));
                x += GAP_PX;
            }
            let w = usable * share;
            segments.push((*a, *b, x, x + w));
            x += w;
        }
        TimeAxis { segments, breaks }
    }

    /// x of a time (clamped into the nearest segment).
    pub fn x(&self, t: i64) -> f64 {
        let seg = self
            .segments
            .iter()
            .find(|s| t <= s.1)
            .or(self.segments.last())
            .copied()
            .unwrap_or((0, 1, 0.0, 1.0));
        let (a, b, x0, x1) = seg;
        let f = ((t - a) as f64 / (b - a).max(1) as f64).clamp(0.0, 1.0);
        x0 + f * (x1 - x0)
    }

    fn draw(&self, out: &mut String, y: f64) {
        // Labels are ~62 px wide; a segment too close to the previous label goes unlabelled
        // (its dots still have tooltips).
        let mut free_from = f64::MIN;
        for &(a, b, x0, x1) in &self.segments {
            let _ = write!(
                out,
                r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#9ca3af"/>"##
            );
            if x0 < free_from {
                continue;
            }
            free_from = x0 + 70.0;
            let _ = write!(
                out,
                r##"<text x="{x0:.1}" y="{:.1}" class="tick">{}</text>"##,
                y + 14.0,
                esc(&fmt_date(a))
            );
            let _ = write!(
                out,
                r##"<text x="{x0:.1}" y="{:.1}" class="tick">{}</text>"##,
                y + 27.0,
                esc(&fmt_clock(a))
            );
            if x1 - x0 > 140.0 {
                free_from = x1 + 8.0;
                let _ = write!(
                    out,
                    r##"<text x="{x1:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
                    y + 27.0,
                    esc(&fmt_clock(b))
                );
            }
        }
        for &(x, gap) in &self.breaks {
            let _ = write!(
                out,
                r##"<path d="M{:.1} {:.1} l4 -6 l4 12 l4 -6" fill="none" stroke="#6b7280" stroke-width="1.5"/><text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"##,
                x - 6.0,
                y,
                y - 10.0,
                esc(&fmt_gap(gap))
            );
        }
    }
}

/// The alert timeline: one lane per severity band, one dot per alert.
pub fn timeline(alerts: &[ReportAlert], width: f64) -> String {
    let left = 92.0;
    let right = width - 70.0;
    let lane_h = 30.0;
    let top = 22.0;
    let height = top + lane_h * 4.0 + 44.0;
    let pad = alerts
        .iter()
        .map(ReportAlert::window_len)
        .max()
        .unwrap_or(60)
        * 4;
    let times: Vec<i64> = alerts.iter().map(|a| a.time).collect();
    let axis = TimeAxis::new(&times, left, right, pad);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="Alert timeline by severity">"#
    );
    for (i, (band, name, col)) in BANDS.iter().enumerate() {
        let y = top + lane_h * i as f64 + lane_h / 2.0;
        let count = alerts.iter().filter(|a| a.band_label() == *band).count();
        let _ = write!(
            s,
            r##"<rect x="{left:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" class="lane" text-anchor="end">{name}</text><text x="{:.1}" y="{:.1}" class="lane" fill="{col}">{count}</text>"##,
            y - lane_h / 2.0,
            right - left,
            lane_h,
            if i % 2 == 0 { "#f9fafb" } else { "#ffffff" },
            left - 8.0,
            y + 4.0,
            right + 8.0,
            y + 4.0,
        );
        for a in alerts.iter().filter(|a| a.band_label() == *band) {
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{y:.1}" r="{:.1}" fill="{col}" fill-opacity="0.55" stroke="{col}"><title>{} · {} · {} · severity {}</title></circle>"##,
                axis.x(a.time),
                3.5 + (a.severity as f64 / 100.0) * 3.0,
                esc(&fmt_time(a.time)),
                esc(&a.detector),
                esc(&a.workload),
                a.severity
            );
        }
    }
    axis.draw(&mut s, top + lane_h * 4.0 + 4.0);
    s.push_str("</svg>");
    s
}

/// Horizontal bars of alert counts per detector, stacked by severity band.
pub fn detector_bars(counts: &[(String, [usize; 4])], width: f64) -> String {
    let label_w = 150.0;
    let bar_h = 22.0;
    let height = bar_h * counts.len().max(1) as f64 + 12.0;
    let max = counts
        .iter()
        .map(|(_, c)| c.iter().sum::<usize>())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let scale = (width - label_w - 50.0) / max;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="Alerts per detector">"#
    );
    for (i, (name, c)) in counts.iter().enumerate() {
        let y = 6.0 + i as f64 * bar_h;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="lane" text-anchor="end">{}</text>"#,
            label_w - 8.0,
            y + bar_h / 2.0 + 4.0,
            esc(name)
        );
        let mut x = label_w;
        for (k, (_, band_name, col)) in BANDS.iter().enumerate() {
            if c[k] == 0 {
                continue;
            }
            let w = c[k] as f64 * scale;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{col}"><title>{}: {} {band_name}</title></rect>"#,
                y + 3.0,
                bar_h - 6.0,
                esc(name),
                c[k]
            );
            x += w;
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="lane">{}</text>"#,
            x + 6.0,
            y + bar_h / 2.0 + 4.0,
            c.iter().sum::<usize>()
        );
    }
    s.push_str("</svg>");
    s
}

/// A round tick step (1, 2 or 5 × 10^k) and how many steps reach `max` (3 to 5).
fn nice_ticks(max: f64) -> (f64, u32) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| max / s <= 5.0)
        .unwrap_or(10.0 * mag);
    let step = if max >= 4.0 && step < 1.0 { 1.0 } else { step };
    (step, (max / step).ceil().max(1.0) as u32)
}

/// What a series chart plots.
#[derive(Debug, Clone)]
pub enum SeriesData {
    /// Per-window values recomputed from flow logs: (window start, value).
    Windows(Vec<(i64, f64)>),
    /// The alerts' own points (no flow logs, or a feature the report cannot recompute).
    AlertPoints(Vec<ReportAlert>),
}

/// The observed series of one alert's workload against its expected band, the alert marked.
/// `others`: other alerts of the same workload and feature (marked when in range).
pub fn series_chart(
    alert: &ReportAlert,
    data: &SeriesData,
    others: &[&ReportAlert],
    bytes: bool,
) -> String {
    let (width, height) = (560.0, 200.0);
    let (left, right, top, bottom) = (62.0, width - 14.0, 14.0, height - 38.0);
    let band_ok = alert.band.upper.is_finite() && alert.band.lower.is_finite();
    let mut ymax: f64 = alert.observed.max(alert.expected);
    if band_ok {
        ymax = ymax.max(alert.band.upper);
    }
    let (t_min, t_max) = match data {
        SeriesData::Windows(points) => {
            for (_, v) in points {
                ymax = ymax.max(*v);
            }
            let lo = points.first().map(|p| p.0).unwrap_or(alert.window_start);
            let hi = points.last().map(|p| p.0).unwrap_or(alert.window_start) + alert.window_len();
            (lo, hi)
        }
        SeriesData::AlertPoints(points) => {
            for p in points {
                ymax = ymax.max(p.observed);
                if p.band.upper.is_finite() {
                    ymax = ymax.max(p.band.upper);
                }
            }
            let lo = points
                .iter()
                .map(|p| p.window_start)
                .min()
                .unwrap_or(alert.window_start);
            let hi = points
                .iter()
                .map(|p| p.window_end)
                .max()
                .unwrap_or(alert.window_end);
            let pad = ((hi - lo) / 20).max(alert.window_len() * 12);
            (lo - pad, hi + pad)
        }
    };
    let (step, ticks) = nice_ticks(if ymax.is_finite() { ymax } else { 1.0 });
    let ymax = step * ticks as f64 * 1.04;
    let span = (t_max - t_min).max(1) as f64;
    let xs = |t: i64| left + (t - t_min) as f64 / span * (right - left);
    let ys = |v: f64| bottom - (v.max(0.0) / ymax).min(1.0) * (bottom - top);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="Observed series against the expected band">"#
    );
    // Axes and grid.
    for k in 0..=ticks {
        let v = step * k as f64;
        let y = ys(v);
        let _ = write!(
            s,
            r##"<line x1="{left:.1}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="#eef0f3"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
            left - 6.0,
            y + 4.0,
            esc(&human(v, bytes))
        );
    }
    // The expected band.
    if band_ok && matches!(data, SeriesData::Windows(_)) {
        let (y_hi, y_lo) = (ys(alert.band.upper), ys(alert.band.lower));
        let _ = write!(
            s,
            r##"<rect x="{left:.1}" y="{y_hi:.1}" width="{:.1}" height="{:.1}" fill="#10b981" fill-opacity="0.13"><title>expected band {} – {}</title></rect><line x1="{left:.1}" y1="{y_hi:.1}" x2="{right:.1}" y2="{y_hi:.1}" stroke="#10b981" stroke-dasharray="5 4"/>"##,
            right - left,
            (y_lo - y_hi).max(1.0),
            esc(&human(alert.band.lower, bytes)),
            esc(&human(alert.band.upper, bytes))
        );
        let ye = ys(alert.expected);
        let _ = write!(
            s,
            r##"<line x1="{left:.1}" y1="{ye:.1}" x2="{right:.1}" y2="{ye:.1}" stroke="#047857" stroke-width="1" stroke-dasharray="2 3"/>"##
        );
    }
    // The alert window.
    let (ax0, ax1) = (xs(alert.window_start), xs(alert.window_end));
    let _ = write!(
        s,
        r##"<rect x="{ax0:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="#dc2626" fill-opacity="0.10"/>"##,
        (ax1 - ax0).max(2.0),
        bottom - top
    );
    match data {
        SeriesData::Windows(points) => {
            let len = alert.window_len();
            let mut path = String::new();
            for (i, (w, v)) in points.iter().enumerate() {
                let x = xs(*w + len / 2);
                let _ = write!(
                    path,
                    "{}{x:.1} {:.1} ",
                    if i == 0 { "M" } else { "L" },
                    ys(*v)
                );
            }
            let _ = write!(
                s,
                r##"<path d="{path}" fill="none" stroke="#1f2937" stroke-width="1.6" stroke-linejoin="round"/>"##
            );
            for o in others {
                if o.window_start >= t_min && o.window_start <= t_max && o.id != alert.id {
                    let _ = write!(
                        s,
                        r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"><title>{} · {} · severity {}</title></circle>"##,
                        xs(o.window_start + len / 2),
                        ys(o.observed),
                        colour(o.band_label()),
                        esc(&fmt_time(o.time)),
                        esc(&o.detector),
                        o.severity
                    );
                }
            }
        }
        SeriesData::AlertPoints(points) => {
            let mut path = String::new();
            for (i, p) in points.iter().enumerate() {
                let x = xs((p.window_start + p.window_end) / 2);
                if p.band.upper.is_finite() && p.band.lower.is_finite() {
                    let (y_hi, y_lo) = (ys(p.band.upper), ys(p.band.lower));
                    let _ = write!(
                        s,
                        r##"<rect x="{:.1}" y="{y_hi:.1}" width="8" height="{:.1}" fill="#10b981" fill-opacity="0.25"><title>expected band {} – {}</title></rect><line x1="{:.1}" y1="{ye:.1}" x2="{:.1}" y2="{ye:.1}" stroke="#047857" stroke-width="2"/>"##,
                        x - 4.0,
                        (y_lo - y_hi).max(1.0),
                        esc(&human(p.band.lower, bytes)),
                        esc(&human(p.band.upper, bytes)),
                        x - 6.0,
                        x + 6.0,
                        ye = ys(p.expected)
                    );
                }
                let _ = write!(
                    path,
                    "{}{x:.1} {:.1} ",
                    if i == 0 { "M" } else { "L" },
                    ys(p.observed)
                );
            }
            let _ = write!(
                s,
                r##"<path d="{path}" fill="none" stroke="#9ca3af" stroke-width="1.2" stroke-dasharray="3 3"/>"##
            );
            for p in points {
                let x = xs((p.window_start + p.window_end) / 2);
                let _ = write!(
                    s,
                    r##"<circle cx="{x:.1}" cy="{:.1}" r="3.5" fill="#1f2937"><title>{} · observed {}</title></circle>"##,
                    ys(p.observed),
                    esc(&fmt_time(p.time)),
                    esc(&human(p.observed, bytes))
                );
            }
        }
    }
    // The alert itself.
    let (mx, my) = ((ax0 + ax1) / 2.0, ys(alert.observed));
    let _ = write!(
        s,
        r##"<circle cx="{mx:.1}" cy="{my:.1}" r="6" fill="{}" stroke="#fff" stroke-width="2"><title>alert: observed {} at {}</title></circle>"##,
        colour(alert.band_label()),
        esc(&human(alert.observed, bytes)),
        esc(&fmt_time(alert.time))
    );
    // Time labels.
    let _ = write!(
        s,
        r##"<line x1="{left:.1}" y1="{bottom:.1}" x2="{right:.1}" y2="{bottom:.1}" stroke="#9ca3af"/><text x="{left:.1}" y="{:.1}" class="tick">{}</text><text x="{left:.1}" y="{:.1}" class="tick">{}</text><text x="{right:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
        bottom + 14.0,
        esc(&fmt_clock(t_min)),
        bottom + 27.0,
        esc(&fmt_date(t_min)),
        bottom + 14.0,
        esc(&fmt_clock(t_max)),
    );
    // The alert's time under its column, unless it would overwrite the edge labels.
    if mx - left > 70.0 && right - mx > 70.0 {
        let _ = write!(
            s,
            r##"<text x="{mx:.1}" y="{:.1}" class="tick" text-anchor="middle" fill="#b91c1c">{}</text>"##,
            bottom + 27.0,
            esc(&fmt_clock(alert.window_start))
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_axis_compresses_long_gaps_and_keeps_order() {
        let day = 86_400;
        let axis = TimeAxis::new(&[0, 60, 120, 30 * day, 30 * day + 60], 0.0, 1000.0, 15);
        assert_eq!(axis.breaks.len(), 1);
        assert!(axis.x(0) < axis.x(60) && axis.x(60) < axis.x(120));
        assert!(axis.x(120) < axis.x(30 * day) && axis.x(30 * day) < axis.x(30 * day + 60));
        // The month-long gap takes a break mark and the padding, not most of the axis.
        assert!(axis.x(30 * day) - axis.x(120) < 200.0);
        assert!(axis.x(30 * day + 60) <= 1000.0 + 1e-9);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_ticks(14.0), (5.0, 3));
        assert_eq!(nice_ticks(7.0), (2.0, 4));
        assert_eq!(nice_ticks(1_234_567.0), (250_000.0, 5));
        assert_eq!(nice_ticks(0.0), (0.2, 5));
    }

    #[test]
    fn series_chart_escapes_and_marks_the_alert() {
        let a = ReportAlert {
            id: "x".into(),
            time: 30,
            detector: "volume<script>".into(),
            severity: 80,
            workload: "ns/w-*".into(),
            window_start: 15,
            window_end: 30,
            observed: 50.0,
            expected: 5.0,
            band: crate::alert::Band {
                lower: 0.0,
                upper: 10.0,
            },
            ..ReportAlert::default()
        };
        let svg = series_chart(
            &a,
            &SeriesData::Windows(
                vec![(0, 4.0), (1, 50.0), (2, 3.0)]
                    .into_iter()
                    .map(|(w, v)| (w * 15, v))
                    .collect(),
            ),
            &[],
            false,
        );
        assert!(svg.contains("alert: observed 50"));
        let tl = timeline(std::slice::from_ref(&a), 1200.0);
        assert!(tl.contains("volume&lt;script&gt;"));
        assert!(!tl.contains("<script>"));
    }
}
