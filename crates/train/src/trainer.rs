//! The training loop.
//!
//! Determinism: the order of pairs in epoch `e` is a function of `(seed, e)` only, dropout masks
//! of `(seed, micro-batch, site)`, and parameters are initialised from `(seed, name)`; so two runs
//! with one seed agree, and a run resumed from the checkpoint of step k continues with exactly
//! the batches, masks and optimizer state the uninterrupted run had.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Tensor, Var};
use serde::Serialize;

use rewardkit_data::{PreferencePair, Probe, ProbePhrases, Text};
use rewardkit_eval::{Metric, PairMetrics, PairReport, ScoredPair};
use rewardkit_model::{LoadedModel, Mode, Rng};
use rewardkit_tokenize::{pack, pack_shared_prefix, pad_batch, Encoded, PaddingSide};

use crate::checkpoint::{
    prepare_out, prune_checkpoints, read_state, save_checkpoint, save_final, SaveMeta, Start,
    TrainerState, LOG_FILE,
};
use crate::config::{Ties, TrainConfig};
use crate::fingerprint::Fingerprints;
use crate::log::MetricsLog;
use crate::loss::bradley_terry;
use crate::memory::{check_fits, Estimate, Footprint, RunShape};
use crate::optim::{AdamW, Grads};
use crate::penalty::{self, Penalty, ODIN_FILE};
use crate::window::{TrainWindow, WindowStats};
use crate::TrainError;

/// A pair encoded for the model.
struct EncodedPair {
    chosen: Encoded,
    rejected: Encoded,
    margin: f32,
    tie: bool,
    /// The probability that chosen is better the loss trains towards (1 for a hard label).
    target: f32,
    /// The pair's soft label as read (for the held-out metrics).
    p_chosen: Option<f64>,
    subset: Option<String>,
    /// A correction pair (the honesty penalty weights it).
    correction: bool,
    /// Words of the chosen and rejected responses (ODIN's length).
    words: [f32; 2],
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
    /// Training accuracy over the same window (ties not counted).
    pub accuracy: f64,
    /// Mean |σ(Δ) − p|, the per-pair weight of the Bradley-Terry gradient (σ(−Δ) for a hard
    /// label, p = 1): near 0.5 while the model is unsure, near 0 once it separates the pairs
    /// (or matches their soft labels).
    pub mean_grad_weight: f64,
    /// Pairs of this window per tenth of |σ(Δ) − p| ∈ [0, 1] (bin i holds [i/10, (i+1)/10)): how
    /// the gradient's weight spreads over pairs. Confidently right pairs (≈ 0) stop teaching;
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
    /// Each penalty's mean weighted term per step over the window ([`crate::penalty`]), by name;
    /// absent without penalties.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub penalties: std::collections::BTreeMap<&'static str, f64>,
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
        /// The run's estimated peak memory and the memory available, in bytes
        /// ([`crate::memory`]); `None` where the available memory cannot be read.
        memory: Option<(Estimate, u64)>,
    },
    Step(&'a StepLog),
    Eval(&'a EvalLog),
    Saved(&'a Path),
    /// A stop was asked for; the run saves a checkpoint at this step and returns.
    Stopping {
        step: usize,
    },
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// The last step done (and saved).
    pub steps: usize,
    pub total_steps: usize,
    /// The step the run resumed at (0 for a fresh run).
    pub resumed_at: usize,
    /// Stopped before `total_steps` (by the observer or the stop flag); the newest checkpoint
    /// holds the last step and `--resume` continues from it.
    pub interrupted: bool,
    /// Pairs trained on (ties included when trained).
    pub train_pairs: usize,
    /// Ties left out of training (`ties = skip`, the default).
    pub skipped_ties: usize,
    /// Ties trained as p = ½ (`ties = train`).
    pub trained_ties: usize,
    /// Non-tie pairs trained towards a soft label below 1.
    pub soft_labels: usize,
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

/// Encodes pairs; `soft_labels` keeps their soft labels as targets (else a non-tie is a hard
/// label, and a tie ½ either way).
fn encode_pairs(
    model: &LoadedModel,
    pairs: &[PreferencePair],
    soft_labels: bool,
) -> Result<Vec<EncodedPair>, TrainError> {
    pairs
        .iter()
        .map(|p| {
            // The same prompt tokens in both, cut alike where one response needs it.
            let [chosen, rejected]: [Encoded; 2] = model
                .encode_group(&p.prompt, &[&p.chosen, &p.rejected])
                .map_err(|source| TrainError::Encode {
                    location: p.location.clone(),
                    source: Box::new(source),
                })?
                .try_into()
                .map_err(|_| TrainError::Config("a pair encoded to other than two rows".into()))?;
            Ok(EncodedPair {
                chosen,
                rejected,
                margin: p.margin.unwrap_or(0.0) as f32,
                tie: p.tie,
                target: if soft_labels || p.tie {
                    p.target() as f32
                } else {
                    1.0
                },
                p_chosen: p.p_chosen,
                subset: p.subset.clone(),
                correction: p.is_correction(),
                words: [p.chosen.word_len() as f32, p.rejected.word_len() as f32],
            })
        })
        .collect()
}

/// Scores held-out pairs and computes every pairwise metric: `batch_size` sequences a forward
/// pass; with `shared_prompt` (and a model that can), each pair after its prompt computed once;
/// with `packing`, side by side without padding (as many tokens a pass as `batch_size` rows of
/// the longest pair would hold).
fn evaluate(
    model: &LoadedModel,
    pairs: &[EncodedPair],
    batch_size: usize,
    (shared_prompt, packing): (bool, bool),
) -> Result<PairReport, TrainError> {
    let mut inputs = Vec::with_capacity(pairs.len() * 2);
    for p in pairs {
        inputs.push(p.chosen.clone());
        inputs.push(p.rejected.clone());
    }
    let groups: Vec<Vec<usize>> = (0..pairs.len()).map(|i| vec![2 * i, 2 * i + 1]).collect();
    let shared = shared_prompt && model.model.shares_prompt();
    let scores = if packing {
        let longest = inputs.iter().map(|e| e.ids.len()).max().unwrap_or(1);
        let groups = shared.then_some(groups.as_slice());
        model.score_encoded_packed(&inputs, groups, batch_size * longest)?
    } else if shared {
        model.score_encoded_shared(&inputs, &groups, batch_size)?
    } else {
        model.score_encoded(&inputs, batch_size)?
    };
    let mut metrics = PairMetrics::default();
    for (p, s) in pairs.iter().zip(scores.chunks_exact(2)) {
        metrics.update(&ScoredPair {
            chosen: s[0],
            rejected: s[1],
            tie: p.tie,
            p_chosen: p.p_chosen,
            subset: p.subset.clone(),
        });
    }
    Ok(metrics.compute())
}

/// Hyperparameters that must match to resume (frequencies of logs and saves may change): the
/// fields that differ, as `name (checkpoint X, now Y)`.
fn config_differences(checkpoint: &TrainConfig, now: &TrainConfig) -> Vec<String> {
    let strip = |c: &TrainConfig| TrainConfig {
        log_every: 1,
        eval_every: 0,
        save_every: 0,
        save_total_limit: 1,
        eval_batch_size: 1,
        gradient_checkpointing: false,
        shared_prompt: true,
        packing: false,
        ..c.clone()
    };
    let as_value = |c: &TrainConfig| serde_json::to_value(strip(c)).unwrap_or_default();
    crate::checkpoint::json_differences(&as_value(checkpoint), &as_value(now))
}

/// What to train on and where to write.
pub struct Run<'a> {
    pub train: &'a [PreferencePair],
    /// Held-out pairs, evaluated every `eval_every` steps and at the end.
    pub eval: &'a [PreferencePair],
    /// Checkpoints (`checkpoint-N/`), the final model (`final/`) and `metrics.jsonl` go here.
    pub out: &'a Path,
    /// A new run, a run replacing an old one, or a resumed one.
    pub start: Start,
    /// Set from elsewhere (a signal handler) to stop after the current step: a checkpoint is
    /// written and the summary says `interrupted`.
    pub stop: Option<&'a AtomicBool>,
    /// Recorded in every checkpoint's `rewardkit.json` (e.g. the data files and split).
    pub meta: serde_json::Value,
}

impl<'a> Run<'a> {
    /// A fresh run into `out` (which must be empty or absent), with no stop flag or metadata.
    pub fn new(train: &'a [PreferencePair], eval: &'a [PreferencePair], out: &'a Path) -> Self {
        Run {
            train,
            eval,
            out,
            start: Start::Fresh,
            stop: None,
            meta: serde_json::json!({}),
        }
    }
}

/// The encoded pairs and the length of the run.
struct Prepared {
    /// The training pairs (ties left out unless trained), in the order of `train`.
    pairs: Vec<PreferencePair>,
    train: Vec<EncodedPair>,
    eval: Vec<EncodedPair>,
    lengths: Vec<usize>,
    skipped_ties: usize,
    /// Ties trained as p = ½, and pairs trained towards a soft label strictly below 1.
    trained_ties: usize,
    soft_labels: usize,
    /// Micro-batches per epoch.
    per_epoch: usize,
    total_steps: usize,
}

impl Prepared {
    fn new(
        model: &LoadedModel,
        config: &TrainConfig,
        train: &[PreferencePair],
        eval: &[PreferencePair],
    ) -> Result<Self, TrainError> {
        let keep = |p: &&PreferencePair| !p.tie || config.ties == Ties::Train;
        let kept: Vec<PreferencePair> = train.iter().filter(keep).cloned().collect();
        let skipped_ties = train.len() - kept.len();
        if kept.is_empty() {
            return Err(TrainError::Config(
                "no training pairs: every pair is a tie, and ties are skipped (train them as p = 1/2 with `ties = train`, --ties train)".into(),
            ));
        }
        if config.penalty("honesty").is_some() && !kept.iter().any(PreferencePair::is_correction) {
            return Err(TrainError::Config(format!(
                "the honesty penalty needs correction pairs (source {}…) in the training data: add them with --augment, or `rewardkit data augment`",
                rewardkit_data::CORRECTION_SOURCE
            )));
        }
        let train = encode_pairs(model, &kept, config.use_soft_labels)?;
        let eval = encode_pairs(model, eval, config.use_soft_labels)?;
        let trained_ties = train.iter().filter(|p| p.tie).count();
        let soft_labels = train.iter().filter(|p| !p.tie && p.target < 1.0).count();
        let lengths: Vec<usize> = train.iter().map(EncodedPair::len).collect();
        let per_epoch = train.len().div_ceil(config.batch_size);
        let total_steps = match config.max_steps {
            Some(s) => s,
            None => ((per_epoch as f64 * config.epochs) / config.grad_accum as f64).ceil() as usize,
        }
        .max(1);
        Ok(Prepared {
            pairs: kept,
            train,
            eval,
            lengths,
            skipped_ties,
            trained_ties,
            soft_labels,
            per_epoch,
            total_steps,
        })
    }
}

/// Loads a checkpoint's weights and optimizer state after checking that it belongs to this run
/// (same hyperparameters, data and starting model); returns its step.
fn resume_from(
    dir: &Path,
    model: &LoadedModel,
    optimizer: &mut AdamW,
    odin: Option<&Var>,
    config: &TrainConfig,
    fingerprints: &Fingerprints,
) -> Result<usize, TrainError> {
    let state = read_state(dir)?;
    let mut differences = config_differences(&state.config, config);
    if let Some(then) = &state.fingerprints {
        differences.extend(then.differences(fingerprints));
    }
    if !differences.is_empty() {
        return Err(TrainError::ResumeMismatch {
            dir: dir.to_path_buf(),
            differences,
        });
    }
    model.model.params().load_dir(dir)?;
    if let Some(head) = odin {
        load_odin_head(&dir.join(ODIN_FILE), head)?;
    }
    optimizer.load(&dir.join("optimizer.safetensors"))?;
    Ok(state.step)
}

/// Reads ODIN's length head from a checkpoint into `head`.
fn load_odin_head(path: &Path, head: &Var) -> Result<(), TrainError> {
    let loaded = candle_core::safetensors::load(path, head.device())
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
    let t = loaded.get(ODIN_HEAD).ok_or_else(|| {
        TrainError::Checkpoint(format!("{}: no tensor {ODIN_HEAD}", path.display()))
    })?;
    if t.dims() != head.dims() {
        return Err(TrainError::Checkpoint(format!(
            "{}: {ODIN_HEAD} has shape {:?}, the model needs {:?}",
            path.display(),
            t.dims(),
            head.dims()
        )));
    }
    head.set(t)?;
    Ok(())
}

/// The name of ODIN's length head in [`ODIN_FILE`] and in the optimizer state.
const ODIN_HEAD: &str = "length_head.weight";

/// The counterfactual penalty's edits of one micro-batch: the batch positions of the pairs whose
/// chosen response was edited, and the edited (prompt, response) encoded.
struct Edits {
    positions: Vec<u32>,
    rows: Vec<Encoded>,
}

/// A micro-batch's loss, the gaps its Bradley-Terry term saw, and each penalty's weighted term.
struct Objective {
    loss: Tensor,
    gaps: Tensor,
    terms: Vec<(&'static str, Tensor)>,
}

/// The state of a run between steps.
struct Trainer<'a> {
    model: &'a LoadedModel,
    config: &'a TrainConfig,
    data: Prepared,
    optimizer: AdamW,
    eval_model: LoadedModel,
    epoch_cache: Option<(usize, Vec<Vec<usize>>)>,
    window: TrainWindow,
    log: MetricsLog,
    started: Instant,
    fingerprints: Fingerprints,
    /// ODIN's length head, when the config has that penalty.
    odin: Option<Var>,
    /// The counterfactual penalty's phrases (the training lexicons), when the config has it.
    phrases: Option<ProbePhrases>,
    /// Pairs and seconds of training over the whole run (for the summary).
    pairs_done: usize,
    train_seconds: f64,
    final_eval: Option<PairReport>,
}

impl Trainer<'_> {
    /// The pair indices of the `global`-th micro-batch of the run.
    fn batch(&mut self, global: usize) -> Vec<usize> {
        let (epoch, index) = (global / self.data.per_epoch, global % self.data.per_epoch);
        if self.epoch_cache.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let batches = epoch_batches(
                &self.data.lengths,
                self.config.batch_size,
                self.config.seed,
                epoch,
            );
            self.epoch_cache = Some((epoch, batches));
        }
        self.epoch_cache
            .as_ref()
            .map(|(_, b)| b[index].clone())
            .unwrap_or_default()
    }

    /// The counterfactual penalty's edits for the `global`-th micro-batch (pairs `idx`): one
    /// edit per pair drawn from `(seed, global)`, pairs it cannot apply to left out.
    fn edits(&self, global: usize, idx: &[usize]) -> Result<Edits, TrainError> {
        let mut edits = Edits {
            positions: Vec::new(),
            rows: Vec::new(),
        };
        let (Some(phrases), Some(Penalty::Counterfactual { edits: kinds, .. })) =
            (&self.phrases, self.config.penalty("counterfactual"))
        else {
            return Ok(edits);
        };
        let step = global.to_string();
        let seed = Rng::derive(self.config.seed, &["counterfactual", "phrases", &step]).next_u64();
        let mut pick = Rng::derive(self.config.seed, &["counterfactual", "edit", &step]);
        for (k, &i) in idx.iter().enumerate() {
            let pair = &self.data.pairs[i];
            let probe: Probe = kinds[pick.below(kinds.len())];
            let Text::Plain(response) = &pair.chosen else {
                continue;
            };
            let Some(edited) = phrases.apply(probe, response, seed, k) else {
                continue;
            };
            edits.positions.push(k as u32);
            edits
                .rows
                .push(self.model.encode(&pair.prompt, &Text::Plain(edited))?);
        }
        Ok(edits)
    }

    /// The loss of a micro-batch of `n` pairs from the rewards of its rows (chosen, rejected,
    /// then the edited chosen responses) and their pooled states: Bradley-Terry (on the sum of
    /// both heads with ODIN) plus each penalty.
    fn objective(
        &self,
        idx: &[usize],
        rewards: &Tensor,
        pooled: &Tensor,
        edits: &Edits,
    ) -> Result<Objective, TrainError> {
        let (config, pairs) = (self.config, &self.data.train);
        let n = idx.len();
        // The value head's rewards, which the penalties read (they are what the model scores
        // with); with ODIN the Bradley-Terry term reads the sum of both heads instead.
        let (chosen, rejected) = (rewards.narrow(0, 0, n)?, rewards.narrow(0, n, n)?);
        let (mut bt_chosen, mut bt_rejected) = (chosen.clone(), rejected.clone());
        let mut terms = Vec::new();
        for p in &config.penalties {
            // Each term already weighted.
            let term = match p {
                Penalty::Honesty { weight } => {
                    let rows: Vec<u32> = (0..n as u32)
                        .filter(|&k| pairs[idx[k as usize]].correction)
                        .collect();
                    match penalty::honesty(&chosen, &rejected, &rows)? {
                        Some(t) => Some((t * *weight)?),
                        None => None,
                    }
                }
                Penalty::Counterfactual { weight, .. } if !edits.positions.is_empty() => {
                    let at = Tensor::new(edits.positions.as_slice(), rewards.device())?;
                    let original = chosen.index_select(&at, 0)?;
                    let edited = rewards.narrow(0, 2 * n, edits.positions.len())?;
                    Some((penalty::invariance(&original, &edited)? * *weight)?)
                }
                Penalty::Counterfactual { .. } => None,
                Penalty::Odin {
                    weight,
                    length_weight,
                    orthogonality,
                } => {
                    let head = self.odin.as_ref().ok_or_else(|| {
                        TrainError::Config("ODIN's length head was not made".into())
                    })?;
                    let pair_rows = pooled.narrow(0, 0, 2 * n)?;
                    let length = pair_rows.matmul(&head.as_tensor().t()?)?.squeeze(1)?;
                    let lengths: Vec<f32> = (0..2)
                        .flat_map(|side| idx.iter().map(move |&i| pairs[i].words[side]))
                        .collect();
                    let odin = penalty::Odin {
                        quality: &rewards.narrow(0, 0, 2 * n)?,
                        length: &length,
                        lengths: &lengths,
                        quality_weight: self.model.model.head_weight(),
                        length_weight: head.as_tensor(),
                    };
                    let term = odin.penalty(*weight, *length_weight, *orthogonality)?;
                    bt_chosen = (bt_chosen + length.narrow(0, 0, n)?)?;
                    bt_rejected = (bt_rejected + length.narrow(0, n, n)?)?;
                    Some(term)
                }
            };
            if let Some(t) = term {
                terms.push((p.name(), t));
            }
        }
        let margins = if config.use_margin && idx.iter().any(|&i| pairs[i].margin != 0.0) {
            let m: Vec<f32> = idx.iter().map(|&i| pairs[i].margin).collect();
            Some(Tensor::from_vec(m, n, rewards.device())?)
        } else {
            None
        };
        // Hard labels only: no targets, so such a run computes exactly what it did before soft
        // labels existed.
        let targets = if idx.iter().any(|&i| pairs[i].target != 1.0) {
            let p: Vec<f32> = idx.iter().map(|&i| pairs[i].target).collect();
            Some(Tensor::from_vec(p, n, rewards.device())?)
        } else {
            None
        };
        let mut loss = bradley_terry(
            &bt_chosen,
            &bt_rejected,
            margins.as_ref(),
            targets.as_ref(),
            config.center_rewards_coefficient,
        )?;
        for (_, t) in &terms {
            loss = (loss + t)?;
        }
        Ok(Objective {
            loss,
            gaps: (bt_chosen - bt_rejected)?,
            terms,
        })
    }

    /// Forward and backward pass of one micro-batch; its gradients are added to `grads`.
    fn micro_batch(&mut self, global: usize, grads: &mut Grads) -> Result<(), TrainError> {
        let (config, model) = (self.config, self.model);
        let idx = self.batch(global);
        let edits = self.edits(global, &idx)?;
        let pairs = &self.data.train;
        let rows: Vec<&Encoded> = idx
            .iter()
            .map(|&i| &pairs[i].chosen)
            .chain(idx.iter().map(|&i| &pairs[i].rejected))
            .chain(edits.rows.iter())
            .collect();
        let pad = model.tokenizer.pad_id();
        let shared = config.shared_prompt && model.model.shares_prompt();
        // Each pair (chosen, rejected) a group after its prompt, then each edited row alone.
        let n = idx.len();
        let pair_groups = || -> Vec<Vec<usize>> {
            (0..n)
                .map(|i| vec![i, n + i])
                .chain((2 * n..rows.len()).map(|i| vec![i]))
                .collect()
        };
        let batch = match (config.packing, shared) {
            // All in one row, without padding.
            (true, true) => pack(&rows, &[pair_groups()], true, pad),
            (true, false) => pack(
                &rows,
                &[(0..rows.len()).map(|i| vec![i]).collect()],
                false,
                pad,
            ),
            // A row per pair.
            (false, true) => pack_shared_prefix(&rows, &pair_groups(), pad),
            (false, false) => pad_batch(&rows, pad, PaddingSide::Right),
        };
        let mode = if config.dropout {
            Mode::Train {
                seed: config.seed,
                step: global as u64,
            }
        } else {
            Mode::Eval
        };
        let t0 = Instant::now();
        let (pooled, tape) = if config.gradient_checkpointing {
            let (pooled, tape) = model.model.forward_pooled_recompute(&batch, mode)?;
            (pooled, Some(tape))
        } else {
            (model.model.forward_pooled(&batch, mode)?, None)
        };
        let rewards = model.model.head(&pooled)?;
        let Objective { loss, gaps, terms } = self.objective(&idx, &rewards, &pooled, &edits)?;
        let scaled = (&loss / config.grad_accum as f64)?;
        let t1 = Instant::now();
        let store = scaled.backward()?;
        let vars = || self.optimizer.vars().map(|(_, v)| v);
        grads.accumulate(&store, vars())?;
        if let Some(tape) = tape {
            tape.backward(&store, |block| grads.accumulate(block, vars()))?;
        }
        self.window
            .add_times((t1 - t0).as_secs_f64(), t1.elapsed().as_secs_f64());
        // The gap is taken in f32, as the loss saw it, then widened.
        for (g, &i) in gaps.to_vec1::<f32>()?.into_iter().zip(&idx) {
            self.window
                .update_target(f64::from(g), f64::from(pairs[i].target));
        }
        for (name, t) in terms {
            let share = t.to_scalar::<f32>()? as f64 / config.grad_accum as f64;
            self.window.add_penalty(name, share);
        }
        let tokens = batch.attention_mask.iter().map(|&m| m as usize).sum();
        self.window.add_batch(
            loss.to_scalar::<f32>()? as f64 / config.grad_accum as f64,
            tokens,
            batch.attention_mask.len(),
        );
        Ok(())
    }

    /// One optimizer step: the micro-batches, clipping, the update. Returns (grad norm, lr).
    fn step(&mut self, step: usize) -> Result<(f64, f64), TrainError> {
        let mut grads = Grads::default();
        for micro in 0..self.config.grad_accum {
            self.micro_batch((step - 1) * self.config.grad_accum + micro, &mut grads)?;
        }
        let t = Instant::now();
        let grad_norm = grads.clip(self.config.max_grad_norm)?;
        let lr = self.config.lr_at(step, self.data.total_steps);
        self.optimizer.step(&grads, lr)?;
        self.window.end_step(t.elapsed().as_secs_f64());
        Ok((grad_norm, lr))
    }

    /// The log line of the window that ends at `step`; the window is cleared.
    fn log_step(&mut self, step: usize, grad_norm: f64, lr: f64) -> Result<StepLog, TrainError> {
        let w: WindowStats = self.window.compute();
        self.window.clear();
        let entry = StepLog {
            step,
            total_steps: self.data.total_steps,
            epoch: (step * self.config.grad_accum) as f64 / self.data.per_epoch as f64,
            loss: w.loss,
            accuracy: w.accuracy,
            mean_grad_weight: w.mean_grad_weight,
            grad_weight_hist: w.grad_weight_hist,
            learning_rate: lr,
            grad_norm,
            pairs_per_s: w.pairs as f64 / w.seconds,
            tokens_per_s: w.tokens as f64 / w.seconds,
            padded_tokens_per_s: w.padded_tokens as f64 / w.seconds,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            forward_s: w.forward_s,
            backward_s: w.backward_s,
            optimizer_s: w.optimizer_s,
            penalties: w.penalties,
        };
        self.pairs_done += w.pairs;
        self.train_seconds += w.seconds;
        self.log.write("train", &entry)?;
        Ok(entry)
    }

    fn evaluate(&mut self, step: usize) -> Result<EvalLog, TrainError> {
        let t = Instant::now();
        let report = evaluate(
            &self.eval_model,
            &self.data.eval,
            self.config.eval_batch_size,
            (self.config.shared_prompt, self.config.packing),
        )?;
        let entry = EvalLog {
            step,
            report,
            seconds: t.elapsed().as_secs_f64(),
        };
        self.log.write("eval", &entry)?;
        if step == self.data.total_steps {
            self.final_eval = Some(entry.report.clone());
        }
        self.window.restart_clock();
        Ok(entry)
    }

    fn state(&self, step: usize) -> TrainerState {
        TrainerState {
            step,
            total_steps: self.data.total_steps,
            config: self.config.clone(),
            fingerprints: Some(self.fingerprints.clone()),
        }
    }

    fn save(
        &mut self,
        step: usize,
        out: &Path,
        extra: &serde_json::Value,
    ) -> Result<PathBuf, TrainError> {
        let state = self.state(step);
        let state_tensors = self.odin.as_ref().map(|head| {
            let tensors = [(ODIN_HEAD.to_string(), head.as_tensor().clone())];
            (ODIN_FILE, tensors.into_iter().collect())
        });
        let meta = SaveMeta {
            state: &state,
            extra,
            eval: self.final_eval.as_ref(),
            state_tensors,
        };
        let dir = save_checkpoint(self.model, &self.optimizer, &meta, out)?;
        prune_checkpoints(out, self.config.save_total_limit)?;
        self.window.restart_clock();
        Ok(dir)
    }
}

/// Refuses, before any step, a run whose estimated peak memory exceeds what is available
/// ([`crate::memory`]); skipped (`None`) where the available memory cannot be read. Returns
/// the estimate and the available memory.
fn check_memory(
    model: &LoadedModel,
    config: &TrainConfig,
    data: &Prepared,
) -> Result<Option<(Estimate, u64)>, TrainError> {
    let Some(available) = crate::memory::mem_available() else {
        return Ok(None);
    };
    let footprint = Footprint::of(model.model.config(), model.model.params().num_params());
    // The counterfactual penalty adds up to one edited row per pair: 3n rows, as 1.5n pairs.
    let batch_size = match config.penalty("counterfactual") {
        Some(_) => config.batch_size + config.batch_size.div_ceil(2),
        None => config.batch_size,
    };
    let shape = RunShape {
        batch_size,
        len: data.lengths.iter().copied().max().unwrap_or(0),
        checkpointing: config.gradient_checkpointing,
    };
    let estimate = check_fits(&footprint, shape, available).map_err(TrainError::WontFit)?;
    Ok(Some((estimate, available)))
}

/// Trains `model` as `config` says on `run.train`. `observer` sees every log line, evaluation
/// and save, and can stop the run after any step by returning `Break` (as can `run.stop`): a
/// checkpoint is written first, so the run can be resumed.
pub fn train(
    model: &LoadedModel,
    config: &TrainConfig,
    run: &Run,
    mut observer: impl FnMut(Event) -> ControlFlow<()>,
) -> Result<TrainSummary, TrainError> {
    config.validate().map_err(TrainError::Config)?;
    let started = Instant::now();
    let fingerprints = Fingerprints::of(model, run.train, run.eval)?;
    let resume = prepare_out(run.out, run.start)?;
    let data = Prepared::new(model, config, run.train, run.eval)?;
    let memory = check_memory(model, config, &data)?;
    let odin = match config.penalty("odin") {
        Some(_) => Some(penalty::new_length_head(
            model.model.config().hidden_size(),
            config.seed,
            model.model.device(),
        )?),
        None => None,
    };
    let mut vars = model.model.params().vars();
    vars.extend(odin.iter().map(|h| (ODIN_HEAD.to_string(), h.clone())));
    let mut optimizer = AdamW::new(
        vars,
        config.adam_beta1,
        config.adam_beta2,
        config.adam_eps,
        config.weight_decay,
    )?;
    let start_step = match &resume {
        Some((_, dir)) => resume_from(
            dir,
            model,
            &mut optimizer,
            odin.as_ref(),
            config,
            &fingerprints,
        )?,
        None => 0,
    };
    let log = MetricsLog::open(&run.out.join(LOG_FILE), start_step)?;
    let _ = observer(Event::Start {
        total_steps: data.total_steps,
        train_pairs: data.train.len(),
        eval_pairs: data.eval.len(),
        resumed_at: start_step,
        memory,
    });
    let mut t = Trainer {
        model,
        config,
        eval_model: model.frozen_copy()?,
        data,
        optimizer,
        epoch_cache: None,
        window: TrainWindow::default(),
        log,
        started,
        fingerprints,
        odin,
        phrases: config
            .penalty("counterfactual")
            .map(|_| ProbePhrases::augment()),
        pairs_done: 0,
        train_seconds: 0.0,
        final_eval: None,
    };
    let total_steps = t.data.total_steps;
    let mut steps_done = start_step;
    for step in start_step + 1..=total_steps {
        let (grad_norm, lr) = t.step(step)?;
        let last = step == total_steps;
        let mut stop = false;
        if step % config.log_every == 0 || last {
            let entry = t.log_step(step, grad_norm, lr)?;
            stop |= observer(Event::Step(&entry)).is_break();
        }
        if !t.data.eval.is_empty()
            && ((config.eval_every > 0 && step % config.eval_every == 0) || last)
        {
            let entry = t.evaluate(step)?;
            stop |= observer(Event::Eval(&entry)).is_break();
        }
        stop |= run.stop.is_some_and(|s| s.load(Ordering::SeqCst));
        if stop && !last {
            let _ = observer(Event::Stopping { step });
        }
        if (config.save_every > 0 && step % config.save_every == 0) || last || stop {
            let dir = t.save(step, run.out, &run.meta)?;
            let _ = observer(Event::Saved(&dir));
            steps_done = step;
        }
        if stop {
            break;
        }
    }
    let final_dir = run.out.join(crate::checkpoint::FINAL_DIR);
    if steps_done == total_steps {
        let state = t.state(total_steps);
        let meta = SaveMeta {
            state: &state,
            extra: &run.meta,
            eval: t.final_eval.as_ref(),
            state_tensors: None,
        };
        save_final(model, &meta, run.out)?;
        let _ = observer(Event::Saved(&final_dir));
    }
    Ok(TrainSummary {
        steps: steps_done,
        total_steps,
        resumed_at: start_step,
        interrupted: steps_done < total_steps,
        train_pairs: t.data.train.len(),
        skipped_ties: t.data.skipped_ties,
        trained_ties: t.data.trained_ties,
        soft_labels: t.data.soft_labels,
        final_eval: t.final_eval,
        final_dir,
        seconds: started.elapsed().as_secs_f64(),
        pairs_per_s: t.pairs_done as f64 / t.train_seconds.max(1e-9),
    })
}
