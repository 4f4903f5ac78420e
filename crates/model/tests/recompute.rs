//! Gradient checkpointing (`RewardModel::forward_recompute`) computes what the plain forward and
//! backward do: the same rewards and, for every parameter, the same gradient to 1e-5 (relative
//! to the tensor's largest gradient), with dropout off and on, for the Llama family and GPT-2.
//!
//! Reference: the plain path, `forward(..).backward()` on the same model (candle's autograd,
//! itself checked against finite differences in `gradients.rs`); the fixtures are the
//! transformers 5.24 checkpoints of `../shared/models` (`../shared/MODELS.md`).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use std::collections::HashMap;

use candle_core::Tensor;
use common::pairs_batch;
use rewardkit_model::{ArchConfig, Mode, Pooling, RewardModel};
use rewardkit_tokenize::Batch;

/// `mean softplus(r_rejected − r_chosen)` plus a reward-centring term, so that every parameter
/// (the head included) gets a gradient.
fn loss_of(rewards: &Tensor) -> Tensor {
    let n = rewards.dim(0).unwrap() / 2;
    let gap = (rewards.narrow(0, n, n).unwrap() - rewards.narrow(0, 0, n).unwrap()).unwrap();
    // softplus(x) = relu(x) + log(1 + e^−|x|)
    let tail = ((gap.abs().unwrap().neg().unwrap().exp().unwrap() + 1.0).unwrap())
        .log()
        .unwrap();
    let bt = (gap.relu().unwrap() + tail).unwrap().mean_all().unwrap();
    (bt + (rewards.sqr().unwrap().mean_all().unwrap() * 0.01).unwrap()).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Loss and gradients by parameter name, plain or checkpointed.
fn loss_and_grads(
    model: &RewardModel,
    batch: &Batch,
    mode: Mode,
    checkpointed: bool,
) -> (f32, HashMap<String, Vec<f32>>) {
    let vars = model.params().vars();
    let mut out: HashMap<String, Vec<f32>> = HashMap::new();
    let mut add = |store: &candle_core::backprop::GradStore| {
        for (name, var) in &vars {
            if let Some(g) = store.get(var.as_tensor()) {
                let g = values(g);
                match out.get_mut(name) {
                    Some(sum) => sum.iter_mut().zip(&g).for_each(|(s, x)| *s += x),
                    None => {
                        out.insert(name.clone(), g);
                    }
                }
            }
        }
        Ok::<(), candle_core::Error>(())
    };
    let loss = if checkpointed {
        let (rewards, tape) = model.forward_recompute(batch, mode).unwrap();
        let loss = loss_of(&rewards);
        let top = loss.backward().unwrap();
        add(&top).unwrap();
        tape.backward(&top, &mut add).unwrap();
        loss
    } else {
        let loss = loss_of(&model.forward(batch, mode).unwrap());
        add(&loss.backward().unwrap()).unwrap();
        loss
    };
    (loss.to_scalar::<f32>().unwrap(), out)
}

fn same_gradients(fixture: &str, set_dropout: impl Fn(&mut ArchConfig), mode: Mode) {
    let (mut config, store) = common::fixture(fixture);
    set_dropout(&mut config);
    let model = RewardModel::new(&config, Pooling::Last, &store).unwrap();
    let batch = pairs_batch();
    let (loss, plain) = loss_and_grads(&model, &batch, mode, false);
    let (loss_ck, ckpt) = loss_and_grads(&model, &batch, mode, true);
    assert!(
        (loss - loss_ck).abs() <= 1e-5 * loss.abs(),
        "{fixture}: loss {loss} vs checkpointed {loss_ck}"
    );
    assert_eq!(
        plain.len(),
        store.vars().len(),
        "{fixture}: every parameter has a gradient"
    );
    assert_eq!(
        plain.len(),
        ckpt.len(),
        "{fixture}: the same parameters get gradients"
    );
    for (name, want) in &plain {
        let got = &ckpt[name];
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(scale > 0.0, "{fixture}: {name} has a zero gradient");
        let diff = want
            .iter()
            .zip(got)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            diff <= 1e-5 * scale,
            "{fixture}: {name}: checkpointed gradient differs by {diff} (largest {scale})"
        );
    }
}

const TRAIN: Mode = Mode::Train { seed: 7, step: 3 };

fn llama_dropout(p: f64) -> impl Fn(&mut ArchConfig) {
    move |c| {
        if let ArchConfig::Llama(c) = c {
            c.attention_dropout = p;
        }
    }
}

#[test]
fn llama_checkpointed_gradients_equal_the_plain_ones_without_dropout() {
    same_gradients("tiny-llama", llama_dropout(0.0), TRAIN);
}

#[test]
fn llama_checkpointed_gradients_equal_the_plain_ones_with_dropout() {
    // Attention dropout 0.2: the recomputation must draw the masks of the first pass.
    same_gradients("tiny-llama", llama_dropout(0.2), TRAIN);
}

#[test]
fn gpt2_checkpointed_gradients_equal_the_plain_ones() {
    // The fixture's dropout (0.1 on embeddings, attention and residuals) on, then off.
    same_gradients("tiny-gpt2", |_| {}, TRAIN);
    same_gradients("tiny-gpt2", |_| {}, Mode::Eval);
}

#[test]
fn dropout_changes_the_gradients() {
    // The dropout cases above test something only if dropout changes the result.
    let (mut config, store) = common::fixture("tiny-llama");
    llama_dropout(0.2)(&mut config);
    let model = RewardModel::new(&config, Pooling::Last, &store).unwrap();
    let (with, _) = loss_and_grads(&model, &pairs_batch(), TRAIN, true);
    let (without, _) = loss_and_grads(&model, &pairs_batch(), Mode::Eval, true);
    assert!((with - without).abs() > 1e-4, "{with} vs {without}");
}

#[test]
fn bert_is_refused() {
    let (config, store) = common::fixture("tiny-bert");
    let model = RewardModel::new(&config, Pooling::Cls, &store).unwrap();
    let err = model
        .forward_recompute(&pairs_batch(), Mode::Eval)
        .err()
        .unwrap();
    assert!(err.to_string().contains("not BERT"), "{err}");
}
