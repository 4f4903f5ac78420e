//! Llama-family decoders: Llama, SmolLM2 (a Llama) and Qwen2, one decoder block for all.
//!
//! Weight names are those of transformers' `LlamaModel` / `Qwen2Model` (`embed_tokens.weight`,
//! `layers.{i}.self_attn.q_proj.weight`, …, `norm.weight`); in `*ForSequenceClassification` they
//! sit under `model.` and the value head is `score` (no bias); `LlamaForCausalLM` keeps its LM
//! head at the root, `lm_head.weight`, unless `tie_word_embeddings`.
//!
//! The two architectures differ only in their projections' biases: Llama has biases on all four
//! attention projections when `attention_bias` (and on the MLP when `mlp_bias`), Qwen2 always has
//! them on q/k/v and never on `o_proj`. Both use RMSNorm, SwiGLU, grouped-query attention
//! (`num_key_value_heads` ≤ `num_attention_heads`) and rotary position embeddings in
//! transformers' `rotate_half` (non-interleaved) convention, with precomputed cos/sin tables.
//!
//! Over a whole sequence (scoring, training, the prompt of a generation) every part of the block
//! is a fused CPU kernel of [`crate::ops`] with its own backward pass: RMSNorm (keeps only its
//! input), RoPE on `[b, t, heads, d]` (a rotation: its backward pass keeps nothing), attention
//! over `[b, t, heads · d]` queries and `[b, t, kv_heads · d]` keys and values (nothing of size
//! `[b, heads, t, t]` kept, the K/V heads never repeated in memory) and SwiGLU. The cached path
//! of generation uses the same RMSNorm, RoPE and SwiGLU, and attends over a [`KvBuffer`] per
//! layer that grows in place ([`crate::ops::KvBuffer::attend`]).
//!
//! Positions are counted from the attention mask (`cumsum(mask) − 1`, clamped at 0): with right
//! padding this is what transformers does, and with left padding each row still starts at 0, so
//! the padding side does not change the hidden states of real tokens.
//!
//! `config.json` is read in both the transformers 4.x form (top-level `rope_theta`, optional
//! `rope_scaling`) and the 5.x form (`rope_parameters: {rope_theta, rope_type, …}`).

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::bert::Activation;
use crate::keys::Keys;
use crate::nn::{self, Dropout, Embedding, Linear, Mode, RmsNorm};
use crate::ops::{KvBuffer, RopeTables};
use crate::recompute::Recompute;

/// RoPE settings, as in `rope_parameters` (transformers 5.x) or `rope_scaling` (4.x, where the
/// type is called `type` or `rope_type`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RopeParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default, alias = "type", skip_serializing_if = "Option::is_none")]
    pub rope_type: Option<String>,
    /// `linear` and `llama3`: the context extension factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// `llama3` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_freq_factor: Option<f64>,
    /// `llama3` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_freq_factor: Option<f64>,
    /// `llama3` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<usize>,
}

/// The fields of a Llama / Qwen2 / SmolLM2 `config.json` that the forward pass uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// K/V heads for grouped-query attention; absent or `null` means `num_attention_heads`.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; absent or `null` means `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// transformers 4.x: the RoPE base at the top level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// transformers 5.x: RoPE base and type (and scaling parameters) in one object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
    /// transformers 4.x: RoPE scaling, `null` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeParameters>,
    /// Llama: biases on q/k/v/o (Qwen2 ignores this: q/k/v always, o never).
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub attention_dropout: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_init")]
    pub initializer_range: f64,
    /// Interleaved (GPT-J style) rotary pairs, as some Llama exports declare; only `false` (the
    /// transformers convention) is supported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rope_interleaved: bool,
    /// Qwen2's sliding-window attention (unsupported when enabled).
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> Activation {
    Activation::Silu
}
fn default_positions() -> usize {
    2048
}
fn default_eps() -> f64 {
    1e-6
}
fn default_init() -> f64 {
    0.02
}

impl LlamaConfig {
    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Number of K/V heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// RoPE parameters, wherever the config put them (5.x `rope_parameters` first).
    fn rope(&self) -> RopeParameters {
        let mut p = self
            .rope_parameters
            .clone()
            .or_else(|| self.rope_scaling.clone())
            .unwrap_or_default();
        if p.rope_theta.is_none() {
            p.rope_theta = self.rope_theta;
        }
        p
    }

    /// The RoPE base (`rope_theta`, default 10000).
    pub fn rope_theta(&self) -> f64 {
        self.rope().rope_theta.unwrap_or(10_000.0)
    }

    /// Inverse frequencies `[head_dim / 2]` of the rotary embedding, as transformers computes
    /// them (in f32) for the supported `rope_type`s: `default`, `linear`, `llama3`.
    pub fn rope_inv_freq(&self) -> candle_core::Result<Vec<f32>> {
        let p = self.rope();
        let dim = self.head_dim();
        if !dim.is_multiple_of(2) {
            candle_core::bail!("rotary embeddings need an even head_dim, got {dim}");
        }
        let base = p.rope_theta.unwrap_or(10_000.0) as f32;
        let inv: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32))
            .collect();
        let kind = p.rope_type.as_deref().unwrap_or("default");
        let need = |v: Option<f64>, name: &str| {
            v.ok_or_else(|| {
                candle_core::Error::Msg(format!("rope_type `{kind}` needs `{name}` in the config"))
            })
        };
        match kind {
            "default" => Ok(inv),
            // Positions divided by `factor` ≡ frequencies divided by it.
            "linear" => {
                let factor = need(p.factor, "factor")? as f32;
                Ok(inv.into_iter().map(|f| f / factor).collect())
            }
            "llama3" => {
                let factor = need(p.factor, "factor")? as f32;
                let low = need(p.low_freq_factor, "low_freq_factor")? as f32;
                let high = need(p.high_freq_factor, "high_freq_factor")? as f32;
                let old = need(
                    p.original_max_position_embeddings.map(|v| v as f64),
                    "original_max_position_embeddings",
                )? as f32;
                let (low_wavelen, high_wavelen) = (old / low, old / high);
                Ok(inv
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect())
            }
            other => candle_core::bail!("unsupported rope_type `{other}`"),
        }
    }
}

/// Which member of the family: decides the projections' biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Llama and SmolLM2: biases per `attention_bias` / `mlp_bias`.
    Llama,
    /// Qwen2: biases on q/k/v, none on `o_proj` or the MLP.
    Qwen2,
}

/// Rotary embedding tables for one batch (`[b, t, d/2]`), applied by the fused kernel.
struct Rotary {
    tables: RopeTables,
}

impl Rotary {
    /// Tables for position ids `[b, t]` (u32), in transformers' layout: the angles
    /// `pos · inv_freq` twice over (`cat(freqs, freqs)`), in f32 like transformers.
    fn new(inv_freq: &[f32], positions: &Tensor) -> candle_core::Result<Self> {
        let pos: Vec<Vec<u32>> = positions.to_vec2()?;
        Ok(Rotary {
            tables: RopeTables::new(inv_freq, &pos)?,
        })
    }

    /// `x · cos + rotate_half(x) · sin` for `x` `[b, t, h, d]` (heads after positions, as the
    /// projections give them), where `rotate_half([x1, x2]) = [−x2, x1]` (halves of the last
    /// dimension): nothing kept for the backward pass.
    fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        crate::ops::rope(x, &self.tables)
    }
}

/// What a block's attention is masked with.
#[derive(Clone, Copy)]
enum AttnMask<'a> {
    /// The whole sequence at once: causal attention over the keys each query may see (the
    /// `[b, t]` attention mask, and for packed rows their branches) by [`nn::Attention`] (the
    /// fused kernel on CPU: nothing of size `[b, heads, t, t]` kept for the backward pass).
    Keys(&'a Keys),
    /// Cached inference: the attention mask of every token so far, per row (the new tokens
    /// last); each new token's query sees the unmasked keys up to itself.
    Cached(&'a [Vec<u32>]),
}

struct Layer {
    input_layernorm: RmsNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    post_attention_layernorm: RmsNorm,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    /// Causal attention scaled by 1/√head_dim, with the config's attention dropout.
    attention: nn::Attention,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    act: Activation,
}

impl Layer {
    fn new(
        vb: VarBuilder,
        c: &LlamaConfig,
        flavour: Flavour,
        i: usize,
    ) -> candle_core::Result<Self> {
        let (h, std) = (c.hidden_size, c.initializer_range);
        let (heads, kv, hd) = (c.num_attention_heads, c.kv_heads(), c.head_dim());
        if heads == 0 || kv == 0 || !heads.is_multiple_of(kv) {
            candle_core::bail!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}"
            );
        }
        let (qkv_bias, o_bias, mlp_bias) = match flavour {
            Flavour::Llama => (c.attention_bias, c.attention_bias, c.mlp_bias),
            Flavour::Qwen2 => (true, false, false),
        };
        let att = vb.pp("self_attn");
        let mlp = vb.pp("mlp");
        let inter = c.intermediate_size;
        Ok(Layer {
            input_layernorm: RmsNorm::new(vb.pp("input_layernorm"), h, c.rms_norm_eps)?,
            q_proj: Linear::new(att.pp("q_proj"), h, heads * hd, qkv_bias, std)?,
            k_proj: Linear::new(att.pp("k_proj"), h, kv * hd, qkv_bias, std)?,
            v_proj: Linear::new(att.pp("v_proj"), h, kv * hd, qkv_bias, std)?,
            o_proj: Linear::new(att.pp("o_proj"), heads * hd, h, o_bias, std)?,
            post_attention_layernorm: RmsNorm::new(
                vb.pp("post_attention_layernorm"),
                h,
                c.rms_norm_eps,
            )?,
            gate_proj: Linear::new(mlp.pp("gate_proj"), h, inter, mlp_bias, std)?,
            up_proj: Linear::new(mlp.pp("up_proj"), h, inter, mlp_bias, std)?,
            down_proj: Linear::new(mlp.pp("down_proj"), inter, h, mlp_bias, std)?,
            attention: nn::Attention {
                heads,
                causal: true,
                scale: 1.0 / (hd as f64).sqrt(),
                dropout: Dropout::new(c.attention_dropout, format!("llama.layer{i}.attn")),
            },
            heads,
            kv_heads: kv,
            head_dim: hd,
            act: c.hidden_act,
        })
    }

    /// One block over `x` `[b, t, hidden]`. With a `cache` slot (inference), `x` holds only the
    /// new tokens: their K/V (after RoPE) are appended to the slot's and attention runs over
    /// all of them; `mask` is then [`AttnMask::Cached`].
    fn forward(
        &self,
        x: &Tensor,
        mask: AttnMask,
        rotary: &Rotary,
        mode: Mode,
        cache: Option<&mut Option<KvBuffer>>,
    ) -> candle_core::Result<Tensor> {
        let n = self.input_layernorm.forward(x)?;
        let ctx = match (mask, cache) {
            (AttnMask::Keys(mask), None) => self.attention_whole(&n, mask, rotary, mode)?,
            (AttnMask::Cached(mask), Some(slot)) => {
                self.attention_cached(&n, mask, rotary, slot)?
            }
            _ => candle_core::bail!("a cached forward needs its cache and the mask of its keys"),
        };
        self.finish(x, &ctx, mode)
    }

    /// The block after attention: the output projection added to `x`, then the MLP's residual.
    fn finish(&self, x: &Tensor, ctx: &Tensor, mode: Mode) -> candle_core::Result<Tensor> {
        let x = (x + self.o_proj.forward_t(ctx, mode)?)?;
        let n = self.post_attention_layernorm.forward(&x)?;
        let gate = self.gate_proj.forward_t(&n, mode)?;
        let up = self.up_proj.forward_t(&n, mode)?;
        let gated = match self.act {
            Activation::Silu => crate::ops::swiglu(&gate, &up)?,
            act => (act.apply(&gate)? * up)?,
        };
        x + self.down_proj.forward_t(&gated, mode)?
    }

    /// Attention of the whole sequence `n` `[b, t, hidden]` (normalised), heads after the
    /// positions throughout: RoPE on `[b, t, heads, d]` and [`nn::Attention`] over the queries
    /// `[b, t, heads · d]` and the keys and values `[b, t, kv_heads · d]` (grouped-query
    /// attention: the K/V heads are not repeated).
    fn attention_whole(
        &self,
        n: &Tensor,
        keys: &Keys,
        rotary: &Rotary,
        mode: Mode,
    ) -> candle_core::Result<Tensor> {
        let (b, t, _) = n.dims3()?;
        let (heads, kv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let q = self.q_proj.forward_t(n, mode)?.reshape((b, t, heads, hd))?;
        let k = self.k_proj.forward_t(n, mode)?.reshape((b, t, kv, hd))?;
        let v = self.v_proj.forward_t(n, mode)?.reshape((b, t, kv, hd))?;
        let q = rotary.apply(&q)?.reshape((b, t, heads * hd))?;
        let k = rotary.apply(&k)?.reshape((b, t, kv * hd))?;
        let v = v.reshape((b, t, kv * hd))?;
        self.attention.forward(&q, &k, &v, keys, mode)
    }

    /// Attention of the new tokens `n` `[b, t, hidden]` (normalised) against the keys and
    /// values in `slot` (created on the first call), after adding theirs: inference only.
    fn attention_cached(
        &self,
        n: &Tensor,
        mask: &[Vec<u32>],
        rotary: &Rotary,
        slot: &mut Option<KvBuffer>,
    ) -> candle_core::Result<Tensor> {
        let (b, t, _) = n.dims3()?;
        let (heads, kv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let project = |proj: &Linear, h: usize, rope: bool| -> candle_core::Result<Vec<f32>> {
            let x = proj.forward_t(n, Mode::Eval)?.reshape((b, t, h, hd))?;
            let x = if rope { rotary.apply(&x)? } else { x };
            x.flatten_all()?.to_vec1::<f32>()
        };
        let q = project(&self.q_proj, heads, true)?;
        let k = project(&self.k_proj, kv, true)?;
        let v = project(&self.v_proj, kv, false)?;
        let buffer = slot.get_or_insert_with(|| KvBuffer::new(b, kv, hd));
        buffer.append(&k, &v)?;
        let ctx = buffer.attend(&q, mask, heads, self.attention.scale as f32)?;
        Tensor::from_vec(ctx, (b, t, heads * hd), n.device())
    }
}

/// The inference state of a batch for [`Llama::forward_cached`]: per layer, the keys and values
/// of every token so far (after RoPE; the K/V heads not repeated), and the attention mask of
/// those tokens, per row.
#[derive(Clone)]
pub struct Cache {
    layers: Vec<Option<KvBuffer>>,
    mask: Vec<Vec<u32>>,
}

impl Cache {
    /// Tokens per row held so far (padding included).
    pub fn len(&self) -> usize {
        self.mask.first().map_or(0, Vec::len)
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The accumulated attention mask, one row per sequence.
    pub fn mask(&self) -> &[Vec<u32>] {
        &self.mask
    }

    /// The cache of the rows `picks` (in that order, repeats allowed): a prompt run once, its
    /// state copied to each of the samples that continue it.
    pub fn select_rows(&self, picks: &[usize]) -> candle_core::Result<Cache> {
        if let Some(&bad) = picks.iter().find(|&&r| r >= self.mask.len()) {
            candle_core::bail!("row {bad} of a cache of {} rows", self.mask.len());
        }
        let layers = self
            .layers
            .iter()
            .map(|l| l.as_ref().map(|b| b.select_rows(picks)).transpose())
            .collect::<candle_core::Result<_>>()?;
        let mask = picks.iter().map(|&r| self.mask[r].clone()).collect();
        Ok(Cache { layers, mask })
    }
}

/// A Llama-family decoder: token ids → hidden states `[batch, seq, hidden]` after `norm`.
pub struct Llama {
    embed_tokens: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Option<Linear>,
    inv_freq: Vec<f32>,
    flavour: Flavour,
    pub config: LlamaConfig,
}

impl Llama {
    /// A Llama (or SmolLM2) under `vb` (e.g. `vb.pp("model")`). `lm_head` says where the LM head
    /// lives when one is wanted (`root.pp("lm_head")` in the `LlamaForCausalLM` layout), `None`
    /// for reward models; with `tie_word_embeddings` the head is `embed_tokens` and `lm_head` is
    /// not read.
    pub fn new(
        vb: VarBuilder,
        config: &LlamaConfig,
        lm_head: Option<VarBuilder>,
    ) -> candle_core::Result<Self> {
        Self::build(vb, config, Flavour::Llama, lm_head)
    }

    /// A Qwen2 under `vb`; see [`Llama::new`].
    pub fn new_qwen2(
        vb: VarBuilder,
        config: &LlamaConfig,
        lm_head: Option<VarBuilder>,
    ) -> candle_core::Result<Self> {
        Self::build(vb, config, Flavour::Qwen2, lm_head)
    }

    /// Either member of the family.
    pub fn build(
        vb: VarBuilder,
        config: &LlamaConfig,
        flavour: Flavour,
        lm_head: Option<VarBuilder>,
    ) -> candle_core::Result<Self> {
        let c = config;
        if c.rope_interleaved {
            candle_core::bail!(
                "interleaved rotary embeddings (`rope_interleaved`) are not supported"
            );
        }
        if c.use_sliding_window {
            candle_core::bail!("sliding-window attention (`use_sliding_window`) is not supported");
        }
        let (h, std) = (c.hidden_size, c.initializer_range);
        let inv_freq = c.rope_inv_freq()?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::new(vb.pp("layers").pp(i), c, flavour, i))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let lm_head = match lm_head {
            Some(head_vb) if !c.tie_word_embeddings => {
                Some(Linear::new(head_vb, h, c.vocab_size, false, std)?)
            }
            _ => None,
        };
        Ok(Llama {
            embed_tokens: Embedding::new(vb.pp("embed_tokens"), c.vocab_size, h, std)?,
            layers,
            norm: RmsNorm::new(vb.pp("norm"), h, c.rms_norm_eps)?,
            lm_head,
            inv_freq,
            flavour,
            config: config.clone(),
        })
    }

    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// The token embedding table `[vocab, hidden]`.
    pub fn embed_tokens(&self) -> &Tensor {
        self.embed_tokens.weight()
    }

    /// `ids`, `mask`: `[batch, seq]` (u32). Attention is causal and skips padded keys; positions
    /// (and so the rotary angles) come from the mask.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, mode: Mode) -> candle_core::Result<Tensor> {
        self.forward_keys(ids, &Keys::new(mask), mode)
    }

    /// [`Llama::forward`] where `keys` may describe packed rows: positions and attention follow
    /// each token's sequence ([`crate::keys`]).
    pub fn forward_keys(
        &self,
        ids: &Tensor,
        keys: &Keys,
        mode: Mode,
    ) -> candle_core::Result<Tensor> {
        let rotary = Rotary::new(&self.inv_freq, &keys.positions()?)?;
        let mut x = self.embed_tokens.forward(ids)?;
        for layer in &self.layers {
            x = layer.forward(&x, AttnMask::Keys(keys), &rotary, mode, None)?;
        }
        self.norm.forward(&x)
    }

    /// [`Llama::forward`] with gradient checkpointing: the blocks' graphs are not kept; the
    /// returned [`Recompute`] reruns them in its backward pass (see [`crate::recompute`]).
    pub fn forward_recompute(
        &self,
        ids: &Tensor,
        keys: &Keys,
        mode: Mode,
    ) -> candle_core::Result<(Tensor, Recompute<'_>)> {
        let rotary = Rotary::new(&self.inv_freq, &keys.positions()?)?;
        let layers = &self.layers;
        let keys = keys.clone();
        let block = move |i: usize, x: &Tensor| {
            layers[i].forward(x, AttnMask::Keys(&keys), &rotary, mode, None)
        };
        let embed = self.embed_tokens.forward(ids)?;
        let (x, tape) = Recompute::run(layers.len(), Box::new(block), embed)?;
        Ok((self.norm.forward(&x)?, tape))
    }

    /// An empty [`Cache`] for [`Llama::forward_cached`].
    pub fn new_cache(&self) -> Cache {
        Cache {
            layers: vec![None; self.layers.len()],
            mask: Vec::new(),
        }
    }

    /// Inference with a KV cache: runs only the new tokens `ids`, `mask` `[batch, new]` (u32)
    /// against the keys and values of the tokens `cache` already holds, and adds theirs to it.
    /// Returns the hidden states of the new tokens `[batch, new, hidden]`, equal (up to
    /// rounding) to those positions of [`Llama::forward`] over the whole sequence.
    ///
    /// Typical use: prefill a left-padded batch of prompts, then one token per row per step
    /// (mask 1). Positions continue from each row's count of unmasked tokens, so left padding
    /// does not shift them. No dropout and no training: call it on a frozen store.
    pub fn forward_cached(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        cache: &mut Cache,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let new: Vec<Vec<u32>> = mask.to_dtype(candle_core::DType::U32)?.to_vec2()?;
        if new.len() != b || new.iter().any(|r| r.len() != t) {
            candle_core::bail!("mask {:?} does not match ids {:?}", mask.dims(), ids.dims());
        }
        if cache.mask.is_empty() {
            cache.mask = vec![Vec::new(); b];
        } else if cache.mask.len() != b {
            candle_core::bail!("a cache of {} rows fed {b} rows", cache.mask.len());
        }
        let past = cache.len();
        let mut positions = Vec::with_capacity(b * t);
        for (row, add) in cache.mask.iter_mut().zip(&new) {
            row.extend_from_slice(add);
            let mut seen = row[..past].iter().filter(|&&m| m != 0).count() as u32;
            for &m in add {
                seen += u32::from(m != 0);
                positions.push(seen.saturating_sub(1));
            }
        }
        let positions = Tensor::from_vec(positions, (b, t), ids.device())?;
        let rotary = Rotary::new(&self.inv_freq, &positions)?;
        let mut x = self.embed_tokens.forward(ids)?;
        let mask = AttnMask::Cached(&cache.mask);
        for (layer, slot) in self.layers.iter().zip(&mut cache.layers) {
            x = layer.forward(&x, mask, &rotary, Mode::Eval, Some(slot))?;
        }
        self.norm.forward(&x)
    }

    /// Next-token logits `[…, vocab]` from hidden states `[…, hidden]`: the LM head, or the
    /// embedding table when tied. An error when the model was built without a head.
    pub fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(head) = &self.lm_head {
            return head.forward(hidden);
        }
        if !self.config.tie_word_embeddings {
            candle_core::bail!("this model was built without its LM head (`lm_head`)");
        }
        // The tied head is `nn.Linear`'s layout `[vocab, hidden]`: the fused linear layer.
        crate::ops::linear(hidden, self.embed_tokens.weight(), None, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::ArchConfig;
    use crate::params::ParamStore;
    use candle_core::Device;

    /// SmolLM2-135M's `config.json` as published (transformers 4.x form: top-level integer
    /// `rope_theta`, `rope_scaling: null`, no `head_dim`).
    const SMOLLM2: &str = r#"{
      "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
      "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576,
      "initializer_range": 0.041666666666666664, "intermediate_size": 1536,
      "is_llama_config": true, "max_position_embeddings": 8192, "mlp_bias": false,
      "model_type": "llama", "num_attention_heads": 9, "num_hidden_layers": 30,
      "num_key_value_heads": 3, "pad_token_id": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
      "rope_interleaved": false, "rope_scaling": null, "rope_theta": 100000,
      "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.42.3",
      "use_cache": true, "vocab_size": 49152
    }"#;

    #[test]
    fn reads_the_transformers_4_form() {
        let ArchConfig::Llama(c) = ArchConfig::from_json(SMOLLM2).unwrap() else {
            panic!("SmolLM2 is a llama")
        };
        assert_eq!(c.head_dim(), 64);
        assert_eq!(c.kv_heads(), 3);
        assert_eq!(c.rope_theta(), 100_000.0);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.rms_norm_eps, 1e-5);
        let inv = c.rope_inv_freq().unwrap();
        assert_eq!(inv.len(), 32);
        assert_eq!(inv[0], 1.0);
    }

    #[test]
    fn reads_the_transformers_5_form() {
        let text = r#"{"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": null, "sliding_window": null, "use_sliding_window": false,
            "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}}"#;
        let ArchConfig::Qwen2(c) = ArchConfig::from_json(text).unwrap() else {
            panic!("a qwen2")
        };
        assert_eq!(c.rope_theta(), 1e6);
        assert_eq!(c.kv_heads(), 2);
        assert_eq!(c.head_dim(), 4);
        // Serialising and reading back keeps the config.
        let again =
            ArchConfig::from_json(&serde_json::to_string(&ArchConfig::Qwen2(c.clone())).unwrap())
                .unwrap();
        assert_eq!(again, ArchConfig::Qwen2(c));
    }

    #[test]
    fn llama3_rope_scaling_keeps_high_and_divides_low_frequencies() {
        let mut c: LlamaConfig = serde_json::from_str(
            r#"{"vocab_size": 10, "hidden_size": 128, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 1, "rope_theta": 500000.0,
            "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"}}"#,
        )
        .unwrap();
        let scaled = c.rope_inv_freq().unwrap();
        c.rope_scaling = None;
        let plain = c.rope_inv_freq().unwrap();
        assert_eq!(scaled[0], plain[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 32.0).abs() < 1e-12);
        assert!(scaled
            .iter()
            .zip(&plain)
            .all(|(s, p)| s <= p && *s >= p / 32.0));
        c.rope_parameters = Some(RopeParameters {
            rope_type: Some("yarn".into()),
            ..Default::default()
        });
        assert!(c.rope_inv_freq().is_err());
    }

    fn tiny(tied: bool) -> LlamaConfig {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 11, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, "tie_word_embeddings": tied
        }))
        .unwrap()
    }

    #[test]
    fn logits_use_the_lm_head_or_the_tied_embeddings() {
        let dev = Device::Cpu;
        let ids = Tensor::new(&[[1u32, 2, 3]], &dev).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1]], &dev).unwrap();

        // Tied: no `lm_head` parameter, logits from `embed_tokens`.
        let store = ParamStore::new(1, &dev);
        let root = store.var_builder();
        let m = Llama::new(root.pp("model"), &tiny(true), Some(root.pp("lm_head"))).unwrap();
        let h = m.forward(&ids, &mask, Mode::Eval).unwrap();
        let logits = m.logits(&h).unwrap();
        assert_eq!(logits.dims(), &[1, 3, 11]);
        assert!(store.vars().iter().all(|(n, _)| !n.starts_with("lm_head")));
        let want = h
            .squeeze(0)
            .unwrap()
            .matmul(&m.embed_tokens().t().unwrap())
            .unwrap();
        // The head is the fused linear layer (its own summation order), the reference candle's
        // matmul: equal to rounding. A wrong table would be off by the logits' size (~1).
        let diff = crate::ops::test_util::max_diff(&logits.squeeze(0).unwrap(), &want);
        assert!(diff < 1e-6, "{diff}");

        // Untied: `lm_head.weight` at the root when asked for, an error when not.
        let store = ParamStore::new(1, &dev);
        let root = store.var_builder();
        let m = Llama::new(root.pp("model"), &tiny(false), Some(root.pp("lm_head"))).unwrap();
        assert!(store.vars().iter().any(|(n, _)| n == "lm_head.weight"));
        assert_eq!(m.logits(&h).unwrap().dims(), &[1, 3, 11]);
        let store = ParamStore::new(1, &dev);
        let m = Llama::new(store.var_builder(), &tiny(false), None).unwrap();
        assert!(m.logits(&h).is_err());
    }

    /// The whole-sequence path (fused RoPE and attention, heads last) against blocks whose RoPE
    /// and attention are composed from candle ops (transformers' `[b, heads, t, d]` layout, the
    /// K/V heads repeated, an additive mask), rows padded on the right and on the left: the
    /// hidden states of real tokens and the gradients of every parameter agree.
    #[test]
    fn fused_attention_matches_the_composed_path_values_and_gradients() {
        let dev = Device::Cpu;
        let mut c = tiny(true);
        c.num_hidden_layers = 2;
        c.num_attention_heads = 4;
        c.num_key_value_heads = Some(2);
        let store = ParamStore::new(3, &dev);
        let m = Llama::new(store.var_builder(), &c, None).unwrap();
        let ids = Tensor::new(&[[1u32, 2, 3, 4, 0, 0], [0, 0, 5, 6, 7, 8]], &dev).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]], &dev).unwrap();
        let composed = |ids: &Tensor, mask: &Tensor| -> candle_core::Result<Tensor> {
            let positions = nn::position_ids_from_mask(mask)?;
            let rotary = Rotary::new(&m.inv_freq, &positions)?;
            let (cos, sin) = rotary.tables.tensors(&dev)?; // [b, t, 1, d]
            let bias = nn::attention_bias(mask, true)?;
            let mut x = m.embed_tokens.forward(ids)?;
            let (b, t) = ids.dims2()?;
            for l in &m.layers {
                let n = l.input_layernorm.forward(&x)?;
                let (h, kv, d) = (l.heads, l.kv_heads, l.head_dim);
                let heads = |proj: &Linear, count: usize, rope: bool| -> candle_core::Result<_> {
                    let y = proj.forward_t(&n, Mode::Eval)?.reshape((b, t, count, d))?;
                    let y = if rope {
                        crate::ops::rope_composed(&y, &cos, &sin)?
                    } else {
                        y
                    };
                    let y = nn::repeat_kv_heads(&y.reshape((b, t, count * d))?, d, h / count)?;
                    nn::split_heads(&y, h)
                };
                let (q, k, v) = (
                    heads(&l.q_proj, h, true)?,
                    heads(&l.k_proj, kv, true)?,
                    heads(&l.v_proj, kv, false)?,
                );
                let ctx = nn::merge_heads(&nn::attention(&q, &k, &v, &bias, None)?)?;
                x = l.finish(&x, &ctx, Mode::Eval)?;
            }
            m.norm.forward(&x)
        };
        // A fixed weighting of the real positions' states: the loss both paths differentiate.
        let keep = mask
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .unsqueeze(2)
            .unwrap();
        let w = Tensor::rand(-1f32, 1f32, (2, 6, 8), &dev).unwrap();
        let loss = |h: &Tensor| {
            h.broadcast_mul(&keep)
                .unwrap()
                .mul(&w)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let fused = m.forward(&ids, &mask, Mode::Eval).unwrap();
        let reference = composed(&ids, &mask).unwrap();
        let diff = crate::ops::test_util::max_diff;
        let real = |h: &Tensor| h.broadcast_mul(&keep).unwrap();
        assert!(diff(&real(&fused), &real(&reference)) < 1e-5);
        let (gf, gr) = (
            loss(&fused).backward().unwrap(),
            loss(&reference).backward().unwrap(),
        );
        let vars = store.vars();
        assert!(vars.len() > 10);
        for (name, var) in vars {
            let (a, b) = (gf.get(var.as_tensor()), gr.get(var.as_tensor()));
            let (Some(a), Some(b)) = (a, b) else {
                panic!("{name}: a gradient on one path only")
            };
            let scale = diff(b, &b.zeros_like().unwrap());
            assert!(
                diff(a, b) <= 1e-4 * scale.max(1.0),
                "{name}: {}",
                diff(a, b)
            );
        }
    }
}
