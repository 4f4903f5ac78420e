//! # rewardkit-demo
//!
//! `rewardkit demo`: Goodhart's law end to end in the built-in [`world`], from a seed, with
//! nothing downloaded.
//!
//! 1. **Labels**: a labeler that sometimes prefers the longer or the agreeing answer labels
//!    pairs of policy samples ([`LabelStats`](rewardkit_goodhart::story::LabelStats) counts the labels a bias decided).
//! 2. **Proxy**: a tiny BERT, trained from scratch on those labels, is measured on held-out
//!    pairs against the labels and against gold (correctness), and audited
//!    ([`rewardkit_audit`]): the bias in the labels shows up as flags.
//! 3. **Best-of-n**: a pool of policy samples is scored by the proxy, by an ensemble (the
//!    proxy and K − 1 members trained on bootstrap resamples with other seeds), by proxies
//!    retrained on gold labels of the proxy's own best-of-n picks (iterative retraining), and by
//!    a control trained on an unbiased labeler. [`rewardkit_goodhart::analysis`] turns the pool
//!    into curves: proxy reward keeps rising while gold peaks and falls.
//! 4. **Mitigations**: gold at the n the proxy favours, for every selector, against the plain
//!    proxy.
//!
//! KL-penalised selection is not part of the demo: it needs a reference policy, which the world
//! does not have (it is covered by real pools with log-probabilities, see
//! [`rewardkit_goodhart::analysis::Selector::KlPenalized`]).

//!
//! [`run`] returns a [`DemoReport`], the plain [`rewardkit_goodhart::story::DemoReport`] with
//! this crate's [`DemoConfig`]; `rewardkit-report` renders it without depending on candle. This
//! is the only Goodhart crate that trains models (it needs candle, the model, train and audit
//! crates).
//!
//! ```
//! use rewardkit_demo::world::{LabelerConfig, World, WorldConfig};
//!
//! // The world and a biased labeler: some labels are decided by length, not correctness.
//! let world = World::new(WorldConfig::default());
//! let biased = LabelerConfig { prefer_longer: 0.5, ..LabelerConfig::default() };
//! let (pairs, stats) = world.preference_pairs(200, &biased, 0);
//! assert_eq!((pairs.len(), stats.total()), (200, 200));
//! assert!(stats.longer > 0);
//! ```

pub mod decoder;
mod demo;
mod rl_demo;
mod rl_runs;
pub mod sycophancy;
pub mod world;

pub use demo::{run, DemoConfig, DemoError, DemoEvent, DemoReport, ModelShape, Training};
pub use rewardkit_goodhart::story::{LabelStats, ModelSummary, RoundSummary, Timings};
pub use rl_demo::{run_rl, RlDemoConfig, RlDemoOutput};
pub use rl_runs::RunsConfig;
