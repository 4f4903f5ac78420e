//! # rewardkit-goodhart
//!
//! Measures Goodhart's law for reward models: proxy and gold reward under best-of-n pressure.
//!
//! - [`bon`]: the unbiased best-of-n estimator over a pool of samples, the KL of best-of-n,
//!   and proxy/gold curves over n;
//! - [`fit`]: the fitted law `R(d) = d(α − βd)`, d = √KL, and where gold peaks;
//! - [`rl`]: Goodhart under RL: per-step curves (`rl_curves.jsonl` rows), the RL law
//!   `R(d) = d(α − β·ln d)`, gold peaks, falls and drawdowns per run;
//! - [`rl_story`]: what `rewardkit demo rl` reports (the distilled decoder, the runs, the
//!   retraining rounds) and its story;
//! - [`combine`]: ensemble rules (mean, min, UWO) and the KL penalty;
//! - [`cycles`]: intransitive preferences and what they cost a Bradley-Terry fit;
//! - [`analysis`]: a scored pool under several selectors (proxy, ensemble rules, KL penalty):
//!   curves, fits, gold peaks and the gain of each mitigation;
//! - [`pool`]: pools of samples (the pool-row schema), GSM8K gold, gold-labelled pairs;
//! - [`story`]: what `rewardkit demo` reports, as plain types, and its story in a few lines.
//!
//! Everything here is plain numbers (no tensors, no candle): the demo that trains models in a
//! built-in world and fills a [`story::DemoReport`] is the `rewardkit-demo` crate.
//!
//! ```
//! use rewardkit_goodhart::bon::{bon_curve, default_ns, PromptPool};
//! use rewardkit_goodhart::fit::fit_rd;
//!
//! // One prompt, eight samples: the proxy keeps rising, gold peaks in the middle.
//! let proxy: Vec<f64> = (0..8).map(f64::from).collect();
//! let gold = vec![0.0, 1.0, 2.0, 3.0, 3.5, 3.0, 2.0, 0.0];
//! let curve = bon_curve(&[PromptPool { proxy, gold }], &default_ns(8));
//! assert_eq!(curve.last().unwrap().proxy, 7.0); // best-of-8 of 8 is the top sample
//! let r0 = curve[0].gold;
//! let pts: Vec<(f64, f64)> = curve.iter().map(|p| (p.sqrt_kl, p.gold - r0)).collect();
//! let fit = fit_rd(&pts).unwrap();
//! assert!(fit.beta > 0.0 && fit.n_star.is_some());
//! ```

pub mod analysis;
pub mod bon;
pub mod combine;
pub mod cycles;
pub mod fit;
pub mod pool;
pub mod rl;
pub mod rl_story;
pub mod story;
