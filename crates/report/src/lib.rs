//! # rewardkit-report
//!
//! What people read: plain-text tables of data statistics and evaluation results, and SVG plots
//! (written by hand, no drawing dependency: every figure is a small, diffable text file).
//!
//! ```
//! use rewardkit_eval::{evaluate, ScoredPair};
//! use rewardkit_report::reliability_svg;
//!
//! let pairs = [ScoredPair::new(1.0, 0.0), ScoredPair::new(0.0, 2.0), ScoredPair::new(3.0, 0.5)];
//! let report = evaluate(&pairs);
//! let svg = reliability_svg(&report.overall.calibration, "example");
//! assert!(svg.starts_with("<svg"));
//! ```

pub mod audit;
pub mod audit_compare;
pub mod goodhart;
pub mod goodhart_rl;
pub mod svg;
pub mod tables;

pub use audit::{audit_flags_text, audit_markdown, audit_plots};
pub use audit_compare::{compare_markdown, compare_text};
pub use goodhart::{analysis_markdown, demo_markdown, demo_text, goodhart_svg};
pub use goodhart_rl::{goodhart_rl_svg, rl_markdown, rl_rows, rl_text, RL_HEADER};
pub use svg::{reliability_svg, Plot};
pub use tables::{eval_table, fmt_num, grad_weight_histogram, stats_table};
