//! The log-probability of each row's target token under `softmax(logits / T)`, and the
//! distribution's entropy, from `[n, vocab]` logits: one pass over each row where the composed
//! version (max, subtract, exp, sum, log, subtract, gather) makes seven and keeps four
//! vocabulary-sized tensors for the backward pass. This op keeps only the logits (its input) and
//! recomputes the softmax in the backward pass: `d logits = g / T · (onehot(target) − p)`.
//! A policy's vocabulary is large (SmolLM2: 49,152), so those tensors are most of what an RL or
//! SFT step holds.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{check_simd, contiguous_f32, exp};

/// `[n, vocab]` logits and `[n]` u32 targets → `[n, 2]`: (log p(target), entropy).
struct TokenLogprobs {
    temperature: f32,
    /// Whether to compute the entropy (else 0): one more pass over each row.
    entropy: bool,
}
struct TokenLogprobsBackward {
    temperature: f32,
}

/// The targets as indices, each checked against the vocabulary.
fn targets<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    vocab: usize,
    op: &str,
) -> candle_core::Result<&'a [u32]> {
    let CpuStorage::U32(v) = s else {
        candle_core::bail!("{op}: targets must be u32")
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: targets must be contiguous")
    };
    let t = &v[start..end];
    if let Some(bad) = t.iter().find(|&&t| t as usize >= vocab) {
        candle_core::bail!("{op}: target {bad} is outside the vocabulary of {vocab}");
    }
    Ok(t)
}

/// `(max, log Σ exp(x − max))` of one row of scaled logits `x · inv_t`, the sum accumulated in
/// f64: over a vocabulary of 50,000 an f32 sum loses about 1e-6 of the normaliser, which a
/// sequence's summed log-probability would multiply by its length.
#[inline]
fn log_norm(row: &[f32], inv_t: f32) -> (f32, f32) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x * inv_t));
    (max, sum_f64(row, |x| exp(x * inv_t - max)).ln() as f32)
}

/// Σ f(x) over xs in f64, in eight lanes (so the loop vectorises).
#[inline]
fn sum_f64(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&x| f64::from(f(x))).sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f64::from(f(x));
        }
    }
    acc.iter().sum::<f64>() + tail
}

impl CustomOp2 for TokenLogprobs {
    fn name(&self) -> &'static str {
        "rk-token-logprobs"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let logits = contiguous_f32(s1, l1, self.name())?;
        let (n, vocab) = l1.shape().dims2()?;
        let targets = targets(s2, l2, vocab, self.name())?;
        if targets.len() != n {
            candle_core::bail!("{}: {} targets for {n} rows", self.name(), targets.len());
        }
        let mut out = vec![0f32; 2 * n];
        let inv_t = 1.0 / self.temperature;
        out.par_chunks_mut(2)
            .zip(logits.par_chunks(vocab.max(1)).zip(targets.par_iter()))
            .for_each(|(o, (row, &t))| {
                let (picked, entropy) = logprob_row(row, t as usize, inv_t, self.entropy);
                o[0] = picked;
                o[1] = entropy;
            });
        Ok((CpuStorage::F32(out), Shape::from((n, 2))))
    }
    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // Only the log-probabilities have a gradient (the entropy is a reading).
        let g = grad.narrow(1, 0, 1)?.contiguous()?;
        let back = TokenLogprobsBackward {
            temperature: self.temperature,
        };
        let gt = Tensor::cat(&[g, targets.to_dtype(DType::F32)?.unsqueeze(1)?], 1)?;
        let dl = logits.apply_op2_no_bwd(&gt, &back)?;
        Ok((Some(dl), None))
    }
}

impl CustomOp2 for TokenLogprobsBackward {
    fn name(&self) -> &'static str {
        "rk-token-logprobs-bwd"
    }
    /// `d logits` `[n, vocab]` from the logits and `[n, 2]` (upstream gradient, target as f32).
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let logits = contiguous_f32(s1, l1, self.name())?;
        let gt = contiguous_f32(s2, l2, self.name())?;
        let (_, vocab) = l1.shape().dims2()?;
        let inv_t = 1.0 / self.temperature;
        let mut dl = vec![0f32; logits.len()];
        dl.par_chunks_mut(vocab.max(1))
            .zip(logits.par_chunks(vocab.max(1)).zip(gt.par_chunks(2)))
            .for_each(|(d, (row, gt))| logprob_row_bwd(row, gt[1] as usize, gt[0], inv_t, d));
        Ok((CpuStorage::F32(dl), l1.shape().clone()))
    }
}

multiversion! {
    /// (log p(target), entropy or 0) of one row under `softmax(row · inv_t)`.
    pub(super) fn logprob_row / logprob_row_base(row: &[f32], target: usize, inv_t: f32, entropy: bool) -> (f32, f32) {
        let (max, lse) = log_norm(row, inv_t);
        if !entropy {
            return (row[target] * inv_t - max - lse, 0.0);
        }
        // H = lse − Σ p·(x − max), p = exp(x − max − lse).
        let mean = sum_f64(row, |x| {
            let z = x * inv_t - max;
            exp(z - lse) * z
        }) as f32;
        (row[target] * inv_t - max - lse, lse - mean)
    }
}

multiversion! {
    /// `d` ← `g · inv_t · (onehot(target) − p)` for one row.
    pub(super) fn logprob_row_bwd / logprob_row_bwd_base(row: &[f32], target: usize, g: f32, inv_t: f32, d: &mut [f32]) {
        let (max, lse) = log_norm(row, inv_t);
        let s = g * inv_t;
        for (o, &x) in d.iter_mut().zip(row) {
            *o = -s * exp(x * inv_t - max - lse);
        }
        d[target] += s;
    }
}

/// `(log p(target), entropy)` per row of `logits` (`[n, vocab]`) under `softmax(logits /
/// temperature)`, as `[n]` tensors; the log-probabilities have a backward pass to the logits,
/// the entropy (nats; computed only when `entropy`, else `None`) none. Fused on CPU for f32;
/// composed from candle ops elsewhere.
pub fn token_logprobs(
    logits: &Tensor,
    targets: &Tensor,
    temperature: f64,
    entropy: bool,
) -> candle_core::Result<(Tensor, Option<Tensor>)> {
    check_simd()?;
    if temperature.is_nan() || temperature <= 0.0 {
        candle_core::bail!("token_logprobs: temperature must be positive, got {temperature}");
    }
    if logits.device().is_cpu() && logits.dtype() == DType::F32 {
        let out = logits.contiguous()?.apply_op2(
            &targets.to_dtype(DType::U32)?.contiguous()?,
            TokenLogprobs {
                temperature: temperature as f32,
                entropy,
            },
        )?;
        let picked = out.narrow(1, 0, 1)?.squeeze(1)?;
        let h = match entropy {
            true => Some(out.narrow(1, 1, 1)?.squeeze(1)?.detach()),
            false => None,
        };
        Ok((picked, h))
    } else {
        let (picked, h) = token_logprobs_composed(logits, targets, temperature)?;
        Ok((picked, entropy.then_some(h)))
    }
}

/// The same from candle ops (the reference of the fused kernel).
pub fn token_logprobs_composed(
    logits: &Tensor,
    targets: &Tensor,
    temperature: f64,
) -> candle_core::Result<(Tensor, Tensor)> {
    use candle_core::D;
    let logits = if temperature != 1.0 {
        (logits / temperature)?
    } else {
        logits.clone()
    };
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let log_probs = shifted.broadcast_sub(&lse)?;
    let picked = log_probs
        .gather(
            &targets.to_dtype(DType::U32)?.unsqueeze(D::Minus1)?,
            D::Minus1,
        )?
        .squeeze(D::Minus1)?;
    let lp = log_probs.detach();
    let entropy = (lp.exp()? * &lp)?.sum(D::Minus1)?.neg()?;
    Ok((picked, entropy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_diff, rand};
    use candle_core::{Device, Var};

    /// Values, entropies and the logits' gradient against the composed version, at temperature 1
    /// and 0.7, over a vocabulary that leaves a remainder after the vector lanes, with logits
    /// spread wide enough that some probabilities underflow.
    #[test]
    fn token_logprobs_match_composed_with_the_gradient() {
        let (n, vocab) = (37, 1003);
        let logits = Var::from_tensor(&rand(&[n, vocab], 1, 6.0)).unwrap();
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 97 + 5) % vocab as u32).collect();
        let targets = Tensor::new(targets.as_slice(), &Device::Cpu).unwrap();
        let r = rand(&[n], 2, 1.0);
        for t in [1.0, 0.7] {
            let (a, ea) = token_logprobs(logits.as_tensor(), &targets, t, true).unwrap();
            let ea = ea.unwrap();
            let (a2, none) = token_logprobs(logits.as_tensor(), &targets, t, false).unwrap();
            assert!(none.is_none());
            assert_eq!(max_diff(&a, &a2), 0.0);
            let (b, eb) = token_logprobs_composed(logits.as_tensor(), &targets, t).unwrap();
            assert!(
                max_diff(&a, &b) < 1e-4,
                "log-probabilities differ by {}",
                max_diff(&a, &b)
            );
            assert!(
                max_diff(&ea, &eb) < 1e-4,
                "entropies differ by {}",
                max_diff(&ea, &eb)
            );
            let ga = (a * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (b * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let d = max_diff(
                ga.get(logits.as_tensor()).unwrap(),
                gb.get(logits.as_tensor()).unwrap(),
            );
            assert!(d < 1e-5, "gradients differ by {d}");
        }
    }

    #[test]
    fn a_target_outside_the_vocabulary_is_an_error() {
        let logits = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
        let targets = Tensor::new(&[1u32, 5], &Device::Cpu).unwrap();
        let err = token_logprobs(&logits, &targets, 1.0, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("target 5 is outside the vocabulary of 5"),
            "{err}"
        );
    }
}
