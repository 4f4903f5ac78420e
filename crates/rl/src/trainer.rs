//! The RL loop: each step samples, scores, computes advantages and runs PPO updates.
//!
//! Determinism: step s draws its prompts from an order that depends only on `(seed, epoch)`
//! and its samples from streams of `(seed, s, prompt, sample)`, and its minibatches from
//! `(seed, s, epoch)`; so two runs with one seed agree, and a run resumed from the checkpoint
//! of step s (weights, AdamW moments and step count) continues exactly as the uninterrupted
//! run: no random state needs saving beyond the step.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use rewardkit_data::{Rng, StableHasher};
use rewardkit_model::{CausalLm, GenerationConfig, Mode, Policy};
use rewardkit_train::fingerprint::params_values;
use rewardkit_train::{AdamW, Grads, Start};

use crate::advantage::{clip_rewards, mean_std, rloo, whiten};
use crate::config::RlConfig;
use crate::evaluate::{evaluate, RlEvalLog};
use crate::event::Event;
use crate::kl::KlEstimator;
use crate::ppo::{ppo_loss, PpoInputs, PpoStats};
use crate::reward::Reward;
use crate::rollout::{collect, response_batch, Rollout, StepInputs};
use crate::run_dir::{RunFolder, RunState};
use crate::RlError;

/// A prompt of an RL run.
#[derive(Debug, Clone, PartialEq)]
pub struct RlPrompt {
    /// What the policy reads (e.g. the chat-formatted text: `Policy::format_prompt`).
    pub input: String,
    /// What the reward sees as the prompt (the plain question).
    pub prompt: String,
}

impl RlPrompt {
    /// The same text for the policy and the reward.
    pub fn plain(text: impl Into<String>) -> Self {
        let text = text.into();
        RlPrompt {
            input: text.clone(),
            prompt: text,
        }
    }
}

/// What to optimise on and where to write.
pub struct RlRun<'a> {
    pub prompts: &'a [RlPrompt],
    /// Held-out prompts: gold (and the reward) are measured on them every `eval_every` steps
    /// with common random numbers ([`crate::evaluate`]); empty for none. They need a gold
    /// function: [`rl`] refuses them without one (`RlError::Config`).
    pub eval_prompts: &'a [RlPrompt],
    /// The run folder (checkpoints, `final/`, `metrics.jsonl`); `None` writes nothing.
    pub out: Option<&'a Path>,
    pub start: Start,
    /// Set from elsewhere (a signal handler) to stop after the current step, with a checkpoint.
    pub stop: Option<&'a AtomicBool>,
}

impl<'a> RlRun<'a> {
    /// A run that writes nothing (curves come through the observer).
    pub fn in_memory(prompts: &'a [RlPrompt]) -> Self {
        RlRun {
            prompts,
            eval_prompts: &[],
            out: None,
            start: Start::Fresh,
            stop: None,
        }
    }
}

/// One line of the RL log (`metrics.jsonl`, `"kind": "rl"`) and of the observer's events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RlStepLog {
    pub step: usize,
    pub total_steps: usize,
    /// The reward's score of this step's samples (before clipping, whitening and KL).
    pub proxy_mean: f64,
    pub proxy_std: f64,
    /// Mean of the rewards the advantages came from (after clipping, whitening and, with
    /// `k1-in-reward`, the KL penalty).
    pub reward_mean: f64,
    /// KL(π‖π_ref): mean over samples of Σ_t k1, nats per sequence.
    pub kl: f64,
    /// √max(kl, 0): Gao et al.'s d.
    pub sqrt_kl: f64,
    /// Mean over samples of Σ_t k3 (≥ 0).
    pub kl_k3: f64,
    /// Mean next-token entropy of the policy per response token (nats).
    pub entropy: f64,
    /// Mean response length in tokens (EOS included).
    pub response_length: f64,
    /// Share of responses that ended with EOS.
    pub finished: f64,
    /// Share of response tokens whose PPO ratio was clipped, over all inner updates.
    pub clip_fraction: f64,
    /// The gold function's mean score on this step's samples, when one is given.
    pub gold: Option<f64>,
    /// The held-out evaluation of the policy that drew this step's samples (before its
    /// update), on the steps it is due.
    pub eval: Option<RlEvalLog>,
    /// The surrogate loss of the last update.
    pub loss: f64,
    pub grad_norm: f64,
    pub learning_rate: f64,
    /// Seconds of this step in sampling, in scoring and log-probabilities, and in updates.
    pub generate_s: f64,
    pub score_s: f64,
    pub update_s: f64,
    pub elapsed_s: f64,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    MaxSteps,
    /// A step's KL exceeded `target_kl`.
    TargetKl,
    /// The observer or the stop flag; resume continues from the last checkpoint.
    Interrupted,
}

/// The result of an RL run.
#[derive(Debug, Clone, Serialize)]
pub struct RlSummary {
    /// The last step done (and saved).
    pub steps: usize,
    pub resumed_at: usize,
    pub stop: StopReason,
    /// `final/` when the run finished (not when interrupted) and has a folder.
    pub final_dir: Option<PathBuf>,
    pub last: Option<RlStepLog>,
    /// The held-out evaluation of the final policy (runs with evaluation prompts and a gold
    /// function that were not interrupted).
    pub final_eval: Option<RlEvalLog>,
    pub seconds: f64,
}

/// What one [`RlSession::step`] returns: its log line and its samples (for labelling,
/// retraining a reward model on them, or inspection).
#[derive(Debug, Clone)]
pub struct StepOutput {
    pub log: RlStepLog,
    pub samples: Vec<Rollout>,
}

/// RL one step at a time: the policy's trainable model, its optimizer and the step count.
/// The reward may change between steps (iterative retraining of the reward model); so may the
/// prompts. [`rl`] is a whole run on top of it, with a run folder.
pub struct RlSession<'a> {
    policy: &'a Policy,
    reference: &'a Policy,
    config: RlConfig,
    lm: CausalLm,
    optimizer: AdamW,
    step: usize,
    started: Instant,
}

impl<'a> RlSession<'a> {
    /// A session at step 0. `reference` is the frozen reference ([`Policy::snapshot`], or the
    /// starting model loaded again).
    pub fn new(
        policy: &'a Policy,
        reference: &'a Policy,
        config: &RlConfig,
    ) -> Result<Self, RlError> {
        config.validate().map_err(RlError::Config)?;
        let optimizer = config.optim.adamw(policy.params().vars())?;
        Ok(RlSession {
            policy,
            reference,
            config: config.clone(),
            lm: policy.trainable()?,
            optimizer,
            step: 0,
            started: Instant::now(),
        })
    }

    /// Gold (and, when given, `proxy`) of the current policy on the held-out `prompts`, with
    /// the evaluation's fixed random streams ([`crate::evaluate`]).
    pub fn evaluate(
        &self,
        prompts: &[RlPrompt],
        gold: &mut dyn Reward,
        proxy: Option<&mut dyn Reward>,
    ) -> Result<RlEvalLog, RlError> {
        evaluate(self.policy, &self.config, prompts, self.step, gold, proxy)
    }

    /// Steps done so far.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// The optimizer (its moments and step count are part of a checkpoint).
    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    /// Step `steps_done() + 1`: B of `prompts` (consecutive slices of per-epoch shuffles of
    /// them, from the seed), k samples each, scored by `reward` (and `gold`), then the updates.
    pub fn step(
        &mut self,
        prompts: &[RlPrompt],
        reward: &mut dyn Reward,
        gold: Option<&mut dyn Reward>,
    ) -> Result<StepOutput, RlError> {
        if prompts.is_empty() {
            return Err(RlError::Config("no prompts".into()));
        }
        let step = self.step + 1;
        let chosen = chosen_prompts(&self.config, prompts.len(), step);
        let mut encoded = vec![Vec::new(); prompts.len()];
        for &i in &chosen {
            if encoded[i].is_empty() {
                encoded[i] = self.policy.encode(&prompts[i].input)?;
                if encoded[i].is_empty() {
                    return Err(RlError::Row {
                        index: i,
                        message: "the prompt has no tokens".into(),
                    });
                }
            }
        }
        let plain: Vec<String> = prompts.iter().map(|p| p.prompt.clone()).collect();
        let ctx = StepContext {
            policy: self.policy,
            reference: self.reference,
            lm: &self.lm,
            config: &self.config,
            encoded: &encoded,
            prompts: &plain,
            started: self.started,
        };
        let out = ctx.run_step(step, &chosen, &mut self.optimizer, reward, gold)?;
        self.step = step;
        Ok(out)
    }
}

/// The prompts of step `step` (1-based): consecutive slices of per-epoch shuffles of `n`.
fn chosen_prompts(config: &RlConfig, n: usize, step: usize) -> Vec<usize> {
    let b = config.prompts_per_step;
    let mut cache: Option<(usize, Vec<usize>)> = None;
    (0..b)
        .map(|j| {
            let global = (step - 1) * b + j;
            let (epoch, at) = (global / n, global % n);
            if cache.as_ref().map(|(e, _)| *e) != Some(epoch) {
                let mut order: Vec<usize> = (0..n).collect();
                Rng::derive(config.seed, &["rl-prompts", &epoch.to_string()]).shuffle(&mut order);
                cache = Some((epoch, order));
            }
            cache.as_ref().map_or(0, |(_, o)| o[at])
        })
        .collect()
}

/// Optimises `policy` against `reward` with a KL penalty to `reference` (a frozen copy:
/// [`Policy::snapshot`], or the starting model loaded again), as `config` says, writing the run
/// folder of `run.out` (checkpoints, exact resume, `metrics.jsonl`). `gold`, when given, is
/// scored on the same samples and logged. `observer` sees every step and save, and can stop
/// the run by returning `Break` (a checkpoint is written first).
pub fn rl(
    policy: &Policy,
    reference: &Policy,
    config: &RlConfig,
    run: &RlRun,
    reward: &mut dyn Reward,
    mut gold: Option<&mut dyn Reward>,
    mut observer: impl FnMut(Event<RlStepLog>) -> ControlFlow<()>,
) -> Result<RlSummary, RlError> {
    if run.prompts.is_empty() {
        return Err(RlError::Config("no prompts".into()));
    }
    if !run.eval_prompts.is_empty() && gold.is_none() {
        return Err(RlError::Config(
            "held-out evaluation prompts need a gold function".into(),
        ));
    }
    let mut session = RlSession::new(policy, reference, config)?;
    let state = RunState {
        kind: "rl".into(),
        step: 0,
        total_steps: config.max_steps,
        config: config.identity(),
        fingerprints: fingerprints(policy, reference, run.prompts)?,
    };
    let (mut folder, resumed_at) = RunFolder::open(
        run.out,
        run.start,
        state,
        config.save_total_limit,
        policy,
        &mut session.optimizer,
    )?;
    session.step = resumed_at;
    let _ = observer(Event::Start {
        total_steps: config.max_steps,
        resumed_at,
    });
    let mut steps_done = resumed_at;
    let mut stop_reason = StopReason::MaxSteps;
    let mut last = None;
    for step in resumed_at + 1..=config.max_steps {
        let eval = match (&mut gold, eval_due(config, run, step)) {
            (Some(g), true) => Some(session.evaluate(run.eval_prompts, &mut **g, Some(reward))?),
            _ => None,
        };
        let g: Option<&mut dyn Reward> = match &mut gold {
            Some(g) => Some(&mut **g),
            None => None,
        };
        let mut entry = session.step(run.prompts, reward, g)?.log;
        entry.eval = eval;
        folder.log("rl", &entry)?;
        let mut stop = observer(Event::Step(&entry)).is_break();
        stop |= run.stop.is_some_and(|s| s.load(Ordering::SeqCst));
        let over_kl = config.target_kl.is_some_and(|t| entry.kl > t);
        let done = step == config.max_steps || over_kl;
        if stop && !done {
            let _ = observer(Event::Stopping { step });
            stop_reason = StopReason::Interrupted;
        } else if over_kl {
            stop_reason = StopReason::TargetKl;
        }
        last = Some(entry);
        if (config.save_every > 0 && step % config.save_every == 0) || done || stop {
            if let Some(dir) = folder.save_checkpoint(step, policy, &session.optimizer)? {
                let _ = observer(Event::Saved(&dir));
            }
        }
        steps_done = step;
        if done || stop {
            break;
        }
    }
    let final_eval = match &mut gold {
        Some(g) if stop_reason != StopReason::Interrupted && !run.eval_prompts.is_empty() => {
            let e = session.evaluate(run.eval_prompts, &mut **g, Some(reward))?;
            folder.log("rl_eval", &e)?;
            Some(e)
        }
        _ => None,
    };
    let final_dir = if stop_reason == StopReason::Interrupted {
        None
    } else {
        let dir = folder.save_final(policy)?;
        if let Some(d) = &dir {
            let _ = observer(Event::Saved(d));
        }
        dir
    };
    Ok(RlSummary {
        steps: steps_done,
        resumed_at,
        stop: stop_reason,
        final_dir,
        last,
        final_eval,
        seconds: session.started.elapsed().as_secs_f64(),
    })
}

/// Whether step `step` (1-based) starts with a held-out evaluation.
fn eval_due(config: &RlConfig, run: &RlRun, step: usize) -> bool {
    !run.eval_prompts.is_empty()
        && config.eval_every > 0
        && (step - 1).is_multiple_of(config.eval_every)
}

/// Hashes of the starting policy, the reference and the prompts.
fn fingerprints(
    policy: &Policy,
    reference: &Policy,
    prompts: &[RlPrompt],
) -> Result<BTreeMap<String, String>, RlError> {
    let mut h = StableHasher::new(2);
    h.bytes(&(prompts.len() as u64).to_le_bytes());
    for p in prompts {
        h.str(&p.input);
        h.str(&p.prompt);
    }
    Ok(BTreeMap::from([
        (
            "policy".to_string(),
            params_values(policy.params(), "policy")?,
        ),
        (
            "reference".to_string(),
            params_values(reference.params(), "policy")?,
        ),
        ("prompts".to_string(), format!("{:016x}", h.finish())),
    ]))
}

/// What a step needs.
struct StepContext<'a> {
    policy: &'a Policy,
    reference: &'a Policy,
    lm: &'a CausalLm,
    config: &'a RlConfig,
    /// Token ids of the prompts (filled for the chosen ones).
    encoded: &'a [Vec<u32>],
    prompts: &'a [String],
    started: Instant,
}

impl StepContext<'_> {
    fn run_step(
        &self,
        step: usize,
        chosen: &[usize],
        optimizer: &mut AdamW,
        reward: &mut dyn Reward,
        gold: Option<&mut dyn Reward>,
    ) -> Result<StepOutput, RlError> {
        let c = self.config;
        let t0 = Instant::now();
        let generation = GenerationConfig {
            max_new_tokens: c.max_new_tokens,
            temperature: c.temperature,
            top_p: c.top_p,
            seed: Rng::derive(c.seed, &["rl-samples", &step.to_string()]).next_u64(),
            batch_size: c.forward_batch_size,
        };
        let inputs = StepInputs {
            policy: self.policy,
            reference: self.reference,
            encoded: self.encoded,
            prompts: self.prompts,
            chosen,
            k: c.samples_per_prompt,
            generation,
            forward_batch_size: c.forward_batch_size,
        };
        let (rollouts, generate_s) = collect(&inputs, reward, gold)?;
        let scores: Vec<f64> = rollouts.iter().map(|r| r.score).collect();
        let kls: Vec<f64> = rollouts.iter().map(Rollout::kl).collect();
        let rewards = shaped_rewards(c, &scores, &kls);
        let advantages = rloo(&rewards, c.samples_per_prompt, c.group_std);
        let t2 = Instant::now();
        let update = self.update(step, optimizer, &rollouts, &advantages)?;
        let n = rollouts.len() as f64;
        let tokens: usize = rollouts.iter().map(|r| r.tokens.len()).sum();
        let (proxy_mean, proxy_std) = mean_std(&scores);
        let kl = kls.iter().sum::<f64>() / n;
        let gold = rollouts
            .iter()
            .map(|r| r.gold)
            .sum::<Option<f64>>()
            .map(|g| g / n);
        let log = RlStepLog {
            step,
            total_steps: c.max_steps,
            proxy_mean,
            proxy_std,
            reward_mean: rewards.iter().sum::<f64>() / n,
            kl,
            sqrt_kl: kl.max(0.0).sqrt(),
            kl_k3: rollouts.iter().map(Rollout::kl_k3).sum::<f64>() / n,
            entropy: rollouts.iter().map(|r| r.entropy).sum::<f64>() / tokens.max(1) as f64,
            response_length: tokens as f64 / n,
            finished: rollouts.iter().filter(|r| r.finished).count() as f64 / n,
            clip_fraction: update.stats.clipped as f64 / update.stats.tokens.max(1) as f64,
            gold,
            eval: None,
            loss: update.loss,
            grad_norm: update.grad_norm,
            learning_rate: update.lr,
            generate_s,
            score_s: (t2 - t0).as_secs_f64() - generate_s,
            update_s: t2.elapsed().as_secs_f64(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
        };
        Ok(StepOutput {
            log,
            samples: rollouts,
        })
    }

    /// μ passes of `minibatches` optimizer steps over the rollouts, in an order drawn from
    /// `(seed, step, pass)`.
    fn update(
        &self,
        step: usize,
        optimizer: &mut AdamW,
        rollouts: &[Rollout],
        advantages: &[f64],
    ) -> Result<Update, RlError> {
        let c = self.config;
        let mut out = Update::default();
        let per_step = c.ppo_epochs * c.minibatches;
        for epoch in 0..c.ppo_epochs {
            let mut order: Vec<usize> = (0..rollouts.len()).collect();
            Rng::derive(
                c.seed,
                &["rl-minibatches", &step.to_string(), &epoch.to_string()],
            )
            .shuffle(&mut order);
            let size = rollouts.len().div_ceil(c.minibatches);
            for (m, part) in order.chunks(size).enumerate() {
                let mut grads = Grads::default();
                let mut loss = 0.0;
                for chunk in part.chunks(c.forward_batch_size) {
                    let rows: Vec<Rollout> = chunk.iter().map(|&i| rollouts[i].clone()).collect();
                    let adv: Vec<f64> = chunk.iter().map(|&i| advantages[i]).collect();
                    let (l, stats) =
                        self.minibatch_loss(&rows, &adv, part.len(), &mut grads, optimizer)?;
                    loss += l;
                    out.stats.clipped += stats.clipped;
                    out.stats.tokens += stats.tokens;
                }
                out.grad_norm = grads.clip(c.optim.max_grad_norm)?;
                let opt_step = (step - 1) * per_step + epoch * c.minibatches + m + 1;
                out.lr = c.optim.lr_at(opt_step, c.optimizer_steps());
                optimizer.step(&grads, out.lr)?;
                out.loss = loss;
            }
        }
        Ok(out)
    }

    /// Forward and backward of some rollouts of a minibatch of `normaliser` sequences; the
    /// gradients are added to `grads`. Returns the loss and clip statistics.
    fn minibatch_loss(
        &self,
        rows: &[Rollout],
        advantages: &[f64],
        normaliser: usize,
        grads: &mut Grads,
        optimizer: &AdamW,
    ) -> Result<(f64, PpoStats), RlError> {
        let c = self.config;
        let batch = response_batch(self.policy, self.encoded, rows)?;
        let new = self
            .lm
            .response_logprobs(&batch, Mode::Eval, c.temperature, false)?
            .logprobs;
        let old: Vec<Vec<f32>> = rows.iter().map(|r| r.old.clone()).collect();
        let reference: Vec<Vec<f32>> = rows.iter().map(|r| r.reference.clone()).collect();
        let inputs = PpoInputs {
            old: &old,
            reference: &reference,
            advantages,
            lengths: &batch.lengths,
            clip_range: c.clip_range,
            beta: c.beta,
            estimator: c.kl_estimator,
            normaliser,
        };
        let (loss, stats) = ppo_loss(&new, &inputs)?;
        let store = loss.backward()?;
        grads.accumulate(&store, optimizer.vars().map(|(_, v)| v))?;
        Ok((loss.to_scalar::<f32>()? as f64, stats))
    }
}

/// What the updates of a step report.
#[derive(Default)]
struct Update {
    stats: PpoStats,
    loss: f64,
    grad_norm: f64,
    lr: f64,
}

/// The rewards the advantages come from: scores clipped, whitened, then with
/// [`KlEstimator::K1InReward`] minus β · the sample's Σ k1.
pub fn shaped_rewards(config: &RlConfig, scores: &[f64], kls: &[f64]) -> Vec<f64> {
    let mut r = scores.to_vec();
    if let Some(c) = config.reward_clip {
        clip_rewards(&mut r, c);
    }
    if config.whiten_rewards {
        whiten(&mut r);
    }
    if config.kl_estimator == KlEstimator::K1InReward && config.beta > 0.0 {
        for (r, kl) in r.iter_mut().zip(kls) {
            *r -= config.beta * kl;
        }
    }
    r
}
