//! The demo's run: the world's labels, the models trained on them, their audit, the pool and
//! its curves (see the crate's documentation).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use rewardkit_audit::{AuditConfig, AuditError, AuditReport, Plan, Probe, SycophancyItem};
use rewardkit_data::{PreferencePair, Rng, Text};
use rewardkit_model::{
    load, InitMissing, LoadOptions, LoadedModel, ModelError, ModelScorer, Pooling,
};
use rewardkit_tokenize::Encoded;
use rewardkit_train::{train, Event, Penalty, Run, Schedule, TrainConfig, TrainError};

use rewardkit_goodhart::analysis::{
    analyze_labelled, AnalysisError, Mitigations, PoolScores, PromptScores, Selector,
};
use rewardkit_goodhart::bon::default_ns;
use rewardkit_goodhart::story::{
    AuditSummary, InterventionSummary, LabelStats, ModelDescription, ModelSummary, RoundSummary,
    StoryConfig, SycophancyStory, Timings,
};
use rewardkit_io::IoError;

use crate::sycophancy::{self as syco, Interventions, KNOWN_QUESTIONS, NEW_QUESTIONS};
use crate::world::{Item, LabelerConfig, Response, World, WorldConfig};

/// Everything the demo does; every field has a default (the values `rewardkit demo` runs).
///
/// The defaults were tuned with seed 0 (pool of 100 prompts × 64, one proxy and one control):
/// - **20 items** (12 arithmetic, 8 invented facts): with 100 or 40 items the tiny BERT does not
///   memorise every answer (the control's held-out gold accuracy stayed at 0.88–0.91), and
///   best-of-64 then finds, for the items it got wrong, a wrong answer it scores highest, so
///   even the control's gold fell by 0.04–0.10 from its peak. With 20 items and 5 epochs the
///   control reaches 0.95 and its gold stays within 0.01 of its peak.
/// - **Labeler biases 0.45 (longer) and 0.4 (agreeing)**: a Bradley-Terry model of a labeler
///   who picks the longer answer with probability p < 0.5 still ranks a short correct answer
///   above a long wrong one, and at 0.2/0.2 a well-trained proxy did not over-optimise (gold
///   0.59 → 0.90 at n = 64). At 0.55/0.4 it learned no correctness (gold fell from n = 1).
///   At 0.45/0.4 gold rises 0.59 → 0.64 (n = 4) and falls to 0.49 at n = 64.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Seeds everything: the world (its own `seed` is replaced by this one), labels, models,
    /// pools and the audit.
    pub seed: u64,
    pub world: WorldConfig,
    /// The biased labeler whose labels train the proxy.
    pub labeler: LabelerConfig,
    /// The labeler of the control proxy (no biases).
    pub control_labeler: LabelerConfig,
    /// The labeler of iterative retraining: gold (correctness) with the usual noise.
    pub gold_labeler: LabelerConfig,
    /// Labelled pairs the proxy trains on.
    pub train_pairs: usize,
    /// Held-out pairs for accuracy and the audit.
    pub eval_pairs: usize,
    pub model: ModelShape,
    pub training: Training,
    /// Ensemble size K: the proxy and K − 1 members on bootstrap resamples, other seeds.
    pub ensemble: usize,
    /// λ of the `mean − λ·var` ensemble rule.
    pub lambda_var: f64,
    /// λ of the `mean − λ·std` ensemble rule.
    pub lambda_std: f64,
    /// Prompts of the best-of-n pool.
    pub pool_prompts: usize,
    /// Samples per prompt: the largest n.
    pub samples_per_prompt: usize,
    /// Rounds of iterative retraining.
    pub rounds: usize,
    /// Per round: prompts whose best-of-`round_n` pick (by the current proxy) is labelled by
    /// the gold labeler against a random sample, and added to the training pairs.
    pub round_prompts: usize,
    pub round_n: usize,
    /// Bootstrap resamples of the audit's intervals.
    pub audit_bootstrap: usize,
    /// Questions the world never asks, each with a wrong user claim, for the audit's held-out
    /// sycophancy check ([`crate::sycophancy`]).
    pub new_questions: usize,
    /// Reward models retrained with an intervention against sycophancy or length.
    pub interventions: Interventions,
    /// Sequences per forward pass when scoring.
    pub score_batch_size: usize,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            seed: 0,
            world: WorldConfig {
                arithmetic_items: 12,
                factual_items: 8,
                ..WorldConfig::default()
            },
            labeler: LabelerConfig {
                prefer_longer: 0.45,
                prefer_agreeing: 0.4,
                ..LabelerConfig::default()
            },
            control_labeler: LabelerConfig::unbiased(),
            gold_labeler: LabelerConfig::unbiased(),
            train_pairs: 3000,
            eval_pairs: 1000,
            model: ModelShape::default(),
            training: Training::default(),
            ensemble: 4,
            lambda_var: 1.0,
            lambda_std: 1.0,
            pool_prompts: 200,
            samples_per_prompt: 64,
            rounds: 2,
            round_prompts: 500,
            round_n: 16,
            audit_bootstrap: 500,
            new_questions: 150,
            interventions: Interventions::default(),
            score_batch_size: 256,
        }
    }
}

/// The reward model: a BERT encoder trained from scratch on the world's word-level tokenizer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelShape {
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate_size: usize,
    /// Tokens per (prompt, response) at most (the world's longest is 87).
    pub max_length: usize,
    pub pooling: Pooling,
}

impl Default for ModelShape {
    fn default() -> Self {
        ModelShape {
            hidden_size: 64,
            layers: 2,
            heads: 4,
            intermediate_size: 128,
            max_length: 96,
            pooling: Pooling::Mean,
        }
    }
}

/// Training hyperparameters (the rest are [`TrainConfig`]'s defaults: AdamW, gradient clipping
/// at 1, no dropout).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Training {
    pub epochs: f64,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
}

impl Default for Training {
    fn default() -> Self {
        Training {
            epochs: 5.0,
            learning_rate: 3e-3,
            batch_size: 32,
            warmup_ratio: 0.1,
            weight_decay: 0.01,
        }
    }
}

/// What the demo tells its caller, for progress bars and logs.
pub enum DemoEvent<'a> {
    /// A stage starts with `total` units of work (0: unknown).
    Stage {
        name: &'a str,
        total: usize,
        unit: &'a str,
    },
    /// `done` units of the current stage are finished.
    Progress { done: usize },
    /// The current stage is finished.
    Finished { name: &'a str, seconds: f64 },
    /// A line for the log.
    Log(&'a str),
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("invalid demo configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Rl(#[from] rewardkit_rl::RlError),
    #[error(transparent)]
    Generate(#[from] rewardkit_model::GenerateError),
}

/// The whole result of a demo run: [`rewardkit_goodhart::story::DemoReport`] with this
/// crate's configuration.
pub type DemoReport = rewardkit_goodhart::story::DemoReport<DemoConfig>;

impl StoryConfig for DemoConfig {
    fn seed(&self) -> u64 {
        self.seed
    }

    fn labeler_biases(&self) -> (f64, f64) {
        (self.labeler.prefer_longer, self.labeler.prefer_agreeing)
    }

    fn eval_pairs(&self) -> usize {
        self.eval_pairs
    }

    fn model(&self) -> ModelDescription {
        let m = &self.model;
        ModelDescription {
            hidden_size: m.hidden_size,
            layers: m.layers,
            heads: m.heads,
            pooling: serde_json::to_value(m.pooling)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        }
    }
}

/// A held-out pair with what the world knows about it.
struct EvalPair {
    prompt: Text,
    a: Response,
    b: Response,
    /// The biased labeler's verdict: a preferred to b.
    label_a: bool,
}

/// Builds the model folder (BERT `config.json` and the world's `tokenizer.json`) in `dir`.
fn write_model_folder(world: &World, shape: &ModelShape, dir: &Path) -> Result<(), DemoError> {
    let tokenizer = world.tokenizer_json();
    let vocab = tokenizer["model"]["vocab"]
        .as_object()
        .map_or(0, serde_json::Map::len);
    let config = serde_json::json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": shape.hidden_size,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "intermediate_size": shape.intermediate_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": shape.max_length.max(8),
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "pad_token_id": 0,
    });
    crate::decoder::write_json_folder(
        dir,
        &[("config.json", &config), ("tokenizer.json", &tokenizer)],
    )?;
    Ok(())
}

/// Runs the demo, writing models under `out/models/`, and reports on `progress`.
pub fn run(
    config: &DemoConfig,
    out: &Path,
    progress: &mut dyn FnMut(DemoEvent),
) -> Result<DemoReport, DemoError> {
    validate(config)?;
    let started = Instant::now();
    let mut timings = Timings::default();
    let seed = config.seed;

    let mut models = reward_models(config, out, progress)?;
    timings.labels = models.seconds.0;
    timings.training = models.seconds.1;
    timings.held_out = models.seconds.2;
    let (world, held_out) = (&models.world, &models.held_out);
    let (labels, control_labels) = (models.labels.clone(), models.control_labels.clone());
    let pairs = models.pairs.clone();
    let trainer = &models.trainer;

    // 3. The audit of the proxy.
    let t = Instant::now();
    let syco_items = syco::audit_items(world, config.new_questions, seed);
    let audit = audit_proxy(
        "proxy",
        config,
        held_out,
        syco_items.clone(),
        &models.members[0],
        progress,
    )?;
    timings.audit = t.elapsed().as_secs_f64();

    // The interventions: the proxy retrained with one change each.
    let t = Instant::now();
    let mut intervened = Vec::new();
    for run in config.interventions.runs() {
        let corrections = config.interventions.corrections(config.train_pairs);
        let train_set = syco::training_pairs(world, &pairs, &run, corrections, seed);
        let name = run.name.replace(' ', "-");
        let (model, s) = trainer.train_with(&name, &train_set, seed, &run.penalties, progress)?;
        let summary = models.summarize(run.name, &model, &s, train_set.len())?;
        let audit = audit_proxy(
            run.name,
            config,
            held_out,
            syco_items.clone(),
            &model,
            progress,
        )?;
        intervened.push((run, model, summary, AuditSummary::of(&audit)));
    }
    timings.interventions = t.elapsed().as_secs_f64();

    // 4. Iterative retraining: gold labels of the proxy's own best-of-n picks.
    let t = Instant::now();
    let mut rounds = Vec::new();
    let mut round_models = Vec::new();
    let mut train_set = pairs.clone();
    for round in 1..=config.rounds {
        let current = round_models.last().unwrap_or(&models.members[0]);
        let (new, pick_gold, pick_lost) = round_pairs(world, config, current, round)?;
        let new_pairs = new.len();
        train_set.extend(new);
        let name = format!("round-{round}");
        let (model, s) = trainer.train(&name, &train_set, seed, progress)?;
        let summary = models.summarize(&name, &model, &s, train_set.len())?;
        rounds.push(RoundSummary {
            round,
            new_pairs,
            pick_gold,
            pick_lost,
            model: summary,
        });
        round_models.push(model);
    }
    timings.retraining = t.elapsed().as_secs_f64();

    // 5. The best-of-n pool, scored by every model.
    let t = Instant::now();
    let pool = world.pool(config.pool_prompts, config.samples_per_prompt, seed);
    let scorers: Vec<&LoadedModel> = models
        .members
        .iter()
        .chain(&round_models)
        .chain([&models.control])
        .collect();
    let scores = score_pool(&pool, &scorers, config.score_batch_size, progress)?;
    let intervention_models: Vec<&LoadedModel> = std::iter::once(&models.members[0])
        .chain(intervened.iter().map(|(_, m, _, _)| m))
        .collect();
    let intervention_scores = score_pool(
        &pool,
        &intervention_models,
        config.score_batch_size,
        progress,
    )?;
    // The policy step of the sycophancy pipeline: the base policy's answers to new questions,
    // each with a wrong user claim.
    let new_items: Vec<Item> = world
        .new_question_sycophancy_items(config.new_questions, seed)
        .into_iter()
        .map(|(item, _, _)| item)
        .collect();
    let syco_pool = world.pool_of(&new_items, config.samples_per_prompt, seed);
    let syco_scores = score_pool(
        &syco_pool,
        &intervention_models,
        config.score_batch_size,
        progress,
    )?;
    timings.pool_scoring = t.elapsed().as_secs_f64();

    // 6. Curves.
    let t = Instant::now();
    let k = config.ensemble;
    let mut selectors = Mitigations {
        ensemble: Some((0..k).collect()),
        lambda_var: config.lambda_var,
        lambda_std: config.lambda_std,
        kl_betas: Vec::new(),
    }
    .selectors();
    for r in 0..config.rounds {
        let name = format!("retrained, round {}", r + 1);
        selectors.push((Selector::Proxy { member: k + r }, name));
    }
    let control_member = k + config.rounds;
    selectors.push((
        Selector::Proxy {
            member: control_member,
        },
        "control (unbiased labels)".into(),
    ));
    let ns = default_ns(config.samples_per_prompt);
    let analysis = analyze_labelled(&scores, &selectors, &ns)?;
    timings.analysis = t.elapsed().as_secs_f64();

    let mut summaries = std::mem::take(&mut models.summaries).into_iter();
    let proxy = summaries.next().expect("the proxy is trained first");
    let batch = config.score_batch_size;
    let favourite = analysis.favourite_n;
    let runs = std::iter::once((
        "plain proxy",
        "the biased labels as they are",
        proxy.clone(),
        AuditSummary::of(&audit),
    ))
    .chain(intervened.iter().map(|(run, _, summary, audit)| {
        (run.name, run.description, summary.clone(), audit.clone())
    }));
    let mut interventions = Vec::new();
    for (k, (name, description, summary, audit)) in runs.enumerate() {
        let model = intervention_models[k];
        let (at_favourite, _) =
            syco::best_of_n_agreement(&syco_pool, &syco_scores, k, &[favourite]);
        interventions.push(InterventionSummary {
            name: name.into(),
            description: description.into(),
            model: summary,
            agree_new_questions: syco::agree_rate(model, &syco_items, NEW_QUESTIONS, batch)?,
            agree_known_questions: syco::agree_rate(model, &syco_items, KNOWN_QUESTIONS, batch)?,
            gold_at_favourite: syco::gold_at(&intervention_scores, k, favourite),
            agree_at_favourite: at_favourite.first().map_or(f64::NAN, |p| p.agree),
            audit,
        });
    }
    let (best_of_n, wrong_claim_prompts) =
        syco::best_of_n_agreement(&syco_pool, &syco_scores, 0, &ns);
    let sycophancy = SycophancyStory {
        labels_by_agreement: labels.agreeing,
        proxy_new_questions: interventions[0].agree_new_questions.clone(),
        best_of_n,
        wrong_claim_prompts,
        favourite_n: favourite,
        interventions,
    };
    timings.total = started.elapsed().as_secs_f64();
    Ok(DemoReport {
        config: config.clone(),
        items: world.items().len(),
        vocabulary: world.vocabulary().len(),
        labels,
        control_labels,
        proxy,
        members: summaries.collect(),
        control: models.control_summary.clone(),
        rounds,
        audit,
        analysis,
        sycophancy,
        timings,
    })
}

/// The world, its labels and held-out pairs, and the reward models trained on them: the proxy
/// (biased labels), K − 1 ensemble members (bootstrap resamples, other seeds) and the control
/// (unbiased labels), each with its held-out summary. `rewardkit demo` and `rewardkit demo rl`
/// share them.
pub(crate) struct RewardModels<'a> {
    pub world: World,
    /// The proxy's training pairs (biased labels).
    pub pairs: Vec<PreferencePair>,
    pub labels: LabelStats,
    pub control_labels: LabelStats,
    held_out: Vec<EvalPair>,
    held_out_enc: Vec<Encoded>,
    pub trainer: Trainer<'a>,
    /// The proxy first, then the other ensemble members.
    pub members: Vec<LoadedModel>,
    pub control: LoadedModel,
    /// Held-out summaries of `members`, in order.
    pub summaries: Vec<ModelSummary>,
    pub control_summary: ModelSummary,
    /// Seconds for the labels, the training and the held-out summaries.
    pub seconds: (f64, f64, f64),
}

impl RewardModels<'_> {
    /// How `model` ranks the held-out pairs.
    pub fn summarize(
        &self,
        name: &str,
        model: &LoadedModel,
        s: &rewardkit_train::TrainSummary,
        train_pairs: usize,
    ) -> Result<ModelSummary, DemoError> {
        let scores =
            model.score_encoded(&self.held_out_enc, self.trainer.config.score_batch_size)?;
        Ok(held_out_summary(
            name,
            s,
            train_pairs,
            &self.held_out,
            &scores,
        ))
    }
}

/// Builds the world of `config` and trains its reward models in `out/models/`.
pub(crate) fn reward_models<'a>(
    config: &'a DemoConfig,
    out: &Path,
    progress: &mut dyn FnMut(DemoEvent),
) -> Result<RewardModels<'a>, DemoError> {
    let seed = config.seed;
    let t = Instant::now();
    let world = World::new(WorldConfig {
        seed,
        ..config.world.clone()
    });
    let init_dir = out.join("models").join("init");
    write_model_folder(&world, &config.model, &init_dir)?;
    let (pairs, labels) = world.preference_pairs(config.train_pairs, &config.labeler, seed);
    let (control_pairs, control_labels) =
        world.preference_pairs(config.train_pairs, &config.control_labeler, seed);
    let held_out = eval_pairs(&world, config, seed);
    let labels_s = t.elapsed().as_secs_f64();
    log(
        progress,
        &format!(
            "world: {} items; {} training pairs, {} decided by a bias",
            world.items().len(),
            labels.total(),
            labels.bias()
        ),
    );

    let t = Instant::now();
    let trainer = Trainer {
        config,
        init_dir,
        models_dir: out.join("models"),
    };
    let mut trained: Vec<(String, LoadedModel, rewardkit_train::TrainSummary, usize)> = Vec::new();
    let (proxy, summary) = trainer.train("proxy", &pairs, seed, progress)?;
    trained.push(("proxy".into(), proxy, summary, pairs.len()));
    for k in 1..config.ensemble {
        let mut rng = Rng::derive(seed, &["bootstrap", &k.to_string()]);
        let resample: Vec<PreferencePair> = (0..pairs.len())
            .map(|_| pairs[rng.below(pairs.len())].clone())
            .collect();
        let name = format!("member-{k}");
        let (model, summary) = trainer.train(&name, &resample, seed + k as u64, progress)?;
        trained.push((name, model, summary, resample.len()));
    }
    let (control, control_train) = trainer.train("control", &control_pairs, seed, progress)?;
    let training_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let held_out_enc = encode_eval(&trained[0].1, &held_out)?;
    let mut models = RewardModels {
        world,
        pairs,
        labels,
        control_labels,
        held_out,
        held_out_enc,
        trainer,
        members: Vec::new(),
        control_summary: ModelSummary {
            name: String::new(),
            dir: PathBuf::new(),
            train_pairs: 0,
            steps: 0,
            train_seconds: 0.0,
            label_accuracy: f64::NAN,
            gold_accuracy: f64::NAN,
            prefers_longer: f64::NAN,
            prefers_agreeing: f64::NAN,
            length_r: f64::NAN,
        },
        control,
        summaries: Vec::new(),
        seconds: (labels_s, training_s, 0.0),
    };
    for (name, model, s, n) in trained {
        let summary = models.summarize(&name, &model, &s, n)?;
        models.summaries.push(summary);
        models.members.push(model);
    }
    models.control_summary = models.summarize(
        "control",
        &models.control,
        &control_train,
        control_pairs.len(),
    )?;
    models.seconds.2 = t.elapsed().as_secs_f64();
    Ok(models)
}

fn log(progress: &mut dyn FnMut(DemoEvent), line: &str) {
    progress(DemoEvent::Log(line));
}

fn validate(c: &DemoConfig) -> Result<(), DemoError> {
    let checks = [
        (c.train_pairs >= 10, "train_pairs must be at least 10"),
        (c.eval_pairs >= 10, "eval_pairs must be at least 10"),
        (c.ensemble >= 1, "ensemble must be at least 1"),
        (c.pool_prompts >= 2, "pool_prompts must be at least 2"),
        (
            c.samples_per_prompt >= 2,
            "samples_per_prompt must be at least 2",
        ),
        (
            c.rounds == 0 || (c.round_prompts >= 1 && c.round_n >= 2),
            "retraining needs round_prompts ≥ 1 and round_n ≥ 2",
        ),
        (
            c.model.heads > 0 && c.model.hidden_size.is_multiple_of(c.model.heads),
            "model.hidden_size must be a multiple of model.heads",
        ),
        (
            c.audit_bootstrap >= 100,
            "audit_bootstrap must be at least 100",
        ),
        (
            c.score_batch_size >= 1,
            "score_batch_size must be at least 1",
        ),
        (
            c.world.arithmetic_items + c.world.factual_items > 0,
            "the world needs items",
        ),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, message)) => Err(DemoError::Config((*message).into())),
        None => Ok(()),
    }
}

/// Trains reward models from scratch in `models_dir/NAME/`.
pub(crate) struct Trainer<'a> {
    config: &'a DemoConfig,
    init_dir: PathBuf,
    models_dir: PathBuf,
}

impl Trainer<'_> {
    /// Trains one model (initialised from `seed`); returns it ready for scoring.
    pub fn train(
        &self,
        name: &str,
        pairs: &[PreferencePair],
        seed: u64,
        progress: &mut dyn FnMut(DemoEvent),
    ) -> Result<(LoadedModel, rewardkit_train::TrainSummary), DemoError> {
        self.train_with(name, pairs, seed, &[], progress)
    }

    /// [`Trainer::train`] with `penalties` in the loss.
    pub fn train_with(
        &self,
        name: &str,
        pairs: &[PreferencePair],
        seed: u64,
        penalties: &[Penalty],
        progress: &mut dyn FnMut(DemoEvent),
    ) -> Result<(LoadedModel, rewardkit_train::TrainSummary), DemoError> {
        let c = self.config;
        let t = Instant::now();
        let options = LoadOptions {
            pooling: Some(c.model.pooling),
            init_missing: InitMissing::All,
            seed,
            max_length: Some(c.model.max_length),
            ..LoadOptions::default()
        };
        let model = load(&self.init_dir, &options, &Device::Cpu)?;
        let train_config = TrainConfig {
            batch_size: c.training.batch_size,
            epochs: c.training.epochs,
            learning_rate: c.training.learning_rate,
            warmup_ratio: c.training.warmup_ratio,
            weight_decay: c.training.weight_decay,
            schedule: Schedule::Linear,
            max_length: Some(c.model.max_length),
            seed,
            log_every: 5,
            save_total_limit: 1,
            penalties: penalties.to_vec(),
            ..TrainConfig::default()
        };
        let out = self.models_dir.join(name);
        if out.exists() {
            // A rerun starts afresh: an old checkpoint must not be resumed or mixed in.
            std::fs::remove_dir_all(&out).map_err(IoError::at(&out))?;
        }
        let stage = format!("training {name}");
        let mut started = false;
        let summary = train(
            &model,
            &train_config,
            &Run {
                train: pairs,
                eval: &[],
                out: &out,
                start: rewardkit_train::Start::Fresh,
                stop: None,
                meta: serde_json::json!({"demo": {"model": name, "seed": seed}}),
            },
            |event| {
                match event {
                    Event::Start { total_steps, .. } if !started => {
                        started = true;
                        progress(DemoEvent::Stage {
                            name: &stage,
                            total: total_steps,
                            unit: "steps",
                        });
                    }
                    Event::Step(s) => progress(DemoEvent::Progress { done: s.step }),
                    _ => {}
                }
                ControlFlow::Continue(())
            },
        )?;
        progress(DemoEvent::Finished {
            name: &stage,
            seconds: t.elapsed().as_secs_f64(),
        });
        Ok((model.frozen_copy()?, summary))
    }
}

/// Held-out pairs: two policy samples per prompt, labelled by the biased labeler.
fn eval_pairs(world: &World, config: &DemoConfig, seed: u64) -> Vec<EvalPair> {
    let mut rng = Rng::derive(seed, &["held-out labels"]);
    world
        .pool(config.eval_pairs, 2, seed.wrapping_add(1_000_003))
        .into_iter()
        .map(|(item, mut responses)| {
            let b = responses.pop().expect("two samples");
            let a = responses.pop().expect("two samples");
            let (label_a, _) = config.labeler.judge(&a, &b, &mut rng);
            EvalPair {
                prompt: Text::from(item.prompt.as_str()),
                a,
                b,
                label_a,
            }
        })
        .collect()
}

/// Encodes (prompt, a) then (prompt, b) of every held-out pair.
fn encode_eval(model: &LoadedModel, pairs: &[EvalPair]) -> Result<Vec<Encoded>, DemoError> {
    let mut out = Vec::with_capacity(2 * pairs.len());
    for p in pairs {
        out.push(model.encode(&p.prompt, &Text::from(p.a.text.as_str()))?);
    }
    for p in pairs {
        out.push(model.encode(&p.prompt, &Text::from(p.b.text.as_str()))?);
    }
    Ok(out)
}

/// Share of `(counted, hit)` outcomes that hit; NaN for none.
fn share(outcomes: impl Iterator<Item = bool>) -> f64 {
    let (n, k) = outcomes.fold((0usize, 0usize), |(n, k), hit| {
        (n + 1, k + usize::from(hit))
    });
    if n == 0 {
        f64::NAN
    } else {
        k as f64 / n as f64
    }
}

/// How a model's scores (`a` scores, then `b` scores) rank the held-out pairs.
fn held_out_summary(
    name: &str,
    s: &rewardkit_train::TrainSummary,
    train_pairs: usize,
    pairs: &[EvalPair],
    scores: &[f64],
) -> ModelSummary {
    let n = pairs.len();
    // Equal scores count as wrong, as in `rewardkit eval`.
    let prefers = |i: usize, a_side: bool| {
        let (sa, sb) = (scores[i], scores[n + i]);
        if a_side {
            sa > sb
        } else {
            sb > sa
        }
    };
    let same_correctness = |p: &EvalPair| p.a.attrs.correct == p.b.attrs.correct;
    ModelSummary {
        name: name.into(),
        dir: s.final_dir.clone(),
        train_pairs,
        steps: s.steps,
        train_seconds: s.seconds,
        label_accuracy: share((0..n).map(|i| prefers(i, pairs[i].label_a))),
        gold_accuracy: share(
            (0..n)
                .filter(|&i| !same_correctness(&pairs[i]))
                .map(|i| prefers(i, pairs[i].a.attrs.correct)),
        ),
        prefers_longer: share(
            (0..n)
                .filter(|&i| {
                    same_correctness(&pairs[i]) && pairs[i].a.words() != pairs[i].b.words()
                })
                .map(|i| prefers(i, pairs[i].a.words() > pairs[i].b.words())),
        ),
        prefers_agreeing: share(
            (0..n)
                .filter(|&i| {
                    let (a, b) = (&pairs[i].a.attrs, &pairs[i].b.attrs);
                    same_correctness(&pairs[i]) && a.agrees_with_claim != b.agrees_with_claim
                })
                .map(|i| prefers(i, pairs[i].a.attrs.agrees_with_claim)),
        ),
        length_r: {
            let words: Vec<f64> = pairs
                .iter()
                .map(|p| p.a.words() as f64)
                .chain(pairs.iter().map(|p| p.b.words() as f64))
                .collect();
            rewardkit_audit::stats::pearson(scores, &words).unwrap_or(f64::NAN)
        },
    }
}

/// Audits the proxy on the held-out pairs (as the biased labeler ordered them) and the
/// sycophancy items (the world's own questions and new ones, [`syco::audit_items`]). Probes are the edits that stay inside the world's vocabulary (a repeated
/// sentence, a bulleted list, bold): the others would add words the tokenizer does not know.
fn audit_proxy(
    name: &str,
    config: &DemoConfig,
    held_out: &[EvalPair],
    sycophancy: Vec<SycophancyItem>,
    proxy: &LoadedModel,
    progress: &mut dyn FnMut(DemoEvent),
) -> Result<AuditReport, DemoError> {
    let pairs: Vec<PreferencePair> = held_out
        .iter()
        .filter(|p| p.a.text != p.b.text)
        .map(|p| {
            let (chosen, rejected) = if p.label_a {
                (&p.a, &p.b)
            } else {
                (&p.b, &p.a)
            };
            PreferencePair::new(
                p.prompt.clone(),
                chosen.text.as_str(),
                rejected.text.as_str(),
            )
        })
        .collect();
    let audit_config = AuditConfig {
        seed: config.seed,
        probes: vec![Probe::RepeatSentence, Probe::BulletList, Probe::Bold],
        bootstrap: config.audit_bootstrap,
        batch_size: config.score_batch_size,
        ..AuditConfig::default()
    };
    let plan = Plan::new(&pairs, sycophancy, audit_config)?;
    let total = plan.requests().len();
    let stage = format!("auditing the {name}");
    progress(DemoEvent::Stage {
        name: &stage,
        total,
        unit: "responses",
    });
    let t = Instant::now();
    let scorer = ModelScorer::new(proxy, config.score_batch_size);
    let scores = plan.score(&scorer, |done, _| progress(DemoEvent::Progress { done }))?;
    let count = |t: &Text| {
        proxy
            .tokenizer
            .tokens(&t.render())
            .map_or(0, |ids| ids.len())
    };
    let report = plan.analyze(&scores, format!("demo {name}"), Some(&count));
    progress(DemoEvent::Finished {
        name: &stage,
        seconds: t.elapsed().as_secs_f64(),
    });
    Ok(report)
}

/// One round's new pairs: for `round_prompts` prompts, the best of `round_n` samples by
/// `proxy` against another of the samples drawn at random, ordered by the gold labeler; and the
/// share of picks that were correct, and that lost.
fn round_pairs(
    world: &World,
    config: &DemoConfig,
    proxy: &LoadedModel,
    round: usize,
) -> Result<(Vec<PreferencePair>, f64, f64), DemoError> {
    let seed = config.seed;
    let pool = world.pool(
        config.round_prompts,
        config.round_n,
        seed.wrapping_add(2_000_003 + round as u64),
    );
    let mut inputs = Vec::new();
    for (item, responses) in &pool {
        let prompt = Text::from(item.prompt.as_str());
        for r in responses {
            inputs.push(proxy.encode(&prompt, &Text::from(r.text.as_str()))?);
        }
    }
    let scores = proxy.score_encoded(&inputs, config.score_batch_size)?;
    let mut rng = Rng::derive(seed, &["round", &round.to_string()]);
    let (mut pairs, mut correct, mut lost) = (Vec::new(), 0usize, 0usize);
    for (j, (item, responses)) in pool.iter().enumerate() {
        let s = &scores[j * config.round_n..(j + 1) * config.round_n];
        let best = (0..s.len()).fold(0, |b, i| if s[i] > s[b] { i } else { b });
        let other = (best + 1 + rng.below(s.len() - 1)) % s.len();
        let (pick, rival) = (&responses[best], &responses[other]);
        correct += usize::from(pick.attrs.correct);
        if pick.text == rival.text {
            continue;
        }
        let (pick_wins, _) = config.gold_labeler.judge(pick, rival, &mut rng);
        lost += usize::from(!pick_wins);
        let (chosen, rejected) = if pick_wins {
            (pick, rival)
        } else {
            (rival, pick)
        };
        let mut pair = PreferencePair::new(
            item.prompt.as_str(),
            chosen.text.as_str(),
            rejected.text.as_str(),
        );
        pair.id = Some(format!("round-{round}-{j}"));
        pairs.push(pair);
    }
    let (n, m) = (pool.len().max(1) as f64, pairs.len().max(1) as f64);
    Ok((pairs, correct as f64 / n, lost as f64 / m))
}

/// Scores every pool sample with every model (encoded once; the models share the tokenizer).
pub(crate) fn score_pool(
    pool: &[(Item, Vec<Response>)],
    models: &[&LoadedModel],
    batch_size: usize,
    progress: &mut dyn FnMut(DemoEvent),
) -> Result<PoolScores, DemoError> {
    let mut inputs = Vec::new();
    for (item, responses) in pool {
        let prompt = Text::from(item.prompt.as_str());
        for r in responses {
            inputs.push(models[0].encode(&prompt, &Text::from(r.text.as_str()))?);
        }
    }
    progress(DemoEvent::Stage {
        name: "scoring the best-of-n pool",
        total: models.len() * inputs.len(),
        unit: "scores",
    });
    let t = Instant::now();
    let mut all = Vec::with_capacity(models.len());
    for (k, model) in models.iter().enumerate() {
        all.push(model.score_encoded(&inputs, batch_size)?);
        progress(DemoEvent::Progress {
            done: (k + 1) * inputs.len(),
        });
    }
    progress(DemoEvent::Finished {
        name: "scoring the best-of-n pool",
        seconds: t.elapsed().as_secs_f64(),
    });
    let mut start = 0;
    let prompts = pool
        .iter()
        .map(|(_, responses)| {
            let range = start..start + responses.len();
            start = range.end;
            PromptScores {
                members: all.iter().map(|s| s[range.clone()].to_vec()).collect(),
                gold: responses.iter().map(Response::gold).collect(),
                logp: None,
                ref_logp: None,
            }
        })
        .collect();
    Ok(PoolScores { prompts })
}
