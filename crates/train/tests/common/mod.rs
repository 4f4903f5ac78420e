//! The tiny BERT the training tests train: `../shared/models/tiny-bert` (random weights made
//! with transformers) with the WordLevel tokenizer of `tiny-llama-rm` (tokens `t0`…`t999`).
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses its own part; tests unwrap

use std::path::{Path, PathBuf};

use candle_core::Device;
use rewardkit_data::PreferencePair;
use rewardkit_model::{load, InitMissing, LoadOptions, LoadedModel, Rng};
use rewardkit_train::TrainConfig;

pub fn shared_models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

/// A model folder: tiny-bert's config and weights, tiny-llama-rm's tokenizer.
pub fn model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(
            shared_models().join("tiny-bert").join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    std::fs::copy(
        shared_models().join("tiny-llama-rm/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    dir
}

pub fn load_model(dir: &Path) -> LoadedModel {
    let options = LoadOptions {
        max_length: Some(32),
        // A bare backbone for training: its value head is new.
        init_missing: InitMissing::ValueHead,
        ..Default::default()
    };
    load(dir, &options, &Device::Cpu).unwrap()
}

/// 1 to `max` random tokens `t20`…`t219`.
pub fn words(rng: &mut Rng, max: usize) -> String {
    let n = 1 + rng.below(max);
    (0..n)
        .map(|_| format!("t{}", 20 + rng.below(200)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `n` pairs of a prompt of 1 to 6 words, and two responses of the same two word runs in
/// either order around `t7` (chosen) or `t9` (rejected).
pub fn swapped_pairs(n: usize, seed: u64) -> Vec<PreferencePair> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let prompt = words(&mut rng, 6);
            let (a, b) = (words(&mut rng, 5), words(&mut rng, 5));
            PreferencePair::new(prompt, format!("{a} t7 {b}"), format!("{b} t9 {a}"))
        })
        .collect()
}

/// The largest difference between two models' weights, parameter by parameter.
pub fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

pub fn weights(model: &LoadedModel) -> Vec<(String, Vec<f32>)> {
    model
        .model
        .params()
        .vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

/// A short run that learns a marker rule: 12 steps of 8 pairs, a checkpoint every 4.
pub fn config() -> TrainConfig {
    TrainConfig {
        batch_size: 8,
        max_length: Some(32),
        learning_rate: 3e-3,
        warmup_steps: 2,
        log_every: 1,
        max_steps: Some(12),
        save_every: 4,
        eval_batch_size: 16,
        seed: 5,
        ..Default::default()
    }
}
