//! `rewardkit rl`: on-policy RL of a decoder against a reward model (or an ensemble, or a
//! baseline scorer), with a KL penalty to a frozen reference.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use rewardkit_eval::Baseline;
use rewardkit_goodhart::combine::Combine;
use rewardkit_model::{LoadedModel, ModelScorer, Policy};
use rewardkit_rl::{
    EnsembleReward, Gsm8kGold, KlEstimator, Reward, RlPrompt, RlRun, RlRunConfig, RlStepLog,
    ScorerReward, UrlReward, UrlRewardConfig,
};

use super::policy_args::{read_run_config, resume_command, OptimArgs, StartArgs};
use super::print_json;

/// How the scores of several reward models become one reward.
#[derive(Clone, Copy, ValueEnum)]
enum CombineRule {
    Mean,
    Min,
    /// mean − λ·variance (λ from --lambda).
    MeanMinusVar,
    /// mean − λ·standard deviation (λ from --lambda).
    MeanMinusStd,
}

#[derive(Args)]
pub struct RlArgs {
    /// A run config (TOML or JSON) with the fields of this command (`model`, `reference`,
    /// `prompts`, `raw_prompts`, `reward_models`, `reward_baseline`, `reward_url`, `combine`,
    /// `reward_batch_size`, `gold_gsm8k`, `gold_model`, `eval_prompts`, `out`, and `[rl]`: every setting of
    /// rewardkit_rl::RlConfig); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The policy: a GGUF file (Llama family, e.g. SmolLM2) or an HF causal-LM folder (e.g.
    /// `sft`'s final/).
    #[arg(long, env = "REWARDKIT_POLICY")]
    model: Option<PathBuf>,
    /// The frozen reference of the KL penalty (default: --model, loaded again). It must share
    /// the policy's vocabulary.
    #[arg(long, env = "REWARDKIT_REF_MODEL")]
    reference: Option<PathBuf>,
    /// Prompt files: JSONL (or JSON array, gzip, Parquet) with `prompt` (the user's message) and
    /// optionally `id`.
    #[arg(long, num_args = 1..)]
    prompts: Vec<PathBuf>,
    /// Feed the prompts as they are; by default a model with a chat template gets each prompt
    /// as a user turn in its chat format (the reward always sees the plain prompt).
    #[arg(long)]
    raw_prompts: bool,
    /// A reward model folder (repeat for an ensemble, combined by --combine). The reward of a
    /// sample is its score of (prompt, response).
    #[arg(long = "reward-model", num_args = 1..)]
    reward_models: Vec<PathBuf>,
    /// A baseline scorer as the reward instead of a model: length (characters), length-words,
    /// random[:SEED].
    #[arg(long, conflicts_with = "reward_models")]
    reward_baseline: Option<String>,
    /// A running `rewardkit serve` as the reward instead of a model folder: `http://HOST:PORT`
    /// (or its full `/v1/score` URL). Each step's samples go in one `POST /v1/score` (of at
    /// most --reward-batch-size items, default 256 here); 429 and 503 answers are retried
    /// after their Retry-After (up to 8 times), anything else stops the run with the server's
    /// message. Plain http:// only. An ensemble is the server's own (`serve --combine`).
    #[arg(long, conflicts_with_all = ["reward_models", "reward_baseline", "combine"])]
    reward_url: Option<String>,
    /// The API key of the --reward-url server (its `serve --api-key`), sent as
    /// `Authorization: Bearer KEY`; never written to the run's config or checkpoints.
    #[arg(
        long,
        env = "REWARDKIT_API_KEY",
        hide_env_values = true,
        requires = "reward_url"
    )]
    reward_api_key: Option<String>,
    /// How an ensemble's scores become one reward (Coste et al. 2023).
    #[arg(long, value_enum)]
    combine: Option<CombineRule>,
    /// λ of mean-minus-var and mean-minus-std (default 1).
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    /// Sequences per reward-model forward pass (default 16); with --reward-url, items per
    /// request (default 256).
    #[arg(long, value_parser = super::at_least_one)]
    reward_batch_size: Option<usize>,
    /// Gold, logged per step: GSM8K's final-number check against this answers file
    /// (`question`, `answer` ending in `#### N`); the prompts must be its questions.
    #[arg(long, conflicts_with = "gold_model")]
    gold_gsm8k: Option<PathBuf>,
    /// Gold, logged per step: the mean score of this reward model on the same samples.
    #[arg(long)]
    gold_model: Option<PathBuf>,
    /// Held-out prompt files (as --prompts; RL never trains on them): with a gold function,
    /// gold and the reward are measured on them every --eval-every steps and at the end, with
    /// the same random streams each time (common random numbers), mean ± standard error in
    /// the log's `eval` field. For --gold-gsm8k they must be questions of its answers file.
    #[arg(long, num_args = 1..)]
    eval_prompts: Vec<PathBuf>,
    /// Evaluate on --eval-prompts before every N-th step (default 1: every step; 0: never)
    /// and once at the end.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Samples per held-out prompt, at least 2 (default 4).
    #[arg(long)]
    eval_samples_per_prompt: Option<usize>,
    /// Output folder: checkpoint-N/, final/ (an HF causal-LM folder), metrics.jsonl (one line
    /// per step: step, proxy_mean, proxy_std, reward_mean, kl, sqrt_kl, kl_k3, entropy,
    /// response_length, finished, clip_fraction, gold, loss, grad_norm, learning_rate, seconds).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    start: StartArgs,
    /// B: prompts per step (default 8).
    #[arg(long, value_parser = super::at_least_one)]
    prompts_per_step: Option<usize>,
    /// k: samples per prompt, at least 2 (default 4).
    #[arg(long)]
    samples_per_prompt: Option<usize>,
    /// New tokens per sample at most, EOS included (default 32).
    #[arg(long, value_parser = super::at_least_one)]
    max_new_tokens: Option<usize>,
    /// Sampling temperature, > 0 (default 1); the objective's log-probabilities use it too.
    #[arg(long)]
    temperature: Option<f64>,
    /// Nucleus sampling in (0, 1] (default 1: off).
    #[arg(long)]
    top_p: Option<f64>,
    /// β, the weight of the KL penalty to the reference (default 0.05).
    #[arg(long)]
    beta: Option<f64>,
    /// Where the KL enters: k1-in-reward (r − β·Σ k1 per sequence, as TRL's PPO/RLOO and
    /// OpenRLHF; unbiased, higher variance) or k3-in-loss (β·k3 per token in the loss, as GRPO;
    /// low variance, biased). Default k1-in-reward.
    #[arg(long, value_enum)]
    kl_estimator: Option<KlEstimator>,
    /// Divide each prompt's RLOO advantages by the std of its k rewards (GRPO).
    #[arg(long)]
    group_std: bool,
    /// μ: PPO passes over each step's samples (default 1).
    #[arg(long, value_parser = super::at_least_one)]
    ppo_epochs: Option<usize>,
    /// Optimizer steps per pass: the samples are split into this many minibatches (default 1).
    #[arg(long, value_parser = super::at_least_one)]
    minibatches: Option<usize>,
    /// ε of the PPO clip: ratios are kept in [1 − ε, 1 + ε] (default 0.2).
    #[arg(long)]
    clip_range: Option<f64>,
    /// Whiten the scores over each step's samples (before the KL penalty).
    #[arg(long)]
    whiten_rewards: bool,
    /// Clip the scores to [−C, C] first.
    #[arg(long)]
    reward_clip: Option<f64>,
    /// Steps: each samples B × k responses, scores them and updates (default 100).
    #[arg(long, value_parser = super::at_least_one)]
    max_steps: Option<usize>,
    /// Stop once a step's mean KL exceeds this many nats per sequence.
    #[arg(long)]
    target_kl: Option<f64>,
    /// Sequences per policy forward pass (memory only; default 16).
    #[arg(long, value_parser = super::at_least_one)]
    forward_batch_size: Option<usize>,
    #[command(flatten)]
    optim: OptimArgs,
    #[command(flatten)]
    lora: super::lora_args::LoraArgs,
    /// Seed of the prompt order, the samples and the minibatches (default 42).
    #[arg(long)]
    seed: Option<u64>,
    /// Save a checkpoint every N steps (and always at the end).
    #[arg(long)]
    save_every: Option<usize>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl RlArgs {
    fn resolve(&self) -> anyhow::Result<RlRunConfig> {
        let mut c = match &self.config {
            Some(p) => read_run_config(p, RlRunConfig::parse)?,
            None => RlRunConfig::default(),
        };
        let path = |flag: &Option<PathBuf>, field: &mut Option<PathBuf>| {
            if flag.is_some() {
                field.clone_from(flag);
            }
        };
        path(&self.model, &mut c.model);
        path(&self.reference, &mut c.reference);
        path(&self.gold_gsm8k, &mut c.gold_gsm8k);
        path(&self.gold_model, &mut c.gold_model);
        path(&self.out, &mut c.out);
        if !self.prompts.is_empty() {
            c.prompts.clone_from(&self.prompts);
        }
        if !self.eval_prompts.is_empty() {
            c.eval_prompts.clone_from(&self.eval_prompts);
        }
        if !self.reward_models.is_empty() {
            c.reward_models.clone_from(&self.reward_models);
        }
        if self.reward_baseline.is_some() {
            c.reward_baseline.clone_from(&self.reward_baseline);
        }
        if self.reward_url.is_some() {
            c.reward_url.clone_from(&self.reward_url);
        }
        c.raw_prompts |= self.raw_prompts;
        if let Some(rule) = self.combine {
            let lambda = self.lambda;
            c.combine = Some(match rule {
                CombineRule::Mean => Combine::Mean,
                CombineRule::Min => Combine::Min,
                CombineRule::MeanMinusVar => Combine::MeanMinusVar { lambda },
                CombineRule::MeanMinusStd => Combine::MeanMinusStd { lambda },
            });
        }
        let default_batch = if c.reward_url.is_some() { 256 } else { 16 };
        c.reward_batch_size = self
            .reward_batch_size
            .unwrap_or(if c.reward_batch_size == 0 {
                default_batch
            } else {
                c.reward_batch_size
            });
        let r = &mut c.rl;
        macro_rules! set {
            ($($flag:ident),*) => { $( if let Some(v) = self.$flag { r.$flag = v; } )* };
        }
        set!(
            prompts_per_step,
            samples_per_prompt,
            max_new_tokens,
            temperature,
            top_p,
            beta,
            kl_estimator,
            ppo_epochs,
            minibatches,
            clip_range,
            max_steps,
            forward_batch_size,
            seed,
            save_every,
            eval_every,
            eval_samples_per_prompt
        );
        r.group_std |= self.group_std;
        r.whiten_rewards |= self.whiten_rewards;
        if self.reward_clip.is_some() {
            r.reward_clip = self.reward_clip;
        }
        if self.target_kl.is_some() {
            r.target_kl = self.target_kl;
        }
        self.optim.apply(&mut r.optim);
        self.lora.apply(&mut c.lora)?;
        let r = &mut c.rl;
        r.validate()
            .map_err(|e| crate::Usage(format!("invalid RL configuration: {e}")))?;
        Ok(c)
    }
}

fn usage(m: &str) -> anyhow::Error {
    crate::Usage(m.into()).into()
}

/// The prompts of every file, formatted for the policy unless `config.raw_prompts`.
fn read_prompts(
    config: &RlRunConfig,
    files: &[PathBuf],
    policy: &Policy,
) -> anyhow::Result<Vec<RlPrompt>> {
    let mut prompts = Vec::new();
    for path in files {
        for p in rewardkit_goodhart::pool::read_prompts(path)? {
            let input = if policy.chat_template().is_some() && !config.raw_prompts {
                policy.format_prompt(&p.text)?
            } else {
                p.text.clone()
            };
            prompts.push(RlPrompt {
                input,
                prompt: p.text,
            });
        }
    }
    Ok(prompts)
}

fn load_models(dirs: &[PathBuf]) -> anyhow::Result<Vec<LoadedModel>> {
    dirs.iter()
        .map(|d| {
            super::load_for_scoring(d, None, None)
                .with_context(|| format!("loading {}", d.display()))
        })
        .collect()
}

pub fn run(args: RlArgs) -> anyhow::Result<u8> {
    let c = args.resolve()?;
    let model = c
        .model
        .clone()
        .ok_or_else(|| usage("no model: pass --model (or `model` in --config)"))?;
    let out = c
        .out
        .clone()
        .ok_or_else(|| usage("no output folder: pass --out DIR (or `out` in --config)"))?;
    if c.prompts.is_empty() {
        return Err(usage(
            "no prompts: pass --prompts FILE… (or `prompts` in --config)",
        ));
    }
    let rewards = usize::from(!c.reward_models.is_empty())
        + usize::from(c.reward_baseline.is_some())
        + usize::from(c.reward_url.is_some());
    if rewards == 0 {
        return Err(usage(
            "no reward: pass --reward-model DIR…, --reward-baseline or --reward-url",
        ));
    }
    if rewards > 1 {
        return Err(usage(
            "one reward only: --reward-model, --reward-baseline or --reward-url",
        ));
    }
    if c.reward_models.len() > 1 && c.combine.is_none() {
        return Err(usage("several reward models need --combine"));
    }
    let mut policy =
        Policy::load(&model).with_context(|| format!("loading {}", model.display()))?;
    if c.lora.enabled() {
        policy = policy.with_lora(&c.lora, &model)?;
    }
    let reference = match &c.reference {
        Some(path) => Policy::load(path).with_context(|| format!("loading {}", path.display()))?,
        // Fresh adapters: the reference is the policy with them off (the same base weights).
        None if c.lora.enabled() => policy.reference()?,
        None => Policy::load(&model).with_context(|| format!("loading {}", model.display()))?,
    };
    let prompts = read_prompts(&c, &c.prompts, &policy)?;
    let eval_prompts = read_prompts(&c, &c.eval_prompts, &policy)?;
    if !eval_prompts.is_empty() && c.gold_gsm8k.is_none() && c.gold_model.is_none() {
        return Err(usage(
            "--eval-prompts needs a gold function: --gold-gsm8k or --gold-model",
        ));
    }
    let models = load_models(&c.reward_models)?;
    let scorers: Vec<ModelScorer> = models
        .iter()
        .map(|m| ModelScorer::new(m, c.reward_batch_size))
        .collect();
    let baseline = c
        .reward_baseline
        .as_deref()
        .map(Baseline::parse)
        .transpose()
        .map_err(|e| usage(&format!("--reward-baseline: {e}")))?;
    let url = c
        .reward_url
        .as_ref()
        .map(|u| {
            UrlReward::new(UrlRewardConfig {
                api_key: args.reward_api_key.clone(),
                batch_size: c.reward_batch_size,
                ..UrlRewardConfig::new(u.as_str())
            })
        })
        .transpose()
        .map_err(|e| usage(&format!("--reward-url: {e}")))?;
    let mut reward: Box<dyn Reward> = match (url, &baseline, scorers.len()) {
        (Some(u), _, _) => Box::new(u),
        (None, Some(b), _) => Box::new(ScorerReward(b)),
        (None, None, 1) => Box::new(ScorerReward(&scorers[0])),
        (None, None, _) => Box::new(EnsembleReward {
            members: &scorers,
            combine: c.combine.unwrap_or(Combine::Mean),
        }),
    };
    let gold_models = load_models(c.gold_model.as_slice())?;
    let gold_scorer = gold_models
        .first()
        .map(|m| ModelScorer::new(m, c.reward_batch_size));
    let (mut gsm8k, mut gold_model);
    let gold: Option<&mut dyn Reward> = match (&c.gold_gsm8k, &gold_scorer) {
        (Some(path), _) => {
            gsm8k = Gsm8kGold::new(rewardkit_goodhart::pool::gsm8k_answers(path)?);
            Some(&mut gsm8k)
        }
        (None, Some(s)) => {
            gold_model = ScorerReward(s);
            Some(&mut gold_model)
        }
        (None, None) => None,
    };
    eprintln!(
        "policy {}: {} parameters; {} prompts ({} held out); reward {}",
        model.display(),
        policy.params().num_params(),
        prompts.len(),
        eval_prompts.len(),
        reward.name()
    );
    let run = RlRun {
        prompts: &prompts,
        eval_prompts: &eval_prompts,
        out: Some(&out),
        start: args.start.start(),
        stop: Some(crate::signals::stop_on_signal()),
    };
    let pb = crate::progress::bar(0, "steps");
    let summary = rewardkit_rl::rl(
        &policy,
        &reference,
        &c.rl,
        &run,
        reward.as_mut(),
        gold,
        |e| super::sft::on_event(&pb, e, step_line),
    )?;
    pb.finish_and_clear();
    let interrupted = summary.stop == rewardkit_rl::StopReason::Interrupted;
    if interrupted {
        eprintln!(
            "interrupted at step {}; resume with:\n  {}",
            summary.steps,
            resume_command()
        );
    } else if let Some(dir) = &summary.final_dir {
        eprintln!(
            "{} steps in {:.1} s ({:?}); final policy in {}",
            summary.steps,
            summary.seconds,
            summary.stop,
            dir.display()
        );
    }
    if let Some(e) = &summary.final_eval {
        eprintln!(
            "held-out evaluation after {} updates ({} samples): gold {:.3} ± {:.3}{}",
            e.updates,
            e.samples,
            e.gold,
            e.gold_se,
            proxy_text(e.proxy, e.proxy_se)
        );
    }
    if args.json {
        print_json(&summary)?;
    }
    Ok(if interrupted {
        super::train::INTERRUPTED
    } else {
        0
    })
}

fn proxy_text(mean: Option<f64>, se: Option<f64>) -> String {
    match (mean, se) {
        (Some(m), Some(se)) => format!(", proxy {m:.3} ± {se:.3}"),
        _ => String::new(),
    }
}

fn step_line(s: &RlStepLog) -> (usize, String) {
    let mut gold = s.gold.map(|g| format!(" gold {g:.3}")).unwrap_or_default();
    if let Some(e) = &s.eval {
        gold += &format!(" held-out gold {:.3} ± {:.3}", e.gold, e.gold_se);
    }
    let text = format!(
        "step {}/{}: proxy {:.3} ± {:.3}{gold} KL {:.3} (√ {:.3}) entropy {:.3} length {:.1} clip {:.2} ({:.1} s)",
        s.step,
        s.total_steps,
        s.proxy_mean,
        s.proxy_std,
        s.kl,
        s.sqrt_kl,
        s.entropy,
        s.response_length,
        s.clip_fraction,
        s.generate_s + s.score_s + s.update_s
    );
    (s.step, text)
}
