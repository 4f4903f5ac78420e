//! The Bradley-Terry loss of reward modelling.

use candle_core::Tensor;

/// `softplus(x) = log(1 + eˣ)`, stably: `relu(x) + log(1 + e^(−|x|))`.
pub fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?)
}

/// Mean Bradley-Terry loss `−logσ(r_c − r_r − m)` over a batch, plus TRL's centring term
/// `c · mean((r_c + r_r)²)` when `center` is set. `margins` (same length) may be `None`.
pub fn bradley_terry(
    chosen: &Tensor,
    rejected: &Tensor,
    margins: Option<&Tensor>,
    center: Option<f64>,
) -> candle_core::Result<Tensor> {
    let mut gap = (chosen - rejected)?;
    if let Some(m) = margins {
        gap = (gap - m)?;
    }
    let mut loss = softplus(&gap.neg()?)?.mean_all()?;
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
        let loss = bradley_terry(c.as_tensor(), &r, None, None).unwrap();
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

    #[test]
    fn margin_and_centring() {
        let dev = Device::Cpu;
        let c = Tensor::new(&[1.0f32], &dev).unwrap();
        let r = Tensor::new(&[0.0f32], &dev).unwrap();
        let m = Tensor::new(&[1.0f32], &dev).unwrap();
        // Δ − m = 0 → ln 2; centring adds 0.5 · (1 + 0)².
        let loss = bradley_terry(&c, &r, Some(&m), Some(0.5))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((loss as f64 - (std::f64::consts::LN_2 + 0.5)).abs() < 1e-6);
    }
}
