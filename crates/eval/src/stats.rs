//! Small numeric helpers with stated definitions.

/// z for a two-sided 95% interval of the normal distribution.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The mean; finite whenever every value is (a sum that overflows is taken again of `x / n`).
pub fn mean(x: &[f64]) -> Option<f64> {
    if x.is_empty() {
        return None;
    }
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    if m.is_finite() || x.iter().any(|v| !v.is_finite()) {
        return Some(m);
    }
    Some(x.iter().map(|v| v / n).sum())
}

/// Sample standard deviation (n − 1); `None` for fewer than two values.
pub fn sample_std(x: &[f64]) -> Option<f64> {
    if x.len() < 2 {
        return None;
    }
    let m = mean(x)?;
    let ss: f64 = x.iter().map(|v| (v - m) * (v - m)).sum();
    let sd = (ss / (x.len() - 1) as f64).sqrt();
    if sd.is_finite() || x.iter().any(|v| !v.is_finite()) {
        return Some(sd);
    }
    // Squares of huge deviations overflow: scale by the largest deviation first.
    let scale = x
        .iter()
        .map(|v| (v / 2.0 - m / 2.0).abs())
        .fold(0.0, f64::max);
    let ss: f64 = x
        .iter()
        .map(|v| (v / 2.0 - m / 2.0) / scale)
        .map(|d| d * d)
        .sum();
    Some((ss / (x.len() - 1) as f64).sqrt() * scale * 2.0)
}

/// 95% Wilson score interval for `k` successes in `n` trials (Wilson 1927).
pub fn wilson_interval(k: u64, n: u64) -> Option<[f64; 2]> {
    if n == 0 {
        return None;
    }
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some([(center - half).max(0.0), (center + half).min(1.0)])
}

/// The logistic function, computed without overflow.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + exp(x))`, computed without overflow; `softplus(−Δ) = −log σ(Δ)` is the
/// Bradley-Terry loss of a pair with gap Δ.
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_std_of_huge_values_stay_finite() {
        let x = [1.5e308, 1.5e308, -1.0e308];
        let m = mean(&x).unwrap();
        assert!((m / (1.0e308 / 1.5) - 1.0).abs() < 1e-12, "{m}");
        let sd = sample_std(&x).unwrap();
        // The same values scaled down by 1e300 have the same std, scaled down.
        let y: Vec<f64> = x.iter().map(|v| v * 1e-300).collect();
        let expect = sample_std(&y).unwrap() * 1e300;
        assert!(
            sd.is_finite() && (sd / expect - 1.0).abs() < 1e-12,
            "{sd} vs {expect}"
        );
        // Ordinary values are computed as before.
        assert_eq!(mean(&[1.0, 2.0, 4.0]), Some(7.0 / 3.0));
    }
}
