//! # rewardkit-rl
//!
//! Optimising a decoder policy ([`rewardkit_model::Policy`]: GPT-2, Llama, SmolLM2 GGUF, or a
//! tiny decoder from scratch) — the step a reward model exists for.
//!
//! - [`sft()`]: supervised fine-tuning on (prompt, response) rows, cross-entropy on the response
//!   tokens only;
//! - [`rl()`]: on-policy RL against any [`Reward`] (a reward model through
//!   [`ScorerReward`], an ensemble with a [`rewardkit_goodhart::Combine`] rule, a closure
//!   through [`FnReward`], a running `rewardkit serve` through [`UrlReward`]): each step
//!   B prompts × k samples, reward minus β·KL to a frozen
//!   reference ([`KlEstimator`]), advantages by RLOO with optional group standardisation
//!   ([`advantage`]), the PPO clipped objective over μ inner epochs ([`ppo`]); gold and the
//!   reward measured on held-out prompts with common random numbers ([`evaluate`]);
//! - both with the trainer's AdamW, warmup, clipping, run-folder policy ([`Start`]), atomic
//!   checkpoints and exact resume, a stop flag for signals, a JSONL log per step and an event
//!   per step for progress (libraries never print).
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use rewardkit_model::Policy;
//! use rewardkit_rl::{rl, Completion, FnReward, RlConfig, RlPrompt, RlRun};
//!
//! let policy = Policy::load("model.gguf".as_ref())?;
//! let reference = policy.snapshot()?;
//! let prompts = vec![RlPrompt::plain("2 + 2 =")];
//! // Reward: shorter is better (a toy).
//! let mut reward = FnReward::new("short", |rows: &[Completion]| {
//!     Ok(rows.iter().map(|c| -(c.response.len() as f64)).collect())
//! });
//! let config = RlConfig { max_steps: 10, ..Default::default() };
//! let run = RlRun::in_memory(&prompts);
//! let summary = rl(&policy, &reference, &config, &run, &mut reward, None, |_| ControlFlow::Continue(()))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod advantage;
pub mod config;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod event;
pub mod kl;
pub mod ppo;
pub mod reward;
pub mod rollout;
pub mod run_config;
pub mod run_dir;
pub mod sft;
pub mod trainer;
pub mod url_reward;

pub use config::{RlConfig, SftConfig};
pub use data::read_sft_rows;
pub use error::RlError;
pub use evaluate::RlEvalLog;
pub use event::Event;
pub use kl::KlEstimator;
pub use reward::{Completion, EnsembleReward, FnReward, Gsm8kGold, Reward, ScorerReward};
pub use rewardkit_train::{OptimConfig, Schedule, Start};
pub use rollout::Rollout;
pub use run_config::{RlRunConfig, SftRunConfig};
pub use sft::{sft, SftRow, SftRun, SftStepLog, SftSummary};
pub use trainer::{rl, RlPrompt, RlRun, RlSession, RlStepLog, RlSummary, StepOutput, StopReason};
pub use url_reward::{UrlReward, UrlRewardConfig};
