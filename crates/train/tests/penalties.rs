//! The penalties of `TrainConfig::penalties` in real training runs of the tiny BERT (see
//! `common`), each against the same run without it: what each is meant to change changes
//! (held-out), and a run with all three resumes exactly. Their gradients are checked against
//! finite differences in `src/penalty.rs`.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::ops::ControlFlow;
use std::path::Path;

use rewardkit_data::{PreferencePair, Probe, ProbePhrases, Text, CORRECTION_SOURCE};
use rewardkit_model::{LoadedModel, Rng};
use rewardkit_train::penalty::{default_edits, ODIN_FILE};
use rewardkit_train::{
    latest_checkpoint, train, Event, Penalty, Run, Start, TrainConfig, TrainError,
};

mod common;
use common::{load_model, model_dir, weights, words};

/// The common short run for 16 steps, without checkpoints on the way, with `penalties`.
fn config(penalties: Vec<Penalty>) -> TrainConfig {
    TrainConfig {
        max_steps: Some(16),
        save_every: 0,
        penalties,
        ..common::config()
    }
}

/// Trains a fresh tiny BERT on `pairs` and returns it with the log's penalty terms of the last
/// step.
fn trained(cfg: &TrainConfig, pairs: &[PreferencePair]) -> Result<LoadedModel, TrainError> {
    let dir = model_dir();
    let model = load_model(dir.path());
    let out = tempfile::tempdir().unwrap();
    train(&model, cfg, &Run::new(pairs, &[], out.path()), |_| {
        ControlFlow::Continue(())
    })?;
    Ok(model)
}

fn score(model: &LoadedModel, items: &[(String, String)]) -> Vec<f64> {
    let encoded: Vec<_> = items
        .iter()
        .map(|(p, r)| {
            model
                .encode(&Text::Plain(p.clone()), &Text::Plain(r.clone()))
                .unwrap()
        })
        .collect();
    model.score_encoded(&encoded, 32).unwrap()
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sx = x.iter().map(|a| (a - mx).powi(2)).sum::<f64>().sqrt();
    let sy = y.iter().map(|b| (b - my).powi(2)).sum::<f64>().sqrt();
    cov / (sx * sy)
}

/// Pairs where the chosen response mentions `t7` and the rejected `t9`; the chosen one is also
/// longer by 4 to 12 tokens of padding words (`t300`…), a length bias a model can learn instead.
fn length_biased(n: usize, seed: u64) -> Vec<PreferencePair> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let prompt = words(&mut rng, 6);
            let (a, b) = (words(&mut rng, 4), words(&mut rng, 4));
            let pad: Vec<String> = (0..4 + rng.below(9))
                .map(|_| format!("t{}", 300 + rng.below(100)))
                .collect();
            PreferencePair::new(
                prompt,
                format!("{a} t7 {b} {}", pad.join(" ")),
                format!("{b} t9 {a}"),
            )
        })
        .collect()
}

#[test]
fn odin_quality_head_is_less_correlated_with_length_than_plain_training() {
    let pairs = length_biased(128, 1);
    // Held out: responses with the quality marker and 0 to 12 padding words, independent of it.
    let mut rng = Rng::new(9);
    let mut items = Vec::new();
    let mut lengths = Vec::new();
    for _ in 0..96 {
        let a = words(&mut rng, 4);
        let k = rng.below(13);
        let pad: Vec<String> = (0..k)
            .map(|_| format!("t{}", 300 + rng.below(100)))
            .collect();
        let response = format!("{a} t7 {}", pad.join(" "));
        lengths.push(response.split_whitespace().count() as f64);
        items.push((words(&mut rng, 6), response));
    }
    let plain = trained(&config(vec![]), &pairs).unwrap();
    let odin = trained(&config(vec![Penalty::parse("odin").unwrap()]), &pairs).unwrap();
    let r_plain = pearson(&score(&plain, &items), &lengths);
    let r_odin = pearson(&score(&odin, &items), &lengths);
    println!("length r: plain {r_plain:.3}, odin {r_odin:.3}");
    assert!(
        r_plain > 0.5,
        "plain training did not learn the length bias: {r_plain}"
    );
    assert!(
        r_odin.abs() < r_plain.abs() - 0.2,
        "odin {r_odin} vs plain {r_plain}"
    );
}

/// Labels with an agreement bias: in ordinary pairs the chosen response agrees (`t8`) and the
/// rejected does not. Then `corrections` correction pairs: the chosen response corrects the user
/// (`t5`), the rejected agrees (`t8`).
fn with_corrections(n: usize, corrections: usize, seed: u64) -> Vec<PreferencePair> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for k in 0..n + corrections {
        let prompt = words(&mut rng, 6);
        let (a, b) = (words(&mut rng, 4), words(&mut rng, 4));
        let mut p = if k < n {
            PreferencePair::new(prompt, format!("{a} t8 {b}"), format!("{b} {a}"))
        } else {
            PreferencePair::new(prompt, format!("{a} t5 {b}"), format!("{b} t8 {a}"))
        };
        if k >= n {
            p.source = Some(format!("{CORRECTION_SOURCE}test"));
        }
        out.push(p);
    }
    out
}

#[test]
fn the_honesty_penalty_lowers_the_agree_rate_on_held_out_correction_pairs() {
    let pairs = with_corrections(112, 16, 2);
    let held_out: Vec<PreferencePair> = with_corrections(0, 64, 3);
    // The share of held-out correction pairs where the agreeing response scores higher.
    let agree_rate = |model: &LoadedModel| {
        let items: Vec<(String, String)> = held_out
            .iter()
            .flat_map(|p| [&p.chosen, &p.rejected].map(|r| (p.prompt.render(), r.render())))
            .collect();
        let s = score(model, &items);
        s.chunks(2).filter(|c| c[1] > c[0]).count() as f64 / held_out.len() as f64
    };
    let plain = agree_rate(&trained(&config(vec![]), &pairs).unwrap());
    let honest =
        agree_rate(&trained(&config(vec![Penalty::Honesty { weight: 4.0 }]), &pairs).unwrap());
    println!("held-out agree rate: plain {plain:.3}, honesty {honest:.3}");
    assert!(
        plain > 0.5,
        "the agreement bias did not reach the plain model: {plain}"
    );
    assert!(
        honest < 0.5 && honest < plain - 0.2,
        "honesty {honest} vs plain {plain}"
    );
    // Without correction pairs the penalty has nothing to act on: refused, not silently off.
    let err = trained(
        &config(vec![Penalty::Honesty { weight: 1.0 }]),
        &with_corrections(32, 0, 4),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("correction pairs"), "{err}");
}

#[test]
fn the_counterfactual_penalty_makes_edited_responses_score_like_the_originals() {
    let pairs = with_corrections(128, 0, 5);
    // Held out: chosen responses and their edits with the audit's phrases (which training never
    // sees), the edits the penalty draws from.
    let audit = ProbePhrases::default();
    let mut originals = Vec::new();
    let mut edited = Vec::new();
    for (i, p) in with_corrections(64, 0, 6).iter().enumerate() {
        let probe: Probe = default_edits()[i % default_edits().len()];
        let r = p.chosen.render();
        let Some(e) = audit.apply(probe, &r, 11, i) else {
            continue;
        };
        originals.push((p.prompt.render(), r));
        edited.push((p.prompt.render(), e));
    }
    let shift = |model: &LoadedModel| {
        let (a, b) = (score(model, &originals), score(model, &edited));
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
    };
    let plain = shift(&trained(&config(vec![]), &pairs).unwrap());
    let invariant = shift(
        &trained(
            &config(vec![Penalty::parse("counterfactual=8").unwrap()]),
            &pairs,
        )
        .unwrap(),
    );
    println!(
        "mean |r(x′) − r(x)| on {} held-out edits: plain {plain:.3}, counterfactual {invariant:.3}",
        originals.len()
    );
    assert!(
        invariant < plain * 0.5,
        "counterfactual {invariant} vs plain {plain}"
    );
}

#[test]
fn a_run_with_every_penalty_resumes_exactly_and_its_final_model_has_no_length_head() {
    let pairs = with_corrections(56, 8, 7);
    let cfg = TrainConfig {
        max_steps: Some(10),
        save_every: 4,
        ..config(vec![
            Penalty::parse("honesty=1").unwrap(),
            Penalty::parse("counterfactual=0.5").unwrap(),
            Penalty::parse("odin").unwrap(),
        ])
    };
    let run = |stop_at: Option<usize>, resume: bool, out: &Path, dir: &Path| {
        let model = load_model(dir);
        let mut terms = Vec::new();
        train(
            &model,
            &cfg,
            &Run {
                start: if resume { Start::Resume } else { Start::Fresh },
                ..Run::new(&pairs, &[], out)
            },
            |e| match e {
                Event::Step(s) => {
                    terms.push(s.penalties.clone());
                    match stop_at {
                        Some(k) if s.step == k => ControlFlow::Break(()),
                        _ => ControlFlow::Continue(()),
                    }
                }
                _ => ControlFlow::Continue(()),
            },
        )
        .unwrap();
        (model, terms)
    };
    let dir = model_dir();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (full, terms) = run(None, false, a.path(), dir.path());
    // Every step logs the counterfactual and ODIN terms (ODIN's can be negative: −ρ of the
    // length head); the honesty term those whose batches hold a correction pair.
    assert!(
        terms
            .iter()
            .all(|t| t["counterfactual"] >= 0.0 && t.contains_key("odin")),
        "{terms:?}"
    );
    let honest = terms.iter().filter(|t| t.contains_key("honesty")).count();
    assert!((5..10).contains(&honest), "{terms:?}");
    assert!(terms
        .iter()
        .flat_map(|t| t.get("honesty"))
        .all(|&h| h > 0.0));
    let (_, _) = run(Some(5), false, b.path(), dir.path());
    let (step, checkpoint) = latest_checkpoint(b.path()).unwrap();
    assert_eq!(step, 5);
    assert!(checkpoint.join(ODIN_FILE).exists());
    let (resumed, _) = run(None, true, b.path(), dir.path());
    assert_eq!(weights(&resumed), weights(&full), "resumed run differs");
    // The final model is an ordinary reward model: the length head stays behind.
    assert!(!a.path().join("final").join(ODIN_FILE).exists());
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(a.path().join("final/rewardkit.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["train"]["penalties"][2]["kind"], "odin");
}
