//! Calibration: does `σ(gap)` match how often the model is right?
//!
//! Per non-tie pair with gap Δ, the model predicts the winner it scores higher with confidence
//! `c = σ(|Δ|)`; it is right when Δ > 0 (Δ = 0 counts as wrong, with c = 0.5). Then:
//! - **ECE**: 10 equal-width bins of c over [0, 1] (c ≥ 0.5, so only the upper five are used;
//!   c = 1.0 falls in the last bin), `Σ_b (n_b / N) · |accuracy_b − mean c_b|`;
//! - **Brier**: `mean (1 − σ(Δ))²` (the same as `mean (c − right)²`);
//! - **log loss**: `mean −log σ(Δ)`, the mean Bradley-Terry loss;
//! - **temperature**: the T > 0 that minimises the log loss of `σ(Δ / T)` (one-dimensional and
//!   convex in 1/T, solved by bisection on the derivative to machine precision), and the ECE,
//!   Brier and log loss after dividing every gap by it;
//! - **soft labels** ([`SoftLabelReport`], where some pair has a label p < 1): the cross-entropy
//!   `mean −p·log σ(Δ) − (1 − p)·log σ(−Δ)` against each pair's label (p = 1 for a hard one),
//!   beside its floor, the labels' own mean entropy, and `mean |σ(Δ) − p|`.

use serde::Serialize;

use crate::metric::{Metric, ScoredPair};
use crate::stats::{sigmoid, softplus};

/// Number of equal-width confidence bins over [0, 1].
pub const BINS: usize = 10;

#[derive(Debug, Clone, Default)]
pub struct Calibration {
    gaps: Vec<f64>,
    /// Each gap's label: the probability that chosen is better (1 for a hard label).
    labels: Vec<f64>,
}

/// How the model's probabilities σ(Δ) match the pairs' soft labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoftLabelReport {
    /// Non-tie pairs whose label is below 1 (the others count with p = 1).
    pub soft: usize,
    /// `mean −p·log σ(Δ) − (1 − p)·log σ(−Δ)` over every non-tie pair.
    pub cross_entropy: f64,
    /// `mean −p·log p − (1 − p)·log(1 − p)`: the cross-entropy of a model whose σ(Δ) is every
    /// label exactly, the floor of the line above.
    pub label_entropy: f64,
    /// `mean |σ(Δ) − p|`.
    pub mean_abs_error: f64,
}

/// One bin of the reliability table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub n: usize,
    /// Mean confidence `σ(|Δ|)` in the bin.
    pub confidence: Option<f64>,
    /// Share of the bin's pairs ranked right.
    pub accuracy: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationReport {
    pub n: usize,
    pub ece: Option<f64>,
    pub brier: Option<f64>,
    pub log_loss: Option<f64>,
    /// The bins of confidence ≥ 0.5 (the five that can hold pairs).
    pub reliability: Vec<ReliabilityBin>,
    pub temperature: TemperatureFit,
    /// Present where some pair has a soft label below 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_labels: Option<SoftLabelReport>,
}

/// Temperature scaling of the gaps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemperatureFit {
    /// The fitted T; `null` when the optimum is at a boundary (see `note`).
    pub temperature: Option<f64>,
    pub ece: Option<f64>,
    pub brier: Option<f64>,
    pub log_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Metric for Calibration {
    type Output = CalibrationReport;
    fn update(&mut self, pair: &ScoredPair) {
        if !pair.tie {
            self.gaps.push(pair.gap());
            self.labels.push(pair.p_chosen.unwrap_or(1.0));
        }
    }
    fn compute(&self) -> CalibrationReport {
        CalibrationReport {
            soft_labels: soft_labels(&self.gaps, &self.labels),
            ..calibration_of(&self.gaps)
        }
    }
    fn clear(&mut self) {
        self.gaps.clear();
        self.labels.clear();
    }
}

/// The full calibration report of a set of gaps.
pub fn calibration_of(gaps: &[f64]) -> CalibrationReport {
    let (ece, reliability) = ece_and_bins(gaps);
    let temperature = fit_temperature(gaps);
    let scaled = |t: f64| gaps.iter().map(|g| g / t).collect::<Vec<_>>();
    let temperature = match temperature {
        Ok(t) => {
            let s = scaled(t);
            TemperatureFit {
                temperature: Some(t),
                ece: ece_and_bins(&s).0,
                brier: brier(&s),
                log_loss: log_loss(&s),
                note: None,
            }
        }
        Err(note) => TemperatureFit {
            temperature: None,
            ece: None,
            brier: None,
            log_loss: None,
            note: Some(note.to_string()),
        },
    };
    CalibrationReport {
        n: gaps.len(),
        ece,
        brier: brier(gaps),
        log_loss: log_loss(gaps),
        reliability,
        temperature,
        soft_labels: None,
    }
}

/// The soft-label figures of gaps and their labels; `None` when every label is 1.
pub fn soft_labels(gaps: &[f64], labels: &[f64]) -> Option<SoftLabelReport> {
    let soft = labels.iter().filter(|&&p| p < 1.0).count();
    if soft == 0 || gaps.len() != labels.len() {
        return None;
    }
    let n = gaps.len() as f64;
    let entropy = |p: f64| {
        let h = |q: f64| if q > 0.0 { -q * q.ln() } else { 0.0 };
        h(p) + h(1.0 - p)
    };
    let (mut ce, mut floor, mut err) = (0.0, 0.0, 0.0);
    for (&g, &p) in gaps.iter().zip(labels) {
        ce += p * softplus(-g) + (1.0 - p) * softplus(g);
        floor += entropy(p);
        err += (sigmoid(g) - p).abs();
    }
    Some(SoftLabelReport {
        soft,
        cross_entropy: ce / n,
        label_entropy: floor / n,
        mean_abs_error: err / n,
    })
}

/// ECE and the upper five bins of the reliability table.
pub fn ece_and_bins(gaps: &[f64]) -> (Option<f64>, Vec<ReliabilityBin>) {
    let mut n = [0usize; BINS];
    let mut conf = [0f64; BINS];
    let mut right = [0usize; BINS];
    for &g in gaps {
        let c = sigmoid(g.abs());
        let b = ((c * BINS as f64).floor() as usize).min(BINS - 1);
        n[b] += 1;
        conf[b] += c;
        right[b] += usize::from(g > 0.0);
    }
    let total = gaps.len();
    let ece = (total > 0).then(|| {
        (0..BINS)
            .filter(|&b| n[b] > 0)
            .map(|b| {
                let acc = right[b] as f64 / n[b] as f64;
                let c = conf[b] / n[b] as f64;
                n[b] as f64 / total as f64 * (acc - c).abs()
            })
            .sum()
    });
    let bins = (BINS / 2..BINS)
        .map(|b| ReliabilityBin {
            lower: b as f64 / BINS as f64,
            upper: (b + 1) as f64 / BINS as f64,
            n: n[b],
            confidence: (n[b] > 0).then(|| conf[b] / n[b] as f64),
            accuracy: (n[b] > 0).then(|| right[b] as f64 / n[b] as f64),
        })
        .collect();
    (ece, bins)
}

/// `mean (1 − σ(Δ))²`.
pub fn brier(gaps: &[f64]) -> Option<f64> {
    crate::stats::mean(
        &gaps
            .iter()
            .map(|&g| (1.0 - sigmoid(g)).powi(2))
            .collect::<Vec<_>>(),
    )
}

/// `mean −log σ(Δ)`, the mean Bradley-Terry loss.
pub fn log_loss(gaps: &[f64]) -> Option<f64> {
    crate::stats::mean(&gaps.iter().map(|&g| softplus(-g)).collect::<Vec<_>>())
}

/// The temperature T minimising `mean −log σ(Δ/T)`.
///
/// With a = 1/T the loss is convex in a, with derivative `mean −Δ·σ(−aΔ)`; its root is found by
/// bisection. No finite positive T exists when the mean gap is ≤ 0 (the loss only falls as
/// T → ∞: the scores rank no better than chance) or when every gap is positive (the pairs are
/// separable and the loss falls as T → 0).
pub fn fit_temperature(gaps: &[f64]) -> Result<f64, &'static str> {
    if gaps.is_empty() {
        return Err("no pairs");
    }
    let slope = |a: f64| -> f64 {
        gaps.iter().map(|&g| -g * sigmoid(-a * g)).sum::<f64>() / gaps.len() as f64
    };
    if slope(0.0) >= 0.0 {
        return Err("mean gap is not positive: no finite temperature improves on T = ∞");
    }
    if gaps.iter().all(|&g| g > 0.0) {
        return Err("every pair is ranked right: the log loss falls without bound as T → 0");
    }
    let scale = gaps.iter().map(|g| g.abs()).fold(0.0, f64::max);
    let mut lo = 0.0;
    let mut hi = 1.0 / scale.max(f64::MIN_POSITIVE);
    let mut doublings = 0;
    while slope(hi) < 0.0 {
        lo = hi;
        hi *= 2.0;
        doublings += 1;
        if doublings > 200 {
            return Err("the log loss keeps falling as T → 0");
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if slope(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(1.0 / (0.5 * (lo + hi)))
}
