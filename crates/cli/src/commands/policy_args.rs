//! Flags shared by `sft` and `rl`: the run folder policy and the optimizer.

use clap::Args;

use rewardkit_rl::{OptimConfig, Schedule, Start};

/// What a run does with what `--out` already holds.
#[derive(Args, Clone)]
pub struct StartArgs {
    /// Continue from the newest checkpoint in --out. Refused when there is none, or when its
    /// settings, starting model, reference or data differ from this run's (each is fingerprinted).
    #[arg(long, conflicts_with_all = ["resume_or_start", "overwrite"])]
    resume: bool,
    /// Like --resume, but start a new run when --out holds no checkpoint yet.
    #[arg(long, conflicts_with = "overwrite")]
    resume_or_start: bool,
    /// Replace the previous run in --out (its checkpoint-N/, final/ and metrics.jsonl). Without
    /// it (or --resume) a non-empty --out is refused, so two runs never mix.
    #[arg(long)]
    overwrite: bool,
}

impl StartArgs {
    pub fn start(&self) -> Start {
        match (self.resume, self.resume_or_start, self.overwrite) {
            (true, _, _) => Start::Resume,
            (_, true, _) => Start::ResumeOrFresh,
            (_, _, true) => Start::Overwrite,
            _ => Start::Fresh,
        }
    }
}

/// AdamW, its schedule and clipping.
#[derive(Args, Clone)]
pub struct OptimArgs {
    /// Peak learning rate of AdamW (default 2e-5).
    #[arg(long)]
    lr: Option<f64>,
    /// Decoupled weight decay; biases and norms are never decayed (default 0).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Optimizer steps of linear warmup from 0 (default 0: --warmup-ratio decides).
    #[arg(long)]
    warmup_steps: Option<usize>,
    /// Share of all optimizer steps spent warming up, in [0, 1], when --warmup-steps is 0.
    #[arg(long, value_parser = super::fraction)]
    warmup_ratio: Option<f64>,
    /// Learning-rate decay after warmup, over all optimizer steps (default linear).
    #[arg(long, value_enum)]
    schedule: Option<Schedule>,
    /// Clip the global gradient norm (0 = off; default 1).
    #[arg(long)]
    max_grad_norm: Option<f64>,
}

impl OptimArgs {
    /// Sets the fields whose flags were given.
    pub fn apply(&self, o: &mut OptimConfig) {
        if let Some(v) = self.lr {
            o.learning_rate = v;
        }
        if let Some(v) = self.weight_decay {
            o.weight_decay = v;
        }
        if let Some(v) = self.warmup_steps {
            o.warmup_steps = v;
        }
        if let Some(v) = self.warmup_ratio {
            o.warmup_ratio = v;
        }
        if let Some(v) = self.schedule {
            o.schedule = v;
        }
        if let Some(v) = self.max_grad_norm {
            o.max_grad_norm = v;
        }
    }
}

/// Reads a run config file (TOML for a `.toml` name, else JSON) with `parse`.
pub fn read_run_config<T>(
    path: &std::path::Path,
    parse: impl Fn(&str, bool, &str) -> Result<T, String>,
) -> anyhow::Result<T> {
    let text = rewardkit_io::read_to_string(path)?;
    let toml = path.extension().is_some_and(|e| e == "toml");
    parse(&text, toml, &path.display().to_string()).map_err(anyhow::Error::msg)
}

/// The command that resumes an interrupted run: this one with `--resume`.
pub fn resume_command() -> String {
    std::env::args()
        .filter(|a| a != "--resume-or-start" && a != "--overwrite" && a != "--resume")
        .chain(["--resume".to_string()])
        .collect::<Vec<_>>()
        .join(" ")
}
