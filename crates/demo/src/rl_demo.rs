//! `rewardkit demo rl`: Goodhart's law under RL in the built-in world.
//!
//! 1. The world and its reward models, exactly as `rewardkit demo` trains them (the proxy on
//!    biased labels, its bootstrap ensemble, the control on unbiased labels).
//! 2. The base policy distilled by SFT into the world's tiny decoder ([`crate::decoder`]),
//!    checked against the base policy on `check_samples` samples (correct share and filler
//!    counts, read back from the decoded texts by [`World::read_response`]).
//! 3. Best-of-n of the base policy against the proxy (the curve RL is compared with).
//! 4. RL runs from the distilled decoder ([`crate::rl_runs`]), gold and the proxy measured
//!    before every step on a fixed evaluation with common random numbers; each run summarised
//!    and fitted ([`rewardkit_goodhart::rl`]).

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use rewardkit_goodhart::analysis::{analyze, Selector};
use rewardkit_goodhart::bon::default_ns;
use rewardkit_goodhart::rl::RlCurveRow;
use rewardkit_goodhart::rl_story::{RlReport, RlTimings, SftSummary};
use rewardkit_model::{ArchConfig, GenerationConfig, Policy};
use rewardkit_rl::{sft, Event, OptimConfig, RlConfig, SftConfig, SftRun};

use crate::decoder::{decoder_prompt, sft_rows, write_decoder_folder, DecoderShape, EOS_ID};
use crate::demo::{reward_models, score_pool, DemoConfig, DemoError, DemoEvent};
use crate::rl_runs::{run_all, RunsConfig};
use crate::world::{profile_of, World};

/// Everything `rewardkit demo rl` does; every field has a default.
///
/// The defaults were tuned with seed 0 on the 2-core machine (see `docs/goodhart.md`, *RL in
/// the built-in world*).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct RlDemoConfig {
    /// Seeds everything (replaces `demo.seed`).
    pub seed: u64,
    /// The world, labelers and reward models (`rewardkit demo`'s settings; its
    /// `pool_prompts` × `samples_per_prompt` is the best-of-n pool).
    pub demo: DemoConfig,
    pub decoder: DecoderShape,
    /// Base-policy rows the decoder is distilled on.
    pub sft_rows: usize,
    pub sft: SftConfig,
    /// Samples of the distilled decoder checked against the base policy.
    pub check_samples: usize,
    /// The RL settings of every run (each run sets its own `beta`; `max_steps` is the run's
    /// length).
    pub rl: RlConfig,
    pub runs: RunsConfig,
    /// Steps of the centred moving average the summaries read gold and proxy through.
    pub window: usize,
}

impl Default for RlDemoConfig {
    fn default() -> Self {
        RlDemoConfig {
            seed: 0,
            demo: DemoConfig::default(),
            decoder: DecoderShape::default(),
            sft_rows: 6000,
            sft: SftConfig {
                batch_size: 32,
                // Seed 0, 4,000 samples: at 3 epochs the decoder was correct 5.4 points less
                // often than the base policy; at 6, 1.6 points (filler-share gap 0.12 → 0.09).
                epochs: 6.0,
                max_length: Some(128),
                optim: OptimConfig {
                    learning_rate: 2e-3,
                    warmup_ratio: 0.05,
                    ..OptimConfig::default()
                },
                seed: 0,
                log_every: 10,
                ..SftConfig::default()
            },
            check_samples: 1000,
            rl: RlConfig {
                prompts_per_step: 16,
                samples_per_prompt: 4,
                max_new_tokens: 80,
                beta: 0.0,
                max_steps: 40,
                optim: OptimConfig {
                    learning_rate: 2e-4,
                    schedule: rewardkit_rl::Schedule::Constant,
                    ..OptimConfig::default()
                },
                forward_batch_size: 32,
                seed: 0,
                // 20 items × 32: gold's standard error per step about 0.02 (at 8 it was
                // 0.038, as large as the drawdowns the control is held to), for a few seconds
                // a run: the world's decoder is tiny.
                eval_samples_per_prompt: 32,
                ..RlConfig::default()
            },
            runs: RunsConfig::default(),
            window: 7,
        }
    }
}

/// What `rewardkit demo rl` produces: the report and every row of `rl_curves.jsonl`.
pub struct RlDemoOutput {
    pub report: RlReport<RlDemoConfig>,
    pub rows: Vec<RlCurveRow>,
}

fn validate(c: &RlDemoConfig) -> Result<(), DemoError> {
    let bad = |m: String| Err(DemoError::Config(m));
    c.decoder.validate().map_err(DemoError::Config)?;
    c.sft
        .validate()
        .map_err(|e| DemoError::Config(format!("sft: {e}")))?;
    c.rl.validate()
        .map_err(|e| DemoError::Config(format!("rl: {e}")))?;
    if c.sft_rows == 0 || c.check_samples == 0 || c.window == 0 {
        return bad("sft_rows, check_samples and window must be at least 1".into());
    }
    c.runs.validate().map_err(DemoError::Config)
}

/// Runs `rewardkit demo rl`, writing models under `out/models/`.
pub fn run_rl(
    config: &RlDemoConfig,
    out: &Path,
    progress: &mut dyn FnMut(DemoEvent),
) -> Result<RlDemoOutput, DemoError> {
    validate(config)?;
    let started = Instant::now();
    let mut timings = RlTimings::default();
    let demo = DemoConfig {
        seed: config.seed,
        ..config.demo.clone()
    };
    let t = Instant::now();
    let models = reward_models(&demo, out, progress)?;
    timings.reward_models = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let policy = distil(config, &models.world, out, progress)?;
    let sft_summary = check_decoder(config, &models.world, &policy.0, policy.1, progress)?;
    timings.sft = t.elapsed().as_secs_f64();
    progress(DemoEvent::Log(&format!(
        "decoder: correct {:.3} (base policy {:.3}), largest filler-share gap {:.3}, well-formed {:.3}",
        sft_summary.decoder.correct, sft_summary.base.correct, sft_summary.filler_gap, sft_summary.well_formed
    )));

    let t = Instant::now();
    let pool = models
        .world
        .pool(demo.pool_prompts, demo.samples_per_prompt, config.seed);
    let scores = score_pool(
        &pool,
        &[&models.members[0]],
        demo.score_batch_size,
        progress,
    )?;
    let analysis = analyze(
        &scores,
        &[Selector::Proxy { member: 0 }],
        &default_ns(demo.samples_per_prompt),
    )?;
    let best_of_n = analysis
        .curves
        .into_iter()
        .next()
        .ok_or_else(|| DemoError::Config("best-of-n gave no curve".into()))?;
    timings.best_of_n = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let results = run_all(config, &models, &policy.0, progress)?;
    timings.rl = t.elapsed().as_secs_f64();
    timings.total = started.elapsed().as_secs_f64();

    let mut reward_models_summary = models.summaries.clone();
    reward_models_summary.push(models.control_summary.clone());
    Ok(RlDemoOutput {
        report: RlReport {
            config: config.clone(),
            items: models.world.items().len(),
            reward_models: reward_models_summary,
            sft: sft_summary,
            best_of_n,
            runs: results.runs,
            rounds: results.rounds,
            timings,
        },
        rows: results.rows,
    })
}

/// The decoder: initialised from the seed, distilled by SFT on base-policy rows, saved to
/// `out/models/decoder-sft`. Returns it with its SFT summary.
fn distil(
    config: &RlDemoConfig,
    world: &World,
    out: &Path,
    progress: &mut dyn FnMut(DemoEvent),
) -> Result<(Policy, rewardkit_rl::SftSummary), DemoError> {
    let init = out.join("models").join("decoder-init");
    write_decoder_folder(world, &config.decoder, &init)?;
    let arch = ArchConfig::from_file(&init.join("config.json"))?;
    let tokenizer = tokenizers::Tokenizer::from_file(init.join("tokenizer.json"))
        .map_err(|e| DemoError::Config(format!("the decoder's tokenizer: {e}")))?;
    let policy = Policy::from_scratch(&arch, tokenizer, EOS_ID, config.seed)?;
    let rows = sft_rows(world, config.sft_rows, config.seed);
    let stage = "distilling the base policy (SFT)";
    let mut started = false;
    let t = Instant::now();
    let summary = sft(&policy, &config.sft, &SftRun::in_memory(&rows), |event| {
        match event {
            Event::Start { total_steps, .. } if !started => {
                started = true;
                progress(DemoEvent::Stage {
                    name: stage,
                    total: total_steps,
                    unit: "steps",
                });
            }
            Event::Step(s) => progress(DemoEvent::Progress { done: s.step }),
            _ => {}
        }
        std::ops::ControlFlow::Continue(())
    })?;
    progress(DemoEvent::Finished {
        name: stage,
        seconds: t.elapsed().as_secs_f64(),
    });
    let dir = out.join("models").join("decoder-sft");
    rewardkit_io::write_dir(&dir, |tmp| policy.save(tmp).map_err(DemoError::from))?;
    Ok((policy, summary))
}

/// Samples the decoder (`check_samples`, spread evenly over the items) and compares what they
/// say with the base policy's exact profile.
fn check_decoder(
    config: &RlDemoConfig,
    world: &World,
    policy: &Policy,
    summary: rewardkit_rl::SftSummary,
    progress: &mut dyn FnMut(DemoEvent),
) -> Result<SftSummary, DemoError> {
    let items = world.items();
    let prompts: Vec<String> = items.iter().map(decoder_prompt).collect();
    let per_item = config.check_samples.div_ceil(items.len().max(1));
    let generation = GenerationConfig {
        max_new_tokens: config.rl.max_new_tokens,
        temperature: 1.0,
        top_p: 1.0,
        seed: config.seed,
        batch_size: 64,
    };
    let stage = "sampling the distilled decoder";
    progress(DemoEvent::Stage {
        name: stage,
        total: prompts.len() * per_item,
        unit: "samples",
    });
    let t = Instant::now();
    let samples = policy.generate(&prompts, per_item, &generation, &mut |done| {
        progress(DemoEvent::Progress { done })
    })?;
    progress(DemoEvent::Finished {
        name: stage,
        seconds: t.elapsed().as_secs_f64(),
    });
    let reads: Vec<_> = samples
        .iter()
        .map(|s| world.read_response(&items[s.prompt_index], &s.text))
        .collect();
    let decoder = profile_of(reads.iter().map(|r| &r.attrs));
    let base = world.base_profile();
    let (correct_gap, filler_gap) = decoder.gaps(&base);
    let well_formed =
        reads.iter().filter(|r| r.well_formed).count() as f64 / reads.len().max(1) as f64;
    Ok(SftSummary {
        rows: config.sft_rows,
        steps: summary.steps,
        seconds: summary.seconds,
        base,
        decoder,
        well_formed,
        correct_gap,
        filler_gap,
    })
}
