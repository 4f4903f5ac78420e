//! Held-out evaluation during RL: gold (and the proxy) of the current policy on a fixed set of
//! prompts, sampled with common random numbers.
//!
//! A step's own samples are a poor reading of gold: few, and drawn from other prompts at every
//! step, so a curve of them moves with the draw as much as with the policy. An evaluation
//! instead samples `eval_samples_per_prompt` responses to each of a fixed list of prompts from
//! random streams that are the same at every evaluation (one seed, streams keyed by prompt and
//! sample: [`rewardkit_model::Policy::generate_ids`]). Two evaluations of one policy are then
//! identical, and two of nearby policies differ mostly where the policies do (common random
//! numbers), so the curve's step-to-step noise is far below its standard error.
//!
//! The standard error reported is the sampling error for that fixed prompt list:
//! `√(Σ_p s_p² / m) / P` over P prompts of m samples with within-prompt variances s_p². The
//! spread between prompts is not part of it (the list is fixed); to generalise to other
//! prompts, use more of them.

use std::time::Instant;

use serde::Serialize;

use rewardkit_data::Rng;
use rewardkit_model::{GenerationConfig, Policy};

use crate::config::RlConfig;
use crate::reward::{checked, Completion, Reward};
use crate::trainer::RlPrompt;
use crate::RlError;

/// One evaluation of the policy on the held-out prompts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RlEvalLog {
    /// Optimizer updates of the policy evaluated (its step count).
    pub updates: usize,
    /// Prompts × samples per prompt.
    pub samples: usize,
    /// The gold function's mean score.
    pub gold: f64,
    /// Its standard error for this prompt list (see the module doc).
    pub gold_se: f64,
    /// The reward's mean score on the same samples, when a reward was given.
    pub proxy: Option<f64>,
    pub proxy_se: Option<f64>,
    /// Mean response length in tokens (EOS included) and the share that ended with EOS.
    pub response_length: f64,
    pub finished: f64,
    pub seconds: f64,
}

/// Samples `config.eval_samples_per_prompt` responses to every prompt from `policy` (its
/// current weights) with the evaluation's fixed random streams, and scores them with `gold`
/// and, when given, `proxy`. `updates` is recorded as is.
pub fn evaluate(
    policy: &Policy,
    config: &RlConfig,
    prompts: &[RlPrompt],
    updates: usize,
    gold: &mut dyn Reward,
    proxy: Option<&mut dyn Reward>,
) -> Result<RlEvalLog, RlError> {
    if prompts.is_empty() {
        return Err(RlError::Config("no evaluation prompts".into()));
    }
    let t0 = Instant::now();
    let m = config.eval_samples_per_prompt;
    let encoded = prompts
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let ids = policy.encode(&p.input)?;
            if ids.is_empty() {
                return Err(RlError::Row {
                    index,
                    message: "the evaluation prompt has no tokens".into(),
                });
            }
            Ok(ids)
        })
        .collect::<Result<Vec<_>, RlError>>()?;
    let generation = GenerationConfig {
        max_new_tokens: config.max_new_tokens,
        temperature: config.temperature,
        top_p: config.top_p,
        // The same streams at every evaluation: common random numbers.
        seed: Rng::derive(config.seed, &["rl-eval"]).next_u64(),
        batch_size: config.forward_batch_size,
    };
    let samples = policy.generate_ids(&encoded, m, &generation, &mut |_| {})?;
    let completions: Vec<Completion> = samples
        .iter()
        .map(|s| Completion {
            prompt_index: s.prompt_index,
            prompt: &prompts[s.prompt_index].prompt,
            response: &s.text,
            finished: s.finished,
        })
        .collect();
    let golds = checked(gold, &completions)?;
    let proxies = proxy.map(|p| checked(p, &completions)).transpose()?;
    let n = samples.len() as f64;
    let (gold, gold_se) = mean_and_se(&golds, m);
    let (proxy, proxy_se) = match proxies {
        Some(p) => {
            let (mean, se) = mean_and_se(&p, m);
            (Some(mean), Some(se))
        }
        None => (None, None),
    };
    Ok(RlEvalLog {
        updates,
        samples: samples.len(),
        gold,
        gold_se,
        proxy,
        proxy_se,
        response_length: samples.iter().map(|s| s.token_ids.len()).sum::<usize>() as f64 / n,
        finished: samples.iter().filter(|s| s.finished).count() as f64 / n,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The mean of `scores` (consecutive groups of `m` per prompt) and its standard error for
/// the fixed prompt list: `√(Σ_p s_p² / m) / P`, s_p² the unbiased within-group variance.
pub fn mean_and_se(scores: &[f64], m: usize) -> (f64, f64) {
    if scores.is_empty() || m == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    if m < 2 {
        return (mean, f64::NAN);
    }
    let groups = scores.chunks_exact(m);
    let p = groups.len() as f64;
    let within: f64 = groups
        .map(|g| {
            let gm = g.iter().sum::<f64>() / m as f64;
            g.iter().map(|x| (x - gm).powi(2)).sum::<f64>() / (m - 1) as f64
        })
        .sum();
    (mean, (within / m as f64).sqrt() / p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_error_is_the_within_prompt_one() {
        // Two prompts of m = 2: within-prompt variances 0.5 and 0 (values 0,1 and 1,1).
        // se = √((0.5 + 0) / 2) / 2 = 0.25; mean 0.75. The between-prompt spread (0.5 vs 1)
        // is not part of it.
        let (mean, se) = mean_and_se(&[0.0, 1.0, 1.0, 1.0], 2);
        assert!((mean - 0.75).abs() < 1e-12);
        assert!((se - 0.25).abs() < 1e-12, "{se}");
        // Constant within every prompt: no sampling error, however different the prompts.
        let (_, se) = mean_and_se(&[0.0, 0.0, 5.0, 5.0], 2);
        assert_eq!(se, 0.0);
        // One prompt of 4 Bernoulli(½) draws 0,1,0,1: s² = 1/3, se = √(1/12).
        let (_, se) = mean_and_se(&[0.0, 1.0, 0.0, 1.0], 4);
        assert!((se - (1.0f64 / 12.0).sqrt()).abs() < 1e-12, "{se}");
    }
}
