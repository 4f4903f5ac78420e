//! Goodhart's law under RL: a policy optimised step by step against a proxy reward model, with
//! proxy and gold measured at every step against d = √KL(π ‖ π_ref).
//!
//! Gao, Schulman & Hilton (2022) found that RL's gold follows `R(d) = d(α − β·ln d)` (where
//! best-of-n follows `d(α − βd)`, [`crate::fit`]). [`fit_rl`] fits it by least squares with no
//! intercept to `(d, R(d) − R(0))`, through the same two-feature machinery as the best-of-n
//! fit ([`crate::fit::fit_two_features`], features `d` and `d·ln d`, the latter 0 at d = 0).
//! Its peak: `R'(d) = α − β − β·ln d = 0` at `d* = exp(α/β − 1)`, a maximum when β > 0, with
//! `R(d*) − R(0) = β·d*`.
//!
//! [`RlCurveRow`] is one line of `rl_curves.jsonl` (one per run and step); [`summarize`] turns
//! the rows into one [`RlRunSummary`] per run: start and end, the gold peak (step, √KL), how
//! far gold fell after it, and both fits. A step's gold and proxy are means over that step's
//! samples, so they are noisy; the summary reads them through a centred moving average of
//! `window` steps (1: the raw values), while the fits use every raw point.
//!
//! ```
//! use rewardkit_goodhart::rl::{fit_rl, summarize, RlCurveRow};
//!
//! // Gold that follows d(1 − 0.5·ln d) exactly, on top of 0.5 at d = 0.
//! let rows: Vec<RlCurveRow> = (0..40)
//!     .map(|step| {
//!         let d = 0.1 * step as f64;
//!         let r = if d > 0.0 { d * (1.0 - 0.5 * d.ln()) } else { 0.0 };
//!         RlCurveRow {
//!             run: "a".into(), beta: 0.0, step, kl: d * d, proxy: d, gold: 0.5 + r,
//!             agree: None, agree_new: None,
//!         }
//!     })
//!     .collect();
//! let runs = summarize(&rows, 1).unwrap();
//! let fit = runs[0].gold_fit.as_ref().unwrap();
//! assert!((fit.alpha - 1.0).abs() < 1e-9 && (fit.beta - 0.5).abs() < 1e-9);
//! // The peak d* = e^(α/β − 1) = e.
//! assert!((fit.d_star.unwrap() - std::f64::consts::E).abs() < 1e-6);
//! assert!(fit_rl(&[(1.0, 0.0)]).is_none());
//! ```

use serde::{Deserialize, Serialize};

use crate::fit::fit_two_features;

/// One line of `rl_curves.jsonl`: a run's measurement at one step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RlCurveRow {
    /// The run's name (`proxy β=0`, `control`, `ensemble min`, …).
    pub run: String,
    /// The KL coefficient β of the run's objective `r − β·KL`.
    pub beta: f64,
    pub step: usize,
    /// Mean KL(π ‖ π_ref) per sequence, in nats (an estimate: may be slightly negative).
    pub kl: f64,
    /// The mean score of the step's samples under the reward the run optimises (before the KL
    /// penalty).
    pub proxy: f64,
    /// The mean gold of the step's samples.
    pub gold: f64,
    /// Sycophancy, where the run measures it (the world's runs): of the evaluation's samples
    /// on prompts that carry a wrong user claim, the share agreeing with the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agree: Option<f64>,
    /// The same on held-out questions the policy is never optimised on, each with a wrong claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agree_new: Option<f64>,
}

impl RlCurveRow {
    /// √KL, with a negative KL estimate read as 0.
    pub fn sqrt_kl(&self) -> f64 {
        self.kl.max(0.0).sqrt()
    }
}

/// A fitted `R(d) = d(α − β·ln d)`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct RlFit {
    pub alpha: f64,
    pub beta: f64,
    /// As [`crate::fit::RdFit::r2`].
    pub r2: f64,
    /// The peak `d* = exp(α/β − 1)`, when β > 0 (and it is finite).
    pub d_star: Option<f64>,
    /// `d*²`, the KL at the peak.
    pub kl_star: Option<f64>,
    /// `R(d*) − R(0) = β·d*`.
    pub peak: Option<f64>,
}

/// Least-squares fit of `y = d(α − β·ln d)` to `(d, y)` points (d ≥ 0). `None` when the points
/// cannot determine both coefficients (e.g. fewer than two distinct d other than 0 and 1) or
/// are not finite or have a negative d.
pub fn fit_rl(points: &[(f64, f64)]) -> Option<RlFit> {
    if points.iter().any(|&(d, _)| d < 0.0) {
        return None;
    }
    let d_ln_d = |d: f64| if d > 0.0 { d * d.ln() } else { 0.0 };
    let (alpha, beta, r2) = fit_two_features(points, |d| (d, d_ln_d(d)))?;
    let d_star = Some((alpha / beta - 1.0).exp()).filter(|d| beta > 0.0 && d.is_finite());
    Some(RlFit {
        alpha,
        beta,
        r2,
        d_star,
        kl_star: d_star.map(|d| d * d),
        peak: d_star.map(|d| beta * d),
    })
}

/// Where a run's (smoothed) gold is highest.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct RlPeak {
    pub step: usize,
    pub sqrt_kl: f64,
    pub gold: f64,
}

/// A run's values at one step (gold and proxy smoothed, KL raw).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct RlPoint {
    pub step: usize,
    pub kl: f64,
    pub sqrt_kl: f64,
    pub proxy: f64,
    pub gold: f64,
}

/// One run, summarised.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct RlRunSummary {
    pub run: String,
    pub beta: f64,
    /// Steps measured (rows).
    pub steps: usize,
    /// The moving-average window the points below were read through.
    pub window: usize,
    pub start: RlPoint,
    pub end: RlPoint,
    /// The highest smoothed gold (the earliest among equal highs).
    pub gold_peak: RlPeak,
    /// Gold at the peak minus gold at the end (≥ 0).
    pub gold_fall: f64,
    /// The largest fall of smoothed gold below its best so far (≥ 0): how far gold ever dropped
    /// under what the run had reached.
    pub max_drawdown: f64,
    /// `d(α − β·ln d)` fitted to (√KL, proxy − proxy at the start).
    pub proxy_fit: Option<RlFit>,
    /// The same for gold.
    pub gold_fit: Option<RlFit>,
    /// Every step, gold and proxy smoothed.
    pub points: Vec<RlPoint>,
}

/// Why rows cannot be summarised.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RlError {
    #[error("no rows")]
    NoRows,
    #[error("the moving-average window must be at least 1")]
    Window,
    #[error("run `{run}`, step {step}: {what} is not finite")]
    NotFinite {
        run: String,
        step: usize,
        what: &'static str,
    },
    #[error("run `{run}`: step {step} does not come after step {previous}")]
    Order {
        run: String,
        step: usize,
        previous: usize,
    },
    #[error("run `{run}`: β {beta} at step {step}, {first} before")]
    Beta {
        run: String,
        step: usize,
        beta: f64,
        first: f64,
    },
}

/// Centred moving average with `window` points (partial windows at the ends).
fn smooth(values: &[f64], window: usize) -> Vec<f64> {
    let before = (window - 1) / 2;
    let after = window - 1 - before;
    (0..values.len())
        .map(|i| {
            let lo = i.saturating_sub(before);
            let hi = (i + after).min(values.len() - 1);
            values[lo..=hi].iter().sum::<f64>() / (hi - lo + 1) as f64
        })
        .collect()
}

/// The rows grouped by run, in the order runs first appear, each checked.
fn group(rows: &[RlCurveRow]) -> Result<Vec<Vec<&RlCurveRow>>, RlError> {
    let mut runs: Vec<Vec<&RlCurveRow>> = Vec::new();
    for row in rows {
        for (what, v) in [
            ("kl", row.kl),
            ("proxy", row.proxy),
            ("gold", row.gold),
            ("beta", row.beta),
        ] {
            if !v.is_finite() {
                return Err(RlError::NotFinite {
                    run: row.run.clone(),
                    step: row.step,
                    what,
                });
            }
        }
        match runs.iter_mut().find(|r| r[0].run == row.run) {
            Some(run) => {
                let last = run[run.len() - 1];
                if row.step <= last.step {
                    return Err(RlError::Order {
                        run: row.run.clone(),
                        step: row.step,
                        previous: last.step,
                    });
                }
                if row.beta != run[0].beta {
                    return Err(RlError::Beta {
                        run: row.run.clone(),
                        step: row.step,
                        beta: row.beta,
                        first: run[0].beta,
                    });
                }
                run.push(row);
            }
            None => runs.push(vec![row]),
        }
    }
    Ok(runs)
}

/// One summary per run (in the order runs first appear in `rows`), gold and proxy read through
/// a centred moving average of `window` steps. Rows of a run must come in increasing steps with
/// one β; every value must be finite.
pub fn summarize(rows: &[RlCurveRow], window: usize) -> Result<Vec<RlRunSummary>, RlError> {
    if rows.is_empty() {
        return Err(RlError::NoRows);
    }
    if window == 0 {
        return Err(RlError::Window);
    }
    Ok(group(rows)?
        .into_iter()
        .map(|run| summarize_run(&run, window))
        .collect())
}

fn summarize_run(run: &[&RlCurveRow], window: usize) -> RlRunSummary {
    let gold = smooth(&run.iter().map(|r| r.gold).collect::<Vec<_>>(), window);
    let proxy = smooth(&run.iter().map(|r| r.proxy).collect::<Vec<_>>(), window);
    let point = |i: usize| RlPoint {
        step: run[i].step,
        kl: run[i].kl,
        sqrt_kl: run[i].sqrt_kl(),
        proxy: proxy[i],
        gold: gold[i],
    };
    let peak = (0..run.len()).fold(0, |b, i| if gold[i] > gold[b] { i } else { b });
    let last = run.len() - 1;
    let (mut best, mut drawdown) = (f64::NEG_INFINITY, 0.0f64);
    for &g in &gold {
        best = best.max(g);
        drawdown = drawdown.max(best - g);
    }
    let fit = |values: &[f64]| {
        let r0 = values[0];
        let pts: Vec<(f64, f64)> = run
            .iter()
            .zip(values)
            .map(|(r, v)| (r.sqrt_kl(), v - r0))
            .collect();
        fit_rl(&pts)
    };
    let raw_gold: Vec<f64> = std::iter::once(gold[0])
        .chain(run[1..].iter().map(|r| r.gold))
        .collect();
    let raw_proxy: Vec<f64> = std::iter::once(proxy[0])
        .chain(run[1..].iter().map(|r| r.proxy))
        .collect();
    RlRunSummary {
        run: run[0].run.clone(),
        beta: run[0].beta,
        steps: run.len(),
        window,
        start: point(0),
        end: point(last),
        gold_peak: RlPeak {
            step: run[peak].step,
            sqrt_kl: run[peak].sqrt_kl(),
            gold: gold[peak],
        },
        gold_fall: gold[peak] - gold[last],
        max_drawdown: drawdown,
        proxy_fit: fit(&raw_proxy),
        gold_fit: fit(&raw_gold),
        points: (0..run.len()).map(point).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewardkit_data::Rng;

    fn law(alpha: f64, beta: f64, d: f64) -> f64 {
        if d > 0.0 {
            d * (alpha - beta * d.ln())
        } else {
            0.0
        }
    }

    #[test]
    fn exact_points_give_exact_coefficients_and_peak() {
        for (alpha, beta) in [(0.3, 0.2), (1.0, 0.5), (-0.2, 0.4), (0.5, -0.1)] {
            let pts: Vec<(f64, f64)> = (0..30)
                .map(|k| {
                    let d = 0.15 * k as f64;
                    (d, law(alpha, beta, d))
                })
                .collect();
            let f = fit_rl(&pts).unwrap();
            assert!((f.alpha - alpha).abs() < 1e-9, "{f:?}");
            assert!((f.beta - beta).abs() < 1e-9, "{f:?}");
            assert!((f.r2 - 1.0).abs() < 1e-9);
            if beta > 0.0 {
                let d = f.d_star.unwrap();
                // The derivative α − β − β·ln d vanishes at d*, and R(d*) = β·d*.
                assert!((alpha - beta - beta * d.ln()).abs() < 1e-9);
                assert!((f.peak.unwrap() - law(alpha, beta, d)).abs() < 1e-9);
                assert!((f.kl_star.unwrap() - d * d).abs() < 1e-9);
                // A maximum: both sides are lower.
                assert!(law(alpha, beta, 0.9 * d) < f.peak.unwrap());
                assert!(law(alpha, beta, 1.1 * d) < f.peak.unwrap());
            } else {
                assert!(f.d_star.is_none() && f.peak.is_none());
            }
        }
    }

    #[test]
    fn noisy_points_recover_coefficients() {
        let (alpha, beta, sigma) = (0.4, 0.25, 0.02);
        let mut rng = Rng::new(12);
        let pts: Vec<(f64, f64)> = (1..=100)
            .map(|k| {
                let d = 0.04 * k as f64;
                (d, law(alpha, beta, d) + sigma * rng.normal())
            })
            .collect();
        let f = fit_rl(&pts).unwrap();
        // Standard errors σ·√diag((XᵀX)⁻¹), X = [d, −d·ln d] on this design: 0.00286 (α) and
        // 0.00258 (β), the 2×2 inverse in closed form in Python (math only); tolerances are 4
        // of them.
        assert!((f.alpha - alpha).abs() < 0.0115, "alpha {}", f.alpha);
        assert!((f.beta - beta).abs() < 0.0104, "beta {}", f.beta);
        assert!(f.r2 > 0.9, "r2 {}", f.r2);
    }

    #[test]
    fn degenerate_points_are_refused() {
        assert!(fit_rl(&[]).is_none());
        // d = 0 and d = 1 make d·ln d vanish: one feature only.
        assert!(fit_rl(&[(0.0, 0.0), (1.0, 0.5), (1.0, 0.4)]).is_none());
        assert!(fit_rl(&[(2.0, 0.5), (2.0, 0.4)]).is_none());
        assert!(fit_rl(&[(1.0, f64::NAN), (2.0, 1.0)]).is_none());
        assert!(fit_rl(&[(-1.0, 0.0), (2.0, 1.0), (3.0, 1.0)]).is_none());
    }

    fn row(run: &str, beta: f64, step: usize, kl: f64, proxy: f64, gold: f64) -> RlCurveRow {
        RlCurveRow {
            run: run.into(),
            beta,
            step,
            kl,
            proxy,
            gold,
            agree: None,
            agree_new: None,
        }
    }

    #[test]
    fn summaries_find_peak_fall_and_drawdown() {
        // Run a: gold 0.5 → 0.8 (step 3) → 0.6; run b only rises. Interleaved on purpose.
        let gold_a = [0.5, 0.6, 0.7, 0.8, 0.75, 0.7, 0.6];
        let mut rows = Vec::new();
        for (step, g) in gold_a.iter().enumerate() {
            rows.push(row("a", 0.0, step, 0.1 * step as f64, step as f64, *g));
            rows.push(row(
                "b",
                0.1,
                step,
                0.01 * step as f64,
                0.5 * step as f64,
                0.5 + 0.01 * step as f64,
            ));
        }
        let s = summarize(&rows, 1).unwrap();
        assert_eq!(s.len(), 2);
        let (a, b) = (&s[0], &s[1]);
        assert_eq!((a.run.as_str(), a.steps, a.beta), ("a", 7, 0.0));
        assert_eq!(a.gold_peak.step, 3);
        assert!((a.gold_peak.sqrt_kl - 0.3f64.sqrt()).abs() < 1e-12);
        assert!((a.gold_fall - 0.2).abs() < 1e-12);
        assert!((a.max_drawdown - 0.2).abs() < 1e-12);
        assert_eq!((a.start.gold, a.end.gold, a.end.proxy), (0.5, 0.6, 6.0));
        assert_eq!(
            (b.gold_fall, b.max_drawdown, b.gold_peak.step),
            (0.0, 0.0, 6)
        );
        // A window of 3 averages neighbours: the peak is (0.8 + 0.75 + 0.7) / 3 at step 4 or
        // (0.7 + 0.8 + 0.75) / 3 at step 3 — the earliest of equal highs.
        let s3 = summarize(&rows, 3).unwrap();
        assert_eq!(s3[0].gold_peak.step, 3);
        assert!((s3[0].gold_peak.gold - 0.75).abs() < 1e-12);
        assert!((s3[0].end.gold - 0.65).abs() < 1e-12);
        assert_eq!(s3[0].window, 3);
        assert_eq!(s3[0].points.len(), 7);
        assert_eq!(s3[0].points[6], s3[0].end);
    }

    #[test]
    fn bad_rows_are_refused_with_the_run_and_step() {
        assert_eq!(summarize(&[], 1), Err(RlError::NoRows));
        let ok = [
            row("a", 0.0, 0, 0.0, 0.0, 0.5),
            row("a", 0.0, 1, 0.1, 0.1, 0.5),
        ];
        assert_eq!(summarize(&ok, 0), Err(RlError::Window));
        let mut back = ok.to_vec();
        back.push(row("a", 0.0, 1, 0.2, 0.1, 0.5));
        assert!(matches!(
            summarize(&back, 1),
            Err(RlError::Order {
                step: 1,
                previous: 1,
                ..
            })
        ));
        let mut nan = ok.to_vec();
        nan[1].gold = f64::NAN;
        assert!(matches!(
            summarize(&nan, 1),
            Err(RlError::NotFinite {
                what: "gold",
                step: 1,
                ..
            })
        ));
        let mut beta = ok.to_vec();
        beta[1].beta = 0.1;
        assert!(matches!(summarize(&beta, 1), Err(RlError::Beta { .. })));
        // A negative KL estimate reads as √KL 0; the schema is the issue's.
        let r = row("a", 0.0, 0, -0.01, 0.0, 0.5);
        assert_eq!(r.sqrt_kl(), 0.0);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"run":"a","beta":0.0,"step":0,"kl":-0.01,"proxy":0.0,"gold":0.5}"#
        );
    }
}
