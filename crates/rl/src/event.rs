//! What the SFT and RL loops tell their caller (progress bars, logs, curves).

use std::path::Path;

/// An event of a run whose per-step log line is `L` ([`crate::SftStepLog`],
/// [`crate::RlStepLog`]). The observer returns `ControlFlow::Break` to stop after the step.
pub enum Event<'a, L> {
    Start {
        total_steps: usize,
        /// The step the run resumed at (0 for a fresh run).
        resumed_at: usize,
    },
    Step(&'a L),
    Saved(&'a Path),
    /// A stop was asked for (observer, stop flag or a stop rule); the run saves a checkpoint at
    /// this step and returns.
    Stopping {
        step: usize,
    },
}
