//! Statistics for reward-hacking audits, each with its definition stated: Pearson and Spearman
//! correlations with exact p-values and bootstrap intervals, an exact binomial tail, a ridge
//! probe with bootstrap intervals and cross-validated R², and Holm's step-down correction.
//!
//! Special functions are written out here (no numeric dependency): ln Γ by Lanczos, the
//! regularized incomplete gamma and beta functions by series and continued fractions
//! (Numerical Recipes, 3rd ed., §6.1–6.4, with modified Lentz evaluation). Resampling uses
//! [`rewardkit_data::Rng`], so every interval is reproducible from its seed.

use rewardkit_data::{quantile_sorted, Rng};
use serde::{Deserialize, Serialize};

/// Pearson's product-moment correlation of paired samples, computed from centred sums.
/// `None` when `n < 3`, the lengths differ, an input is constant, or the result is not finite.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 3 || y.len() != n {
        return None;
    }
    if x.iter().all(|v| *v == x[0]) || y.iter().all(|v| *v == y[0]) {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    let r = (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0);
    r.is_finite().then_some(r)
}

/// 1-based ranks; tied values all get the mean of the ranks they span
/// (`scipy.stats.rankdata(method='average')`). NaN sorts after every number.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut ranks = vec![0.0; x.len()];
    resample_ranks(x, &sorted_order(x), &vec![1; x.len()], &mut ranks);
    ranks
}

/// Indices of `x` in ascending order of value.
fn sorted_order(x: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    order
}

/// Average ranks within a resample holding `counts[i]` copies of `x[i]`, given `order` from
/// [`sorted_order`]: `ranks[i]` is the rank every copy of `x[i]` gets (equal values share the
/// mean of the ranks their copies span). O(n), so a bootstrap needs no sort per resample.
fn resample_ranks(x: &[f64], order: &[usize], counts: &[u32], ranks: &mut [f64]) {
    let (mut start, mut below) = (0, 0u32);
    while start < order.len() {
        let (mut end, mut copies) = (start, 0);
        while end < order.len() && x[order[end]] == x[order[start]] {
            copies += counts[order[end]];
            end += 1;
        }
        // The copies hold ranks below+1 ..= below+copies; their mean:
        let rank = f64::from(below) + (f64::from(copies) + 1.0) / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        below += copies;
        start = end;
    }
}

/// Spearman's rank correlation: [`pearson`] on [`average_ranks`], which handles ties as
/// `scipy.stats.spearmanr` does. `None` in the same cases as [`pearson`].
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    pearson(&average_ranks(x), &average_ranks(y))
}

/// ln Γ(x) for x > 0: Lanczos approximation with g = 7 and the nine coefficients of
/// P. Godfrey (relative error of Γ about 1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let z = x - 1.0;
    let a = C[0]
        + C[1..]
            .iter()
            .enumerate()
            .map(|(i, c)| c / (z + (i + 1) as f64))
            .sum::<f64>();
    let t = z + G + 0.5;
    0.5 * std::f64::consts::TAU.ln() + (z + 0.5) * t.ln() - t + a.ln()
}

/// Relative tolerance and iteration cap of the series and continued fractions below.
const EPS: f64 = 1e-16;
const MAX_ITER: usize = 100_000;
/// Keeps Lentz's denominators away from zero.
const TINY: f64 = 1e-300;

/// Regularized upper incomplete gamma Q(a, x) for a > 0, x ≥ 0: the series for P when
/// x < a + 1, else the continued fraction for Q by modified Lentz (Numerical Recipes §6.2).
fn gamma_q(a: f64, x: f64) -> f64 {
    let prefactor = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut ap, mut term, mut sum) = (a, 1.0 / a, 1.0 / a);
        for _ in 0..MAX_ITER {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * EPS {
                break;
            }
        }
        1.0 - sum * prefactor
    } else {
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..MAX_ITER {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < EPS {
                break;
            }
        }
        prefactor * h
    }
}

/// Standard normal distribution function Φ(z), through Φ(z) = ½·Q(½, z²/2) for z ≤ 0 and
/// 1 − ½·Q(½, z²/2) for z > 0 (Q: the regularized incomplete gamma of Numerical Recipes §6.2,
/// since erfc(x) = Q(½, x²)). Relative error about 1e-15 in the lower tail, so Φ(−8) ≈ 6.2e-16
/// keeps its digits.
pub fn normal_cdf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z.abs() > 40.0 {
        return if z < 0.0 { 0.0 } else { 1.0 };
    }
    let tail = 0.5 * gamma_q(0.5, 0.5 * z * z);
    if z <= 0.0 {
        tail
    } else {
        1.0 - tail
    }
}

/// Continued fraction of the incomplete beta function by modified Lentz (Numerical Recipes
/// §6.4, `betacf`), for x < (a + 1)/(a + b + 2).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    let nudge = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / nudge(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..MAX_ITER {
        let (m, m2) = (m as f64, 2.0 * m as f64);
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 / nudge(1.0 + aa * d);
        c = nudge(1.0 + aa / c);
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 / nudge(1.0 + aa * d);
        c = nudge(1.0 + aa / c);
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// Regularized incomplete beta I_x(a, b), given x and y = 1 − x separately so that a y
/// near 0 keeps its precision (Numerical Recipes §6.4, `betai`).
fn beta_reg(a: f64, b: f64, x: f64, y: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if y <= 0.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * y.ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, y) / b
    }
}

/// Two-sided p-value of a correlation `r` from `n` pairs under no association: Student's t
/// with n − 2 degrees of freedom, t = r·√((n − 2)/(1 − r²)), as `scipy.stats.pearsonr` and
/// `scipy.stats.spearmanr` compute it. Evaluated as P(|T| ≥ |t|) = I_{1−r²}((n − 2)/2, ½).
/// NaN when `n < 3` or `r` is outside [−1, 1].
pub fn correlation_p_value(r: f64, n: usize) -> f64 {
    if n < 3 || !(-1.0..=1.0).contains(&r) {
        return f64::NAN;
    }
    let r2 = r * r;
    beta_reg((n - 2) as f64 / 2.0, 0.5, (1.0 - r) * (1.0 + r), r2)
}

/// Exact one-sided binomial tail P(X ≥ k) for X ~ Binomial(n, p0) (the p-value of
/// `scipy.stats.binomtest(k, n, p0, alternative='greater')`). Each term's logarithm,
/// ln C(n, i) + i·ln p0 + (n − i)·ln(1 − p0) with ln C from ln Γ, is summed by log-sum-exp
/// around the largest term, so no term overflows or underflows for n up to 10⁵ and beyond;
/// the relative error is about 1e-10 at n = 10⁵ (ln Γ of arguments near 10⁶ carries about
/// 1e-10 absolute error). NaN when p0 is outside [0, 1].
pub fn binomial_p_greater(k: u64, n: u64, p0: f64) -> f64 {
    if !(0.0..=1.0).contains(&p0) {
        return f64::NAN;
    }
    if k == 0 {
        return 1.0;
    }
    if k > n || p0 == 0.0 {
        return 0.0;
    }
    if p0 == 1.0 {
        return 1.0;
    }
    let (ln_p, ln_q, ln_n) = (p0.ln(), (-p0).ln_1p(), ln_gamma(n as f64 + 1.0));
    let ln_term = |i: u64| {
        let (i, j) = (i as f64, (n - i) as f64);
        ln_n - ln_gamma(i + 1.0) - ln_gamma(j + 1.0) + i * ln_p + j * ln_q
    };
    // The terms are unimodal with their mode at ⌊(n + 1)p0⌋, so the largest in k..=n is here.
    let mode = ((n + 1) as f64 * p0).floor() as u64;
    let top = ln_term(mode.clamp(k, n));
    let sum: f64 = (k..=n).map(|i| (ln_term(i) - top).exp()).sum();
    (top + sum.ln()).exp().min(1.0)
}

/// Which correlation coefficient.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum CorrelationKind {
    Pearson,
    Spearman,
}

impl CorrelationKind {
    fn of(self, x: &[f64], y: &[f64]) -> Option<f64> {
        match self {
            CorrelationKind::Pearson => pearson(x, y),
            CorrelationKind::Spearman => spearman(x, y),
        }
    }
}

/// A correlation with its percentile-bootstrap 95% interval and its t-test p-value
/// ([`correlation_p_value`], also for Spearman as scipy does).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Correlation {
    pub kind: CorrelationKind,
    pub r: f64,
    pub ci: [f64; 2],
    pub p_value: f64,
    pub n: usize,
}

/// `stat` over `reps` resamples of 0..n drawn with replacement; `None` skips a resample;
/// `None` overall if fewer than half succeed.
fn bootstrap<T>(
    n: usize,
    reps: usize,
    seed: u64,
    mut stat: impl FnMut(&[usize]) -> Option<T>,
) -> Option<Vec<T>> {
    if n == 0 || reps == 0 {
        return None;
    }
    let mut rng = Rng::new(seed);
    let mut idx = vec![0; n];
    let mut out = Vec::with_capacity(reps);
    for _ in 0..reps {
        idx.iter_mut().for_each(|i| *i = rng.below(n));
        out.extend(stat(&idx));
    }
    (2 * out.len() >= reps).then_some(out)
}

/// The 2.5% and 97.5% quantiles (numpy's linear interpolation) of `values`.
fn percentile_95(mut values: Vec<f64>) -> [f64; 2] {
    values.sort_by(f64::total_cmp);
    [
        quantile_sorted(&values, 0.025),
        quantile_sorted(&values, 0.975),
    ]
}

/// Percentile bootstrap 95% interval of `stat` over `reps` resamples of indices 0..n (drawn
/// with replacement by `Rng::new(seed)`): the 2.5% and 97.5% quantiles, linearly interpolated
/// as numpy's default. Resamples where `stat` is `None` or not finite are skipped; `None` if
/// fewer than half succeed (or `n` or `reps` is 0).
pub fn bootstrap_ci(
    n: usize,
    reps: usize,
    seed: u64,
    mut stat: impl FnMut(&[usize]) -> Option<f64>,
) -> Option<[f64; 2]> {
    let values = bootstrap(n, reps, seed, |idx| stat(idx).filter(|v| v.is_finite()))?;
    Some(percentile_95(values))
}

/// The `kind` correlation of paired samples with a bootstrap interval (`reps` resamples of
/// pairs, `seed`) and its p-value. `None` where the correlation is undefined (see
/// [`pearson`]) or the bootstrap fails ([`bootstrap_ci`]).
pub fn correlate(
    x: &[f64],
    y: &[f64],
    kind: CorrelationKind,
    reps: usize,
    seed: u64,
) -> Option<Correlation> {
    let r = kind.of(x, y)?;
    let n = x.len();
    let (mut bx, mut by) = (Vec::with_capacity(n), Vec::with_capacity(n));
    // Spearman: ranks within each resample from one sort of the full data.
    let orders = (kind == CorrelationKind::Spearman).then(|| (sorted_order(x), sorted_order(y)));
    let (mut counts, mut rx, mut ry) = (vec![0; n], vec![0.0; n], vec![0.0; n]);
    let ci = bootstrap_ci(n, reps, seed, |idx| {
        bx.clear();
        by.clear();
        match &orders {
            None => {
                bx.extend(idx.iter().map(|&i| x[i]));
                by.extend(idx.iter().map(|&i| y[i]));
            }
            Some((ox, oy)) => {
                counts.fill(0);
                idx.iter().for_each(|&i| counts[i] += 1);
                resample_ranks(x, ox, &counts, &mut rx);
                resample_ranks(y, oy, &counts, &mut ry);
                bx.extend(idx.iter().map(|&i| rx[i]));
                by.extend(idx.iter().map(|&i| ry[i]));
            }
        }
        pearson(&bx, &by)
    })?;
    Some(Correlation {
        kind,
        r,
        ci,
        p_value: correlation_p_value(r, n),
        n,
    })
}

/// The mean of `x` with a percentile-bootstrap 95% interval (`reps` resamples, `seed`).
/// `None` for an empty `x` or a failed bootstrap (non-finite values).
pub fn mean_ci(x: &[f64], reps: usize, seed: u64) -> Option<(f64, [f64; 2])> {
    let mean = |idx: &[usize]| idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64;
    let ci = bootstrap_ci(x.len(), reps, seed, |idx| Some(mean(idx)))?;
    Some((x.iter().sum::<f64>() / x.len() as f64, ci))
}

/// A ridge fit on standardised features (see [`ridge`]).
#[derive(Serialize, Clone, Debug)]
pub struct RidgeFit {
    /// Per feature: the change in the prediction per population standard deviation of the
    /// feature; 0 for a constant feature.
    pub coefficients: Vec<f64>,
    /// The mean of y (the features are centred).
    pub intercept: f64,
    /// In-sample R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ)².
    pub r2: f64,
    pub lambda: f64,
    /// Observations fitted.
    pub n: usize,
}

/// A feature column's mean and population standard deviation (0: constant, left out).
struct Scale {
    mean: f64,
    std: f64,
}

/// Solves A·β = b for a symmetric positive definite k×k `a` (row-major) by Cholesky
/// factorisation A = L·Lᵀ and two triangular solves. `None` if A is not positive definite.
fn cholesky_solve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let k = b.len();
    let mut l = vec![0.0f64; k * k];
    for j in 0..k {
        let s = a[j * k + j] - (0..j).map(|m| l[j * k + m].powi(2)).sum::<f64>();
        if s.is_nan() || s <= 0.0 {
            return None;
        }
        l[j * k + j] = s.sqrt();
        for i in j + 1..k {
            let s = a[i * k + j] - (0..j).map(|m| l[i * k + m] * l[j * k + m]).sum::<f64>();
            l[i * k + j] = s / l[j * k + j];
        }
    }
    let mut z = vec![0.0; k];
    for i in 0..k {
        z[i] = (b[i] - (0..i).map(|m| l[i * k + m] * z[m]).sum::<f64>()) / l[i * k + i];
    }
    let mut beta = vec![0.0; k];
    for i in (0..k).rev() {
        let s = (i + 1..k).map(|m| l[m * k + i] * beta[m]).sum::<f64>();
        beta[i] = (z[i] - s) / l[i * k + i];
    }
    Some(beta)
}

/// [`ridge`] on the rows `idx` of `x` and `y` (shapes already checked), also returning each
/// column's scale so that new rows can be predicted.
fn fit_rows(
    x: &[Vec<f64>],
    y: &[f64],
    idx: &[usize],
    lambda: f64,
) -> Option<(RidgeFit, Vec<Scale>)> {
    let (m, p) = (idx.len(), x.first().map_or(0, Vec::len));
    if m < 2 {
        return None;
    }
    let mean_of = |f: &dyn Fn(usize) -> f64| idx.iter().map(|&i| f(i)).sum::<f64>() / m as f64;
    let scales: Vec<Scale> = (0..p)
        .map(|j| {
            let first = x[idx[0]][j];
            if idx.iter().all(|&i| x[i][j] == first) {
                return Scale {
                    mean: first,
                    std: 0.0,
                };
            }
            let mean = mean_of(&|i| x[i][j]);
            let std = mean_of(&|i| (x[i][j] - mean).powi(2)).sqrt();
            Scale { mean, std }
        })
        .collect();
    let active: Vec<usize> = (0..p).filter(|&j| scales[j].std > 0.0).collect();
    let k = active.len();
    // Standardised design, row-major m×k, and centred y.
    let (active, scales_ref) = (&active, &scales);
    let z: Vec<f64> = idx
        .iter()
        .flat_map(|&i| {
            active
                .iter()
                .map(move |&j| (x[i][j] - scales_ref[j].mean) / scales_ref[j].std)
        })
        .collect();
    let y_mean = mean_of(&|i| y[i]);
    let yc: Vec<f64> = idx.iter().map(|&i| y[i] - y_mean).collect();
    let mut gram = vec![0.0; k * k];
    let mut zty = vec![0.0; k];
    for (row, yv) in z.chunks_exact(k.max(1)).zip(&yc) {
        for a in 0..k {
            zty[a] += row[a] * yv;
            for b in 0..k {
                gram[a * k + b] += row[a] * row[b];
            }
        }
    }
    for a in 0..k {
        gram[a * k + a] += lambda;
    }
    let beta = cholesky_solve(&gram, &zty)?;
    let ss_tot: f64 = yc.iter().map(|v| v * v).sum();
    let ss_res: f64 = yc
        .iter()
        .enumerate()
        .map(|(r, yv)| {
            let fitted: f64 = (0..k).map(|a| z[r * k + a] * beta[a]).sum();
            (yv - fitted).powi(2)
        })
        .sum();
    let mut coefficients = vec![0.0; p];
    for (&j, b) in active.iter().zip(&beta) {
        coefficients[j] = *b;
    }
    let r2 = 1.0 - ss_res / ss_tot;
    if !r2.is_finite() || coefficients.iter().any(|c| !c.is_finite()) {
        return None;
    }
    let fit = RidgeFit {
        coefficients,
        intercept: y_mean,
        r2,
        lambda,
        n: m,
    };
    Some((fit, scales))
}

/// `x` has one row per observation, all rows as long, as many rows as `y`, at least two;
/// `lambda` is finite and ≥ 0.
fn shapes_ok(x: &[Vec<f64>], y: &[f64], lambda: f64) -> bool {
    let p = x.first().map_or(0, Vec::len);
    x.len() == y.len()
        && x.len() >= 2
        && x.iter().all(|r| r.len() == p)
        && lambda >= 0.0
        && lambda.is_finite()
}

/// Ridge regression of y on the columns of x (rows = observations). Each column is
/// standardised (mean 0, population standard deviation 1; a constant column gets coefficient 0
/// and is left out of the solve) and y is centred (intercept = mean y); the coefficients β
/// minimise ‖y − Xβ‖² + λ‖β‖², so they are per standard deviation of the feature — the same
/// as scikit-learn's `Ridge(alpha=λ)` on columns standardised with numpy's `std` (ddof = 0).
/// (XᵀX + λI)β = Xᵀy is solved by Cholesky. `r2` is the in-sample R².
///
/// `None` when the shapes disagree, there are fewer than two rows, λ is negative or not
/// finite, y is constant (R² undefined), or XᵀX + λI is singular (λ = 0 with collinear
/// columns).
pub fn ridge(x: &[Vec<f64>], y: &[f64], lambda: f64) -> Option<RidgeFit> {
    if !shapes_ok(x, y, lambda) {
        return None;
    }
    let all: Vec<usize> = (0..y.len()).collect();
    fit_rows(x, y, &all, lambda).map(|(fit, _)| fit)
}

/// A ridge fit with the uncertainty of its coefficients and its out-of-sample R².
#[derive(Serialize, Clone, Debug)]
pub struct RidgeReport {
    pub fit: RidgeFit,
    /// Per coefficient, a percentile-bootstrap 95% interval (rows resampled, each resample
    /// standardised and fitted afresh).
    pub ci: Vec<[f64; 2]>,
    /// 5-fold cross-validated R² with folds by index mod 5: every row is predicted by the fit
    /// on the other folds (standardised with their statistics) and
    /// R² = 1 − Σ(y − ŷ_out-of-fold)² / Σ(y − ȳ)²; `None` for fewer than 5 rows or a failed
    /// fold fit.
    pub cv_r2: Option<f64>,
}

/// [`ridge`] plus bootstrap intervals for its coefficients (`reps` resamples of rows, `seed`;
/// resamples whose fit fails are skipped) and a 5-fold cross-validated R². `None` where
/// [`ridge`] is, or when fewer than half of the resamples can be fitted.
pub fn ridge_with_ci(
    x: &[Vec<f64>],
    y: &[f64],
    lambda: f64,
    reps: usize,
    seed: u64,
) -> Option<RidgeReport> {
    let fit = ridge(x, y, lambda)?;
    let draws = bootstrap(y.len(), reps, seed, |idx| {
        fit_rows(x, y, idx, lambda).map(|(f, _)| f.coefficients)
    })?;
    let ci = (0..fit.coefficients.len())
        .map(|j| percentile_95(draws.iter().map(|c| c[j]).collect()))
        .collect();
    Some(RidgeReport {
        cv_r2: cross_validated_r2(x, y, lambda),
        fit,
        ci,
    })
}

/// See [`RidgeReport::cv_r2`].
fn cross_validated_r2(x: &[Vec<f64>], y: &[f64], lambda: f64) -> Option<f64> {
    const FOLDS: usize = 5;
    let n = y.len();
    if n < FOLDS {
        return None;
    }
    let mut ss_res = 0.0;
    for fold in 0..FOLDS {
        let train: Vec<usize> = (0..n).filter(|i| i % FOLDS != fold).collect();
        let (fit, scales) = fit_rows(x, y, &train, lambda)?;
        for i in (fold..n).step_by(FOLDS) {
            let pred = fit.intercept
                + (fit.coefficients.iter().zip(&scales).zip(&x[i]))
                    .filter(|((_, s), _)| s.std > 0.0)
                    .map(|((b, s), v)| b * (v - s.mean) / s.std)
                    .sum::<f64>();
            ss_res += (y[i] - pred).powi(2);
        }
    }
    let y_mean = y.iter().sum::<f64>() / n as f64;
    let ss_tot: f64 = y.iter().map(|v| (v - y_mean).powi(2)).sum();
    Some(1.0 - ss_res / ss_tot)
}

/// Holm–Bonferroni step-down: sort the m p-values ascending; the i-th smallest (i from 0) is
/// significant while p₍ᵢ₎ ≤ α/(m − i) holds for it and every smaller one; from the first
/// failure on, none is. Returns a flag per input in input order; a NaN p-value is never
/// significant.
pub fn holm(p_values: &[f64], alpha: f64) -> Vec<bool> {
    let key = |p: f64| if p.is_nan() { f64::INFINITY } else { p };
    let mut order: Vec<usize> = (0..p_values.len()).collect();
    order.sort_by(|&a, &b| key(p_values[a]).total_cmp(&key(p_values[b])));
    let m = p_values.len();
    let mut significant = vec![false; m];
    for (i, &j) in order.iter().enumerate() {
        if key(p_values[j]) > alpha / (m - i) as f64 {
            break;
        }
        significant[j] = true;
    }
    significant
}

#[cfg(test)]
mod tests {
    use super::*;

    /// |a − b| ≤ tol for each pair.
    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{a:?} vs {b:?} (tol {tol})");
        }
    }

    /// |a − b| ≤ tol·|b|.
    fn rel_close(a: f64, b: f64, tol: f64) {
        assert!(
            (a - b).abs() <= tol * b.abs(),
            "{a:e} vs {b:e} (rel tol {tol})"
        );
    }

    /// x_i = sin(0.7 i) + 0.05 i, y_i = 0.3 x_i + cos(1.3 i), i = 0..50 (same in numpy).
    fn series50() -> (Vec<f64>, Vec<f64>) {
        let x: Vec<f64> = (0..50)
            .map(|i| (0.7 * i as f64).sin() + 0.05 * i as f64)
            .collect();
        let y = x
            .iter()
            .enumerate()
            .map(|(i, v)| 0.3 * v + (1.3 * i as f64).cos())
            .collect();
        (x, y)
    }

    #[test]
    fn ranks_match_scipy_rankdata() {
        // scipy 1.17.1: scipy.stats.rankdata([3,1,4,1,5,9,2,6,5,3,5])
        let r = average_ranks(&[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0]);
        assert_eq!(r, [4.5, 1.5, 6.0, 1.5, 8.0, 11.0, 3.0, 10.0, 8.0, 4.5, 8.0]);
    }

    #[test]
    fn resample_ranks_equal_ranks_of_the_resample() {
        let x = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0];
        let idx = [0, 0, 1, 3, 4, 4, 8, 9, 10, 10, 5];
        let mut counts = [0; 11];
        idx.iter().for_each(|&i| counts[i] += 1);
        let mut ranks = [0.0; 11];
        resample_ranks(&x, &sorted_order(&x), &counts, &mut ranks);
        let got: Vec<f64> = idx.iter().map(|&i| ranks[i]).collect();
        assert_eq!(got, average_ranks(&idx.map(|i| x[i])));
    }

    #[test]
    fn correlations_and_p_values_match_scipy() {
        let (x, y) = series50();
        let r = pearson(&x, &y).unwrap();
        // scipy 1.17.1: scipy.stats.pearsonr(x, y) with x, y from series50() in numpy
        close(
            &[r, correlation_p_value(r, 50)],
            &[0.3813399227447694, 0.006288053005216284],
            1e-12,
        );
        let s = spearman(&x, &y).unwrap();
        // scipy 1.17.1: scipy.stats.spearmanr(x, y), same data
        close(
            &[s, correlation_p_value(s, 50)],
            &[0.33474189675870347, 0.01749615560898842],
            1e-12,
        );

        // Ties in several groups on both sides.
        // scipy 1.17.1: scipy.stats.spearmanr([1,2,2,3,5,5,5,8],[2,1,4,4,9,3,3,7])
        let s = spearman(
            &[1., 2., 2., 3., 5., 5., 5., 8.],
            &[2., 1., 4., 4., 9., 3., 3., 7.],
        )
        .unwrap();
        close(
            &[s, correlation_p_value(s, 8)],
            &[0.6025890932578919, 0.1138612274933822],
            1e-12,
        );
        // scipy 1.17.1: scipy.stats.spearmanr([1,2,2,3,5],[2,1,4,4,9])
        let s = spearman(&[1., 2., 2., 3., 5.], &[2., 1., 4., 4., 9.]).unwrap();
        close(
            &[s, correlation_p_value(s, 5)],
            &[0.7631578947368421, 0.13333911953180624],
            1e-12,
        );

        // Small n, where the t distribution is far from normal.
        for (x, y, want) in [
            // scipy 1.17.1: scipy.stats.pearsonr([1,2,3],[1,3,2])
            (
                &[1., 2., 3.][..],
                &[1., 3., 2.][..],
                [0.4999999999999999, 0.6666666666666666],
            ),
            // scipy 1.17.1: scipy.stats.pearsonr([1.,2.,3.,4.],[1.,2.,4.,3.5])
            (
                &[1., 2., 3., 4.],
                &[1., 2., 4., 3.5],
                [0.8907337387831413, 0.10926626121685867],
            ),
            // scipy 1.17.1: scipy.stats.pearsonr([1,2,3,4,5],[2,1,4,3,5])
            (
                &[1., 2., 3., 4., 5.],
                &[2., 1., 4., 3., 5.],
                [0.8, 0.10408803866182782],
            ),
        ] {
            let r = pearson(x, y).unwrap();
            close(&[r, correlation_p_value(r, x.len())], &want, 1e-12);
        }
        assert_eq!(correlation_p_value(1.0, 10), 0.0);
        assert_eq!(correlation_p_value(0.0, 10), 1.0);
    }

    #[test]
    fn special_functions_match_scipy_special() {
        // scipy 1.17.1: scipy.special.gammaln(x)
        for (x, want) in [
            (0.5, 0.5723649429247),
            (1.0, 0.0),
            (3.7, 1.428072326665388),
            (30.25, 72.104204742008),
            (100001.0, 1051299.2218991218),
        ] {
            // Lanczos (g = 7, 9 terms) is good to about 1e-15 relative, not exact.
            assert!(
                (ln_gamma(x) - want).abs() <= 1e-14 * want.abs().max(1.0),
                "lnΓ({x})"
            );
        }
        // scipy 1.17.1: scipy.special.betainc(a, b, x)
        for (a, b, x, want) in [
            (24.0, 0.5, 0.8, 0.0011296670368900366),
            (0.5, 24.0, 0.02, 0.6727372112771236),
            (999.0, 0.5, 0.995, 0.0015547679458457052),
            (2.5, 3.5, 0.4, 0.4869041915261176),
        ] {
            rel_close(beta_reg(a, b, x, 1.0 - x), want, 1e-11);
        }
        // scipy 1.17.1 / numpy 2.4.6: t = r*np.sqrt((n-2)/(1-r*r)); 2*scipy.stats.t.sf(abs(t), n-2)
        for (r, n, want) in [
            (0.05, 2000, 0.025347274326609322),
            (0.2, 200, 0.004519230252214057),
            (-0.9, 7, 0.005751515181902885),
        ] {
            rel_close(correlation_p_value(r, n), want, 1e-11);
        }
    }

    #[test]
    fn normal_cdf_matches_scipy() {
        // scipy 1.17.1: scipy.stats.norm.cdf(z) for each z
        let want = [
            (-8.0, 6.22096057427174e-16f64),
            (-5.0, 2.866515718791933e-07),
            (-2.5, 0.006209665325776132),
            (-1.0, 0.15865525393145707),
            (-0.1, 0.460172162722971),
            (0.0, 0.5),
            (0.3, 0.6179114221889526),
            (1.96, 0.9750021048517795),
            (4.0, 0.9999683287581669),
            (8.0, 0.9999999999999993),
        ];
        for (z, p) in want {
            // Relative 1e-12 of the smaller tail keeps the digits of Φ(−8); above 0 the result
            // is 1 − tail, so rounding next to 1 (2.2e-16) is the floor.
            let got = normal_cdf(z);
            let tol = (1e-12 * p.min(1.0 - p)).max(2.3e-16);
            assert!((got - p).abs() <= tol, "Φ({z}) = {got:e}, want {p:e}");
        }
        assert_eq!(normal_cdf(-50.0), 0.0);
        assert!(normal_cdf(f64::NAN).is_nan());
    }

    #[test]
    fn binomial_tail_matches_scipy_binomtest() {
        // scipy 1.17.1: scipy.stats.binomtest(k, n, p0, alternative='greater').pvalue
        let want = [
            (7, 10, 0.5, 0.171875),
            (0, 10, 0.3, 1.0),
            (60, 100, 0.5, 0.028443966820490444),
            (10, 10, 0.5, 0.0009765625),
            (3, 20, 0.05, 0.07548367378849626),
            (5200, 10000, 0.5, 3.2967577993361714e-05),
            (50500, 100000, 0.5, 0.0007911799394257577),
            (1200, 100000, 0.01, 3.812533101214468e-10),
            (51500, 100000, 0.5, 1.2192132156714725e-21),
        ];
        for (k, n, p0, p) in want {
            // Relative 1e-9, not exact: ln C(n, i) from three ln Γ values near 1e6 loses about
            // 1e-10 absolute in the exponent for n = 1e5.
            rel_close(binomial_p_greater(k, n, p0), p, 1e-9);
        }
        assert_eq!(binomial_p_greater(11, 10, 0.5), 0.0);
        assert_eq!(binomial_p_greater(3, 10, 0.0), 0.0);
        assert_eq!(binomial_p_greater(10, 10, 1.0), 1.0);
        assert!(binomial_p_greater(3, 10, 1.5).is_nan());
    }

    /// The 30×3 design of the ridge reference: x1 = sin i, x2 = cos(i/2) + 0.3 sin i,
    /// x3 = 7i mod 11, y = 2x1 − x2 + 0.3x3 + 0.5 sin(3.1 i), i = 0..30.
    fn ridge_data() -> (Vec<Vec<f64>>, Vec<f64>) {
        let x: Vec<Vec<f64>> = (0..30)
            .map(|i| {
                let t = i as f64;
                vec![
                    t.sin(),
                    (0.5 * t).cos() + 0.3 * t.sin(),
                    ((i * 7) % 11) as f64,
                ]
            })
            .collect();
        let y = (0..30)
            .map(|i| {
                let r = &x[i];
                2.0 * r[0] - r[1] + 0.3 * r[2] + 0.5 * (3.1 * i as f64).sin()
            })
            .collect();
        (x, y)
    }

    #[test]
    fn ridge_matches_sklearn() {
        let (x, y) = ridge_data();
        let report = ridge_with_ci(&x, &y, 2.5, 200, 1).unwrap();
        let fit = &report.fit;
        // scikit-learn 1.9.1 / numpy 2.4.6: Z = (X - X.mean(0)) / X.std(0) (population std);
        // m = sklearn.linear_model.Ridge(alpha=2.5).fit(Z, y); m.coef_, m.intercept_, m.score(Z, y)
        close(
            &fit.coefficients,
            &[1.243252872004402, -0.6474883642760632, 0.8818567188945546],
            1e-9,
        );
        close(
            &[fit.intercept, fit.r2],
            &[1.5281049473641877, 0.9595294445231306],
            1e-9,
        );
        assert_eq!((fit.n, fit.lambda), (30, 2.5));
        // scikit-learn 1.9.1: pred = cross_val_predict(make_pipeline(StandardScaler(),
        // Ridge(alpha=2.5)), X, y, cv=PredefinedSplit(np.arange(30) % 5)); r2_score(y, pred)
        close(&[report.cv_r2.unwrap()], &[0.9494399429124717], 1e-9);
        for (c, ci) in fit.coefficients.iter().zip(&report.ci) {
            assert!(ci[0] < *c && *c < ci[1], "{c} outside {ci:?}");
        }
    }

    #[test]
    fn ridge_bootstrap_separates_real_from_null_effects() {
        let mut rng = Rng::new(5);
        let x: Vec<Vec<f64>> = (0..300).map(|_| vec![rng.normal(), rng.normal()]).collect();
        let y: Vec<f64> = x.iter().map(|r| 2.0 * r[0] + rng.normal()).collect();
        let report = ridge_with_ci(&x, &y, 1.0, 300, 9).unwrap();
        let [real, null] = [report.ci[0], report.ci[1]];
        assert!(real[0] > 1.5 && real[1] < 2.5, "{real:?}");
        assert!(null[0] < 0.0 && null[1] > 0.0, "{null:?}");
    }

    #[test]
    fn constant_column_gets_zero_and_changes_nothing() {
        let (x, y) = ridge_data();
        let with_const: Vec<Vec<f64>> = x.iter().map(|r| vec![r[0], 0.1, r[1], r[2]]).collect();
        let a = ridge(&x, &y, 2.5).unwrap();
        let b = ridge(&with_const, &y, 2.5).unwrap();
        assert_eq!(b.coefficients[1], 0.0);
        let without: Vec<f64> = [0, 2, 3].iter().map(|&j| b.coefficients[j]).collect();
        close(&without, &a.coefficients, 1e-12);
        close(&[b.r2], &[a.r2], 1e-12);
    }

    #[test]
    fn holm_steps_down_like_a_hand_computation() {
        // Sorted 0.005 ≤ .05/4, 0.01 ≤ .05/3, then 0.03 > .05/2 stops.
        assert_eq!(
            holm(&[0.01, 0.04, 0.03, 0.005], 0.05),
            [true, false, false, true]
        );
        // 0.02 > .05/3 stops, so 0.04 (≤ .05/1 on its own) is not significant either.
        assert_eq!(
            holm(&[0.001, 0.02, 0.02, 0.04], 0.05),
            [true, false, false, false]
        );
        // All pass: 0.01 ≤ .05/3, 0.02 ≤ .05/2, 0.03 ≤ .05/1.
        assert_eq!(holm(&[0.03, 0.01, 0.02], 0.05), [true, true, true]);
        assert_eq!(holm(&[f64::NAN, 0.001], 0.05), [false, true]);
        assert!(holm(&[], 0.05).is_empty());
    }

    /// n pairs with x, e ~ N(0, 1) and y = x + e/2, so the population correlation is
    /// 1/√1.25 ≈ 0.894.
    fn correlated(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = Rng::new(seed);
        let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let y = x.iter().map(|v| v + 0.5 * rng.normal()).collect();
        (x, y)
    }

    #[test]
    fn bootstrap_interval_covers_truth_and_shrinks_with_n() {
        let rho = 1.0 / 1.25f64.sqrt();
        let small = correlate(
            &correlated(200, 1).0,
            &correlated(200, 1).1,
            CorrelationKind::Pearson,
            1000,
            2,
        )
        .unwrap();
        let (x, y) = correlated(2000, 3);
        let large = correlate(&x, &y, CorrelationKind::Pearson, 1000, 4).unwrap();
        let spear = correlate(&x, &y, CorrelationKind::Spearman, 1000, 4).unwrap();
        for c in [&small, &large] {
            assert!(c.ci[0] < rho && rho < c.ci[1], "{c:?}");
            assert!(c.ci[0] < c.r && c.r < c.ci[1] && c.p_value < 1e-12);
        }
        // Width ∝ 1/√n: ten times the data, about a third of the width.
        let width = |c: &Correlation| c.ci[1] - c.ci[0];
        assert!(width(&large) < 0.5 * width(&small), "{small:?} {large:?}");
        assert!(spear.ci[0] < spear.r && spear.r < spear.ci[1]);
        assert_eq!(serde_json::to_value(spear.kind).unwrap(), "spearman");

        let (m, ci) = mean_ci(&x, 1000, 5).unwrap();
        assert!(ci[0] < m && m < ci[1] && ci[0] < 0.0 + 0.1 && ci[1] > -0.1);
        assert!(ci[1] - ci[0] < 4.0 * 1.96 / (2000f64).sqrt());
    }

    #[test]
    fn spearman_bootstrap_is_spearman_on_each_resample() {
        // Rounded values: many ties, more still after resampling.
        let (x, y) = correlated(300, 8);
        let (x, y): (Vec<f64>, Vec<f64>) = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a.round(), b.round()))
            .unzip();
        let fast = correlate(&x, &y, CorrelationKind::Spearman, 200, 6).unwrap();
        let plain = bootstrap_ci(x.len(), 200, 6, |idx| {
            let gather = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
            spearman(&gather(&x), &gather(&y))
        });
        assert_eq!(Some(fast.ci), plain);
    }

    #[test]
    fn undefined_cases_are_none() {
        assert_eq!(pearson(&[1.0, 2.0], &[1.0, 2.0]), None);
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[1.0, 2.0]), None);
        assert_eq!(pearson(&[0.1; 5], &[1.0, 2.0, 3.0, 4.0, 5.0]), None);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[4.0, 4.0, 4.0]), None);
        assert!(correlate(&[1.0; 10], &[2.0; 10], CorrelationKind::Spearman, 100, 0).is_none());
        assert!(correlation_p_value(0.5, 2).is_nan());
        assert_eq!(mean_ci(&[], 100, 0), None);
        assert_eq!(bootstrap_ci(10, 100, 0, |_| None), None);
        // Fails on resamples that contain index 0 (about 65% of them): too few succeed.
        assert_eq!(
            bootstrap_ci(10, 100, 0, |idx| (!idx.contains(&0)).then_some(1.0)),
            None
        );
        assert!(bootstrap_ci(10, 0, 0, |_| Some(1.0)).is_none());

        let (x, y) = ridge_data();
        assert!(ridge(&x, &y[..29], 1.0).is_none());
        assert!(ridge(&x, &y, -1.0).is_none());
        assert!(ridge(&x, &[3.0; 30], 1.0).is_none());
        let ragged: Vec<Vec<f64>> = x
            .iter()
            .enumerate()
            .map(|(i, r)| r[..1 + i % 2].to_vec())
            .collect();
        assert!(ridge(&ragged, &y, 1.0).is_none());
        // Two identical columns with λ = 0: XᵀX is singular.
        let twin: Vec<Vec<f64>> = x.iter().map(|r| vec![r[0], r[0]]).collect();
        assert!(ridge(&twin, &y, 0.0).is_none());
        assert!(ridge(&twin, &y, 0.1).is_some());
    }
}
