//! Detection evaluation (`flowwarden eval`): per-record scores and alerts of one pipeline run judged
//! against ground truth (labels, episodes).
//!
//! It owns the measures — ROC-AUC and PR-AUC of scores ([`metrics`]), episode detection and time to
//! detect, false alerts per workload-day, infected hosts named in alerts — and their report
//! ([`report`]). Reading the truth files is [`truth`]. It must not run the pipeline itself (the CLI
//! does, through `cli::replay::run_pipeline`) and nothing in the detection path may read labels.

pub mod metrics;
pub mod report;
pub mod truth;

use crate::alert::Alert;
use crate::pipeline::RunStats;
use metrics::{average_precision, roc_auc, Scored};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
pub use truth::{derive_episodes, read_episodes, Episode, LabelTable, TruthError};

/// Gap that ends an episode derived from labels.
pub const DERIVED_EPISODE_GAP_S: i64 = 3600;
/// An alert detects an episode up to this many windows after the episode's end.
pub const DETECTION_GRACE_WINDOWS: i64 = 2;
/// How many (detector, workload) pairs the false-alert table lists.
pub const TOP_FALSE_PAIRS: usize = 10;
/// How many unscored line numbers the report lists.
const UNSCORED_EXAMPLES: usize = 10;

/// Where the episodes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeSource {
    /// An `--episodes` file.
    File,
    /// Derived from labels ([`derive_episodes`]).
    Labels,
}

/// Everything one evaluation needs.
pub struct EvalInput<'a> {
    /// Labels.
    pub labels: &'a LabelTable,
    /// One score per input line (NaN: did not decode).
    pub scores: &'a [f32],
    /// Every alert of the run.
    pub alerts: &'a [Alert],
    /// Ground-truth episodes.
    pub episodes: Vec<Episode>,
    /// Where they came from.
    pub episode_source: EpisodeSource,
    /// Window length of the run (seconds).
    pub window_length_s: i64,
    /// Distinct in-cluster workloads the pipeline saw (the false-alert denominator).
    pub workloads_seen: u64,
    /// Pipeline counters.
    pub pipeline: RunStats,
}

/// The whole evaluation (the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Pipeline counters of the run.
    pub pipeline: RunStats,
    /// Window length used (seconds).
    pub window_length_s: i64,
    /// How labels and scores lined up.
    pub records: RecordCounts,
    /// Score quality, overall and per attack type.
    pub scores: ScoreQuality,
    /// Episode detection.
    pub episodes: EpisodeSummary,
    /// Alerts that match no episode.
    pub false_alerts: FalseAlerts,
    /// Which hosts alerts name.
    pub hosts: HostNaming,
}

/// How labels and scores lined up.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordCounts {
    /// Input lines (scores).
    pub input_lines: u64,
    /// Label rows.
    pub label_rows: u64,
    /// Label rows that did not parse.
    pub bad_label_rows: u64,
    /// Lines with a label and a score (the AUC population).
    pub evaluated: u64,
    /// Labelled lines with an empty score (did not decode), excluded.
    pub unscored: u64,
    /// The first of them (0-based line numbers).
    pub unscored_lines: Vec<u64>,
    /// Label rows naming a line past the input's end.
    pub labels_past_input: u64,
    /// Input lines without a label row.
    pub unlabelled_lines: u64,
}

/// ROC-AUC and PR-AUC of one population.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AucRow {
    /// `all` or the attack type.
    pub attack_type: String,
    /// Attack records.
    pub positives: u64,
    /// Benign records.
    pub negatives: u64,
    /// ROC-AUC (null without both classes).
    pub roc_auc: Option<f64>,
    /// Average precision (null without positives).
    pub pr_auc: Option<f64>,
    /// Positives with a score above zero (any finding implicated them).
    pub positives_scored: u64,
    /// Negatives with a score above zero.
    pub negatives_scored: u64,
}

/// Score quality.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScoreQuality {
    /// All attack records against all benign ones.
    pub overall: AucRow,
    /// Each attack type's records against all benign ones.
    pub by_attack_type: Vec<AucRow>,
}

/// One episode's outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EpisodeResult {
    /// The episode.
    #[serde(flatten)]
    pub episode: Episode,
    /// Some alert named one of its parties in time.
    pub detected: bool,
    /// Detectors of those alerts.
    pub detectors: Vec<String>,
    /// How many alerts matched.
    pub alerts: u64,
    /// First matching alert's `time` - start (seconds).
    pub time_to_detect_s: Option<i64>,
}

/// Detection per scenario.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScenarioSummary {
    /// Scenario.
    pub scenario: String,
    /// Episodes.
    pub episodes: u64,
    /// Detected.
    pub detected: u64,
    /// Median time to detect of the detected ones.
    pub median_time_to_detect_s: Option<i64>,
}

/// Episode detection.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EpisodeSummary {
    /// `file` or `labels`.
    pub source: EpisodeSource,
    /// Attack episodes (benign surprises excluded).
    pub total: u64,
    /// Detected attack episodes.
    pub detected: u64,
    /// detected / total.
    pub detection_rate: Option<f64>,
    /// Median time to detect over detected episodes.
    pub median_time_to_detect_s: Option<i64>,
    /// Per scenario.
    pub by_scenario: Vec<ScenarioSummary>,
    /// Every episode, benign surprises included (never `detected`: alerts on them are false).
    pub list: Vec<EpisodeResult>,
}

/// One (detector, workload) pair of false alerts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FalsePair {
    /// Detector.
    pub detector: String,
    /// Workload.
    pub workload: String,
    /// False alerts.
    pub alerts: u64,
}

/// Alerts that match no attack episode.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FalseAlerts {
    /// All alerts.
    pub alerts: u64,
    /// Alerts matching an attack episode.
    pub true_alerts: u64,
    /// The rest (alerts on benign surprises included).
    pub false_alerts: u64,
    /// Distinct in-cluster workloads seen.
    pub workloads: u64,
    /// Hours of event time holding at least one record.
    pub covered_hours: u64,
    /// covered_hours / 24.
    pub covered_days: f64,
    /// false_alerts / (workloads × covered_days).
    pub per_workload_day: Option<f64>,
    /// False alerts per detector.
    pub by_detector: BTreeMap<String, u64>,
    /// The most frequent (detector, workload) pairs.
    pub top_pairs: Vec<FalsePair>,
}

/// A workload named in alerts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostResult {
    /// Workload key.
    pub workload: String,
    /// Its attack records (0 for benign-only workloads).
    pub attack_records: u64,
    /// Whether some alert names it.
    pub named: bool,
    /// Alerts naming it.
    pub alerts: u64,
    /// Their detectors.
    pub detectors: Vec<String>,
}

/// Which hosts alerts name.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostNaming {
    /// Source workloads of attack records.
    pub infected_total: u64,
    /// Those some alert names.
    pub infected_named: u64,
    /// Each infected host.
    pub infected: Vec<HostResult>,
    /// Workloads named in alerts that never sourced an attack record.
    pub benign_named: Vec<HostResult>,
}

/// Runs the evaluation.
pub fn evaluate(input: EvalInput<'_>) -> EvalReport {
    let window = input.window_length_s.max(1);
    let (records, populations) = line_up(input.labels, input.scores);
    let scores = score_quality(input.labels, &populations);
    let (episodes, alert_matches) =
        judge_episodes(&input.episodes, input.episode_source, input.alerts, window);
    let false_alerts = count_false_alerts(
        input.labels,
        input.alerts,
        &alert_matches,
        input.workloads_seen,
    );
    let hosts = name_hosts(input.labels, input.alerts);
    EvalReport {
        pipeline: input.pipeline,
        window_length_s: input.window_length_s,
        records,
        scores,
        episodes,
        false_alerts,
        hosts,
    }
}

/// The scored, labelled records: benign ones and attack ones per attack type.
struct Populations {
    negatives: Vec<Scored>,
    positives: FxHashMap<truth::NameId, Vec<Scored>>,
}

fn line_up(labels: &LabelTable, scores: &[f32]) -> (RecordCounts, Populations) {
    let mut pop = Populations {
        negatives: Vec::new(),
        positives: FxHashMap::default(),
    };
    let mut counts = RecordCounts {
        input_lines: scores.len() as u64,
        label_rows: labels.rows.len() as u64,
        bad_label_rows: labels.bad_rows,
        evaluated: 0,
        unscored: 0,
        unscored_lines: Vec::new(),
        labels_past_input: 0,
        unlabelled_lines: 0,
    };
    let mut labelled = vec![false; scores.len()];
    for row in &labels.rows {
        let Some(&score) = usize::try_from(row.line).ok().and_then(|i| scores.get(i)) else {
            counts.labels_past_input += 1;
            continue;
        };
        labelled[row.line as usize] = true;
        if score.is_nan() {
            counts.unscored += 1;
            if counts.unscored_lines.len() < UNSCORED_EXAMPLES {
                counts.unscored_lines.push(row.line);
            }
            continue;
        }
        counts.evaluated += 1;
        let s = Scored {
            score,
            positive: row.positive,
        };
        if row.positive {
            pop.positives.entry(row.attack_type).or_default().push(s);
        } else {
            pop.negatives.push(s);
        }
    }
    counts.unlabelled_lines = labelled.iter().filter(|l| !**l).count() as u64;
    (counts, pop)
}

fn auc_row(attack_type: &str, positives: &[Scored], negatives: &[Scored]) -> AucRow {
    let mut all = Vec::with_capacity(positives.len() + negatives.len());
    all.extend_from_slice(positives);
    all.extend_from_slice(negatives);
    AucRow {
        attack_type: attack_type.to_string(),
        positives: positives.len() as u64,
        negatives: negatives.len() as u64,
        roc_auc: roc_auc(&all),
        pr_auc: average_precision(&all),
        positives_scored: positives.iter().filter(|s| s.score > 0.0).count() as u64,
        negatives_scored: negatives.iter().filter(|s| s.score > 0.0).count() as u64,
    }
}

fn score_quality(labels: &LabelTable, pop: &Populations) -> ScoreQuality {
    let all_positives: Vec<Scored> = pop.positives.values().flatten().copied().collect();
    let mut by_attack_type: Vec<AucRow> = pop
        .positives
        .iter()
        .map(|(&t, positives)| {
            let name = match labels.name(t) {
                "" => "(unknown)",
                s => s,
            };
            auc_row(name, positives, &pop.negatives)
        })
        .collect();
    by_attack_type.sort_by(|a, b| {
        b.positives
            .cmp(&a.positives)
            .then(a.attack_type.cmp(&b.attack_type))
    });
    ScoreQuality {
        overall: auc_row("all", &all_positives, &pop.negatives),
        by_attack_type,
    }
}

/// Judges every episode; also returns, per alert, whether it matched an attack episode.
fn judge_episodes(
    episodes: &[Episode],
    source: EpisodeSource,
    alerts: &[Alert],
    window: i64,
) -> (EpisodeSummary, Vec<bool>) {
    let grace = DETECTION_GRACE_WINDOWS * window;
    let mut by_party: FxHashMap<&str, Vec<usize>> = FxHashMap::default();
    for (i, e) in episodes.iter().enumerate() {
        for p in e.parties() {
            by_party.entry(p).or_default().push(i);
        }
    }
    let mut matched: Vec<Vec<&Alert>> = vec![Vec::new(); episodes.len()];
    let mut alert_is_true = vec![false; alerts.len()];
    for (ai, alert) in alerts.iter().enumerate() {
        for &ei in by_party.get(alert.workload.as_str()).into_iter().flatten() {
            let e = &episodes[ei];
            if alert.time >= e.start && alert.time <= e.end.saturating_add(grace) {
                matched[ei].push(alert);
                alert_is_true[ai] |= !e.is_benign();
            }
        }
    }
    let list: Vec<EpisodeResult> = episodes
        .iter()
        .zip(&matched)
        .map(|(e, hits)| {
            let detected = !e.is_benign() && !hits.is_empty();
            let detectors: BTreeSet<String> = hits.iter().map(|a| a.detector.clone()).collect();
            EpisodeResult {
                episode: e.clone(),
                detected,
                detectors: detectors.into_iter().collect(),
                alerts: hits.len() as u64,
                time_to_detect_s: hits
                    .iter()
                    .map(|a| a.time)
                    .min()
                    .filter(|_| detected)
                    .map(|t| t - e.start),
            }
        })
        .collect();
    let attacks: Vec<&EpisodeResult> = list.iter().filter(|r| !r.episode.is_benign()).collect();
    let mut scenarios: BTreeMap<&str, Vec<&EpisodeResult>> = BTreeMap::new();
    for r in &attacks {
        scenarios
            .entry(r.episode.scenario.as_str())
            .or_default()
            .push(r);
    }
    let detected = attacks.iter().filter(|r| r.detected).count() as u64;
    let summary = EpisodeSummary {
        source,
        total: attacks.len() as u64,
        detected,
        detection_rate: (!attacks.is_empty()).then(|| detected as f64 / attacks.len() as f64),
        median_time_to_detect_s: median(attacks.iter().filter_map(|r| r.time_to_detect_s)),
        by_scenario: scenarios
            .into_iter()
            .map(|(scenario, rs)| ScenarioSummary {
                scenario: scenario.to_string(),
                episodes: rs.len() as u64,
                detected: rs.iter().filter(|r| r.detected).count() as u64,
                median_time_to_detect_s: median(rs.iter().filter_map(|r| r.time_to_detect_s)),
            })
            .collect(),
        list,
    };
    (summary, alert_is_true)
}

fn median(values: impl Iterator<Item = i64>) -> Option<i64> {
    let mut v: Vec<i64> = values.collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

fn count_false_alerts(
    labels: &LabelTable,
    alerts: &[Alert],
    alert_is_true: &[bool],
    workloads: u64,
) -> FalseAlerts {
    let hours: FxHashSet<i64> = labels
        .rows
        .iter()
        .map(|r| r.start_time.div_euclid(3600))
        .collect();
    let covered_hours = hours.len() as u64;
    let covered_days = covered_hours as f64 / 24.0;
    let mut by_detector: BTreeMap<String, u64> = BTreeMap::new();
    let mut pairs: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut false_alerts = 0u64;
    for (alert, &is_true) in alerts.iter().zip(alert_is_true) {
        if is_true {
            continue;
        }
        false_alerts += 1;
        *by_detector.entry(alert.detector.clone()).or_default() += 1;
        *pairs.entry((&alert.detector, &alert.workload)).or_default() += 1;
    }
    let mut top_pairs: Vec<FalsePair> = pairs
        .into_iter()
        .map(|((detector, workload), alerts)| FalsePair {
            detector: detector.to_string(),
            workload: workload.to_string(),
            alerts,
        })
        .collect();
    // Stable sort keeps the (detector, workload) order among equal counts.
    top_pairs.sort_by_key(|p| std::cmp::Reverse(p.alerts));
    top_pairs.truncate(TOP_FALSE_PAIRS);
    let workload_days = workloads as f64 * covered_days;
    FalseAlerts {
        alerts: alerts.len() as u64,
        true_alerts: alerts.len() as u64 - false_alerts,
        false_alerts,
        workloads,
        covered_hours,
        covered_days,
        per_workload_day: (workload_days > 0.0).then(|| false_alerts as f64 / workload_days),
        by_detector,
        top_pairs,
    }
}

fn name_hosts(labels: &LabelTable, alerts: &[Alert]) -> HostNaming {
    let mut attack_records: BTreeMap<&str, u64> = BTreeMap::new();
    for row in labels.rows.iter().filter(|r| r.positive) {
        *attack_records.entry(labels.name(row.src)).or_default() += 1;
    }
    let mut named: BTreeMap<&str, (u64, BTreeSet<&str>)> = BTreeMap::new();
    for a in alerts {
        let entry = named.entry(a.workload.as_str()).or_default();
        entry.0 += 1;
        entry.1.insert(a.detector.as_str());
    }
    let result = |workload: &str, attack_records: u64| {
        let (alerts, detectors) = named.get(workload).cloned().unwrap_or_default();
        HostResult {
            workload: workload.to_string(),
            attack_records,
            named: alerts > 0,
            alerts,
            detectors: detectors.into_iter().map(str::to_string).collect(),
        }
    };
    let infected: Vec<HostResult> = attack_records.iter().map(|(w, n)| result(w, *n)).collect();
    let benign_named: Vec<HostResult> = named
        .keys()
        .filter(|w| !attack_records.contains_key(*w))
        .map(|w| result(w, 0))
        .collect();
    HostNaming {
        infected_total: infected.len() as u64,
        infected_named: infected.iter().filter(|h| h.named).count() as u64,
        infected,
        benign_named,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Band, Severity};
    use truth::LabelRow;

    fn alert(detector: &str, workload: &str, time: i64) -> Alert {
        Alert {
            id: crate::alert::alert_id(detector, workload, time - 15),
            time,
            kind: crate::alert::ALERT_TYPE.into(),
            origin: detector.into(),
            severity: 70,
            severity_label: Severity::High,
            description: String::new(),
            source_ip: None,
            source_port: None,
            source_name: "-".into(),
            source_name_aggr: String::new(),
            source_namespace: "-".into(),
            dest_ip: None,
            dest_port: None,
            dest_name: "-".into(),
            dest_name_aggr: String::new(),
            dest_namespace: "-".into(),
            host: None,
            attack_vector: "Network".into(),
            mitre_tactic: String::new(),
            mitre_ids: Vec::new(),
            mitigations: Vec::new(),
            record: serde_json::Value::Null,
            dismissed: false,
            detector: detector.into(),
            workload: workload.into(),
            workload_labels: Vec::new(),
            window_start: time - 15,
            window_end: time,
            score: 2.0,
            observed: 0.0,
            expected: 0.0,
            band: Band::default(),
            feature: String::new(),
            soc2: Vec::new(),
            provisional: false,
        }
    }

    /// Two hours of records: `ns/scanner-*` attacks at lines 2 and 3, `ns/web-*` is benign.
    fn labels() -> LabelTable {
        let mut t = LabelTable::new();
        let scan = t.intern("port-scan");
        let (scanner, web, db) = (
            t.intern("ns/scanner-*"),
            t.intern("ns/web-*"),
            t.intern("ns/db-*"),
        );
        let row = |line, positive: bool, src, start_time| LabelRow {
            line,
            positive,
            attack_type: if positive { scan } else { LabelTable::NO_NAME },
            src,
            dst: db,
            start_time,
        };
        t.rows = vec![
            row(0, false, web, 0),
            row(1, false, scanner, 0),
            row(2, true, scanner, 30),
            row(3, true, scanner, 45),
            row(4, false, web, 3700),
            row(5, false, web, 3715),
        ];
        t
    }

    fn run(scores: &[f32], alerts: &[Alert], episodes: Option<Vec<Episode>>) -> EvalReport {
        let labels = labels();
        let (episodes, episode_source) = match episodes {
            Some(e) => (e, EpisodeSource::File),
            None => (
                derive_episodes(&labels, DERIVED_EPISODE_GAP_S),
                EpisodeSource::Labels,
            ),
        };
        evaluate(EvalInput {
            labels: &labels,
            scores,
            alerts,
            episodes,
            episode_source,
            window_length_s: 15,
            workloads_seen: 3,
            pipeline: RunStats::default(),
        })
    }

    #[test]
    fn scores_line_up_with_labels_and_skip_undecoded_lines() {
        let r = run(&[0.0, 0.1, 3.0, f32::NAN, 0.0, 0.0, 0.0], &[], None);
        assert_eq!(r.records.evaluated, 5);
        assert_eq!(r.records.unscored, 1);
        assert_eq!(r.records.unscored_lines, vec![3]);
        assert_eq!(r.records.unlabelled_lines, 1);
        assert_eq!(r.scores.overall.positives, 1);
        assert_eq!(r.scores.overall.negatives, 4);
        assert_eq!(r.scores.overall.roc_auc, Some(1.0));
        assert_eq!(r.scores.by_attack_type[0].attack_type, "port-scan");
    }

    #[test]
    fn short_score_file_counts_labels_past_input() {
        let r = run(&[0.0, 0.0], &[], None);
        assert_eq!(r.records.labels_past_input, 4);
        assert_eq!(r.scores.overall.roc_auc, None);
    }

    #[test]
    fn episode_detected_with_time_to_detect_and_false_alerts_counted() {
        let alerts = [
            alert("port_scan", "ns/scanner-*", 60),
            alert("ip_sweep", "ns/scanner-*", 75),
            // After end + 2 windows (45 + 30): not this episode.
            alert("port_scan", "ns/scanner-*", 90),
            alert("volume", "ns/web-*", 3720),
            alert("volume", "ns/web-*", 3735),
        ];
        let r = run(&[0.0; 6], &alerts, None);
        assert_eq!(r.episodes.source, EpisodeSource::Labels);
        assert_eq!(r.episodes.total, 1);
        assert_eq!(r.episodes.detected, 1);
        let e = &r.episodes.list[0];
        assert_eq!(e.time_to_detect_s, Some(30));
        assert_eq!(e.detectors, ["ip_sweep", "port_scan"]);
        assert_eq!(r.false_alerts.false_alerts, 3);
        assert_eq!(r.false_alerts.true_alerts, 2);
        assert_eq!(r.false_alerts.covered_hours, 2);
        let expected = 3.0 / (3.0 * 2.0 / 24.0);
        assert!(r
            .false_alerts
            .per_workload_day
            .is_some_and(|v| (v - expected).abs() < 1e-9));
        assert_eq!(r.false_alerts.top_pairs[0].workload, "ns/web-*");
        assert_eq!(r.false_alerts.top_pairs[0].alerts, 2);
        assert_eq!(r.hosts.infected_total, 1);
        assert_eq!(r.hosts.infected_named, 1);
        assert_eq!(r.hosts.benign_named.len(), 1);
        assert_eq!(r.hosts.benign_named[0].workload, "ns/web-*");
    }

    #[test]
    fn ddos_is_detected_on_the_victim_and_benign_episodes_never_count() {
        let episodes = vec![
            Episode {
                scenario: "ddos".into(),
                attacker: "pub".into(),
                victim: "ns/web-*".into(),
                start: 3700,
                end: 3800,
            },
            Episode {
                scenario: "benign:marketing-spike".into(),
                attacker: "ns/db-*".into(),
                victim: "pub".into(),
                start: 0,
                end: 100,
            },
        ];
        let alerts = [
            alert("volume", "ns/web-*", 3715),
            alert("volume", "ns/db-*", 15),
        ];
        let r = run(&[0.0; 6], &alerts, Some(episodes));
        assert_eq!(r.episodes.total, 1);
        assert_eq!(r.episodes.detected, 1);
        assert_eq!(r.episodes.list[0].time_to_detect_s, Some(15));
        assert!(!r.episodes.list[1].detected);
        assert_eq!(r.false_alerts.false_alerts, 1);
        assert_eq!(r.false_alerts.by_detector.get("volume"), Some(&1));
    }

    #[test]
    fn undetected_episode() {
        let r = run(&[0.0; 6], &[alert("port_scan", "ns/web-*", 60)], None);
        assert_eq!(r.episodes.detected, 0);
        assert_eq!(r.episodes.detection_rate, Some(0.0));
        assert_eq!(r.episodes.list[0].time_to_detect_s, None);
        assert_eq!(r.hosts.infected_named, 0);
    }
}
