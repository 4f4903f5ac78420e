//! The PPO clipped surrogate (Schulman et al. 2017) on per-token log-probabilities, with
//! sequence-level advantages, and GRPO's k3 penalty in the loss.
//!
//! Per response token t of sample i, with ratio `ρ = exp(log π − log π_old)`:
//! `obj = min(ρ·A_i, clip(ρ, 1 − ε, 1 + ε)·A_i)` (minus `β·k3_t` with [`KlEstimator::K3InLoss`]);
//! the loss is `−Σ_i Σ_t obj / N`, the tokens of a sequence summed and the sequences averaged.
//! Summing over tokens keeps the estimator unbiased: at `π = π_old` its gradient is
//! `−(1/N)·Σ_i A_i·∇ log π(y_i|x_i)`, the REINFORCE estimate of `−∇E[r]` (no length
//! normalisation, whose weight would depend on the sample).

use candle_core::Tensor;

use crate::kl::KlEstimator;

/// Statistics of one evaluation of the surrogate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PpoStats {
    /// Response tokens whose ratio was clipped (the clipped branch was taken).
    pub clipped: usize,
    /// Response tokens.
    pub tokens: usize,
}

/// What one minibatch of the surrogate needs besides the new log-probabilities.
pub struct PpoInputs<'a> {
    /// `[b, r]` log π_old of the response tokens (0 past each response's end).
    pub old: &'a [Vec<f32>],
    /// `[b, r]` log π_ref, used only with [`KlEstimator::K3InLoss`].
    pub reference: &'a [Vec<f32>],
    /// Per-sequence advantages `[b]`.
    pub advantages: &'a [f64],
    /// Response lengths `[b]`.
    pub lengths: &'a [usize],
    pub clip_range: f64,
    pub beta: f64,
    pub estimator: KlEstimator,
    /// The `N` the token sums are divided by (the optimizer minibatch's sequence count).
    pub normaliser: usize,
}

/// The loss (a scalar with a backward pass through `new`, `[b, r]` log π of the response
/// tokens, 0-masked) and its clipping statistics.
///
/// The clipped branch is chosen on the values (where `clip(ρ)·A < ρ·A` the token contributes a
/// constant and no gradient), so the loss's gradient is exactly PPO's.
pub fn ppo_loss(new: &Tensor, inputs: &PpoInputs) -> candle_core::Result<(Tensor, PpoStats)> {
    let (b, r) = new.dims2()?;
    let values: Vec<Vec<f32>> = new.detach().to_vec2()?;
    let (lo, hi) = (1.0 - inputs.clip_range, 1.0 + inputs.clip_range);
    let mut active = vec![0f32; b * r];
    let mut weight = vec![0f32; b * r];
    let mut constant = 0f64;
    let mut stats = PpoStats::default();
    let mut mask = vec![0f32; b * r];
    for i in 0..b {
        let a = inputs.advantages[i];
        for t in 0..inputs.lengths[i] {
            let ratio = (values[i][t] as f64 - inputs.old[i][t] as f64).exp();
            let clipped = ratio.clamp(lo, hi);
            stats.tokens += 1;
            mask[i * r + t] = 1.0;
            if clipped * a < ratio * a {
                stats.clipped += 1;
                constant += clipped * a;
            } else {
                active[i * r + t] = 1.0;
                weight[i * r + t] = a as f32;
            }
        }
    }
    let dev = new.device();
    let old = flat(inputs.old, b, r, dev)?;
    let ratio = (new - &old)?.exp()?;
    let weight = Tensor::from_vec(weight, (b, r), dev)?;
    let active = Tensor::from_vec(active, (b, r), dev)?;
    let mut objective = ((ratio * &weight)? * &active)?.sum_all()?;
    objective = (objective + constant)?;
    if inputs.estimator == KlEstimator::K3InLoss && inputs.beta != 0.0 {
        let reference = flat(inputs.reference, b, r, dev)?;
        let d = (reference - new)?;
        let k3 = ((d.exp()? - &d)? - 1.0)?;
        let mask = Tensor::from_vec(mask, (b, r), dev)?;
        let penalty = (k3 * mask)?.sum_all()?;
        objective = (objective - (penalty * inputs.beta)?)?;
    }
    let loss = (objective.neg()? / inputs.normaliser.max(1) as f64)?;
    Ok((loss, stats))
}

/// `[b][r]` rows (each at least `r` long or padded with 0) as a `[b, r]` tensor.
fn flat(
    rows: &[Vec<f32>],
    b: usize,
    r: usize,
    dev: &candle_core::Device,
) -> candle_core::Result<Tensor> {
    let mut v = Vec::with_capacity(b * r);
    for row in rows.iter().take(b) {
        v.extend(row.iter().copied().chain(std::iter::repeat(0.0)).take(r));
    }
    Tensor::from_vec(v, (b, r), dev)
}
