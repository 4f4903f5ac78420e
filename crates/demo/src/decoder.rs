//! The world's tiny decoder: the policy that RL in the world optimises.
//!
//! - **Format**: a decoder reads `PROMPT [SEP]` and writes `RESPONSE [SEP]`: the world's
//!   `[SEP]` token (id 3) separates the prompt from the response and ends the response (it is
//!   the decoder's EOS). [`decoder_prompt`] writes the prompt side, [`sft_rows`] the base
//!   policy's (prompt, response) rows that supervised fine-tuning distils into the decoder.
//! - **Tokenizer** ([`decoder_tokenizer_json`]): the world's word-level tokenizer without its
//!   BERT post-processor, so that encoding adds nothing (`[SEP]` in a prompt text is matched as
//!   the special token it is) and decoding without special tokens drops the EOS.
//! - **Shape** ([`DecoderShape`]): a Llama block (RMSNorm, rotary positions, SwiGLU; tied
//!   embeddings), a few layers and a small width; [`write_decoder_folder`] writes its
//!   `config.json` and tokenizer, ready for a seeded initialisation.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use rewardkit_data::Rng;
use rewardkit_io::IoError;
use rewardkit_rl::SftRow;

use crate::world::{Item, World};

/// The separator after the prompt and the end of a response (the decoder's EOS).
pub const EOS: &str = "[SEP]";
/// Its id in the world's tokenizer.
pub const EOS_ID: u32 = 3;
/// The padding token's id.
pub const PAD_ID: u32 = 0;

/// The tiny decoder's shape (a Llama `config.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DecoderShape {
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate_size: usize,
    /// Positions the decoder is made for (the world's longest prompt + response is under 100
    /// tokens).
    pub max_positions: usize,
}

impl Default for DecoderShape {
    fn default() -> Self {
        DecoderShape {
            hidden_size: 128,
            layers: 2,
            heads: 4,
            intermediate_size: 256,
            max_positions: 128,
        }
    }
}

impl DecoderShape {
    /// Checks what the Llama block needs; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.heads == 0 || !self.hidden_size.is_multiple_of(self.heads) {
            return Err("decoder.hidden_size must be a multiple of decoder.heads".into());
        }
        if !(self.hidden_size / self.heads).is_multiple_of(2) {
            return Err("decoder.hidden_size / decoder.heads must be even (rotary pairs)".into());
        }
        if self.layers == 0 || self.intermediate_size == 0 || self.max_positions < 16 {
            return Err(
                "decoder.layers and decoder.intermediate_size must be ≥ 1, decoder.max_positions ≥ 16"
                    .into(),
            );
        }
        Ok(())
    }

    /// The HF `config.json` of a `LlamaForCausalLM` of this shape over `vocab_size` tokens.
    pub fn config_json(&self, vocab_size: usize) -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.heads,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_positions,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": true,
            "initializer_range": 0.02,
            "bos_token_id": EOS_ID,
            "eos_token_id": EOS_ID,
            "pad_token_id": PAD_ID,
        })
    }
}

/// The prompt side of a decoder sequence: the item's prompt, then `[SEP]`.
pub fn decoder_prompt(item: &Item) -> String {
    format!("{} {EOS}", item.prompt)
}

/// The world's tokenizer for the decoder: [`World::tokenizer_json`] without the post-processor
/// (no `[CLS]`, no `[SEP]` added by encoding).
pub fn decoder_tokenizer_json(world: &World) -> Value {
    let mut tokenizer = world.tokenizer_json();
    tokenizer["post_processor"] = Value::Null;
    tokenizer
}

/// Writes `config.json`, `tokenizer.json`, `generation_config.json` (EOS and padding ids) and
/// `tokenizer_config.json` (the EOS token's name) of the world's decoder to `dir`, atomically:
/// a folder a policy can be initialised from.
pub fn write_decoder_folder(
    world: &World,
    shape: &DecoderShape,
    dir: &Path,
) -> Result<(), IoError> {
    let tokenizer = decoder_tokenizer_json(world);
    let vocab = tokenizer["model"]["vocab"]
        .as_object()
        .map_or(0, serde_json::Map::len);
    let config = shape.config_json(vocab);
    let generation =
        json!({"eos_token_id": EOS_ID, "pad_token_id": PAD_ID, "bos_token_id": EOS_ID});
    let tokenizer_config = json!({"eos_token": EOS, "pad_token": "[PAD]"});
    write_json_folder(
        dir,
        &[
            ("config.json", &config),
            ("tokenizer.json", &tokenizer),
            ("generation_config.json", &generation),
            ("tokenizer_config.json", &tokenizer_config),
        ],
    )
}

/// Writes each `(file name, JSON value)` into the folder `dir`, atomically (the folder appears
/// whole or not at all).
pub(crate) fn write_json_folder(dir: &Path, files: &[(&str, &Value)]) -> Result<(), IoError> {
    rewardkit_io::write_dir(dir, |tmp| {
        for (name, value) in files {
            rewardkit_io::write_file_with(&tmp.join(name), |w| {
                serde_json::to_writer_pretty(w, value).map_err(std::io::Error::from)
            })?;
        }
        Ok::<(), IoError>(())
    })
}

/// `n` rows of the base policy (each response without the EOS, which SFT appends): a random item each (drawn with `seed`), one policy sample.
pub fn sft_rows(world: &World, n: usize, seed: u64) -> Vec<SftRow> {
    let mut rng = Rng::derive(world.config().seed, &["sft", &seed.to_string()]);
    let items = world.items();
    if items.is_empty() {
        return Vec::new();
    }
    (0..n)
        .map(|_| {
            let item = &items[rng.below(items.len())];
            let response = world.sample_response(item, &mut rng);
            SftRow {
                prompt: decoder_prompt(item),
                response: response.text,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::world::WorldConfig;

    #[test]
    fn prompt_and_response_tokenise_as_the_decoder_format_says() {
        let world = World::new(WorldConfig::default());
        let tok =
            tokenizers::Tokenizer::from_str(&decoder_tokenizer_json(&world).to_string()).unwrap();
        assert_eq!(tok.token_to_id(EOS), Some(EOS_ID));
        assert_eq!(tok.token_to_id("[PAD]"), Some(PAD_ID));
        let rows = sft_rows(&world, 300, 0);
        assert_eq!(rows.len(), 300);
        assert_eq!(rows, sft_rows(&world, 300, 0));
        assert_ne!(rows, sft_rows(&world, 300, 1));
        let mut longest = 0;
        for row in &rows {
            // Encoding adds nothing: the prompt ends with exactly one [SEP], the response has none.
            let p = tok.encode(row.prompt.as_str(), true).unwrap();
            let ids = p.get_ids();
            assert_eq!(ids.last(), Some(&EOS_ID), "{}", row.prompt);
            assert_eq!(ids.iter().filter(|&&i| i == EOS_ID).count(), 1);
            assert!(!ids.contains(&1) && !ids.contains(&2), "no [UNK], no [CLS]");
            let r = tok.encode(row.response.as_str(), true).unwrap();
            assert!(!r.get_ids().contains(&EOS_ID) && !r.get_ids().contains(&1));
            longest = longest.max(ids.len() + r.get_ids().len() + 1);
            // Decoding without special tokens drops the EOS; the world reads it back.
            let mut seq = r.get_ids().to_vec();
            seq.push(EOS_ID);
            let text = tok.decode(&seq, true).unwrap();
            let item = world
                .items()
                .iter()
                .find(|i| decoder_prompt(i) == row.prompt)
                .unwrap();
            assert!(world.read_response(item, &text).well_formed, "{text}");
        }
        assert!(longest < DecoderShape::default().max_positions, "{longest}");
    }

    #[test]
    fn shape_config_is_a_llama_config() {
        let shape = DecoderShape::default();
        shape.validate().unwrap();
        let config =
            rewardkit_model::ArchConfig::from_json(&shape.config_json(300).to_string()).unwrap();
        match config {
            rewardkit_model::ArchConfig::Llama(c) => {
                assert_eq!(
                    (c.hidden_size, c.num_hidden_layers, c.vocab_size),
                    (shape.hidden_size, shape.layers, 300)
                );
                assert!(c.tie_word_embeddings);
            }
            other => panic!("{other:?}"),
        }
        let bad = DecoderShape {
            heads: 3,
            ..DecoderShape::default()
        };
        assert!(bad.validate().unwrap_err().contains("decoder.heads"));
        let dir = tempfile::tempdir().unwrap();
        let world = World::new(WorldConfig::default());
        write_decoder_folder(&world, &shape, &dir.path().join("d")).unwrap();
        for f in [
            "config.json",
            "tokenizer.json",
            "generation_config.json",
            "tokenizer_config.json",
        ] {
            assert!(dir.path().join("d").join(f).is_file(), "{f}");
        }
    }
}
