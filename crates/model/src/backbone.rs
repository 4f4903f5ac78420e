//! The closed set of backbone architectures, chosen by `model_type` in the HF `config.json`.

use std::path::Path;

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::bert::{Bert, BertConfig};
use crate::error::{ModelError, Result};
use crate::gpt2::{Gpt2, Gpt2Config};
use crate::keys::Keys;
use crate::llama::{Llama, LlamaConfig};
use crate::nn::Mode;
use crate::recompute::Recompute;

/// A backbone's configuration, tagged by the HF `model_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model_type", rename_all = "snake_case")]
pub enum ArchConfig {
    Bert(BertConfig),
    Gpt2(Gpt2Config),
    /// Llama and SmolLM2 (`model_type` `llama`).
    Llama(LlamaConfig),
    /// Qwen2: the Llama block with biases on q/k/v.
    Qwen2(LlamaConfig),
}

impl ArchConfig {
    /// Reads an HF `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = rewardkit_io::read_to_string(path)?;
        Self::from_json(&text).map_err(|message| ModelError::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let model_type = value
            .get("model_type")
            .and_then(|v| v.as_str())
            .ok_or("no `model_type`")?
            .to_string();
        serde_json::from_value(value).map_err(|e| format!("model_type `{model_type}`: {e}"))
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            ArchConfig::Bert(c) => c.hidden_size,
            ArchConfig::Gpt2(c) => c.n_embd,
            ArchConfig::Llama(c) | ArchConfig::Qwen2(c) => c.hidden_size,
        }
    }

    /// Encoders read their CLS/mean states; decoders their last token.
    pub fn is_decoder(&self) -> bool {
        match self {
            ArchConfig::Bert(_) => false,
            ArchConfig::Gpt2(_) | ArchConfig::Llama(_) | ArchConfig::Qwen2(_) => true,
        }
    }

    /// The prefix transformers puts before the backbone in `*ForSequenceClassification`.
    pub fn base_prefix(&self) -> &'static str {
        match self {
            ArchConfig::Bert(_) => "bert",
            ArchConfig::Gpt2(_) => "transformer",
            ArchConfig::Llama(_) | ArchConfig::Qwen2(_) => "model",
        }
    }

    /// The name of the value head in transformers' `*ForSequenceClassification`.
    pub fn head_name(&self) -> &'static str {
        match self {
            ArchConfig::Bert(_) => "classifier",
            ArchConfig::Gpt2(_) | ArchConfig::Llama(_) | ArchConfig::Qwen2(_) => "score",
        }
    }

    /// `architectures` entry of a saved reward model.
    pub fn sequence_classification_class(&self) -> &'static str {
        match self {
            ArchConfig::Bert(_) => "BertForSequenceClassification",
            ArchConfig::Gpt2(_) => "GPT2ForSequenceClassification",
            ArchConfig::Llama(_) => "LlamaForSequenceClassification",
            ArchConfig::Qwen2(_) => "Qwen2ForSequenceClassification",
        }
    }

    /// The longest input the model was made for: `max_position_embeddings` (GPT-2's
    /// `n_positions`). The default maximum input length.
    pub fn max_positions(&self) -> usize {
        match self {
            ArchConfig::Bert(c) => c.max_position_embeddings,
            ArchConfig::Gpt2(c) => c.n_positions,
            ArchConfig::Llama(c) | ArchConfig::Qwen2(c) => c.max_position_embeddings,
        }
    }

    /// Whether the positions are a learned table (BERT, GPT-2), so that no input can be longer
    /// than [`ArchConfig::max_positions`]; rotary positions (Llama, Qwen2) have no hard limit.
    pub fn learned_positions(&self) -> bool {
        match self {
            ArchConfig::Bert(_) | ArchConfig::Gpt2(_) => true,
            ArchConfig::Llama(_) | ArchConfig::Qwen2(_) => false,
        }
    }

    /// Std of the backbone's own weight initialisation (HF `initializer_range`).
    pub fn initializer_range(&self) -> f64 {
        match self {
            ArchConfig::Bert(c) => c.initializer_range,
            ArchConfig::Gpt2(c) => c.initializer_range,
            ArchConfig::Llama(c) | ArchConfig::Qwen2(c) => c.initializer_range,
        }
    }
}

/// A built backbone.
// One per model, built once: the variants' sizes (mostly their configs) do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Backbone {
    Bert(Bert),
    Gpt2(Gpt2),
    /// Llama, SmolLM2 and Qwen2 (see [`crate::llama::Flavour`]).
    Llama(Llama),
}

impl Backbone {
    /// Builds the backbone under `vb` (already pushed to the base prefix). `with_pooler` only
    /// concerns BERT; decoders are built without an LM head.
    pub fn new(vb: VarBuilder, config: &ArchConfig, with_pooler: bool) -> Result<Self> {
        Ok(match config {
            ArchConfig::Bert(c) => Backbone::Bert(Bert::new(vb, c, with_pooler)?),
            ArchConfig::Gpt2(c) => Backbone::Gpt2(Gpt2::new(vb, c)?),
            ArchConfig::Llama(c) => Backbone::Llama(Llama::new(vb, c, None)?),
            ArchConfig::Qwen2(c) => Backbone::Llama(Llama::new_qwen2(vb, c, None)?),
        })
    }

    /// Hidden states `[batch, seq, hidden]` for `ids`/`type_ids` `[batch, seq]` (u32) and the
    /// keys each query may see. Decoders ignore `type_ids`. Packed rows ([`Keys::packed`]) with a
    /// shared prefix are for decoders only (an [`ModelError::Unsupported`] error for BERT);
    /// sequences packed side by side, for all.
    pub fn forward(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        keys: &Keys,
        mode: Mode,
    ) -> Result<Tensor> {
        Ok(match self {
            Backbone::Bert(m) => {
                if keys.shares_prefix() {
                    return Err(packed_encoder());
                }
                m.forward_keys(ids, type_ids, keys, mode)?
            }
            Backbone::Gpt2(m) => m.forward_keys(ids, keys, mode)?,
            Backbone::Llama(m) => m.forward_keys(ids, keys, mode)?,
        })
    }

    /// [`Backbone::forward`] with gradient checkpointing ([`crate::recompute`]): decoders
    /// only; BERT is an [`ModelError::Unsupported`] error.
    pub fn forward_recompute(
        &self,
        ids: &Tensor,
        keys: &Keys,
        mode: Mode,
    ) -> Result<(Tensor, Recompute<'_>)> {
        Ok(match self {
            Backbone::Bert(_) => {
                return Err(ModelError::Unsupported(
                    "gradient checkpointing is implemented for decoders (GPT-2, Llama family), \
                     not BERT"
                        .into(),
                ))
            }
            Backbone::Gpt2(m) => m.forward_recompute(ids, keys, mode)?,
            Backbone::Llama(m) => m.forward_recompute(ids, keys, mode)?,
        })
    }

    /// BERT's pooler output of the `[CLS]` states `[sequences, hidden]`, where the backbone
    /// has one.
    pub fn pooler(&self, cls: &Tensor) -> Result<Option<Tensor>> {
        Ok(match self {
            Backbone::Bert(m) => m.pool(cls)?,
            Backbone::Gpt2(_) | Backbone::Llama(_) => None,
        })
    }
}

/// A shared prefix relies on causal attention: a BERT token would need to see every branch.
fn packed_encoder() -> ModelError {
    ModelError::Unsupported("a shared prompt computed once needs a causal decoder, not BERT".into())
}
