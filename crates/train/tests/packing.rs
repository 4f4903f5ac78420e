//! Training without padding (`packing`, issue 16 item 3) gives the model of padded rows (to
//! rounding), for a decoder read at the last token (`../shared/models/tiny-llama-rm`,
//! transformers 5.24, random weights), with and without the shared prompt, and for an encoder
//! (`../shared/models/tiny-bert`, CLS pooling); and every position it computes is a real token.
//! The reference is the padded run (one row per sequence). Dropout is off: packed rows draw
//! other masks.
//!
//! Compared: each step's loss, and the trained models' reward gaps (chosen − rejected) on
//! held-out pairs. Not every weight: the Bradley-Terry loss does not depend on some of them (the
//! value head's bias and, under CLS pooling, the last LayerNorm's bias shift every reward
//! alike; a key bias shifts a query's scores alike), so their gradients are rounding noise,
//! which AdamW scales up to the learning rate, differently on each path.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::Device;
use rewardkit_model::{load, LoadOptions, LoadedModel};
use rewardkit_train::{train, Run, TrainConfig};

mod common;
use common::{max_diff, swapped_pairs, weights};

fn tiny_llama_rm() -> PathBuf {
    common::shared_models().join("tiny-llama-rm")
}

fn load_llama(dir: &Path) -> LoadedModel {
    let options = LoadOptions {
        max_length: Some(32),
        ..Default::default()
    };
    load(dir, &options, &Device::Cpu).unwrap()
}

fn config(shared_prompt: bool, packing: bool) -> TrainConfig {
    TrainConfig {
        batch_size: 4,
        max_length: Some(32),
        learning_rate: 3e-3,
        max_steps: Some(6),
        log_every: 1,
        eval_batch_size: 4,
        seed: 5,
        shared_prompt,
        packing,
        ..Default::default()
    }
}

/// What a run gave: the trained model's reward gaps on held-out pairs, and each logged step's
/// loss, real tokens/s and positions/s.
struct Trained {
    gaps: Vec<f64>,
    steps: Vec<(f64, f64, f64)>,
}

/// Trains a fresh load of the model for six steps.
fn run(load: &dyn Fn() -> LoadedModel, cfg: &TrainConfig) -> Trained {
    let (train_pairs, eval_pairs) = (swapped_pairs(32, 3), swapped_pairs(8, 4));
    let model = load();
    let start = weights(&model);
    let out = tempfile::tempdir().unwrap();
    train(
        &model,
        cfg,
        &Run::new(&train_pairs, &eval_pairs, out.path()),
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let log = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    let steps = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "train")
        .map(|r| {
            let f = |k: &str| r[k].as_f64().unwrap();
            (f("loss"), f("tokens_per_s"), f("padded_tokens_per_s"))
        })
        .collect();
    let held_out = swapped_pairs(24, 9);
    let inputs: Vec<_> = held_out
        .iter()
        .flat_map(|p| {
            [
                model.encode(&p.prompt, &p.chosen).unwrap(),
                model.encode(&p.prompt, &p.rejected).unwrap(),
            ]
        })
        .collect();
    let scores = model.score_encoded(&inputs, 8).unwrap();
    let gaps = scores.chunks(2).map(|s| s[0] - s[1]).collect();
    assert!(
        moved(&start, &weights(&model)) > 1e-3,
        "training moved the weights"
    );
    Trained { gaps, steps }
}

fn moved(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    max_diff(a, b)
}

fn packed_training_equals_padded(name: &str, load: &dyn Fn() -> LoadedModel, shared: &[bool]) {
    let padded = run(load, &config(false, false));
    assert!(
        padded.steps.iter().any(|s| s.1 < s.2),
        "{name}: padded rows pad"
    );
    let spread = padded.gaps.iter().fold(0f64, |m, g| m.max(g.abs()));
    assert!(
        spread > 1e-2,
        "{name}: the gaps are not all zero ({spread})"
    );
    for &shared_prompt in shared {
        let case = format!("{name} (shared prompt {shared_prompt})");
        let packed = run(load, &config(shared_prompt, true));
        assert_eq!(packed.steps.len(), 6, "{case}");
        for (step, (a, b)) in padded.steps.iter().zip(&packed.steps).enumerate() {
            assert!(
                (a.0 - b.0).abs() <= 1e-5,
                "{case}: step {} loss {} vs {}",
                step + 1,
                b.0,
                a.0
            );
            assert_eq!(b.1, b.2, "{case}: a position went to padding");
        }
        let diff = padded
            .gaps
            .iter()
            .zip(&packed.gaps)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        println!("{case}: reward gaps differ by {diff:.2e} (largest {spread:.3})");
        assert!(
            diff <= 1e-5,
            "{case}: reward gaps differ by {diff} (largest {spread})"
        );
    }
}

#[test]
fn a_decoder_trained_without_padding_learns_what_padded_rows_learn() {
    packed_training_equals_padded(
        "tiny-llama-rm",
        &|| load_llama(&tiny_llama_rm()),
        &[false, true],
    );
}

#[test]
fn an_encoder_trained_without_padding_learns_what_padded_rows_learn() {
    let dir = common::model_dir();
    packed_training_equals_padded("tiny-bert", &|| common::load_model(dir.path()), &[true]);
}
