//! Training hyperparameters, saved in every checkpoint's `rewardkit.json`.

use serde::{Deserialize, Serialize};

use crate::penalty::Penalty;

/// Learning-rate decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Schedule {
    /// Linear decay to 0 at the last step (transformers' default).
    Linear,
    /// Half-cosine decay to 0.
    Cosine,
    /// No decay.
    Constant,
}

/// What training does with pairs labelled as ties.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Ties {
    /// Leave them out (counted in the summary's `skipped_ties`), as TRL does.
    #[default]
    Skip,
    /// Train them as a soft label of ½: the loss pulls the two rewards together.
    Train,
}

/// How a reward model is trained. Defaults follow TRL's `RewardConfig` where it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Pairs per optimizer micro-batch (each pair is two sequences).
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Passes over the training pairs (fractions allowed).
    pub epochs: f64,
    /// Stop after this many optimizer steps (overrides `epochs`).
    pub max_steps: Option<usize>,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    /// Warmup steps (linear from 0); `warmup_ratio` is used when this is 0.
    pub warmup_steps: usize,
    pub warmup_ratio: f64,
    pub schedule: Schedule,
    /// Clip the global gradient norm to this (0 = no clipping).
    pub max_grad_norm: f64,
    /// TRL's `center_rewards_coefficient`: adds `c · mean((r_chosen + r_rejected)²)`.
    pub center_rewards_coefficient: Option<f64>,
    /// Use a pair's `margin` in the loss, `−logσ(Δ − m)`, when present.
    pub use_margin: bool,
    /// Train towards a pair's soft label (`p_chosen`, the probability that chosen is better)
    /// with the cross-entropy of [`crate::bradley_terry`]; `false` trains every non-tie pair as
    /// a hard label (p = 1).
    #[serde(skip_serializing_if = "is_true")]
    pub use_soft_labels: bool,
    /// Ties in the training data: skipped, or trained as p = ½.
    #[serde(skip_serializing_if = "is_skip")]
    pub ties: Ties,
    /// Tokens per sequence at most; `None` = the model's own limit (its `rewardkit.json`, else
    /// `max_position_embeddings`). The trainer's caller records the effective value here.
    pub max_length: Option<usize>,
    /// Keep dropout active in training (TRL disables it by default: `disable_dropout=True`).
    pub dropout: bool,
    /// Gradient checkpointing (decoders): keep only each block's input in the forward pass and
    /// recompute the block in the backward pass; much less memory, about a third more compute.
    /// Same gradients up to rounding, so it may differ between a run and its resume.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gradient_checkpointing: bool,
    /// Causal decoders read at the last token: a pair's chosen and rejected share one row after
    /// their prompt, which is computed once in the forward and backward passes
    /// ([`rewardkit_tokenize::pack_shared_prefix`]); the gradients equal those of separate rows
    /// up to rounding. With dropout on, both responses then see one dropout draw of the prompt.
    /// `false`: each sequence in a row of its own. Ignored for encoders.
    #[serde(skip_serializing_if = "is_true")]
    pub shared_prompt: bool,
    /// No padding: a micro-batch's sequences packed side by side in one row, each seeing only
    /// itself (with `shared_prompt`, each pair after its prompt), and held-out pairs scored the
    /// same way ([`rewardkit_tokenize::pack`]). The batch is still `batch_size` pairs, so the
    /// optimizer's steps are those of padded rows; the gradients equal theirs up to rounding.
    /// With dropout on, the draws differ from padded rows'.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub packing: bool,
    pub seed: u64,
    /// Log every N optimizer steps.
    pub log_every: usize,
    /// Evaluate on held-out pairs every N steps (0 = only at the end).
    pub eval_every: usize,
    /// Save a checkpoint every N steps (0 = only at the end).
    pub save_every: usize,
    /// Keep at most this many `checkpoint-N` folders (the newest).
    pub save_total_limit: usize,
    /// Sequences per forward pass when evaluating.
    pub eval_batch_size: usize,
    /// Terms added to the Bradley-Terry loss against reward hacking ([`crate::penalty`]): at
    /// most one of each kind. In a TOML config, `[[train.penalties]]` tables with a `kind`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub penalties: Vec<Penalty>,
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_skip(t: &Ties) -> bool {
    *t == Ties::Skip
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 8,
            grad_accum: 1,
            epochs: 1.0,
            max_steps: None,
            learning_rate: 2e-5,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            warmup_steps: 0,
            warmup_ratio: 0.0,
            schedule: Schedule::Linear,
            max_grad_norm: 1.0,
            center_rewards_coefficient: None,
            use_margin: true,
            use_soft_labels: true,
            ties: Ties::Skip,
            max_length: None,
            dropout: false,
            gradient_checkpointing: false,
            shared_prompt: true,
            packing: false,
            seed: 42,
            log_every: 10,
            eval_every: 0,
            save_every: 0,
            save_total_limit: 2,
            eval_batch_size: 32,
            penalties: Vec::new(),
        }
    }
}

impl TrainConfig {
    /// Checks values a user could get wrong.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
            ("eval_batch_size", self.eval_batch_size),
            ("log_every", self.log_every),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.max_length == Some(0) {
            return Err("max_length must be at least 1".into());
        }
        if self.max_steps == Some(0) {
            return Err("max_steps must be at least 1 (leave it out to train for `epochs`)".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(format!(
                "learning_rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if self.epochs.is_nan() || self.epochs <= 0.0 && self.max_steps.is_none() {
            return Err("epochs must be positive".into());
        }
        if !(0.0..1.0).contains(&self.adam_beta1) || !(0.0..1.0).contains(&self.adam_beta2) {
            return Err("adam betas must be in [0, 1)".into());
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err("warmup_ratio must be in [0, 1]".into());
        }
        for (i, p) in self.penalties.iter().enumerate() {
            p.validate()?;
            if self.penalties[..i].iter().any(|q| q.name() == p.name()) {
                return Err(format!("penalty {} is given twice", p.name()));
            }
        }
        Ok(())
    }

    /// The penalty of kind `name`, if the config has one.
    pub fn penalty(&self, name: &str) -> Option<&Penalty> {
        self.penalties.iter().find(|p| p.name() == name)
    }

    /// Learning rate at optimizer step `step` (1-based) of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        self.optim().lr_at(step, total)
    }

    /// The optimizer settings of this config.
    pub fn optim(&self) -> OptimConfig {
        OptimConfig {
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            adam_beta1: self.adam_beta1,
            adam_beta2: self.adam_beta2,
            adam_eps: self.adam_eps,
            warmup_steps: self.warmup_steps,
            warmup_ratio: self.warmup_ratio,
            schedule: self.schedule,
            max_grad_norm: self.max_grad_norm,
        }
    }
}

/// AdamW, its learning-rate schedule and gradient clipping: the optimizer settings every
/// trainer shares (reward models here, SFT and RL in `rewardkit-rl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    /// Warmup steps (linear from 0); `warmup_ratio` is used when this is 0.
    pub warmup_steps: usize,
    pub warmup_ratio: f64,
    pub schedule: Schedule,
    /// Clip the global gradient norm to this (0 = no clipping).
    pub max_grad_norm: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        TrainConfig::default().optim()
    }
}

impl OptimConfig {
    /// Checks values a user could get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(format!(
                "learning_rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.adam_beta1) || !(0.0..1.0).contains(&self.adam_beta2) {
            return Err("adam betas must be in [0, 1)".into());
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err("warmup_ratio must be in [0, 1]".into());
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm < 0.0 {
            return Err("max_grad_norm must be ≥ 0".into());
        }
        Ok(())
    }

    /// AdamW over `vars` with these settings.
    pub fn adamw(
        &self,
        vars: Vec<(String, candle_core::Var)>,
    ) -> Result<crate::optim::AdamW, crate::TrainError> {
        crate::optim::AdamW::new(
            vars,
            self.adam_beta1,
            self.adam_beta2,
            self.adam_eps,
            self.weight_decay,
        )
    }

    /// Learning rate at optimizer step `step` (1-based) of `total`: linear warmup, then the
    /// schedule's decay.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        let warmup = if self.warmup_steps > 0 {
            self.warmup_steps
        } else {
            (self.warmup_ratio * total as f64).ceil() as usize
        };
        if step <= warmup && warmup > 0 {
            return self.learning_rate * step as f64 / warmup as f64;
        }
        let decay_steps = total.saturating_sub(warmup).max(1) as f64;
        let progress = ((step - warmup) as f64 / decay_steps).clamp(0.0, 1.0);
        match self.schedule {
            Schedule::Constant => self.learning_rate,
            Schedule::Linear => self.learning_rate * (1.0 - progress),
            Schedule::Cosine => {
                self.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let c = TrainConfig {
            learning_rate: 1.0,
            warmup_steps: 2,
            ..Default::default()
        };
        // Warmup 1/2, 2/2; then linear decay over the remaining 8 steps: step 6 → 1 − 4/8.
        assert_eq!(c.lr_at(1, 10), 0.5);
        assert_eq!(c.lr_at(2, 10), 1.0);
        assert_eq!(c.lr_at(6, 10), 0.5);
        assert_eq!(c.lr_at(10, 10), 0.0);
        let cos = TrainConfig {
            schedule: Schedule::Cosine,
            ..c.clone()
        };
        assert!((cos.lr_at(6, 10) - 0.5).abs() < 1e-12); // cos(π/2) = 0
        let ratio = TrainConfig {
            warmup_steps: 0,
            warmup_ratio: 0.1,
            ..c
        };
        assert_eq!(ratio.lr_at(1, 20), 0.5); // ceil(0.1 · 20) = 2 warmup steps
        assert!(TrainConfig {
            batch_size: 0,
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
