//! Text formatting for the report: HTML escaping, UTC times, durations and human-sized numbers.

use std::time::{Duration, UNIX_EPOCH};

/// Escapes text for HTML and SVG (element content and quoted attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2018-09-21T10:32:45Z` for an epoch second, or the raw number when out of range.
fn rfc3339(t: i64) -> String {
    if !(0..=253_402_300_799).contains(&t) {
        return t.to_string();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t as u64)).to_string()
}

/// `2018-09-21 10:32:45 UTC`.
pub fn fmt_time(t: i64) -> String {
    let s = rfc3339(t);
    match s.split_once('T') {
        Some((d, rest)) => format!("{d} {} UTC", rest.trim_end_matches('Z')),
        None => s,
    }
}

/// `2018-09-21`.
pub fn fmt_date(t: i64) -> String {
    let s = rfc3339(t);
    s.split_once('T').map(|(d, _)| d.to_string()).unwrap_or(s)
}

/// `10:32:45`.
pub fn fmt_clock(t: i64) -> String {
    let s = rfc3339(t);
    s.split_once('T')
        .map(|(_, r)| r.trim_end_matches('Z').to_string())
        .unwrap_or(s)
}

/// Coarse duration: `45s`, `12m`, `3h 20m`, `34d`.
pub fn fmt_gap(s: i64) -> String {
    let s = s.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => {
            let m = (s % 3600) / 60;
            if m == 0 {
                format!("{}h", s / 3600)
            } else {
                format!("{}h {}m", s / 3600, m)
            }
        }
        _ => format!("{}d", s / 86_400),
    }
}

/// `1.2 MB`, `340 B` for bytes; `12.3k`, `1.5M`, `42`, `0.35` otherwise.
pub fn human(v: f64, bytes: bool) -> String {
    if !v.is_finite() {
        return "∞".into();
    }
    let a = v.abs();
    if bytes {
        const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
        let mut x = a;
        let mut u = 0;
        while x >= 1000.0 && u < UNITS.len() - 1 {
            x /= 1000.0;
            u += 1;
        }
        let sign = if v < 0.0 { "-" } else { "" };
        return if u == 0 {
            format!("{sign}{x:.0} B")
        } else {
            format!("{sign}{x:.1} {}", UNITS[u])
        };
    }
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(
            esc("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(fmt_time(1537523565), "2018-09-21 09:52:45 UTC");
        assert_eq!(fmt_date(1537523565), "2018-09-21");
        assert_eq!(fmt_clock(1537523565), "09:52:45");
        assert_eq!(fmt_time(-5), "-5");
        assert_eq!(fmt_gap(90), "1m");
        assert_eq!(fmt_gap(3 * 86_400 + 5), "3d");
        assert_eq!(human(1_234_567.0, true), "1.2 MB");
        assert_eq!(human(340.0, true), "340 B");
        assert_eq!(human(14.0, false), "14");
        assert_eq!(human(12_345.0, false), "12.3k");
        assert_eq!(human(0.35, false), "0.35");
    }
}
