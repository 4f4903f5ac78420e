//! One step's samples: generation, scores, and the per-token log-probabilities of the policy
//! that drew them (`log π_old`) and of the reference.

use rewardkit_model::{GenerationConfig, Mode, Policy, ResponseBatch};

use crate::reward::{checked, Completion, Reward};
use crate::RlError;

/// A sampled response with everything the update needs.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// Index into the run's prompts.
    pub prompt_index: usize,
    /// The response tokens (EOS included when `finished`).
    pub tokens: Vec<u32>,
    pub text: String,
    pub finished: bool,
    /// The reward's score.
    pub score: f64,
    pub gold: Option<f64>,
    /// log π_old per response token, at the sampling temperature.
    pub old: Vec<f32>,
    /// log π_ref per response token, at the same temperature.
    pub reference: Vec<f32>,
    /// Σ over the tokens of the policy's next-token entropy (nats).
    pub entropy: f64,
}

impl Rollout {
    /// Σ k1 over the tokens: this sample's estimate of KL(π‖π_ref) in nats.
    pub fn kl(&self) -> f64 {
        self.old
            .iter()
            .zip(&self.reference)
            .map(|(&p, &q)| crate::kl::k1(p as f64, q as f64))
            .sum()
    }

    /// Σ k3 over the tokens.
    pub fn kl_k3(&self) -> f64 {
        self.old
            .iter()
            .zip(&self.reference)
            .map(|(&p, &q)| crate::kl::k3(p as f64, q as f64))
            .sum()
    }
}

/// What a step samples from.
pub(crate) struct StepInputs<'a> {
    pub policy: &'a Policy,
    pub reference: &'a Policy,
    /// Token ids of every prompt of the run.
    pub encoded: &'a [Vec<u32>],
    /// The reward's view of every prompt.
    pub prompts: &'a [String],
    /// The prompts of this step (indices into `encoded`).
    pub chosen: &'a [usize],
    pub k: usize,
    pub generation: GenerationConfig,
    pub forward_batch_size: usize,
}

/// Draws `k` samples per chosen prompt (ordered by prompt, then sample), scores them with
/// `reward` (and `gold`), and computes their log-probabilities under the policy and reference.
/// Returns them with the seconds spent sampling.
pub(crate) fn collect(
    inp: &StepInputs,
    reward: &mut dyn Reward,
    gold: Option<&mut dyn Reward>,
) -> Result<(Vec<Rollout>, f64), RlError> {
    let t0 = std::time::Instant::now();
    let selected: Vec<Vec<u32>> = inp.chosen.iter().map(|&i| inp.encoded[i].clone()).collect();
    let samples = inp
        .policy
        .generate_ids(&selected, inp.k, &inp.generation, &mut |_| {})?;
    let generate_s = t0.elapsed().as_secs_f64();
    let mut rollouts: Vec<Rollout> = samples
        .into_iter()
        .map(|s| Rollout {
            prompt_index: inp.chosen[s.prompt_index],
            tokens: s.token_ids,
            text: s.text,
            finished: s.finished,
            score: 0.0,
            gold: None,
            old: Vec::new(),
            reference: Vec::new(),
            entropy: 0.0,
        })
        .collect();
    let completions: Vec<Completion> = rollouts
        .iter()
        .map(|r| Completion {
            prompt_index: r.prompt_index,
            prompt: &inp.prompts[r.prompt_index],
            response: &r.text,
            finished: r.finished,
        })
        .collect();
    let scores = checked(reward, &completions)?;
    let golds = gold.map(|g| checked(g, &completions)).transpose()?;
    drop(completions);
    for (i, r) in rollouts.iter_mut().enumerate() {
        r.score = scores[i];
        r.gold = golds.as_ref().map(|g| g[i]);
    }
    let t = inp.generation.temperature;
    let (old, entropy) = token_logprobs(inp.policy, inp, &rollouts, t, true)?;
    let (reference, _) = token_logprobs(inp.reference, inp, &rollouts, t, false)?;
    for (((r, o), q), h) in rollouts.iter_mut().zip(old).zip(reference).zip(entropy) {
        r.old = o;
        r.reference = q;
        r.entropy = h;
    }
    Ok((rollouts, generate_s))
}

/// Per-token log-probabilities (and summed entropies) of every rollout under `model`'s frozen
/// weights, `forward_batch_size` sequences at a time.
fn token_logprobs(
    model: &Policy,
    inp: &StepInputs,
    rollouts: &[Rollout],
    temperature: f64,
    entropy: bool,
) -> Result<(Vec<Vec<f32>>, Vec<f64>), RlError> {
    let mut lps = Vec::with_capacity(rollouts.len());
    let mut ents = Vec::with_capacity(rollouts.len());
    for chunk in rollouts.chunks(inp.forward_batch_size) {
        let batch = response_batch(model, inp.encoded, chunk)?;
        let out = model
            .model()
            .response_logprobs(&batch, Mode::Eval, temperature, entropy)?;
        let rows: Vec<Vec<f32>> = out.logprobs.to_vec2()?;
        for (row, r) in rows.into_iter().zip(chunk) {
            lps.push(row[..r.tokens.len()].to_vec());
        }
        match out.entropy {
            Some(h) => {
                let h: Vec<Vec<f32>> = h.to_vec2()?;
                ents.extend(
                    h.iter()
                        .map(|row| row.iter().map(|&x| x as f64).sum::<f64>()),
                );
            }
            None => ents.extend(std::iter::repeat_n(0.0, chunk.len())),
        }
    }
    Ok((lps, ents))
}

/// The [`ResponseBatch`] of some rollouts.
pub(crate) fn response_batch(
    model: &Policy,
    encoded: &[Vec<u32>],
    rollouts: &[Rollout],
) -> Result<ResponseBatch, RlError> {
    let rows: Vec<(&[u32], &[u32])> = rollouts
        .iter()
        .map(|r| (encoded[r.prompt_index].as_slice(), r.tokens.as_slice()))
        .collect();
    Ok(ResponseBatch::new(
        &rows,
        model.eos_ids()[0],
        model.arch_config().hidden_size(),
        model.device(),
    )?)
}
