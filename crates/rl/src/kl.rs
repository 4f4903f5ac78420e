//! The KL penalty to the reference: which estimator, and where it enters.
//!
//! For a response `y ~ π(·|x)` with per-token log-ratios `d_t = log π(y_t|…) − log π_ref(y_t|…)`
//! (John Schulman, "Approximating KL Divergence", 2020):
//!
//! - **k1** `= d_t`: unbiased for KL(π‖π_ref) summed over the tokens (`E_π[Σ d_t]` is the
//!   sequence KL), but high variance, and negative on single samples.
//! - **k3** `= exp(−d_t) + d_t − 1`: also unbiased per token for KL(π‖π_ref) (since
//!   `E_π[exp(−d)] = 1`), never negative, and of lower variance when π and π_ref are close; it
//!   grows only linearly where π_ref ≫ π.
//!
//! Where each enters:
//! - [`KlEstimator::K1InReward`] (TRL's PPO and RLOO, OpenRLHF): the sequence's Σ k1 is
//!   subtracted from its reward, `r − β·Σ_t d_t`, before advantages. The policy gradient then
//!   follows the gradient of the KL-regularised objective `E[r] − β·KL` exactly (the
//!   score-function estimator of `∇KL` with a leave-one-out baseline); its variance grows with
//!   the KL's.
//! - [`KlEstimator::K3InLoss`] (GRPO, DeepSeekMath): the reward is the score alone and
//!   `β·Σ_t k3_t` is added to the loss and differentiated directly. Its gradient at a sample is
//!   `β·(1 − exp(−d_t))·∇ log π`, whose expectation under π is `∇KL(π_ref‖π)` (per token
//!   context): the gradient of the other direction of the KL. The two agree to first order
//!   near π_ref, so the estimator is biased for the objective `E[r] − β·KL(π‖π_ref)` but of low
//!   variance, and the bias vanishes as π → π_ref.
//!
//! The logged KL (`kl` of every step) is always Σ k1 averaged over the step's samples: the
//! unbiased estimate of KL(π‖π_ref) in nats per sequence.

use serde::{Deserialize, Serialize};

/// How the KL to the reference is estimated and where it enters the objective.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum KlEstimator {
    /// Per sequence, `r − β·Σ k1` in the reward (TRL's PPO/RLOO, OpenRLHF).
    #[default]
    K1InReward,
    /// Per token, `β·k3` in the loss (GRPO).
    K3InLoss,
}

/// k1 of one token: `log π − log π_ref`.
pub fn k1(logp: f64, logp_ref: f64) -> f64 {
    logp - logp_ref
}

/// k3 of one token: `exp(log π_ref − log π) − (log π_ref − log π) − 1` (≥ 0).
pub fn k3(logp: f64, logp_ref: f64) -> f64 {
    let r = logp_ref - logp;
    r.exp() - r - 1.0
}

/// The exact KL(p‖q) of two distributions given as log-probabilities over the same outcomes.
pub fn exact_kl(logp: &[f64], logq: &[f64]) -> f64 {
    logp.iter()
        .zip(logq)
        .filter(|(p, _)| p.is_finite())
        .map(|(p, q)| p.exp() * (p - q))
        .sum()
}
