//! Packed rows against the reference of one row per sequence ([`pad_batch`], the path every
//! parity test checks against transformers): the rewards agree to 1e-5 and every parameter's
//! gradient to 1e-4 of its largest.
//!
//! - The shared-prompt forward (issue 16 item 2): sequences that share their first tokens in
//!   one row ([`pack_shared_prefix`]), the prefix computed once, for the Llama family (Llama,
//!   Qwen2 with q/k/v biases) and GPT-2 (learned positions), plain and with gradient
//!   checkpointing; several such groups in one row.
//! - No padding (issue 16 item 3): sequences side by side in a row ([`pack`] without a shared
//!   prefix), each seeing only itself, for BERT (CLS, mean and pooler pooling) and the decoders
//!   (last-token and mean pooling).
//! - On real weights (SmolLM2-135M and MiniLM, HH pairs) the scorer's packed rows give the
//!   scores of padded rows to 1e-5.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use common::encoded;
use rewardkit_data::{LoadOptions as DataOptions, Scorer, Text};
use rewardkit_model::{InitMissing, LoadOptions, Mode, ModelScorer, Pooling, RewardModel};
use rewardkit_tokenize::{pack, pack_shared_prefix, pad_batch, Batch, Encoded, PaddingSide};

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

/// The padded batch, and the same sequences packed: without a shared prefix, three rows of
/// two, three and three sequences side by side (13, 15 and 15 tokens: padding after the first).
fn side_by_side() -> (Batch, Batch) {
    let (seqs, _) = sequences();
    let refs: Vec<&Encoded> = seqs.iter().collect();
    let one = |i: usize| vec![i];
    let rows = [
        vec![one(0), one(1)],
        vec![one(2), one(3), one(4)],
        vec![one(5), one(6), one(7)],
    ];
    let packed = pack(&refs, &rows, false, 0);
    assert_eq!((packed.rows, packed.len), (3, 15));
    (pad_batch(&refs, 0, PaddingSide::Right), packed)
}

/// The shared-prefix groups two to a row.
fn shared_two_to_a_row() -> Batch {
    let (seqs, groups) = sequences();
    let refs: Vec<&Encoded> = seqs.iter().collect();
    let rows = [groups[..2].to_vec(), groups[2..].to_vec()];
    pack(&refs, &rows, true, 0)
}

fn packed_equals_padded(fixture: &str, pooling: Pooling, batches: &[(&str, Batch)]) {
    let (config, store) = common::fixture(fixture);
    let model = RewardModel::new(&config, pooling, &store).unwrap();
    let (seqs, _) = sequences();
    let refs: Vec<&Encoded> = seqs.iter().collect();
    let padded = pad_batch(&refs, 0, PaddingSide::Right);
    let (want, want_grads) = rewards_and_grads(&model, &padded, false);
    let checkpointing: &[bool] = if config.is_decoder() {
        &[false, true]
    } else {
        &[false]
    };
    for ((what, packed), &checkpointed) in batches
        .iter()
        .flat_map(|b| checkpointing.iter().map(move |c| (b, c)))
    {
        let (got, grads) = rewards_and_grads(&model, packed, checkpointed);
        let diff = want
            .iter()
            .zip(&got)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let case = format!("{fixture} {pooling:?} {what} (checkpointed {checkpointed})");
        assert!(diff <= 1e-5, "{case}: rewards {got:?} vs {want:?}");
        assert_eq!(grads.len(), want_grads.len(), "{case}: every parameter");
        for (name, w) in &want_grads {
            let g = &grads[name];
            let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(scale > 0.0, "{case}: {name} has a zero gradient");
            let diff = w.iter().zip(g).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            // Plus 1e-9 for gradients that are zero but for rounding: BERT's key bias (the
            // softmax cancels a shift common to a query's scores), about 5e-11 here.
            assert!(
                diff <= 1e-4 * scale + 1e-9,
                "{case}: {name} differs by {diff} (largest {scale})"
            );
        }
    }
    // The rewards differ between sequences: a mixed-up read position would show.
    assert!(
        want.windows(2).all(|w| (w[0] - w[1]).abs() > 1e-4),
        "{want:?}"
    );
}

/// Every way a decoder read at its last token packs.
fn decoder_packings() -> Vec<(&'static str, Batch)> {
    let (_, shared) = batches();
    vec![
        ("shared prefix", shared),
        ("shared prefix, two groups a row", shared_two_to_a_row()),
        ("side by side", side_by_side().1),
    ]
}

#[test]
fn llama_packed_rows_equal_separate_rows() {
    packed_equals_padded("tiny-llama", Pooling::Last, &decoder_packings());
    let mean = [("side by side", side_by_side().1)];
    packed_equals_padded("tiny-llama", Pooling::Mean, &mean);
}

#[test]
fn qwen2_packed_rows_equal_separate_rows() {
    packed_equals_padded("tiny-qwen2", Pooling::Last, &decoder_packings());
}

#[test]
fn gpt2_packed_rows_equal_separate_rows() {
    packed_equals_padded("tiny-gpt2", Pooling::Last, &decoder_packings());
}

#[test]
fn bert_sequences_side_by_side_equal_separate_rows() {
    for pooling in [Pooling::Cls, Pooling::Mean, Pooling::Pooler] {
        packed_equals_padded("tiny-bert", pooling, &[("side by side", side_by_side().1)]);
    }
}

#[test]
fn encoders_and_mean_pooling_refuse_a_shared_prefix() {
    let (_, packed) = batches();
    let (config, store) = common::fixture("tiny-bert");
    let bert = RewardModel::new(&config, Pooling::Cls, &store).unwrap();
    assert!(!bert.shares_prompt());
    let err = bert.forward(&packed, Mode::Eval).err().unwrap();
    assert!(err.to_string().contains("causal decoder"), "{err}");
    let (config, store) = common::fixture("tiny-llama");
    let mean = RewardModel::new(&config, Pooling::Mean, &store).unwrap();
    assert!(!mean.shares_prompt());
    assert!(mean.forward(&packed, Mode::Eval).is_err());
}

/// The first 24 pairs of HH helpful-base's test split.
fn hh_pairs() -> Vec<rewardkit_data::PreferencePair> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/hh-rlhf/helpful-base/test.jsonl.gz");
    let mut data = rewardkit_data::load(&[path], &DataOptions::default()).unwrap();
    data.pairs.truncate(24);
    data.pairs
}

/// Each pair's (prompt, chosen), then its (prompt, rejected).
fn as_items(pairs: &[rewardkit_data::PreferencePair]) -> Vec<(&Text, &Text)> {
    pairs
        .iter()
        .flat_map(|p| [(&p.prompt, &p.chosen), (&p.prompt, &p.rejected)])
        .collect()
}

/// Real weights from `scripts/fetch-models.sh` with a value head seeded 3, max length 256.
fn real_reward_model(name: &str) -> rewardkit_model::LoadedModel {
    let options = LoadOptions {
        init_missing: InitMissing::ValueHead,
        seed: 3,
        max_length: Some(256),
        inference: true,
        ..Default::default()
    };
    rewardkit_model::load(&common::real_model(name), &options, &Device::Cpu).unwrap()
}

/// SmolLM2-135M-Instruct (real weights, a seeded value head) on the first 24 pairs of HH
/// helpful-base's test split: the scorer's shared-prompt rows give the scores of one row per
/// sequence, and compute fewer positions.
#[test]
fn smollm2_scores_hh_pairs_alike_with_the_shared_prompt() {
    let model = real_reward_model("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let pairs = hh_pairs();
    let items = as_items(&pairs);
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

/// MiniLM (real weights, a seeded value head, CLS pooling) and SmolLM2-135M (last token) on the
/// first 24 pairs of HH helpful-base's test split: sequences packed side by side to a budget of
/// 1,024 tokens (and for SmolLM2 each pair's prompt shared as well) give the scores of padded
/// rows, and no position goes to padding beyond each forward pass's last row.
#[test]
fn real_models_score_hh_pairs_alike_packed_without_padding() {
    let pairs = hh_pairs();
    let items = as_items(&pairs);
    for name in ["minilm", "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"] {
        let model = real_reward_model(name);
        let scored = |scorer: ModelScorer| {
            let before = model.scored.totals();
            let scores = scorer.score_batch(&items).unwrap();
            let after = model.scored.totals();
            (scores, after.1 - before.1, after.2 - before.2)
        };
        let (want, tokens, padded) = scored(ModelScorer::new(&model, 8).shared_prompt(false));
        assert!(padded > tokens, "{name}: the padded rows pad");
        let mut runs = vec![(
            "side by side",
            ModelScorer::new(&model, 8)
                .shared_prompt(false)
                .max_batch_tokens(Some(1024)),
        )];
        if model.model.shares_prompt() {
            let shared = ModelScorer::new(&model, 8).max_batch_tokens(Some(1024));
            runs.push(("side by side, prompts shared", shared));
        }
        for (what, scorer) in runs {
            let (got, packed_tokens, packed_positions) = scored(scorer);
            let diff = want
                .iter()
                .zip(&got)
                .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
            println!(
                "{name} {what}: {packed_tokens} tokens in {packed_positions} positions \
                 (padded rows: {tokens} in {padded}); max score difference {diff:.2e}"
            );
            assert!(diff <= 1e-5, "{name} {what}: scores differ by {diff}");
            // One row a forward pass: every position is a real token.
            assert_eq!(packed_tokens, packed_positions, "{name} {what}");
            if what == "side by side" {
                assert_eq!(packed_tokens, tokens, "{name}: the same tokens");
            } else {
                assert!(packed_tokens * 10 < tokens * 9, "{name}: prompts once");
            }
        }
    }
}
