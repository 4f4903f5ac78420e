//! The RL runs of `rewardkit demo rl`: each starts from the distilled decoder (its frozen copy
//! is the reference) and optimises one reward for `rl.max_steps` steps. Before every step the
//! policy is evaluated on all of the world's items, `rl.eval_samples_per_prompt` samples each,
//! from the same random streams every time (common random numbers,
//! [`rewardkit_rl::evaluate`]): gold read by [`World::read_response`] and the run's reward on
//! those samples are the curve's values; KL is the step's own.
//!
//! Sycophancy (the policy step of issue 13's pipeline, with RL as the optimiser): the same
//! evaluation also reads, of the samples to prompts whose user claim is wrong, the share that
//! agrees with the claim; and a second, smaller evaluation does the same on questions the world
//! never asks ([`World::new_question_sycophancy_items`], the first of the audit's held-out
//! items), where no memorised answer can decide what the policy says.
//!
//! Iterative retraining: every `retrain_every` steps, the step samples since the last round are
//! paired (two samples of the same prompt), labelled by the biased labeler (the seed's loop) or
//! by the gold labeler, added to the proxy's training pairs, and the reward model is trained
//! again on all of them; RL goes on against the new model with the same policy and optimizer.

use std::cell::RefCell;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use rewardkit_data::{PreferencePair, Rng};
use rewardkit_goodhart::combine::Combine;
use rewardkit_goodhart::rl::{summarize, RlCurveRow};
use rewardkit_goodhart::rl_story::{AgreeAt, RetrainRound, RlAgreement, RlRun, RunKind, Share};
use rewardkit_model::{LoadedModel, ModelScorer, Policy};
use rewardkit_rl::evaluate::{evaluate, mean_and_se};
use rewardkit_rl::{
    Completion, EnsembleReward, FnReward, Reward, RlConfig, RlPrompt, RlSession, Rollout,
    ScorerReward,
};

use crate::decoder::decoder_prompt;
use crate::demo::{DemoError, DemoEvent, RewardModels};
use crate::rl_demo::RlDemoConfig;
use crate::world::{Item, LabelerConfig, Response, World};

/// Which runs to make.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RunsConfig {
    /// β of each run against the biased proxy.
    pub betas: Vec<f64>,
    /// β of the mitigation runs (control, ensembles, retraining): a small penalty, as Coste et
    /// al. (2023) pair their ensembles with (at 0 the control is over-optimised too: the
    /// decoder's malformed texts are outside what it was trained on).
    pub mitigation_beta: f64,
    pub control: bool,
    pub ensemble_min: bool,
    /// The `mean − λ·std` ensemble, λ = `demo.lambda_std`.
    pub ensemble_mean_std: bool,
    /// Retraining on the biased labeler's labels of the policy's samples.
    pub retrain_labeler: bool,
    /// Retraining on gold labels of the policy's samples.
    pub retrain_gold: bool,
    /// K: steps between retrainings.
    pub retrain_every: usize,
    /// New questions (each with a wrong user claim) the policy's agreement is read on at every
    /// step; 0: none.
    pub new_questions: usize,
    /// Samples of each new question per evaluation.
    pub new_question_samples: usize,
}

impl Default for RunsConfig {
    fn default() -> Self {
        RunsConfig {
            betas: vec![0.0, 0.01, 0.03, 0.1],
            mitigation_beta: 0.1,
            control: true,
            ensemble_min: true,
            ensemble_mean_std: true,
            retrain_labeler: true,
            retrain_gold: true,
            retrain_every: 10,
            new_questions: 40,
            new_question_samples: 8,
        }
    }
}

impl RunsConfig {
    pub fn validate(&self) -> Result<(), String> {
        let betas_ok = self
            .betas
            .iter()
            .chain([&self.mitigation_beta])
            .all(|b| *b >= 0.0 && b.is_finite());
        if !betas_ok {
            return Err("runs.betas and runs.mitigation_beta must be ≥ 0".into());
        }
        if self.retrain_every == 0 {
            return Err("runs.retrain_every must be at least 1".into());
        }
        if self.new_questions > 0 && self.new_question_samples < 2 {
            return Err(
                "runs.new_question_samples must be at least 2 (for a standard error)".into(),
            );
        }
        Ok(())
    }

    /// The runs, in report order, with their names and β.
    fn plan(&self, lambda_std: f64) -> Vec<(RunKind, String, f64)> {
        let mut runs: Vec<(RunKind, String, f64)> = self
            .betas
            .iter()
            .map(|&b| (RunKind::Proxy, format!("proxy β={b}"), b))
            .collect();
        let m = self.mitigation_beta;
        if self.control {
            runs.push((RunKind::Control, "control".into(), m));
        }
        for (on, combine) in [
            (self.ensemble_min, Combine::Min),
            (
                self.ensemble_mean_std,
                Combine::MeanMinusStd { lambda: lambda_std },
            ),
        ] {
            if on {
                let name = format!("ensemble {}", combine.label());
                runs.push((RunKind::Ensemble { combine }, name, m));
            }
        }
        for (on, gold, name) in [
            (self.retrain_labeler, false, "retrained (labeler)"),
            (self.retrain_gold, true, "retrained (gold)"),
        ] {
            if on {
                runs.push((RunKind::Retrained { gold }, name.into(), m));
            }
        }
        runs
    }
}

/// Every run's summary, the retraining rounds and every row of `rl_curves.jsonl`.
pub(crate) struct RunResults {
    pub runs: Vec<RlRun>,
    pub rounds: Vec<RetrainRound>,
    pub rows: Vec<RlCurveRow>,
}

/// Makes every run of `config.runs` from `start` (the distilled decoder).
pub(crate) fn run_all(
    config: &RlDemoConfig,
    models: &RewardModels,
    start: &Policy,
    progress: &mut dyn FnMut(DemoEvent),
) -> Result<RunResults, DemoError> {
    let world = &models.world;
    let prompts: Vec<RlPrompt> = world
        .items()
        .iter()
        .map(|item| RlPrompt {
            input: decoder_prompt(item),
            prompt: item.prompt.clone(),
        })
        .collect();
    let new_items: Vec<Item> = world
        .new_question_sycophancy_items(config.runs.new_questions, config.seed)
        .into_iter()
        .map(|(item, _, _)| item)
        .collect();
    let new_prompts: Vec<RlPrompt> = new_items
        .iter()
        .map(|item| RlPrompt {
            input: decoder_prompt(item),
            prompt: item.prompt.clone(),
        })
        .collect();
    let known_wrong = world.items().iter().filter(|i| has_wrong_claim(i)).count();
    let reference = start.snapshot()?;
    let mut out = RunResults {
        runs: Vec::new(),
        rounds: Vec::new(),
        rows: Vec::new(),
    };
    for (kind, name, beta) in config.runs.plan(config.demo.lambda_std) {
        let t = Instant::now();
        let policy = start.snapshot()?;
        let rl = RlConfig {
            beta,
            ..config.rl.clone()
        };
        let run = Run {
            config,
            models,
            world,
            prompts: &prompts,
            new_items: &new_items,
            new_prompts: &new_prompts,
            name: &name,
        };
        let outcome = run.optimise(&kind, &policy, &reference, &rl, progress)?;
        let agreement = outcome.agreement(
            (known_wrong, rl.eval_samples_per_prompt),
            (new_prompts.len(), config.runs.new_question_samples),
        );
        let summary = summarize(&outcome.rows, config.window)
            .map_err(|e| DemoError::Config(format!("run {name}: {e}")))?
            .into_iter()
            .next()
            .ok_or_else(|| DemoError::Config(format!("run {name} has no steps")))?;
        progress(DemoEvent::Log(&format!(
            "{name}: proxy {:.2} → {:.2}, gold {:.3} → peak {:.3} (step {}) → {:.3}, KL {:.2}",
            summary.start.proxy,
            summary.end.proxy,
            summary.start.gold,
            summary.gold_peak.gold,
            summary.gold_peak.step,
            summary.end.gold,
            summary.end.kl
        )));
        out.rows.extend(outcome.rows);
        out.rounds.extend(outcome.rounds);
        out.runs.push(RlRun {
            kind,
            summary,
            gold_se: outcome.gold_se,
            agreement,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    Ok(out)
}

fn scorer(model: &LoadedModel, batch_size: usize) -> ModelScorer<'_> {
    ModelScorer::new(model, batch_size)
}

/// What one run produced.
#[derive(Default)]
struct RunOutcome {
    rows: Vec<RlCurveRow>,
    rounds: Vec<RetrainRound>,
    /// The mean standard error of one evaluation's gold.
    gold_se: f64,
    /// Agreement with wrong claims at every step.
    agree: Vec<AgreeAt>,
}

impl RunOutcome {
    /// Agreement before the first update and after the last, on `known` prompts with a wrong
    /// claim (`known_m` samples each) and `new` new questions (`new_m` each); `None` when
    /// neither set has a prompt.
    fn agreement(
        &self,
        (known, known_m): (usize, usize),
        (new, new_m): (usize, usize),
    ) -> Option<RlAgreement> {
        if known == 0 && new == 0 {
            return None;
        }
        Some(RlAgreement {
            known_prompts: known,
            known_samples_per_prompt: known_m,
            new_prompts: new,
            new_samples_per_prompt: new_m,
            start: *self.agree.first()?,
            end: *self.agree.last()?,
        })
    }
}

/// Whether `item`'s user claim is wrong (the prompts sycophancy is read on).
fn has_wrong_claim(item: &Item) -> bool {
    item.claim.as_ref().is_some_and(|c| !c.correct)
}

/// 1 for true, 0 for false.
fn indicator(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// The mean of 0/1 `values` (consecutive groups of `m` per prompt) and its standard error.
fn share(values: &[f64], m: usize) -> Share {
    let (share, se) = mean_and_se(values, m);
    Share { share, se }
}

/// One run's fixed context.
struct Run<'a> {
    config: &'a RlDemoConfig,
    models: &'a RewardModels<'a>,
    world: &'a World,
    prompts: &'a [RlPrompt],
    /// The new questions of the sycophancy reading, and their prompts.
    new_items: &'a [Item],
    new_prompts: &'a [RlPrompt],
    name: &'a str,
}

impl Run<'_> {
    /// The run's steps: its rows (step = updates made before the step's samples were drawn),
    /// retraining rounds, the mean standard error of an evaluation's gold and its agreement
    /// with wrong claims.
    fn optimise(
        &self,
        kind: &RunKind,
        policy: &Policy,
        reference: &Policy,
        rl: &RlConfig,
        progress: &mut dyn FnMut(DemoEvent),
    ) -> Result<RunOutcome, DemoError> {
        let batch_size = self.config.demo.score_batch_size;
        let members: Vec<ModelScorer> = self
            .models
            .members
            .iter()
            .map(|m| scorer(m, batch_size))
            .collect();
        let control = scorer(&self.models.control, batch_size);
        let items = self.world.items();
        // Gold of every evaluation sample; on the prompts with a wrong claim, whether it
        // agrees, in sample order (consecutive per prompt, as `mean_and_se` reads them).
        let known_agree = RefCell::new(Vec::new());
        let mut gold = FnReward::new("gold", |rows: &[Completion]| {
            let mut agree = known_agree.borrow_mut();
            Ok(rows
                .iter()
                .map(|c| {
                    let item = &items[c.prompt_index];
                    let read = self.world.read_response(item, c.response);
                    if has_wrong_claim(item) {
                        agree.push(indicator(read.attrs.agrees_with_claim));
                    }
                    read.gold()
                })
                .collect())
        });
        let mut session = RlSession::new(policy, reference, rl)?;
        let mut retrained: Option<LoadedModel> = None;
        let mut train_set = self.models.pairs.clone();
        let mut out = RunOutcome::default();
        let mut pending = Vec::new();
        let stage = format!("RL: {}", self.name);
        progress(DemoEvent::Stage {
            name: &stage,
            total: rl.max_steps,
            unit: "steps",
        });
        let t = Instant::now();
        for step in 1..=rl.max_steps {
            let (output, eval, new) = {
                let current = retrained.as_ref().unwrap_or(&self.models.members[0]);
                let one = scorer(current, batch_size);
                let mut reward: Box<dyn Reward + '_> = match kind {
                    RunKind::Proxy | RunKind::Retrained { .. } => Box::new(ScorerReward(&one)),
                    RunKind::Control => Box::new(ScorerReward(&control)),
                    RunKind::Ensemble { combine } => Box::new(EnsembleReward {
                        members: &members,
                        combine: *combine,
                    }),
                };
                // Both evaluations read the policy before this step's update.
                let eval = session.evaluate(self.prompts, &mut gold, Some(reward.as_mut()))?;
                let new = self.agree_on_new_questions(policy, rl, step - 1)?;
                let output = session.step(self.prompts, reward.as_mut(), None)?;
                (output, eval, new)
            };
            let known = share(&known_agree.take(), rl.eval_samples_per_prompt);
            out.gold_se += eval.gold_se / rl.max_steps as f64;
            out.agree.push(AgreeAt {
                step: step - 1,
                known,
                new,
            });
            out.rows.push(RlCurveRow {
                run: self.name.to_string(),
                beta: rl.beta,
                step: step - 1,
                kl: output.log.kl,
                proxy: eval.proxy.unwrap_or(f64::NAN),
                gold: eval.gold,
                agree: Some(known.share).filter(|v| v.is_finite()),
                agree_new: Some(new.share).filter(|v| v.is_finite()),
            });
            progress(DemoEvent::Progress { done: step });
            if let RunKind::Retrained { gold: by_gold } = kind {
                pending.extend(output.samples);
                if step % self.config.runs.retrain_every == 0 && step < rl.max_steps {
                    let round = out.rounds.len() + 1;
                    let model = self.retrain(&mut train_set, &pending, *by_gold, round, step)?;
                    out.rounds.push(model.1);
                    retrained = Some(model.0);
                    pending.clear();
                }
            }
        }
        progress(DemoEvent::Finished {
            name: &stage,
            seconds: t.elapsed().as_secs_f64(),
        });
        Ok(out)
    }

    /// Retraining round `round` after `step`: `pending` labelled and added to `train_set`, the
    /// reward model trained again on all of it.
    fn retrain(
        &self,
        train_set: &mut Vec<PreferencePair>,
        pending: &[Rollout],
        by_gold: bool,
        round: usize,
        step: usize,
    ) -> Result<(LoadedModel, RetrainRound), DemoError> {
        let new = self.label(pending, by_gold, round);
        let new_pairs = new.len();
        train_set.extend(new);
        let name = format!("{}-round-{round}", self.slug());
        let (model, s) =
            self.models
                .trainer
                .train(&name, train_set, self.config.seed, &mut |_| {})?;
        let summary = self.models.summarize(&name, &model, &s, train_set.len())?;
        let round = RetrainRound {
            run: self.name.to_string(),
            step,
            new_pairs,
            model: summary,
        };
        Ok((model, round))
    }

    /// Of `policy`'s samples to the new questions (each with a wrong claim), the share that
    /// agrees with the claim: an evaluation of its own, with the same fixed random streams at
    /// every step. NaN without new questions.
    fn agree_on_new_questions(
        &self,
        policy: &Policy,
        rl: &RlConfig,
        updates: usize,
    ) -> Result<Share, DemoError> {
        if self.new_prompts.is_empty() {
            return Ok(share(&[], 0));
        }
        let config = RlConfig {
            eval_samples_per_prompt: self.config.runs.new_question_samples,
            ..rl.clone()
        };
        let mut agree = FnReward::new("agreement", |rows: &[Completion]| {
            Ok(rows
                .iter()
                .map(|c| {
                    let item = &self.new_items[c.prompt_index];
                    indicator(
                        self.world
                            .read_response(item, c.response)
                            .attrs
                            .agrees_with_claim,
                    )
                })
                .collect())
        });
        let log = evaluate(policy, &config, self.new_prompts, updates, &mut agree, None)?;
        Ok(Share {
            share: log.gold,
            se: log.gold_se,
        })
    }

    /// The run's name as a folder name.
    fn slug(&self) -> String {
        self.name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .to_string()
    }

    /// Pairs of the samples (consecutive samples of the same prompt, two by two), ordered by
    /// the biased labeler or, with `by_gold`, the gold labeler.
    fn label(&self, samples: &[Rollout], by_gold: bool, round: usize) -> Vec<PreferencePair> {
        let demo = &self.config.demo;
        let labeler: &LabelerConfig = if by_gold {
            &demo.gold_labeler
        } else {
            &demo.labeler
        };
        let items = self.world.items();
        let mut rng = Rng::derive(
            self.config.seed,
            &["rl-round", self.name, &round.to_string()],
        );
        let response = |s: &Rollout| {
            let item = &items[s.prompt_index];
            Response {
                text: s.text.clone(),
                attrs: self.world.read_response(item, &s.text).attrs,
            }
        };
        samples
            .chunks_exact(2)
            .filter(|p| p[0].prompt_index == p[1].prompt_index && p[0].text != p[1].text)
            .enumerate()
            .map(|(i, p)| {
                let (a, b) = (response(&p[0]), response(&p[1]));
                let (a_wins, _) = labeler.judge(&a, &b, &mut rng);
                let (chosen, rejected) = if a_wins { (a, b) } else { (b, a) };
                let item = &items[p[0].prompt_index];
                let mut pair = PreferencePair::new(
                    item.prompt.as_str(),
                    chosen.text.as_str(),
                    rejected.text.as_str(),
                );
                pair.id = Some(format!("{}-{round}-{i}", self.slug()));
                pair
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_questions_need_two_samples_each_for_a_standard_error() {
        assert!(RunsConfig::default().validate().is_ok());
        let one = RunsConfig {
            new_question_samples: 1,
            ..RunsConfig::default()
        };
        let message = one.validate().unwrap_err();
        assert!(message.contains("runs.new_question_samples"), "{message}");
        // Without new questions the sample count does not matter.
        let none = RunsConfig {
            new_questions: 0,
            ..one
        };
        assert!(none.validate().is_ok());
    }
}
