//! A complete HF reward model: `LlamaForSequenceClassification` loaded as a [`RewardModel`].
//!
//! Reference: `../shared/models/tiny-llama-rm/reference.json`, the `scores` transformers 5.24
//! (PyTorch 2.15) computed for the right-padded batch and for each row alone
//! (`scores_unpadded_one_by_one`); transformers pools the last non-pad token (`pad_token_id` 0)
//! and applies `score` (no bias). Left padding has no transformers reference: it must give the
//! same scores (pad keys masked, the last real token pooled; RoPE only sees relative positions,
//! so the mask-derived positions matter for GPT-2, which `decoder_parity.rs` checks).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use rewardkit_model::{Mode, Pooling, RewardModel};
use rewardkit_tokenize::{pad_batch, Batch, Encoded, InputStyle, PaddingSide, RewardTokenizer};

const TOL: f64 = 1e-5;

fn load() -> (RewardModel, serde_json::Value) {
    let (config, store) = common::fixture("tiny-llama-rm");
    assert_eq!(config.head_name(), "score");
    let model = RewardModel::new(&config, Pooling::Last, &store).unwrap();
    assert!(
        store.initialised().is_empty(),
        "weights missing from the checkpoint (the head included): {:?}",
        store.initialised()
    );
    assert!(
        store.unused().is_empty(),
        "checkpoint weights the model ignored: {:?}",
        store.unused()
    );
    let reference =
        common::read_json(&common::shared_models().join("tiny-llama-rm/reference.json"));
    (model, reference)
}

/// The reference rows without their padding.
fn rows(reference: &serde_json::Value) -> Vec<Encoded> {
    let ids = reference["input_ids"].as_array().unwrap();
    let mask = reference["attention_mask"].as_array().unwrap();
    ids.iter()
        .zip(mask)
        .map(|(ids, mask)| {
            let ids: Vec<u32> = ids
                .as_array()
                .unwrap()
                .iter()
                .zip(mask.as_array().unwrap())
                .filter(|(_, m)| m.as_u64() == Some(1))
                .map(|(x, _)| x.as_u64().unwrap() as u32)
                .collect();
            Encoded {
                type_ids: vec![0; ids.len()],
                ids,
                truncation: Default::default(),
            }
        })
        .collect()
}

fn scores(model: &RewardModel, batch: &Batch) -> Vec<f32> {
    model.forward(batch, Mode::Eval).unwrap().to_vec1().unwrap()
}

fn expected(reference: &serde_json::Value, key: &str) -> Vec<f64> {
    reference[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let diff = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max);
    eprintln!("{what}: max |diff| = {diff:e}");
    assert!(diff < TOL, "{what}: got {got:?}, want {want:?}");
}

#[test]
fn padded_batch_matches_transformers() {
    let (model, reference) = load();
    // Exactly transformers' input: the reference ids and mask, right-padded with 0.
    let ids = common::u32_matrix(&reference["input_ids"]);
    let mask = common::u32_matrix(&reference["attention_mask"]);
    let (rows, len) = ids.dims2().unwrap();
    let batch = Batch {
        rows,
        len,
        ids: ids.flatten_all().unwrap().to_vec1().unwrap(),
        type_ids: vec![0; rows * len],
        attention_mask: mask.flatten_all().unwrap().to_vec1().unwrap(),
        packing: None,
    };
    assert_close(
        &scores(&model, &batch),
        &expected(&reference, "scores"),
        "padded batch",
    );
}

#[test]
fn each_row_alone_matches_transformers() {
    let (model, reference) = load();
    let want = expected(&reference, "scores_unpadded_one_by_one");
    for (i, row) in rows(&reference).iter().enumerate() {
        let batch = pad_batch(&[row], 0, PaddingSide::Right);
        assert_eq!(batch.attention_mask.iter().sum::<u32>() as usize, batch.len);
        assert_close(
            &scores(&model, &batch),
            &want[i..=i],
            &format!("row {i} alone"),
        );
    }
}

#[test]
fn left_padding_gives_the_same_scores() {
    let (model, reference) = load();
    let rows = rows(&reference);
    let refs: Vec<&Encoded> = rows.iter().collect();
    let left = pad_batch(&refs, 0, PaddingSide::Left);
    // The short row really is left-padded.
    assert_eq!(left.attention_mask[left.len], 0);
    assert_close(
        &scores(&model, &left),
        &expected(&reference, "scores"),
        "left-padded batch",
    );
}

#[test]
fn tokenizer_gives_the_reference_ids_and_scores() {
    let (model, reference) = load();
    let dir = common::shared_models().join("tiny-llama-rm");
    // A plain HF forward pass on prompt + response: no EOS appended.
    let tok = RewardTokenizer::from_path(&dir, InputStyle::Sequence)
        .unwrap()
        .with_append_eos(false);
    let encoded: Vec<Encoded> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            tok.encode(
                &t["prompt"].as_str().unwrap().into(),
                &t["response"].as_str().unwrap().into(),
                128,
            )
            .unwrap()
        })
        .collect();
    let want_rows = rows(&reference);
    for (got, want) in encoded.iter().zip(&want_rows) {
        assert_eq!(got.ids, want.ids);
    }
    let refs: Vec<&Encoded> = encoded.iter().collect();
    let batch = pad_batch(&refs, tok.pad_id(), PaddingSide::Right);
    assert_close(
        &scores(&model, &batch),
        &expected(&reference, "scores"),
        "tokenized batch",
    );
}
