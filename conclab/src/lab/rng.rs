//! A tiny, fast, reproducible random generator for jitter, choices and value streams:
//! experiments need repeatable randomness, not cryptographic quality.

/// xorshift64: a tiny, fast, reproducible random generator for jitter and choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (`n` > 0; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_spread() {
        let mut r = Rng::new(1);
        let mut seen = [false; 8];
        for _ in 0..200 {
            seen[r.below(8) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
