//! `rewardkit train`: fit a reward model to preference pairs.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use rewardkit_audit::AugmentConfig;
use rewardkit_data::SplitKey;
use rewardkit_model::{InitMissing, LoadOptions, Pooling};
use rewardkit_tokenize::InputStyle;
use rewardkit_train::{Event, Penalty, Run, RunConfig, Schedule, Start, Ties, TrainSummary};

use super::data::{AugmentFlags, ReadArgs};
use super::{print_json, print_text};

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
    pooling: Option<Pooling>,
    /// How an encoder reads prompt and response (default `pair`; `sequence` as TRL concatenates
    /// them); saved with the model.
    #[arg(long, value_enum)]
    input_style: Option<InputStyle>,
    /// Training preference files.
    #[arg(long, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Held-out preference files; without them, --eval-fraction of --data is held out.
    #[arg(long, num_args = 1..)]
    eval_data: Vec<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// Add correction and counterfactual pairs to the training split (never to the held-out
    /// pairs), as `data augment` does, with the --augment-* settings (over the --config file's
    /// `[augment]` table, whose presence also turns augmenting on); the settings are saved in
    /// every checkpoint's rewardkit.json (`augment`) and a resume must repeat them (the data
    /// fingerprint covers the added pairs).
    #[arg(long)]
    augment: bool,
    #[command(flatten)]
    augment_flags: AugmentFlags,
    /// Share of --data held out for evaluation (by a stable hash; see `data split`).
    #[arg(long)]
    eval_fraction: Option<f64>,
    /// Seed of the train/eval split.
    #[arg(long)]
    split_seed: Option<u64>,
    /// What the split hashes.
    #[arg(long, value_enum)]
    split_by: Option<SplitKey>,
    /// Output folder: checkpoint-N/, final/, metrics.jsonl.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the newest checkpoint in --out. Refused when there is none, or when its
    /// configuration, data or starting model differ from this run's (each is fingerprinted).
    #[arg(long, conflicts_with_all = ["resume_or_start", "overwrite"])]
    resume: bool,
    /// Like --resume, but start a new run when --out holds no checkpoint yet (for jobs that may
    /// be preempted and restarted with the same command).
    #[arg(long, conflicts_with = "overwrite")]
    resume_or_start: bool,
    /// Replace the previous run in --out (its checkpoint-N/, final/ and metrics.jsonl). Without
    /// it (or --resume) a non-empty --out is refused, so two runs never mix.
    #[arg(long)]
    overwrite: bool,
    /// Passes over the training pairs; fractions allowed (default 1).
    #[arg(long)]
    epochs: Option<f64>,
    /// Stop after this many optimizer steps (at least 1; overrides --epochs).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_steps: Option<u64>,
    /// Pairs per micro-batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per optimizer step.
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Peak learning rate of AdamW (default 2e-5, TRL's).
    #[arg(long)]
    lr: Option<f64>,
    /// Decoupled weight decay; biases and norms are never decayed (default 0).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Steps of linear warmup from 0 (default 0: --warmup-ratio decides).
    #[arg(long)]
    warmup_steps: Option<usize>,
    /// Share of all steps spent warming up, in [0, 1], when --warmup-steps is 0 (default 0).
    #[arg(long)]
    warmup_ratio: Option<f64>,
    /// Learning-rate decay after warmup (default linear).
    #[arg(long, value_enum)]
    schedule: Option<Schedule>,
    /// Clip the global gradient norm (0 = off).
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// Pairs labelled as ties (PandaLM's): `skip` leaves them out, as TRL does (default);
    /// `train` trains them as p = 1/2, pulling the two rewards together. Same as `ties` in
    /// --config's [train].
    #[arg(long, value_enum)]
    ties: Option<Ties>,
    /// Train every non-tie pair as a hard label (p = 1), ignoring soft labels (`p_chosen`, or
    /// --label-field). By default a soft label p trains with the cross-entropy
    /// −p·logσ(Δ) − (1 − p)·logσ(−Δ). Same as `use_soft_labels = false` in --config.
    #[arg(long)]
    hard_labels: bool,
    /// TRL's center_rewards_coefficient.
    #[arg(long)]
    center_rewards_coefficient: Option<f64>,
    /// Tokens per sequence at most (the prompt's start is cut first, then the response's end);
    /// default: the model's own limit (its rewardkit.json, else max_position_embeddings).
    #[arg(long)]
    max_length: Option<usize>,
    /// Keep dropout on while training (off by default, as in TRL).
    #[arg(long)]
    dropout: bool,
    /// Gradient checkpointing (decoders: GPT-2, Llama family): keep only each block's input in
    /// the forward pass and recompute the block during the backward pass. Activation memory
    /// drops from all blocks to one (SmolLM2-135M at batch 8, length 256: see docs/training.md)
    /// for about a third more compute; the gradients are the same up to rounding. Same as
    /// `gradient_checkpointing = true` in --config.
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Give each sequence a row of its own. By default a causal decoder read at the last token
    /// (GPT-2, Llama family) packs a pair's chosen and rejected into one row after their
    /// prompt and computes the prompt once, forward and backward (same gradients up to
    /// rounding). Same as `shared_prompt = false` in --config.
    #[arg(long)]
    no_shared_prompt: bool,
    /// No padding: pack each batch's sequences side by side in one row, each seeing only
    /// itself (with the shared prompt, each pair after its prompt), and score held-out pairs
    /// the same way. Still --batch-size pairs a step; the same gradients up to rounding, and no
    /// compute on padding (padded_tokens_per_s equals tokens_per_s). Any model. Same as
    /// `packing = true` in --config.
    #[arg(long)]
    packing: bool,
    /// A penalty against reward hacking added to the Bradley-Terry loss, NAME or NAME=λ (λ = 1):
    /// `honesty` (λ·softplus(r(agree) − r(correct)) on correction pairs: needs --augment or
    /// correction pairs in --data), `counterfactual` (λ·(r(x′) − r(x))² for information-free
    /// edits x′ of the chosen responses, made on the fly), `odin` (a length head beside the
    /// value head, λ·|ρ(value head, length)|; the saved model scores with the value head alone).
    /// Repeatable; replaces the --config penalty of the same kind. Formulas and measurements:
    /// docs/interventions.md.
    #[arg(long = "penalty", value_name = "NAME[=λ]", value_parser = Penalty::parse)]
    penalties: Vec<Penalty>,
    /// Seed of initialisation, data order and dropout.
    #[arg(long)]
    seed: Option<u64>,
    /// Write a metrics.jsonl line (and a progress line) every N steps (default 10).
    #[arg(long)]
    log_every: Option<usize>,
    /// Evaluate every N steps (and always at the end).
    #[arg(long)]
    eval_every: Option<usize>,
    /// Save a checkpoint every N steps (and always at the end).
    #[arg(long)]
    save_every: Option<usize>,
    #[command(flatten)]
    lora: super::lora_args::LoraArgs,
    /// Print the final summary as JSON.
    #[arg(long)]
    json: bool,
}

impl TrainArgs {
    /// The config file, then every flag given on top of it.
    /// The run config (the --config file's, with the flags over it) and the augmentation, if
    /// the file has an `[augment]` table or --augment is given (the flags over the table).
    fn resolve(&self) -> anyhow::Result<(RunConfig, Option<AugmentConfig>)> {
        let (mut c, table) = match &self.config {
            Some(p) => read_config(p)?,
            None => (RunConfig::default(), None),
        };
        let augment = match table {
            Some(t) => Some(self.augment_flags.apply(t)?),
            None if self.augment => Some(self.augment_flags.config()?),
            None => None,
        };
        if let Some(a) = &augment {
            a.validate()
                .map_err(|e| crate::Usage(format!("invalid augmentation: {e}")))?;
        }
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
        if self.pooling.is_some() {
            c.pooling = self.pooling;
        }
        if self.input_style.is_some() {
            c.input_style = self.input_style;
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
        if self.read.label_field.is_some() {
            c.label_field.clone_from(&self.read.label_field);
        }
        set!(self.eval_fraction, c.split.eval_fraction);
        set!(self.split_seed, c.split.seed);
        set!(self.split_by, c.split.key);
        if let Some(o) = &self.out {
            c.out = Some(o.clone());
        }
        let t = &mut c.train;
        set!(self.epochs, t.epochs);
        if let Some(steps) = self.max_steps {
            t.max_steps = Some(steps as usize);
        }
        set!(self.batch_size, t.batch_size);
        set!(self.grad_accum, t.grad_accum);
        set!(self.lr, t.learning_rate);
        set!(self.weight_decay, t.weight_decay);
        set!(self.warmup_steps, t.warmup_steps);
        set!(self.warmup_ratio, t.warmup_ratio);
        set!(self.schedule, t.schedule);
        set!(self.max_grad_norm, t.max_grad_norm);
        set!(self.ties, t.ties);
        t.use_soft_labels &= !self.hard_labels;
        if self.center_rewards_coefficient.is_some() {
            t.center_rewards_coefficient = self.center_rewards_coefficient;
        }
        if self.max_length.is_some() {
            t.max_length = self.max_length;
        }
        t.dropout |= self.dropout;
        t.gradient_checkpointing |= self.gradient_checkpointing;
        t.shared_prompt &= !self.no_shared_prompt;
        t.packing |= self.packing;
        for p in &self.penalties {
            t.penalties.retain(|q| q.name() != p.name());
            t.penalties.push(p.clone());
        }
        set!(self.seed, t.seed);
        set!(self.log_every, t.log_every);
        set!(self.eval_every, t.eval_every);
        set!(self.save_every, t.save_every);
        self.lora.apply(&mut c.lora)?;
        let t = &mut c.train;
        t.validate()
            .map_err(|e| crate::Usage(format!("invalid training configuration: {e}")))?;
        Ok((c, augment))
    }

    fn start(&self) -> Start {
        match (self.resume, self.resume_or_start, self.overwrite) {
            (true, _, _) => Start::Resume,
            (_, true, _) => Start::ResumeOrFresh,
            (_, _, true) => Start::Overwrite,
            _ => Start::Fresh,
        }
    }
}

/// A --config file (TOML by its `.toml` name, else JSON): the run config, and its `augment`
/// table (the settings of `data augment`) apart. A bad file is a failure (exit 1); a bad flag
/// is a bad command line (2).
fn read_config(path: &std::path::Path) -> anyhow::Result<(RunConfig, Option<AugmentConfig>)> {
    let text = rewardkit_io::read_to_string(path)?;
    let toml = path.extension().is_some_and(|e| e == "toml");
    let origin = path.display().to_string();
    let mut value: serde_json::Value = if toml {
        ::toml::from_str(&text).map_err(|e| anyhow::anyhow!("{origin}: invalid run config: {e}"))?
    } else {
        serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{origin}: invalid run config: {e}"))?
    };
    let Some(table) = value.as_object_mut().and_then(|o| o.remove("augment")) else {
        // No table to take out: parse the text itself, so errors keep their line numbers.
        let run = RunConfig::parse(&text, toml, &origin).map_err(anyhow::Error::msg)?;
        return Ok((run, None));
    };
    let augment: AugmentConfig = serde_json::from_value(table)
        .map_err(|e| anyhow::anyhow!("{origin}: invalid `augment` table: {e}"))?;
    let run = RunConfig::from_value(value, &origin).map_err(anyhow::Error::msg)?;
    Ok((run, Some(augment)))
}

/// A line on stderr above the progress bar, or plain when the bar is hidden (not a terminal).
fn say(pb: &indicatif::ProgressBar, line: String) {
    if pb.is_hidden() {
        eprintln!("{line}");
    } else {
        pb.println(line);
    }
}

/// The exit code of a run stopped by a signal (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// Trains; returns the exit code (0, or [`INTERRUPTED`] when a signal stopped the run after
/// saving a checkpoint).
pub fn run(args: TrainArgs) -> anyhow::Result<u8> {
    let (config, augment) = args.resolve()?;
    let model_dir = config
        .model
        .clone()
        .context("no model: pass --model DIR (or `model` in --config)")
        .map_err(usage)?;
    let out = config
        .out
        .clone()
        .context("no output folder: pass --out DIR (or `out` in --config)")
        .map_err(usage)?;
    if config.data.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "no training data: pass --data FILE… (or `data` in --config)"
        )));
    }
    let (train, eval) = load_data(&config, &args.read)?;
    let (train, augment) = match &augment {
        Some(c) => {
            let (train, report) = super::data::augmented(train, c)?;
            (train, Some(report))
        }
        None => (train, None),
    };
    let options = LoadOptions {
        pooling: config.pooling,
        // Training may start a new value head on a pretrained backbone, or everything.
        init_missing: if config.from_scratch {
            InitMissing::All
        } else {
            InitMissing::ValueHead
        },
        seed: config.train.seed,
        max_length: config.train.max_length,
        inference: false,
        input_style: config.input_style,
    };
    let mut model = rewardkit_model::load(&model_dir, &options, &candle_core::Device::Cpu)?;
    if config.lora.enabled() {
        if config.from_scratch {
            return Err(usage(anyhow::anyhow!(
                "--lora-rank trains adapters on pretrained weights, not --from-scratch"
            )));
        }
        model = model.with_lora(&config.lora, &model_dir)?;
    }
    // What the run uses is what it records (and what a resume compares).
    let mut config = config;
    config.train.max_length = Some(model.meta.max_length);
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
    let stop = crate::signals::stop_on_signal();
    let run = Run {
        start: args.start(),
        stop: Some(stop),
        meta: match &augment {
            Some(a) => serde_json::json!({ "run": config, "augment": a }),
            None => serde_json::json!({ "run": config }),
        },
        ..Run::new(&train, &eval, &out)
    };
    let mut progress = Progress::new();
    let summary = rewardkit_train::train(&model, &config.train, &run, |e| progress.on(e))?;
    progress.finish();
    report(&summary, &out, args.json)?;
    Ok(if summary.interrupted { INTERRUPTED } else { 0 })
}

fn usage(e: anyhow::Error) -> anyhow::Error {
    crate::Usage(format!("{e:#}")).into()
}

/// The training and held-out pairs: `eval_data`, or a split of `data`.
fn load_data(
    config: &RunConfig,
    read: &ReadArgs,
) -> anyhow::Result<(
    Vec<rewardkit_data::PreferencePair>,
    Vec<rewardkit_data::PreferencePair>,
)> {
    let read = ReadArgs {
        format: config.format,
        label_field: config.label_field.clone(),
        ..read.clone()
    };
    let data = read.load(&config.data, false)?;
    Ok(if config.eval_data.is_empty() {
        config.split.split(data.pairs)
    } else {
        (data.pairs, read.load(&config.eval_data, false)?.pairs)
    })
}

/// The progress bar and log lines on stderr.
struct Progress {
    pb: indicatif::ProgressBar,
    /// σ(−Δ) histograms of the first and last logging windows, shown at the end.
    first_hist: Option<[usize; 10]>,
    last_hist: Option<[usize; 10]>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            pb: crate::progress::bar(0, "steps"),
            first_hist: None,
            last_hist: None,
        }
    }

    fn on(&mut self, event: Event) -> ControlFlow<()> {
        let pb = &self.pb;
        match event {
            Event::Start {
                total_steps,
                resumed_at,
                memory,
                ..
            } => {
                pb.set_length(total_steps as u64);
                pb.set_position(resumed_at as u64);
                pb.set_message("training");
                if let Some((estimate, available)) = memory {
                    let mib = |b: u64| b >> 20;
                    say(
                        pb,
                        format!(
                            "estimated peak memory {} MiB ({} MiB parameters and optimizer, {} \
                             MiB activations, {} MiB a checkpoint save), {} MiB available",
                            mib(estimate.total()),
                            mib(estimate.parameters),
                            mib(estimate.activations),
                            mib(estimate.checkpoint),
                            mib(available)
                        ),
                    );
                }
                if resumed_at > 0 {
                    say(pb, format!("resumed at step {resumed_at}"));
                }
            }
            Event::Step(s) => {
                self.first_hist.get_or_insert(s.grad_weight_hist);
                self.last_hist = Some(s.grad_weight_hist);
                pb.set_position(s.step as u64);
                pb.set_message(format!(
                    "loss {:.4} acc {:.3} σ(−Δ) {:.2} {:.2} pairs/s",
                    s.loss, s.accuracy, s.mean_grad_weight, s.pairs_per_s
                ));
                if pb.is_hidden() {
                    let penalties: String = s
                        .penalties
                        .iter()
                        .map(|(name, v)| format!(" {name} {v:.4}"))
                        .collect();
                    eprintln!(
                        "step {}/{}: loss {:.4}{penalties} accuracy {:.3} lr {:.2e} grad-norm {:.3} {:.2} pairs/s",
                        s.step, s.total_steps, s.loss, s.accuracy, s.learning_rate, s.grad_norm, s.pairs_per_s
                    );
                }
            }
            Event::Eval(e) => {
                let acc = e.report.accuracy.accuracy.unwrap_or(f64::NAN);
                say(
                    pb,
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
            Event::Stopping { step } => {
                say(pb, format!("stopping at step {step}: saving a checkpoint"))
            }
            Event::Saved(dir) => say(pb, format!("saved {}", dir.display())),
        }
        ControlFlow::Continue(())
    }

    fn finish(self) {
        self.pb.finish_and_clear();
        if let (Some(first), Some(last)) = (self.first_hist, self.last_hist) {
            eprint!("{}", rewardkit_report::grad_weight_histogram(&first, &last));
        }
    }
}

/// The summary: on stderr, and the final evaluation (or JSON) on stdout.
fn report(summary: &TrainSummary, out: &std::path::Path, json: bool) -> anyhow::Result<()> {
    if summary.interrupted {
        let resume: Vec<String> = std::env::args()
            .filter(|a| a != "--resume-or-start" && a != "--overwrite" && a != "--resume")
            .chain(["--resume".to_string()])
            .collect();
        eprintln!(
            "interrupted: stopped at step {} of {}; the checkpoint is in {}. Resume with:\n  {}",
            summary.steps,
            summary.total_steps,
            out.display(),
            resume.join(" ")
        );
    } else {
        eprintln!(
            "trained {} steps in {:.0} s ({:.2} pairs/s); final model in {}",
            summary.steps,
            summary.seconds,
            summary.pairs_per_s,
            summary.final_dir.display()
        );
    }
    if summary.skipped_ties + summary.trained_ties + summary.soft_labels > 0 {
        eprintln!(
            "labels: {} pairs trained, {} of them ties (as p = 1/2) and {} soft labels; {} ties skipped{}",
            summary.train_pairs,
            summary.trained_ties,
            summary.soft_labels,
            summary.skipped_ties,
            if summary.skipped_ties > 0 { " (train them with --ties train)" } else { "" }
        );
    }
    if json {
        return print_json(summary);
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
