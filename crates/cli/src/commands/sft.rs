//! `rewardkit sft`: supervised fine-tuning of a decoder on (prompt, response) rows.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use rewardkit_model::Policy;
use rewardkit_rl::{Event, SftRow, SftRun, SftRunConfig, SftStepLog};

use super::policy_args::{read_run_config, resume_command, OptimArgs, StartArgs};
use super::print_json;

#[derive(Args)]
pub struct SftArgs {
    /// A run config (TOML or JSON) with the fields of this command (`model`, `data`,
    /// `raw_prompts`, `out`, and `[sft]`: every setting of rewardkit_rl::SftConfig); flags
    /// override it. The effective settings are saved in every checkpoint.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The policy to fine-tune: a GGUF file (Llama family, e.g. SmolLM2) or an HF causal-LM
    /// folder (config.json, model.safetensors, tokenizer.json; GPT-2, Llama, Qwen2).
    #[arg(long, env = "REWARDKIT_POLICY")]
    model: Option<PathBuf>,
    /// Row files: JSONL (or JSON array, gzip, Parquet), one object per row with `prompt` and
    /// `response` strings. The loss is the cross-entropy of the response tokens and EOS only.
    #[arg(long, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Feed the prompts as they are; by default a model with a chat template gets each prompt
    /// as a user turn in its chat format.
    #[arg(long)]
    raw_prompts: bool,
    /// Output folder: checkpoint-N/, final/ (an HF causal-LM folder), metrics.jsonl.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    start: StartArgs,
    /// Rows per optimizer step (default 8).
    #[arg(long, value_parser = super::at_least_one)]
    batch_size: Option<usize>,
    /// Passes over the rows; fractions allowed (default 1).
    #[arg(long)]
    epochs: Option<f64>,
    /// Stop after this many optimizer steps (overrides --epochs).
    #[arg(long, value_parser = super::at_least_one)]
    max_steps: Option<usize>,
    /// Tokens per row at most (prompt + response + EOS): the prompt's start is cut first, then
    /// the response's end.
    #[arg(long)]
    max_length: Option<usize>,
    #[command(flatten)]
    optim: OptimArgs,
    #[command(flatten)]
    lora: super::lora_args::LoraArgs,
    /// Seed of the row order (default 42).
    #[arg(long)]
    seed: Option<u64>,
    /// A metrics.jsonl line (and a progress line) every N steps (default 1).
    #[arg(long, value_parser = super::at_least_one)]
    log_every: Option<usize>,
    /// Save a checkpoint every N steps (and always at the end).
    #[arg(long)]
    save_every: Option<usize>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl SftArgs {
    fn resolve(&self) -> anyhow::Result<SftRunConfig> {
        let mut c = match &self.config {
            Some(p) => read_run_config(p, SftRunConfig::parse)?,
            None => SftRunConfig::default(),
        };
        if let Some(m) = &self.model {
            c.model = Some(m.clone());
        }
        if !self.data.is_empty() {
            c.data.clone_from(&self.data);
        }
        c.raw_prompts |= self.raw_prompts;
        if let Some(o) = &self.out {
            c.out = Some(o.clone());
        }
        let s = &mut c.sft;
        s.batch_size = self.batch_size.unwrap_or(s.batch_size);
        s.epochs = self.epochs.unwrap_or(s.epochs);
        if self.max_steps.is_some() {
            s.max_steps = self.max_steps;
        }
        if self.max_length.is_some() {
            s.max_length = self.max_length;
        }
        self.optim.apply(&mut s.optim);
        s.seed = self.seed.unwrap_or(s.seed);
        s.log_every = self.log_every.unwrap_or(s.log_every);
        s.save_every = self.save_every.unwrap_or(s.save_every);
        self.lora.apply(&mut c.lora)?;
        let s = &mut c.sft;
        s.validate()
            .map_err(|e| crate::Usage(format!("invalid SFT configuration: {e}")))?;
        Ok(c)
    }
}

pub fn run(args: SftArgs) -> anyhow::Result<u8> {
    let config = args.resolve()?;
    let usage = |m: &str| anyhow::Error::from(crate::Usage(m.into()));
    let model = config
        .model
        .clone()
        .ok_or_else(|| usage("no model: pass --model (or `model` in --config)"))?;
    let out = config
        .out
        .clone()
        .ok_or_else(|| usage("no output folder: pass --out DIR (or `out` in --config)"))?;
    if config.data.is_empty() {
        return Err(usage("no rows: pass --data FILE… (or `data` in --config)"));
    }
    let mut rows: Vec<SftRow> = Vec::new();
    for path in &config.data {
        rows.extend(rewardkit_rl::read_sft_rows(path)?);
    }
    let mut policy =
        Policy::load(&model).with_context(|| format!("loading {}", model.display()))?;
    if config.lora.enabled() {
        policy = policy.with_lora(&config.lora, &model)?;
    }
    if policy.chat_template().is_some() && !config.raw_prompts {
        for r in &mut rows {
            r.prompt = policy.format_prompt(&r.prompt)?;
        }
    }
    eprintln!(
        "policy {}: {} parameters; {} rows",
        model.display(),
        policy.params().num_params(),
        rows.len()
    );
    let run = SftRun {
        rows: &rows,
        out: Some(&out),
        start: args.start.start(),
        stop: Some(crate::signals::stop_on_signal()),
    };
    let pb = crate::progress::bar(0, "steps");
    let summary = rewardkit_rl::sft(&policy, &config.sft, &run, |e| {
        on_event(&pb, e, |s: &SftStepLog| {
            let text = format!(
                "step {}/{}: loss {:.4} lr {:.2e} grad-norm {:.3} {:.0} tokens/s",
                s.step, s.total_steps, s.loss, s.learning_rate, s.grad_norm, s.tokens_per_s
            );
            (s.step, text)
        })
    })?;
    pb.finish_and_clear();
    if summary.interrupted {
        eprintln!(
            "interrupted at step {} of {}; resume with:\n  {}",
            summary.steps,
            summary.total_steps,
            resume_command()
        );
    } else if let Some(dir) = &summary.final_dir {
        eprintln!(
            "fine-tuned {} steps in {:.1} s; final model in {}",
            summary.steps,
            summary.seconds,
            dir.display()
        );
    }
    if args.json {
        print_json(&summary)?;
    }
    Ok(if summary.interrupted {
        super::train::INTERRUPTED
    } else {
        0
    })
}

/// Shows an event of an SFT or RL run on the progress bar (or as a line when stderr is not a
/// terminal); `line` gives a step's number and description.
pub fn on_event<L>(
    pb: &indicatif::ProgressBar,
    event: Event<L>,
    line: impl Fn(&L) -> (usize, String),
) -> ControlFlow<()> {
    let say = |text: String| {
        if pb.is_hidden() {
            eprintln!("{text}");
        } else {
            pb.println(text);
        }
    };
    match event {
        Event::Start {
            total_steps,
            resumed_at,
        } => {
            pb.set_length(total_steps as u64);
            pb.set_position(resumed_at as u64);
            if resumed_at > 0 {
                say(format!("resumed at step {resumed_at}"));
            }
        }
        Event::Step(s) => {
            let (step, text) = line(s);
            pb.set_position(step as u64);
            if pb.is_hidden() {
                eprintln!("{text}");
            } else {
                pb.set_message(text);
            }
        }
        Event::Saved(dir) => say(format!("saved {}", dir.display())),
        Event::Stopping { step } => say(format!("stopping at step {step}: saving a checkpoint")),
    }
    ControlFlow::Continue(())
}
