//! An existing transformers reward model (`tiny-llama-rm`, a `LlamaForSequenceClassification`
//! with a `score` head, saved with transformers 5.24) loaded through the public `load` path and
//! scored as transformers does: on the plain `prompt + response` ids, no EOS appended, pooled at
//! the last non-pad token. Reference scores: `../shared/models/tiny-llama-rm/reference.json`.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use candle_core::Device;
use rewardkit_data::{Scorer, Text};
use rewardkit_model::{load, InitMissing, LoadOptions, ModelScorer, Pooling};

#[test]
fn hf_sequence_classifier_scores_like_transformers() {
    let dir = common::shared_models().join("tiny-llama-rm");
    for inference in [false, true] {
        scores_match(&dir, inference);
    }
}

/// `inference`: built over a frozen view (no autograd graph): the same scores.
fn scores_match(dir: &std::path::Path, inference: bool) {
    let options = LoadOptions {
        inference,
        ..Default::default()
    };
    let model = load(dir, &options, &Device::Cpu).unwrap();
    assert_eq!(model.meta.pooling, Pooling::Last);
    assert!(
        !model.meta.append_eos,
        "an HF classifier is scored on the plain text"
    );
    let reference = common::read_json(&dir.join("reference.json"));
    let texts: Vec<(Text, Text)> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                Text::Plain(t["prompt"].as_str().unwrap().into()),
                Text::Plain(t["response"].as_str().unwrap().into()),
            )
        })
        .collect();
    let items: Vec<(&Text, &Text)> = texts.iter().map(|(p, r)| (p, r)).collect();
    // Batch sizes 1 and 2: batch composition must not change a score.
    for batch_size in [1, 2] {
        let scores = ModelScorer::new(&model, batch_size)
            .score_batch(&items)
            .unwrap();
        for (i, s) in scores.iter().enumerate() {
            let expected = reference["scores"][i].as_f64().unwrap();
            assert!(
                (s - expected).abs() < 1e-5,
                "row {i}, batch {batch_size}: {s} vs {expected}"
            );
        }
    }
}

#[test]
fn from_scratch_ignores_the_weights_and_is_seeded() {
    // The same folder with `InitMissing::All` (`--from-scratch`): every weight is initialised from the seed (none is
    // read), reproducibly, and differently for another seed.
    let dir = common::shared_models().join("tiny-llama-rm");
    let build = |seed: u64| {
        let options = LoadOptions {
            init_missing: InitMissing::All,
            seed,
            ..Default::default()
        };
        load(&dir, &options, &Device::Cpu).unwrap()
    };
    let (a, b, c) = (build(1), build(1), build(2));
    let values = |m: &rewardkit_model::LoadedModel| -> Vec<Vec<f32>> {
        m.model
            .params()
            .vars()
            .into_iter()
            .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };
    assert_eq!(
        a.model.params().initialised().len(),
        a.model.params().vars().len()
    );
    assert_eq!(values(&a), values(&b));
    assert_ne!(values(&a), values(&c));
    let trained = load(&dir, &LoadOptions::default(), &Device::Cpu).unwrap();
    assert_ne!(values(&a), values(&trained));
    // Norm weights start at 1, as in transformers.
    let norm = a
        .model
        .params()
        .vars()
        .into_iter()
        .find(|(n, _)| n == "model.norm.weight")
        .unwrap()
        .1;
    assert!(norm
        .as_tensor()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|&x| x == 1.0));
}
