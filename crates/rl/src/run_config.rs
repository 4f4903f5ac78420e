//! The whole configuration of an `sft` or `rl` command: the schema of its `--config` file
//! (TOML or JSON; the flags override it) and what its checkpoints record.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use rewardkit_goodhart::combine::Combine;
use rewardkit_model::LoraConfig;

use crate::config::{RlConfig, SftConfig};

/// `rewardkit sft`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftRunConfig {
    /// The starting policy: a `.gguf` file or an HF causal-LM folder.
    pub model: Option<PathBuf>,
    /// Row files (`prompt`, `response`).
    pub data: Vec<PathBuf>,
    /// Feed prompts as they are, even when the model has a chat template.
    pub raw_prompts: bool,
    pub out: Option<PathBuf>,
    pub sft: SftConfig,
    /// LoRA adapters on the policy (`lora.r > 0`): only they train.
    pub lora: LoraConfig,
}

/// `rewardkit rl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlRunConfig {
    /// The starting policy: a `.gguf` file or an HF causal-LM folder.
    pub model: Option<PathBuf>,
    /// The frozen reference (default: `model` loaded again).
    pub reference: Option<PathBuf>,
    /// Prompt files (`prompt`, optional `id`).
    pub prompts: Vec<PathBuf>,
    pub raw_prompts: bool,
    /// Reward model folders; more than one needs `combine`.
    pub reward_models: Vec<PathBuf>,
    /// A baseline scorer as the reward instead (`length`, `length-words`, `random[:SEED]`).
    pub reward_baseline: Option<String>,
    /// A running `rewardkit serve` as the reward instead (`http://HOST:PORT` or its
    /// `/v1/score` URL). Its API key is never part of the config (flag or environment only).
    pub reward_url: Option<String>,
    pub combine: Option<Combine>,
    /// Sequences per reward-model forward pass.
    pub reward_batch_size: usize,
    /// Gold: GSM8K's final-number check against this answers file (`question`, `answer`).
    pub gold_gsm8k: Option<PathBuf>,
    /// Gold: the mean score of this reward model.
    pub gold_model: Option<PathBuf>,
    /// Held-out prompt files: gold and the reward measured on them (`rl.eval_every`).
    pub eval_prompts: Vec<PathBuf>,
    pub out: Option<PathBuf>,
    pub rl: RlConfig,
    /// LoRA adapters on the policy (`lora.r > 0`): only they train, and the KL reference is the
    /// policy with its adapters off (no second copy) unless `reference` names another model.
    pub lora: LoraConfig,
}

impl SftRunConfig {
    pub fn parse(text: &str, toml: bool, origin: &str) -> Result<Self, String> {
        let c: SftRunConfig = crate::config::parse_config(text, toml, origin)?;
        c.sft.validate().map_err(|e| format!("{origin}: {e}"))?;
        Ok(c)
    }
}

impl RlRunConfig {
    pub fn parse(text: &str, toml: bool, origin: &str) -> Result<Self, String> {
        let c: RlRunConfig = crate::config::parse_config(text, toml, origin)?;
        c.rl.validate().map_err(|e| format!("{origin}: {e}"))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_read_the_same_config_and_unknown_fields_are_refused() {
        let t = RlRunConfig::parse(
            "model = \"m.gguf\"\nreward_models = [\"rm\"]\ncombine = { kind = \"min\" }\n\
             [rl]\nbeta = 0.1\nkl_estimator = \"k3-in-loss\"\n",
            true,
            "rl.toml",
        )
        .unwrap();
        let j = RlRunConfig::parse(
            r#"{"model": "m.gguf", "reward_models": ["rm"], "combine": {"kind": "min"},
                "rl": {"beta": 0.1, "kl_estimator": "k3-in-loss"}}"#,
            false,
            "rl.json",
        )
        .unwrap();
        assert_eq!(t, j);
        assert_eq!(t.rl.kl_estimator, crate::KlEstimator::K3InLoss);
        let e = RlRunConfig::parse("[rl]\nbetta = 1", true, "rl.toml").unwrap_err();
        assert!(e.contains("rl.toml") && e.contains("betta"), "{e}");
        let e = SftRunConfig::parse("[sft]\nbatch_size = 0", true, "s.toml").unwrap_err();
        assert!(e.contains("batch_size"), "{e}");
    }
}
