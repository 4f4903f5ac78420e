//! Rewards (and gold functions): what scores a batch of completions.

use std::collections::HashMap;

use rewardkit_data::{Scorer, Text};
use rewardkit_goodhart::combine::Combine;
use rewardkit_goodhart::pool::final_number;

use crate::RlError;

/// One sampled response to a prompt.
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// Index of the prompt in the run's prompt list.
    pub prompt_index: usize,
    /// The prompt as the reward sees it ([`crate::RlPrompt::prompt`]: the plain text, not the
    /// chat-formatted model input).
    pub prompt: &'a str,
    /// The decoded response (without EOS).
    pub response: &'a str,
    /// The response ended with EOS (not at the token limit).
    pub finished: bool,
}

/// Scores completions: the proxy reward of RL, or a gold function. One score per completion,
/// in order.
pub trait Reward {
    fn name(&self) -> String;
    fn score(&mut self, rows: &[Completion]) -> Result<Vec<f64>, RlError>;
}

/// Checks a reward's answer has one finite score per completion.
pub(crate) fn checked(reward: &mut dyn Reward, rows: &[Completion]) -> Result<Vec<f64>, RlError> {
    let scores = reward.score(rows)?;
    let bad = |message: String| RlError::Reward {
        name: reward.name(),
        message,
    };
    if scores.len() != rows.len() {
        return Err(bad(format!(
            "{} scores for {} completions",
            scores.len(),
            rows.len()
        )));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(bad(format!("score {} of completion {i}", scores[i])));
    }
    Ok(scores)
}

/// A closure as a reward: `f(rows)` returns the scores or a message.
pub struct FnReward<F> {
    name: String,
    f: F,
}

impl<F> FnReward<F>
where
    F: FnMut(&[Completion]) -> Result<Vec<f64>, String>,
{
    pub fn new(name: impl Into<String>, f: F) -> Self {
        FnReward {
            name: name.into(),
            f,
        }
    }
}

impl<F> Reward for FnReward<F>
where
    F: FnMut(&[Completion]) -> Result<Vec<f64>, String>,
{
    fn name(&self) -> String {
        self.name.clone()
    }
    fn score(&mut self, rows: &[Completion]) -> Result<Vec<f64>, RlError> {
        (self.f)(rows).map_err(|message| RlError::Reward {
            name: self.name.clone(),
            message,
        })
    }
}

/// Any [`Scorer`] (a reward model folder through `rewardkit_model::ModelScorer`, a served
/// model, …) as a reward: it scores `(prompt, response)`. Borrowed, so the scorer can be
/// swapped between steps of an [`crate::RlSession`].
pub struct ScorerReward<'a, S>(pub &'a S);

impl<S: Scorer> Reward for ScorerReward<'_, S> {
    fn name(&self) -> String {
        self.0.name()
    }
    fn score(&mut self, rows: &[Completion]) -> Result<Vec<f64>, RlError> {
        score_with(self.0, rows)
    }
}

fn score_with<S: Scorer>(scorer: &S, rows: &[Completion]) -> Result<Vec<f64>, RlError> {
    let texts: Vec<(Text, Text)> = rows
        .iter()
        .map(|c| (Text::Plain(c.prompt.into()), Text::Plain(c.response.into())))
        .collect();
    let items: Vec<(&Text, &Text)> = texts.iter().map(|(p, r)| (p, r)).collect();
    scorer.score_batch(&items).map_err(|e| RlError::Reward {
        name: scorer.name(),
        message: e.to_string(),
    })
}

/// An ensemble of scorers, combined per completion by a [`Combine`] rule (mean, min,
/// mean − λ·var, mean − λ·std: Coste et al. 2023).
pub struct EnsembleReward<'a, S> {
    pub members: &'a [S],
    pub combine: Combine,
}

impl<S: Scorer> Reward for EnsembleReward<'_, S> {
    fn name(&self) -> String {
        format!("ensemble-{}({})", self.combine.label(), self.members.len())
    }
    fn score(&mut self, rows: &[Completion]) -> Result<Vec<f64>, RlError> {
        let per_member = self
            .members
            .iter()
            .map(|m| score_with(m, rows))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((0..rows.len())
            .map(|i| {
                let scores: Vec<f64> = per_member.iter().map(|m| m[i]).collect();
                self.combine.apply(&scores)
            })
            .collect())
    }
}

/// GSM8K's final-number check as a gold function: 1 when the response's final number is the
/// answer of its question, else 0. Answers are looked up by the completion's prompt text.
pub struct Gsm8kGold {
    answers: HashMap<String, String>,
}

impl Gsm8kGold {
    /// `answers`: question → final number (`rewardkit_goodhart::pool::gsm8k_answers`).
    pub fn new(answers: HashMap<String, String>) -> Self {
        Gsm8kGold { answers }
    }
}

impl Reward for Gsm8kGold {
    fn name(&self) -> String {
        "gsm8k-final-number".into()
    }
    fn score(&mut self, rows: &[Completion]) -> Result<Vec<f64>, RlError> {
        rows.iter()
            .map(|c| {
                let want = self.answers.get(c.prompt).ok_or_else(|| RlError::Reward {
                    name: self.name(),
                    message: format!("no GSM8K answer for the prompt {:?}", c.prompt),
                })?;
                Ok(f64::from(u8::from(
                    final_number(c.response).as_ref() == Some(want),
                )))
            })
            .collect()
    }
}
