//! BERT encoders (BERT, MiniLM, and other `BertModel` checkpoints).
//!
//! Weight names are those of transformers' `BertModel` (`embeddings.word_embeddings.weight`,
//! `encoder.layer.{i}.attention.self.query.weight`, …); a `bert.` prefix is accepted too.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::keys::Keys;
use crate::nn::{self, Dropout, Embedding, LayerNorm, Linear, Mode};

/// The fields of a BERT `config.json` that the forward pass uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_init")]
    pub initializer_range: f64,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> Activation {
    Activation::Gelu
}
fn default_dropout() -> f64 {
    0.1
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_init() -> f64 {
    0.02
}

/// Activations by their `hidden_act` names in HF configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU with erf (HF's `gelu`).
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`; GPT-2).
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluNew,
    Relu,
    #[serde(alias = "swish")]
    Silu,
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Gelu => crate::ops::gelu_erf(x),
            Activation::GeluNew => crate::ops::gelu_tanh(x),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
        }
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    attention: nn::Attention,
    hidden_dropout1: Dropout,
    hidden_dropout2: Dropout,
    act: Activation,
}

impl Layer {
    fn new(vb: VarBuilder, c: &BertConfig, i: usize) -> candle_core::Result<Self> {
        let (h, std) = (c.hidden_size, c.initializer_range);
        let att = vb.pp("attention");
        let s = att.pp("self");
        let site = |name: &str| format!("bert.layer{i}.{name}");
        Ok(Layer {
            query: Linear::new(s.pp("query"), h, h, true, std)?,
            key: Linear::new(s.pp("key"), h, h, true, std)?,
            value: Linear::new(s.pp("value"), h, h, true, std)?,
            attn_out: Linear::new(att.pp("output").pp("dense"), h, h, true, std)?,
            attn_norm: LayerNorm::new(att.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
            intermediate: Linear::new(
                vb.pp("intermediate").pp("dense"),
                h,
                c.intermediate_size,
                true,
                std,
            )?,
            output: Linear::new(
                vb.pp("output").pp("dense"),
                c.intermediate_size,
                h,
                true,
                std,
            )?,
            out_norm: LayerNorm::new(vb.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
            attention: nn::Attention {
                heads: c.num_attention_heads,
                causal: false,
                scale: 1.0 / ((h / c.num_attention_heads.max(1)) as f64).sqrt(),
                dropout: Dropout::new(c.attention_probs_dropout_prob, site("attn")),
            },
            hidden_dropout1: Dropout::new(c.hidden_dropout_prob, site("hidden1")),
            hidden_dropout2: Dropout::new(c.hidden_dropout_prob, site("hidden2")),
            act: c.hidden_act,
        })
    }

    /// `keys`: the `[b, t]` attention mask.
    fn forward(&self, x: &Tensor, keys: &Keys, mode: Mode) -> candle_core::Result<Tensor> {
        let ctx = self.attention.forward(
            &self.query.forward_t(x, mode)?,
            &self.key.forward_t(x, mode)?,
            &self.value.forward_t(x, mode)?,
            keys,
            mode,
        )?;
        let a = self
            .hidden_dropout1
            .forward(&self.attn_out.forward_t(&ctx, mode)?, mode)?;
        let x = self.attn_norm.forward(&(a + x)?)?;
        let m = self.act.apply(&self.intermediate.forward_t(&x, mode)?)?;
        let m = self
            .hidden_dropout2
            .forward(&self.output.forward_t(&m, mode)?, mode)?;
        self.out_norm.forward(&(m + x)?)
    }
}

/// A BERT encoder: token ids → hidden states `[batch, seq, hidden]`.
pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: LayerNorm,
    emb_dropout: Dropout,
    layers: Vec<Layer>,
    pooler: Option<Linear>,
    pub config: BertConfig,
}

impl Bert {
    /// Builds the encoder under `vb` (e.g. `vb.pp("bert")`). The pooler (`pooler.dense`) is built
    /// only when `with_pooler` (transformers' `BertForSequenceClassification` reads from it).
    pub fn new(
        vb: VarBuilder,
        config: &BertConfig,
        with_pooler: bool,
    ) -> candle_core::Result<Self> {
        let c = config;
        let (h, std) = (c.hidden_size, c.initializer_range);
        let e = vb.pp("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::new(vb.pp("encoder").pp("layer").pp(i), c, i))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let pooler = if with_pooler {
            Some(Linear::new(vb.pp("pooler").pp("dense"), h, h, true, std)?)
        } else {
            None
        };
        Ok(Bert {
            word: Embedding::new(e.pp("word_embeddings"), c.vocab_size, h, std)?,
            position: Embedding::new(
                e.pp("position_embeddings"),
                c.max_position_embeddings,
                h,
                std,
            )?,
            token_type: Embedding::new(e.pp("token_type_embeddings"), c.type_vocab_size, h, std)?,
            emb_norm: LayerNorm::new(e.pp("LayerNorm"), h, c.layer_norm_eps)?,
            emb_dropout: Dropout::new(c.hidden_dropout_prob, "bert.embeddings"),
            layers,
            pooler,
            config: config.clone(),
        })
    }

    /// `ids`, `type_ids`, `mask`: `[batch, seq]` (u32). Padded keys are masked out.
    pub fn forward(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        mask: &Tensor,
        mode: Mode,
    ) -> candle_core::Result<Tensor> {
        self.forward_keys(ids, type_ids, &Keys::new(mask), mode)
    }

    /// [`BertModel::forward`] with the keys each query sees: rows of one sequence (right
    /// padded, positions counting from the row's start, as BERT's own), or sequences packed
    /// side by side ([`Keys::packed`] without a shared prefix: each sees only itself, its
    /// positions from 0).
    pub fn forward_keys(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        keys: &Keys,
        mode: Mode,
    ) -> candle_core::Result<Tensor> {
        if keys.shares_prefix() {
            candle_core::bail!(
                "BERT cannot share a prefix between packed sequences: its tokens see the whole \
                 sequence"
            );
        }
        let (b, t) = ids.dims2()?;
        let longest = keys.longest()?;
        if longest > self.config.max_position_embeddings {
            candle_core::bail!(
                "sequence of {longest} tokens is longer than the model's {} positions",
                self.config.max_position_embeddings
            );
        }
        let positions = if keys.is_packed() {
            keys.positions()?
        } else {
            Tensor::arange(0u32, t as u32, ids.device())?
                .unsqueeze(0)?
                .broadcast_as((b, t))?
                .contiguous()?
        };
        let x = (self.word.forward(ids)? + self.position.forward(&positions)?)?;
        let x = (x + self.token_type.forward(type_ids)?)?;
        let mut x = self
            .emb_dropout
            .forward(&self.emb_norm.forward(&x)?, mode)?;
        for layer in &self.layers {
            x = layer.forward(&x, keys, mode)?;
        }
        Ok(x)
    }

    /// BERT's pooler, `tanh(W · h[CLS] + b)`, of the `[CLS]` states `[sequences, hidden]`;
    /// `None` when built without it.
    pub fn pool(&self, cls: &Tensor) -> candle_core::Result<Option<Tensor>> {
        match &self.pooler {
            None => Ok(None),
            Some(p) => Ok(Some(p.forward(cls)?.tanh()?)),
        }
    }
}
