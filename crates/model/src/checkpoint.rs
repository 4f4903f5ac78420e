//! Reward-model folders: loading (a pretrained backbone, an HF `*ForSequenceClassification`
//! reward model, a rewardkit checkpoint, or a config alone for training from scratch) and saving.
//!
//! A folder holds `config.json` (the HF config, with `architectures` naming the
//! `*ForSequenceClassification` class and `num_labels: 1`), `model.safetensors` (HF names, so
//! transformers can load it too), the tokenizer files, and `rewardkit.json` (pooling, input
//! conventions, and whatever the trainer records).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use rewardkit_tokenize::{InputStyle, RewardTokenizer};

use crate::backbone::ArchConfig;
use crate::error::{ModelError, Result};
use crate::lora::LoraConfig;
use crate::params::{LoraPlan, ParamStore};
use crate::reward::{Pooling, RewardModel};

/// What `rewardkit.json` says about how the model reads its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub pooling: Pooling,
    /// Decoder inputs end with EOS (TRL's convention; off to score an HF model trained without).
    #[serde(default = "yes")]
    pub append_eos: bool,
    /// Inputs longer than this are truncated (prompt start first, then response end). On load
    /// it defaults to the model's positions ([`ArchConfig::max_positions`]) and never exceeds
    /// them where they are a learned table.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// How prompt and response become one input, where it is not the architecture's own
    /// ([`InputStyle::Pair`] for encoders, [`InputStyle::Sequence`] for decoders): an encoder
    /// trained on `prompt + response` as one segment (TRL's string concatenation) reads
    /// [`InputStyle::Sequence`]. Absent from `rewardkit.json` when it is the architecture's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_style: Option<InputStyle>,
}

fn yes() -> bool {
    true
}
/// Only for a `rewardkit.json` read outside [`load`] (which fills in the model's positions).
fn default_max_length() -> usize {
    512
}

/// The input length to use: `requested`, lowered to the positions of a learned position table
/// (a longer input could not be embedded at all).
fn fit_length(requested: usize, config: &ArchConfig) -> usize {
    if config.learned_positions() {
        requested.min(config.max_positions())
    } else {
        requested
    }
}

/// What a load may initialise where the weights lack a tensor. Scoring, evaluation and every
/// other consumer of a finished reward model use [`InitMissing::Refuse`] (the default): a model
/// with missing weights would score at random. Only training starts from less.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InitMissing {
    /// Every tensor the model needs must be in the weights.
    #[default]
    Refuse,
    /// A pretrained backbone for training: the value head may be new (initialised from the
    /// seed); every backbone tensor must be in the weights.
    ValueHead,
    /// Training from scratch: the weights are not read, every tensor is initialised from the
    /// seed (the folder needs only its config and tokenizer).
    All,
}

/// How to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Override the pooling (`rewardkit.json`'s, or the default for the architecture).
    pub pooling: Option<Pooling>,
    /// What may be initialised rather than read (see [`InitMissing`]); the tensors that were
    /// are listed in [`LoadedModel::initialised`].
    pub init_missing: InitMissing,
    /// Seeds the initialisation of whatever [`LoadOptions::init_missing`] lets be initialised.
    pub seed: u64,
    /// Override the maximum input length (default: `rewardkit.json`'s, else the model's
    /// `max_position_embeddings`; lowered to the latter for BERT and GPT-2, whose position
    /// tables end there).
    pub max_length: Option<usize>,
    /// For scoring only: build the model without autograd tracking (less memory, faster).
    pub inference: bool,
    /// Override how prompt and response become one input (see [`ModelMeta::input_style`]);
    /// saved in the checkpoint's `rewardkit.json`. A decoder reads only
    /// [`InputStyle::Sequence`].
    pub input_style: Option<InputStyle>,
}

/// A reward model with its tokenizer and input conventions.
pub struct LoadedModel {
    pub model: RewardModel,
    pub tokenizer: RewardTokenizer,
    pub meta: ModelMeta,
    /// The HF `config.json` as read (re-written, with the reward-model class, on save).
    pub raw_config: serde_json::Value,
    pub source: PathBuf,
    /// What scoring with this model has computed so far (sequences, tokens, padding).
    pub scored: crate::scorer::ScoringCounters,
    /// The tensors this load initialised rather than read, by name (empty unless
    /// [`LoadOptions::init_missing`] allowed some: a new value head, or every tensor).
    pub initialised: Vec<String>,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = rewardkit_io::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Loads a reward model from a folder (see the module docs), or a decoder from a single `.gguf`
/// file (weights dequantised to f32, tokenizer from the file's metadata; the value head is new).
pub fn load(dir: &Path, options: &LoadOptions, device: &Device) -> Result<LoadedModel> {
    // An unknown `REWARDKIT_SIMD` fails here, before any work, rather than at the first op.
    crate::ops::simd_level()?;
    if dir.is_file()
        && dir
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return load_gguf(dir, options, device);
    }
    let config_path = dir.join("config.json");
    let raw_config = read_json(&config_path)?;
    let config =
        ArchConfig::from_json(&raw_config.to_string()).map_err(|message| ModelError::Config {
            path: config_path.clone(),
            message,
        })?;
    let meta_path = dir.join("rewardkit.json");
    let saved_meta: Option<ModelMeta> = if meta_path.exists() {
        let v = read_json(&meta_path)?;
        let mut meta = v.get("model").cloned().unwrap_or(v);
        if let Some(obj) = meta.as_object_mut() {
            // Saved without a length: the model's own.
            obj.entry("max_length")
                .or_insert_with(|| config.max_positions().into());
        }
        Some(
            serde_json::from_value(meta).map_err(|e| ModelError::Config {
                path: meta_path.clone(),
                message: e.to_string(),
            })?,
        )
    } else {
        None
    };
    let is_hf_classifier = raw_config
        .get("architectures")
        .and_then(|a| a.as_array())
        .is_some_and(|a| {
            a.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.ends_with("ForSequenceClassification"))
            })
        });
    let default_pooling = match (&saved_meta, is_hf_classifier, config.is_decoder()) {
        (Some(m), _, _) => m.pooling,
        // transformers' BertForSequenceClassification reads the pooler output.
        (None, true, false) => Pooling::Pooler,
        _ => Pooling::default_for(&config),
    };
    let mut meta = saved_meta.unwrap_or(ModelMeta {
        pooling: default_pooling,
        // An HF reward model is scored exactly as transformers would: on the plain text.
        append_eos: !is_hf_classifier,
        max_length: config.max_positions(),
        input_style: None,
    });
    if let Some(p) = options.pooling {
        meta.pooling = p;
    }
    if options.input_style.is_some() {
        meta.input_style = options.input_style;
    }
    let style = input_style(&meta, &config, &meta_path)?;
    meta.max_length = fit_length(options.max_length.unwrap_or(meta.max_length), &config);
    let store = if crate::peft::is_adapter_dir(dir) {
        adapter_store(dir, options.seed, device)?
    } else if options.init_missing == InitMissing::All {
        ParamStore::new(options.seed, device)
    } else {
        let files = safetensors_files(dir)?;
        ParamStore::from_safetensors(&files, options.seed, device)?
    };
    let (model, initialised) = build(&config, meta.pooling, &store, options, dir)?;
    // An encoder's post-processor ends its one segment with its own separator: no EOS after it.
    let tokenizer = RewardTokenizer::from_path(dir, style)?
        .with_append_eos(meta.append_eos && config.is_decoder());
    Ok(LoadedModel {
        model,
        tokenizer,
        meta,
        raw_config,
        source: dir.to_path_buf(),
        scored: Default::default(),
        initialised,
    })
}

/// The store of a PEFT adapter folder: the base weights its `base_model_name_or_path` names (a
/// model folder or a `.gguf` file), the adapter and value head from `adapter_model.safetensors`,
/// and the adapter's LoRA plan.
fn adapter_store(dir: &Path, seed: u64, device: &Device) -> Result<ParamStore> {
    let (plan, adapter) = crate::peft::read_adapter(dir, device)?;
    let base = crate::peft::base_path(dir, &plan)?;
    let mut tensors = if base.is_file() {
        crate::gguf::GgufFile::open(&base)?.tensors(device)?
    } else {
        let mut all = HashMap::new();
        for file in safetensors_files(&base)? {
            all.extend(
                candle_core::safetensors::load(&file, device)
                    .map_err(|e| ModelError::Weights(format!("{}: {e}", file.display())))?,
            );
        }
        all
    };
    tensors.extend(adapter);
    ParamStore::with_tensors(tensors, seed, device)?.with_lora(plan)
}

/// Builds the model over `store` and checks it against the weights (see [`check_weights`]);
/// returns it with the names of the tensors that were initialised.
fn build(
    config: &ArchConfig,
    pooling: Pooling,
    store: &ParamStore,
    options: &LoadOptions,
    source: &Path,
) -> Result<(RewardModel, Vec<String>)> {
    let built_over = if options.inference {
        store.frozen_view()
    } else {
        store.clone()
    };
    let model = RewardModel::new(config, pooling, &built_over)?;
    let initialised = check_weights(store, config, options.init_missing, source)?;
    store.release_source();
    Ok((model, initialised))
}

/// Every tensor the model asked for must have come from the weights, except what `init` lets be
/// initialised; every tensor of the weights must have been read, except [known
/// extras](is_known_extra). Returns the initialised names.
fn check_weights(
    store: &ParamStore,
    config: &ArchConfig,
    init: InitMissing,
    source: &Path,
) -> Result<Vec<String>> {
    let initialised = store.initialised();
    if init == InitMissing::All {
        return Ok(initialised);
    }
    let head = format!("{}.", config.head_name());
    let missing: Vec<String> = initialised
        .iter()
        .filter(|n| !(init == InitMissing::ValueHead && n.starts_with(&head)))
        .cloned()
        .collect();
    let unused: Vec<String> = store
        .unused()
        .into_iter()
        .filter(|n| !is_known_extra(n))
        .collect();
    if missing.is_empty() && unused.is_empty() {
        return Ok(initialised);
    }
    let head_only = !missing.is_empty() && missing.iter().all(|n| n.starts_with(&head));
    Err(ModelError::WeightsMismatch {
        path: source.to_path_buf(),
        missing,
        unused,
        head_only,
    })
}

/// Tensors that real checkpoints carry and a reward model legitimately leaves unread: buffers
/// transformers saves (`position_ids`, GPT-2's causal-mask `attn.bias` / `attn.masked_bias`,
/// older Llamas' `rotary_emb.inv_freq`), language-model heads (`lm_head.*`, BERT's pretraining
/// heads `cls.*`) and BERT's pooler where the pooling does not read it (MiniLM ships one).
pub fn is_known_extra(name: &str) -> bool {
    let base = crate::params::BASE_PREFIXES
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    name.ends_with("position_ids")
        || name.ends_with(".attn.bias")
        || name.ends_with(".attn.masked_bias")
        || name.ends_with("rotary_emb.inv_freq")
        || base.starts_with("lm_head.")
        || base.starts_with("cls.")
        || base.starts_with("pooler.")
}

/// The input style `meta` asks for, or the architecture's own; a decoder reads one sequence
/// (its causal states and last-token pooling assume `prompt + response`).
fn input_style(meta: &ModelMeta, config: &ArchConfig, source: &Path) -> Result<InputStyle> {
    let own = if config.is_decoder() {
        InputStyle::Sequence
    } else {
        InputStyle::Pair
    };
    match meta.input_style {
        Some(InputStyle::Pair) if config.is_decoder() => Err(ModelError::Config {
            path: source.to_path_buf(),
            message: "a decoder reads prompt + response as one sequence: input style `pair` is \
                      for encoders"
                .into(),
        }),
        Some(style) => Ok(style),
        None => Ok(own),
    }
}

fn load_gguf(path: &Path, options: &LoadOptions, device: &Device) -> Result<LoadedModel> {
    let file = crate::gguf::GgufFile::open(path)?;
    let config = file.arch_config()?;
    let raw_config = file.config_json()?;
    let meta = ModelMeta {
        pooling: options
            .pooling
            .unwrap_or_else(|| Pooling::default_for(&config)),
        append_eos: true,
        max_length: fit_length(
            options.max_length.unwrap_or_else(|| config.max_positions()),
            &config,
        ),
        input_style: options.input_style,
    };
    input_style(&meta, &config, path)?;
    let store = if options.init_missing == InitMissing::All {
        ParamStore::new(options.seed, device)
    } else {
        file.param_store(options.seed, device)?
    };
    let (model, initialised) = build(&config, meta.pooling, &store, options, path)?;
    let tokenizer = file.tokenizer()?.reward_tokenizer(InputStyle::Sequence)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        meta,
        raw_config,
        source: path.to_path_buf(),
        scored: Default::default(),
        initialised,
    })
}

/// `model.safetensors`, or the shards of `model-0000x-of-0000y.safetensors`.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(rewardkit_io::IoError::at(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "safetensors")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("model"))
        })
        .collect();
    shards.sort();
    if shards.is_empty() {
        return Err(ModelError::Weights(format!(
            "{}: no model.safetensors (pass --from-scratch to train from the config alone)",
            dir.display()
        )));
    }
    Ok(shards)
}

impl LoadedModel {
    /// The same model with LoRA adapters per `config` (fresh: `A` kaiming-uniform, `B` zero) on
    /// the current weights, whose value head and adapters alone are then trainable. `base` is
    /// what the saved adapter will name as its base (`base_model_name_or_path`).
    pub fn with_lora(self, config: &LoraConfig, base: &Path) -> Result<LoadedModel> {
        let arch = self.model.config().clone();
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        let plan = LoraPlan::new(
            config,
            &arch,
            Some(arch.head_name()),
            Some(base.display().to_string()),
        );
        let new_base: Vec<&String> = self
            .initialised
            .iter()
            .filter(|n| !plan.is_trainable(n))
            .collect();
        if !new_base.is_empty() {
            return Err(ModelError::Unsupported(format!(
                "LoRA trains adapters on a pretrained base, but these base weights are new:                  {new_base:?}"
            )));
        }
        let store = self.model.params().with_lora_over(plan, HashMap::new())?;
        let model = RewardModel::new(&arch, self.meta.pooling, &store)?;
        store.release_source();
        Ok(LoadedModel { model, ..self })
    }

    /// A plain model with the adapters folded into its weights ([`ParamStore::merged_tensors`]).
    pub fn merged(&self) -> Result<LoadedModel> {
        let tensors = self.model.params().merged_tensors()?;
        let store = ParamStore::with_tensors(tensors, 0, self.model.device())?;
        let model = RewardModel::new(self.model.config(), self.meta.pooling, &store)?;
        check_weights(
            &store,
            self.model.config(),
            InitMissing::Refuse,
            &self.source,
        )?;
        store.release_source();
        Ok(LoadedModel {
            model,
            tokenizer: self.tokenizer.clone(),
            meta: self.meta.clone(),
            raw_config: self.raw_config.clone(),
            source: self.source.clone(),
            scored: Default::default(),
            initialised: Vec::new(),
        })
    }

    /// A copy for inference that shares this model's weights (later updates included) but
    /// records no autograd graph: evaluation during training keeps no activations alive.
    pub fn frozen_copy(&self) -> Result<LoadedModel> {
        let store = self.model.params().frozen_view();
        Ok(LoadedModel {
            model: RewardModel::new(self.model.config(), self.meta.pooling, &store)?,
            tokenizer: self.tokenizer.clone(),
            meta: self.meta.clone(),
            raw_config: self.raw_config.clone(),
            source: self.source.clone(),
            scored: Default::default(),
            initialised: self.initialised.clone(),
        })
    }
}

/// Files copied next to a saved model so it is self-contained.
const TOKENIZER_FILES: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
];

/// `value` as pretty JSON to `path`, atomically.
fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| rewardkit_io::IoError::new(path, std::io::Error::other(e)))?;
    Ok(rewardkit_io::write_file(path, &bytes)?)
}

/// Writes the model folder into `dir` (which must exist and be empty or a fresh temporary
/// folder; the trainer renames it into place). `extra` is merged into `rewardkit.json`. Every
/// file is written atomically ([`rewardkit_io::write_file`]), mode 0644 under the usual umask.
/// A model with LoRA adapters is written as an adapter folder ([`crate::peft`]: its
/// `adapter_config.json` names the base) beside the same config, tokenizer and `rewardkit.json`.
pub fn save(loaded: &LoadedModel, dir: &Path, extra: serde_json::Value) -> Result<()> {
    loaded
        .model
        .params()
        .save_dir(dir, crate::peft::TaskType::SeqCls)?;
    let mut config = loaded.raw_config.clone();
    if let Some(obj) = config.as_object_mut() {
        obj.insert(
            "architectures".into(),
            serde_json::json!([loaded.model.config().sequence_classification_class()]),
        );
        obj.insert("num_labels".into(), 1.into());
        obj.insert("id2label".into(), serde_json::json!({"0": "LABEL_0"}));
        obj.insert("label2id".into(), serde_json::json!({"LABEL_0": 0}));
        if loaded.model.config().is_decoder() && obj.get("pad_token_id").is_none_or(|v| v.is_null())
        {
            obj.insert("pad_token_id".into(), loaded.tokenizer.pad_id().into());
        }
    }
    write_json(&dir.join("config.json"), &config)?;
    for name in TOKENIZER_FILES {
        let src = loaded.source.join(name);
        if src.exists() {
            let bytes = std::fs::read(&src).map_err(rewardkit_io::IoError::at(&src))?;
            rewardkit_io::write_file(&dir.join(name), &bytes)?;
        }
    }
    if !dir.join("tokenizer_config.json").exists() {
        // Where the tokenizer came from elsewhere (a GGUF file), name its special tokens so the
        // saved folder loads with the same EOS and padding.
        let inner = loaded.tokenizer.inner();
        let mut tc = serde_json::Map::new();
        if let Some(t) = loaded
            .tokenizer
            .eos_id()
            .and_then(|id| inner.id_to_token(id))
        {
            tc.insert("eos_token".into(), t.into());
        }
        if let Some(t) = inner.id_to_token(loaded.tokenizer.pad_id()) {
            tc.insert("pad_token".into(), t.into());
        }
        write_json(&dir.join("tokenizer_config.json"), &tc)?;
    }
    if !dir.join("tokenizer.json").exists() {
        let dst = dir.join("tokenizer.json");
        let text = loaded
            .tokenizer
            .inner()
            .to_string(false)
            .map_err(|e| ModelError::Weights(format!("{}: {e}", dst.display())))?;
        rewardkit_io::write_file(&dst, text.as_bytes())?;
    }
    let mut meta = serde_json::json!({ "model": loaded.meta });
    if let (Some(obj), Some(extra)) = (meta.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    write_json(&dir.join("rewardkit.json"), &meta)
}
