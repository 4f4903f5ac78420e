//! The best-of-n scaling law of Gao, Schulman & Hilton (2022), `R(d) = d(α − βd)` with
//! d = √KL, fitted by least squares; from it, where gold reward peaks.
//!
//! The fit takes points `(d, R(d) − R(0))` and has no intercept (R(0) is measured: best-of-1).
//! Minimising `Σ (y − αd + βd²)²` gives the 2×2 normal equations
//! `[Σd², −Σd³; −Σd³, Σd⁴] · [α; β] = [Σdy; −Σd²y]`, solved in closed form
//! ([`fit_two_features`], which the RL law `d(α − β·ln d)` of [`crate::rl`] shares).

use serde::Serialize;

use crate::bon::n_for_kl;

/// A fitted `R(d) = d(α − βd)`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct RdFit {
    pub alpha: f64,
    pub beta: f64,
    /// `1 − SS_res / SS_tot` with `SS_tot = Σ(y − ȳ)²` (centred, so a fit no better than a
    /// constant scores ≤ 0); NaN (`null`) when every y is equal.
    pub r2: f64,
    /// The peak `d* = α / 2β`, when it lies at d > 0 (α > 0 and β > 0).
    pub d_star: Option<f64>,
    /// `d*²`, the KL at the peak.
    pub kl_star: Option<f64>,
    /// The best-of-n n at the peak ([`n_for_kl`] of `d*²`).
    pub n_star: Option<f64>,
    /// `R(d*) − R(0) = α² / 4β`.
    pub peak: Option<f64>,
}

/// Least-squares fit of `y = α·x₁ − β·x₂` (no intercept) to points `(d, y)`, with the two
/// features `(x₁, x₂) = features(d)`: the machinery of both laws, [`fit_rd`] (`x = (d, d²)`)
/// and the RL law of [`crate::rl`] (`x = (d, d·ln d)`). Returns `(α, β, r²)`, `r²` as in
/// [`RdFit::r2`]; `None` when the points cannot determine both coefficients (the features are
/// collinear over the points) or are not finite.
pub fn fit_two_features(
    points: &[(f64, f64)],
    features: impl Fn(f64) -> (f64, f64),
) -> Option<(f64, f64, f64)> {
    if points.iter().any(|(d, y)| !d.is_finite() || !y.is_finite()) {
        return None;
    }
    let rows: Vec<(f64, f64, f64)> = points
        .iter()
        .map(|&(d, y)| {
            let (a, b) = features(d);
            (a, b, y)
        })
        .collect();
    let s =
        |f: &dyn Fn(f64, f64, f64) -> f64| rows.iter().map(|&(a, b, y)| f(a, b, y)).sum::<f64>();
    let (s11, s12, s22) = (
        s(&|a, _, _| a * a),
        s(&|a, b, _| a * b),
        s(&|_, b, _| b * b),
    );
    let (s1y, s2y) = (s(&|a, _, y| a * y), s(&|_, b, y| b * y));
    // det ≥ 0 by Cauchy-Schwarz, = 0 exactly when the features are proportional over the points.
    let det = s11 * s22 - s12 * s12;
    if det <= 1e-12 * s11 * s22 || det.is_nan() {
        return None;
    }
    let alpha = (s22 * s1y - s12 * s2y) / det;
    let beta = (s12 * s1y - s11 * s2y) / det;
    let n = rows.len() as f64;
    let y_mean = s(&|_, _, y| y) / n;
    let ss_tot = s(&|_, _, y| (y - y_mean).powi(2));
    let ss_res = s(&|a, b, y| (y - alpha * a + beta * b).powi(2));
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        f64::NAN
    };
    Some((alpha, beta, r2))
}

/// Least-squares fit of `y = d(α − βd)` to `(d, y)` points. `None` when the points cannot
/// determine both coefficients (fewer than two distinct non-zero d) or are not finite.
pub fn fit_rd(points: &[(f64, f64)]) -> Option<RdFit> {
    let (alpha, beta, r2) = fit_two_features(points, |d| (d, d * d))?;
    let d_star = (alpha > 0.0 && beta > 0.0).then(|| alpha / (2.0 * beta));
    let kl_star = d_star.map(|d| d * d);
    Some(RdFit {
        alpha,
        beta,
        r2,
        d_star,
        kl_star,
        n_star: kl_star.map(n_for_kl),
        peak: d_star.map(|_| alpha * alpha / (4.0 * beta)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bon::kl_best_of_n;
    use rewardkit_data::Rng;

    #[test]
    fn exact_points_give_exact_coefficients() {
        let (alpha, beta) = (1.3, 0.25);
        let pts: Vec<(f64, f64)> = [0.0, 0.5, 1.0, 1.7, 2.2, 3.0]
            .iter()
            .map(|&d| (d, d * (alpha - beta * d)))
            .collect();
        let f = fit_rd(&pts).expect("fit");
        assert!((f.alpha - alpha).abs() < 1e-10 && (f.beta - beta).abs() < 1e-10);
        assert!((f.r2 - 1.0).abs() < 1e-10);
        let d_star = 1.3 / 0.5;
        assert!((f.d_star.unwrap() - d_star).abs() < 1e-10);
        assert!((f.kl_star.unwrap() - d_star * d_star).abs() < 1e-9);
        assert!((f.peak.unwrap() - 1.3 * 1.3 / 1.0).abs() < 1e-10);
        let n = f.n_star.unwrap();
        assert!((kl_best_of_n(n) - d_star * d_star).abs() < 1e-9);
    }

    #[test]
    fn noisy_points_recover_coefficients() {
        let (alpha, beta, sigma) = (1.0, 0.12, 0.05);
        let mut rng = Rng::new(2022);
        let pts: Vec<(f64, f64)> = (1..=80)
            .map(|k| {
                let d = 0.05 * k as f64;
                (d, d * (alpha - beta * d) + sigma * rng.normal())
            })
            .collect();
        let f = fit_rd(&pts).expect("fit");
        // Standard errors σ·√diag((XᵀX)⁻¹) for this design are 0.0096 (α) and 0.0031 (β),
        // computed with numpy 2.4 (np.linalg.inv of XᵀX, X = [d, −d²]); tolerances are 4 of them.
        assert!((f.alpha - alpha).abs() < 0.04, "alpha {}", f.alpha);
        assert!((f.beta - beta).abs() < 0.013, "beta {}", f.beta);
        assert!(f.r2 > 0.95, "r2 {}", f.r2);
    }

    #[test]
    fn no_peak_without_curvature_and_no_fit_without_two_ds() {
        // Gold that only rises: β < 0, no peak.
        let pts: Vec<(f64, f64)> = [1.0, 2.0, 3.0]
            .iter()
            .map(|&d| (d, d + 0.1 * d * d))
            .collect();
        let f = fit_rd(&pts).expect("fit");
        assert!(f.beta < 0.0 && f.d_star.is_none() && f.n_star.is_none() && f.peak.is_none());
        // Gold that only falls (α < 0 < β): the vertex is at d < 0, not a peak.
        let pts: Vec<(f64, f64)> = [1.0, 2.0, 3.0].iter().map(|&d| (d, -d - d * d)).collect();
        assert!(fit_rd(&pts).expect("fit").d_star.is_none());
        assert!(fit_rd(&[(0.0, 0.0), (1.0, 0.5), (1.0, 0.7)]).is_none());
        assert!(fit_rd(&[]).is_none());
        assert!(fit_rd(&[(1.0, f64::NAN), (2.0, 1.0)]).is_none());
    }
}
