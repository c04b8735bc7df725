//! Portable, seeded, counter-based randomness.
//!
//! Every random choice in bertkit derives from `(seed, purpose, index...)` through [`Rng::keyed`],
//! so results do not depend on the number of threads or the order of processing, and any item can
//! be recomputed on its own (resumption, per-epoch views). The generator is SplitMix64 (Steele,
//! Lea & Flood 2014) over a state obtained by mixing the key words; sampling algorithms are written
//! here (Lemire's bounded integers, Fisher-Yates) so that output stays byte-stable across crate
//! upgrades. Test vectors below pin the exact streams.

/// What a random stream is used for; part of the key so streams for different purposes never
/// coincide even with the same seed and index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    NspDocument = 1,
    Masking = 2,
    MlmView = 3,
    Permutation = 4,
    SpanMasking = 5,
    Test = 99,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A stream keyed by `seed`, `purpose` and any number of index words.
    pub fn keyed(seed: u64, purpose: Purpose, index: &[u64]) -> Self {
        let mut h = mix64(seed ^ GOLDEN);
        h = mix64(h ^ (purpose as u64).wrapping_mul(GOLDEN));
        for (i, &w) in index.iter().enumerate() {
            h = mix64(h.wrapping_add(GOLDEN.wrapping_mul(i as u64 + 1)) ^ mix64(w));
        }
        Rng { state: h }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform in [0, 1) with 53 bits of precision (like Python's `random.random()`).
    #[inline]
    pub fn random(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) without bias (Lemire 2019). `n` must be > 0.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = (self.next_u64() as u128) * (n as u128);
        let mut low = m as u64;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                m = (self.next_u64() as u128) * (n as u128);
                low = m as u64;
            }
        }
        (m >> 64) as u64
    }

    /// Uniform integer in [a, b], both inclusive (like Python's `random.randint`).
    #[inline]
    pub fn randint(&mut self, a: u64, b: u64) -> u64 {
        debug_assert!(a <= b);
        a + self.below(b - a + 1)
    }

    /// Fisher-Yates from the end, as CPython's `random.shuffle` does it.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// Number of successes in `n` Bernoulli(p) trials (exact, by counting; n is small here).
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        (0..n).filter(|_| self.random() < p).count() as u64
    }
}

/// The keyed permutation of `0..n` for `(seed, epoch)`: the order in which an epoch visits samples.
pub fn permutation(n: u64, seed: u64, epoch: u64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..n).collect();
    Rng::keyed(seed, Purpose::Permutation, &[epoch]).shuffle(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_pinned() {
        // Committed test vector: changing the generator changes every shard; do it deliberately.
        let mut r = Rng::keyed(12345, Purpose::Test, &[0]);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        let mut again = Rng::keyed(12345, Purpose::Test, &[0]);
        let got2: Vec<u64> = (0..3).map(|_| again.next_u64()).collect();
        assert_eq!(got, got2);
        assert_eq!(got, PINNED.to_vec(), "rng stream changed: {got:?}");
    }

    const PINNED: [u64; 3] = [13286700019642131551, 16700069232272428395, 5496782750644988673];

    #[test]
    fn keys_are_independent() {
        let a = Rng::keyed(1, Purpose::Test, &[0]).next_u64();
        let b = Rng::keyed(1, Purpose::Test, &[1]).next_u64();
        let c = Rng::keyed(1, Purpose::Masking, &[0]).next_u64();
        let d = Rng::keyed(2, Purpose::Test, &[0]).next_u64();
        assert!(a != b && a != c && a != d && b != c);
    }

    #[test]
    fn below_is_uniform_and_in_range() {
        let mut r = Rng::keyed(7, Purpose::Test, &[]);
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            let x = r.below(7);
            counts[x as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
        for _ in 0..1000 {
            let x = r.randint(2, 5);
            assert!((2..=5).contains(&x));
        }
    }

    #[test]
    fn random_mean() {
        let mut r = Rng::keyed(3, Purpose::Test, &[]);
        let mean: f64 = (0..100_000).map(|_| r.random()).sum::<f64>() / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }

    #[test]
    fn permutation_is_a_permutation() {
        let p = permutation(1000, 42, 3);
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_ne!(p, permutation(1000, 42, 4));
        assert_eq!(p, permutation(1000, 42, 3));
    }
}
