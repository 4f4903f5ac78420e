//! The settings of SFT and RL runs: the schema of their `--config` files (TOML or JSON) and of
//! the `config` every checkpoint records.

use serde::{Deserialize, Serialize};

use rewardkit_train::OptimConfig;

use crate::kl::KlEstimator;

/// Supervised fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftConfig {
    /// Rows per optimizer step.
    pub batch_size: usize,
    /// Passes over the rows (fractions allowed).
    pub epochs: f64,
    /// Stop after this many optimizer steps (overrides `epochs`).
    pub max_steps: Option<usize>,
    /// Tokens per row (prompt + response + EOS) at most: the prompt's start is cut first, then
    /// the response's end. `None`: no limit beyond the model's positions.
    pub max_length: Option<usize>,
    pub optim: OptimConfig,
    /// Seed of the row order.
    pub seed: u64,
    /// Write a log line every N steps.
    pub log_every: usize,
    /// Save a checkpoint every N steps (0 = only at the end).
    pub save_every: usize,
    /// Keep at most this many `checkpoint-N` folders (the newest).
    pub save_total_limit: usize,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            batch_size: 8,
            epochs: 1.0,
            max_steps: None,
            max_length: None,
            // Exactly OptimConfig's defaults, so an `[sft.optim]` table that sets some fields gets
            // the same values for the others as no table at all.
            optim: OptimConfig::default(),
            seed: 42,
            log_every: 1,
            save_every: 0,
            save_total_limit: 2,
        }
    }
}

impl SftConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("batch_size", self.batch_size),
            ("log_every", self.log_every),
            ("save_total_limit", self.save_total_limit),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.max_steps == Some(0) || self.max_length.is_some_and(|l| l < 2) {
            return Err("max_steps must be at least 1 and max_length at least 2".into());
        }
        if self.max_steps.is_none() && !(self.epochs > 0.0 && self.epochs.is_finite()) {
            return Err("epochs must be positive".into());
        }
        self.optim.validate()
    }
}

/// On-policy RL against a reward, with a KL penalty to a frozen reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlConfig {
    /// B: prompts per step.
    pub prompts_per_step: usize,
    /// k: samples per prompt (at least 2: the leave-one-out baseline needs another sample).
    pub samples_per_prompt: usize,
    /// New tokens per sample at most (EOS included).
    pub max_new_tokens: usize,
    /// Sampling temperature (> 0); the log-probabilities of the objective are taken at it too.
    pub temperature: f64,
    /// Nucleus sampling (1 = off). Below 1 the samples come from a truncated distribution while
    /// the objective's log-probabilities are the untruncated ones (as in TRL).
    pub top_p: f64,
    /// β, the weight of the KL penalty (0 = none).
    pub beta: f64,
    pub kl_estimator: KlEstimator,
    /// Divide each group's RLOO advantages by the group's reward std (GRPO).
    pub group_std: bool,
    /// μ: passes of PPO updates over each step's samples.
    pub ppo_epochs: usize,
    /// Optimizer steps per pass (the samples split into this many minibatches).
    pub minibatches: usize,
    /// ε of the PPO clip, ratio kept in [1 − ε, 1 + ε].
    pub clip_range: f64,
    /// Whiten the rewards over each step's samples (after clipping, before the KL penalty).
    pub whiten_rewards: bool,
    /// Clip the scores to [−c, c] before anything else.
    pub reward_clip: Option<f64>,
    /// Steps (each: generate, score, update).
    pub max_steps: usize,
    /// Stop once a step's mean KL (nats per sequence) exceeds this.
    pub target_kl: Option<f64>,
    /// Sequences per forward pass (memory, not results: gradients are summed).
    pub forward_batch_size: usize,
    pub optim: OptimConfig,
    /// Seed of the prompt order and of every sample.
    pub seed: u64,
    /// Save a checkpoint every N steps (0 = only at the end).
    pub save_every: usize,
    /// Keep at most this many `checkpoint-N` folders (the newest).
    pub save_total_limit: usize,
    /// With held-out prompts and a gold function: evaluate before every N-th step (1 = every
    /// step; 0 = never) and once more at the end ([`crate::evaluate`]).
    pub eval_every: usize,
    /// Samples per held-out prompt of an evaluation (at least 2, for its standard error).
    pub eval_samples_per_prompt: usize,
}

impl Default for RlConfig {
    fn default() -> Self {
        RlConfig {
            prompts_per_step: 8,
            samples_per_prompt: 4,
            max_new_tokens: 32,
            temperature: 1.0,
            top_p: 1.0,
            beta: 0.05,
            kl_estimator: KlEstimator::K1InReward,
            group_std: false,
            ppo_epochs: 1,
            minibatches: 1,
            clip_range: 0.2,
            whiten_rewards: false,
            reward_clip: None,
            max_steps: 100,
            target_kl: None,
            forward_batch_size: 16,
            // OptimConfig's defaults (see SftConfig's).
            optim: OptimConfig::default(),
            seed: 42,
            save_every: 0,
            save_total_limit: 2,
            eval_every: 1,
            eval_samples_per_prompt: 4,
        }
    }
}

impl RlConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("prompts_per_step", self.prompts_per_step),
            ("max_new_tokens", self.max_new_tokens),
            ("ppo_epochs", self.ppo_epochs),
            ("minibatches", self.minibatches),
            ("max_steps", self.max_steps),
            ("forward_batch_size", self.forward_batch_size),
            ("save_total_limit", self.save_total_limit),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.samples_per_prompt < 2 {
            return Err("samples_per_prompt must be at least 2 (RLOO's baseline)".into());
        }
        if self.eval_samples_per_prompt < 2 {
            return Err(
                "eval_samples_per_prompt must be at least 2 (for the standard error)".into(),
            );
        }
        if self.minibatches > self.prompts_per_step * self.samples_per_prompt {
            return Err("minibatches must not exceed prompts_per_step × samples_per_prompt".into());
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature must be > 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return Err(format!("beta must be ≥ 0, got {}", self.beta));
        }
        if !(self.clip_range > 0.0 && self.clip_range.is_finite()) {
            return Err(format!("clip_range must be > 0, got {}", self.clip_range));
        }
        let positive = |v: Option<f64>| v.is_none_or(|v| v > 0.0 && v.is_finite());
        if !positive(self.reward_clip) || !positive(self.target_kl) {
            return Err("reward_clip and target_kl must be > 0".into());
        }
        self.optim.validate()
    }

    /// Optimizer steps of the whole run.
    pub fn optimizer_steps(&self) -> usize {
        self.max_steps * self.ppo_epochs * self.minibatches
    }

    /// The settings a resume must match: all but how often to save and how many to keep.
    pub(crate) fn identity(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("save_every");
            o.remove("save_total_limit");
        }
        v
    }

    /// Reads a config file (TOML for a `.toml` name, else JSON); `origin` names it in errors.
    pub fn parse(text: &str, toml: bool, origin: &str) -> Result<Self, String> {
        parse_config(text, toml, origin).and_then(|c: RlConfig| {
            c.validate().map_err(|e| format!("{origin}: {e}"))?;
            Ok(c)
        })
    }
}

impl SftConfig {
    /// The settings a resume must match: all but how often to log and save.
    pub(crate) fn identity(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("save_every");
            o.remove("save_total_limit");
            o.remove("log_every");
        }
        v
    }

    /// Reads a config file (TOML for a `.toml` name, else JSON); `origin` names it in errors.
    pub fn parse(text: &str, toml: bool, origin: &str) -> Result<Self, String> {
        parse_config(text, toml, origin).and_then(|c: SftConfig| {
            c.validate().map_err(|e| format!("{origin}: {e}"))?;
            Ok(c)
        })
    }
}

pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(
    text: &str,
    toml: bool,
    origin: &str,
) -> Result<T, String> {
    if toml {
        ::toml::from_str(text).map_err(|e| format!("{origin}: invalid config: {e}"))
    } else {
        serde_json::from_str(text).map_err(|e| format!("{origin}: invalid config: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file that sets one optimizer field gets the defaults of the others, the same as
    /// a file without the table (the flags' defaults).
    #[test]
    fn partial_optimizer_tables_keep_the_defaults() {
        let c: RlConfig = toml::from_str("[optim]\nlearning_rate = 0.5\n").unwrap();
        let want = OptimConfig {
            learning_rate: 0.5,
            ..RlConfig::default().optim
        };
        assert_eq!(c.optim, want);
        let c: SftConfig = toml::from_str("[optim]\nlearning_rate = 0.5\n").unwrap();
        assert_eq!(c.optim.schedule, SftConfig::default().optim.schedule);
    }
}
