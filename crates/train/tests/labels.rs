//! Soft labels and ties in training, end to end on the tiny BERT of `common` and its marker rule
//! (chosen mentions `t7`, rejected `t9`): a soft label p makes the model learn the probability
//! p, not certainty; ties pull the rewards of their two responses together; `ties = skip`
//! leaves them out, as before.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::ops::ControlFlow;

use rewardkit_data::PreferencePair;
use rewardkit_eval::PairReport;
use rewardkit_train::{train, Run, Ties, TrainConfig, TrainError, TrainSummary};

mod common;
use common::{config, load_model, model_dir, swapped_pairs};

fn with_label(pairs: Vec<PreferencePair>, p: Option<f64>, tie: bool) -> Vec<PreferencePair> {
    pairs
        .into_iter()
        .map(|q| PreferencePair {
            p_chosen: p,
            tie,
            ..q
        })
        .collect()
}

fn run(
    model: &rewardkit_model::LoadedModel,
    config: &TrainConfig,
    train_pairs: &[PreferencePair],
    eval_pairs: &[PreferencePair],
) -> Result<TrainSummary, TrainError> {
    let out = tempfile::tempdir().unwrap();
    train(
        model,
        config,
        &Run::new(train_pairs, eval_pairs, out.path()),
        |_| ControlFlow::Continue(()),
    )
}

fn mean_gap(r: &PairReport) -> f64 {
    r.gap.mean.unwrap()
}

/// σ of the held-out mean gap: the probability the model puts on chosen, at a typical pair.
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn long_run() -> TrainConfig {
    TrainConfig {
        max_steps: Some(40),
        save_every: 0,
        log_every: 10,
        ..config()
    }
}

#[test]
fn a_soft_label_is_learned_as_a_probability_not_a_certainty() {
    let dir = model_dir();
    let eval = swapped_pairs(48, 2);
    let hard = {
        let model = load_model(dir.path());
        let s = run(&model, &long_run(), &swapped_pairs(96, 1), &eval).unwrap();
        assert_eq!(s.soft_labels, 0);
        s.final_eval.unwrap()
    };
    let soft_pairs = with_label(swapped_pairs(96, 1), Some(0.75), false);
    let soft = {
        let model = load_model(dir.path());
        let s = run(&model, &long_run(), &soft_pairs, &eval).unwrap();
        assert_eq!((s.train_pairs, s.soft_labels), (96, 96));
        s.final_eval.unwrap()
    };
    let (h, p) = (sigmoid(mean_gap(&hard)), sigmoid(mean_gap(&soft)));
    println!("held-out σ(mean gap): hard labels {h:.3}, p = 0.75 labels {p:.3}");
    // Both learn the rule (the held-out pairs are hard-labelled: chosen has t7) ...
    assert!(hard.accuracy.accuracy.unwrap() > 0.9 && soft.accuracy.accuracy.unwrap() > 0.9);
    // ... but the soft labels stop near logit(0.75) = 1.10 while hard labels push on.
    assert!((p - 0.75).abs() < 0.08, "σ(mean gap) {p} under p = 0.75");
    assert!(h > 0.9, "σ(mean gap) {h} under hard labels");

    // --hard-labels (use_soft_labels = false) trains the same pairs exactly as hard labels.
    let model = load_model(dir.path());
    let ignored = TrainConfig {
        use_soft_labels: false,
        ..long_run()
    };
    let s = run(&model, &ignored, &soft_pairs, &eval).unwrap();
    assert_eq!(s.soft_labels, 0);
    assert_eq!(s.final_eval.unwrap().gap.mean, hard.gap.mean);
}

#[test]
fn trained_ties_pull_rewards_together_and_skipped_ties_change_nothing() {
    let dir = model_dir();
    let model = load_model(dir.path());
    // First learn the rule, so the tied responses (t7 against t9) start far apart.
    let hard = swapped_pairs(96, 1);
    let eval_ties = with_label(swapped_pairs(48, 2), None, true);
    let before = run(&model, &config(), &hard, &eval_ties).unwrap();
    let gap_before = before.final_eval.unwrap().ties.mean_abs_gap.unwrap();

    // All ties, skipped (the default): nothing to train on, and the error says what to do.
    let ties = with_label(swapped_pairs(96, 3), None, true);
    let e = run(&model, &config(), &ties, &eval_ties).unwrap_err();
    assert!(e.to_string().contains("--ties train"), "{e}");

    // Trained as p = ½: the held-out tied pairs' reward gap shrinks.
    let as_ties = TrainConfig {
        ties: Ties::Train,
        ..config()
    };
    let after = run(&model, &as_ties, &ties, &eval_ties).unwrap();
    assert_eq!(
        (after.train_pairs, after.trained_ties, after.skipped_ties),
        (96, 96, 0)
    );
    let gap_after = after.final_eval.unwrap().ties.mean_abs_gap.unwrap();
    println!("held-out ties' mean |gap|: {gap_before:.3} after the rule, {gap_after:.3} after training on ties");
    assert!(gap_after < 0.5 * gap_before, "{gap_before} → {gap_after}");

    // Mixed data, ties skipped: the summary counts them, and the run is the hard-only run.
    let mut mixed = swapped_pairs(96, 1);
    mixed.extend(with_label(swapped_pairs(16, 4), None, true));
    let (m1, m2) = (load_model(dir.path()), load_model(dir.path()));
    let skipped = run(&m1, &config(), &mixed, &eval_ties).unwrap();
    let hard_only = run(&m2, &config(), &hard, &eval_ties).unwrap();
    assert_eq!((skipped.train_pairs, skipped.skipped_ties), (96, 16));
    assert_eq!(
        skipped.final_eval.unwrap().ties.mean_abs_gap,
        hard_only.final_eval.unwrap().ties.mean_abs_gap
    );
}
