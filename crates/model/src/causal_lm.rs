//! Causal language models for training: a decoder backbone with its LM head, and the
//! log-probabilities of response tokens after a prompt, with a backward pass.
//!
//! [`CausalLm`] is GPT-2 (head tied to `wte`, transformers' `GPT2LMHeadModel` names under
//! `transformer.`) or a Llama-family decoder (`LlamaForCausalLM`: `model.*` and `lm_head`, or the
//! embeddings when `tie_word_embeddings`). Built over a trainable [`ParamStore`] every weight
//! gets a gradient; over a frozen view it records no graph (sampling, reference models).
//!
//! [`ResponseBatch`] lays out `(prompt, response)` rows: the responses to one prompt (an RL
//! step's k samples) share one row after it, the prompt computed once
//! ([`rewardkit_tokenize::Packing`]); a prompt with one response has a row of its own. Only the
//! states that predict response tokens go through the LM head, and
//! [`CausalLm::response_logprobs`] returns `[batch, longest response]` aligned by response token.
//! Positions follow each response's own sequence ([`crate::keys`]), so neither the packing nor
//! the padding changes any real token's state.

use candle_core::{DType, Device, Tensor};

use crate::backbone::ArchConfig;
use crate::error::{ModelError, Result};
use crate::gpt2::Gpt2;
use crate::keys::Keys;
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
        self.forward_keys(ids, &Keys::new(mask), mode)
    }

    /// [`CausalLm::forward`] where `keys` may describe packed rows.
    pub fn forward_keys(&self, ids: &Tensor, keys: &Keys, mode: Mode) -> Result<Tensor> {
        Ok(match self {
            CausalLm::Gpt2(m) => m.forward_keys(ids, keys, mode)?,
            CausalLm::Llama(m) => m.forward_keys(ids, keys, mode)?,
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
        let hidden = self.forward_keys(&batch.ids, &batch.keys, mode)?;
        let (rows, cols, width) = hidden.dims3()?;
        // The states that predict the response tokens, one per real token.
        let hidden = hidden
            .reshape((rows * cols, width))?
            .index_select(&batch.reads, 0)?;
        let logits = self.logits(&hidden)?;
        // One fused pass per token (`crate::ops::token_logprobs`): only the logits are kept for
        // the backward pass, not the four vocabulary-sized tensors of a composed log-softmax.
        let (picked, h) =
            crate::ops::token_logprobs(&logits, &batch.targets, temperature, entropy)?;
        // To `[batch, longest response]`: padding reads the zero appended at the end.
        let shape = batch.mask.shape();
        let spread = |x: &Tensor| -> Result<Tensor> {
            let zero = Tensor::zeros(1, x.dtype(), x.device())?;
            let padded = Tensor::cat(&[x, &zero], 0)?;
            Ok(padded.index_select(&batch.spread, 0)?.reshape(shape)?)
        };
        let logprobs = spread(&picked)?;
        let entropy = match h {
            Some(h) => Some(spread(&h)?),
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

/// `(prompt, response)` token rows laid out for [`CausalLm::response_logprobs`]: the responses
/// to one prompt share a row, `prompt, response₁[..−1], response₂[..−1], …` (the last token of
/// a response is never an input), each response seeing the prompt and itself; rows are padded
/// on the right.
pub struct ResponseBatch {
    /// `[rows, cols]` (u32): the inputs.
    ids: Tensor,
    /// Which inputs each input sees, and its position.
    keys: Keys,
    /// `[tokens]` (u32): flat indices (`row · cols + col`) of the states that predict each real
    /// response token, response by response.
    reads: Tensor,
    /// `[tokens]` (u32): those tokens.
    targets: Tensor,
    /// `[batch · response_len]` (u32): for each (response, token) of the aligned output, its
    /// index in `reads`, or `tokens` (a zero) past the response's end.
    spread: Tensor,
    /// `[batch, response_len]` (f32): 1 for real response tokens.
    pub mask: Tensor,
    pub response_len: usize,
    /// Each row's response length.
    pub lengths: Vec<usize>,
    /// Input positions computed (padding included): the work of a forward pass.
    pub positions: usize,
}

impl ResponseBatch {
    /// Lays out `rows` in one row without padding: the responses to one prompt (equal prompt
    /// tokens) after that prompt computed once, where that saves work for a model of hidden
    /// size `hidden` ([`rewardkit_tokenize::packing_runs`]), and such groups side by side, each
    /// seeing only itself; every prompt needs a token and every response one, else an error
    /// naming the row. `pad` fills the padding of [`ResponseBatch::separate`]'s rows (never
    /// attended to).
    pub fn new(
        rows: &[(&[u32], &[u32])],
        pad: u32,
        hidden: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut by_prompt: Vec<Vec<usize>> = Vec::new();
        let mut index: std::collections::HashMap<&[u32], usize> = Default::default();
        for (i, (p, _)) in rows.iter().enumerate() {
            let g = *index.entry(p).or_insert_with(|| {
                by_prompt.push(Vec::new());
                by_prompt.len() - 1
            });
            by_prompt[g].push(i);
        }
        let per_token = 6.0 * hidden as f64;
        let mut groups = Vec::new();
        for members in by_prompt {
            let prompt = rows[members[0]].0.len();
            // A response's inputs: all its tokens but the last.
            let rest: Vec<usize> = members
                .iter()
                .map(|&i| rows[i].1.len().saturating_sub(1))
                .collect();
            for run in rewardkit_tokenize::packing_runs(prompt, &rest, per_token, usize::MAX) {
                groups.push(run.into_iter().map(|k| members[k]).collect());
            }
        }
        Self::grouped(rows, &groups, pad, true, device)
    }

    /// [`ResponseBatch::new`] with a row per response, padded (the reference the shared rows
    /// are tested against).
    pub fn separate(rows: &[(&[u32], &[u32])], pad: u32, device: &Device) -> Result<Self> {
        let groups: Vec<Vec<usize>> = (0..rows.len()).map(|i| vec![i]).collect();
        Self::grouped(rows, &groups, pad, false, device)
    }

    /// The groups of `rows` (indices; the members share their prompt) side by side in one row
    /// without padding (`packed`), or one padded row per group.
    fn grouped(
        rows: &[(&[u32], &[u32])],
        groups: &[Vec<usize>],
        pad: u32,
        packed: bool,
        device: &Device,
    ) -> Result<Self> {
        if rows.is_empty() {
            return Err(ModelError::Unsupported("an empty batch".into()));
        }
        if let Some(i) = rows.iter().position(|(p, r)| p.is_empty() || r.is_empty()) {
            return Err(ModelError::Unsupported(format!(
                "row {i}: a prompt and a response need at least one token each"
            )));
        }
        let row_len = |g: &[usize]| {
            rows[g[0]].0.len() + g.iter().map(|&i| rows[i].1.len() - 1).sum::<usize>()
        };
        let lens: Vec<usize> = groups.iter().map(|g| row_len(g)).collect();
        let (n, cols) = if packed {
            (1, lens.iter().sum())
        } else {
            (groups.len(), lens.iter().copied().max().unwrap_or(0))
        };
        let r = rows.iter().map(|(_, x)| x.len()).max().unwrap_or(0);
        let (mut ids, mut att) = (vec![pad; n * cols], vec![0u32; n * cols]);
        let mut branch = vec![0u32; n * cols];
        let mut group = vec![0u32; n * cols];
        // Per response: the flat index of the state before each of its tokens.
        let mut before: Vec<Vec<u32>> = vec![Vec::new(); rows.len()];
        let mut start = 0;
        for (g, members) in groups.iter().enumerate() {
            let prompt = rows[members[0]].0;
            // A group's run (and in padded rows the padding after it) is its own.
            let end = if packed {
                start + lens[g]
            } else {
                (g + 1) * cols
            };
            group[start..end].fill(g as u32);
            let mut at = start;
            start = if packed { end } else { (g + 1) * cols };
            ids[at..at + prompt.len()].copy_from_slice(prompt);
            att[at..at + prompt.len()].fill(1);
            at += prompt.len();
            let last_prompt = (at - 1) as u32;
            for (k, &i) in members.iter().enumerate() {
                let inputs = &rows[i].1[..rows[i].1.len() - 1];
                let end = at + inputs.len();
                ids[at..end].copy_from_slice(inputs);
                att[at..end].fill(1);
                branch[at..end].fill(k as u32 + 1);
                before[i] = std::iter::once(last_prompt)
                    .chain((at..end).map(|c| c as u32))
                    .collect();
                at = end;
            }
        }
        let tokens: usize = rows.iter().map(|(_, x)| x.len()).sum();
        let (mut reads, mut targets) = (Vec::with_capacity(tokens), Vec::with_capacity(tokens));
        let (mut spread, mut mask) = (Vec::with_capacity(rows.len() * r), Vec::new());
        for ((_, x), before) in rows.iter().zip(&before) {
            spread.extend((0..x.len()).map(|m| (reads.len() + m) as u32));
            spread.extend(std::iter::repeat_n(tokens as u32, r - x.len()));
            mask.extend(std::iter::repeat_n(1f32, x.len()));
            mask.extend(std::iter::repeat_n(0f32, r - x.len()));
            reads.extend_from_slice(before);
            targets.extend_from_slice(x);
        }
        let attention = Tensor::from_vec(att, (n, cols), device)?;
        let packing = rewardkit_tokenize::Packing {
            group,
            branch,
            first: Vec::new(),
            last: Vec::new(),
            shares_prefix: true,
        };
        Ok(ResponseBatch {
            ids: Tensor::from_vec(ids, (n, cols), device)?,
            keys: Keys::packed(&attention, &packing)?,
            reads: Tensor::from_vec(reads, tokens, device)?,
            targets: Tensor::from_vec(targets, tokens, device)?,
            spread: Tensor::from_vec(spread, rows.len() * r, device)?,
            mask: Tensor::from_vec(mask, (rows.len(), r), device)?,
            response_len: r,
            lengths: rows.iter().map(|(_, x)| x.len()).collect(),
            positions: n * cols,
        })
    }
}
