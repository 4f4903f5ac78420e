//! Descriptive statistics of a preference dataset (`rewardkit data stats`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::load::Dataset;
use crate::types::PreferencePair;

/// A distribution of lengths (or any non-negative counts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    pub n: usize,
    pub min: f64,
    pub p10: f64,
    pub median: f64,
    pub mean: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Distribution {
    /// Summary of `values`; `None` when empty. Quantiles interpolate linearly between order
    /// statistics (numpy's default, "type 7").
    pub fn of(values: &[f64]) -> Option<Distribution> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Distribution {
            n: v.len(),
            min: v[0],
            p10: quantile_sorted(&v, 0.10),
            median: quantile_sorted(&v, 0.5),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p90: quantile_sorted(&v, 0.90),
            p99: quantile_sorted(&v, 0.99),
            max: v[v.len() - 1],
        })
    }
}

/// The `q`-quantile of sorted values, linear interpolation (numpy's default).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no values");
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (a, b, t) = (sorted[lo], sorted[hi], pos - lo as f64);
    let step = b - a;
    if step.is_finite() {
        a + step * t
    } else {
        // Values of opposite signs near f64::MAX: their difference overflows, this does not.
        a * (1.0 - t) + b * t
    }
}

/// Length distributions of prompts and responses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthStats {
    pub prompt: Option<Distribution>,
    pub chosen: Option<Distribution>,
    pub rejected: Option<Distribution>,
}

impl LengthStats {
    /// Lengths by `len` over the pairs.
    pub fn of(pairs: &[PreferencePair], len: impl Fn(&crate::Text) -> f64) -> Self {
        let collect = |f: &dyn Fn(&PreferencePair) -> &crate::Text| {
            Distribution::of(&pairs.iter().map(|p| len(f(p))).collect::<Vec<_>>())
        };
        LengthStats {
            prompt: collect(&|p| &p.prompt),
            chosen: collect(&|p| &p.chosen),
            rejected: collect(&|p| &p.rejected),
        }
    }
}

/// How often the human-preferred response is the longer one, over pairs that are not ties.
/// `accuracy` is that of the "pick the longer" baseline, with equal lengths counted as wrong
/// (the same rule as for equal scores).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LongerBaseline {
    pub pairs: u64,
    pub chosen_longer: u64,
    pub rejected_longer: u64,
    pub same_length: u64,
    pub accuracy: Option<f64>,
}

impl LongerBaseline {
    /// Counts over the non-tie pairs, by character length.
    pub fn of(pairs: &[PreferencePair]) -> Self {
        let mut b = LongerBaseline {
            pairs: 0,
            chosen_longer: 0,
            rejected_longer: 0,
            same_length: 0,
            accuracy: None,
        };
        for p in pairs.iter().filter(|p| !p.tie) {
            b.pairs += 1;
            match p.chosen.char_len().cmp(&p.rejected.char_len()) {
                std::cmp::Ordering::Greater => b.chosen_longer += 1,
                std::cmp::Ordering::Less => b.rejected_longer += 1,
                std::cmp::Ordering::Equal => b.same_length += 1,
            }
        }
        if b.pairs > 0 {
            b.accuracy = Some(b.chosen_longer as f64 / b.pairs as f64);
        }
        b
    }
}

/// Everything `rewardkit data stats` reports that needs no tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataStats {
    #[serde(flatten)]
    pub load: crate::LoadReport,
    /// Pairs per subset (pairs without one are under `""`).
    pub subsets: BTreeMap<String, u64>,
    /// Pairs per `source` (how a pair that no labeller judged was made: `data augment`'s
    /// `augment/…`); labelled pairs are under `""`.
    pub sources: BTreeMap<String, u64>,
    pub chars: LengthStats,
    pub words: LengthStats,
    pub pick_longer: LongerBaseline,
}

impl DataStats {
    pub fn of(dataset: &Dataset) -> Self {
        let mut subsets = BTreeMap::new();
        let mut sources = BTreeMap::new();
        for p in &dataset.pairs {
            *subsets
                .entry(p.subset.clone().unwrap_or_default())
                .or_default() += 1;
            *sources
                .entry(p.source.clone().unwrap_or_default())
                .or_default() += 1;
        }
        DataStats {
            load: dataset.report.clone(),
            subsets,
            sources,
            chars: LengthStats::of(&dataset.pairs, |t| t.char_len() as f64),
            words: LengthStats::of(&dataset.pairs, |t| t.word_len() as f64),
            pick_longer: LongerBaseline::of(&dataset.pairs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        // numpy.quantile([1, 2, 3, 4], q) with the default (linear) method: positions
        // q·(n − 1) = 0.3, 1.5, 2.7 → 1.3, 2.5, 3.7.
        let d = Distribution::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert!((d.p10 - 1.3).abs() < 1e-12);
        assert!((d.median - 2.5).abs() < 1e-12);
        assert!((d.p90 - 3.7).abs() < 1e-12);
        assert!((d.p99 - 3.97).abs() < 1e-12);
        assert_eq!((d.min, d.max, d.mean, d.n), (1.0, 4.0, 2.5, 4));
        assert_eq!(Distribution::of(&[]), None);
    }

    #[test]
    fn pick_longer_counts_equal_lengths_as_wrong_and_skips_ties() {
        let mut tie = PreferencePair::new("p", "long response", "x");
        tie.tie = true;
        let pairs = vec![
            PreferencePair::new("p", "longer one", "short"),
            PreferencePair::new("p", "short", "longer one"),
            PreferencePair::new("p", "same", "size"),
            tie,
        ];
        let b = LongerBaseline::of(&pairs);
        assert_eq!(
            (b.pairs, b.chosen_longer, b.rejected_longer, b.same_length),
            (3, 1, 1, 1)
        );
        assert_eq!(b.accuracy, Some(1.0 / 3.0));
    }
}
