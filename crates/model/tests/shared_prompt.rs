//! The shared-prompt forward (issue 16 item 2): sequences that share their first tokens packed
//! into one row ([`pack_shared_prefix`]), the prefix computed once, against the reference of one
//! row per sequence ([`pad_batch`], the path every parity test checks against transformers):
//! the rewards agree to 1e-5 and every parameter's gradient to 1e-4 of its largest, for the
//! Llama family (Llama, Qwen2 with q/k/v biases) and GPT-2 (learned positions), plain and with
//! gradient checkpointing; on real weights (SmolLM2-135M, HH pairs) the scores agree to 1e-5.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use common::encoded;
use rewardkit_data::{LoadOptions as DataOptions, Scorer, Text};
use rewardkit_model::{InitMissing, LoadOptions, Mode, ModelScorer, Pooling, RewardModel};
use rewardkit_tokenize::{pack_shared_prefix, pad_batch, Batch, Encoded, PaddingSide};

/// Two pairs with a shared prompt of 4 and 3 tokens, a response that is a prefix of its pair's
/// other one, a triple (best-of-3), and a sequence alone.
fn sequences() -> (Vec<Encoded>, Vec<Vec<usize>>) {
    let seqs = vec![
        encoded(&[5, 17, 42, 99, 3, 250]),
        encoded(&[5, 17, 42, 99, 7, 11, 12]),
        encoded(&[8, 64, 128, 9]),
        encoded(&[8, 64, 128, 9, 300]),
        encoded(&[21, 22, 23, 24, 25, 1]),
        encoded(&[21, 22, 23, 2]),
        encoded(&[21, 22, 23, 24, 3, 4, 5, 6]),
        encoded(&[70, 71, 72]),
    ];
    let groups = vec![vec![0, 1], vec![2, 3], vec![4, 5, 6], vec![7]];
    (seqs, groups)
}

fn batches() -> (Batch, Batch) {
    let (seqs, groups) = sequences();
    let refs: Vec<&Encoded> = seqs.iter().collect();
    let padded = pad_batch(&refs, 0, PaddingSide::Right);
    let packed = pack_shared_prefix(&refs, &groups, 0);
    // The prefixes are computed once: 30 positions instead of 8 rows of 8.
    assert_eq!(packed.attention_mask.iter().sum::<u32>(), 30);
    (padded, packed)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// The rewards, and the gradients by parameter name of a loss that weighs every reward
/// differently (so that a reward read from the wrong position shows).
fn rewards_and_grads(
    model: &RewardModel,
    batch: &Batch,
    checkpointed: bool,
) -> (Vec<f32>, HashMap<String, Vec<f32>>) {
    let weights: Vec<f32> = (0..batch.sequences())
        .map(|i| 1.0 - 0.3 * i as f32)
        .collect();
    let weights = Tensor::from_vec(weights, batch.sequences(), &Device::Cpu).unwrap();
    let loss = |r: &Tensor| {
        let sq = (r.sqr().unwrap().sum_all().unwrap() * 0.1).unwrap();
        ((r * &weights).unwrap().sum_all().unwrap() + sq).unwrap()
    };
    let vars = model.params().vars();
    let mut grads: HashMap<String, Vec<f32>> = HashMap::new();
    let mut add = |store: &candle_core::backprop::GradStore| {
        for (name, var) in &vars {
            if let Some(g) = store.get(var.as_tensor()) {
                let g = values(g);
                match grads.get_mut(name) {
                    Some(sum) => sum.iter_mut().zip(&g).for_each(|(s, x)| *s += x),
                    None => {
                        grads.insert(name.clone(), g);
                    }
                }
            }
        }
        Ok::<(), candle_core::Error>(())
    };
    let rewards = if checkpointed {
        let (rewards, tape) = model.forward_recompute(batch, Mode::Eval).unwrap();
        let top = loss(&rewards).backward().unwrap();
        add(&top).unwrap();
        tape.backward(&top, &mut add).unwrap();
        rewards
    } else {
        let rewards = model.forward(batch, Mode::Eval).unwrap();
        add(&loss(&rewards).backward().unwrap()).unwrap();
        rewards
    };
    (values(&rewards), grads)
}

fn packed_equals_padded(fixture: &str) {
    let (config, store) = common::fixture(fixture);
    let model = RewardModel::new(&config, Pooling::Last, &store).unwrap();
    assert!(model.packs());
    let (padded, packed) = batches();
    let (want, want_grads) = rewards_and_grads(&model, &padded, false);
    for checkpointed in [false, true] {
        let (got, grads) = rewards_and_grads(&model, &packed, checkpointed);
        let diff = want
            .iter()
            .zip(&got)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            diff <= 1e-5,
            "{fixture} (checkpointed {checkpointed}): rewards {got:?} vs {want:?}"
        );
        assert_eq!(
            grads.len(),
            store.vars().len(),
            "{fixture}: every parameter"
        );
        for (name, w) in &want_grads {
            let g = &grads[name];
            let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(scale > 0.0, "{fixture}: {name} has a zero gradient");
            let diff = w.iter().zip(g).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                diff <= 1e-4 * scale,
                "{fixture} (checkpointed {checkpointed}): {name} differs by {diff} (largest {scale})"
            );
        }
    }
    // The rewards differ between sequences: a mixed-up read position would show.
    assert!(
        want.windows(2).all(|w| (w[0] - w[1]).abs() > 1e-4),
        "{want:?}"
    );
}

#[test]
fn llama_packed_rows_equal_separate_rows() {
    packed_equals_padded("tiny-llama");
}

#[test]
fn qwen2_packed_rows_equal_separate_rows() {
    packed_equals_padded("tiny-qwen2");
}

#[test]
fn gpt2_packed_rows_equal_separate_rows() {
    packed_equals_padded("tiny-gpt2");
}

#[test]
fn encoders_and_mean_pooling_refuse_packed_rows() {
    let (_, packed) = batches();
    let (config, store) = common::fixture("tiny-bert");
    let bert = RewardModel::new(&config, Pooling::Cls, &store).unwrap();
    assert!(!bert.packs());
    let err = bert.forward(&packed, Mode::Eval).err().unwrap();
    assert!(err.to_string().contains("causal decoder"), "{err}");
    let (config, store) = common::fixture("tiny-llama");
    let mean = RewardModel::new(&config, Pooling::Mean, &store).unwrap();
    assert!(!mean.packs());
    assert!(mean.forward(&packed, Mode::Eval).is_err());
}

/// SmolLM2-135M-Instruct (real weights, a seeded value head) on the first 24 pairs of HH
/// helpful-base's test split: the scorer's shared-prompt rows give the scores of one row per
/// sequence, and compute fewer positions.
#[test]
fn smollm2_scores_hh_pairs_alike_with_the_shared_prompt() {
    let gguf = common::real_model("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let options = LoadOptions {
        init_missing: InitMissing::ValueHead,
        seed: 3,
        max_length: Some(256),
        inference: true,
        ..Default::default()
    };
    let model = rewardkit_model::load(&gguf, &options, &Device::Cpu).unwrap();
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/hh-rlhf/helpful-base/test.jsonl.gz");
    let data = rewardkit_data::load(&[path], &DataOptions::default()).unwrap();
    let items: Vec<(&Text, &Text)> = data.pairs[..24]
        .iter()
        .flat_map(|p| [(&p.prompt, &p.chosen), (&p.prompt, &p.rejected)])
        .collect();
    let shared = ModelScorer::new(&model, 8);
    assert!(shared.shares_prompt());
    let got = shared.score_batch(&items).unwrap();
    let (_, packed_tokens, _) = model.scored.totals();
    let alone = ModelScorer::new(&model, 8).shared_prompt(false);
    let want = alone.score_batch(&items).unwrap();
    let (_, all_tokens, _) = model.scored.totals();
    let separate_tokens = all_tokens - packed_tokens;
    let diff = want
        .iter()
        .zip(&got)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    println!(
        "positions per pair: {:.1} shared, {:.1} separate; max score difference {diff:.2e}",
        packed_tokens as f64 / 24.0,
        separate_tokens as f64 / 24.0
    );
    assert!(diff <= 1e-5, "scores differ by {diff}");
    assert!(
        packed_tokens * 10 < separate_tokens * 9,
        "{packed_tokens} vs {separate_tokens}"
    );
}
