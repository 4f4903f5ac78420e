//! Training end to end on a tiny BERT (`../shared/models/tiny-bert`, random weights made with
//! transformers) with the WordLevel tokenizer of `tiny-llama-rm` (tokens `t0`…`t999`), on a
//! synthetic preference rule the model can learn: chosen responses mention `t7`, rejected ones `t9`.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::ops::ControlFlow;
use std::path::Path;

use candle_core::Device;
use rewardkit_model::{load, LoadOptions};
use rewardkit_train::{latest_checkpoint, train, Event, Run, Start, TrainConfig};

mod common;
// Pairs where the chosen response contains `t7` and the rejected one `t9`.
use common::swapped_pairs as pairs;
use common::{config, load_model, model_dir, weights};

#[test]
fn learns_the_rule_and_logs() {
    let dir = model_dir();
    let model = load_model(dir.path());
    let out = tempfile::tempdir().unwrap();
    let (train_pairs, eval_pairs) = (pairs(96, 1), pairs(48, 2));
    let mut losses = Vec::new();
    let summary = train(
        &model,
        &config(),
        &Run {
            train: &train_pairs,
            eval: &eval_pairs,
            out: out.path(),
            start: Start::Fresh,
            stop: None,
            meta: serde_json::json!({}),
        },
        |e| {
            if let Event::Step(s) = e {
                losses.push(s.loss);
            }
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(summary.steps, 12);
    let acc = summary
        .final_eval
        .as_ref()
        .unwrap()
        .accuracy
        .accuracy
        .unwrap();
    assert!(acc > 0.9, "held-out accuracy {acc} (losses {losses:?})");
    let first: f64 = losses[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(last < first * 0.7, "loss {first} → {last}");
    // The final model, checkpoints and log are on disk; the final folder loads and scores alike.
    let log = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"kind\":\"train\""))
            .count(),
        12
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"kind\":\"eval\""))
            .count(),
        1
    );
    assert_eq!(latest_checkpoint(out.path()).unwrap().0, 12);
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n == "checkpoint-4"),
        "pruned to the newest 2: {names:?}"
    );
    let reloaded = load(
        &out.path().join("final"),
        &LoadOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(weights(&reloaded), weights(&model));
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("final/rewardkit.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["train"]["learning_rate"], 3e-3);
    assert_eq!(meta["model"]["pooling"], "cls");
}

#[test]
fn same_seed_same_result_and_resume_equals_uninterrupted() {
    let (train_pairs, eval_pairs) = (pairs(64, 3), pairs(16, 4));
    let cfg = TrainConfig {
        dropout: true,
        ..config()
    };
    let run = |stop_at: Option<usize>, resume: bool, out: &Path, dir: &Path| {
        let model = load_model(dir);
        train(
            &model,
            &cfg,
            &Run {
                train: &train_pairs,
                eval: &eval_pairs,
                out,
                start: if resume { Start::Resume } else { Start::Fresh },
                stop: None,
                meta: serde_json::json!({}),
            },
            |e| match (e, stop_at) {
                (Event::Step(s), Some(k)) if s.step == k => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            },
        )
        .unwrap();
        model
    };
    let dir = model_dir();
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let full = weights(&run(None, false, a.path(), dir.path()));
    let again = weights(&run(None, false, b.path(), dir.path()));
    assert_eq!(full, again, "two runs with one seed differ");
    // Interrupted after step 5 (a checkpoint is written on the way out), then resumed.
    let partial = run(Some(5), false, c.path(), dir.path());
    assert_eq!(latest_checkpoint(c.path()).unwrap().0, 5);
    assert_ne!(weights(&partial), full);
    let resumed = weights(&run(None, true, c.path(), dir.path()));
    assert_eq!(
        resumed, full,
        "resumed run differs from the uninterrupted one"
    );
    // The resumed log has each step once.
    let log = std::fs::read_to_string(c.path().join("metrics.jsonl")).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"kind\":\"train\""))
            .count(),
        12
    );
}

#[test]
fn resume_refuses_a_different_configuration() {
    let dir = model_dir();
    let out = tempfile::tempdir().unwrap();
    let (train_pairs, eval_pairs) = (pairs(32, 5), pairs(8, 6));
    let model = load_model(dir.path());
    let cfg = TrainConfig {
        max_steps: Some(2),
        ..config()
    };
    train(
        &model,
        &cfg,
        &Run {
            train: &train_pairs,
            eval: &eval_pairs,
            out: out.path(),
            start: Start::Fresh,
            stop: None,
            meta: serde_json::json!({}),
        },
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let other = TrainConfig {
        learning_rate: 1e-4,
        ..cfg
    };
    let err = train(
        &model,
        &other,
        &Run {
            train: &train_pairs,
            eval: &eval_pairs,
            out: out.path(),
            start: Start::Resume,
            stop: None,
            meta: serde_json::json!({}),
        },
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("learning_rate"), "{err}");
}
