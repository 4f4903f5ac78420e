//! LoRA adapters on linear layers: `y = x Wᵀ + b + (alpha/r)·dropout(x) Aᵀ Bᵀ`, `A` `[r, in]`
//! initialised as PEFT does (kaiming-uniform with `a = √5`, i.e. U(−1/√in, 1/√in)) and `B`
//! `[out, r]` zero, so a fresh adapter changes nothing.
//!
//! A [`crate::ParamStore`] made with [`crate::ParamStore::with_lora`] decides where adapters go:
//! every [`crate::nn::Linear`] built over it whose module name ends in one of the
//! [`LoraConfig::target_modules`] gets one. Its base weights are then plain tensors (no gradient,
//! not in [`crate::ParamStore::vars`]); only the adapters and the `modules_to_save` (a reward
//! model's value head) are trainable. [`crate::ParamStore::base_view`] builds the same model with
//! its adapters off, over the same base tensors (RL's reference at no second copy).
//!
//! Saved and loaded in PEFT's layout by [`crate::peft`].

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::backbone::ArchConfig;
use crate::nn::{Dropout, Mode};

/// The name under a module of the virtual tensor through which a LoRA store tells
/// [`crate::nn::Linear`] its adapter's `[r, alpha, dropout]` (only present on target modules).
pub(crate) const LORA_SPEC: &str = "lora_spec";

/// LoRA hyperparameters (PEFT's `LoraConfig` names and defaults: r 8, alpha 8, dropout 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    /// Rank of the adapters (`r`); 0 means no adapters.
    pub r: usize,
    /// Scale numerator: the update is `(lora_alpha / r)·B·A`.
    pub lora_alpha: f64,
    /// Dropout on the adapters' input in training.
    pub lora_dropout: f64,
    /// Module names that get adapters (matched against the last components of the module path,
    /// as PEFT does); empty: the architecture's PEFT default ([`default_targets`]).
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 0,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            target_modules: Vec::new(),
        }
    }
}

impl LoraConfig {
    /// True when adapters are asked for (`r > 0`).
    pub fn enabled(&self) -> bool {
        self.r > 0
    }

    /// The target modules, or the architecture's default when none are named.
    pub fn targets_for(&self, arch: &ArchConfig) -> Vec<String> {
        if self.target_modules.is_empty() {
            default_targets(arch)
        } else {
            self.target_modules.clone()
        }
    }

    /// `alpha / r`.
    pub fn scaling(&self) -> f64 {
        self.lora_alpha / self.r.max(1) as f64
    }

    /// Checks the values (rank, a finite positive alpha, dropout in [0, 1)).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return Err(format!("lora_alpha must be > 0, got {}", self.lora_alpha));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.lora_dropout
            ));
        }
        Ok(())
    }
}

/// PEFT's default target modules (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`):
/// `q_proj, v_proj` for Llama and Qwen2, `query, value` for BERT, `c_attn` for GPT-2.
pub fn default_targets(arch: &ArchConfig) -> Vec<String> {
    let names: &[&str] = match arch {
        ArchConfig::Llama(_) | ArchConfig::Qwen2(_) => &["q_proj", "v_proj"],
        ArchConfig::Bert(_) => &["query", "value"],
        ArchConfig::Gpt2(_) => &["c_attn"],
    };
    names.iter().map(|s| s.to_string()).collect()
}

/// Whether the module at `path` (dotted) is a target: its name equals a target or ends in
/// `.target` (PEFT's rule for a list of names).
pub fn is_target(path: &str, targets: &[String]) -> bool {
    targets
        .iter()
        .any(|t| path == t || path.ends_with(&format!(".{t}")))
}

/// One adapter: `scale · dropout(x) Aᵀ Bᵀ`.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: Dropout,
}

impl LoraAdapter {
    /// The adapter of the linear layer under `vb` (`[d_out, d_in]`), when the store puts one
    /// there: `lora_A.weight` `[r, d_in]` and `lora_B.weight` `[d_out, r]`.
    pub(crate) fn from_vb(
        vb: &VarBuilder,
        d_in: usize,
        d_out: usize,
    ) -> candle_core::Result<Option<Self>> {
        if !vb.contains_tensor(LORA_SPEC) {
            return Ok(None);
        }
        let spec = vb
            .get_unchecked_dtype(LORA_SPEC, candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        let [r, alpha, p] = spec[..] else {
            candle_core::bail!("malformed LoRA spec under `{}`", vb.prefix());
        };
        let r = r as usize;
        let bound = 1.0 / (d_in as f64).sqrt();
        let a = vb.get_with_hints(
            (r, d_in),
            "lora_A.weight",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        let b = vb.get_with_hints((d_out, r), "lora_B.weight", Init::Const(0.0))?;
        Ok(Some(LoraAdapter {
            a,
            b,
            scale: alpha / r as f64,
            dropout: Dropout::new(p, format!("lora.{}", vb.prefix())),
        }))
    }

    /// `scale · dropout(x) Aᵀ Bᵀ`, `x` `[…, in]` → `[…, out]`.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> candle_core::Result<Tensor> {
        let x = self.dropout.forward(x, mode)?;
        let low = crate::ops::linear(&x, &self.a, None, false)?;
        crate::ops::linear(&low, &self.b, None, false)? * self.scale
    }
}
