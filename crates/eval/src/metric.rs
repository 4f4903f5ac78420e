//! The [`Metric`] trait and the pairwise metrics of a reward model.
//!
//! Conventions (shared with RewardBench):
//! - a pair is *correct* when `chosen_score > rejected_score`; equal scores count as wrong;
//! - pairs labelled as ties by humans are left out of accuracy, gap and calibration, and
//!   reported apart in [`TieStats`].

use serde::Serialize;

use crate::calibration::{Calibration, CalibrationReport};
use crate::stats::{mean, sample_std, wilson_interval};

/// One preference pair with its scores.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPair {
    pub chosen: f64,
    pub rejected: f64,
    /// Labelled a tie by humans.
    pub tie: bool,
    /// A soft label: the labellers' probability that chosen is better (`None`: a hard label).
    pub p_chosen: Option<f64>,
    pub subset: Option<String>,
}

impl ScoredPair {
    pub fn new(chosen: f64, rejected: f64) -> Self {
        ScoredPair {
            chosen,
            rejected,
            tie: false,
            p_chosen: None,
            subset: None,
        }
    }

    /// The reward gap `r_chosen − r_rejected`.
    pub fn gap(&self) -> f64 {
        self.chosen - self.rejected
    }

    /// Whether the model ranks the human-preferred response strictly higher.
    pub fn correct(&self) -> bool {
        self.chosen > self.rejected
    }
}

/// A metric accumulated pair by pair: the same object serves training logs (update per batch,
/// compute per log line, clear per window), evaluation and audits.
pub trait Metric {
    type Output;
    /// Adds one pair.
    fn update(&mut self, pair: &ScoredPair);
    /// The value over every pair added since the last `clear`.
    fn compute(&self) -> Self::Output;
    /// Forgets every pair.
    fn clear(&mut self);

    /// Adds many pairs.
    fn update_all<'a>(&mut self, pairs: impl IntoIterator<Item = &'a ScoredPair>)
    where
        Self: Sized,
    {
        for p in pairs {
            self.update(p);
        }
    }
}

/// Pairwise accuracy with a 95% Wilson score interval.
#[derive(Debug, Clone, Default)]
pub struct Accuracy {
    n: u64,
    correct: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccuracyReport {
    /// Pairs counted (labelled ties excluded).
    pub n: u64,
    pub correct: u64,
    /// `correct / n`; `null` without pairs.
    pub accuracy: Option<f64>,
    /// 95% Wilson score interval `[low, high]`.
    pub ci95: Option<[f64; 2]>,
}

impl Metric for Accuracy {
    type Output = AccuracyReport;
    fn update(&mut self, pair: &ScoredPair) {
        if !pair.tie {
            self.n += 1;
            self.correct += u64::from(pair.correct());
        }
    }
    fn compute(&self) -> AccuracyReport {
        AccuracyReport {
            n: self.n,
            correct: self.correct,
            accuracy: (self.n > 0).then(|| self.correct as f64 / self.n as f64),
            ci95: wilson_interval(self.correct, self.n),
        }
    }
    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// The reward gap `r_chosen − r_rejected` over non-tie pairs.
#[derive(Debug, Clone, Default)]
pub struct RewardGap {
    gaps: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapReport {
    pub n: usize,
    pub mean: Option<f64>,
    /// Sample standard deviation (n − 1 in the denominator).
    pub std: Option<f64>,
    pub median: Option<f64>,
}

impl Metric for RewardGap {
    type Output = GapReport;
    fn update(&mut self, pair: &ScoredPair) {
        if !pair.tie {
            self.gaps.push(pair.gap());
        }
    }
    fn compute(&self) -> GapReport {
        gap_report(&self.gaps)
    }
    fn clear(&mut self) {
        self.gaps.clear();
    }
}

fn gap_report(gaps: &[f64]) -> GapReport {
    let mut sorted = gaps.to_vec();
    sorted.sort_by(f64::total_cmp);
    GapReport {
        n: gaps.len(),
        mean: mean(gaps),
        std: sample_std(gaps),
        median: (!sorted.is_empty()).then(|| rewardkit_data::quantile_sorted(&sorted, 0.5)),
    }
}

/// Pairs labelled as ties: a good model gives them small gaps.
#[derive(Debug, Clone, Default)]
pub struct Ties {
    abs_gaps: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TieStats {
    pub n: usize,
    /// Mean and median of `|r_1 − r_2|` over tie pairs.
    pub mean_abs_gap: Option<f64>,
    pub median_abs_gap: Option<f64>,
}

impl Metric for Ties {
    type Output = TieStats;
    fn update(&mut self, pair: &ScoredPair) {
        if pair.tie {
            self.abs_gaps.push(pair.gap().abs());
        }
    }
    fn compute(&self) -> TieStats {
        let r = gap_report(&self.abs_gaps);
        TieStats {
            n: r.n,
            mean_abs_gap: r.mean,
            median_abs_gap: r.median,
        }
    }
    fn clear(&mut self) {
        self.abs_gaps.clear();
    }
}

/// Every pairwise metric at once: what `rewardkit eval` reports for a set of pairs.
#[derive(Debug, Clone, Default)]
pub struct PairMetrics {
    pairs: usize,
    accuracy: Accuracy,
    gap: RewardGap,
    calibration: Calibration,
    ties: Ties,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairReport {
    /// All pairs, ties included.
    pub pairs: usize,
    pub accuracy: AccuracyReport,
    pub gap: GapReport,
    pub calibration: CalibrationReport,
    pub ties: TieStats,
}

impl Metric for PairMetrics {
    type Output = PairReport;
    fn update(&mut self, pair: &ScoredPair) {
        self.pairs += 1;
        self.accuracy.update(pair);
        self.gap.update(pair);
        self.calibration.update(pair);
        self.ties.update(pair);
    }
    fn compute(&self) -> PairReport {
        PairReport {
            pairs: self.pairs,
            accuracy: self.accuracy.compute(),
            gap: self.gap.compute(),
            calibration: self.calibration.compute(),
            ties: self.ties.compute(),
        }
    }
    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Any metric, overall and per subset.
#[derive(Debug, Clone, Default)]
pub struct BySubset<M> {
    overall: M,
    subsets: std::collections::BTreeMap<String, M>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubsetReport<O> {
    pub overall: O,
    /// One entry per subset name; empty when no pair has a subset.
    pub subsets: std::collections::BTreeMap<String, O>,
}

impl<M: Metric + Default> Metric for BySubset<M> {
    type Output = SubsetReport<M::Output>;
    fn update(&mut self, pair: &ScoredPair) {
        self.overall.update(pair);
        if let Some(s) = &pair.subset {
            self.subsets.entry(s.clone()).or_default().update(pair);
        }
    }
    fn compute(&self) -> Self::Output {
        SubsetReport {
            overall: self.overall.compute(),
            subsets: self
                .subsets
                .iter()
                .map(|(k, m)| (k.clone(), m.compute()))
                .collect(),
        }
    }
    fn clear(&mut self) {
        self.overall.clear();
        self.subsets.clear();
    }
}
