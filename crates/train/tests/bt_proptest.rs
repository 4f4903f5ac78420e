//! The Bradley-Terry loss and its gradient against the closed form, on random gaps:
//! `L = mean softplus(−(Δ − m))`, `∂L/∂r_c = −σ(−(Δ − m)) / n = −∂L/∂r_r`.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use candle_core::{DType, Device, Tensor, Var};
use proptest::prelude::*;
use rewardkit_train::bradley_terry;

/// `log(1 + eˣ)` in f64, stably.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn check(chosen: &[f32], rejected: &[f32], margins: Option<&[f32]>) -> Result<(), TestCaseError> {
    let dev = Device::Cpu;
    let n = chosen.len();
    let c = Var::new(chosen, &dev).unwrap();
    let r = Var::new(rejected, &dev).unwrap();
    let m = margins.map(|m| Tensor::new(m, &dev).unwrap());
    let loss = bradley_terry(c.as_tensor(), r.as_tensor(), m.as_ref(), None, None).unwrap();
    let z: Vec<f64> = (0..n)
        .map(|i| {
            let margin = margins.map_or(0.0, |m| f64::from(m[i]));
            f64::from(chosen[i]) - f64::from(rejected[i]) - margin
        })
        .collect();
    let expected = z.iter().map(|&z| softplus(-z)).sum::<f64>() / n as f64;
    let got = f64::from(loss.to_scalar::<f32>().unwrap());
    // f32 arithmetic: relative error of a few ulps of the terms.
    let tol =
        1e-5 * (1.0 + expected.abs()) + 1e-6 * z.iter().map(|z| z.abs()).sum::<f64>() / n as f64;
    prop_assert!(
        (got - expected).abs() <= tol,
        "loss {got} vs {expected} (z = {z:?})"
    );
    let grads = loss.backward().unwrap();
    let gc: Vec<f32> = grads.get(c.as_tensor()).unwrap().to_vec1().unwrap();
    let gr: Vec<f32> = grads.get(r.as_tensor()).unwrap().to_vec1().unwrap();
    for i in 0..n {
        let want = -sigmoid(-z[i]) / n as f64;
        prop_assert!(
            (f64::from(gc[i]) - want).abs() <= 1e-6 + 1e-5 * want.abs(),
            "∂L/∂r_c[{i}] = {} vs {want} (z = {})",
            gc[i],
            z[i]
        );
        prop_assert!(
            (f64::from(gr[i]) + want).abs() <= 1e-6 + 1e-5 * want.abs(),
            "∂L/∂r_r[{i}] = {} vs {}",
            gr[i],
            -want
        );
    }
    Ok(())
}

fn scores() -> impl Strategy<Value = (Vec<f32>, Vec<f32>, Vec<f32>)> {
    (1usize..24).prop_flat_map(|n| {
        (
            proptest::collection::vec(-30.0f32..30.0, n),
            proptest::collection::vec(-30.0f32..30.0, n),
            proptest::collection::vec(-3.0f32..3.0, n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn loss_and_gradient_match_the_closed_form((c, r, _) in scores()) {
        check(&c, &r, None)?;
    }

    #[test]
    fn with_margins_too((c, r, m) in scores()) {
        check(&c, &r, Some(&m))?;
    }

    #[test]
    // Non-negative, not positive: in f32 `log(1 + e^(−Δ))` rounds to 0 for Δ above ~16.6
    // (1 + 6e-8 == 1); the absolute error is below 1e-7.
    fn the_loss_is_non_negative_and_falls_as_the_gap_grows(gap in -20.0f32..20.0, step in 0.01f32..5.0) {
        let dev = Device::Cpu;
        let zero = Tensor::zeros(1, DType::F32, &dev).unwrap();
        let at = |g: f32| {
            bradley_terry(&Tensor::new(&[g], &dev).unwrap(), &zero, None, None, None)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let (a, b) = (at(gap), at(gap + step));
        prop_assert!(a >= 0.0 && b <= a, "L({gap}) = {a}, L({}) = {b}", gap + step);
    }
}
