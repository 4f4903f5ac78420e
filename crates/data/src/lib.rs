//! # rewardkit-data
//!
//! Human preference data, read exactly right. This crate holds the plain types every other
//! rewardkit crate speaks ([`PreferencePair`], [`Text`], [`Location`]), the [`Scorer`] trait that
//! evaluation and audits depend on, and the readers:
//!
//! - **Layouts** ([`Format`]): TRL (`prompt`/`chosen`/`rejected`, plain or conversational),
//!   HH-RLHF transcripts (split at the last Assistant turn), labelled pairwise with ties (PandaLM);
//!   soft labels (the probability that chosen is better, `p_chosen` or [`LoadOptions::label_field`]).
//! - **Files**: `.jsonl`, `.jsonl.gz`, `.json` arrays, Parquet — recognised from their content,
//!   read as one stream (`-` is standard input; pipes work). Records are parsed strictly: a key
//!   given twice, or a bare `NaN`, is an error naming `FILE:LINE`.
//! - **Nothing is lost**: a malformed record is an error naming `FILE:LINE`, or with
//!   [`LoadOptions::skip_invalid`] a counted, listed drop; identical and duplicate pairs are
//!   dropped with a reason, and `rows_read == pairs + dropped` always holds.
//! - **Information-free edits** ([`Probe`], [`ProbePhrases`]): filler, flattering openers,
//!   hedges, lists and the like, which the audit probes with and the trainer's penalties use.
//! - **Splits** ([`SplitConfig`]) by a stable hash of the content and a seed, independent of
//!   file order.
//!
//! ```no_run
//! use rewardkit_data::{load, LoadOptions, SplitConfig, DataStats};
//!
//! let data = load(&["train.jsonl.gz"], &LoadOptions::default())?;
//! println!("{} rows → {} pairs", data.report.rows_read, data.report.pairs);
//! let stats = DataStats::of(&data);
//! println!("pick-the-longer accuracy: {:?}", stats.pick_longer.accuracy);
//! let (train, eval) = SplitConfig { eval_fraction: 0.2, ..Default::default() }.split(data.pairs);
//! # Ok::<(), rewardkit_data::DataError>(())
//! ```

pub mod error;
pub mod format;
pub mod hh;
pub mod json;
pub mod load;
pub mod probes;
pub mod records;
pub mod rng;
pub mod scorer;
pub mod split;
pub mod stats;
pub mod text;
pub mod types;
pub mod wire;

pub use error::{json_type, DataError, RowError, RowErrorKind};
pub use format::{DropReason, Format, DEFAULT_LABEL_FIELD};
pub use load::{
    load, subset_name, Dataset, DroppedRow, FileReport, LoadOptions, LoadReport, RowNote,
};
pub use probes::{Probe, ProbePhrases};
pub use records::{for_each_record, FileKind, Record};
pub use rng::Rng;
pub use scorer::{score_pairs, text_field, MissingScore, PairScores, ScoreTable, Scorer};
pub use split::{Side, SplitConfig, SplitKey, StableHasher};
pub use stats::{quantile_sorted, DataStats, Distribution, LengthStats, LongerBaseline};
pub use types::{Location, Message, Position, PreferencePair, Text, CORRECTION_SOURCE};
