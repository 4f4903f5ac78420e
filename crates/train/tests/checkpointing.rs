//! Training with `gradient_checkpointing` gives the weights training without it gives (to
//! rounding), on the tiny Llama reward model of `../shared/models/tiny-llama-rm` (transformers
//! 5.24, random weights; `../shared/MODELS.md`) with attention dropout 0.1 and dropout on, so
//! that the recomputed blocks must draw the first pass's masks. The reference is the run
//! without checkpointing. (The memory check's refusal is in `memory_check.rs`, a binary of its
//! own because it sets an environment variable.)
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::Device;
use rewardkit_model::{load, LoadOptions, LoadedModel};
use rewardkit_train::{train, Run, TrainConfig, TrainError};

mod common;
use common::{max_diff, swapped_pairs as pairs, weights};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/tiny-llama-rm")
}

/// tiny-llama-rm with attention dropout 0.1.
fn model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture().join(f), dir.path().join(f)).unwrap();
    }
    let text = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["attention_dropout"] = serde_json::json!(0.1);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

fn load_model(dir: &Path) -> LoadedModel {
    let options = LoadOptions {
        max_length: Some(32),
        ..Default::default()
    };
    load(dir, &options, &Device::Cpu).unwrap()
}

fn config(checkpointing: bool) -> TrainConfig {
    TrainConfig {
        batch_size: 4,
        max_length: Some(32),
        learning_rate: 3e-3,
        max_steps: Some(6),
        dropout: true,
        gradient_checkpointing: checkpointing,
        log_every: 1,
        seed: 5,
        ..Default::default()
    }
}

fn run(cfg: &TrainConfig, dir: &Path, out: &Path) -> Result<LoadedModel, TrainError> {
    let (train_pairs, eval_pairs) = (pairs(32, 3), pairs(8, 4));
    let model = load_model(dir);
    train(
        &model,
        cfg,
        &Run::new(&train_pairs, &eval_pairs, out),
        |_| ControlFlow::Continue(()),
    )?;
    Ok(model)
}

#[test]
fn checkpointed_training_gives_the_same_weights() {
    let dir = model_dir();
    let start = weights(&load_model(dir.path()));
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let plain = weights(&run(&config(false), dir.path(), a.path()).unwrap());
    let ckpt = weights(&run(&config(true), dir.path(), b.path()).unwrap());
    // Six AdamW steps at lr 3e-3 move weights by up to ~1.8e-2; the two runs agree to 1e-5.
    let moved = max_diff(&start, &plain);
    assert!(moved > 1e-3, "training moved the weights by only {moved}");
    let diff = max_diff(&plain, &ckpt);
    assert!(
        diff <= 1e-5,
        "checkpointed run differs by {diff} (moved {moved})"
    );
    assert!(b.path().join("final").is_dir());
}
