//! BERT forward parity with transformers (`../shared/models/tiny-bert/reference.json`).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use candle_core::Tensor;
use rewardkit_model::{bert::Bert, ArchConfig, Mode};

#[test]
fn tiny_bert_matches_transformers() {
    let (config, store) = common::fixture("tiny-bert");
    let ArchConfig::Bert(c) = &config else {
        panic!("tiny-bert is a BERT")
    };
    let model = Bert::new(store.var_builder(), c, false).unwrap();
    assert!(
        store.initialised().is_empty(),
        "missing weights: {:?}",
        store.initialised()
    );
    let reference = common::read_json(&common::shared_models().join("tiny-bert/reference.json"));
    let ids = common::u32_matrix(&reference["input_ids"]);
    let mask = common::u32_matrix(&reference["attention_mask"]);
    let type_ids = Tensor::zeros_like(&ids).unwrap();
    let hidden = model.forward(&ids, &type_ids, &mask, Mode::Eval).unwrap();
    let diff = common::max_diff_masked(
        &hidden,
        &reference["last_hidden_state"],
        &reference["attention_mask"],
    );
    assert!(diff < 1e-4, "max |diff| = {diff}");
}
