//! [`DailyPeaks`]: the highest value each feature reached at each hour of the (UTC) day on recent
//! days, so a workload's recurring peak — the nightly backup, the 02:00 batch, the morning report —
//! is recognised the next day instead of paging every night.
//!
//! Decayed EWMA statistics cannot do this: with a memory of a few hours they have forgotten
//! yesterday's 03:00 backup by the next night. A peak profile is kept only for workloads that had a
//! peak (a window at least [`PEAK_FACTOR`] times a feature's mean), so steady workloads pay nothing.
//!
//! Values are log-quantised to one byte (a quarter octave per step): 24 × 11 bytes per profile.
//! Peaks fade by [`FADE_PER_DAY`] steps per day, so a job that stops running is forgotten within
//! days. A window judged anomalous is recorded one octave lower ([`ANOMALOUS_DISCOUNT`]): its repeat
//! at the same hour is then tolerated only up to about half the volume detectors' ratio, so an
//! attacker cannot make a large volume "usual" by sending it once (invariant 4).

use crate::baseline::{Feature, NUM_FEATURES};
use serde::{Deserialize, Serialize};

/// A window at least this many times a feature's mean starts a workload's profile.
pub const PEAK_FACTOR: f64 = 3.0;
/// Quantisation steps per octave.
const STEPS_PER_OCTAVE: f64 = 4.0;
/// Steps a peak fades per day without a new one.
pub const FADE_PER_DAY: u8 = 1;
/// Steps an anomalous window's value is lowered by before it is recorded.
pub const ANOMALOUS_DISCOUNT: u8 = 4;

/// Per feature, per hour of day, the decayed peak (log-quantised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyPeaks {
    /// Day number (epoch days) the fading was last applied.
    pub day: i64,
    /// `peaks[feature][hour]`.
    pub peaks: [[u8; 24]; NUM_FEATURES],
}

/// Log-quantises a non-negative value.
pub fn quantize(x: f64) -> u8 {
    if !x.is_finite() || x <= 0.0 {
        return 0;
    }
    ((x + 1.0).log2() * STEPS_PER_OCTAVE)
        .round()
        .clamp(0.0, 255.0) as u8
}

/// The value a quantised step stands for.
pub fn dequantize(q: u8) -> f64 {
    (q as f64 / STEPS_PER_OCTAVE).exp2() - 1.0
}

/// Hour of the UTC day of an epoch second.
pub fn hour_of_day(epoch_s: i64) -> usize {
    (epoch_s.div_euclid(3600)).rem_euclid(24) as usize
}

impl DailyPeaks {
    /// An empty profile as of `epoch_s`.
    pub fn new(epoch_s: i64) -> Self {
        DailyPeaks {
            day: epoch_s.div_euclid(86_400),
            peaks: [[0; 24]; NUM_FEATURES],
        }
    }

    /// Records one window's values (`values[f]` for each feature) at `epoch_s`.
    pub fn record(&mut self, epoch_s: i64, values: &[f64; NUM_FEATURES], anomalous: bool) {
        let day = epoch_s.div_euclid(86_400);
        if day > self.day {
            let fade = ((day - self.day).min(255) as u8).saturating_mul(FADE_PER_DAY);
            for row in &mut self.peaks {
                for v in row.iter_mut() {
                    *v = v.saturating_sub(fade);
                }
            }
            self.day = day;
        }
        let h = hour_of_day(epoch_s);
        let discount = if anomalous { ANOMALOUS_DISCOUNT } else { 0 };
        for (row, &x) in self.peaks.iter_mut().zip(values) {
            let q = quantize(x).saturating_sub(discount);
            row[h] = row[h].max(q);
        }
    }

    /// The usual peak of `f` around `epoch_s`: the highest of this hour and its two neighbours
    /// (a job drifting across an hour boundary is still the same job). 0 when none is known.
    pub fn peak(&self, f: Feature, epoch_s: i64) -> f64 {
        let h = hour_of_day(epoch_s);
        let row = &self.peaks[f as usize];
        let q = row[h].max(row[(h + 23) % 24]).max(row[(h + 1) % 24]);
        if q == 0 {
            0.0
        } else {
            dequantize(q)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_round_trips_within_a_step() {
        for x in [1.0, 10.0, 1e3, 5e8, 3e12] {
            let back = dequantize(quantize(x));
            assert!((back / x - 1.0).abs() < 0.1, "{x} -> {back}");
        }
        assert_eq!(quantize(0.0), 0);
        assert_eq!(quantize(f64::NAN), 0);
    }

    #[test]
    fn a_peak_is_remembered_at_its_hour_and_fades() {
        let t0 = 86_400 * 100 + 3 * 3600;
        let mut v = [0.0; NUM_FEATURES];
        v[Feature::BytesOut as usize] = 5e8;
        let mut p = DailyPeaks::new(t0);
        p.record(t0, &v, false);
        let next_day = t0 + 86_400;
        assert!(p.peak(Feature::BytesOut, next_day) > 4e8);
        assert!(
            p.peak(Feature::BytesOut, next_day + 3600) > 4e8,
            "neighbour hour"
        );
        assert_eq!(p.peak(Feature::BytesOut, next_day + 6 * 3600), 0.0);
        assert_eq!(p.peak(Feature::BytesIn, next_day), 0.0);
        // Ten days later, after one unrelated record, the peak has faded by 10 steps (2.5 octaves).
        let later = t0 + 10 * 86_400 + 12 * 3600;
        p.record(later, &[0.0; NUM_FEATURES], false);
        let faded = p.peak(Feature::BytesOut, t0 + 10 * 86_400);
        assert!(faded < 1e8 && faded > 5e7, "{faded}");
    }

    #[test]
    fn anomalous_windows_are_recorded_an_octave_lower() {
        let t0 = 86_400 * 100;
        let mut v = [0.0; NUM_FEATURES];
        v[Feature::BytesOut as usize] = 1e9;
        let mut p = DailyPeaks::new(t0);
        p.record(t0, &v, true);
        let got = p.peak(Feature::BytesOut, t0);
        assert!(got > 4e8 && got < 6e8, "{got}");
    }
}
