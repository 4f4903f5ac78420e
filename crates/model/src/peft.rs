//! LoRA adapters on disk in PEFT's layout, so Python's `peft` loads them
//! (`PeftModel.from_pretrained(base, dir)`) and rewardkit loads PEFT's:
//!
//! - `adapter_config.json`: PEFT's `LoraConfig` fields (`peft_type: "LORA"`, `task_type`
//!   `SEQ_CLS` or `CAUSAL_LM`, `r`, `lora_alpha`, `lora_dropout`, `target_modules`,
//!   `modules_to_save`, `bias: "none"`, `fan_in_fan_out`, `base_model_name_or_path`, …);
//! - `adapter_model.safetensors`: `base_model.model.<module path>.lora_A.weight` `[r, in]` and
//!   `….lora_B.weight` `[out, r]` (the adapter name removed, as `get_peft_model_state_dict`
//!   does), and the full weights of `modules_to_save` (`base_model.model.score.weight`).
//!
//! The folder points at its base through `base_model_name_or_path`: a path, absolute or
//! relative to the adapter folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::lora::LoraConfig;
use crate::params::{save_tensors_atomic, LoraPlan, ParamStore};

/// The adapter's config file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The adapter's weights file.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// PEFT's prefix of every saved key (`PeftModel.base_model.model`).
const KEY_PREFIX: &str = "base_model.model.";

/// PEFT's `task_type` of what the adapter is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskType {
    /// A reward model (`*ForSequenceClassification`).
    #[serde(rename = "SEQ_CLS")]
    SeqCls,
    /// A policy (`*ForCausalLM`).
    #[serde(rename = "CAUSAL_LM")]
    CausalLm,
}

/// `adapter_config.json`, PEFT's field names; fields rewardkit does not support are refused on
/// load by [`AdapterConfig::to_plan`] rather than ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub peft_type: String,
    pub task_type: Option<TaskType>,
    pub base_model_name_or_path: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    /// A list of names (PEFT also allows a regex string, which rewardkit refuses).
    pub target_modules: serde_json::Value,
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    #[serde(default = "bias_none")]
    pub bias: String,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default = "yes")]
    pub inference_mode: bool,
    #[serde(default = "init_true")]
    pub init_lora_weights: serde_json::Value,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub layers_to_transform: Option<serde_json::Value>,
    #[serde(default)]
    pub layers_pattern: Option<serde_json::Value>,
    #[serde(default)]
    pub rank_pattern: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub alpha_pattern: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub revision: Option<String>,
}

fn bias_none() -> String {
    "none".into()
}
fn yes() -> bool {
    true
}
fn init_true() -> serde_json::Value {
    serde_json::Value::Bool(true)
}

impl AdapterConfig {
    /// The config of `plan`.
    pub fn from_plan(plan: &LoraPlan, task_type: TaskType) -> Self {
        AdapterConfig {
            peft_type: "LORA".into(),
            task_type: Some(task_type),
            base_model_name_or_path: plan.base.clone(),
            r: plan.config.r,
            lora_alpha: plan.config.lora_alpha,
            lora_dropout: plan.config.lora_dropout,
            target_modules: serde_json::json!(plan.targets),
            modules_to_save: (!plan.modules_to_save.is_empty())
                .then(|| plan.modules_to_save.clone()),
            bias: bias_none(),
            fan_in_fan_out: plan.fan_in_fan_out,
            inference_mode: true,
            init_lora_weights: init_true(),
            use_rslora: false,
            use_dora: false,
            layers_to_transform: None,
            layers_pattern: None,
            rank_pattern: Default::default(),
            alpha_pattern: Default::default(),
            revision: None,
        }
    }

    /// The LoRA plan this config describes; what rewardkit cannot reproduce exactly is an error.
    pub fn to_plan(&self, path: &Path) -> Result<LoraPlan> {
        let refuse = |what: &str| ModelError::Config {
            path: path.to_path_buf(),
            message: format!("unsupported adapter: {what}"),
        };
        if self.peft_type != "LORA" {
            return Err(refuse(&format!("peft_type {:?}", self.peft_type)));
        }
        if self.bias != "none" || self.use_rslora || self.use_dora {
            return Err(refuse("bias other than \"none\", rsLoRA or DoRA"));
        }
        if !self.rank_pattern.is_empty() || !self.alpha_pattern.is_empty() {
            return Err(refuse("rank_pattern / alpha_pattern"));
        }
        if self
            .layers_to_transform
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            return Err(refuse("layers_to_transform"));
        }
        let targets: Vec<String> = serde_json::from_value(self.target_modules.clone())
            .map_err(|_| refuse("target_modules must be a list of names"))?;
        let config = LoraConfig {
            r: self.r,
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            target_modules: targets.clone(),
        };
        if self.r == 0 || targets.is_empty() {
            return Err(refuse("r = 0 or no target_modules"));
        }
        Ok(LoraPlan {
            config,
            targets,
            modules_to_save: self.modules_to_save.clone().unwrap_or_default(),
            fan_in_fan_out: self.fan_in_fan_out,
            base: self.base_model_name_or_path.clone(),
        })
    }
}

/// True when `dir` holds a PEFT adapter.
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(ADAPTER_CONFIG).is_file()
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` of the LoRA store `store` into
/// `dir`, atomically each. Refused when a frozen base weight was initialised rather than loaded
/// (it would not be saved, and the adapter would not reproduce the model).
pub fn save_adapter(store: &ParamStore, task_type: TaskType, dir: &Path) -> Result<()> {
    let plan = store
        .lora()
        .ok_or_else(|| ModelError::Unsupported("the model has no LoRA adapters".into()))?;
    let frozen_new: Vec<String> = store
        .initialised()
        .into_iter()
        .filter(|n| !plan.is_trainable(n))
        .collect();
    if !frozen_new.is_empty() {
        return Err(ModelError::Unsupported(format!(
            "LoRA freezes the base, but these base weights were initialised, not loaded, and \
             would be lost: {frozen_new:?}"
        )));
    }
    let tensors: HashMap<String, Tensor> = store
        .vars()
        .into_iter()
        .map(|(name, var)| (format!("{KEY_PREFIX}{name}"), var.as_tensor().clone()))
        .collect();
    save_tensors_atomic(&tensors, &dir.join(ADAPTER_WEIGHTS))?;
    let config = AdapterConfig::from_plan(&plan, task_type);
    let bytes = serde_json::to_vec_pretty(&config)
        .map_err(|e| ModelError::Weights(format!("adapter config: {e}")))?;
    Ok(rewardkit_io::write_file(&dir.join(ADAPTER_CONFIG), &bytes)?)
}

/// Reads an adapter folder: its plan and its tensors by store name (PEFT's prefix removed).
pub fn read_adapter(dir: &Path, device: &Device) -> Result<(LoraPlan, HashMap<String, Tensor>)> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = rewardkit_io::read_to_string(&path)?;
    let config: AdapterConfig = serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let plan = config.to_plan(&path)?;
    Ok((plan, read_adapter_weights(dir, device)?))
}

/// `adapter_model.safetensors` of `dir`, by store name.
pub fn read_adapter_weights(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let weights = dir.join(ADAPTER_WEIGHTS);
    let loaded = candle_core::safetensors::load(&weights, device)
        .map_err(|e| ModelError::Weights(format!("{}: {e}", weights.display())))?;
    loaded
        .into_iter()
        .map(|(k, t)| match k.strip_prefix(KEY_PREFIX) {
            Some(name) => Ok((name.to_string(), t)),
            None => Err(ModelError::Weights(format!(
                "{}: key `{k}` is not under `{KEY_PREFIX}`",
                weights.display()
            ))),
        })
        .collect()
}

/// The base folder or file an adapter folder names, checked to exist.
pub fn base_path(dir: &Path, plan: &LoraPlan) -> Result<PathBuf> {
    let missing = |message: String| ModelError::Config {
        path: dir.join(ADAPTER_CONFIG),
        message,
    };
    let base = plan
        .base
        .as_deref()
        .ok_or_else(|| missing("no base_model_name_or_path: the base model is unknown".into()))?;
    let path = dir.join(base);
    if !path.exists() {
        return Err(missing(format!(
            "the base model `{base}` (base_model_name_or_path) is not there ({})",
            path.display()
        )));
    }
    Ok(path)
}

/// Overwrites the adapter (and head) vars of a LoRA store with the adapter saved in `dir`
/// (resume); every var must be there with its shape.
pub fn load_adapter_values(store: &ParamStore, dir: &Path) -> Result<()> {
    let loaded = read_adapter_weights(dir, store.device())?;
    store.set_values(&loaded, &dir.join(ADAPTER_WEIGHTS))
}
