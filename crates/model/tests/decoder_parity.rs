//! Decoder forward parity with transformers.
//!
//! References: `../shared/models/tiny-{gpt2,llama,qwen2}/reference.json`, the
//! `last_hidden_state` (after the final norm) that transformers 5.24 / PyTorch 2.15 computed for
//! the fixture's random-init `GPT2Model` / `LlamaModel` / `Qwen2Model` (see
//! `../shared/MODELS.md`). The second row is right-padded and masked; only real positions are
//! compared.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use candle_core::Tensor;
use rewardkit_model::gpt2::Gpt2;
use rewardkit_model::llama::Llama;
use rewardkit_model::{ArchConfig, Mode, ParamStore};

/// The reference's inputs and hidden states moved to left padding: each row's real tokens (and
/// their reference states) shifted to the end, padding (id 0, mask 0) in front.
fn left_padded(reference: &serde_json::Value) -> serde_json::Value {
    let mut out = reference.clone();
    let rows = reference["attention_mask"].as_array().unwrap().len();
    for b in 0..rows {
        let mask = reference["attention_mask"][b].as_array().unwrap();
        let t = mask.len();
        let real = mask.iter().filter(|m| m.as_u64() == Some(1)).count();
        // The fixtures pad on the right: real tokens first.
        assert!(mask[..real].iter().all(|m| m.as_u64() == Some(1)));
        for key in ["input_ids", "attention_mask", "last_hidden_state"] {
            let row = reference[key][b].as_array().unwrap();
            let pad = match key {
                "last_hidden_state" => row[0].clone(), // never compared
                _ => serde_json::json!(0),
            };
            let mut shifted = vec![pad; t - real];
            shifted.extend_from_slice(&row[..real]);
            out[key][b] = serde_json::Value::Array(shifted);
        }
    }
    out
}

/// Runs the fixture's base model, checks every weight was loaded and used, and returns the
/// largest difference from the reference at unpadded positions (with the padding moved to the
/// left when `left`).
fn parity(name: &str) -> f64 {
    parity_padded(name, false)
}

fn parity_padded(name: &str, left: bool) -> f64 {
    let (config, store) = common::fixture(name);
    let mut reference =
        common::read_json(&common::shared_models().join(name).join("reference.json"));
    if left {
        reference = left_padded(&reference);
    }
    let ids = common::u32_matrix(&reference["input_ids"]);
    let mask = common::u32_matrix(&reference["attention_mask"]);
    let vb = store.var_builder();
    let hidden: Tensor = match &config {
        ArchConfig::Gpt2(c) => Gpt2::new(vb, c).unwrap().forward(&ids, &mask, Mode::Eval),
        ArchConfig::Llama(c) => Llama::new(vb, c, None)
            .unwrap()
            .forward(&ids, &mask, Mode::Eval),
        ArchConfig::Qwen2(c) => {
            Llama::new_qwen2(vb, c, None)
                .unwrap()
                .forward(&ids, &mask, Mode::Eval)
        }
        other => panic!("{name} is not a decoder: {other:?}"),
    }
    .unwrap();
    check_weights(name, &store);
    let diff = common::max_diff_masked(
        &hidden,
        &reference["last_hidden_state"],
        &reference["attention_mask"],
    );
    eprintln!("{name} (left padding: {left}): max |diff| = {diff:e}");
    diff
}

fn check_weights(name: &str, store: &ParamStore) {
    assert!(
        store.initialised().is_empty(),
        "{name}: weights missing from the checkpoint: {:?}",
        store.initialised()
    );
    // The fixtures are base models (no LM head, no score head): every tensor is a backbone
    // weight and must be used.
    assert!(
        store.unused().is_empty(),
        "{name}: checkpoint weights the model ignored: {:?}",
        store.unused()
    );
}

#[test]
fn tiny_gpt2_matches_transformers() {
    let diff = parity("tiny-gpt2");
    assert!(diff < 1e-4, "max |diff| = {diff}");
}

#[test]
fn tiny_llama_matches_transformers() {
    let diff = parity("tiny-llama");
    assert!(diff < 1e-4, "max |diff| = {diff}");
}

#[test]
fn tiny_qwen2_matches_transformers() {
    let diff = parity("tiny-qwen2");
    assert!(diff < 1e-4, "max |diff| = {diff}");
}

// Left padding: no transformers reference of its own (transformers numbers GPT-2 positions by
// column, so its left-padded states differ); the right-padded reference, shifted, must still
// hold because positions come from the attention mask.
#[test]
fn left_padding_gives_the_same_states() {
    for name in ["tiny-gpt2", "tiny-llama", "tiny-qwen2"] {
        let diff = parity_padded(name, true);
        assert!(diff < 1e-4, "{name}: max |diff| = {diff}");
    }
}
