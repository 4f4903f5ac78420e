//! Supervised fine-tuning: cross-entropy on the response tokens of (prompt, response) rows.
//!
//! Each row is `prompt tokens · response tokens · EOS`; the loss is the mean negative
//! log-likelihood of the response tokens and EOS (the prompt's tokens are context only), over
//! all such tokens of the step's batch. The rows are shuffled per epoch from `(seed, epoch)`,
//! so a resumed run continues with the batches of the uninterrupted one.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use rewardkit_data::{Rng, StableHasher};
use rewardkit_model::{Mode, Policy, ResponseBatch};
use rewardkit_train::fingerprint::params_values;
use rewardkit_train::{Grads, Start};

use crate::config::SftConfig;
use crate::event::Event;
use crate::run_dir::{RunFolder, RunState};
use crate::RlError;

/// A training row: the prompt as the model reads it (chat-formatted where the model wants
/// that) and the response to learn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftRow {
    pub prompt: String,
    pub response: String,
}

/// What to train on and where to write.
pub struct SftRun<'a> {
    pub rows: &'a [SftRow],
    /// The run folder; `None` writes nothing.
    pub out: Option<&'a Path>,
    pub start: Start,
    pub stop: Option<&'a AtomicBool>,
}

impl<'a> SftRun<'a> {
    /// A run that writes nothing.
    pub fn in_memory(rows: &'a [SftRow]) -> Self {
        SftRun {
            rows,
            out: None,
            start: Start::Fresh,
            stop: None,
        }
    }
}

/// One line of the SFT log (`"kind": "sft"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SftStepLog {
    pub step: usize,
    pub total_steps: usize,
    pub epoch: f64,
    /// Mean negative log-likelihood per response token (nats) of the steps since the last line.
    pub loss: f64,
    pub learning_rate: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
}

/// The result of an SFT run.
#[derive(Debug, Clone, Serialize)]
pub struct SftSummary {
    pub steps: usize,
    pub total_steps: usize,
    pub resumed_at: usize,
    pub interrupted: bool,
    pub final_dir: Option<PathBuf>,
    pub last: Option<SftStepLog>,
    pub seconds: f64,
}

/// A row as tokens: the prompt (at least one token) and the response with EOS.
struct Encoded {
    prompt: Vec<u32>,
    response: Vec<u32>,
}

fn encode(
    policy: &Policy,
    rows: &[SftRow],
    max_length: Option<usize>,
) -> Result<Vec<Encoded>, RlError> {
    rows.iter()
        .enumerate()
        .map(|(index, row)| {
            let mut prompt = policy.encode(&row.prompt)?;
            let mut response = policy.encode(&row.response)?;
            response.push(policy.eos_ids()[0]);
            if prompt.is_empty() {
                return Err(RlError::Row {
                    index,
                    message: "the prompt has no tokens (the first response token needs a context)"
                        .into(),
                });
            }
            if let Some(max) = max_length {
                // The prompt's start goes first (keeping one token), then the response's end.
                let over = (prompt.len() + response.len()).saturating_sub(max);
                let cut = over.min(prompt.len() - 1);
                prompt.drain(..cut);
                response.truncate(max.saturating_sub(prompt.len()).max(1));
            }
            Ok(Encoded { prompt, response })
        })
        .collect()
}

/// Fine-tunes `policy` on `run.rows` as `config` says.
pub fn sft(
    policy: &Policy,
    config: &SftConfig,
    run: &SftRun,
    mut observer: impl FnMut(Event<SftStepLog>) -> ControlFlow<()>,
) -> Result<SftSummary, RlError> {
    config.validate().map_err(RlError::Config)?;
    if run.rows.is_empty() {
        return Err(RlError::Config("no training rows".into()));
    }
    let started = Instant::now();
    let data = encode(policy, run.rows, config.max_length)?;
    let per_epoch = data.len().div_ceil(config.batch_size);
    let total_steps = config
        .max_steps
        .unwrap_or_else(|| (per_epoch as f64 * config.epochs).ceil() as usize)
        .max(1);
    let mut h = StableHasher::new(3);
    for r in run.rows {
        h.str(&r.prompt);
        h.str(&r.response);
    }
    let state = RunState {
        kind: "sft".into(),
        step: 0,
        total_steps,
        config: config.identity(),
        fingerprints: [
            (
                "policy".to_string(),
                params_values(policy.params(), "policy")?,
            ),
            ("data".to_string(), format!("{:016x}", h.finish())),
        ]
        .into(),
    };
    let lm = policy.trainable()?;
    let mut optimizer = config.optim.adamw(policy.params().vars())?;
    let (mut folder, resumed_at) = RunFolder::open(
        run.out,
        run.start,
        state,
        config.save_total_limit,
        policy,
        &mut optimizer,
    )?;
    let _ = observer(Event::Start {
        total_steps,
        resumed_at,
    });
    let (mut window_loss, mut window_steps, mut window_tokens) = (0.0, 0usize, 0usize);
    let mut window_start = Instant::now();
    let mut steps_done = resumed_at;
    let mut last = None;
    let mut epoch_cache: Option<(usize, Vec<usize>)> = None;
    for step in resumed_at + 1..=total_steps {
        let (epoch, index) = ((step - 1) / per_epoch, (step - 1) % per_epoch);
        if epoch_cache.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let mut order: Vec<usize> = (0..data.len()).collect();
            Rng::derive(config.seed, &["sft-epoch", &epoch.to_string()]).shuffle(&mut order);
            epoch_cache = Some((epoch, order));
        }
        let order = epoch_cache
            .as_ref()
            .map(|(_, o)| o.as_slice())
            .unwrap_or_default();
        let idx =
            &order[index * config.batch_size..((index + 1) * config.batch_size).min(data.len())];
        let rows: Vec<(&[u32], &[u32])> = idx
            .iter()
            .map(|&i| (data[i].prompt.as_slice(), data[i].response.as_slice()))
            .collect();
        let batch = ResponseBatch::new(
            &rows,
            policy.eos_ids()[0],
            policy.arch_config().hidden_size(),
            policy.device(),
        )?;
        let tokens: usize = batch.lengths.iter().sum();
        let logprobs = lm
            .response_logprobs(&batch, Mode::Eval, 1.0, false)?
            .logprobs;
        let loss = (logprobs.sum_all()?.neg()? / tokens as f64)?;
        let mut grads = Grads::default();
        grads.accumulate(&loss.backward()?, optimizer.vars().map(|(_, v)| v))?;
        let grad_norm = grads.clip(config.optim.max_grad_norm)?;
        let lr = config.optim.lr_at(step, total_steps);
        optimizer.step(&grads, lr)?;
        window_loss += loss.to_scalar::<f32>()? as f64;
        window_steps += 1;
        window_tokens += tokens;
        let is_last = step == total_steps;
        let mut stop = false;
        if step % config.log_every == 0 || is_last {
            let entry = SftStepLog {
                step,
                total_steps,
                epoch: step as f64 / per_epoch as f64,
                loss: window_loss / window_steps as f64,
                learning_rate: lr,
                grad_norm,
                tokens_per_s: window_tokens as f64 / window_start.elapsed().as_secs_f64().max(1e-9),
                elapsed_s: started.elapsed().as_secs_f64(),
            };
            (window_loss, window_steps, window_tokens) = (0.0, 0, 0);
            window_start = Instant::now();
            folder.log("sft", &entry)?;
            stop |= observer(Event::Step(&entry)).is_break();
            last = Some(entry);
        }
        stop |= run.stop.is_some_and(|s| s.load(Ordering::SeqCst));
        if stop && !is_last {
            let _ = observer(Event::Stopping { step });
        }
        if (config.save_every > 0 && step % config.save_every == 0) || is_last || stop {
            if let Some(dir) = folder.save_checkpoint(step, policy, &optimizer)? {
                let _ = observer(Event::Saved(&dir));
            }
        }
        steps_done = step;
        if stop {
            break;
        }
    }
    let final_dir = if steps_done == total_steps {
        let dir = folder.save_final(policy)?;
        if let Some(d) = &dir {
            let _ = observer(Event::Saved(d));
        }
        dir
    } else {
        None
    };
    Ok(SftSummary {
        steps: steps_done,
        total_steps,
        resumed_at,
        interrupted: steps_done < total_steps,
        final_dir,
        last,
        seconds: started.elapsed().as_secs_f64(),
    })
}
