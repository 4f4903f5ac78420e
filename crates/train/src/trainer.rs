//! The training loop.
//!
//! Determinism: the order of pairs in epoch `e` is a function of `(seed, e)` only, dropout masks
//! of `(seed, micro-batch, site)`, and parameters are initialised from `(seed, name)`; so two runs
//! with one seed agree, and a run resumed from the checkpoint of step k continues with exactly
//! the batches, masks and optimizer state the uninterrupted run had.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use rewardkit_data::PreferencePair;
use rewardkit_eval::{Metric, PairMetrics, PairReport, ScoredPair};
use rewardkit_model::{LoadedModel, Mode, Rng};
use rewardkit_tokenize::{pad_batch, Encoded, PaddingSide};

use crate::config::TrainConfig;
use crate::loss::bradley_terry;
use crate::optim::{AdamW, Grads};
use crate::TrainError;

/// A pair encoded for the model.
struct EncodedPair {
    chosen: Encoded,
    rejected: Encoded,
    margin: f32,
    tie: bool,
    subset: Option<String>,
}

impl EncodedPair {
    fn len(&self) -> usize {
        self.chosen.ids.len().max(self.rejected.ids.len())
    }
}

/// One line of the training log (`metrics.jsonl`, `"kind": "train"`).
#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    pub step: usize,
    pub total_steps: usize,
    pub epoch: f64,
    /// Mean loss over the steps since the last log line.
    pub loss: f64,
    /// Training accuracy over the same window.
    pub accuracy: f64,
    /// Mean σ(−Δ), the per-pair weight of the Bradley-Terry gradient: near 0.5 while the model
    /// is unsure, near 0 once it separates the pairs.
    pub mean_grad_weight: f64,
    /// Pairs of this window per tenth of σ(−Δ) ∈ [0, 1] (bin i holds [i/10, (i+1)/10)): how the
    /// gradient's weight spreads over pairs. Confidently right pairs (σ(−Δ) ≈ 0) stop teaching;
    /// confidently wrong ones (≈ 1) dominate.
    pub grad_weight_hist: [usize; 10],
    pub learning_rate: f64,
    pub grad_norm: f64,
    pub pairs_per_s: f64,
    /// Real (non-padding) tokens per second.
    pub tokens_per_s: f64,
    /// Positions the forward pass computed per second, padding included (rows × padded length):
    /// with `tokens_per_s`, how much of the work went to padding.
    pub padded_tokens_per_s: f64,
    pub elapsed_s: f64,
    /// Seconds spent in the window on forward passes, backward passes and optimizer updates.
    pub forward_s: f64,
    pub backward_s: f64,
    pub optimizer_s: f64,
}

/// An evaluation on held-out pairs (`"kind": "eval"`).
#[derive(Debug, Clone, Serialize)]
pub struct EvalLog {
    pub step: usize,
    pub report: PairReport,
    pub seconds: f64,
}

/// What the loop tells its caller (progress bars, logs).
pub enum Event<'a> {
    Start {
        total_steps: usize,
        train_pairs: usize,
        eval_pairs: usize,
        resumed_at: usize,
    },
    Step(&'a StepLog),
    Eval(&'a EvalLog),
    Saved(&'a Path),
}

/// `trainer_state.json` of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub step: usize,
    pub total_steps: usize,
    pub config: TrainConfig,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub train_pairs: usize,
    pub skipped_ties: usize,
    pub final_eval: Option<PairReport>,
    pub final_dir: PathBuf,
    pub seconds: f64,
    pub pairs_per_s: f64,
}

/// The batches of epoch `epoch`: pairs shuffled by `(seed, epoch)`, then sorted by length within
/// windows of 50 batches (little padding), cut into batches, and the batch order shuffled.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..lengths.len()).collect();
    Rng::derive(seed, &["epoch", &epoch.to_string()]).shuffle(&mut idx);
    let mut batches = Vec::new();
    for window in idx.chunks(batch_size * 50) {
        let mut w = window.to_vec();
        w.sort_by_key(|&i| (std::cmp::Reverse(lengths[i]), i));
        batches.extend(w.chunks(batch_size).map(<[usize]>::to_vec));
    }
    Rng::derive(seed, &["batches", &epoch.to_string()]).shuffle(&mut batches);
    batches
}

fn encode_pairs(
    model: &LoadedModel,
    pairs: &[PreferencePair],
) -> Result<Vec<EncodedPair>, TrainError> {
    pairs
        .iter()
        .map(|p| {
            Ok(EncodedPair {
                chosen: model.encode(&p.prompt, &p.chosen)?,
                rejected: model.encode(&p.prompt, &p.rejected)?,
                margin: p.margin.unwrap_or(0.0) as f32,
                tie: p.tie,
                subset: p.subset.clone(),
            })
        })
        .collect()
}

/// Scores held-out pairs and computes every pairwise metric.
fn evaluate(
    model: &LoadedModel,
    pairs: &[EncodedPair],
    batch_size: usize,
) -> Result<PairReport, TrainError> {
    let mut inputs = Vec::with_capacity(pairs.len() * 2);
    for p in pairs {
        inputs.push(p.chosen.clone());
        inputs.push(p.rejected.clone());
    }
    let scores = model.score_encoded(&inputs, batch_size)?;
    let mut metrics = PairMetrics::default();
    for (p, s) in pairs.iter().zip(scores.chunks_exact(2)) {
        metrics.update(&ScoredPair {
            chosen: s[0],
            rejected: s[1],
            tie: p.tie,
            subset: p.subset.clone(),
        });
    }
    Ok(metrics.compute())
}

/// The newest complete checkpoint in `out`.
pub fn latest_checkpoint(out: &Path) -> Option<(usize, PathBuf)> {
    let entries = std::fs::read_dir(out).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step: usize = name.strip_prefix("checkpoint-")?.parse().ok()?;
            let dir = e.path();
            dir.join("trainer_state.json")
                .exists()
                .then_some((step, dir))
        })
        .max_by_key(|(s, _)| *s)
}

/// Hyperparameters that must match to resume (frequencies of logs and saves may change).
fn same_run(a: &TrainConfig, b: &TrainConfig) -> Result<(), String> {
    let strip = |c: &TrainConfig| TrainConfig {
        log_every: 1,
        eval_every: 0,
        save_every: 0,
        save_total_limit: 1,
        eval_batch_size: 1,
        ..c.clone()
    };
    if strip(a) != strip(b) {
        let (ja, jb) = (
            serde_json::to_value(strip(a)).unwrap_or_default(),
            serde_json::to_value(strip(b)).unwrap_or_default(),
        );
        let diff: Vec<String> = ja
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| jb.get(k.as_str()) != Some(v))
            .map(|(k, v)| {
                format!(
                    "{k} (checkpoint {}, now {v})",
                    jb.get(k.as_str()).cloned().unwrap_or_default()
                )
            })
            .collect();
        return Err(diff.join(", "));
    }
    Ok(())
}

/// What to train on and where to write.
pub struct Run<'a> {
    pub train: &'a [PreferencePair],
    /// Held-out pairs, evaluated every `eval_every` steps and at the end.
    pub eval: &'a [PreferencePair],
    /// Checkpoints (`checkpoint-N/`), the final model (`final/`) and `metrics.jsonl` go here.
    pub out: &'a Path,
    /// Continue from the newest checkpoint in `out`, if any.
    pub resume: bool,
    /// Recorded in every checkpoint's `rewardkit.json` (e.g. the data files and split).
    pub meta: serde_json::Value,
}

/// Trains `model` as `config` says on `run.train`. `observer` sees every log line, evaluation
/// and save, and can stop the run after any step by returning `Break` (a checkpoint is written
/// first, so the run can be resumed).
pub fn train(
    model: &LoadedModel,
    config: &TrainConfig,
    run: &Run,
    mut observer: impl FnMut(Event) -> ControlFlow<()>,
) -> Result<TrainSummary, TrainError> {
    let (train, eval, out, resume, extra_meta) =
        (run.train, run.eval, run.out, run.resume, &run.meta);
    config.validate().map_err(TrainError::Config)?;
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let started = Instant::now();
    let skipped_ties = train.iter().filter(|p| p.tie).count();
    let train_pairs: Vec<PreferencePair> = train.iter().filter(|p| !p.tie).cloned().collect();
    if train_pairs.is_empty() {
        return Err(TrainError::Config(
            "no training pairs (ties are not used for training)".into(),
        ));
    }
    let train_enc = encode_pairs(model, &train_pairs)?;
    let eval_enc = encode_pairs(model, eval)?;
    let lengths: Vec<usize> = train_enc.iter().map(EncodedPair::len).collect();
    let per_epoch = train_enc.len().div_ceil(config.batch_size);
    let total_steps = match config.max_steps {
        Some(s) => s,
        None => ((per_epoch as f64 * config.epochs) / config.grad_accum as f64).ceil() as usize,
    }
    .max(1);

    let mut optimizer = AdamW::new(
        model.model.params().vars(),
        config.adam_beta1,
        config.adam_beta2,
        config.adam_eps,
        config.weight_decay,
    )?;
    let mut start_step = 0;
    if resume {
        if let Some((step, dir)) = latest_checkpoint(out) {
            let state: TrainerState = read_json(&dir.join("trainer_state.json"))?;
            same_run(&state.config, config).map_err(|d| {
                TrainError::Config(format!(
                    "cannot resume from {}: the configuration differs: {d}",
                    dir.display()
                ))
            })?;
            model
                .model
                .params()
                .load_values(&dir.join("model.safetensors"))?;
            optimizer.load(&dir.join("optimizer.safetensors"))?;
            start_step = step;
        }
    }
    let log_path = out.join("metrics.jsonl");
    truncate_log(&log_path, start_step)?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| TrainError::io(&log_path, e))?;
    let _ = observer(Event::Start {
        total_steps,
        train_pairs: train_enc.len(),
        eval_pairs: eval_enc.len(),
        resumed_at: start_step,
    });

    let pad = model.tokenizer.pad_id();
    let eval_model = model.frozen_copy()?;
    let mut epoch_cache: Option<(usize, Vec<Vec<usize>>)> = None;
    let (mut win_loss, mut win_right, mut win_pairs, mut win_tokens, mut win_weight, mut win_steps) =
        (0.0, 0usize, 0usize, 0usize, 0.0, 0usize);
    let mut win_hist = [0usize; 10];
    let mut win_padded = 0usize;
    let mut win_start = Instant::now();
    let (mut t_fwd, mut t_bwd, mut t_opt) = (0.0f64, 0.0f64, 0.0f64);
    let (mut total_pairs_done, mut train_seconds) = (0usize, 0.0f64);
    let mut final_eval = None;
    let mut last_saved = None;
    for step in start_step + 1..=total_steps {
        let mut grads = Grads::default();
        for micro in 0..config.grad_accum {
            let global = (step - 1) * config.grad_accum + micro;
            let (epoch, index) = (global / per_epoch, global % per_epoch);
            if epoch_cache.as_ref().map(|(e, _)| *e) != Some(epoch) {
                epoch_cache = Some((
                    epoch,
                    epoch_batches(&lengths, config.batch_size, config.seed, epoch),
                ));
            }
            let batch_idx = &epoch_cache.as_ref().expect("set above").1[index];
            let rows: Vec<&Encoded> = batch_idx
                .iter()
                .map(|&i| &train_enc[i].chosen)
                .chain(batch_idx.iter().map(|&i| &train_enc[i].rejected))
                .collect();
            let batch = pad_batch(&rows, pad, PaddingSide::Right);
            let mode = if config.dropout {
                Mode::Train {
                    seed: config.seed,
                    step: global as u64,
                }
            } else {
                Mode::Eval
            };
            let t0 = Instant::now();
            let rewards = model.model.forward(&batch, mode)?;
            let n = batch_idx.len();
            let chosen = rewards.narrow(0, 0, n)?;
            let rejected = rewards.narrow(0, n, n)?;
            let margins =
                if config.use_margin && batch_idx.iter().any(|&i| train_enc[i].margin != 0.0) {
                    let m: Vec<f32> = batch_idx.iter().map(|&i| train_enc[i].margin).collect();
                    Some(Tensor::from_vec(m, n, rewards.device())?)
                } else {
                    None
                };
            let loss = bradley_terry(
                &chosen,
                &rejected,
                margins.as_ref(),
                config.center_rewards_coefficient,
            )?;
            let scaled = (&loss / config.grad_accum as f64)?;
            let t1 = Instant::now();
            let store = scaled.backward()?;
            grads.accumulate(&store, optimizer.vars().map(|(_, v)| v))?;
            t_fwd += (t1 - t0).as_secs_f64();
            t_bwd += t1.elapsed().as_secs_f64();
            let gaps: Vec<f32> = (&chosen - &rejected)?.to_vec1()?;
            win_loss += loss.to_scalar::<f32>()? as f64 / config.grad_accum as f64;
            win_right += gaps.iter().filter(|&&g| g > 0.0).count();
            for &g in &gaps {
                let w = 1.0 / (1.0 + (g as f64).exp()); // σ(−Δ)
                win_weight += w;
                win_hist[((w * 10.0) as usize).min(9)] += 1;
            }
            win_pairs += n;
            win_tokens += batch
                .attention_mask
                .iter()
                .map(|&m| m as usize)
                .sum::<usize>();
            win_padded += batch.attention_mask.len();
        }
        let t2 = Instant::now();
        let grad_norm = grads.clip(config.max_grad_norm)?;
        let lr = config.lr_at(step, total_steps);
        optimizer.step(&grads, lr)?;
        t_opt += t2.elapsed().as_secs_f64();
        win_steps += 1;

        let mut stop = false;
        if step % config.log_every == 0 || step == total_steps {
            let secs = win_start.elapsed().as_secs_f64().max(1e-9);
            let entry = StepLog {
                step,
                total_steps,
                epoch: (step * config.grad_accum) as f64 / per_epoch as f64,
                loss: win_loss / win_steps as f64,
                accuracy: win_right as f64 / win_pairs.max(1) as f64,
                mean_grad_weight: win_weight / win_pairs.max(1) as f64,
                grad_weight_hist: std::mem::take(&mut win_hist),
                learning_rate: lr,
                grad_norm,
                pairs_per_s: win_pairs as f64 / secs,
                tokens_per_s: win_tokens as f64 / secs,
                padded_tokens_per_s: win_padded as f64 / secs,
                elapsed_s: started.elapsed().as_secs_f64(),
                forward_s: t_fwd,
                backward_s: t_bwd,
                optimizer_s: t_opt,
            };
            (t_fwd, t_bwd, t_opt) = (0.0, 0.0, 0.0);
            total_pairs_done += win_pairs;
            train_seconds += secs;
            write_log(&mut log, "train", &entry, &log_path)?;
            stop |= observer(Event::Step(&entry)).is_break();
            (
                win_loss, win_right, win_pairs, win_tokens, win_weight, win_steps,
            ) = (0.0, 0, 0, 0, 0.0, 0);
            win_padded = 0;
            win_start = Instant::now();
        }
        let last = step == total_steps;
        if !eval_enc.is_empty()
            && ((config.eval_every > 0 && step % config.eval_every == 0) || last)
        {
            let t = Instant::now();
            let report = evaluate(&eval_model, &eval_enc, config.eval_batch_size)?;
            let entry = EvalLog {
                step,
                report,
                seconds: t.elapsed().as_secs_f64(),
            };
            write_log(&mut log, "eval", &entry, &log_path)?;
            stop |= observer(Event::Eval(&entry)).is_break();
            if last {
                final_eval = Some(entry.report.clone());
            }
            win_start = Instant::now();
        }
        if (config.save_every > 0 && step % config.save_every == 0) || last || stop {
            let state = TrainerState {
                step,
                total_steps,
                config: config.clone(),
            };
            let dir = save_checkpoint(
                model,
                &optimizer,
                &state,
                out,
                extra_meta,
                final_eval.as_ref(),
            )?;
            prune_checkpoints(out, config.save_total_limit)?;
            let _ = observer(Event::Saved(&dir));
            last_saved = Some(dir);
            win_start = Instant::now();
        }
        if stop {
            break;
        }
    }
    let steps_done = last_saved
        .as_ref()
        .and_then(|d| d.file_name())
        .and_then(|n| {
            n.to_string_lossy()
                .strip_prefix("checkpoint-")
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(start_step);
    let final_dir = out.join("final");
    if steps_done == total_steps {
        let state = TrainerState {
            step: total_steps,
            total_steps,
            config: config.clone(),
        };
        write_model_dir(
            model,
            &optimizer,
            &state,
            &final_dir,
            extra_meta,
            final_eval.as_ref(),
            false,
        )?;
        let _ = observer(Event::Saved(&final_dir));
    }
    Ok(TrainSummary {
        steps: steps_done,
        train_pairs: train_enc.len(),
        skipped_ties,
        final_eval,
        final_dir,
        seconds: started.elapsed().as_secs_f64(),
        pairs_per_s: total_pairs_done as f64 / train_seconds.max(1e-9),
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
}

fn write_log<T: Serialize>(
    log: &mut std::fs::File,
    kind: &str,
    entry: &T,
    path: &Path,
) -> Result<(), TrainError> {
    let mut v = serde_json::to_value(entry).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("kind".into(), kind.into());
    }
    writeln!(log, "{v}").map_err(|e| TrainError::io(path, e))?;
    log.flush().map_err(|e| TrainError::io(path, e))
}

/// Keeps the log lines of steps up to `step` (a resumed run rewrites what came after).
fn truncate_log(path: &Path, step: usize) -> Result<(), TrainError> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s as usize <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).map_err(|e| TrainError::io(path, e))
}

fn save_checkpoint(
    model: &LoadedModel,
    optimizer: &AdamW,
    state: &TrainerState,
    out: &Path,
    extra: &serde_json::Value,
    eval: Option<&PairReport>,
) -> Result<PathBuf, TrainError> {
    let dir = out.join(format!("checkpoint-{}", state.step));
    write_model_dir(model, optimizer, state, &dir, extra, eval, true)?;
    Ok(dir)
}

/// Writes a model folder atomically: into a temporary folder beside `dir`, then renamed.
fn write_model_dir(
    model: &LoadedModel,
    optimizer: &AdamW,
    state: &TrainerState,
    dir: &Path,
    extra: &serde_json::Value,
    eval: Option<&PairReport>,
    with_optimizer: bool,
) -> Result<(), TrainError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    let mut meta = serde_json::json!({
        "train": state.config,
        "step": state.step,
        "total_steps": state.total_steps,
        "eval": eval,
    });
    if let (Some(o), Some(e)) = (meta.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    rewardkit_model::save(model, &tmp, meta)?;
    if with_optimizer {
        optimizer.save(&tmp.join("optimizer.safetensors"))?;
        // Written last: its presence marks a complete checkpoint.
        let state_path = tmp.join("trainer_state.json");
        let text =
            serde_json::to_vec_pretty(state).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        std::fs::write(&state_path, text).map_err(|e| TrainError::io(&state_path, e))?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| TrainError::io(dir, e))
}

/// Removes all but the newest `keep` checkpoints.
fn prune_checkpoints(out: &Path, keep: usize) -> Result<(), TrainError> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(out)
        .map_err(|e| TrainError::io(out, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let step = e
                .file_name()
                .to_string_lossy()
                .strip_prefix("checkpoint-")?
                .parse()
                .ok()?;
            Some((step, e.path()))
        })
        .collect();
    found.sort();
    let excess = found.len().saturating_sub(keep.max(1));
    for (_, dir) in found.into_iter().take(excess) {
        std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    }
    Ok(())
}
