//! candle-core is patched in `vendor/candle-core` (see `vendor/README.md`): the first gradient
//! reaching a node is stored instead of being added into a fresh zero tensor, and the first
//! gradient of a subtracted or divided operand is stored negated. These checks hold the patch
//! to closed-form gradients, on a graph where one input reaches the loss along four paths
//! (fan-in, where the later gradients are added) and through both rules that negate.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use candle_core::{Device, Tensor, Var};

#[test]
fn patched_backprop_gives_closed_form_gradients() {
    let dev = Device::Cpu;
    let xs = [0.5f32, -1.0, 2.0, 1.5, -0.25, 3.0];
    let ys = [1.0f32, 2.0, 0.5, 4.0, 1.5, 0.75];
    let x = Var::from_tensor(&Tensor::from_slice(&xs, (2, 3), &dev).unwrap()).unwrap();
    let y = Var::from_tensor(&Tensor::from_slice(&ys, (2, 3), &dev).unwrap()).unwrap();
    let (xt, yt) = (x.as_tensor(), y.as_tensor());
    // L = Σ (x² − y) / y + 2 Σ x[:, :2] − Σ xᵀ
    let ratio = ((xt * xt).unwrap() - yt).unwrap().div(yt).unwrap();
    let loss = (ratio.sum_all().unwrap()
        + (xt.narrow(1, 0, 2).unwrap().sum_all().unwrap() * 2.0).unwrap())
    .unwrap()
    .sub(&xt.t().unwrap().sum_all().unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let dx: Vec<f32> = grads
        .get(xt)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let dy: Vec<f32> = grads
        .get(yt)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for i in 0..6 {
        let (xv, yv) = (xs[i], ys[i]);
        // ∂L/∂x = 2x/y + 2·[column < 2] − 1; ∂L/∂y = −x²/y².
        let want_dx = 2.0 * xv / yv + if i % 3 < 2 { 2.0 } else { 0.0 } - 1.0;
        let want_dy = -xv * xv / (yv * yv);
        assert!(
            (dx[i] - want_dx).abs() < 1e-5,
            "dx[{i}] = {} not {want_dx}",
            dx[i]
        );
        assert!(
            (dy[i] - want_dy).abs() < 1e-5,
            "dy[{i}] = {} not {want_dy}",
            dy[i]
        );
    }
}
