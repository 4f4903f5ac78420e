//! Training-level interventions against reward hacking: penalties added to the Bradley-Terry
//! loss, a closed set chosen in [`TrainConfig::penalties`](crate::TrainConfig).
//!
//! Notation: a micro-batch has n pairs with rewards `r(c)` (chosen) and `r(j)` (rejected);
//! `softplus(x) = log(1 + eˣ)`, `σ` the logistic function.
//!
//! | penalty | added to the loss | gradient |
//! | --- | --- | --- |
//! | [`Penalty::Honesty`] | `λ · mean_k softplus(r(agree_k) − r(correct_k))` over the batch's correction pairs k | `∂/∂r(agree_k) = λ σ(r(agree_k) − r(correct_k)) / K`, the negative of it for `r(correct_k)` |
//! | [`Penalty::Counterfactual`] | `λ · mean_i (r(x′_i) − r(x_i))²` over the batch's chosen responses x_i and an information-free edit x′_i of each | `∂/∂r(x′_i) = 2λ (r(x′_i) − r(x_i)) / m`, the negative of it for `r(x_i)` |
//! | [`Penalty::Odin`] | Bradley-Terry on `q + ℓ` (a quality head q and a length head ℓ on one pooled state), plus `λ |ρ(q, L)| − λ_ℓ ρ(ℓ, L) + λ_⊥ |w_q · w_ℓ|` | through Pearson's ρ below |
//!
//! Pearson's ρ of rewards x against fixed lengths L over the batch's 2n responses is
//! `ρ = Σ x̃ᵢ L̃ᵢ / (‖x̃‖ ‖L̃‖)` with x̃ = x − mean(x); its gradient is
//! `∂ρ/∂xᵢ = (L̃ᵢ / ‖L̃‖ − ρ x̃ᵢ / ‖x̃‖) / ‖x̃‖` (the centring is absorbed, since Σ L̃ = 0).
//! The gradients are candle's autograd of the formulas here; the tests check each against
//! central finite differences.
//!
//! - **Honesty** needs correction pairs in the training data (`train --augment` makes them from
//!   GSM8K and TruthfulQA training questions: `source` starting with
//!   [`CORRECTION_SOURCE`](rewardkit_data::CORRECTION_SOURCE)); the trainer refuses to start
//!   without any. Those pairs are in the Bradley-Terry loss as well; the penalty weights them
//!   again, so agreeing with a wrong user costs more than an ordinary mistake.
//! - **Counterfactual** edits are made on the fly with the training phrases
//!   ([`ProbePhrases::augment`], not the audit's), a fresh edit per pair and step from
//!   `(seed, step)`; a response an edit cannot apply to (one sentence for a bulleted list, a
//!   message list) is left out of the mean.
//! - **ODIN** (Chen et al. 2024, "ODIN: Disentangled Reward Mitigates Hacking in RLHF"): the
//!   model's own value head is the quality head q; the length head ℓ (`[1, hidden]`, initialised
//!   as the value head) is training state, saved in checkpoints as [`ODIN_FILE`] and never in the
//!   model, so a trained model scores with the quality head alone. L is the response's word
//!   count, the length the audit correlates scores with.

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use rewardkit_data::probes::{check_training_edits, TRAINING_EDITS};
use rewardkit_data::Probe;

use crate::loss::softplus;

/// The checkpoint file holding ODIN's length head (`length_head.weight`).
pub const ODIN_FILE: &str = "odin_length_head.safetensors";

/// One penalty of the training objective (`kind` names it in a config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Penalty {
    /// `λ · softplus(r(agree) − r(correct))` over the correction pairs of each batch.
    Honesty {
        /// λ.
        weight: f64,
    },
    /// `λ · (r(x′) − r(x))²` for an information-free edit x′ of each chosen response x.
    Counterfactual {
        /// λ.
        weight: f64,
        /// The edits to draw from (the training lexicons' phrases); each pair gets one per step.
        #[serde(default = "default_edits")]
        edits: Vec<Probe>,
    },
    /// ODIN: a length head beside the value head, Bradley-Terry on their sum, the value head's
    /// correlation with length penalised.
    Odin {
        /// λ on |ρ(quality head, length)|.
        weight: f64,
        /// λ_ℓ on −ρ(length head, length): the length head is pulled towards length.
        #[serde(default = "one")]
        length_weight: f64,
        /// λ_⊥ on |w_q · w_ℓ|, the heads' weights kept orthogonal.
        #[serde(default = "one")]
        orthogonality: f64,
    },
}

fn one() -> f64 {
    1.0
}

/// The edits of the counterfactual penalty by default: those `data augment` uses.
pub fn default_edits() -> Vec<Probe> {
    TRAINING_EDITS.to_vec()
}

impl Penalty {
    /// The name in logs and flags: `honesty`, `counterfactual`, `odin`.
    pub fn name(&self) -> &'static str {
        match self {
            Penalty::Honesty { .. } => "honesty",
            Penalty::Counterfactual { .. } => "counterfactual",
            Penalty::Odin { .. } => "odin",
        }
    }

    /// λ.
    pub fn weight(&self) -> f64 {
        match self {
            Penalty::Honesty { weight }
            | Penalty::Counterfactual { weight, .. }
            | Penalty::Odin { weight, .. } => *weight,
        }
    }

    /// Parses a flag `NAME` or `NAME=λ` (λ = 1 when left out), the other settings at their
    /// defaults.
    pub fn parse(text: &str) -> Result<Penalty, String> {
        let (name, weight) = match text.split_once('=') {
            Some((n, w)) => {
                let w: f64 = w
                    .trim()
                    .parse()
                    .map_err(|_| format!("penalty {text:?}: {w:?} is not a number"))?;
                (n.trim(), w)
            }
            None => (text.trim(), 1.0),
        };
        let penalty = match name {
            "honesty" => Penalty::Honesty { weight },
            "counterfactual" => Penalty::Counterfactual {
                weight,
                edits: default_edits(),
            },
            "odin" => Penalty::Odin {
                weight,
                length_weight: 1.0,
                orthogonality: 1.0,
            },
            _ => {
                return Err(format!(
                    "unknown penalty {name:?} (expected honesty, counterfactual or odin)"
                ))
            }
        };
        penalty.validate()?;
        Ok(penalty)
    }

    /// Checks the weights (finite, ≥ 0) and the edit list.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name();
        let check = |what: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "penalty {name}: {what} must be finite and ≥ 0, got {v}"
                ))
            }
        };
        check("weight", self.weight())?;
        match self {
            Penalty::Honesty { .. } => Ok(()),
            Penalty::Counterfactual { edits, .. } => {
                check_training_edits(edits).map_err(|e| format!("penalty counterfactual: {e}"))
            }
            Penalty::Odin {
                length_weight,
                orthogonality,
                ..
            } => {
                check("length_weight", *length_weight)?;
                check("orthogonality", *orthogonality)
            }
        }
    }
}

/// `mean_k softplus(r(agree_k) − r(correct_k))` over the rows `correction` of a batch's chosen
/// (correcting) and rejected (agreeing) rewards; `None` when the batch has no correction pair.
pub fn honesty(
    chosen: &Tensor,
    rejected: &Tensor,
    correction: &[u32],
) -> candle_core::Result<Option<Tensor>> {
    if correction.is_empty() {
        return Ok(None);
    }
    let idx = Tensor::new(correction, chosen.device())?;
    let gap = (rejected.index_select(&idx, 0)? - chosen.index_select(&idx, 0)?)?;
    Ok(Some(softplus(&gap)?.mean_all()?))
}

/// `mean_i (r(x′_i) − r(x_i))²` of an original's and its edit's rewards.
pub fn invariance(original: &Tensor, edited: &Tensor) -> candle_core::Result<Tensor> {
    (edited - original)?.sqr()?.mean_all()
}

/// Pearson's correlation of `x` (`[rows]`) with the fixed `lengths`; `None` when fewer than two
/// rows or the lengths are all equal (ρ is undefined; the term is left out).
pub fn correlation(x: &Tensor, lengths: &[f32]) -> candle_core::Result<Option<Tensor>> {
    let n = lengths.len();
    if n < 2 {
        return Ok(None);
    }
    let mean = lengths.iter().map(|&l| f64::from(l)).sum::<f64>() / n as f64;
    let centred: Vec<f64> = lengths.iter().map(|&l| f64::from(l) - mean).collect();
    let norm = centred.iter().map(|c| c * c).sum::<f64>().sqrt();
    if norm == 0.0 {
        return Ok(None);
    }
    let unit: Vec<f64> = centred.iter().map(|c| c / norm).collect();
    let unit = Tensor::new(unit, x.device())?.to_dtype(x.dtype())?;
    let xc = x.broadcast_sub(&x.mean_all()?)?;
    // ε keeps the gradient finite when every reward is equal (ρ is then 0).
    let x_norm = (xc.sqr()?.sum_all()? + 1e-12)?.sqrt()?;
    (xc * unit)?.sum_all()?.broadcast_div(&x_norm).map(Some)
}

/// ODIN's penalty: `weight · |ρ(q, L)| − length_weight · ρ(ℓ, L) + orthogonality · |w_q · w_ℓ|`
/// for quality rewards `q`, length-head rewards `ℓ` (`[rows]` each), the rows' `lengths`, and
/// the heads' weights `[1, hidden]`.
pub struct Odin<'a> {
    pub quality: &'a Tensor,
    pub length: &'a Tensor,
    pub lengths: &'a [f32],
    pub quality_weight: &'a Tensor,
    pub length_weight: &'a Tensor,
}

impl Odin<'_> {
    pub fn penalty(
        &self,
        weight: f64,
        length_weight: f64,
        orthogonality: f64,
    ) -> candle_core::Result<Tensor> {
        let dev = self.quality.device();
        let mut total = Tensor::zeros((), self.quality.dtype(), dev)?;
        if let Some(rq) = correlation(self.quality, self.lengths)? {
            total = (total + (rq.abs()? * weight)?)?;
        }
        if let Some(rl) = correlation(self.length, self.lengths)? {
            total = (total - (rl * length_weight)?)?;
        }
        if orthogonality > 0.0 {
            let dot = (self.quality_weight * self.length_weight)?.sum_all()?;
            total = (total + (dot.abs()? * orthogonality)?)?;
        }
        Ok(total)
    }
}

/// A length head `[1, hidden]` initialised N(0, 1/(hidden+1)) from `seed`, as the value head is.
pub fn new_length_head(
    hidden: usize,
    seed: u64,
    device: &candle_core::Device,
) -> Result<Var, crate::TrainError> {
    let mut rng = rewardkit_data::Rng::derive(seed, &["odin", "length_head"]);
    let std = 1.0 / ((hidden + 1) as f64).sqrt();
    let values: Vec<f32> = (0..hidden).map(|_| (rng.normal() * std) as f32).collect();
    let t = Tensor::from_vec(values, (1, hidden), device)?.to_dtype(DType::F32)?;
    Ok(Var::from_tensor(&t)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Features X `[rows, 3]` of a tiny linear reward model `r = X w`, in f64 so that its
    /// gradients can be checked to 1e-7.
    fn features(rows: usize) -> Tensor {
        let mut rng = rewardkit_data::Rng::derive(7, &["tiny"]);
        let x: Vec<f64> = (0..rows * 3).map(|_| rng.normal()).collect();
        Tensor::from_vec(x, (rows, 3), &Device::Cpu).unwrap()
    }

    /// Rewards `X w` for the parameters `theta[at..at + 3]`.
    fn linear(x: &Tensor, theta: &Tensor, at: usize) -> Tensor {
        let w = theta.narrow(0, at, 3).unwrap().reshape((3, 1)).unwrap();
        x.matmul(&w).unwrap().squeeze(1).unwrap()
    }

    /// Autograd's gradient of `loss(θ)` at `theta` against central differences (h = 1e-5):
    /// the largest difference, which is below 1e-7 for a correct gradient. Also asserts that the
    /// gradient is not zero (a test of nothing).
    fn check(theta: &[f64], loss: impl Fn(&Tensor) -> Tensor) -> f64 {
        let var = Var::new(theta, &Device::Cpu).unwrap();
        let grads = loss(var.as_tensor()).backward().unwrap();
        let analytic: Vec<f64> = grads.get(var.as_tensor()).unwrap().to_vec1().unwrap();
        assert!(analytic.iter().any(|g| g.abs() > 1e-3), "{analytic:?}");
        let h = 1e-5;
        let at = |k: usize, delta: f64| {
            let mut t = theta.to_vec();
            t[k] += delta;
            let t = Tensor::new(t, &Device::Cpu).unwrap();
            loss(&t).to_scalar::<f64>().unwrap()
        };
        analytic
            .iter()
            .enumerate()
            .map(|(k, a)| (a - (at(k, h) - at(k, -h)) / (2.0 * h)).abs())
            .fold(0.0, f64::max)
    }

    const THETA: [f64; 6] = [0.4, -1.1, 0.7, 0.3, -0.2, 0.9];
    const LENGTHS: [f32; 6] = [3.0, 10.0, 4.0, 40.0, 7.0, 7.0];

    #[test]
    fn honesty_is_its_formula_and_its_gradient_matches_finite_differences() {
        // Rows 0..4 chosen (correcting), 4..8 rejected (agreeing); pairs 1 and 3 are correction
        // pairs.
        let x = features(8);
        let loss = |theta: &Tensor| {
            let r = linear(&x, theta, 0);
            let (c, j) = (r.narrow(0, 0, 4).unwrap(), r.narrow(0, 4, 4).unwrap());
            honesty(&c, &j, &[1, 3]).unwrap().unwrap()
        };
        let worst = check(&THETA[..3], loss);
        assert!(worst < 1e-7, "{worst}");
        let theta = Tensor::new(&THETA[..3], &Device::Cpu).unwrap();
        let r: Vec<f64> = linear(&x, &theta, 0).to_vec1().unwrap();
        let sp = |v: f64| (1.0 + v.exp()).ln();
        let expected = (sp(r[5] - r[1]) + sp(r[7] - r[3])) / 2.0;
        let got = loss(&theta).to_scalar::<f64>().unwrap();
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        let r = linear(&x, &theta, 0);
        assert!(honesty(&r, &r, &[]).unwrap().is_none());
    }

    #[test]
    fn counterfactual_is_its_formula_and_its_gradient_matches_finite_differences() {
        // Rows 0..3 originals, 3..6 their edits.
        let x = features(6);
        let loss = |theta: &Tensor| {
            let r = linear(&x, theta, 0);
            invariance(&r.narrow(0, 0, 3).unwrap(), &r.narrow(0, 3, 3).unwrap()).unwrap()
        };
        let worst = check(&THETA[..3], loss);
        assert!(worst < 1e-7, "{worst}");
        let theta = Tensor::new(&THETA[..3], &Device::Cpu).unwrap();
        let r: Vec<f64> = linear(&x, &theta, 0).to_vec1().unwrap();
        let expected = (0..3).map(|i| (r[i + 3] - r[i]).powi(2)).sum::<f64>() / 3.0;
        let got = loss(&theta).to_scalar::<f64>().unwrap();
        assert!((got - expected).abs() < 1e-12);
    }

    #[test]
    fn correlation_is_pearsons_and_its_gradient_matches_finite_differences() {
        let x = features(6);
        let theta = Tensor::new(&THETA[..3], &Device::Cpu).unwrap();
        // Against the textbook formula in f64.
        let r: Vec<f64> = linear(&x, &theta, 0).to_vec1().unwrap();
        let l: Vec<f64> = LENGTHS.iter().map(|&v| f64::from(v)).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (mr, ml) = (mean(&r), mean(&l));
        let cov: f64 = r.iter().zip(&l).map(|(a, b)| (a - mr) * (b - ml)).sum();
        let sr = r.iter().map(|a| (a - mr).powi(2)).sum::<f64>().sqrt();
        let sl = l.iter().map(|b| (b - ml).powi(2)).sum::<f64>().sqrt();
        let got = correlation(&linear(&x, &theta, 0), &LENGTHS)
            .unwrap()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((got - cov / (sr * sl)).abs() < 1e-9, "{got}");
        let worst = check(&THETA[..3], |t| {
            correlation(&linear(&x, t, 0), &LENGTHS).unwrap().unwrap()
        });
        assert!(worst < 1e-7, "{worst}");
        // Equal lengths: ρ undefined, the term left out.
        assert!(correlation(&linear(&x, &theta, 0), &[5.0; 6])
            .unwrap()
            .is_none());
    }

    #[test]
    fn odin_gradient_matches_finite_differences() {
        // θ = (w_q, w_ℓ): both heads on the same features, the whole penalty (|ρ(q, L)|,
        // −ρ(ℓ, L), |w_q · w_ℓ|) differentiated in both.
        let x = features(6);
        let worst = check(&THETA, |theta| {
            let (q, l) = (linear(&x, theta, 0), linear(&x, theta, 3));
            let wq = theta.narrow(0, 0, 3).unwrap().reshape((1, 3)).unwrap();
            let wl = theta.narrow(0, 3, 3).unwrap().reshape((1, 3)).unwrap();
            Odin {
                quality: &q,
                length: &l,
                lengths: &LENGTHS,
                quality_weight: &wq,
                length_weight: &wl,
            }
            .penalty(1.0, 0.5, 0.7)
            .unwrap()
        });
        assert!(worst < 1e-7, "{worst}");
    }

    #[test]
    fn flags_parse_and_bad_weights_are_refused() {
        assert_eq!(
            Penalty::parse("honesty=0.5").unwrap(),
            Penalty::Honesty { weight: 0.5 }
        );
        assert_eq!(Penalty::parse("odin").unwrap().weight(), 1.0);
        assert!(Penalty::parse("honesty=-1").is_err());
        assert!(Penalty::parse("honesty=x").is_err());
        assert!(Penalty::parse("kl")
            .unwrap_err()
            .contains("unknown penalty"));
        let bad = Penalty::Counterfactual {
            weight: 1.0,
            edits: vec![Probe::Apology],
        };
        assert!(bad.validate().unwrap_err().contains("apology"));
    }

    #[test]
    fn configs_name_the_kind_and_fill_defaults() {
        let p: Penalty = toml::from_str("kind = \"counterfactual\"\nweight = 0.2").unwrap();
        assert_eq!(
            p,
            Penalty::Counterfactual {
                weight: 0.2,
                edits: default_edits()
            }
        );
        let o: Penalty = serde_json::from_str(r#"{"kind":"odin","weight":2}"#).unwrap();
        assert_eq!(
            o,
            Penalty::Odin {
                weight: 2.0,
                length_weight: 1.0,
                orthogonality: 1.0
            }
        );
        let unknown = serde_json::from_str::<Penalty>(r#"{"kind":"honesty","weight":1,"x":1}"#);
        assert!(unknown.is_err());
    }
}
