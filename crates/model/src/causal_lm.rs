//! Causal language models for training: a decoder backbone with its LM head, and the
//! log-probabilities of response tokens after a prompt, with a backward pass.
//!
//! [`CausalLm`] is GPT-2 (head tied to `wte`, transformers' `GPT2LMHeadModel` names under
//! `transformer.`) or a Llama-family decoder (`LlamaForCausalLM`: `model.*` and `lm_head`, or the
//! embeddings when `tie_word_embeddings`). Built over a trainable [`ParamStore`] every weight
//! gets a gradient; over a frozen view it records no graph (sampling, reference models).
//!
//! [`ResponseBatch`] lays out `(prompt, response)` rows with the prompts left-padded to a common
//! width and the responses right-padded, so every response starts at the same column and
//! [`CausalLm::response_logprobs`] returns `[batch, longest response]` aligned by response token.
//! Positions come from the attention mask, so the padding changes no real token's state.

use candle_core::{DType, Device, Tensor, D};

use crate::backbone::ArchConfig;
use crate::error::{ModelError, Result};
use crate::gpt2::Gpt2;
use crate::llama::{Cache, Llama};
use crate::nn::Mode;
use crate::params::ParamStore;

/// A decoder with its LM head.
// One per model: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum CausalLm {
    Gpt2(Gpt2),
    Llama(Llama),
}

/// The inference state of [`CausalLm::forward_cached`]: Llama's KV cache, or (GPT-2, which has
/// none here) the tokens so far, run again whole at each step.
pub enum LmCache {
    Llama(Cache),
    Recompute {
        ids: Vec<Vec<u32>>,
        mask: Vec<Vec<u32>>,
    },
}

impl LmCache {
    /// The cache of the rows `picks` (in that order, repeats allowed; see
    /// [`Cache::select_rows`]): a prompt run once, its state copied to each of its samples.
    pub fn select_rows(&self, picks: &[usize]) -> Result<LmCache> {
        Ok(match self {
            LmCache::Llama(c) => LmCache::Llama(c.select_rows(picks)?),
            LmCache::Recompute { ids, mask } => {
                let pick = |rows: &[Vec<u32>]| -> Result<Vec<Vec<u32>>> {
                    picks
                        .iter()
                        .map(|&r| match rows.get(r) {
                            Some(row) => Ok(row.clone()),
                            None => Err(candle_core::Error::Msg(format!(
                                "row {r} of a cache of {} rows",
                                rows.len()
                            ))
                            .into()),
                        })
                        .collect()
                };
                LmCache::Recompute {
                    ids: pick(ids)?,
                    mask: pick(mask)?,
                }
            }
        })
    }
}

impl CausalLm {
    /// Builds the decoder of `config` over `store` in the HF causal-LM layout: GPT-2 under
    /// `transformer.` (head tied to `wte`), Llama/Qwen2 under `model.` with `lm_head` at the root
    /// (or tied). Encoders are refused.
    pub fn new(config: &ArchConfig, store: &ParamStore) -> Result<Self> {
        let root = store.var_builder();
        Ok(match config {
            ArchConfig::Gpt2(c) => CausalLm::Gpt2(Gpt2::new(root.pp("transformer"), c)?),
            ArchConfig::Llama(c) => {
                CausalLm::Llama(Llama::new(root.pp("model"), c, Some(root.pp("lm_head")))?)
            }
            ArchConfig::Qwen2(c) => CausalLm::Llama(Llama::new_qwen2(
                root.pp("model"),
                c,
                Some(root.pp("lm_head")),
            )?),
            ArchConfig::Bert(_) => {
                return Err(ModelError::Unsupported(
                    "a causal language model needs a decoder (GPT-2 or Llama family), not BERT"
                        .into(),
                ))
            }
        })
    }

    /// Hidden states `[batch, seq, hidden]` of `ids`, `mask` `[batch, seq]` (u32).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, mode: Mode) -> Result<Tensor> {
        Ok(match self {
            CausalLm::Gpt2(m) => m.forward(ids, mask, mode)?,
            CausalLm::Llama(m) => m.forward(ids, mask, mode)?,
        })
    }

    /// Next-token logits `[…, vocab]` from hidden states `[…, hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(match self {
            CausalLm::Gpt2(m) => crate::ops::linear(hidden, m.wte(), None, false)?,
            CausalLm::Llama(m) => m.logits(hidden)?,
        })
    }

    /// An empty cache for [`CausalLm::forward_cached`].
    pub fn new_cache(&self) -> LmCache {
        match self {
            CausalLm::Llama(m) => LmCache::Llama(m.new_cache()),
            CausalLm::Gpt2(_) => LmCache::Recompute {
                ids: Vec::new(),
                mask: Vec::new(),
            },
        }
    }

    /// Inference over new tokens `ids`, `mask` `[batch, new]` after those `cache` holds; the
    /// hidden states of the new tokens (see [`Llama::forward_cached`]).
    pub fn forward_cached(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        cache: &mut LmCache,
    ) -> Result<Tensor> {
        match (self, cache) {
            (CausalLm::Llama(m), LmCache::Llama(c)) => Ok(m.forward_cached(ids, mask, c)?),
            (
                _,
                LmCache::Recompute {
                    ids: all,
                    mask: all_mask,
                },
            ) => {
                let new: Vec<Vec<u32>> = ids.to_vec2()?;
                let new_mask: Vec<Vec<u32>> = mask.to_dtype(DType::U32)?.to_vec2()?;
                if all.is_empty() {
                    *all = vec![Vec::new(); new.len()];
                    *all_mask = vec![Vec::new(); new.len()];
                }
                for (row, add) in all.iter_mut().zip(&new) {
                    row.extend_from_slice(add);
                }
                for (row, add) in all_mask.iter_mut().zip(&new_mask) {
                    row.extend_from_slice(add);
                }
                let (b, t) = (all.len(), all.first().map_or(0, Vec::len));
                let dev = ids.device();
                let flat = |v: &[Vec<u32>]| v.iter().flatten().copied().collect::<Vec<u32>>();
                let full_ids = Tensor::from_vec(flat(all), (b, t), dev)?;
                let full_mask = Tensor::from_vec(flat(all_mask), (b, t), dev)?;
                let hidden = self.forward(&full_ids, &full_mask, Mode::Eval)?;
                let n = new.first().map_or(0, Vec::len);
                Ok(hidden.narrow(1, t - n, n)?)
            }
            (CausalLm::Gpt2(_), LmCache::Llama(_)) => {
                Err(ModelError::Unsupported("a cache of another model".into()))
            }
        }
    }

    /// log π(response token | prompt, earlier response tokens) under softmax(logits /
    /// `temperature`) (1: the model itself), `[batch, longest response]`, 0 where the batch's
    /// [`ResponseBatch::mask`] is 0. In `mode` (training mode applies dropout); built over a
    /// trainable store the result has a backward pass to every weight. With `entropy`, also the
    /// entropy (nats, no gradient) of each of those next-token distributions, masked the same
    /// way.
    pub fn response_logprobs(
        &self,
        batch: &ResponseBatch,
        mode: Mode,
        temperature: f64,
        entropy: bool,
    ) -> Result<TokenLogprobs> {
        let r = batch.response_len;
        let hidden = self.forward(&batch.ids, &batch.attention, mode)?;
        // The states that predict the response tokens: columns width − 1 … width + r − 2.
        let hidden = hidden.narrow(1, batch.prompt_width - 1, r)?;
        let logits = self.logits(&hidden)?;
        let (rows, vocab) = (logits.dim(0)? * r, logits.dim(D::Minus1)?);
        // One fused pass per token (`crate::ops::token_logprobs`): only the logits are kept for
        // the backward pass, not the four vocabulary-sized tensors of a composed log-softmax.
        let (picked, h) = crate::ops::token_logprobs(
            &logits.reshape((rows, vocab))?,
            &batch.targets.flatten_all()?,
            temperature,
            entropy,
        )?;
        let shape = batch.mask.shape();
        let logprobs = (picked.reshape(shape)? * &batch.mask)?;
        let entropy = match h {
            Some(h) => Some((h.reshape(shape)? * &batch.mask)?),
            None => None,
        };
        Ok(TokenLogprobs { logprobs, entropy })
    }
}

/// Per-token log-probabilities of a [`ResponseBatch`].
pub struct TokenLogprobs {
    /// `[batch, longest response]`, 0 past each response's end.
    pub logprobs: Tensor,
    /// The next-token entropies at the same positions, when asked for.
    pub entropy: Option<Tensor>,
}

/// `(prompt, response)` token rows laid out for [`CausalLm::response_logprobs`]: prompts
/// left-padded to the longest prompt, responses right-padded to the longest response.
pub struct ResponseBatch {
    /// `[batch, prompt_width + response_len − 1]` (u32): the inputs (the last response token is
    /// never an input).
    pub ids: Tensor,
    pub attention: Tensor,
    /// `[batch, response_len]` (u32): the response tokens (padding 0).
    pub targets: Tensor,
    /// `[batch, response_len]` (f32): 1 for real response tokens.
    pub mask: Tensor,
    pub prompt_width: usize,
    pub response_len: usize,
    /// Each row's response length.
    pub lengths: Vec<usize>,
}

impl ResponseBatch {
    /// Lays out `rows`; every prompt needs a token and every response one, else an error naming
    /// the row. `pad` fills the padding (never attended to).
    pub fn new(rows: &[(&[u32], &[u32])], pad: u32, device: &Device) -> Result<Self> {
        if rows.is_empty() {
            return Err(ModelError::Unsupported("an empty batch".into()));
        }
        if let Some(i) = rows.iter().position(|(p, r)| p.is_empty() || r.is_empty()) {
            return Err(ModelError::Unsupported(format!(
                "row {i}: a prompt and a response need at least one token each"
            )));
        }
        let width = rows.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        let r = rows.iter().map(|(_, x)| x.len()).max().unwrap_or(0);
        let cols = width + r - 1;
        let b = rows.len();
        let (mut ids, mut att) = (Vec::with_capacity(b * cols), Vec::with_capacity(b * cols));
        let (mut targets, mut mask) = (Vec::with_capacity(b * r), Vec::with_capacity(b * r));
        for (p, x) in rows {
            let left = width - p.len();
            ids.extend(std::iter::repeat_n(pad, left));
            att.extend(std::iter::repeat_n(0u32, left));
            ids.extend_from_slice(p);
            att.extend(std::iter::repeat_n(1u32, p.len()));
            // Inputs: the response without its last token, then padding.
            let inputs = &x[..x.len() - 1];
            ids.extend_from_slice(inputs);
            att.extend(std::iter::repeat_n(1u32, inputs.len()));
            ids.extend(std::iter::repeat_n(pad, r - x.len()));
            att.extend(std::iter::repeat_n(0u32, r - x.len()));
            targets.extend_from_slice(x);
            targets.extend(std::iter::repeat_n(0u32, r - x.len()));
            mask.extend(std::iter::repeat_n(1f32, x.len()));
            mask.extend(std::iter::repeat_n(0f32, r - x.len()));
        }
        Ok(ResponseBatch {
            ids: Tensor::from_vec(ids, (b, cols), device)?,
            attention: Tensor::from_vec(att, (b, cols), device)?,
            targets: Tensor::from_vec(targets, (b, r), device)?,
            mask: Tensor::from_vec(mask, (b, r), device)?,
            prompt_width: width,
            response_len: r,
            lengths: rows.iter().map(|(_, x)| x.len()).collect(),
        })
    }
}
