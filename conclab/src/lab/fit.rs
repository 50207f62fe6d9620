//! Scaling models fitted to measured speedups: Amdahl's law, the Universal Scalability
//! Law (USL), and the Karp–Flatt metric.

use serde::Serialize;

/// Amdahl's law: speedup on `n` workers when a fraction `p` of the work is parallel,
/// `S(n) = 1 / ((1 − p) + p / n)`.
pub fn amdahl(p: f64, n: f64) -> f64 {
    1.0 / ((1.0 - p) + p / n)
}

/// Fits Amdahl's parallel fraction `p` (clamped to 0..=1) to `(n, speedup)` points by
/// least squares on `1/S − 1 = p (1/n − 1)`, which is linear in `p`. Points with `n = 1`
/// carry no information and are ignored; `None` if no other point is given.
pub fn fit_amdahl(points: &[(f64, f64)]) -> Option<f64> {
    let (mut num, mut den) = (0.0, 0.0);
    for &(n, s) in points {
        if n > 1.0 && s > 0.0 {
            let x = 1.0 / n - 1.0;
            num += (1.0 / s - 1.0) * x;
            den += x * x;
        }
    }
    (den > 0.0).then(|| (num / den).clamp(0.0, 1.0))
}

/// Universal Scalability Law coefficients: contention `sigma` and coherency `kappa`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Usl {
    pub sigma: f64,
    pub kappa: f64,
}

impl Usl {
    /// Relative capacity on `n` workers: `n / (1 + σ(n − 1) + κ n (n − 1))`.
    pub fn speedup(&self, n: f64) -> f64 {
        n / (1.0 + self.sigma * (n - 1.0) + self.kappa * n * (n - 1.0))
    }

    /// Where the modelled speedup peaks, `√((1 − σ) / κ)` (infinite when κ = 0).
    pub fn peak(&self) -> f64 {
        if self.kappa > 0.0 { ((1.0 - self.sigma).max(0.0) / self.kappa).sqrt() } else { f64::INFINITY }
    }
}

/// Fits the USL to `(n, speedup)` points by least squares on its linear form
/// `n/S − 1 = σ (n − 1) + κ n (n − 1)`, with both coefficients kept non-negative.
pub fn fit_usl(points: &[(f64, f64)]) -> Option<Usl> {
    let rows: Vec<(f64, f64, f64)> = points
        .iter()
        .filter(|(n, s)| *n > 1.0 && *s > 0.0)
        .map(|&(n, s)| (n - 1.0, n * (n - 1.0), n / s - 1.0))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let (mut aa, mut ab, mut bb, mut ay, mut by) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(a, b, y) in &rows {
        aa += a * a;
        ab += a * b;
        bb += b * b;
        ay += a * y;
        by += b * y;
    }
    let det = aa * bb - ab * ab;
    let (mut sigma, mut kappa) = if det.abs() > 1e-12 * aa * bb {
        ((ay * bb - by * ab) / det, (by * aa - ay * ab) / det)
    } else {
        (ay / aa, 0.0)
    };
    // Non-negative least squares in two variables: if one coefficient comes out
    // negative, fix it at zero and refit the other alone.
    if kappa < 0.0 {
        kappa = 0.0;
        sigma = ay / aa;
    }
    if sigma < 0.0 {
        sigma = 0.0;
        kappa = if bb > 0.0 { (by / bb).max(0.0) } else { 0.0 };
    }
    Some(Usl { sigma, kappa })
}

/// Karp–Flatt experimentally determined serial fraction `e = (1/S − 1/n) / (1 − 1/n)`;
/// growing with `n` points at overhead (synchronisation, oversubscription) rather than a
/// fixed serial part.
pub fn karp_flatt(n: f64, speedup: f64) -> Option<f64> {
    (n > 1.0 && speedup > 0.0).then(|| (1.0 / speedup - 1.0 / n) / (1.0 - 1.0 / n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amdahl_fit_recovers_p_from_generated_data() {
        for p in [0.5, 0.8, 0.95, 0.99] {
            // Exact curve with ±2 % multiplicative noise (deterministic pattern).
            let pts: Vec<(f64, f64)> = (1..=16)
                .map(|n| {
                    let noise = 1.0 + 0.02 * if n % 2 == 0 { 1.0 } else { -1.0 };
                    (n as f64, amdahl(p, n as f64) * noise)
                })
                .collect();
            let fitted = fit_amdahl(&pts).unwrap();
            assert!((fitted - p).abs() < 0.01, "p = {p}, fitted {fitted}");
        }
    }

    #[test]
    fn amdahl_needs_more_than_one_worker() {
        assert_eq!(fit_amdahl(&[(1.0, 1.0)]), None);
        assert_eq!(amdahl(1.0, 8.0), 8.0);
        assert_eq!(amdahl(0.0, 8.0), 1.0);
    }

    #[test]
    fn usl_fit_recovers_coefficients() {
        let truth = Usl { sigma: 0.05, kappa: 0.002 };
        let pts: Vec<(f64, f64)> = (1..=32).map(|n| (n as f64, truth.speedup(n as f64))).collect();
        let f = fit_usl(&pts).unwrap();
        assert!((f.sigma - truth.sigma).abs() < 1e-9, "{f:?}");
        assert!((f.kappa - truth.kappa).abs() < 1e-9, "{f:?}");
        assert!((f.peak() - (0.95f64 / 0.002).sqrt()).abs() < 1e-6);
    }

    #[test]
    fn usl_fit_keeps_coefficients_non_negative() {
        // Superlinear points would need a negative sigma.
        let f = fit_usl(&[(1.0, 1.0), (2.0, 2.2), (4.0, 4.5)]).unwrap();
        assert!(f.sigma >= 0.0 && f.kappa >= 0.0, "{f:?}");
    }

    #[test]
    fn karp_flatt_of_amdahl_is_its_serial_fraction() {
        let e = karp_flatt(8.0, amdahl(0.9, 8.0)).unwrap();
        assert!((e - 0.1).abs() < 1e-12);
        assert_eq!(karp_flatt(1.0, 1.0), None);
    }
}
