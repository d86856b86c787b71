//! Ground truth for evaluation: the per-line label file (`line,label,attack_type,src_workload,
//! dst_workload,start_time`), the episode file written by `flowwarden generate --episodes`
//! (`scenario,attacker,victim,start,end`), and episodes derived from labels when no episode file exists.
//!
//! Columns are found by header name, so extra or reordered columns are fine. A row that does not parse
//! is counted and skipped, never fatal: an evaluation should still say what it can.

use rustc_hash::FxHashMap;
use serde::Serialize;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Why a truth file cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The header lacks a column the evaluation needs.
    #[error("{path}: the header has no `{column}` column (expected {expected})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: &'static str,
        /// The full expected header.
        expected: &'static str,
    },
}

/// Header of the label file.
pub const LABEL_HEADER: &str = "line,label,attack_type,src_workload,dst_workload,start_time";
/// Header of the episode file.
pub const EPISODE_HEADER: &str = "scenario,attacker,victim,start,end";

/// Index of a string in [`LabelTable::names`].
pub type NameId = u32;

/// One label row, with its strings interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRow {
    /// 0-based input line.
    pub line: u64,
    /// Attack traffic.
    pub positive: bool,
    /// Attack type ([`LabelTable::NO_NAME`] when empty).
    pub attack_type: NameId,
    /// Source workload key.
    pub src: NameId,
    /// Destination workload key.
    pub dst: NameId,
    /// The record's `start_time`.
    pub start_time: i64,
}

/// The label file in memory. Strings are interned because a generated file has millions of rows
/// but only a few hundred distinct workloads.
#[derive(Debug, Default)]
pub struct LabelTable {
    /// Rows in file order.
    pub rows: Vec<LabelRow>,
    names: Vec<String>,
    ids: FxHashMap<String, NameId>,
    /// Rows that did not parse.
    pub bad_rows: u64,
}

impl LabelTable {
    /// Id of the empty string.
    pub const NO_NAME: NameId = 0;

    /// An empty table.
    pub fn new() -> Self {
        let mut t = LabelTable::default();
        t.intern("");
        t
    }

    /// The string behind an id.
    pub fn name(&self, id: NameId) -> &str {
        self.names
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Interns `s`.
    pub fn intern(&mut self, s: &str) -> NameId {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as NameId;
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }

    /// Reads a label file.
    pub fn read(path: &Path) -> Result<Self, TruthError> {
        let mut table = LabelTable::new();
        let mut columns: Option<[usize; 6]> = None;
        for_each_line(path, |line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let Some(c) = columns else {
                columns = Some(header_columns(
                    path,
                    &fields,
                    [
                        "line",
                        "label",
                        "attack_type",
                        "src_workload",
                        "dst_workload",
                        "start_time",
                    ],
                    LABEL_HEADER,
                )?);
                return Ok(());
            };
            match table.parse_row(&fields, &c) {
                Some(row) => table.rows.push(row),
                None => table.bad_rows += 1,
            }
            Ok(())
        })?;
        Ok(table)
    }

    fn parse_row(&mut self, fields: &[&str], c: &[usize; 6]) -> Option<LabelRow> {
        let get = |i: usize| fields.get(c[i]).copied();
        let line = get(0)?.parse().ok()?;
        let positive = match get(1)? {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => return None,
        };
        let start_time = get(5)?.parse().ok()?;
        let (attack_type, src, dst) = (get(2)?, get(3)?, get(4)?);
        Some(LabelRow {
            line,
            positive,
            attack_type: self.intern(attack_type),
            src: self.intern(src),
            dst: self.intern(dst),
            start_time,
        })
    }
}

/// One attack (or benign surprise) as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Episode {
    /// Scenario name (`port-scan`, `C&C`, ...); benign surprises are prefixed `benign:`.
    pub scenario: String,
    /// Attacker workload key.
    pub attacker: String,
    /// Victim workload key.
    pub victim: String,
    /// Epoch start.
    pub start: i64,
    /// Epoch end.
    pub end: i64,
}

impl Episode {
    /// A benign surprise the generator injected to provoke false alerts, not an attack.
    pub fn is_benign(&self) -> bool {
        self.scenario.starts_with("benign:")
    }

    /// Whether an alert on the victim counts as detecting it: denial of service shows on the
    /// victim, and an attacker outside the cluster has no workload of its own to alert on.
    pub fn victim_counts(&self) -> bool {
        let ddos_like = self
            .scenario
            .to_ascii_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| word == "ddos" || word == "dos");
        ddos_like || is_external(&self.attacker)
    }

    /// The workloads an alert may name to detect this episode.
    pub fn parties(&self) -> impl Iterator<Item = &str> {
        let victim =
            (self.victim_counts() && self.victim != self.attacker).then_some(self.victim.as_str());
        std::iter::once(self.attacker.as_str()).chain(victim)
    }
}

/// Whether a workload key is a network outside the cluster (`pub`, `pvt`, with or without an IP).
pub fn is_external(key: &str) -> bool {
    let kind = key.split(':').next().unwrap_or(key);
    kind == "pub" || kind == "pvt"
}

/// Reads an episode file; returns the episodes and the number of rows that did not parse.
pub fn read_episodes(path: &Path) -> Result<(Vec<Episode>, u64), TruthError> {
    let mut episodes = Vec::new();
    let mut bad = 0u64;
    let mut columns: Option<[usize; 5]> = None;
    for_each_line(path, |line| {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let Some(c) = columns else {
            columns = Some(header_columns(
                path,
                &fields,
                ["scenario", "attacker", "victim", "start", "end"],
                EPISODE_HEADER,
            )?);
            return Ok(());
        };
        let get = |i: usize| fields.get(c[i]).copied();
        let parsed = (|| {
            let start: i64 = get(3)?.parse().ok()?;
            let end: i64 = get(4)?.parse().ok()?;
            if end < start {
                return None;
            }
            Some(Episode {
                scenario: get(0)?.to_string(),
                attacker: get(1)?.to_string(),
                victim: get(2)?.to_string(),
                start,
                end,
            })
        })();
        match parsed {
            Some(e) => episodes.push(e),
            None => bad += 1,
        }
        Ok(())
    })?;
    Ok((episodes, bad))
}

/// Episodes from labels: maximal runs of positive records per (attack type, source workload) whose
/// consecutive start times are less than `max_gap_s` apart. The attacker is the source workload, the
/// victim the run's most frequent destination, and the episode spans the run's first to last
/// `start_time`.
pub fn derive_episodes(labels: &LabelTable, max_gap_s: i64) -> Vec<Episode> {
    let mut by_actor: FxHashMap<(NameId, NameId), Vec<&LabelRow>> = FxHashMap::default();
    for row in labels.rows.iter().filter(|r| r.positive) {
        by_actor
            .entry((row.attack_type, row.src))
            .or_default()
            .push(row);
    }
    let mut episodes = Vec::new();
    for ((attack_type, src), mut rows) in by_actor {
        rows.sort_by_key(|r| (r.start_time, r.line));
        let mut run_start = 0;
        for i in 1..=rows.len() {
            let run_ends =
                i == rows.len() || rows[i].start_time - rows[i - 1].start_time >= max_gap_s;
            if !run_ends {
                continue;
            }
            let run = &rows[run_start..i];
            let scenario = match labels.name(attack_type) {
                "" => "(unknown)",
                s => s,
            };
            episodes.push(Episode {
                scenario: scenario.to_string(),
                attacker: labels.name(src).to_string(),
                victim: labels
                    .name(most_frequent(run.iter().map(|r| r.dst)))
                    .to_string(),
                start: run[0].start_time,
                end: run[run.len() - 1].start_time,
            });
            run_start = i;
        }
    }
    episodes.sort_by(|a, b| {
        (a.start, &a.scenario, &a.attacker).cmp(&(b.start, &b.scenario, &b.attacker))
    });
    episodes
}

/// The most frequent id (the smallest among equals, so the result does not depend on hash order).
fn most_frequent(ids: impl Iterator<Item = NameId>) -> NameId {
    let mut counts: FxHashMap<NameId, u64> = FxHashMap::default();
    for id in ids {
        *counts.entry(id).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(id, _)| id)
        .unwrap_or(LabelTable::NO_NAME)
}

fn header_columns<const N: usize>(
    path: &Path,
    header: &[&str],
    names: [&'static str; N],
    expected: &'static str,
) -> Result<[usize; N], TruthError> {
    let mut out = [0; N];
    for (slot, name) in out.iter_mut().zip(names) {
        *slot =
            header
                .iter()
                .position(|h| *h == name)
                .ok_or_else(|| TruthError::MissingColumn {
                    path: path.to_path_buf(),
                    column: name,
                    expected,
                })?;
    }
    Ok(out)
}

/// Calls `f` on every non-empty line (without its line ending).
fn for_each_line(
    path: &Path,
    mut f: impl FnMut(&str) -> Result<(), TruthError>,
) -> Result<(), TruthError> {
    let io = |source| TruthError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::new(file);
    let mut buf = String::new();
    loop {
        buf.clear();
        if reader.read_line(&mut buf).map_err(io)? == 0 {
            return Ok(());
        }
        let line = buf.trim_end_matches(['\n', '\r']);
        if !line.is_empty() {
            f(line)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn reads_labels_and_counts_bad_rows() {
        let f = file(
            "line,label,attack_type,src_workload,dst_workload,start_time\n\
             0,0,,ns/a-*,pub:1.2.3.4,100\n\
             1,1,C&C,ns/b-*,pub:5.6.7.8,115\n\
             2,maybe,C&C,ns/b-*,pub:5.6.7.8,130\n\
             3,1,C&C\n",
        );
        let t = LabelTable::read(f.path()).expect("labels");
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.bad_rows, 2);
        assert!(t.rows[1].positive);
        assert_eq!(t.name(t.rows[1].attack_type), "C&C");
        assert_eq!(t.name(t.rows[0].attack_type), "");
        assert_eq!(t.name(t.rows[1].src), "ns/b-*");
    }

    #[test]
    fn missing_column_is_an_error_naming_it() {
        let f = file("line,label,src_workload\n0,1,a\n");
        let e = LabelTable::read(f.path()).expect_err("no attack_type column");
        assert!(e.to_string().contains("attack_type"), "{e}");
    }

    #[test]
    fn reads_episodes() {
        let f = file(
            "scenario,attacker,victim,start,end\n\
             port-scan,shop/cart-*,shop/db-*,1000,1600\n\
             ddos,pub,shop/web-*,2000,2300\n\
             broken,x,y,9,1\n",
        );
        let (eps, bad) = read_episodes(f.path()).expect("episodes");
        assert_eq!(bad, 1);
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].parties().collect::<Vec<_>>(), ["shop/cart-*"]);
        assert_eq!(eps[1].parties().collect::<Vec<_>>(), ["pub", "shop/web-*"]);
    }

    #[test]
    fn ddos_counts_the_victim() {
        let e = Episode {
            scenario: "DDoS".into(),
            attacker: "lan/host1-*".into(),
            victim: "pub:1.1.1.1".into(),
            start: 0,
            end: 1,
        };
        assert!(e.victim_counts());
        let e = Episode {
            scenario: "C&C".into(),
            ..e
        };
        assert!(!e.victim_counts());
    }

    #[test]
    fn derives_runs_split_by_gaps() {
        let mut t = LabelTable::new();
        let (cc, a, b, p, q) = (
            t.intern("C&C"),
            t.intern("ns/a-*"),
            t.intern("ns/b-*"),
            t.intern("pub:1"),
            t.intern("pub:2"),
        );
        let row = |line, positive, attack_type, src, dst, start_time| LabelRow {
            line,
            positive,
            attack_type,
            src,
            dst,
            start_time,
        };
        t.rows = vec![
            row(0, true, cc, a, p, 0),
            row(1, true, cc, a, q, 1000),
            row(2, true, cc, a, q, 2000),
            row(3, false, LabelTable::NO_NAME, b, p, 2500),
            // 4000 s later: a new episode.
            row(4, true, cc, a, p, 6000),
            row(5, true, cc, b, p, 6000),
        ];
        let eps = derive_episodes(&t, 3600);
        assert_eq!(eps.len(), 3);
        assert_eq!(
            (eps[0].attacker.as_str(), eps[0].victim.as_str()),
            ("ns/a-*", "pub:2")
        );
        assert_eq!((eps[0].start, eps[0].end), (0, 2000));
        assert_eq!((eps[1].start, eps[1].end), (6000, 6000));
        assert_eq!(eps[2].attacker, "ns/b-*");
    }
}
