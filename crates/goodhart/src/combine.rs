//! Mitigations of reward over-optimisation: ways to combine an ensemble's scores into one
//! reward (Coste et al. 2023, "Reward Model Ensembles Help Mitigate Overoptimization"), and the
//! per-sample KL penalty of RLHF.

use serde::{Deserialize, Serialize};

/// How an ensemble's member scores become one reward.
///
/// Variance and standard deviation are over the members as a population (divided by K, not
/// K − 1): they describe this ensemble's disagreement, not an estimate of a wider one, and with
/// K = 1 they are 0, so every rule reduces to the single member's score.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Combine {
    /// The mean of the members.
    Mean,
    /// Worst-case optimisation: the lowest member.
    Min,
    /// Uncertainty-weighted optimisation (UWO, Coste et al. 2023): mean − λ·variance.
    MeanMinusVar { lambda: f64 },
    /// mean − λ·standard deviation (a lower confidence bound).
    MeanMinusStd { lambda: f64 },
}

impl Combine {
    /// The combined reward of one sample; NaN for no members.
    pub fn apply(&self, member_scores: &[f64]) -> f64 {
        if member_scores.is_empty() {
            return f64::NAN;
        }
        let k = member_scores.len() as f64;
        let mean = member_scores.iter().sum::<f64>() / k;
        let var = || {
            member_scores
                .iter()
                .map(|s| (s - mean).powi(2))
                .sum::<f64>()
                / k
        };
        match *self {
            Combine::Mean => mean,
            Combine::Min => member_scores.iter().copied().fold(f64::INFINITY, f64::min),
            Combine::MeanMinusVar { lambda } => mean - lambda * var(),
            Combine::MeanMinusStd { lambda } => mean - lambda * var().sqrt(),
        }
    }

    /// A short name for tables and plots, e.g. `mean-0.5*var`.
    pub fn label(&self) -> String {
        match self {
            Combine::Mean => "mean".into(),
            Combine::Min => "min".into(),
            Combine::MeanMinusVar { lambda } => format!("mean-{lambda}*var"),
            Combine::MeanMinusStd { lambda } => format!("mean-{lambda}*std"),
        }
    }
}

impl std::str::FromStr for Combine {
    type Err = String;

    /// The command-line form: `mean`, `min`, `mean-var:λ` (UWO) or `mean-std:λ`, λ ≥ 0 finite.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (rule, lambda) = match s.split_once(':') {
            Some((rule, l)) => {
                let lambda: f64 = l
                    .parse()
                    .map_err(|_| format!("λ in `{s}` is not a number"))?;
                if !(lambda.is_finite() && lambda >= 0.0) {
                    return Err(format!("λ in `{s}` must be finite and at least 0"));
                }
                (rule, Some(lambda))
            }
            None => (s, None),
        };
        match (rule, lambda) {
            ("mean", None) => Ok(Combine::Mean),
            ("min", None) => Ok(Combine::Min),
            ("mean-var", Some(lambda)) => Ok(Combine::MeanMinusVar { lambda }),
            ("mean-std", Some(lambda)) => Ok(Combine::MeanMinusStd { lambda }),
            ("mean-var" | "mean-std", None) => Err(format!("`{s}` needs a λ, e.g. `{s}:0.5`")),
            _ => Err(format!(
                "unknown rule `{s}` (expected mean, min, mean-var:λ or mean-std:λ)"
            )),
        }
    }
}

/// The KL-penalised reward of one sample, `r − β·(log π(y|x) − log π_ref(y|x))`: the
/// single-sample estimate of the KL term in the RLHF objective.
pub fn kl_penalized(reward: f64, logp_policy: f64, logp_ref: f64, beta: f64) -> f64 {
    reward - beta * (logp_policy - logp_ref)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_on_a_small_ensemble() {
        // Scores 1, 2, 6: mean 3, population variance (4 + 1 + 9) / 3 = 14/3.
        let s = [1.0, 2.0, 6.0];
        assert_eq!(Combine::Mean.apply(&s), 3.0);
        assert_eq!(Combine::Min.apply(&s), 1.0);
        let uwo = Combine::MeanMinusVar { lambda: 0.5 }.apply(&s);
        assert!((uwo - (3.0 - 7.0 / 3.0)).abs() < 1e-15);
        let lcb = Combine::MeanMinusStd { lambda: 2.0 }.apply(&s);
        assert!((lcb - (3.0 - 2.0 * (14.0f64 / 3.0).sqrt())).abs() < 1e-15);
        assert!(Combine::Mean.apply(&[]).is_nan() && Combine::Min.apply(&[]).is_nan());
    }

    #[test]
    fn one_member_is_its_own_score() {
        for c in [
            Combine::Mean,
            Combine::Min,
            Combine::MeanMinusVar { lambda: 3.0 },
            Combine::MeanMinusStd { lambda: 3.0 },
        ] {
            assert_eq!(c.apply(&[-0.7]), -0.7, "{}", c.label());
        }
    }

    #[test]
    fn serde_form_and_labels() {
        let c = Combine::MeanMinusVar { lambda: 0.5 };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"kind":"mean_minus_var","lambda":0.5}"#);
        assert_eq!(serde_json::from_str::<Combine>(&json).unwrap(), c);
        assert_eq!(
            serde_json::from_str::<Combine>(r#"{"kind":"min"}"#).unwrap(),
            Combine::Min
        );
        assert_eq!(c.label(), "mean-0.5*var");
        assert_eq!(Combine::MeanMinusStd { lambda: 1.0 }.label(), "mean-1*std");
    }

    #[test]
    fn command_line_form() {
        let parse = |s: &str| s.parse::<Combine>();
        assert_eq!(parse("mean"), Ok(Combine::Mean));
        assert_eq!(parse("min"), Ok(Combine::Min));
        assert_eq!(
            parse("mean-var:0.5"),
            Ok(Combine::MeanMinusVar { lambda: 0.5 })
        );
        assert_eq!(
            parse("mean-std:2"),
            Ok(Combine::MeanMinusStd { lambda: 2.0 })
        );
        assert!(parse("mean-std").unwrap_err().contains("needs a λ"));
        assert!(parse("mean-std:-1").unwrap_err().contains("at least 0"));
        assert!(parse("mean-var:x").unwrap_err().contains("not a number"));
        assert!(parse("mean:1").unwrap_err().contains("unknown rule"));
        assert!(parse("max").unwrap_err().contains("unknown rule"));
    }

    #[test]
    fn kl_penalty() {
        // Policy more likely than the reference by 2 nats, β = 0.1: reward drops by 0.2.
        assert!((kl_penalized(1.0, -3.0, -5.0, 0.1) - 0.8).abs() < 1e-15);
        assert_eq!(kl_penalized(1.0, -3.0, -3.0, 0.1), 1.0);
    }
}
