//! Ranking metrics of scores against binary labels: ROC-AUC (Mann-Whitney with average ranks) and
//! PR-AUC as average precision, both with tied scores handled as groups, so a detector that gives most
//! records the same score is not credited for the order they happen to be in.

/// One scored, labelled sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Anomaly score (higher = more anomalous); must not be NaN.
    pub score: f32,
    /// Whether the sample is a positive (attack).
    pub positive: bool,
}

/// ROC-AUC: the probability that a random positive scores above a random negative, ties counting one
/// half. `None` when there are no positives or no negatives.
///
/// Computed from the rank sum of the positives, with tied scores given their average rank.
pub fn roc_auc(samples: &[Scored]) -> Option<f64> {
    let mut sorted: Vec<Scored> = samples.to_vec();
    sorted.sort_by(|a, b| a.score.total_cmp(&b.score));
    let positives = sorted.iter().filter(|s| s.positive).count() as f64;
    let negatives = sorted.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    let mut positive_rank_sum = 0.0;
    for (first, group) in tie_groups(&sorted) {
        // Ranks are 1-based: the group holds ranks first+1 ..= first+len.
        let len = group.len() as f64;
        let average_rank = first as f64 + (len + 1.0) / 2.0;
        let group_positives = group.iter().filter(|s| s.positive).count() as f64;
        positive_rank_sum += average_rank * group_positives;
    }
    let u = positive_rank_sum - positives * (positives + 1.0) / 2.0;
    Some(u / (positives * negatives))
}

/// Average precision: the sum over score thresholds (highest first, one per tie group) of
/// (recall gained) × (precision at that threshold). `None` when there are no positives.
///
/// All records tied gives the positive share; a perfect ranking gives 1.
pub fn average_precision(samples: &[Scored]) -> Option<f64> {
    let mut sorted: Vec<Scored> = samples.to_vec();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
    let positives = sorted.iter().filter(|s| s.positive).count() as f64;
    if positives == 0.0 {
        return None;
    }
    let (mut tp, mut fp, mut ap) = (0.0, 0.0, 0.0);
    for (_, group) in tie_groups(&sorted) {
        let group_tp = group.iter().filter(|s| s.positive).count() as f64;
        tp += group_tp;
        fp += group.len() as f64 - group_tp;
        if group_tp > 0.0 {
            ap += (group_tp / positives) * (tp / (tp + fp));
        }
    }
    Some(ap)
}

/// Runs of equal scores in a sorted slice, each with the index of its first element.
fn tie_groups(sorted: &[Scored]) -> impl Iterator<Item = (usize, &[Scored])> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= sorted.len() {
            return None;
        }
        let score = sorted[start].score;
        let len = sorted[start..]
            .iter()
            .take_while(|s| s.score.total_cmp(&score).is_eq())
            .count();
        let group = (start, &sorted[start..start + len]);
        start += len;
        Some(group)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(pairs: &[(f32, bool)]) -> Vec<Scored> {
        pairs
            .iter()
            .map(|&(score, positive)| Scored { score, positive })
            .collect()
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn perfect_ranking() {
        let s = samples(&[(0.1, false), (0.2, false), (0.8, true), (0.9, true)]);
        assert!(close(roc_auc(&s), 1.0));
        assert!(close(average_precision(&s), 1.0));
    }

    #[test]
    fn reversed_ranking() {
        let s = samples(&[(0.9, false), (0.8, false), (0.2, true), (0.1, true)]);
        assert!(close(roc_auc(&s), 0.0));
        // Positives come at ranks 3 and 4: precision 1/3 then 2/4.
        assert!(close(average_precision(&s), 0.5 * (1.0 / 3.0) + 0.5 * 0.5));
    }

    #[test]
    fn all_ties_are_chance() {
        let s = samples(&[
            (0.0, false),
            (0.0, true),
            (0.0, false),
            (0.0, true),
            (0.0, false),
        ]);
        assert!(close(roc_auc(&s), 0.5));
        // One threshold: everything flagged, precision = prevalence.
        assert!(close(average_precision(&s), 2.0 / 5.0));
    }

    #[test]
    fn four_point_example() {
        // scikit-learn's documented example: y = [0, 0, 1, 1], scores = [0.1, 0.4, 0.35, 0.8].
        // Pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 → 3/4.
        // Descending: 0.8 (pos) p=1, 0.4 (neg), 0.35 (pos) p=2/3 → AP = 0.5*1 + 0.5*2/3.
        let s = samples(&[(0.1, false), (0.4, false), (0.35, true), (0.8, true)]);
        assert!(close(roc_auc(&s), 0.75));
        assert!(close(average_precision(&s), 0.5 + 1.0 / 3.0));
    }

    #[test]
    fn partial_ties_count_half() {
        // pos {1, 0}, neg {0, 0}: pairs 1>0 twice (2), 0=0 twice (2 × 0.5) → 3/4.
        let s = samples(&[(1.0, true), (0.0, true), (0.0, false), (0.0, false)]);
        assert!(close(roc_auc(&s), 0.75));
        // Threshold 1: tp 1, fp 0 → +0.5 × 1; threshold 0: tp 2, fp 2 → +0.5 × 0.5.
        assert!(close(average_precision(&s), 0.75));
    }

    #[test]
    fn undefined_without_both_classes() {
        let only_pos = samples(&[(0.3, true), (0.5, true)]);
        assert_eq!(roc_auc(&only_pos), None);
        assert!(close(average_precision(&only_pos), 1.0));
        let only_neg = samples(&[(0.3, false)]);
        assert_eq!(roc_auc(&only_neg), None);
        assert_eq!(average_precision(&only_neg), None);
        assert_eq!(roc_auc(&[]), None);
    }
}
