//! # rewardkit-model
//!
//! Transformer reward models on candle: a pretrained (or freshly initialised) backbone, a pooling
//! rule and a scalar value head. Backbones are written here, one file per architecture, from
//! ops whose backward pass candle computes (see [`nn`]), so that training updates every weight.
//!
//! - [`bert`]: BERT / MiniLM encoders;
//! - [`gpt2`]: GPT-2 decoders;
//! - [`llama`]: Llama-family decoders (Llama, SmolLM2, Qwen2);
//! - [`backbone::ArchConfig`]: the closed set of architectures, read from an HF `config.json`;
//! - [`gguf::GgufFile`]: llama.cpp GGUF files: HF config, dequantised HF-named tensors, tokenizer;
//! - [`causal_lm::CausalLm`]: a decoder with its LM head (GPT-2, Llama family), and
//!   [`causal_lm::CausalLm::response_logprobs`]: log π(response | prompt) per token, with a
//!   backward pass, batched over a [`causal_lm::ResponseBatch`];
//! - [`generate::Policy`]: a trainable causal LM that samples (KV cache, temperature, top-p) and
//!   scores sequences, from a GGUF file, an HF folder or from scratch ([`policy_io`]);
//! - [`params::ParamStore`]: weights by checkpoint name, loaded or seeded-initialised;
//! - [`lora`]: LoRA adapters on chosen linear layers (only they and the value head train), and
//!   [`peft`]: their files in PEFT's layout (`adapter_config.json`, `adapter_model.safetensors`);
//! - [`reward::RewardModel`]: backbone + [`reward::Pooling`] + `Linear(hidden, 1)`, over padded
//!   rows or packed ones (a pair's chosen and rejected after their prompt, computed once:
//!   [`keys::Keys`]);
//! - [`recompute`]: gradient checkpointing for decoders (blocks rerun in the backward pass);
//! - [`ops`]: the fused CPU kernels with their backward passes (linear, attention, layer norm,
//!   softmax, GELU), one file each, their loops compiled for AVX-512, AVX2 and the base target
//!   and chosen at run time ([`ops::simd_level`]: the CPU's widest, lowered by `REWARDKIT_SIMD`).
//!
//! Training runs on candle-core 0.11.1 patched in `vendor/candle-core` (the first gradient of a
//! node is stored, not added into zeros; `vendor/README.md`).
//!
//! ```no_run
//! use candle_core::Device;
//! use rewardkit_model::{ArchConfig, ParamStore, Pooling, RewardModel, Mode};
//!
//! let dir = std::path::Path::new("models/minilm");
//! let config = ArchConfig::from_file(&dir.join("config.json"))?;
//! let store = ParamStore::from_safetensors(&[dir.join("model.safetensors")], 0, &Device::Cpu)?;
//! let model = RewardModel::new(&config, Pooling::Cls, &store)?;
//! # Ok::<(), rewardkit_model::ModelError>(())
//! ```

pub mod backbone;
pub mod bert;
pub mod causal_lm;
pub mod checkpoint;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod gpt2;
pub mod keys;
pub mod llama;
pub mod lora;
pub mod nn;
pub mod ops;
pub mod params;
pub mod peft;
pub mod policy_io;
pub mod recompute;
pub mod reward;
pub mod scorer;
pub mod word_tokenizer;

pub use backbone::{ArchConfig, Backbone};
pub use causal_lm::{CausalLm, LmCache, ResponseBatch, TokenLogprobs};
pub use checkpoint::{load, save, InitMissing, LoadOptions, LoadedModel, ModelMeta};
pub use error::{ModelError, Result};
pub use generate::{ChatTemplate, GenerateError, GenerationConfig, Policy, Sample};
pub use gguf::{GgufFile, GgufTokenizer};
pub use keys::Keys;
pub use lora::LoraConfig;
pub use nn::Mode;
pub use params::{LoraPlan, ParamStore};
pub use peft::TaskType;
pub use recompute::Recompute;
pub use reward::{Pooling, RewardModel};
pub use rewardkit_data::Rng;
pub use scorer::ModelScorer;
pub use word_tokenizer::word_level_tokenizer;
