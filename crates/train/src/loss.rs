//! The Bradley-Terry loss of reward modelling.

use candle_core::Tensor;

/// `softplus(x) = log(1 + eˣ)`, stably: `relu(x) + log(1 + e^(−|x|))`.
pub fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?)
}

/// Mean Bradley-Terry loss over a batch: with `g = r_c − r_r − m`, the cross-entropy against
/// the probability `p` that chosen is better, `−p·logσ(g) − (1 − p)·logσ(−g)`, plus TRL's
/// centring term `c · mean((r_c + r_r)²)` when `center` is set.
///
/// `margins` and `targets` (the `p`s, same length) may be `None`: no margin, and hard labels
/// (`p = 1`, the loss `−logσ(g)`). A tie trains as `p = ½`. The cross-entropy is computed as
/// `softplus(−g) + (1 − p)·g` (the same, as `softplus(g) − softplus(−g) = g`), so `p = 1` gives
/// exactly the hard-label loss, and its gradient in `g` is `σ(g) − p`: zero where the model's
/// probability matches the label.
pub fn bradley_terry(
    chosen: &Tensor,
    rejected: &Tensor,
    margins: Option<&Tensor>,
    targets: Option<&Tensor>,
    center: Option<f64>,
) -> candle_core::Result<Tensor> {
    let mut gap = (chosen - rejected)?;
    if let Some(m) = margins {
        gap = (gap - m)?;
    }
    let mut per_pair = softplus(&gap.neg()?)?;
    if let Some(p) = targets {
        per_pair = (per_pair + (p.affine(-1.0, 1.0)? * &gap)?)?;
    }
    let mut loss = per_pair.mean_all()?;
    if let Some(c) = center {
        let centred = (chosen + rejected)?.sqr()?.mean_all()?;
        loss = (loss + (centred * c)?)?;
    }
    Ok(loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn loss_and_gradient_match_the_closed_form() {
        // dL/dΔ of −logσ(Δ) is −σ(−Δ); for the mean over n pairs, divided by n.
        let dev = Device::Cpu;
        let gaps = [2.0f32, -1.0, 0.0, 0.5];
        let c = Var::new(&gaps, &dev).unwrap();
        let r = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        let loss = bradley_terry(c.as_tensor(), &r, None, None, None).unwrap();
        let expected: f64 = gaps
            .iter()
            .map(|&g| (1.0 + (-(g as f64)).exp()).ln())
            .sum::<f64>()
            / 4.0;
        assert!((loss.to_scalar::<f32>().unwrap() as f64 - expected).abs() < 1e-6);
        let grads = loss.backward().unwrap();
        let g: Vec<f32> = grads.get(c.as_tensor()).unwrap().to_vec1().unwrap();
        for (gi, &d) in g.iter().zip(&gaps) {
            let sigma_neg = 1.0 / (1.0 + (d as f64).exp());
            assert!(
                (*gi as f64 + sigma_neg / 4.0).abs() < 1e-6,
                "{gi} vs {}",
                -sigma_neg / 4.0
            );
        }
    }

    /// `−p·logσ(g) − (1 − p)·logσ(−g)` in f64, term by term as the issue writes it.
    fn cross_entropy(g: f64, p: f64) -> f64 {
        let log_sigmoid = |x: f64| -(1.0 + (-x).exp()).ln();
        -p * log_sigmoid(g) - (1.0 - p) * log_sigmoid(-g)
    }

    #[test]
    fn soft_labels_match_the_cross_entropy_and_finite_differences() {
        let dev = Device::Cpu;
        let gaps = [2.0f64, -1.5, 0.0, 0.3, 4.0];
        let ps = [0.8f64, 0.5, 0.5, 1.0, 0.6];
        let n = gaps.len() as f64;
        let c = Var::new(&gaps, &dev).unwrap();
        let r = Tensor::zeros(gaps.len(), candle_core::DType::F64, &dev).unwrap();
        let p = Tensor::new(&ps, &dev).unwrap();
        let loss = bradley_terry(c.as_tensor(), &r, None, Some(&p), None).unwrap();
        let expected: f64 = gaps
            .iter()
            .zip(&ps)
            .map(|(&g, &p)| cross_entropy(g, p))
            .sum::<f64>()
            / n;
        assert!((loss.to_scalar::<f64>().unwrap() - expected).abs() < 1e-12);
        // The gradient against central finite differences of the f64 reference loss.
        let g: Vec<f64> = loss
            .backward()
            .unwrap()
            .get(c.as_tensor())
            .unwrap()
            .to_vec1()
            .unwrap();
        let h = 1e-5;
        for (i, (&gi, (&d, &p))) in g.iter().zip(gaps.iter().zip(&ps)).enumerate() {
            let numeric = (cross_entropy(d + h, p) - cross_entropy(d - h, p)) / (2.0 * h) / n;
            assert!((gi - numeric).abs() < 1e-8, "pair {i}: {gi} vs {numeric}");
            // And the closed form (σ(g) − p) / n.
            let closed = (1.0 / (1.0 + (-d).exp()) - p) / n;
            assert!((gi - closed).abs() < 1e-12, "pair {i}: {gi} vs {closed}");
        }
        // A tie (p = ½) is pulled towards Δ = 0 from either side.
        assert!(g[1] < 0.0 && g[2] == 0.0);
    }

    #[test]
    fn a_label_of_one_is_exactly_the_hard_loss() {
        let dev = Device::Cpu;
        let c = Tensor::new(&[2.5f32, -0.7, 0.0, 13.0, -9.0], &dev).unwrap();
        let r = Tensor::new(&[0.1f32, 0.4, 0.0, -2.0, 3.0], &dev).unwrap();
        let m = Tensor::new(&[0.0f32, 1.0, 0.5, 0.0, 2.0], &dev).unwrap();
        let ones = Tensor::ones(5, candle_core::DType::F32, &dev).unwrap();
        for margins in [None, Some(&m)] {
            let hard = bradley_terry(&c, &r, margins, None, Some(0.01)).unwrap();
            let soft = bradley_terry(&c, &r, margins, Some(&ones), Some(0.01)).unwrap();
            let (hard, soft) = (
                hard.to_scalar::<f32>().unwrap(),
                soft.to_scalar::<f32>().unwrap(),
            );
            assert_eq!(hard.to_bits(), soft.to_bits(), "{hard} vs {soft}");
        }
    }

    #[test]
    fn margin_and_centring() {
        let dev = Device::Cpu;
        let c = Tensor::new(&[1.0f32], &dev).unwrap();
        let r = Tensor::new(&[0.0f32], &dev).unwrap();
        let m = Tensor::new(&[1.0f32], &dev).unwrap();
        // Δ − m = 0 → ln 2; centring adds 0.5 · (1 + 0)².
        let loss = bradley_terry(&c, &r, Some(&m), None, Some(0.5))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((loss as f64 - (std::f64::consts::LN_2 + 0.5)).abs() < 1e-6);
    }
}
