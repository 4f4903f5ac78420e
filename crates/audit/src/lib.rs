//! # rewardkit-audit
//!
//! Finds a reward model's exploitable flaws before a policy does: longer answers, flattery,
//! agreement with the user, hedging, lists and bold text, repetition. Depends only on the
//! [`rewardkit_data::Scorer`] trait, so any model, or a file of precomputed scores
//! ([`rewardkit_data::ScoreTable`]), can be audited.
//!
//! - [`features`]: what a response looks like (length, hedges, flattery, sentiment, formatting,
//!   repetition, refusals …), from lexicons kept as data files in `lexicons/`;
//! - [`stats`]: Pearson and Spearman correlations with bootstrap intervals, a ridge probe, sign
//!   and binomial tests, Holm's correction;
//! - [`probes`]: counterfactual edits that add no information;
//! - [`sycophancy`]: agreeing with a user who is wrong, on Anthropic's sycophancy evals, GSM8K
//!   and TruthfulQA;
//! - [`run`]: the audit — plan, score once, analyse, flag;
//! - [`augment`]: the data-level fix — correction pairs from training questions and
//!   counterfactual pairs from the training data, kept apart from what the audit tests;
//! - [`compare`]: two audits check by check, with the interval of each difference (what an
//!   intervention fixed and what it broke).
//!
//! ```
//! use rewardkit_audit::{AuditConfig, Plan};
//! use rewardkit_data::{PreferencePair, ScoreTable};
//!
//! // A "model" that pays for length: score = number of characters.
//! let pairs: Vec<PreferencePair> = (0..40)
//!     .map(|i| {
//!         let short = format!("Answer {i}.");
//!         let long = format!("Answer {i}. {}", "More words here. ".repeat(i % 7 + 1));
//!         let (chosen, rejected) = if i % 2 == 0 { (long, short) } else { (short, long) };
//!         PreferencePair::new(format!("Question {i}?"), chosen, rejected)
//!     })
//!     .collect();
//! let config = AuditConfig { bootstrap: 200, ..Default::default() };
//! let plan = Plan::new(&pairs, Vec::new(), config).unwrap();
//! let table = ScoreTable::from_rows(
//!     "length",
//!     plan.requests().iter().map(|(p, r)| (p.clone(), r.clone(), r.char_len() as f64)),
//! );
//! let scores = plan.score(&table, |_, _| {}).unwrap();
//! let report = plan.analyze(&scores, "length".into(), None);
//! assert!(report.flags.iter().any(|f| f.subject == "chars"));
//! ```

use std::path::PathBuf;

pub mod augment;
pub mod compare;
pub mod features;
/// The counterfactual edits, which live in `rewardkit-data` (the trainer uses them too).
pub use rewardkit_data::probes;
pub mod run;
pub mod stats;
pub mod sycophancy;

pub use augment::{augment, AugmentConfig, AugmentReport, Augmentation};
pub use compare::{compare, Change, Comparison};
pub use features::{Feature, FeatureExtractor, Features};
pub use probes::Probe;
pub use run::{AuditConfig, AuditReport, Check, Flag, Plan, Scores, Severity};
pub use sycophancy::{PromptFormat, SycophancyItem, SycophancySources};

/// Errors of an audit.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An error from the operating system, with the path it concerns.
    #[error(transparent)]
    Io(#[from] rewardkit_io::IoError),
    /// A sycophancy source file that is not what it should be.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    #[error(transparent)]
    Data(#[from] rewardkit_data::DataError),
    #[error("scoring with {scorer} failed: {source}")]
    Scorer {
        scorer: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("nothing to audit: {0}")]
    Empty(String),
    /// Settings that cannot work (a ratio out of range, an edit kept for the audit).
    #[error("invalid settings: {0}")]
    Config(String),
}
