//! Building blocks whose backward pass candle really computes.
//!
//! candle-nn's fused `softmax_last_dim`, `layer_norm`, `rms_norm`, `rope*` and `sdpa` record no
//! backward pass: a model built from them trains only its head, silently. Everything here is
//! composed from candle-core ops that have one (matmul, broadcast arithmetic, exp, sqrt, sums,
//! `gelu_erf`, `silu`, `index_select`, `narrow`, `cat`), or is one of the fused CPU kernels of
//! [`crate::ops`] that carry their own backward pass; the tests check every parameter receives a
//! gradient.

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::keys::Keys;
use crate::lora::LoraAdapter;
use rewardkit_data::Rng;

/// How a forward pass runs: inference, or training with dropout drawn from `(seed, step)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Eval,
    /// Training; dropout is active (where its probability is above 0) and its masks depend only
    /// on `(seed, step, site)`.
    Train { seed: u64, step: u64 },
}

impl Mode {
    pub fn is_train(&self) -> bool {
        matches!(self, Mode::Train { .. })
    }
}

/// Inverted dropout: in training, zero each element with probability `p` and scale the rest by
/// 1/(1 − p); in evaluation, the identity.
#[derive(Debug, Clone)]
pub struct Dropout {
    p: f64,
    site: String,
}

impl Dropout {
    /// `site` names this dropout uniquely in the model (its masks are drawn from it).
    pub fn new(p: f64, site: impl Into<String>) -> Self {
        Dropout {
            p,
            site: site.into(),
        }
    }

    /// Where this dropout's masks come from in `mode`; `None` when it is inactive.
    pub(crate) fn draw(&self, mode: Mode) -> Option<DropoutDraw> {
        match mode {
            Mode::Train { seed, step } if self.p > 0.0 => Some(DropoutDraw {
                p: self.p,
                seed,
                step,
                site: self.site.clone(),
            }),
            _ => None,
        }
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> candle_core::Result<Tensor> {
        let Mode::Train { seed, step } = mode else {
            return Ok(x.clone());
        };
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        let mut rng = Rng::derive(seed, &["dropout", &step.to_string(), &self.site]);
        let keep = 1.0 - self.p;
        let scale = (1.0 / keep) as f32;
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| if rng.uniform() < keep { scale } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x.mul(&mask)
    }
}

/// An active dropout: its probability and the `(seed, step, site)` its masks are drawn from.
#[derive(Debug, Clone)]
pub(crate) struct DropoutDraw {
    pub p: f64,
    seed: u64,
    step: u64,
    site: String,
}

impl DropoutDraw {
    /// The generator of the mask of `part` (a kernel's independent block, e.g. one head).
    pub(crate) fn rng(&self, part: usize) -> Rng {
        Rng::derive(
            self.seed,
            &[
                "dropout",
                &self.step.to_string(),
                &self.site,
                &part.to_string(),
            ],
        )
    }
}

/// `y = x Wᵀ + b`, with `W` stored `[out, in]` as in PyTorch's `nn.Linear`; or, for GPT-2's
/// `Conv1D`, stored `[in, out]` (`y = x W + b`), loaded under its checkpoint layout unchanged.
/// Over a LoRA store, a target module also carries an adapter ([`crate::lora`]).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    transposed: bool,
    lora: Option<LoraAdapter>,
}

impl Linear {
    /// An `nn.Linear` named `weight`/`bias` under `vb`, weights initialised N(0, `std`).
    pub fn new(
        vb: VarBuilder,
        d_in: usize,
        d_out: usize,
        bias: bool,
        std: f64,
    ) -> candle_core::Result<Self> {
        let weight = vb.get_with_hints(
            (d_out, d_in),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        )?;
        let bias = if bias {
            Some(vb.get_with_hints(d_out, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            transposed: false,
            lora: LoraAdapter::from_vb(&vb, d_in, d_out)?,
        })
    }

    /// GPT-2's `Conv1D`: weight stored `[in, out]`.
    pub fn conv1d(
        vb: VarBuilder,
        d_in: usize,
        d_out: usize,
        std: f64,
    ) -> candle_core::Result<Self> {
        let weight = vb.get_with_hints(
            (d_in, d_out),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        )?;
        let bias = Some(vb.get_with_hints(d_out, "bias", Init::Const(0.0))?);
        Ok(Linear {
            weight,
            bias,
            transposed: true,
            lora: LoraAdapter::from_vb(&vb, d_in, d_out)?,
        })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The layer in `mode` (the adapter's dropout is active in training).
    pub fn forward_t(&self, x: &Tensor, mode: Mode) -> candle_core::Result<Tensor> {
        let y = crate::ops::linear(x, &self.weight, self.bias.as_ref(), self.transposed)?;
        match &self.lora {
            Some(lora) => y + lora.forward(x, mode)?,
            None => Ok(y),
        }
    }
}

impl Module for Linear {
    /// The layer in evaluation mode.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_t(x, Mode::Eval)
    }
}

/// `x Wᵀ + b` (or `x W + b` when `transposed`) from candle ops: the reference for the fused
/// kernel in [`crate::ops`], and its fallback off the CPU.
pub fn linear_composed(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    transposed: bool,
) -> candle_core::Result<Tensor> {
    // Fold leading dimensions into one 2-D matmul.
    let dims = x.dims().to_vec();
    let d_in = dims[dims.len() - 1];
    let x2 = x.reshape(((), d_in))?;
    let w = if transposed { w.clone() } else { w.t()? };
    let mut y = x2.matmul(&w)?;
    if let Some(b) = b {
        y = y.broadcast_add(b)?;
    }
    let mut out_dims = dims;
    let last = out_dims.len() - 1;
    out_dims[last] = y.dim(1)?;
    y.reshape(out_dims)
}

/// A lookup table `[vocab, dim]` named `weight`.
#[derive(Debug, Clone)]
pub struct Embedding {
    weight: Tensor,
}

impl Embedding {
    pub fn new(vb: VarBuilder, vocab: usize, dim: usize, std: f64) -> candle_core::Result<Self> {
        let weight = vb.get_with_hints(
            (vocab, dim),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        )?;
        Ok(Embedding { weight })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `ids` of any shape → `[..., dim]`.
    pub fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let mut dims = ids.dims().to_vec();
        let flat = ids.flatten_all()?;
        let out = self.weight.index_select(&flat, 0)?;
        dims.push(self.weight.dim(1)?);
        out.reshape(dims)
    }
}

/// Layer normalisation over the last dimension, `(x − mean) / sqrt(var + eps) · w + b`,
/// with the biased variance (as PyTorch).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Weight and bias under `vb` (`weight`/`bias`; BERT's older `gamma`/`beta` are accepted).
    pub fn new(vb: VarBuilder, dim: usize, eps: f64) -> candle_core::Result<Self> {
        let (w, b) = if !vb.contains_tensor("weight") && vb.contains_tensor("gamma") {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, w, Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, b, Init::Const(0.0))?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        crate::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Layer norm composed from candle ops (the reference for the fused kernel in [`crate::ops`],
/// and its fallback off the CPU).
pub fn layer_norm_composed(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xn = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    xn.broadcast_mul(w)?.broadcast_add(b)
}

/// RMS normalisation, `x / sqrt(mean(x²) + eps) · w` (Llama), fused on CPU (see [`crate::ops`]).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(vb: VarBuilder, dim: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(RmsNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            eps,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        crate::ops::rms_norm(x, &self.weight, self.eps)
    }
}

/// RMS normalisation composed from candle ops (the reference of the fused kernel, and the
/// version off the CPU).
pub fn rms_norm_composed(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

/// Softmax over the last dimension (fused on CPU, see [`crate::ops`]).
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    crate::ops::softmax_last_dim(x)
}

/// Softmax over the last dimension, `exp(x − max) / Σ exp(x − max)`, composed from candle ops.
pub fn softmax_last_dim_composed(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&sum)
}

/// Additive attention bias `[b, 1, q, k]`: 0 where a query may attend to a key, a large negative
/// number elsewhere (padding keys; future keys when `causal`).
pub fn attention_bias(mask: &Tensor, causal: bool) -> candle_core::Result<Tensor> {
    let (b, t) = mask.dims2()?;
    let keys = mask.to_dtype(DType::F32)?.reshape((b, 1, 1, t))?;
    let mut allowed = keys.broadcast_as((b, 1, t, t))?.contiguous()?;
    if causal {
        let tri: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 1.0 } else { 0.0 }))
            .collect();
        let tri = Tensor::from_vec(tri, (1, 1, t, t), mask.device())?;
        allowed = allowed.broadcast_mul(&tri)?;
    }
    // (allowed − 1) · big: 0 where allowed, −big where not.
    (allowed - 1.0)? * (f32::MAX as f64 * 0.5)
}

/// Scaled dot-product attention: `softmax(q kᵀ / √d + bias) v`, q/k/v `[b, h, t, d]`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    dropout: Option<(&Dropout, Mode)>,
) -> candle_core::Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.broadcast_add(bias)?;
    let mut probs = softmax_last_dim(&scores)?;
    if let Some((dropout, mode)) = dropout {
        probs = dropout.forward(&probs, mode)?;
    }
    probs.matmul(v)
}

/// Multi-head self-attention over projected queries, keys and values `[b, t, heads·d]` (each may
/// be a column slice of a wider tensor, as GPT-2's fused `c_attn` output): per head,
/// `softmax(q kᵀ · scale + mask) v`, with dropout on the probabilities; padded keys are masked
/// out, and future keys when `causal`. The result is `[b, t, heads·d]`, heads side by side.
#[derive(Debug, Clone)]
pub struct Attention {
    pub heads: usize,
    pub causal: bool,
    /// Factor on `q kᵀ` (usually 1/√d).
    pub scale: f64,
    pub dropout: Dropout,
}

impl Attention {
    /// `keys`: which keys each query may see (the `[b, t]` attention mask, and for packed rows
    /// their branches). Fused on CPU ([`crate::ops::attention`]), composed elsewhere.
    pub fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        keys: &Keys,
        mode: Mode,
    ) -> candle_core::Result<Tensor> {
        if q.device().is_cpu() && q.dtype() == DType::F32 {
            crate::ops::attention(q, k, v, keys, self, mode)
        } else {
            self.forward_composed(q, k, v, keys, mode)
        }
    }

    /// The same from candle ops, materialising the `[b, h, t, t]` scores (the reference for the
    /// fused kernel).
    pub fn forward_composed(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        keys: &Keys,
        mode: Mode,
    ) -> candle_core::Result<Tensor> {
        // Grouped-query attention: K/V heads repeated to the queries' count.
        let (width, kv_width) = (q.dim(D::Minus1)?, k.dim(D::Minus1)?);
        let (d, group) = (width / self.heads.max(1), width / kv_width.max(1));
        let (k, v) = (repeat_kv_heads(k, d, group)?, repeat_kv_heads(v, d, group)?);
        let (q, k, v) = (
            split_heads(q, self.heads)?,
            split_heads(&k, self.heads)?,
            split_heads(&v, self.heads)?,
        );
        let bias = keys.bias(self.causal)?;
        let scores = (q.matmul(&k.t()?)? * self.scale)?.broadcast_add(&bias)?;
        let probs = self.dropout.forward(&softmax_last_dim(&scores)?, mode)?;
        merge_heads(&probs.matmul(&v)?)
    }
}

/// `[b, t, kv · d]` → `[b, t, kv · group · d]` for heads of `d`: each K/V head repeated
/// `group` times side by side (head `j` of the result is head `j / group`), transformers'
/// `repeat_kv` with the heads after the positions.
pub fn repeat_kv_heads(x: &Tensor, d: usize, group: usize) -> candle_core::Result<Tensor> {
    if group <= 1 {
        return Ok(x.clone());
    }
    let (b, t, width) = x.dims3()?;
    let x = x.reshape((b, t, width / d.max(1), 1, d))?;
    let copies = vec![&x; group];
    Tensor::cat(&copies, 3)?.reshape((b, t, width * group))
}

/// Position ids `[b, t]` (u32) from an attention mask `[b, t]`: `cumsum(mask) − 1`, clamped at 0,
/// so each row's first real token is position 0 whichever side the padding is on (padding
/// positions get a harmless repeat of a neighbouring id). Computed on the CPU from the mask
/// values; the result lives on the mask's device.
pub fn position_ids_from_mask(mask: &Tensor) -> candle_core::Result<Tensor> {
    let (b, t) = mask.dims2()?;
    let values: Vec<Vec<u32>> = mask.to_dtype(DType::U32)?.to_vec2()?;
    let mut ids = Vec::with_capacity(b * t);
    for row in &values {
        let mut seen = 0u32;
        for &m in row {
            if m != 0 {
                seen += 1;
            }
            ids.push(seen.saturating_sub(1));
        }
    }
    Tensor::from_vec(ids, (b, t), mask.device())
}

/// `[b, t, h·d]` → `[b, h, t, d]`.
pub fn split_heads(x: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (b, t, hd) = x.dims3()?;
    x.reshape((b, t, heads, hd / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// `[b, h, t, d]` → `[b, t, h·d]`.
pub fn merge_heads(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    x.transpose(1, 2)?.contiguous()?.reshape((b, t, h * d))
}
