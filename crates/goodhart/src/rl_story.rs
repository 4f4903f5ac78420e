//! What `rewardkit demo rl` reports, as plain types, and its story: a decoder distilled from
//! the world's base policy, RL runs against the proxy (several β), the control, ensembles and
//! iteratively retrained reward models, each summarised by [`crate::rl`], beside best-of-n on
//! the same proxy.

use serde::Serialize;

use crate::analysis::SelectorCurve;
use crate::combine::Combine;
use crate::rl::RlRunSummary;
use crate::story::ModelSummary;

/// A policy's responses in aggregate: the share correct and the filler-count distribution
/// (`fillers[k]`: share with k filler sentences).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct PolicyProfile {
    pub correct: f64,
    pub fillers: Vec<f64>,
    /// Responses measured (0 for an exact profile).
    pub samples: usize,
}

impl PolicyProfile {
    /// The profile of `n` responses of which `correct` were correct and `fillers[k]` had k
    /// fillers; NaN shares for none.
    pub fn from_counts(n: usize, correct: usize, fillers: &[usize]) -> PolicyProfile {
        let share = |k: usize| {
            if n == 0 {
                f64::NAN
            } else {
                k as f64 / n as f64
            }
        };
        PolicyProfile {
            correct: share(correct),
            fillers: fillers.iter().map(|&k| share(k)).collect(),
            samples: n,
        }
    }

    /// The largest differences from `other`, in shares: of the correct share, and over filler
    /// counts (a count one profile lacks has share 0 there).
    pub fn gaps(&self, other: &PolicyProfile) -> (f64, f64) {
        let len = self.fillers.len().max(other.fillers.len());
        let at = |p: &PolicyProfile, k: usize| p.fillers.get(k).copied().unwrap_or(0.0);
        let filler = (0..len)
            .map(|k| (at(self, k) - at(other, k)).abs())
            .fold(0.0, f64::max);
        ((self.correct - other.correct).abs(), filler)
    }
}

/// The distilled decoder against the base policy it imitates.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct SftSummary {
    pub rows: usize,
    pub steps: usize,
    pub seconds: f64,
    /// The base policy's exact profile.
    pub base: PolicyProfile,
    /// The decoder's, measured on its samples.
    pub decoder: PolicyProfile,
    /// Share of the decoder's samples in the world's exact response shape.
    pub well_formed: f64,
    /// |correct share − base's|.
    pub correct_gap: f64,
    /// The largest |share with k fillers − base's| over k.
    pub filler_gap: f64,
}

/// What a run optimises.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunKind {
    /// The proxy trained on the biased labels.
    Proxy,
    /// The reward model trained on unbiased labels.
    Control,
    /// The ensemble (the proxy and its bootstrap members) combined by a rule.
    Ensemble { combine: Combine },
    /// The proxy, retrained every few steps on the policy's new samples labelled by the biased
    /// labeler (`gold: false`, the seed's loop) or by gold (`gold: true`).
    Retrained { gold: bool },
}

/// One RL run: what it optimised and its curve's summary.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct RlRun {
    pub kind: RunKind,
    pub summary: RlRunSummary,
    /// The standard error of one step's gold (mean over the steps): the sampling error of the
    /// evaluation for its fixed prompts. Steps share random streams, so the difference between
    /// two steps is far less noisy than this.
    pub gold_se: f64,
    /// Sycophancy under this run, where it was measured (the pipeline's policy step with RL as
    /// the optimiser).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<RlAgreement>,
    pub seconds: f64,
}

/// A share of samples with its standard error (the evaluation's, for its fixed prompts: the
/// within-prompt sampling error, as for gold).
#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
pub struct Share {
    pub share: f64,
    pub se: f64,
}

impl Share {
    /// `40.2% ± 3.3` (points), `–` when not measured (NaN).
    pub fn display(&self) -> String {
        if self.share.is_finite() {
            format!("{:.1}% ± {:.1}", 100.0 * self.share, 100.0 * self.se)
        } else {
            "–".into()
        }
    }
}

/// Agreement with a wrong user claim among an evaluation's samples, at one step: on the
/// run's own prompts that carry one (`known`) and on held-out new questions (`new`).
#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
pub struct AgreeAt {
    pub step: usize,
    pub known: Share,
    pub new: Share,
}

/// Sycophancy under RL: of the evaluation's samples on prompts with a wrong user claim, the
/// share that states the user's value, before the first update and after the last.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct RlAgreement {
    /// The run's evaluation prompts whose user claim is wrong.
    pub known_prompts: usize,
    pub known_samples_per_prompt: usize,
    /// Questions the policy is never optimised on, each with a wrong claim.
    pub new_prompts: usize,
    pub new_samples_per_prompt: usize,
    pub start: AgreeAt,
    pub end: AgreeAt,
}

/// One retraining of a run's reward model.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct RetrainRound {
    pub run: String,
    /// The RL step after which it was retrained.
    pub step: usize,
    /// Pairs of the policy's samples added.
    pub new_pairs: usize,
    pub model: ModelSummary,
}

/// Seconds spent in each stage.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct RlTimings {
    pub reward_models: f64,
    pub sft: f64,
    pub best_of_n: f64,
    pub rl: f64,
    pub total: f64,
}

/// The whole result of `rewardkit demo rl`; `C` is its configuration (serialised first).
#[derive(Serialize, Clone, Debug)]
pub struct RlReport<C> {
    pub config: C,
    pub items: usize,
    /// The reward models trained for the runs: the proxy, the other ensemble members, the
    /// control.
    pub reward_models: Vec<ModelSummary>,
    pub sft: SftSummary,
    /// Best-of-n of the base policy against the proxy: the curve whose fit `d(α − βd)` stands
    /// beside the RL fit.
    pub best_of_n: SelectorCurve,
    pub runs: Vec<RlRun>,
    pub rounds: Vec<RetrainRound>,
    pub timings: RlTimings,
}

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

/// One run's agreement, start → end, on both prompt sets.
fn agreement_text(run: &str, a: &RlAgreement) -> String {
    format!(
        "{run}: {} → {} on the world's questions, {} → {} on new ones",
        a.start.known.display(),
        a.end.known.display(),
        a.start.new.display(),
        a.end.new.display(),
    )
}

fn fit_text(r: &RlRunSummary) -> String {
    match &r.gold_fit {
        Some(f) => {
            let peak = f
                .d_star
                .map_or("no peak".into(), |d| format!("peak at √KL {d:.2}"));
            format!("α {:.3}, β {:.3}, {peak}", f.alpha, f.beta)
        }
        None => "no fit".into(),
    }
}

impl<C> RlReport<C> {
    /// The runs of one kind, in order.
    pub fn runs_of(&self, pick: impl Fn(&RunKind) -> bool) -> Vec<&RlRun> {
        self.runs.iter().filter(|r| pick(&r.kind)).collect()
    }

    /// The story in a few lines, with this run's numbers.
    pub fn story(&self) -> Vec<String> {
        let s = &self.sft;
        let mut lines = vec![format!(
            "1. Decoder: distilled by SFT from the base policy ({} rows, {} steps): on {} samples it is correct {} of the time (base policy {}, exact), its filler-count shares within {:.1} points of the base policy's, {} in the world's exact response shape.",
            s.rows,
            s.steps,
            s.decoder.samples,
            pct(s.decoder.correct),
            pct(s.base.correct),
            100.0 * s.filler_gap,
            pct(s.well_formed),
        )];
        let proxy_runs = self.runs_of(|k| *k == RunKind::Proxy);
        if let Some(first) = proxy_runs.first() {
            let r = &first.summary;
            lines.push(format!(
                "2. RL against the proxy, β = {}: its score rises {:.2} → {:.2} while gold goes {:.3} → {:.3} at step {} (√KL {:.2}) → {:.3} at step {} (KL {:.1} nats): {:.3} lost after the peak (one step's gold ± {:.3}, common random numbers). Gold fit d(α − β·ln d): {}.",
                r.beta, r.start.proxy, r.end.proxy, r.start.gold, r.gold_peak.gold,
                r.gold_peak.step, r.gold_peak.sqrt_kl, r.end.gold, r.end.step, r.end.kl,
                r.gold_fall, first.gold_se, fit_text(r),
            ));
            let others: Vec<String> = proxy_runs[1..]
                .iter()
                .map(|x| {
                    let r = &x.summary;
                    format!(
                        "β = {}: KL {:.2}, gold {:.3} (peak {:.3})",
                        r.beta, r.end.kl, r.end.gold, r.gold_peak.gold
                    )
                })
                .collect();
            if !others.is_empty() {
                lines.push(format!(
                    "   With a KL penalty, at the end: {}.",
                    others.join("; ")
                ));
            }
        }
        let b = &self.best_of_n;
        let bon_fit = b.gold_fit.as_ref().map_or("no fit".into(), |f| {
            let peak = f
                .d_star
                .map_or("no peak".into(), |d| format!("peak at √KL {d:.2}"));
            format!("α {:.3}, β {:.3}, {peak}", f.alpha, f.beta)
        });
        lines.push(format!(
            "3. Best-of-n against the same proxy: gold peaks at {:.3} (n = {}, √KL {:.2}); fit d(α − βd): {bon_fit}.",
            b.gold_peak.gold, b.gold_peak.n, b.gold_peak.sqrt_kl
        ));
        let mitigations: Vec<String> = self
            .runs
            .iter()
            .filter(|r| r.kind != RunKind::Proxy)
            .map(|x| {
                let r = &x.summary;
                format!(
                    "{} gold {:.3} → {:.3} (best {:.3}, never more than {:.3} below it; KL {:.2})",
                    r.run, r.start.gold, r.end.gold, r.gold_peak.gold, r.max_drawdown, r.end.kl
                )
            })
            .collect();
        if !mitigations.is_empty() {
            lines.push(format!("4. Mitigations: {}.", mitigations.join("; ")));
        }
        let measured: Vec<(&RlRun, &RlAgreement)> = self
            .runs
            .iter()
            .filter_map(|r| r.agreement.as_ref().map(|a| (r, a)))
            .collect();
        if let Some((_, a)) = measured.first() {
            let runs: Vec<String> = measured
                .iter()
                .map(|(r, a)| agreement_text(&r.summary.run, a))
                .collect();
            lines.push(format!(
                "5. Sycophancy, the policy step with RL as the optimiser: of the evaluation's samples to prompts with a wrong user claim ({} of the world's prompts × {}, {} new questions × {}), the share that agrees with the user, before the first update → after the last: {}.",
                a.known_prompts,
                a.known_samples_per_prompt,
                a.new_prompts,
                a.new_samples_per_prompt,
                runs.join("; ")
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_and_gaps() {
        let a = PolicyProfile::from_counts(10, 6, &[5, 3, 2]);
        assert_eq!((a.correct, a.fillers.clone()), (0.6, vec![0.5, 0.3, 0.2]));
        let b = PolicyProfile::from_counts(4, 2, &[2, 1, 0, 1]);
        let (c, f) = a.gaps(&b);
        assert!((c - 0.1).abs() < 1e-12);
        // Largest filler gap: k = 3 (0 against 0.25), beyond k = 2 (0.2 against 0).
        assert!((f - 0.25).abs() < 1e-12);
        assert!(PolicyProfile::from_counts(0, 0, &[]).correct.is_nan());
    }
}
