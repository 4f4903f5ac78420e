//! GPT-2 decoders (`GPT2Model` checkpoints).
//!
//! Weight names are those of transformers' `GPT2Model` (`wte.weight`, `wpe.weight`,
//! `h.{i}.attn.c_attn.weight`, …, `ln_f.weight`); in `GPT2ForSequenceClassification` they sit
//! under `transformer.` and the value head is `score` (no bias). GPT-2's projections are
//! `Conv1D`s, whose weights are stored `[in, out]`: they are loaded unchanged through
//! [`Linear::conv1d`].
//!
//! Positions are counted from the attention mask (`cumsum(mask) − 1`), not from the column
//! index: with right padding (rewardkit's default) this is exactly what transformers does, and
//! with left padding every row still starts at position 0, so the padding side does not change
//! the scores.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::bert::Activation;
use crate::keys::Keys;
use crate::nn::{self, Dropout, Embedding, LayerNorm, Linear, Mode};
use crate::recompute::Recompute;

/// The fields of a GPT-2 `config.json` that the forward pass uses (HF names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    #[serde(default = "default_positions")]
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// MLP width; `null` means 4 · `n_embd`.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_act")]
    pub activation_function: Activation,
    #[serde(default = "default_dropout")]
    pub resid_pdrop: f64,
    #[serde(default = "default_dropout")]
    pub embd_pdrop: f64,
    #[serde(default = "default_dropout")]
    pub attn_pdrop: f64,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_init")]
    pub initializer_range: f64,
    /// Divide attention scores by √head_dim (true in every released GPT-2).
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    /// Also divide attention scores of layer `i` by `i + 1`.
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_positions() -> usize {
    1024
}
fn default_act() -> Activation {
    Activation::GeluNew
}
fn default_dropout() -> f64 {
    0.1
}
fn default_eps() -> f64 {
    1e-5
}
fn default_init() -> f64 {
    0.02
}
fn default_true() -> bool {
    true
}

impl Gpt2Config {
    /// The MLP width (`n_inner`, or 4 · `n_embd`).
    pub fn inner_size(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
    attention: nn::Attention,
    resid_dropout1: Dropout,
    resid_dropout2: Dropout,
    act: Activation,
}

impl Block {
    fn new(vb: VarBuilder, c: &Gpt2Config, i: usize) -> candle_core::Result<Self> {
        let (h, std) = (c.n_embd, c.initializer_range);
        if c.n_head == 0 || h % c.n_head != 0 {
            candle_core::bail!("n_embd {h} is not a multiple of n_head {}", c.n_head);
        }
        // transformers scales the init of the residual projections by 1/√(2·n_layer).
        let proj_std = std / ((2 * c.n_layer.max(1)) as f64).sqrt();
        let inner = c.inner_size();
        let attn = vb.pp("attn");
        let mlp = vb.pp("mlp");
        let site = |name: &str| format!("gpt2.layer{i}.{name}");
        let mut scale = 1.0;
        if c.scale_attn_weights {
            scale /= ((h / c.n_head) as f64).sqrt();
        }
        if c.scale_attn_by_inverse_layer_idx {
            scale /= (i + 1) as f64;
        }
        Ok(Block {
            ln_1: LayerNorm::new(vb.pp("ln_1"), h, c.layer_norm_epsilon)?,
            c_attn: Linear::conv1d(attn.pp("c_attn"), h, 3 * h, std)?,
            attn_proj: Linear::conv1d(attn.pp("c_proj"), h, h, proj_std)?,
            ln_2: LayerNorm::new(vb.pp("ln_2"), h, c.layer_norm_epsilon)?,
            c_fc: Linear::conv1d(mlp.pp("c_fc"), h, inner, std)?,
            mlp_proj: Linear::conv1d(mlp.pp("c_proj"), inner, h, proj_std)?,
            attention: nn::Attention {
                heads: c.n_head,
                causal: true,
                scale,
                dropout: Dropout::new(c.attn_pdrop, site("attn")),
            },
            resid_dropout1: Dropout::new(c.resid_pdrop, site("resid1")),
            resid_dropout2: Dropout::new(c.resid_pdrop, site("resid2")),
            act: c.activation_function,
        })
    }

    /// `keys`: which keys each query may see.
    fn forward(&self, x: &Tensor, keys: &Keys, mode: Mode) -> candle_core::Result<Tensor> {
        let h = x.dim(2)?;
        let qkv = self.c_attn.forward_t(&self.ln_1.forward(x)?, mode)?;
        let ctx = self.attention.forward(
            &qkv.narrow(2, 0, h)?,
            &qkv.narrow(2, h, h)?,
            &qkv.narrow(2, 2 * h, h)?,
            keys,
            mode,
        )?;
        let a = self
            .resid_dropout1
            .forward(&self.attn_proj.forward_t(&ctx, mode)?, mode)?;
        let x = (x + a)?;
        let m = self
            .act
            .apply(&self.c_fc.forward_t(&self.ln_2.forward(&x)?, mode)?)?;
        let m = self
            .resid_dropout2
            .forward(&self.mlp_proj.forward_t(&m, mode)?, mode)?;
        x + m
    }
}

/// A GPT-2 decoder: token ids → hidden states `[batch, seq, hidden]` after `ln_f`.
pub struct Gpt2 {
    wte: Embedding,
    wpe: Embedding,
    emb_dropout: Dropout,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    pub config: Gpt2Config,
}

impl Gpt2 {
    /// Builds the decoder under `vb` (e.g. `vb.pp("transformer")`).
    pub fn new(vb: VarBuilder, config: &Gpt2Config) -> candle_core::Result<Self> {
        let c = config;
        let (h, std) = (c.n_embd, c.initializer_range);
        let blocks = (0..c.n_layer)
            .map(|i| Block::new(vb.pp("h").pp(i), c, i))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Gpt2 {
            wte: Embedding::new(vb.pp("wte"), c.vocab_size, h, std)?,
            wpe: Embedding::new(vb.pp("wpe"), c.n_positions, h, std)?,
            emb_dropout: Dropout::new(c.embd_pdrop, "gpt2.embeddings"),
            blocks,
            ln_f: LayerNorm::new(vb.pp("ln_f"), h, c.layer_norm_epsilon)?,
            config: config.clone(),
        })
    }

    /// The token embedding table `[vocab, hidden]` (GPT-2's LM head is tied to it).
    pub fn wte(&self) -> &Tensor {
        self.wte.weight()
    }

    /// `ids`, `mask`: `[batch, seq]` (u32). Attention is causal and skips padded keys; positions
    /// come from the mask.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, mode: Mode) -> candle_core::Result<Tensor> {
        self.forward_keys(ids, &Keys::new(mask), mode)
    }

    /// [`Gpt2::forward`] where `keys` may describe packed rows: positions and attention follow
    /// each token's sequence ([`crate::keys`]).
    pub fn forward_keys(
        &self,
        ids: &Tensor,
        keys: &Keys,
        mode: Mode,
    ) -> candle_core::Result<Tensor> {
        let mut x = self.embed(ids, keys, mode)?;
        for block in &self.blocks {
            x = block.forward(&x, keys, mode)?;
        }
        self.ln_f.forward(&x)
    }

    /// [`Gpt2::forward`] with gradient checkpointing: the blocks' graphs are not kept; the
    /// returned [`Recompute`] reruns them in its backward pass (see [`crate::recompute`]).
    pub fn forward_recompute(
        &self,
        ids: &Tensor,
        keys: &Keys,
        mode: Mode,
    ) -> candle_core::Result<(Tensor, Recompute<'_>)> {
        let embed = self.embed(ids, keys, mode)?;
        let (blocks, keys) = (&self.blocks, keys.clone());
        let block = move |i: usize, x: &Tensor| blocks[i].forward(x, &keys, mode);
        let (x, tape) = Recompute::run(blocks.len(), Box::new(block), embed)?;
        Ok((self.ln_f.forward(&x)?, tape))
    }

    /// Token plus position embeddings, after dropout: the first block's input.
    fn embed(&self, ids: &Tensor, keys: &Keys, mode: Mode) -> candle_core::Result<Tensor> {
        let t = keys.longest()?;
        if t > self.config.n_positions {
            candle_core::bail!(
                "sequence of {t} tokens is longer than the model's {} positions",
                self.config.n_positions
            );
        }
        let positions = keys.positions()?;
        let x = (self.wte.forward(ids)? + self.wpe.forward(&positions)?)?;
        self.emb_dropout.forward(&x, mode)
    }
}
