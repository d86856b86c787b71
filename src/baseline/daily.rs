//! [`DailyPeaks`]: the highest value each feature reached in each two-hour slot of the (UTC) day on
//! previous days, so a workload's recurring peak — the nightly backup, the 02:00 batch, the morning
//! report — is recognised the next day instead of paging every night.
//!
//! Decayed EWMA statistics cannot do this: with a memory of a few hours they have forgotten
//! yesterday's 03:00 backup by the next night. A profile is kept only for workloads that had a peak
//! (a window at least [`PEAK_FACTOR`] times a feature's mean), so steady workloads pay nothing.
//!
//! Only *previous* days count: today's values are collected apart and join the profile at midnight,
//! so an attack never makes itself usual while it runs. Values are log-quantised to one byte (a
//! quarter octave per step): 2 × 12 × 11 bytes per profile. Peaks fade by [`FADE_PER_DAY`] steps per
//! day, so a job that stops running is forgotten within days. A window judged anomalous is recorded
//! one octave lower ([`ANOMALOUS_DISCOUNT`]): its repeat the next day is tolerated only up to about
//! half the volume detectors' ratio (invariant 4: an attack does not become the new normal).

use crate::baseline::{Feature, NUM_FEATURES};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// A window at least this many times a feature's mean starts a workload's profile.
pub const PEAK_FACTOR: f64 = 3.0;
/// Quantisation steps per octave.
const STEPS_PER_OCTAVE: f64 = 4.0;
/// Steps a peak fades per day without a new one.
pub const FADE_PER_DAY: u8 = 1;
/// Steps an anomalous window's value is lowered by before it is recorded.
pub const ANOMALOUS_DISCOUNT: u8 = 4;
/// Slots per day (two hours each).
pub const SLOTS: usize = 12;

/// Per feature, per two-hour slot: peaks of previous days (decayed) and of today.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyPeaks {
    /// Day number (epoch days) `today` belongs to.
    pub day: i64,
    /// `peaks[feature][slot]` of previous days (log-quantised).
    pub peaks: [[u8; SLOTS]; NUM_FEATURES],
    /// Today's, merged into `peaks` when the day changes.
    pub today: [[u8; SLOTS]; NUM_FEATURES],
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

/// The value a quantised step stands for (from a table: the statistical detectors ask for a peak
/// per feature of every window they judge).
pub fn dequantize(q: u8) -> f64 {
    static VALUES: LazyLock<[f64; 256]> =
        LazyLock::new(|| std::array::from_fn(|q| (q as f64 / STEPS_PER_OCTAVE).exp2() - 1.0));
    VALUES[usize::from(q)]
}

/// Two-hour slot of the UTC day of an epoch second.
pub fn slot_of_day(epoch_s: i64) -> usize {
    (epoch_s.div_euclid(7200)).rem_euclid(SLOTS as i64) as usize
}

impl DailyPeaks {
    /// An empty profile as of `epoch_s`.
    pub fn new(epoch_s: i64) -> Self {
        DailyPeaks {
            day: epoch_s.div_euclid(86_400),
            peaks: [[0; SLOTS]; NUM_FEATURES],
            today: [[0; SLOTS]; NUM_FEATURES],
        }
    }

    /// Records one window's values (`values[f]` for each feature) at `epoch_s`.
    pub fn record(&mut self, epoch_s: i64, values: &[f64; NUM_FEATURES], anomalous: bool) {
        let day = epoch_s.div_euclid(86_400);
        if day > self.day {
            let fade = ((day - self.day).min(255) as u8).saturating_mul(FADE_PER_DAY);
            for (row, new) in self.peaks.iter_mut().zip(&mut self.today) {
                for (v, t) in row.iter_mut().zip(new.iter_mut()) {
                    *v = (*v).max(*t).saturating_sub(fade);
                    *t = 0;
                }
            }
            self.day = day;
        }
        let s = slot_of_day(epoch_s);
        let discount = if anomalous { ANOMALOUS_DISCOUNT } else { 0 };
        for (row, &x) in self.today.iter_mut().zip(values) {
            let q = quantize(x).saturating_sub(discount);
            row[s] = row[s].max(q);
        }
    }

    /// The usual peak of `f` around `epoch_s` on previous days: the highest of this slot and its two
    /// neighbours (a job drifting across a slot boundary is still the same job). 0 when none.
    pub fn peak(&self, f: Feature, epoch_s: i64) -> f64 {
        let s = slot_of_day(epoch_s);
        let row = &self.peaks[f as usize];
        let q = row[s]
            .max(row[(s + SLOTS - 1) % SLOTS])
            .max(row[(s + 1) % SLOTS]);
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

    fn bytes_out(x: f64) -> [f64; NUM_FEATURES] {
        let mut v = [0.0; NUM_FEATURES];
        v[Feature::BytesOut as usize] = x;
        v
    }

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
    fn a_peak_counts_from_the_next_day_at_its_hour_and_fades() {
        let t0 = 86_400 * 100 + 3 * 3600;
        let mut p = DailyPeaks::new(t0);
        p.record(t0, &bytes_out(5e8), false);
        assert_eq!(
            p.peak(Feature::BytesOut, t0 + 600),
            0.0,
            "not usual the same day"
        );
        let next_day = t0 + 86_400;
        p.record(next_day - 3600, &bytes_out(0.0), false);
        p.record(next_day + 4 * 3600, &bytes_out(0.0), false);
        assert!(p.peak(Feature::BytesOut, next_day) > 3e8);
        assert!(
            p.peak(Feature::BytesOut, next_day + 7200) > 3e8,
            "neighbour slot"
        );
        assert_eq!(p.peak(Feature::BytesOut, next_day + 9 * 3600), 0.0);
        assert_eq!(p.peak(Feature::BytesIn, next_day), 0.0);
        // Ten days on, the peak has faded by 10 steps (2.5 octaves).
        p.record(t0 + 10 * 86_400 + 12 * 3600, &bytes_out(0.0), false);
        let faded = p.peak(Feature::BytesOut, t0 + 10 * 86_400);
        assert!(faded < 1e8 && faded > 5e7, "{faded}");
    }

    #[test]
    fn anomalous_windows_are_recorded_an_octave_lower() {
        let t0 = 86_400 * 100;
        let mut p = DailyPeaks::new(t0);
        p.record(t0, &bytes_out(1e9), true);
        p.record(t0 + 86_400, &bytes_out(0.0), false);
        let got = p.peak(Feature::BytesOut, t0 + 86_400);
        assert!(got > 4e8 && got < 6e8, "{got}");
    }
}
