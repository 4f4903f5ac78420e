//! GGUF files (llama.cpp's format): a Llama-architecture decoder and its tokenizer.
//!
//! A GGUF file holds everything an HF checkpoint folder does, in other words:
//!
//! - the architecture in `{arch}.*` metadata → [`GgufFile::config_json`] writes the HF
//!   `config.json` that [`ArchConfig`](crate::ArchConfig) reads;
//! - quantised tensors under llama.cpp names → [`GgufFile::tensors`] dequantises them to f32 and
//!   renames them to HF names (the one table GGUF needs, [`hf_name`]), undoing the Q/K row
//!   permutation that llama.cpp's converter applies for its interleaved RoPE, so that a store made
//!   with [`ParamStore::with_tensors`](crate::ParamStore::with_tensors) backs the HF-layout Llama
//!   backbone;
//! - the tokenizer in `tokenizer.ggml.*` metadata → [`GgufFile::tokenizer`] rebuilds the
//!   `tokenizers` tokenizer (byte-level BPE with the model's pre-tokenizer), with the special
//!   token names and the chat template.
//!
//! The forward pass runs on dequantised f32 weights, so it is the model the quantised file
//! describes, computed exactly (llama.cpp's own quantised matmuls differ slightly).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use serde_json::json;

use rewardkit_tokenize::{InputStyle, RewardTokenizer};

use crate::backbone::ArchConfig;
use crate::error::{ModelError, Result};
use crate::params::ParamStore;

/// An open GGUF file: its metadata and tensor index (tensor data is read on demand).
pub struct GgufFile {
    path: PathBuf,
    content: Content,
}

/// The architectures whose tensors and metadata this module maps.
const SUPPORTED_ARCHS: [&str; 1] = ["llama"];

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_USER_DEFINED: i64 = 4;
const TOKEN_TYPE_CONTROL: i64 = 3;

impl GgufFile {
    /// Reads the header (metadata and tensor index) of a GGUF file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::read_header(path, &mut Self::reader(path)?)
    }

    /// Reads the header from any seekable reader (bytes in memory, for tests and fuzzing);
    /// `path` names it in errors and is where tensor data would be read from.
    pub fn read_header<R: std::io::Read + std::io::Seek>(
        path: &Path,
        reader: &mut R,
    ) -> Result<Self> {
        let content = Content::read(reader).map_err(|e| ModelError::Gguf {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            content,
        })
    }

    fn reader(path: &Path) -> Result<BufReader<File>> {
        let file = File::open(path).map_err(rewardkit_io::IoError::at(path))?;
        Ok(BufReader::new(file))
    }

    fn err(&self, message: impl Into<String>) -> ModelError {
        ModelError::Gguf {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw metadata, by key.
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// Tensor names in the file (llama.cpp names), sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .content
            .tensor_infos
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| self.err(format!("no `{key}` in the metadata")))
    }

    fn string(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(format!("`{key}` is {:?}, not a string", v.value_type()))),
        }
    }

    fn uint(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                as_i64(v)
                    .and_then(|x| u64::try_from(x).ok())
                    .ok_or_else(|| self.err(format!("`{key}` is {v:?}, not an unsigned integer")))
            })
            .transpose()
    }

    fn require_uint(&self, key: &str) -> Result<usize> {
        self.uint(key)?
            .map(|x| x as usize)
            .ok_or_else(|| self.err(format!("no `{key}` in the metadata")))
    }

    fn float(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| match v {
                Value::F32(x) => Ok(*x as f64),
                Value::F64(x) => Ok(*x),
                v => Err(self.err(format!("`{key}` is {v:?}, not a float"))),
            })
            .transpose()
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(format!("`{key}` is {v:?}, not a bool"))),
        }
    }

    fn array(&self, key: &str) -> Result<&[Value]> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            v => Err(self.err(format!("`{key}` is {:?}, not an array", v.value_type()))),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<&str>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                v => Err(self.err(format!(
                    "`{key}`[{i}] is {:?}, not a string",
                    v.value_type()
                ))),
            })
            .collect()
    }

    /// `general.architecture`, checked against the architectures this module maps.
    pub fn architecture(&self) -> Result<&str> {
        let arch = self
            .string("general.architecture")?
            .ok_or_else(|| self.err("no `general.architecture` in the metadata"))?;
        if !SUPPORTED_ARCHS.contains(&arch) {
            return Err(ModelError::Unsupported(format!(
                "{}: GGUF architecture `{arch}` (supported: {})",
                self.path.display(),
                SUPPORTED_ARCHS.join(", ")
            )));
        }
        Ok(arch)
    }

    /// The vocabulary size: the length of `tokenizer.ggml.tokens`.
    pub fn vocab_size(&self) -> Result<usize> {
        Ok(self.array("tokenizer.ggml.tokens")?.len())
    }

    /// An HF-style `config.json` for the architecture in the metadata (`model_type` "llama").
    pub fn config_json(&self) -> Result<serde_json::Value> {
        let arch = self.architecture()?;
        let key = |k: &str| format!("{arch}.{k}");
        let hidden = self.require_uint(&key("embedding_length"))?;
        let heads = self.require_uint(&key("attention.head_count"))?;
        let kv_heads = self
            .uint(&key("attention.head_count_kv"))?
            .map_or(heads, |x| x as usize);
        if heads == 0
            || kv_heads == 0
            || !hidden.is_multiple_of(heads)
            || !heads.is_multiple_of(kv_heads)
        {
            return Err(self.err(format!(
                "inconsistent attention shape: {heads} heads, {kv_heads} KV heads, width {hidden}"
            )));
        }
        let head_dim = self
            .uint(&key("attention.key_length"))?
            .map_or(hidden / heads, |x| x as usize);
        if let Some(rot) = self.uint(&key("rope.dimension_count"))? {
            if rot as usize != head_dim {
                return Err(ModelError::Unsupported(format!(
                    "{}: partial rotary embeddings ({rot} of {head_dim} dimensions)",
                    self.path.display()
                )));
            }
        }
        if let Some(scaling) = self.string(&key("rope.scaling.type"))? {
            if scaling != "none" {
                return Err(ModelError::Unsupported(format!(
                    "{}: RoPE scaling `{scaling}`",
                    self.path.display()
                )));
            }
        }
        if self.content.tensor_infos.contains_key("rope_freqs.weight") {
            return Err(ModelError::Unsupported(format!(
                "{}: RoPE frequency factors (`rope_freqs.weight`, Llama 3.1 scaling)",
                self.path.display()
            )));
        }
        let vocab = self.vocab_size()?;
        if let Some(v) = self.uint(&key("vocab_size"))? {
            if v as usize != vocab {
                return Err(self.err(format!(
                    "`{arch}.vocab_size` is {v} but the token list has {vocab} tokens"
                )));
            }
        }
        let rope_theta = self.float(&key("rope.freq_base"))?.unwrap_or(10_000.0);
        let eps = self
            .float(&key("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| {
                self.err(format!(
                    "no `{}` in the metadata",
                    key("attention.layer_norm_rms_epsilon")
                ))
            })?;
        // The file stores f32; print the value HF configs use (1e-5, not 9.99999974e-6).
        let eps = round_f32(eps);
        let tied = !self.content.tensor_infos.contains_key("output.weight");
        Ok(json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": vocab,
            "hidden_size": hidden,
            "intermediate_size": self.require_uint(&key("feed_forward_length"))?,
            "num_hidden_layers": self.require_uint(&key("block_count"))?,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "head_dim": head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.require_uint(&key("context_length"))?,
            "rms_norm_eps": eps,
            "rope_theta": rope_theta,
            "rope_parameters": {"rope_theta": rope_theta, "rope_type": "default"},
            "attention_bias": self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            "mlp_bias": false,
            "tie_word_embeddings": tied,
            "initializer_range": 0.02,
            "bos_token_id": self.uint("tokenizer.ggml.bos_token_id")?,
            "eos_token_id": self.uint("tokenizer.ggml.eos_token_id")?,
            "pad_token_id": self.uint("tokenizer.ggml.padding_token_id")?,
        }))
    }

    /// The backbone configuration ([`GgufFile::config_json`] read as an HF `config.json`).
    pub fn arch_config(&self) -> Result<ArchConfig> {
        let json = self.config_json()?;
        ArchConfig::from_json(&json.to_string()).map_err(|message| ModelError::Config {
            path: self.path.clone(),
            message,
        })
    }

    /// A store backed by [`GgufFile::tensors`] (HF names; parameters it lacks, such as a value
    /// head, are initialised from `seed`).
    pub fn param_store(&self, seed: u64, device: &Device) -> Result<ParamStore> {
        ParamStore::with_tensors(self.tensors(device)?, seed, device)
    }

    /// Every tensor, dequantised to f32 on `device`, under its HF name, with llama.cpp's Q/K row
    /// permutation undone. An unknown tensor name is an error (nothing is dropped silently).
    pub fn tensors(&self, device: &Device) -> Result<HashMap<String, Tensor>> {
        let arch = self.architecture()?;
        let heads = self.require_uint(&format!("{arch}.attention.head_count"))?;
        let kv_heads = self
            .uint(&format!("{arch}.attention.head_count_kv"))?
            .map_or(heads, |x| x as usize);
        let mut reader = Self::reader(&self.path)?;
        let mut out = HashMap::with_capacity(self.content.tensor_infos.len());
        for name in self.tensor_names() {
            let hf = hf_name(name).ok_or_else(|| {
                ModelError::Unsupported(format!(
                    "{}: tensor `{name}` has no HF counterpart here",
                    self.path.display()
                ))
            })?;
            let q = self
                .content
                .tensor(&mut reader, name, device)
                .map_err(|e| self.err(format!("tensor `{name}`: {e}")))?;
            let mut t = q
                .dequantize(device)
                .map_err(|e| self.err(format!("tensor `{name}`: {e}")))?;
            if arch == "llama" {
                if name.ends_with(".attn_q.weight") || name.ends_with(".attn_q.bias") {
                    t = unpermute_rope_rows(&t, heads)
                        .map_err(|e| self.err(format!("tensor `{name}`: {e}")))?;
                } else if name.ends_with(".attn_k.weight") || name.ends_with(".attn_k.bias") {
                    t = unpermute_rope_rows(&t, kv_heads)
                        .map_err(|e| self.err(format!("tensor `{name}`: {e}")))?;
                }
            }
            out.insert(hf, t);
        }
        Ok(out)
    }

    /// The tokenizer described by `tokenizer.ggml.*`, with its special tokens and chat template.
    pub fn tokenizer(&self) -> Result<GgufTokenizer> {
        let model = self
            .string("tokenizer.ggml.model")?
            .ok_or_else(|| self.err("no `tokenizer.ggml.model` in the metadata"))?;
        if model != "gpt2" {
            return Err(ModelError::Unsupported(format!(
                "{}: tokenizer model `{model}` (only byte-level BPE, `gpt2`, is rebuilt)",
                self.path.display()
            )));
        }
        let pre = self.string("tokenizer.ggml.pre")?.unwrap_or("default");
        let pre_tokenizer = pre_tokenizer_for(pre).ok_or_else(|| {
            ModelError::Unsupported(format!(
                "{}: pre-tokenizer `{pre}` (known: {})",
                self.path.display(),
                KNOWN_PRE.join(", ")
            ))
        })?;
        let tokens = self.strings("tokenizer.ggml.tokens")?;
        let merges = self.strings("tokenizer.ggml.merges")?;
        let types: Vec<i64> = match self.get("tokenizer.ggml.token_type") {
            None => vec![1; tokens.len()],
            Some(_) => self
                .array("tokenizer.ggml.token_type")?
                .iter()
                .map(|v| as_i64(v).ok_or_else(|| self.err("`tokenizer.ggml.token_type`: not ints")))
                .collect::<Result<_>>()?,
        };
        if types.len() != tokens.len() {
            return Err(self.err(format!(
                "{} token types for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        let token_name = |key: &str| -> Result<Option<String>> {
            match self.uint(key)? {
                None => Ok(None),
                Some(id) => tokens
                    .get(id as usize)
                    .map(|t| Some(t.to_string()))
                    .ok_or_else(|| self.err(format!("`{key}` = {id} is not a token id"))),
            }
        };
        let bos = token_name("tokenizer.ggml.bos_token_id")?;
        let eos = token_name("tokenizer.ggml.eos_token_id")?;
        let pad = token_name("tokenizer.ggml.padding_token_id")?;
        let add_bos = self.bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false);
        let add_eos = self.bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        let tokenizer = build_bpe(
            &tokens,
            &merges,
            &types,
            pre_tokenizer,
            add_bos.then_some(bos.as_deref()).flatten(),
            add_eos.then_some(eos.as_deref()).flatten(),
        )
        .map_err(|e| self.err(format!("tokenizer: {e}")))?;
        Ok(GgufTokenizer {
            tokenizer,
            bos_token: bos,
            eos_token: eos,
            pad_token: pad,
            chat_template: self.string("tokenizer.chat_template")?.map(str::to_string),
        })
    }
}

/// The tokenizer of a GGUF file and what a prompt builder needs besides it.
#[derive(Clone)]
pub struct GgufTokenizer {
    pub tokenizer: tokenizers::Tokenizer,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    /// `tokenizer.chat_template` (a Jinja template, e.g. ChatML).
    pub chat_template: Option<String>,
}

impl GgufTokenizer {
    /// A reward-model tokenizer with the file's EOS and padding tokens.
    pub fn reward_tokenizer(&self, style: InputStyle) -> Result<RewardTokenizer> {
        Ok(RewardTokenizer::new(
            self.tokenizer.clone(),
            style,
            self.eos_token.as_deref(),
            self.pad_token.as_deref(),
        )?)
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    Some(match v {
        Value::U8(x) => *x as i64,
        Value::I8(x) => *x as i64,
        Value::U16(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::U32(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::U64(x) => i64::try_from(*x).ok()?,
        Value::I64(x) => *x,
        _ => return None,
    })
}

/// The shortest decimal that reads back as the same f32 (`9.99999974e-6` → `1e-5`).
fn round_f32(x: f64) -> f64 {
    let s = format!("{}", x as f32);
    s.parse().unwrap_or(x)
}

/// The HF name of a llama.cpp tensor name.
pub fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, param) = rest.rsplit_once('.')?;
    if param != "weight" && param != "bias" {
        return None;
    }
    let hf = match module {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{param}"))
}

/// Undoes llama.cpp's `permute` of Q/K projection rows (HF → GGUF is
/// `w.reshape(n_head, 2, d/n_head/2, in).swapaxes(1, 2).reshape(d, in)`, which interleaves the two
/// halves of each head's rotary dimensions): reshape `(n_head, d/n_head/2, 2, in)`, swap axes 1
/// and 2, reshape back. Works for weights `[d, in]` and biases `[d]`.
pub fn unpermute_rope_rows(t: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let d = dims.first().copied().unwrap_or(0);
    if n_head == 0 || d % (2 * n_head) != 0 {
        candle_core::bail!("{d} rows do not split into {n_head} heads of even size")
    }
    let half = d / n_head / 2;
    let rest: usize = dims[1..].iter().product();
    t.reshape((n_head, half, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// llama.cpp `tokenizer.ggml.pre` values whose HF pre-tokenizer is rebuilt here.
const KNOWN_PRE: [&str; 5] = ["gpt-2", "smollm", "starcoder", "refact", "codeshell"];

/// The HF pre-tokenizer that llama.cpp's `tokenizer.ggml.pre` stands for.
///
/// - `smollm`, `starcoder`, `refact`, `codeshell`: each digit on its own (`\p{N}`), then GPT-2's
///   byte-level split: SmolLM2's `tokenizer.json` is `Sequence[Digits(individual_digits),
///   ByteLevel(add_prefix_space=false)]`, which llama.cpp runs as the regexes
///   `\p{N}` + GPT-2's;
/// - `gpt-2`: GPT-2's byte-level split alone.
fn pre_tokenizer_for(pre: &str) -> Option<tokenizers::PreTokenizerWrapper> {
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    let byte_level = ByteLevel::default()
        .add_prefix_space(false)
        .trim_offsets(true)
        .use_regex(true);
    match pre {
        "gpt-2" => Some(byte_level.into()),
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            Some(Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into())
        }
        _ => None,
    }
}

/// A byte-level BPE tokenizer from a token list, merges and token types. Control tokens (type 3)
/// become special added tokens and user-defined ones (type 4) plain added tokens, so each is
/// matched whole before BPE.
fn build_bpe(
    tokens: &[&str],
    merges: &[&str],
    types: &[i64],
    pre_tokenizer: tokenizers::PreTokenizerWrapper,
    bos: Option<&str>,
    eos: Option<&str>,
) -> std::result::Result<tokenizers::Tokenizer, String> {
    use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
    use tokenizers::models::bpe::{Vocab, BPE};
    use tokenizers::processors::byte_level::ByteLevel as ByteLevelProcessor;
    use tokenizers::processors::template::TemplateProcessing;
    use tokenizers::AddedToken;

    let mut vocab: Vocab = Vocab::default();
    for (id, tok) in tokens.iter().enumerate() {
        let id = u32::try_from(id).map_err(|_| "more than 2³² tokens".to_string())?;
        if vocab.insert(tok.to_string(), id).is_some() {
            return Err(format!("token `{tok}` appears twice"));
        }
    }
    let merges = merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format!("merge {i} `{m}` is not two tokens"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| e.to_string())?;
    let mut t = tokenizers::Tokenizer::new(bpe);
    t.with_pre_tokenizer(Some(pre_tokenizer));
    t.with_decoder(Some(ByteLevelDecoder::default()));

    let added = |ty: i64, special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(types)
            .filter(|(_, &t)| t == ty)
            .map(|(tok, _)| AddedToken::from(tok.to_string(), special).normalized(false))
            .collect()
    };
    t.add_special_tokens(added(TOKEN_TYPE_CONTROL, true))
        .map_err(|e| e.to_string())?;
    t.add_tokens(added(TOKEN_TYPE_USER_DEFINED, false))
        .map_err(|e| e.to_string())?;

    if bos.is_none() && eos.is_none() {
        t.with_post_processor(Some(ByteLevelProcessor::default().trim_offsets(false)));
    } else {
        // The tokens the file asks to be added around every sequence (Llama-style BOS).
        let id_of = |tok: &str| {
            t.token_to_id(tok)
                .ok_or_else(|| format!("special token `{tok}` is not in the vocabulary"))
        };
        let mut single = Vec::new();
        let mut specials: BTreeMap<String, u32> = BTreeMap::new();
        if let Some(b) = bos {
            single.push(b.to_string());
            specials.insert(b.to_string(), id_of(b)?);
        }
        single.push("$A".to_string());
        if let Some(e) = eos {
            single.push(e.to_string());
            specials.insert(e.to_string(), id_of(e)?);
        }
        let pair: Vec<String> = single
            .iter()
            .cloned()
            .chain(single.iter().map(|s| {
                if s == "$A" {
                    "$B:1".to_string()
                } else {
                    format!("{s}:1")
                }
            }))
            .collect();
        let processor = TemplateProcessing::builder()
            .try_single(single)
            .map_err(|e| e.to_string())?
            .try_pair(pair)
            .map_err(|e| e.to_string())?
            .special_tokens(specials.into_iter().collect::<Vec<_>>())
            .build()
            .map_err(|e| e.to_string())?;
        t.with_post_processor(Some(processor));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_hf() {
        assert_eq!(
            hf_name("blk.3.attn_q.weight").as_deref(),
            Some("model.layers.3.self_attn.q_proj.weight")
        );
        assert_eq!(
            hf_name("blk.12.ffn_norm.weight").as_deref(),
            Some("model.layers.12.post_attention_layernorm.weight")
        );
        assert_eq!(
            hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(hf_name("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(hf_name("rope_freqs.weight"), None);
    }

    /// llama.cpp's `permute`, written out, to check that [`unpermute_rope_rows`] inverts it.
    fn permute(w: &Tensor, n_head: usize) -> Tensor {
        let (d, i) = w.dims2().unwrap();
        w.reshape((n_head, 2, d / n_head / 2, i))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((d, i))
            .unwrap()
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let dev = Device::Cpu;
        let (heads, hd, cols) = (3, 8, 5);
        let w = Tensor::arange(0f32, (heads * hd * cols) as f32, &dev)
            .unwrap()
            .reshape((heads * hd, cols))
            .unwrap();
        let p = permute(&w, heads);
        assert_ne!(p.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
        // Row 1 of head 0 in GGUF order is HF row hd/2: the pairs (j, j + hd/2) are interleaved.
        assert_eq!(
            p.get(1).unwrap().to_vec1::<f32>().unwrap(),
            w.get(hd / 2).unwrap().to_vec1::<f32>().unwrap()
        );
        let back = unpermute_rope_rows(&p, heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
        let b = Tensor::arange(0f32, (heads * hd) as f32, &dev).unwrap();
        let pb = permute(&b.reshape((heads * hd, 1)).unwrap(), heads)
            .flatten_all()
            .unwrap();
        assert_eq!(
            unpermute_rope_rows(&pb, heads)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            b.to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn f32_epsilons_print_as_in_configs() {
        assert_eq!(round_f32(9.999999747378752e-06), 1e-5);
        assert_eq!(round_f32(1e-6f32 as f64), 1e-6);
    }
}
