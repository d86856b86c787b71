//! Bounded-memory sketches: [`DistinctCounter`] (exact while small, HyperLogLog after) and
//! [`CountMinSketch`] (edge counts for the burst detector).
//!
//! Every per-workload distinct count goes through these so a flood of spoofed ports or peers cannot
//! grow memory without bound (invariant 5). All updates commute, so shards may merge in any order.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// Mixes a value into a well-distributed 64-bit hash (splitmix64 finaliser).
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Exact set of up to this many hashes before switching to HyperLogLog.
pub const EXACT_CAP: usize = 48;
const HLL_P: u32 = 9;
const HLL_M: usize = 1 << HLL_P;

/// Hashes an exact counter holds without a heap block.
const EXACT_INLINE: usize = 2;

/// Distinct count of 64-bit hashes: exact up to [`EXACT_CAP`] (the first [`EXACT_INLINE`] of them
/// inline), then a 512-register HyperLogLog (about 4.6 % standard error, 512 bytes). The exact form
/// serialises as a sequence, as the `Vec` it replaced did, so checkpoints read the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DistinctCounter {
    /// Exact, unsorted.
    Exact(SmallVec<[u64; EXACT_INLINE]>),
    /// HyperLogLog registers.
    Hll(Box<[u8]>),
}

impl Default for DistinctCounter {
    fn default() -> Self {
        DistinctCounter::Exact(SmallVec::new())
    }
}

impl DistinctCounter {
    /// Adds an already-mixed hash; true when the counter changed (its count may have grown), so
    /// callers watching a threshold re-estimate only then.
    #[inline]
    pub fn insert_hash(&mut self, h: u64) -> bool {
        match self {
            DistinctCounter::Exact(v) => {
                if v.contains(&h) {
                    return false;
                }
                if v.len() < EXACT_CAP {
                    v.push(h);
                    return true;
                }
                let mut regs = vec![0u8; HLL_M].into_boxed_slice();
                for &x in v.iter() {
                    hll_add(&mut regs, x);
                }
                hll_add(&mut regs, h);
                *self = DistinctCounter::Hll(regs);
                true
            }
            DistinctCounter::Hll(regs) => hll_add(regs, h),
        }
    }

    /// Adds a raw value (mixed first); see [`DistinctCounter::insert_hash`].
    #[inline]
    pub fn insert(&mut self, v: u64) -> bool {
        self.insert_hash(mix64(v))
    }

    /// Estimated number of distinct values.
    pub fn count(&self) -> u64 {
        match self {
            DistinctCounter::Exact(v) => v.len() as u64,
            DistinctCounter::Hll(regs) => hll_estimate(regs),
        }
    }

    /// Merges another counter into this one.
    pub fn merge(&mut self, other: &DistinctCounter) {
        match other {
            DistinctCounter::Exact(v) => {
                for &h in v {
                    self.insert_hash(h);
                }
            }
            DistinctCounter::Hll(o) => {
                if let DistinctCounter::Exact(v) = self {
                    let mut regs = vec![0u8; HLL_M].into_boxed_slice();
                    for &x in v.iter() {
                        hll_add(&mut regs, x);
                    }
                    *self = DistinctCounter::Hll(regs);
                }
                if let DistinctCounter::Hll(r) = self {
                    for (a, b) in r.iter_mut().zip(o.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    /// Heap bytes used.
    pub fn heap_bytes(&self) -> usize {
        match self {
            DistinctCounter::Exact(v) if v.spilled() => v.capacity() * 8,
            DistinctCounter::Exact(_) => 0,
            DistinctCounter::Hll(r) => r.len(),
        }
    }
}

/// Raises one register; true when it grew.
#[inline]
fn hll_add(regs: &mut [u8], h: u64) -> bool {
    let idx = (h >> (64 - HLL_P)) as usize;
    let rest = (h << HLL_P) | (1 << (HLL_P - 1));
    let rank = rest.leading_zeros() as u8 + 1;
    match regs.get_mut(idx) {
        Some(r) if rank > *r => {
            *r = rank;
            true
        }
        _ => false,
    }
}

fn hll_estimate(regs: &[u8]) -> u64 {
    let m = regs.len() as f64;
    let mut sum = 0.0;
    let mut zeros = 0usize;
    for &r in regs {
        sum += 2f64.powi(-(r as i32));
        if r == 0 {
            zeros += 1;
        }
    }
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let raw = alpha * m * m / sum;
    let est = if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    };
    est.round().max(EXACT_CAP as f64) as u64
}

/// A count-min sketch of `depth` rows × `width` counters (f64 so it can decay, as MIDAS-R does).
///
/// Decay is lazy: counters are stored divided by a running `mult`, so `scale` is O(1) instead of a
/// pass over every counter per window (which dominated closing many tiny windows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountMinSketch {
    width: usize,
    depth: usize,
    counts: Vec<f64>,
    mult: f64,
}

impl CountMinSketch {
    /// A zeroed sketch.
    pub fn new(depth: usize, width: usize) -> Self {
        let depth = depth.max(1);
        let width = width.max(8);
        CountMinSketch {
            width,
            depth,
            counts: vec![0.0; width * depth],
            mult: 1.0,
        }
    }

    #[inline]
    fn slot(&self, row: usize, key: u64) -> usize {
        let h = mix64(key ^ (row as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        row * self.width + (h % self.width as u64) as usize
    }

    /// Adds `v` to `key`.
    #[inline]
    pub fn add(&mut self, key: u64, v: f64) {
        let stored = v / self.mult;
        for row in 0..self.depth {
            let s = self.slot(row, key);
            self.counts[s] += stored;
        }
    }

    /// Raises `key`'s counters to at least `v` (a sketch of maxima).
    #[inline]
    pub fn raise(&mut self, key: u64, v: f64) {
        let stored = v / self.mult;
        for row in 0..self.depth {
            let s = self.slot(row, key);
            self.counts[s] = self.counts[s].max(stored);
        }
    }

    /// Estimated count of `key` (minimum over rows).
    #[inline]
    pub fn estimate(&self, key: u64) -> f64 {
        (0..self.depth)
            .map(|row| self.counts[self.slot(row, key)])
            .fold(f64::INFINITY, f64::min)
            * self.mult
    }

    /// Multiplies every counter by `factor` (MIDAS-R's temporal decay).
    pub fn scale(&mut self, factor: f64) {
        self.mult *= factor;
        if self.mult < 1e-150 || !self.mult.is_normal() {
            // Fold the multiplier back in before it underflows.
            let m = if self.mult.is_finite() {
                self.mult
            } else {
                0.0
            };
            for c in &mut self.counts {
                *c *= m;
            }
            self.mult = 1.0;
        }
    }

    /// Zeroes the sketch.
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0.0);
        self.mult = 1.0;
    }

    /// Memory used by the counters.
    pub fn heap_bytes(&self) -> usize {
        self.counts.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_then_approximate() {
        let mut d = DistinctCounter::default();
        for i in 0..40 {
            d.insert(i);
            d.insert(i);
        }
        assert_eq!(d.count(), 40);
        for i in 0..5000 {
            d.insert(i);
        }
        let c = d.count() as f64;
        assert!((c - 5000.0).abs() / 5000.0 < 0.15, "estimate {c}");
        assert!(d.heap_bytes() <= 512);
    }

    #[test]
    fn count_min_never_underestimates() {
        let mut s = CountMinSketch::new(4, 64);
        for k in 0..200u64 {
            s.add(k, (k % 7) as f64);
        }
        for k in 0..200u64 {
            assert!(s.estimate(k) >= (k % 7) as f64);
        }
        s.scale(0.5);
        assert!(s.estimate(6) >= 3.0);
        // Lazy decay survives many windows without underflow surprises.
        for _ in 0..100_000 {
            s.scale(0.99);
        }
        s.add(1, 5.0);
        assert!((s.estimate(1) - 5.0).abs() < 1e-6 || s.estimate(1) >= 5.0);
        assert!(s.estimate(1).is_finite());
    }

    proptest! {
        #[test]
        fn merge_is_order_independent(a in proptest::collection::vec(0u64..500, 0..200), b in proptest::collection::vec(0u64..500, 0..200)) {
            let mut x = DistinctCounter::default();
            let mut y = DistinctCounter::default();
            a.iter().for_each(|v| { x.insert(*v); });
            b.iter().for_each(|v| { y.insert(*v); });
            let mut xy = x.clone(); xy.merge(&y);
            let mut yx = y.clone(); yx.merge(&x);
            prop_assert_eq!(xy.count(), yx.count());
            let mut all = DistinctCounter::default();
            a.iter().chain(b.iter()).for_each(|v| { all.insert(*v); });
            prop_assert_eq!(all.count(), xy.count());
        }
    }
}
