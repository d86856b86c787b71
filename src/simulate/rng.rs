//! [`SimRng`]: the simulator's random source (xoshiro256++ seeded by SplitMix64) and the few
//! distributions the traffic model draws from.
//!
//! Our own generator rather than `rand`'s `SmallRng` because the output of `flowwarden generate --seed N`
//! is a test fixture: it must stay byte-identical across `rand` releases and platforms.

/// xoshiro256++: fast, small state, good enough statistics for traffic synthesis.
#[derive(Debug, Clone)]
pub struct SimRng {
    s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SimRng {
    /// A generator for `seed`; different seeds give unrelated streams.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        SimRng {
            s: [
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
            ],
        }
    }

    /// An independent generator derived from this one's seed and a stream number (used so that
    /// adding an attack does not shift the benign traffic's random stream).
    pub fn fork(seed: u64, stream: u64) -> Self {
        Self::new(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F).rotate_left(17))
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) (n > 0; returns 0 for n == 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Standard normal (Box-Muller, one value per call: simple, and cheap enough here).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal multiplier with median 1 and log-sd `sigma`.
    pub fn lognormal(&mut self, sigma: f64) -> f64 {
        (sigma * self.normal()).exp()
    }

    /// Pareto with scale 1 and shape `alpha` (heavy tail: mean finite for alpha > 1).
    pub fn pareto(&mut self, alpha: f64) -> f64 {
        (1.0 - self.f64()).powf(-1.0 / alpha)
    }

    /// Poisson count with mean `mean` (Knuth below 30, a rounded normal above).
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean < 30.0 {
            let limit = (-mean).exp();
            let mut k = 0u64;
            let mut p = self.f64();
            while p > limit {
                k += 1;
                p *= self.f64();
            }
            k
        } else {
            (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let mut a = SimRng::new(7);
        let mut b = SimRng::new(7);
        let mut c = SimRng::new(8);
        let va: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
    }

    #[test]
    fn distributions_have_plausible_means() {
        let mut r = SimRng::new(1);
        let n = 20_000;
        let mean_u: f64 = (0..n).map(|_| r.f64()).sum::<f64>() / n as f64;
        assert!((mean_u - 0.5).abs() < 0.02, "{mean_u}");
        let mean_p: f64 = (0..n).map(|_| r.poisson(4.0) as f64).sum::<f64>() / n as f64;
        assert!((mean_p - 4.0).abs() < 0.1, "{mean_p}");
        let mean_big: f64 = (0..n).map(|_| r.poisson(500.0) as f64).sum::<f64>() / n as f64;
        assert!((mean_big - 500.0).abs() < 2.0, "{mean_big}");
        assert!((0..n).all(|_| r.below(10) < 10));
        assert!((0..n).all(|_| r.pareto(1.5) >= 1.0));
    }
}
