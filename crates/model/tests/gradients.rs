//! Every weight of every backbone learns: one Bradley-Terry step on real fixtures, and the
//! gradients checked three ways.
//!
//! References: the fixtures in `../shared/models` (transformers 5.24 checkpoints, see
//! `../shared/MODELS.md`) give real weights; the expected gradients come from mathematics, not
//! from transformers: `d softplus(−Δ) / dΔ = −σ(−Δ)` in closed form, and central finite
//! differences of the loss for the autograd gradients of individual weights.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use candle_core::{Device, Tensor, Var};
use common::pairs_batch;
use rewardkit_model::{ArchConfig, Mode, ParamStore, Pooling, RewardModel};
use rewardkit_tokenize::Batch;

/// `softplus(x) = log(1 + eˣ)`, in the stable form `relu(x) + log(1 + e^−|x|)`.
fn softplus(x: &Tensor) -> Tensor {
    let tail = ((x.abs().unwrap().neg().unwrap().exp().unwrap() + 1.0).unwrap())
        .log()
        .unwrap();
    (x.relu().unwrap() + tail).unwrap()
}

/// Bradley-Terry loss `mean softplus(−(r_chosen − r_rejected))` = `mean −log σ(Δ)`.
fn bt_loss(model: &RewardModel, batch: &Batch, mode: Mode) -> Tensor {
    let rewards = model.forward(batch, mode).unwrap();
    let n = batch.rows / 2;
    let gap = (rewards.narrow(0, 0, n).unwrap() - rewards.narrow(0, n, n).unwrap()).unwrap();
    softplus(&gap.neg().unwrap()).mean_all().unwrap()
}

fn model(fixture: &str) -> (RewardModel, ParamStore, ArchConfig) {
    let (config, store) = common::fixture(fixture);
    let model = RewardModel::new(&config, Pooling::default_for(&config), &store).unwrap();
    (model, store, config)
}

fn every_parameter_learns(fixture: &str) {
    let (model, store, _) = model(fixture);
    // The Bradley-Terry loss depends only on r_chosen − r_rejected, so the value head's bias
    // (BERT's `classifier.bias`) gets an exactly zero gradient from it; a reward-centring term
    // `c · mean(r²)` (in the spirit of TRL's `c · mean((r_c + r_r)²)`) is added so that every
    // parameter, the bias included, must learn.
    let batch = pairs_batch();
    let loss = bt_loss(&model, &batch, Mode::Train { seed: 7, step: 3 });
    let rewards = model
        .forward(&batch, Mode::Train { seed: 7, step: 3 })
        .unwrap();
    let centring = (rewards.sqr().unwrap().mean_all().unwrap() * 0.01).unwrap();
    let grads = (loss + centring).unwrap().backward().unwrap();
    let vars = store.vars();
    assert!(!vars.is_empty());
    let mut dead = Vec::new();
    for (name, var) in &vars {
        match grads.get(var.as_tensor()) {
            None => dead.push(format!("{name}: no gradient")),
            Some(g) => {
                let abs: Vec<f32> = g.abs().unwrap().flatten_all().unwrap().to_vec1().unwrap();
                if abs.iter().any(|x| !x.is_finite()) {
                    dead.push(format!("{name}: non-finite gradient"));
                } else if abs.iter().all(|&x| x == 0.0) {
                    dead.push(format!("{name}: all-zero gradient"));
                }
            }
        }
    }
    assert!(
        dead.is_empty(),
        "{fixture}: {} of {} parameters do not learn: {dead:#?}",
        dead.len(),
        vars.len()
    );
}

#[test]
fn every_bert_parameter_learns() {
    every_parameter_learns("tiny-bert");
}

#[test]
fn every_gpt2_parameter_learns() {
    every_parameter_learns("tiny-gpt2");
}

#[test]
fn every_llama_parameter_learns() {
    every_parameter_learns("tiny-llama");
}

#[test]
fn every_qwen2_parameter_learns() {
    every_parameter_learns("tiny-qwen2");
}

#[test]
fn bt_gradient_wrt_gap_is_minus_sigmoid_of_minus_gap() {
    let gaps = [-3.0f32, -0.5, 0.0, 0.7, 4.0, 25.0, -25.0];
    let gap = Var::from_vec(gaps.to_vec(), gaps.len(), &Device::Cpu).unwrap();
    // Summed, so each element's gradient is exactly d softplus(−Δ)/dΔ.
    let loss = softplus(&gap.as_tensor().neg().unwrap()).sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let got: Vec<f32> = grads.get(gap.as_tensor()).unwrap().to_vec1().unwrap();
    for (&d, &g) in gaps.iter().zip(&got) {
        let want = -1.0 / (1.0 + (d as f64).exp()); // −σ(−Δ)
        assert!(
            (g as f64 - want).abs() < 1e-6,
            "Δ = {d}: got {g}, want {want}"
        );
    }
}

/// Central finite differences of the loss on the weights with the largest gradients in a few
/// tensors, against autograd.
fn finite_differences_agree(fixture: &str, names: &[&str]) {
    let (model, store, _) = model(fixture);
    let batch = pairs_batch();
    let loss = bt_loss(&model, &batch, Mode::Eval);
    let grads = loss.backward().unwrap();
    let vars: std::collections::BTreeMap<String, Var> = store.vars().into_iter().collect();
    let eps = 1e-2f32;
    for name in names {
        let var = vars
            .get(*name)
            .unwrap_or_else(|| panic!("{fixture}: no parameter {name}; have {:?}", vars.keys()));
        let g: Vec<f32> = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let (idx, &autograd) = g
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        let original = var.as_tensor().copy().unwrap();
        let values: Vec<f32> = original.flatten_all().unwrap().to_vec1().unwrap();
        let loss_at = |delta: f32| -> f64 {
            let mut v = values.clone();
            v[idx] += delta;
            var.set(&Tensor::from_vec(v, original.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let l = bt_loss(&model, &batch, Mode::Eval)
                .to_scalar::<f32>()
                .unwrap();
            l as f64
        };
        let numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
        var.set(&original).unwrap();
        let rel = (numeric - autograd as f64).abs() / (autograd as f64).abs();
        eprintln!(
            "{fixture} {name}[{idx}]: autograd {autograd:e}, numeric {numeric:e}, rel {rel:e}"
        );
        assert!(autograd.abs() > 1e-4, "{name}: gradient too small to test");
        assert!(
            rel < 1e-2,
            "{fixture} {name}[{idx}]: autograd {autograd}, finite differences {numeric}"
        );
    }
}

#[test]
fn llama_finite_differences_agree_with_autograd() {
    finite_differences_agree(
        "tiny-llama",
        &[
            "score.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.weight",
            "model.layers.1.mlp.gate_proj.weight",
            "model.layers.0.input_layernorm.weight",
        ],
    );
}

#[test]
fn gpt2_finite_differences_agree_with_autograd() {
    finite_differences_agree(
        "tiny-gpt2",
        &[
            "transformer.h.0.attn.c_attn.weight",
            "transformer.h.1.mlp.c_fc.weight",
            "transformer.wpe.weight",
            "transformer.h.0.ln_1.weight",
        ],
    );
}
