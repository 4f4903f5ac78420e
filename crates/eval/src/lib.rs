//! # rewardkit-eval
//!
//! Measuring a reward model honestly, from its scores alone (no tensors here: scores from any
//! model, in any language, can be evaluated).
//!
//! Every metric implements [`Metric`] (`update` / `compute` / `clear`), so training logs,
//! evaluation and audits share one implementation:
//! - [`Accuracy`]: pairwise accuracy with a 95% Wilson interval (equal scores count as wrong;
//!   labelled ties are left out and reported by [`Ties`]);
//! - [`RewardGap`]: mean, std and median of `r_chosen − r_rejected`;
//! - [`Calibration`]: ECE over 10 bins of `σ(|Δ|)`, reliability table, Brier, log loss, and the
//!   fitted temperature with the ECE after it;
//! - [`PairMetrics`] bundles them; [`BySubset`] repeats any metric per subset.
//!
//! ```
//! use rewardkit_eval::{BySubset, Metric, PairMetrics, ScoredPair};
//!
//! let mut m = BySubset::<PairMetrics>::default();
//! m.update(&ScoredPair::new(2.0, 0.5));
//! m.update(&ScoredPair::new(0.0, 1.0));
//! let report = m.compute();
//! assert_eq!(report.overall.accuracy.accuracy, Some(0.5));
//! ```

pub mod baseline;
pub mod calibration;
pub mod metric;
pub mod scores;
pub mod stats;

pub use baseline::Baseline;
pub use calibration::{
    brier, calibration_of, ece_and_bins, fit_temperature, log_loss, soft_labels, Calibration,
    CalibrationReport, ReliabilityBin, SoftLabelReport, TemperatureFit, BINS,
};
pub use metric::{
    Accuracy, AccuracyReport, BySubset, GapReport, Metric, PairMetrics, PairReport, RewardGap,
    ScoredPair, SubsetReport, TieStats, Ties,
};
pub use scores::{read_scores, scored_pairs, write_scores};

/// The evaluation report: which scorer, and every metric overall and per subset.
pub type EvalReport = SubsetReport<PairReport>;

/// What `rewardkit eval --json` prints: the scorer, the inputs, and the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvalSummary {
    pub scorer: String,
    pub inputs: Vec<String>,
    #[serde(flatten)]
    pub report: EvalReport,
}

/// Evaluates scored pairs with every metric, overall and per subset.
pub fn evaluate<'a>(pairs: impl IntoIterator<Item = &'a ScoredPair>) -> EvalReport {
    let mut m = BySubset::<PairMetrics>::default();
    m.update_all(pairs);
    m.compute()
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Data(#[from] rewardkit_data::DataError),
    #[error("{0}: no score rows")]
    Empty(String),
}

impl From<rewardkit_data::RowError> for EvalError {
    fn from(e: rewardkit_data::RowError) -> Self {
        EvalError::Data(e.into())
    }
}
