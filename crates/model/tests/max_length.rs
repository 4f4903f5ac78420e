//! The maximum input length defaults to the model's `max_position_embeddings` (tiny-bert: 128),
//! not a fixed 512: a long row is truncated to fit, where it used to fail the forward pass.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use candle_core::Device;
use rewardkit_data::{Scorer, Text};
use rewardkit_model::{load, InitMissing, LoadOptions, LoadedModel, ModelScorer};

/// tiny-bert's config (128 positions) and weights, tiny-llama-rm's tokenizer.
fn tiny_bert() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let models = common::shared_models();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(models.join("tiny-bert").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(
        models.join("tiny-llama-rm/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    dir
}

fn open(dir: &std::path::Path, max_length: Option<usize>) -> LoadedModel {
    let options = LoadOptions {
        max_length,
        init_missing: InitMissing::ValueHead,
        ..Default::default()
    };
    load(dir, &options, &Device::Cpu).unwrap()
}

#[test]
fn the_default_length_is_the_models_positions_and_a_long_row_is_truncated() {
    let dir = tiny_bert();
    let model = open(dir.path(), None);
    assert_eq!(model.meta.max_length, 128);
    // 300 words of prompt and 300 of response: 600 tokens, far over 128.
    let words = |from: usize| {
        (0..300)
            .map(|i| format!("t{}", from + i % 200))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (prompt, response) = (Text::Plain(words(20)), Text::Plain(words(400)));
    let encoded = model.tokenizer.encode(&prompt, &response, 128).unwrap();
    assert_eq!(encoded.ids.len(), 128);
    let scores = ModelScorer::new(&model, 2)
        .score_batch(&[(&prompt, &response), (&prompt, &Text::Plain("t7".into()))])
        .unwrap();
    assert_eq!(scores.len(), 2);
    assert!(scores.iter().all(|s| s.is_finite()), "{scores:?}");
    // Scored, and as itself (not as the short row beside it).
    assert_ne!(scores[0], scores[1]);
}

#[test]
fn a_longer_request_is_lowered_to_the_positions_a_shorter_one_kept() {
    let dir = tiny_bert();
    assert_eq!(open(dir.path(), Some(512)).meta.max_length, 128);
    assert_eq!(open(dir.path(), Some(64)).meta.max_length, 64);
    // A rewardkit.json without a length (written before there was one) takes the positions.
    std::fs::write(
        dir.path().join("rewardkit.json"),
        r#"{"model": {"pooling": "cls"}}"#,
    )
    .unwrap();
    assert_eq!(open(dir.path(), None).meta.max_length, 128);
    // A saved length is kept.
    std::fs::write(
        dir.path().join("rewardkit.json"),
        r#"{"model": {"pooling": "cls", "max_length": 40}}"#,
    )
    .unwrap();
    assert_eq!(open(dir.path(), None).meta.max_length, 40);
}

#[test]
fn a_rotary_decoder_defaults_to_its_positions_and_takes_longer_requests() {
    let dir = common::shared_models().join("tiny-llama-rm");
    let at = |max_length| {
        let options = LoadOptions {
            max_length,
            ..Default::default()
        };
        load(&dir, &options, &Device::Cpu).unwrap().meta.max_length
    };
    assert_eq!(at(None), 128);
    assert_eq!(at(Some(300)), 300);
}
