//! `rewardkit train`: fit a reward model to preference pairs.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use rewardkit_data::{Format, SplitConfig, SplitKey};
use rewardkit_model::{InitMissing, LoadOptions, Pooling};
use rewardkit_train::{Event, Run, Schedule, TrainConfig};

use super::data::{ReadArgs, SplitBy};
use super::{print_json, print_text};

/// Everything a training run needs; a config file (`--config run.toml` or `.json`) holds the
/// same fields, and flags given on the command line override it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    pub model: Option<PathBuf>,
    pub from_scratch: bool,
    pub pooling: Option<Pooling>,
    pub data: Vec<PathBuf>,
    pub eval_data: Vec<PathBuf>,
    pub format: Option<Format>,
    pub split: SplitConfig,
    pub out: Option<PathBuf>,
    pub train: TrainConfig,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PoolingArg {
    Cls,
    Mean,
    Last,
    Pooler,
}

impl From<PoolingArg> for Pooling {
    fn from(p: PoolingArg) -> Self {
        match p {
            PoolingArg::Cls => Pooling::Cls,
            PoolingArg::Mean => Pooling::Mean,
            PoolingArg::Last => Pooling::Last,
            PoolingArg::Pooler => Pooling::Pooler,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    Linear,
    Cosine,
    Constant,
}

#[derive(Args)]
pub struct TrainArgs {
    /// A run config (TOML or JSON) with the fields of this command; flags override it. The
    /// effective config is saved in every checkpoint's rewardkit.json.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Model folder: a pretrained backbone (config.json, model.safetensors, tokenizer.json), an
    /// HF *ForSequenceClassification reward model, or a rewardkit checkpoint.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Ignore the folder's weights and initialise every parameter from --seed (its config.json
    /// and tokenizer are still used).
    #[arg(long)]
    from_scratch: bool,
    /// Which hidden state the value head reads (default: cls for encoders, last for decoders,
    /// or what the checkpoint says).
    #[arg(long, value_enum)]
    pooling: Option<PoolingArg>,
    /// Training preference files.
    #[arg(long, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Held-out preference files; without them, --eval-fraction of --data is held out.
    #[arg(long, num_args = 1..)]
    eval_data: Vec<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// Share of --data held out for evaluation (by a stable hash; see `data split`).
    #[arg(long)]
    eval_fraction: Option<f64>,
    /// Seed of the train/eval split.
    #[arg(long)]
    split_seed: Option<u64>,
    /// What the split hashes.
    #[arg(long, value_enum)]
    split_by: Option<SplitBy>,
    /// Output folder: checkpoint-N/, final/, metrics.jsonl.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the newest checkpoint in --out (same configuration required).
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    epochs: Option<f64>,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Pairs per micro-batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per optimizer step.
    #[arg(long)]
    grad_accum: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    #[arg(long)]
    warmup_steps: Option<usize>,
    #[arg(long)]
    warmup_ratio: Option<f64>,
    #[arg(long, value_enum)]
    schedule: Option<ScheduleArg>,
    /// Clip the global gradient norm (0 = off).
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// TRL's center_rewards_coefficient.
    #[arg(long)]
    center_rewards_coefficient: Option<f64>,
    /// Tokens per sequence at most (the prompt's start is cut first, then the response's end).
    #[arg(long)]
    max_length: Option<usize>,
    /// Keep dropout on while training (off by default, as in TRL).
    #[arg(long)]
    dropout: bool,
    /// Seed of initialisation, data order and dropout.
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    log_every: Option<usize>,
    /// Evaluate every N steps (and always at the end).
    #[arg(long)]
    eval_every: Option<usize>,
    /// Save a checkpoint every N steps (and always at the end).
    #[arg(long)]
    save_every: Option<usize>,
    /// Print the final summary as JSON.
    #[arg(long)]
    json: bool,
}

impl TrainArgs {
    /// The config file, then every flag given on top of it.
    fn resolve(&self) -> anyhow::Result<RunConfig> {
        let mut c = match &self.config {
            Some(p) => super::read_config(p, "run config")?,
            None => RunConfig::default(),
        };
        macro_rules! set {
            ($flag:expr, $field:expr) => {
                if let Some(v) = $flag {
                    $field = v;
                }
            };
        }
        if let Some(m) = &self.model {
            c.model = Some(m.clone());
        }
        c.from_scratch |= self.from_scratch;
        if let Some(p) = self.pooling {
            c.pooling = Some(p.into());
        }
        if !self.data.is_empty() {
            c.data.clone_from(&self.data);
        }
        if !self.eval_data.is_empty() {
            c.eval_data.clone_from(&self.eval_data);
        }
        if self.read.format.is_some() {
            c.format = self.read.format;
        }
        set!(self.eval_fraction, c.split.eval_fraction);
        set!(self.split_seed, c.split.seed);
        if let Some(b) = self.split_by {
            c.split.key = match b {
                SplitBy::Pair => SplitKey::Pair,
                SplitBy::Prompt => SplitKey::Prompt,
            };
        }
        if let Some(o) = &self.out {
            c.out = Some(o.clone());
        }
        let t = &mut c.train;
        set!(self.epochs, t.epochs);
        if self.max_steps.is_some() {
            t.max_steps = self.max_steps;
        }
        set!(self.batch_size, t.batch_size);
        set!(self.grad_accum, t.grad_accum);
        set!(self.lr, t.learning_rate);
        set!(self.weight_decay, t.weight_decay);
        set!(self.warmup_steps, t.warmup_steps);
        set!(self.warmup_ratio, t.warmup_ratio);
        if let Some(s) = self.schedule {
            t.schedule = match s {
                ScheduleArg::Linear => Schedule::Linear,
                ScheduleArg::Cosine => Schedule::Cosine,
                ScheduleArg::Constant => Schedule::Constant,
            };
        }
        set!(self.max_grad_norm, t.max_grad_norm);
        if self.center_rewards_coefficient.is_some() {
            t.center_rewards_coefficient = self.center_rewards_coefficient;
        }
        set!(self.max_length, t.max_length);
        t.dropout |= self.dropout;
        set!(self.seed, t.seed);
        set!(self.log_every, t.log_every);
        set!(self.eval_every, t.eval_every);
        set!(self.save_every, t.save_every);
        t.validate()
            .map_err(|e| anyhow::anyhow!("invalid training configuration: {e}"))?;
        Ok(c)
    }
}

/// A line on stderr above the progress bar, or plain when the bar is hidden (not a terminal).
fn say(pb: &indicatif::ProgressBar, line: String) {
    if pb.is_hidden() {
        eprintln!("{line}");
    } else {
        pb.println(line);
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let model_dir = config
        .model
        .clone()
        .context("no model: pass --model DIR (or `model` in --config)")?;
    let out = config
        .out
        .clone()
        .context("no output folder: pass --out DIR (or `out` in --config)")?;
    anyhow::ensure!(
        !config.data.is_empty(),
        "no training data: pass --data FILE… (or `data` in --config)"
    );
    let read = ReadArgs {
        format: config.format,
        ..args.read.clone()
    };
    let data = read.load(&config.data, false)?;
    let (train, eval) = if config.eval_data.is_empty() {
        config.split.split(data.pairs)
    } else {
        (data.pairs, read.load(&config.eval_data, false)?.pairs)
    };
    let device = candle_core::Device::Cpu;
    let options = LoadOptions {
        pooling: config.pooling,
        // Training may start a new value head on a pretrained backbone, or everything.
        init_missing: if config.from_scratch {
            InitMissing::All
        } else {
            InitMissing::ValueHead
        },
        seed: config.train.seed,
        max_length: Some(config.train.max_length),
        inference: false,
    };
    let model = rewardkit_model::load(&model_dir, &options, &device)?;
    eprintln!(
        "model {}: {} parameters, pooling {:?}, kernels {}; {} training pairs, {} held out",
        model_dir.display(),
        model.model.params().num_params(),
        model.meta.pooling,
        rewardkit_model::ops::simd_level()?,
        train.len(),
        eval.len()
    );
    if !model.initialised.is_empty() {
        eprintln!(
            "initialised {} tensor(s) from seed {}: {}",
            model.initialised.len(),
            config.train.seed,
            model.initialised.join(", ")
        );
    }
    let meta = serde_json::json!({ "run": config });
    let pb = crate::progress::bar(0, "steps");
    // σ(−Δ) histograms of the first and last logging windows, shown at the end.
    let (mut first_hist, mut last_hist) = (None, None);
    let summary = rewardkit_train::train(
        &model,
        &config.train,
        &Run {
            train: &train,
            eval: &eval,
            out: &out,
            resume: args.resume,
            meta,
        },
        |event| {
            match event {
                Event::Start {
                    total_steps,
                    resumed_at,
                    ..
                } => {
                    pb.set_length(total_steps as u64);
                    pb.set_position(resumed_at as u64);
                    pb.set_message("training");
                    if resumed_at > 0 {
                        say(&pb, format!("resumed at step {resumed_at}"));
                    }
                }
                Event::Step(s) => {
                    first_hist.get_or_insert(s.grad_weight_hist);
                    last_hist = Some(s.grad_weight_hist);
                    pb.set_position(s.step as u64);
                    pb.set_message(format!(
                        "loss {:.4} acc {:.3} σ(−Δ) {:.2} {:.2} pairs/s",
                        s.loss, s.accuracy, s.mean_grad_weight, s.pairs_per_s
                    ));
                    if pb.is_hidden() {
                        eprintln!(
                            "step {}/{}: loss {:.4} accuracy {:.3} lr {:.2e} grad-norm {:.3} {:.2} pairs/s",
                            s.step, s.total_steps, s.loss, s.accuracy, s.learning_rate, s.grad_norm, s.pairs_per_s
                        );
                    }
                }
                Event::Eval(e) => {
                    let acc = e.report.accuracy.accuracy.unwrap_or(f64::NAN);
                    say(
                        &pb,
                        format!(
                            "eval at step {}: accuracy {:.4}, ECE {}, log loss {} ({:.1} s)",
                            e.step,
                            acc,
                            rewardkit_report::fmt_num(e.report.calibration.ece),
                            rewardkit_report::fmt_num(e.report.calibration.log_loss),
                            e.seconds
                        ),
                    );
                }
                Event::Saved(dir) => say(&pb, format!("saved {}", dir.display())),
            }
            ControlFlow::Continue(())
        },
    )?;
    pb.finish_and_clear();
    if let (Some(first), Some(last)) = (first_hist, last_hist) {
        eprint!("{}", rewardkit_report::grad_weight_histogram(&first, &last));
    }
    eprintln!(
        "trained {} steps in {:.0} s ({:.2} pairs/s); final model in {}",
        summary.steps,
        summary.seconds,
        summary.pairs_per_s,
        summary.final_dir.display()
    );
    if args.json {
        return print_json(&summary);
    }
    if let Some(report) = &summary.final_eval {
        let eval_report = rewardkit_eval::EvalReport {
            overall: report.clone(),
            subsets: Default::default(),
        };
        print_text(&rewardkit_report::eval_table(
            &eval_report,
            &summary.final_dir.display().to_string(),
        ))?;
    }
    Ok(())
}
