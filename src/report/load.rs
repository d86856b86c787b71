//! Reading the report's inputs: the alerts file (JSON lines in the [`crate::alert::Alert`] shape) and
//! the responder's actions file (JSON lines with `action`, `workload`, `time`, `expires_at`, ...).
//!
//! Both are read tolerantly: every field has a default, unknown fields are ignored, and a line that is
//! not JSON is counted and skipped, so a report can still be made from a truncated file, an older
//! version's alerts, or another tool's action log.

use crate::alert::{Band, Severity};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

/// The parts of an alert the report shows.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct ReportAlert {
    /// Alert id.
    pub id: String,
    /// Event time (end of the window).
    pub time: i64,
    /// Detector.
    pub detector: String,
    /// 0-100.
    pub severity: u8,
    /// Workload key.
    pub workload: String,
    /// Window start.
    pub window_start: i64,
    /// Window end.
    pub window_end: i64,
    /// Detector score.
    pub score: f64,
    /// Observed value.
    pub observed: f64,
    /// Expected value.
    pub expected: f64,
    /// Expected band.
    pub band: Band,
    /// Feature measured.
    pub feature: String,
    /// One sentence.
    pub description: String,
    /// MITRE technique ids.
    pub mitre_ids: Vec<String>,
    /// MITRE tactic.
    pub mitre_tactic: String,
}

impl ReportAlert {
    /// Severity band (from the 0-100 number, so files without `severity_label` work).
    pub fn band_label(&self) -> Severity {
        Severity::from_score(self.severity)
    }

    /// Window length in seconds (at least 1).
    pub fn window_len(&self) -> i64 {
        (self.window_end - self.window_start).max(1)
    }
}

/// One responder action line.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct ReportAction {
    /// `quarantine`, `release`, `skip`, ...
    pub action: String,
    /// Workload key.
    pub workload: String,
    /// Event time of the decision.
    pub time: Option<i64>,
    /// Planned end of a quarantine.
    pub expires_at: Option<i64>,
    /// Simulated only.
    pub dry_run: Option<bool>,
    /// Why.
    pub reason: String,
    /// `quarantined`, `escalated`, `released`, `expired`, ...
    pub decision: String,
}

/// A quarantine episode reconstructed from actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantine {
    /// Workload key.
    pub workload: String,
    /// Start (epoch s), when known.
    pub start: Option<i64>,
    /// Release time when a release was seen.
    pub released: Option<i64>,
    /// Planned expiry.
    pub expires_at: Option<i64>,
    /// Simulated only.
    pub dry_run: bool,
    /// Why it started.
    pub reason: String,
    /// Escalated (a repeat offender).
    pub escalated: bool,
}

impl Quarantine {
    /// When it ended (or will end): the release if seen, else the expiry.
    pub fn end(&self) -> Option<i64> {
        self.released.or(self.expires_at)
    }

    /// Duration in seconds when both ends are known.
    pub fn duration_s(&self) -> Option<i64> {
        Some(self.end()? - self.start?).filter(|d| *d >= 0)
    }
}

/// Lines read and lines skipped from one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// Lines parsed.
    pub parsed: usize,
    /// Non-empty lines that were not JSON objects of the expected shape.
    pub skipped: usize,
}

/// Reads JSON lines of `T`, skipping what does not parse.
pub fn read_json_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> anyhow::Result<(Vec<T>, ReadCounts)> {
    let f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut counts = ReadCounts::default();
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<T>(&line) {
            Ok(v) => {
                out.push(v);
                counts.parsed += 1;
            }
            Err(_) => counts.skipped += 1,
        }
    }
    Ok((out, counts))
}

/// Pairs quarantines with their releases, per workload in time order. A release with no open
/// quarantine is ignored; a second quarantine of a workload that is already quarantined (an
/// escalation or a re-send) extends the open episode rather than starting a new one.
pub fn quarantines(actions: &[ReportAction]) -> Vec<Quarantine> {
    let mut sorted: Vec<&ReportAction> = actions.iter().collect();
    sorted.sort_by_key(|a| a.time.unwrap_or(i64::MIN));
    let mut open: BTreeMap<&str, Quarantine> = BTreeMap::new();
    let mut done = Vec::new();
    for a in sorted {
        match a.action.as_str() {
            "quarantine" => {
                let escalated = a.decision == "escalated";
                match open.get_mut(a.workload.as_str()) {
                    Some(q) => {
                        q.expires_at = a.expires_at.or(q.expires_at);
                        q.escalated |= escalated;
                    }
                    None => {
                        open.insert(
                            &a.workload,
                            Quarantine {
                                workload: a.workload.clone(),
                                start: a.time,
                                released: None,
                                expires_at: a.expires_at,
                                dry_run: a.dry_run.unwrap_or(false),
                                reason: a.reason.clone(),
                                escalated,
                            },
                        );
                    }
                }
            }
            "release" => {
                if let Some(mut q) = open.remove(a.workload.as_str()) {
                    q.released = a.time.or(q.expires_at);
                    done.push(q);
                }
            }
            _ => {}
        }
    }
    done.extend(open.into_values());
    done.sort_by(|a, b| a.start.cmp(&b.start).then(a.workload.cmp(&b.workload)));
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_reading_and_pairing() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("actions.jsonl");
        std::fs::write(
            &path,
            concat!(
                "{\"action\":\"quarantine\",\"workload\":\"a/x-*\",\"time\":100,\"expires_at\":700}\n",
                "not json\n",
                "\n",
                "{\"action\":\"release\",\"workload\":\"a/x-*\",\"time\":400}\n",
                "{\"action\":\"quarantine\",\"workload\":\"b/y-*\",\"time\":200,\"dry_run\":true}\n",
                "{\"action\":\"release\",\"workload\":\"nobody\",\"time\":300}\n",
                "{\"action\":\"skip\",\"workload\":\"c\"}\n",
            ),
        )
        .expect("write");
        let (actions, counts) = read_json_lines::<ReportAction>(&path).expect("read");
        assert_eq!(
            counts,
            ReadCounts {
                parsed: 5,
                skipped: 1
            }
        );
        let q = quarantines(&actions);
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].workload, "a/x-*");
        assert_eq!(q[0].duration_s(), Some(300));
        assert_eq!(q[1].workload, "b/y-*");
        assert!(q[1].dry_run);
        assert_eq!(q[1].end(), None);
    }

    #[test]
    fn alerts_with_missing_fields_still_load() {
        let a: ReportAlert =
            serde_json::from_str("{\"severity\":95,\"workload\":\"w\"}").expect("parse");
        assert_eq!(a.band_label(), Severity::Critical);
        assert_eq!(a.window_len(), 1);
    }
}
