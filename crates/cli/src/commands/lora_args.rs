//! The LoRA flags shared by `train`, `sft` and `rl` (they set the run config's `lora` field).

use clap::Args;

use rewardkit_model::LoraConfig;

/// LoRA adapters: train low-rank updates of chosen linear layers instead of every weight.
#[derive(Args, Clone, Default)]
pub struct LoraArgs {
    /// Train LoRA adapters of this rank (r) on the --lora-targets layers, the base weights
    /// frozen (only the adapters, and a reward model's value head, train). Saved in PEFT's layout
    /// (adapter_config.json + adapter_model.safetensors, naming the base model's path); 0 = off.
    #[arg(long)]
    lora_rank: Option<usize>,
    /// LoRA alpha: the adapters' update is scaled by alpha / rank (default 8, PEFT's).
    #[arg(long)]
    lora_alpha: Option<f64>,
    /// Dropout on the adapters' input while training, in [0, 1) (default 0).
    #[arg(long)]
    lora_dropout: Option<f64>,
    /// Comma-separated module names that get adapters (e.g. q_proj,v_proj). Default PEFT's for
    /// the architecture: q_proj,v_proj (Llama, Qwen2), query,value (BERT), c_attn (GPT-2).
    #[arg(long, value_delimiter = ',')]
    lora_targets: Vec<String>,
}

impl LoraArgs {
    /// Sets the fields whose flags were given.
    pub fn apply(&self, c: &mut LoraConfig) -> Result<(), crate::Usage> {
        if let Some(r) = self.lora_rank {
            c.r = r;
        }
        if let Some(a) = self.lora_alpha {
            c.lora_alpha = a;
        }
        if let Some(p) = self.lora_dropout {
            c.lora_dropout = p;
        }
        if !self.lora_targets.is_empty() {
            c.target_modules.clone_from(&self.lora_targets);
        }
        c.validate()
            .map_err(|e| crate::Usage(format!("invalid LoRA settings: {e}")))
    }
}
