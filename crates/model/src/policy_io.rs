//! Where a [`Policy`] comes from and goes to: an HF causal-LM folder (`config.json`,
//! `model.safetensors`, `tokenizer.json`), a config and tokenizer alone (weights seeded from
//! scratch), a GGUF file ([`Policy::from_gguf`]); a copy of its weights (the frozen reference of
//! RL); and the folder it saves, which [`Policy::from_dir`] reads back and transformers loads as
//! `*ForCausalLM`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use rewardkit_tokenize::{InputStyle, RewardTokenizer};

use crate::backbone::ArchConfig;
use crate::causal_lm::CausalLm;
use crate::checkpoint::is_known_extra;
use crate::error::ModelError;
use crate::generate::{ChatTemplate, GenerateError, Policy};
use crate::lora::LoraConfig;
use crate::params::{LoraPlan, ParamStore};
use crate::peft::{TaskType, ADAPTER_WEIGHTS};

/// The file a saved policy's chat template and EOS token are written to (HF's name).
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";

impl Policy {
    /// A policy over `store` (trainable weights; the sampling model is built over its frozen
    /// view). `eos_ids` must hold at least one id.
    pub fn new(
        config: &ArchConfig,
        store: ParamStore,
        tokenizer: tokenizers::Tokenizer,
        eos_ids: Vec<u32>,
        template: Option<ChatTemplate>,
    ) -> Result<Self, GenerateError> {
        if eos_ids.is_empty() {
            return Err(GenerateError::Config("a policy needs an EOS token".into()));
        }
        let model = CausalLm::new(config, &store.frozen_view())?;
        Ok(Policy {
            model,
            device: store.device().clone(),
            store,
            config: config.clone(),
            tokenizer,
            eos_ids,
            template,
        })
    }

    /// A decoder of `config` with every weight initialised from `seed` (the architecture's
    /// initialisation, as `train --from-scratch`), and `tokenizer` with EOS `eos`.
    pub fn from_scratch(
        config: &ArchConfig,
        tokenizer: tokenizers::Tokenizer,
        eos: u32,
        seed: u64,
    ) -> Result<Self, GenerateError> {
        let store = ParamStore::new(seed, &Device::Cpu);
        Policy::new(config, store, tokenizer, vec![eos], None)
    }

    /// A `.gguf` file ([`Policy::from_gguf`]) or a folder ([`Policy::from_dir`]).
    pub fn load(path: &Path) -> Result<Self, GenerateError> {
        if path.is_file()
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            Policy::from_gguf(path)
        } else {
            Policy::from_dir(path)
        }
    }

    /// An HF causal-LM folder (GPT-2, Llama, SmolLM2, Qwen2): `config.json`,
    /// `model.safetensors`, the tokenizer (EOS from `tokenizer_config.json` or a common name) and,
    /// when `tokenizer_config.json` has a ChatML `chat_template`, the chat format. Every tensor
    /// the model needs must be in the weights and every tensor there used (known extras aside).
    pub fn from_dir(dir: &Path) -> Result<Self, GenerateError> {
        crate::ops::simd_level()?;
        if crate::peft::is_adapter_dir(dir) {
            return Policy::from_adapter_dir(dir);
        }
        let err = |message: String| GenerateError::Load {
            path: dir.to_path_buf(),
            message,
        };
        let config = ArchConfig::from_file(&dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(err("no model.safetensors".into()));
        }
        let store = ParamStore::from_safetensors(&[&weights], 0, &Device::Cpu)?;
        let tok =
            RewardTokenizer::from_path(dir, InputStyle::Sequence).map_err(ModelError::from)?;
        let eos = tok
            .eos_id()
            .ok_or_else(|| err("no EOS token (name one in tokenizer_config.json)".into()))?;
        let template = read_template(&dir.join(TOKENIZER_CONFIG))?;
        let policy = Policy::new(&config, store, tok.inner().clone(), vec![eos], template)?;
        let missing = policy.store.initialised();
        let unused: Vec<String> = policy
            .store
            .unused()
            .into_iter()
            .filter(|n| !is_known_extra(n))
            .collect();
        refuse_mismatch(weights, missing, unused)?;
        policy.store.release_source();
        Ok(policy)
    }

    /// The model over the trainable weights: its outputs have a backward pass to every weight,
    /// and the optimizer's updates of [`Policy::params`] are what [`Policy::generate`] samples
    /// from next.
    pub fn trainable(&self) -> Result<CausalLm, GenerateError> {
        Ok(CausalLm::new(&self.config, &self.store)?)
    }

    /// The weights (trainable vars, by HF name).
    pub fn params(&self) -> &ParamStore {
        &self.store
    }

    /// The architecture.
    pub fn arch_config(&self) -> &ArchConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A policy with a copy of the current weights (adapters folded in), unaffected by later
    /// training of this one.
    pub fn snapshot(&self) -> Result<Policy, GenerateError> {
        let tensors: HashMap<String, Tensor> = self
            .store
            .merged_tensors()?
            .into_iter()
            .map(|(name, t)| Ok((name, t.copy()?)))
            .collect::<Result<_, candle_core::Error>>()?;
        let store = ParamStore::with_tensors(tensors, 0, &self.device)?;
        let copy = Policy::new(
            &self.config,
            store,
            self.tokenizer.clone(),
            self.eos_ids.clone(),
            self.template.clone(),
        )?;
        copy.store.release_source();
        Ok(copy)
    }

    /// RL's frozen reference: with LoRA adapters, this policy with its adapters off (the base
    /// weights, shared: no second copy); otherwise a [`Policy::snapshot`].
    pub fn reference(&self) -> Result<Policy, GenerateError> {
        if self.store.lora().is_none() {
            return self.snapshot();
        }
        Policy::new(
            &self.config,
            self.store.base_view(),
            self.tokenizer.clone(),
            self.eos_ids.clone(),
            self.template.clone(),
        )
    }

    /// The same policy with fresh LoRA adapters per `config` on its current weights (only the
    /// adapters train from now on); `base` is what the saved adapter names as its base.
    pub fn with_lora(self, config: &LoraConfig, base: &Path) -> Result<Self, GenerateError> {
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        let plan = LoraPlan::new(config, &self.config, None, Some(base.display().to_string()));
        self.rebuild(self.store.with_lora_over(plan, HashMap::new())?, &base)
    }

    /// A plain policy with the adapters folded into its weights (`W + (alpha/r)·B·A`).
    pub fn merged(&self) -> Result<Self, GenerateError> {
        let tensors = self.store.merged_tensors()?;
        self.rebuild(
            ParamStore::with_tensors(tensors, 0, &self.device)?,
            Path::new("(merged weights)"),
        )
    }

    /// This policy over `store`; every tensor there must be used and none missing (`source`
    /// names where they came from, for errors).
    fn rebuild(&self, store: ParamStore, source: &Path) -> Result<Self, GenerateError> {
        let policy = Policy::new(
            &self.config,
            store,
            self.tokenizer.clone(),
            self.eos_ids.clone(),
            self.template.clone(),
        )?;
        // Build the trainable model once so that every var exists (adapters included).
        policy.trainable()?;
        let plan = policy.store.lora();
        let fresh_adapter = |n: &String| plan.as_ref().is_some_and(|p| p.is_trainable(n));
        let missing: Vec<String> = policy
            .store
            .initialised()
            .into_iter()
            .filter(|n| !fresh_adapter(n))
            .collect();
        let unused = policy.store.unused();
        refuse_mismatch(source.to_path_buf(), missing, unused)?;
        policy.store.release_source();
        Ok(policy)
    }

    /// A PEFT adapter folder: the base its `base_model_name_or_path` names (a folder or a
    /// `.gguf` file) with the adapter's weights; every adapter tensor must be there.
    fn from_adapter_dir(dir: &Path) -> Result<Self, GenerateError> {
        let (plan, adapter) = crate::peft::read_adapter(dir, &Device::Cpu)?;
        let base = crate::peft::base_path(dir, &plan)?;
        let policy = Policy::load(&base)?;
        let store = policy.store.with_lora_over(plan, adapter)?;
        let policy = policy.rebuild(store, dir)?;
        let new: Vec<String> = policy.store.initialised();
        if !new.is_empty() {
            return Err(GenerateError::Load {
                path: dir.to_path_buf(),
                message: format!("adapter tensors missing from {ADAPTER_WEIGHTS}: {new:?}"),
            });
        }
        Ok(policy)
    }

    /// Writes the policy into the folder `dir` (existing; e.g. the temporary folder of
    /// [`rewardkit_io::write_dir`]): `model.safetensors` (HF names), `config.json` (the
    /// `*ForCausalLM` class, `eos_token_id`), `tokenizer.json` and `tokenizer_config.json` (EOS,
    /// chat template). Every file is written atomically.
    /// With LoRA adapters, the weights are the adapter's files in PEFT's layout
    /// ([`crate::peft`]), naming the base.
    pub fn save(&self, dir: &Path) -> Result<(), GenerateError> {
        self.store.save_dir(dir, TaskType::CausalLm)?;
        let mut config =
            serde_json::to_value(&self.config).map_err(|e| GenerateError::Config(e.to_string()))?;
        if let Some(obj) = config.as_object_mut() {
            obj.insert(
                "architectures".into(),
                serde_json::json!([causal_lm_class(&self.config)]),
            );
            obj.insert("eos_token_id".into(), self.eos_ids[0].into());
        }
        write_json(&dir.join("config.json"), &config)?;
        let text = self
            .tokenizer
            .to_string(false)
            .map_err(|e| GenerateError::Tokenizer(e.to_string()))?;
        rewardkit_io::write_file(&dir.join("tokenizer.json"), text.as_bytes())
            .map_err(ModelError::from)?;
        let mut tc = serde_json::Map::new();
        if let Some(t) = self.tokenizer.id_to_token(self.eos_ids[0]) {
            tc.insert("eos_token".into(), t.into());
        }
        if let Some(ChatTemplate::ChatMl { default_system }) = &self.template {
            tc.insert(
                "chat_template".into(),
                chatml_template(default_system.as_deref()).into(),
            );
        }
        write_json(&dir.join(TOKENIZER_CONFIG), &serde_json::Value::Object(tc))
    }
}

/// An error naming the weights of `path` that were missing or unused, if any.
fn refuse_mismatch(
    path: std::path::PathBuf,
    missing: Vec<String>,
    unused: Vec<String>,
) -> Result<(), GenerateError> {
    if missing.is_empty() && unused.is_empty() {
        return Ok(());
    }
    Err(ModelError::WeightsMismatch {
        path,
        missing,
        unused,
        head_only: false,
    }
    .into())
}

/// transformers' causal-LM class of an architecture.
fn causal_lm_class(config: &ArchConfig) -> &'static str {
    match config {
        ArchConfig::Gpt2(_) => "GPT2LMHeadModel",
        ArchConfig::Llama(_) => "LlamaForCausalLM",
        ArchConfig::Qwen2(_) => "Qwen2ForCausalLM",
        ArchConfig::Bert(_) => "BertForMaskedLM",
    }
}

/// A ChatML Jinja template that [`ChatTemplate::detect`] reads back with `system` as its
/// default system turn.
fn chatml_template(system: Option<&str>) -> String {
    let default = system
        .map(|s| {
            format!(
                "{{% if loop.first and messages[0]['role'] != 'system' %}}{{{{ \
                 '<|im_start|>system\n{s}<|im_end|>\n' }}}}{{% endif %}}"
            )
        })
        .unwrap_or_default();
    format!(
        "{{% for message in messages %}}{default}{{{{'<|im_start|>' + message['role'] + '\n' + \
         message['content'] + '<|im_end|>' + '\n'}}}}{{% endfor %}}{{% if add_generation_prompt \
         %}}{{{{ '<|im_start|>assistant\n' }}}}{{% endif %}}"
    )
}

/// The chat template of a `tokenizer_config.json`, when it has one.
fn read_template(path: &Path) -> Result<Option<ChatTemplate>, GenerateError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = rewardkit_io::read_to_string(path).map_err(ModelError::from)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| GenerateError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    value
        .get("chat_template")
        .and_then(|t| t.as_str())
        .map(ChatTemplate::detect)
        .transpose()
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), GenerateError> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|e| GenerateError::Config(e.to_string()))?;
    rewardkit_io::write_file(path, &bytes).map_err(ModelError::from)?;
    Ok(())
}
