//! Goodhart analysis of a scored best-of-n pool: for each way of selecting a sample (one proxy
//! reward model, an ensemble rule, a KL-penalised proxy), the best-of-n curve of the selector's
//! own score, of the plain proxy's score and of gold; the fitted `R(d) = d(α − βd)` of proxy and
//! gold; where gold peaks; and what each selector gains over the plain proxy at the n a proxy
//! optimiser would pick.
//!
//! The input is any pool: the built-in world of `rewardkit demo`, or real samples (a policy's
//! responses scored by several reward models and a gold judge). Every curve uses the unbiased
//! best-of-n estimator of [`crate::bon`], so no resampling noise enters.
//!
//! ```
//! use rewardkit_goodhart::analysis::{analyze, PoolScores, PromptScores, Selector};
//! use rewardkit_goodhart::combine::Combine;
//!
//! // Two members that agree on the good sample and disagree on the one member 0 over-rates.
//! let prompt = PromptScores {
//!     members: vec![vec![0.0, 1.0, 3.0], vec![0.0, 1.0, -2.0]],
//!     gold: vec![0.0, 1.0, 0.0],
//!     logp: None,
//!     ref_logp: None,
//! };
//! let pool = PoolScores { prompts: vec![prompt] };
//! let selectors = [Selector::Proxy { member: 0 }, Selector::ensemble(Combine::Min)];
//! let a = analyze(&pool, &selectors, &[1, 2, 3]).unwrap();
//! assert_eq!(a.favourite_n, 3); // the proxy's own score is highest at best-of-3
//! assert_eq!(a.curves[0].gold_at_favourite, 0.0); // the proxy picks the over-rated sample
//! assert_eq!(a.curves[1].gold_at_favourite, 1.0); // the min-ensemble does not
//! assert_eq!(a.curves[1].gain_at_favourite, 1.0);
//! ```

use serde::{Deserialize, Serialize};

use crate::bon::{bon_curve, PoolError, PromptPool};
use crate::combine::{kl_penalized, Combine};
use crate::fit::{fit_rd, RdFit};

/// One prompt's samples, scored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PromptScores {
    /// `members[k][i]`: proxy reward model k's score of sample i. Member 0 is "the proxy": the
    /// model a practitioner would optimise, whose score every curve also reports.
    pub members: Vec<Vec<f64>>,
    /// Gold (true) quality of each sample.
    pub gold: Vec<f64>,
    /// `log π(y|x)` of each sample under the sampling policy (for [`Selector::KlPenalized`]).
    #[serde(default)]
    pub logp: Option<Vec<f64>>,
    /// `log π_ref(y|x)` under the reference policy.
    #[serde(default)]
    pub ref_logp: Option<Vec<f64>>,
}

/// A scored pool: every prompt's samples.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PoolScores {
    pub prompts: Vec<PromptScores>,
}

/// How best-of-n picks a sample: the sample with the highest selector score.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Selector {
    /// One member's score.
    Proxy { member: usize },
    /// Members combined by a rule ([`Combine`]); `members` empty means all of them.
    Ensemble {
        combine: Combine,
        #[serde(default)]
        members: Vec<usize>,
    },
    /// One member's score minus `beta · (log π − log π_ref)` ([`kl_penalized`]).
    KlPenalized { beta: f64, member: usize },
}

impl Selector {
    /// An ensemble of all members.
    pub fn ensemble(combine: Combine) -> Selector {
        Selector::Ensemble {
            combine,
            members: Vec::new(),
        }
    }

    /// A short name for tables and plots: `proxy`, `member 2`, `ensemble min`,
    /// `kl-penalised β=0.1`.
    pub fn label(&self) -> String {
        match self {
            Selector::Proxy { member: 0 } => "proxy".into(),
            Selector::Proxy { member } => format!("member {member}"),
            Selector::Ensemble { combine, members } if members.is_empty() => {
                format!("ensemble {}", combine.label())
            }
            Selector::Ensemble { combine, members } => {
                format!("ensemble {} of {members:?}", combine.label())
            }
            Selector::KlPenalized { beta, member: 0 } => format!("kl-penalised β={beta}"),
            Selector::KlPenalized { beta, member } => {
                format!("member {member} kl-penalised β={beta}")
            }
        }
    }

    /// The selector's score of each sample of one prompt (already validated).
    fn scores(&self, p: &PromptScores) -> Result<Vec<f64>, SelectorNeeds> {
        let member = |k: usize| p.members.get(k).ok_or(SelectorNeeds::Member(k));
        match self {
            Selector::Proxy { member: k } => member(*k).cloned(),
            Selector::Ensemble { combine, members } => {
                let chosen: Vec<&Vec<f64>> = if members.is_empty() {
                    p.members.iter().collect()
                } else {
                    members
                        .iter()
                        .map(|&k| member(k))
                        .collect::<Result<_, _>>()?
                };
                Ok((0..p.gold.len())
                    .map(|i| {
                        let s: Vec<f64> = chosen.iter().map(|m| m[i]).collect();
                        combine.apply(&s)
                    })
                    .collect())
            }
            Selector::KlPenalized { beta, member: k } => {
                let r = member(*k)?;
                let (Some(lp), Some(lr)) = (&p.logp, &p.ref_logp) else {
                    return Err(SelectorNeeds::LogProbs);
                };
                Ok((0..r.len())
                    .map(|i| kl_penalized(r[i], lp[i], lr[i], *beta))
                    .collect())
            }
        }
    }
}

/// What a selector lacked.
enum SelectorNeeds {
    Member(usize),
    LogProbs,
}

/// Why a pool cannot be analysed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalysisError {
    #[error("the pool has no prompts")]
    NoPrompts,
    #[error("prompt {prompt} has no proxy members")]
    NoMembers { prompt: usize },
    #[error("prompt {prompt}, member {member}: {source}")]
    Member {
        prompt: usize,
        member: usize,
        source: PoolError,
    },
    #[error("prompt {prompt}: {what} has {got} values for {want} samples")]
    Length {
        prompt: usize,
        what: &'static str,
        got: usize,
        want: usize,
    },
    #[error("prompt {prompt}: {what} {index} is not finite")]
    NotFinite {
        prompt: usize,
        what: &'static str,
        index: usize,
    },
    #[error("selector `{selector}` needs member {member}, but prompt {prompt} has {members}")]
    MissingMember {
        selector: String,
        member: usize,
        prompt: usize,
        members: usize,
    },
    #[error("selector `{selector}` needs logp and ref_logp, which prompt {prompt} lacks")]
    MissingLogProbs { selector: String, prompt: usize },
}

impl PromptScores {
    /// Checks what [`analyze`] assumes: at least one member, every member and log-prob series
    /// as long as `gold`, at least one sample, finite values.
    pub fn validate(&self, prompt: usize) -> Result<(), AnalysisError> {
        if self.members.is_empty() {
            return Err(AnalysisError::NoMembers { prompt });
        }
        for (member, proxy) in self.members.iter().enumerate() {
            let pool = PromptPool {
                proxy: proxy.clone(),
                gold: self.gold.clone(),
            };
            pool.validate().map_err(|source| AnalysisError::Member {
                prompt,
                member,
                source,
            })?;
        }
        for (what, series) in [("logp", &self.logp), ("ref_logp", &self.ref_logp)] {
            let Some(s) = series else { continue };
            if s.len() != self.gold.len() {
                return Err(AnalysisError::Length {
                    prompt,
                    what,
                    got: s.len(),
                    want: self.gold.len(),
                });
            }
            if let Some(index) = s.iter().position(|v| !v.is_finite()) {
                return Err(AnalysisError::NotFinite {
                    prompt,
                    what,
                    index,
                });
            }
        }
        Ok(())
    }
}

/// Best-of-n at one n under one selector, averaged over prompts (95% normal intervals over
/// prompts, as in [`crate::bon::CurvePoint`]).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct SelectorPoint {
    pub n: usize,
    /// KL(best-of-n ‖ base), [`crate::bon::kl_best_of_n`].
    pub kl: f64,
    pub sqrt_kl: f64,
    /// The selector's own score at its pick.
    pub score: f64,
    /// Member 0's (the proxy's) score at the selector's pick: comparable across selectors.
    pub proxy: f64,
    pub gold: f64,
    pub proxy_ci: [f64; 2],
    pub gold_ci: [f64; 2],
}

/// Where a gold curve is highest.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Peak {
    pub n: usize,
    pub sqrt_kl: f64,
    pub gold: f64,
}

/// One selector's curves and what they say.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct SelectorCurve {
    pub selector: Selector,
    pub label: String,
    pub points: Vec<SelectorPoint>,
    /// `R(d) = d(α − βd)` fitted to (√KL, proxy − proxy at n = 1).
    pub proxy_fit: Option<RdFit>,
    /// The same for gold; its `n_star` is the fitted gold peak.
    pub gold_fit: Option<RdFit>,
    /// The highest gold on the curve (the smallest n among equal highs).
    pub gold_peak: Peak,
    /// Gold at the peak minus gold at the largest n: what over-optimisation cost (0 when gold
    /// is highest at the largest n).
    pub gold_fall: f64,
    /// Gold at [`Analysis::favourite_n`].
    pub gold_at_favourite: f64,
    /// `gold_at_favourite` minus the plain proxy's.
    pub gain_at_favourite: f64,
}

/// The analysis of a pool under several selectors.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Analysis {
    pub prompts: usize,
    /// The smallest pool of a prompt: the largest n on the curves.
    pub samples_per_prompt: usize,
    /// The n where the plain proxy's (member 0's) best-of-n curve of its own score is highest:
    /// what an optimiser that trusts the proxy would choose (usually the largest n).
    pub favourite_n: usize,
    /// The plain proxy's gold at `favourite_n`, the baseline of every `gain_at_favourite`.
    pub baseline_gold_at_favourite: f64,
    /// One per selector, in the order given.
    pub curves: Vec<SelectorCurve>,
}

/// The best-of-n curve of one selector over the grid `ns` (with 1 added when missing).
fn curve(
    pool: &PoolScores,
    selector: &Selector,
    ns: &[usize],
) -> Result<Vec<SelectorPoint>, AnalysisError> {
    let mut on_gold = Vec::with_capacity(pool.prompts.len());
    let mut on_proxy = Vec::with_capacity(pool.prompts.len());
    for (prompt, p) in pool.prompts.iter().enumerate() {
        let score = selector.scores(p).map_err(|need| match need {
            SelectorNeeds::Member(member) => AnalysisError::MissingMember {
                selector: selector.label(),
                member,
                prompt,
                members: p.members.len(),
            },
            SelectorNeeds::LogProbs => AnalysisError::MissingLogProbs {
                selector: selector.label(),
                prompt,
            },
        })?;
        on_gold.push(PromptPool {
            proxy: score.clone(),
            gold: p.gold.clone(),
        });
        // bon_curve reports its second series at the pick: here, member 0's score.
        on_proxy.push(PromptPool {
            proxy: score,
            gold: p.members[0].clone(),
        });
    }
    let gold = bon_curve(&on_gold, ns);
    let proxy = bon_curve(&on_proxy, ns);
    Ok(gold
        .into_iter()
        .zip(proxy)
        .map(|(g, p)| SelectorPoint {
            n: g.n,
            kl: g.kl,
            sqrt_kl: g.sqrt_kl,
            score: g.proxy,
            proxy: p.gold,
            gold: g.gold,
            proxy_ci: p.gold_ci,
            gold_ci: g.gold_ci,
        })
        .collect())
}

/// `report.json` of `rewardkit goodhart curves`: what was measured and the analysis.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct CurvesReport {
    /// The pool file.
    pub pool: String,
    /// The proxy reward models, the first being "the proxy".
    pub proxies: Vec<String>,
    /// Where gold came from: `model:DIR`, `gsm8k:FILE` or the pool's `gold` field.
    pub gold: String,
    pub seconds: f64,
    pub analysis: Analysis,
}

/// The mitigations measured against the plain proxy (member 0): the one selector set of
/// `rewardkit goodhart curves` and `rewardkit demo`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mitigations {
    /// The ensemble's members (empty: all of them); `None` for no ensemble rules (one proxy).
    pub ensemble: Option<Vec<usize>>,
    /// λ of the rule `mean − λ·var`.
    pub lambda_var: f64,
    /// λ of the rule `mean − λ·std`.
    pub lambda_std: f64,
    /// β of each KL-penalised proxy (these need the pool's log-probabilities).
    pub kl_betas: Vec<f64>,
}

impl Mitigations {
    /// The plain proxy, then the ensemble rules (mean, min, mean − λ·var, mean − λ·std), then
    /// the KL-penalised proxy at each β; each with its label: `proxy`, `ensemble mean`, …,
    /// `kl-penalised β=0.05`.
    pub fn selectors(&self) -> Vec<(Selector, String)> {
        let proxy = Selector::Proxy { member: 0 };
        let mut out = vec![(proxy.clone(), proxy.label())];
        if let Some(members) = &self.ensemble {
            let rules = [
                Combine::Mean,
                Combine::Min,
                Combine::MeanMinusVar {
                    lambda: self.lambda_var,
                },
                Combine::MeanMinusStd {
                    lambda: self.lambda_std,
                },
            ];
            out.extend(rules.map(|combine| {
                let label = format!("ensemble {}", combine.label());
                let members = members.clone();
                (Selector::Ensemble { combine, members }, label)
            }));
        }
        out.extend(self.kl_betas.iter().map(|&beta| {
            let s = Selector::KlPenalized { beta, member: 0 };
            let label = s.label();
            (s, label)
        }));
        out
    }
}

/// [`analyze`] with a label of the caller's for each selector's curve.
pub fn analyze_labelled(
    pool: &PoolScores,
    selectors: &[(Selector, String)],
    ns: &[usize],
) -> Result<Analysis, AnalysisError> {
    let plain: Vec<Selector> = selectors.iter().map(|(s, _)| s.clone()).collect();
    let mut analysis = analyze(pool, &plain, ns)?;
    for (curve, (_, label)) in analysis.curves.iter_mut().zip(selectors) {
        curve.label.clone_from(label);
    }
    Ok(analysis)
}

/// `R(d)` fitted to (√KL, value − value at n = 1); `points` starts at n = 1.
fn fit(points: &[SelectorPoint], value: impl Fn(&SelectorPoint) -> f64) -> Option<RdFit> {
    let r0 = value(points.first()?);
    let pts: Vec<(f64, f64)> = points.iter().map(|p| (p.sqrt_kl, value(p) - r0)).collect();
    fit_rd(&pts)
}

/// Analyses `pool` under each selector over the grid `ns` (n = 1 is added when missing; n
/// beyond the smallest pool is skipped; [`crate::bon::default_ns`] is a good grid). Gains are
/// measured against the plain proxy, `Selector::Proxy { member: 0 }`, whether or not it is
/// among `selectors`.
pub fn analyze(
    pool: &PoolScores,
    selectors: &[Selector],
    ns: &[usize],
) -> Result<Analysis, AnalysisError> {
    if pool.prompts.is_empty() {
        return Err(AnalysisError::NoPrompts);
    }
    for (i, p) in pool.prompts.iter().enumerate() {
        p.validate(i)?;
    }
    let mut grid: Vec<usize> = ns.iter().copied().chain([1]).filter(|&n| n > 0).collect();
    grid.sort_unstable();
    grid.dedup();

    let baseline = curve(pool, &Selector::Proxy { member: 0 }, &grid)?;
    let favourite = baseline.iter().fold(
        &baseline[0],
        |best, p| if p.score > best.score { p } else { best },
    );
    let (favourite_n, baseline_gold) = (favourite.n, favourite.gold);

    let curves = selectors
        .iter()
        .map(|selector| {
            let points = curve(pool, selector, &grid)?;
            let peak = points.iter().fold(
                &points[0],
                |best, p| if p.gold > best.gold { p } else { best },
            );
            let last = points.last().unwrap_or(peak);
            let at_favourite = points
                .iter()
                .find(|p| p.n == favourite_n)
                .map_or(f64::NAN, |p| p.gold);
            Ok(SelectorCurve {
                selector: selector.clone(),
                label: selector.label(),
                proxy_fit: fit(&points, |p| p.proxy),
                gold_fit: fit(&points, |p| p.gold),
                gold_peak: Peak {
                    n: peak.n,
                    sqrt_kl: peak.sqrt_kl,
                    gold: peak.gold,
                },
                gold_fall: peak.gold - last.gold,
                gold_at_favourite: at_favourite,
                gain_at_favourite: at_favourite - baseline_gold,
                points,
            })
        })
        .collect::<Result<Vec<_>, AnalysisError>>()?;
    Ok(Analysis {
        prompts: pool.prompts.len(),
        samples_per_prompt: pool.prompts.iter().map(|p| p.gold.len()).min().unwrap_or(0),
        favourite_n,
        baseline_gold_at_favourite: baseline_gold,
        curves,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bon::best_of_n;

    fn prompt(members: Vec<Vec<f64>>, gold: Vec<f64>) -> PromptScores {
        PromptScores {
            members,
            gold,
            logp: None,
            ref_logp: None,
        }
    }

    /// Four samples; member 0 over-rates sample 3 (gold 0), member 1 rates it lowest. The mean
    /// ensemble still picks sample 3 at the top; the min ensemble picks sample 2 (gold 1).
    fn pool() -> PoolScores {
        PoolScores {
            prompts: vec![
                prompt(
                    vec![vec![0.0, 1.0, 2.0, 4.0], vec![0.0, 1.0, 2.0, -1.0]],
                    vec![0.0, 0.5, 1.0, 0.0],
                ),
                prompt(
                    vec![vec![1.0, 0.0, 3.0, 2.0], vec![1.0, 0.0, 3.0, 2.0]],
                    vec![0.0, 0.0, 1.0, 1.0],
                ),
            ],
        }
    }

    #[test]
    fn min_and_mean_ensembles_pick_differently_and_gains_are_differences() {
        let selectors = [
            Selector::Proxy { member: 0 },
            Selector::ensemble(Combine::Mean),
            Selector::ensemble(Combine::Min),
        ];
        let a = analyze(&pool(), &selectors, &[1, 2, 4]).unwrap();
        assert_eq!((a.prompts, a.samples_per_prompt), (2, 4));
        // Member 0's own score rises with n, so the favourite n is the largest.
        assert_eq!(a.favourite_n, 4);
        let at = |c: &SelectorCurve, n: usize| c.points.iter().find(|p| p.n == n).unwrap().clone();
        // Best-of-4 is each prompt's top sample. Proxy: prompt 1 picks sample 3 (gold 0),
        // prompt 2 picks sample 2 (gold 1): gold 0.5. Mean of members: prompt 1 scores
        // (0, 1, 2, 1.5), top is sample 2 (gold 1): gold 1. Min: (0, 1, 2, −1), sample 2 too.
        let [proxy, mean, min] = [&a.curves[0], &a.curves[1], &a.curves[2]];
        assert_eq!(at(proxy, 4).gold, 0.5);
        assert_eq!(at(mean, 4).gold, 1.0);
        assert_eq!(at(min, 4).gold, 1.0);
        // The proxy's score at the ensembles' pick: prompt 1 sample 2 (2.0), prompt 2 sample 2
        // (3.0).
        assert_eq!(at(mean, 4).proxy, 2.5);
        assert_eq!(at(proxy, 4).proxy, 3.5);
        assert_eq!(a.baseline_gold_at_favourite, 0.5);
        assert_eq!(mean.gain_at_favourite, 0.5);
        assert_eq!(min.gain_at_favourite, 0.5);
        assert_eq!(proxy.gain_at_favourite, 0.0);
        // Best-of-2 under min and mean differ in prompt 1: enumerate with the estimator itself.
        let p = &pool().prompts[0];
        let mean_scores: Vec<f64> = (0..4)
            .map(|i| (p.members[0][i] + p.members[1][i]) / 2.0)
            .collect();
        let min_scores: Vec<f64> = (0..4)
            .map(|i| p.members[0][i].min(p.members[1][i]))
            .collect();
        let q = &pool().prompts[1];
        let want =
            |s: &[f64]| (best_of_n(s, &p.gold, 2) + best_of_n(&q.members[0], &q.gold, 2)) / 2.0;
        assert!((at(mean, 2).gold - want(&mean_scores)).abs() < 1e-12);
        assert!((at(min, 2).gold - want(&min_scores)).abs() < 1e-12);
        // By hand: mean ranks prompt 1 as 0 < 1 < 1.5 (sample 3) < 2 (sample 2); best-of-2 of
        // 4 gives the top rank 1/2, the next 1/3, the next 1/6: 1/2·1 + 1/3·0 + 1/6·0.5.
        assert!((best_of_n(&mean_scores, &p.gold, 2) - (0.5 + 0.5 / 6.0)).abs() < 1e-12);
        // min ranks sample 3 last: 1/2·1 + 1/3·0.5 + 1/6·0.
        assert!((best_of_n(&min_scores, &p.gold, 2) - (0.5 + 0.5 / 3.0)).abs() < 1e-12);
    }

    #[test]
    fn peak_fall_and_fits() {
        // One prompt, 8 samples: proxy = rank, gold rises then falls.
        let proxy: Vec<f64> = (0..8).map(f64::from).collect();
        let gold = vec![0.0, 1.0, 2.0, 3.0, 3.5, 3.0, 2.0, 0.0];
        let pool = PoolScores {
            prompts: vec![prompt(vec![proxy], gold.clone())],
        };
        let a = analyze(&pool, &[Selector::Proxy { member: 0 }], &[2, 4, 8]).unwrap();
        let c = &a.curves[0];
        // n = 1 was added to the grid.
        assert_eq!(
            c.points.iter().map(|p| p.n).collect::<Vec<_>>(),
            [1, 2, 4, 8]
        );
        assert_eq!(c.points[3].gold, 0.0);
        let peak = c.points.iter().map(|p| p.gold).fold(f64::MIN, f64::max);
        assert_eq!(c.gold_peak.gold, peak);
        assert!(c.gold_peak.n == 2 || c.gold_peak.n == 4);
        assert_eq!(c.gold_fall, peak);
        assert_eq!(c.gold_at_favourite, 0.0);
        // Gold bends down (β > 0, a fitted peak); the proxy curve is the selector's score.
        let g = c.gold_fit.as_ref().unwrap();
        assert!(g.beta > 0.0 && g.n_star.is_some());
        assert!(c.points.windows(2).all(|w| w[1].proxy > w[0].proxy));
        assert_eq!(
            c.points.iter().map(|p| p.score).collect::<Vec<_>>(),
            c.points.iter().map(|p| p.proxy).collect::<Vec<_>>()
        );
    }

    #[test]
    fn kl_penalty_uses_log_probs() {
        // Sample 1 has the higher reward but is 10 nats likelier under the policy than the
        // reference: with β = 0.5 its penalised score is 3 − 5 = −2 < 0.
        let mut p = prompt(vec![vec![0.0, 3.0]], vec![1.0, 0.0]);
        p.logp = Some(vec![-5.0, -1.0]);
        p.ref_logp = Some(vec![-5.0, -11.0]);
        let pool = PoolScores { prompts: vec![p] };
        let kl = Selector::KlPenalized {
            beta: 0.5,
            member: 0,
        };
        let a = analyze(&pool, &[Selector::Proxy { member: 0 }, kl], &[2]).unwrap();
        assert_eq!(a.curves[0].points[1].gold, 0.0);
        assert_eq!(a.curves[1].points[1].gold, 1.0);
        assert_eq!(a.curves[1].points[1].score, 0.0);
        assert_eq!(a.curves[1].gain_at_favourite, 1.0);
        assert_eq!(a.curves[1].label, "kl-penalised β=0.5");
    }

    #[test]
    fn bad_pools_are_refused() {
        assert_eq!(
            analyze(&PoolScores { prompts: vec![] }, &[], &[1]),
            Err(AnalysisError::NoPrompts)
        );
        let short = PoolScores {
            prompts: vec![prompt(vec![vec![1.0]], vec![0.0, 1.0])],
        };
        assert!(matches!(
            analyze(&short, &[], &[1]),
            Err(AnalysisError::Member {
                prompt: 0,
                member: 0,
                ..
            })
        ));
        let one = PoolScores {
            prompts: vec![prompt(vec![vec![1.0, 2.0]], vec![0.0, 1.0])],
        };
        assert!(matches!(
            analyze(&one, &[Selector::Proxy { member: 3 }], &[1]),
            Err(AnalysisError::MissingMember { member: 3, .. })
        ));
        assert!(matches!(
            analyze(
                &one,
                &[Selector::KlPenalized {
                    beta: 0.1,
                    member: 0
                }],
                &[1]
            ),
            Err(AnalysisError::MissingLogProbs { .. })
        ));
        let mut nan = one.clone();
        nan.prompts[0].logp = Some(vec![0.0, f64::NAN]);
        assert!(matches!(
            analyze(&nan, &[], &[1]),
            Err(AnalysisError::NotFinite {
                what: "logp",
                index: 1,
                ..
            })
        ));
    }

    #[test]
    fn mitigations_are_the_proxy_the_four_ensemble_rules_and_the_kl_penalties() {
        let m = Mitigations {
            ensemble: Some(vec![0, 1]),
            lambda_var: 0.5,
            lambda_std: 2.0,
            kl_betas: vec![0.1],
        };
        let labels: Vec<String> = m.selectors().into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            labels,
            [
                "proxy",
                "ensemble mean",
                "ensemble min",
                "ensemble mean-0.5*var",
                "ensemble mean-2*std",
                "kl-penalised β=0.1"
            ]
        );
        assert_eq!(
            m.selectors()[2].0,
            Selector::Ensemble {
                combine: Combine::Min,
                members: vec![0, 1]
            }
        );
        let single = Mitigations {
            ensemble: None,
            kl_betas: Vec::new(),
            ..m
        };
        assert_eq!(
            single.selectors(),
            [(Selector::Proxy { member: 0 }, "proxy".to_string())]
        );
    }

    #[test]
    fn selector_serde_and_labels() {
        let s: Selector =
            serde_json::from_str(r#"{"kind":"ensemble","combine":{"kind":"min"}}"#).unwrap();
        assert_eq!(s, Selector::ensemble(Combine::Min));
        assert_eq!(s.label(), "ensemble min");
        let kl = Selector::KlPenalized {
            beta: 0.1,
            member: 0,
        };
        let json = serde_json::to_string(&kl).unwrap();
        assert_eq!(json, r#"{"kind":"kl_penalized","beta":0.1,"member":0}"#);
        assert_eq!(Selector::Proxy { member: 2 }.label(), "member 2");
    }
}
