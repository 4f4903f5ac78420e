//! RL and SFT on a tiny decoder trained from scratch, where the optimum is known: the reward
//! is the share of the word `a` in the response (1 for a response of `a`s only).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::ops::ControlFlow;

use rewardkit_model::{word_level_tokenizer, ArchConfig, Policy};
use rewardkit_rl::{
    rl, sft, Completion, Event, FnReward, OptimConfig, RlConfig, RlError, RlPrompt, RlRun,
    RlSession, RlStepLog, SftConfig, SftRow, SftRun, Start,
};

const WORDS: [&str; 12] = ["?", "a", "b", "c", "d", "e", "f", "g", "h", "x", "y", "z"];

fn policy(seed: u64) -> Policy {
    let tok = word_level_tokenizer(&WORDS, &["</s>"]).unwrap();
    let eos = tok.token_to_id("</s>").unwrap();
    let config = ArchConfig::from_json(
        &serde_json::json!({"model_type": "llama", "vocab_size": WORDS.len() + 1,
            "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "tie_word_embeddings": true})
        .to_string(),
    )
    .unwrap();
    Policy::from_scratch(&config, tok, eos, seed).unwrap()
}

fn prompts() -> Vec<RlPrompt> {
    ["x y ?", "z ?", "b c d ?", "h ?"]
        .iter()
        .map(|p| RlPrompt::plain(*p))
        .collect()
}

fn share_of_a(rows: &[Completion]) -> Result<Vec<f64>, String> {
    Ok(rows
        .iter()
        .map(|c| {
            let words: Vec<&str> = c.response.split_whitespace().collect();
            words.iter().filter(|w| **w == "a").count() as f64 / words.len().max(1) as f64
        })
        .collect())
}

fn config(beta: f64, steps: usize) -> RlConfig {
    RlConfig {
        prompts_per_step: 4,
        samples_per_prompt: 4,
        max_new_tokens: 4,
        beta,
        ppo_epochs: 2,
        max_steps: steps,
        optim: OptimConfig {
            learning_rate: 0.03,
            ..RlConfig::default().optim
        },
        seed: 1,
        ..Default::default()
    }
}

/// Runs RL in memory and returns every step's log.
fn run(policy: &Policy, config: &RlConfig) -> Vec<RlStepLog> {
    let reference = policy.snapshot().unwrap();
    let prompts = prompts();
    let mut reward = FnReward::new("share-of-a", share_of_a);
    let mut logs = Vec::new();
    rl(
        policy,
        &reference,
        config,
        &RlRun::in_memory(&prompts),
        &mut reward,
        None,
        |e| {
            if let Event::Step(s) = e {
                logs.push(s.clone());
            }
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    logs
}

fn mean(logs: &[RlStepLog], f: impl Fn(&RlStepLog) -> f64) -> f64 {
    logs.iter().map(f).sum::<f64>() / logs.len() as f64
}

/// β = 0: the reward climbs from chance (about 1/13) to most of the way to its optimum 1.
/// β = 1: the same run stays within a small KL of the reference, and its reward moves less.
#[test]
fn rl_raises_the_reward_and_a_large_beta_holds_the_kl() {
    let free = run(&policy(0), &config(0.0, 30));
    let start = mean(&free[..3], |s| s.proxy_mean);
    let end = mean(&free[27..], |s| s.proxy_mean);
    println!("β = 0: reward {start:.3} → {end:.3}, KL {:.3}", free[29].kl);
    assert!(start < 0.25, "starts near chance: {start}");
    assert!(end > 0.7, "ends near the optimum: {end}");
    assert!(
        free[29].kl > 1.0,
        "moving that far costs KL: {}",
        free[29].kl
    );
    let held = run(&policy(0), &config(1.0, 30));
    let held_kl = mean(&held[27..], |s| s.kl);
    let held_end = mean(&held[27..], |s| s.proxy_mean);
    println!("β = 1: reward → {held_end:.3}, KL {held_kl:.3}");
    assert!(held_kl < 0.5, "β = 1 keeps the KL small: {held_kl}");
    assert!(held_end < end);
    assert!(held.iter().all(|s| s.sqrt_kl >= 0.0 && s.entropy > 0.0));
}

/// Held-out evaluation: before every step (its policy has `step − 1` updates) and at the end,
/// on prompts RL never trains on; the same policy evaluated twice gives the same numbers
/// (fixed random streams), and gold on the held-out prompts rises as RL learns to write `a`.
#[test]
fn held_out_evaluation_uses_fixed_streams_and_follows_the_policy() {
    let p = policy(0);
    let reference = p.snapshot().unwrap();
    let prompts = prompts();
    let held_out: Vec<RlPrompt> = ["y ?", "c d ?", "e ?"]
        .iter()
        .map(|t| RlPrompt::plain(*t))
        .collect();
    let c = RlConfig {
        eval_every: 5,
        eval_samples_per_prompt: 8,
        ..config(0.0, 20)
    };
    let dir = tempfile::tempdir().unwrap();
    let run = RlRun {
        eval_prompts: &held_out,
        out: Some(dir.path()),
        ..RlRun::in_memory(&prompts)
    };
    let mut reward = FnReward::new("share-of-a", share_of_a);
    let mut gold = FnReward::new("gold: share-of-a", share_of_a);
    let mut logs = Vec::new();
    let summary = rl(
        &p,
        &reference,
        &c,
        &run,
        &mut reward,
        Some(&mut gold),
        |e| {
            if let Event::Step(s) = e {
                logs.push(s.clone());
            }
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    let evals: Vec<_> = logs.iter().filter_map(|s| s.eval.clone()).collect();
    // Steps 1, 6, 11, 16, then the final policy.
    assert_eq!(
        evals.iter().map(|e| e.updates).collect::<Vec<_>>(),
        [0, 5, 10, 15]
    );
    assert!(logs
        .iter()
        .all(|s| s.eval.is_some() == ((s.step - 1) % 5 == 0)));
    let last = summary.final_eval.clone().unwrap();
    assert_eq!((last.updates, last.samples), (20, 24));
    // Gold and the proxy are the same function here, so they agree sample for sample.
    assert_eq!(last.proxy, Some(last.gold));
    println!(
        "held-out gold {:.3} ± {:.3} → {:.3} ± {:.3}",
        evals[0].gold, evals[0].gold_se, last.gold, last.gold_se
    );
    assert!(evals[0].gold < 0.3 && last.gold > 0.6, "{evals:?} {last:?}");
    // Chance: some samples hold an `a` and some not, so there is sampling error; once every
    // sample is all `a`s, there is none.
    assert!(
        evals[0].gold_se > 0.0 && evals[0].gold_se < 0.2,
        "{:?}",
        evals[0]
    );
    assert!(evals.iter().all(|e| e.gold_se >= 0.0));
    // The final evaluation is the last line of the log.
    let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let final_line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(final_line["kind"], "rl_eval");
    assert_eq!(final_line["updates"], 20);
    // Fixed streams: the same policy, evaluated again, gives the same samples and numbers.
    let session = RlSession::new(&p, &reference, &c).unwrap();
    let again = session.evaluate(&held_out, &mut gold, None).unwrap();
    assert_eq!((again.gold, again.gold_se), (last.gold, last.gold_se));
    assert_eq!(again.response_length, last.response_length);
    // Held-out prompts without a gold function are refused, not silently left unevaluated.
    let err = rl(&p, &reference, &c, &run, &mut reward, None, |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(
        matches!(&err, RlError::Config(m) if m.contains("gold")),
        "{err}"
    );
}

/// The same seed gives the same run: every logged number but the timings, and the weights.
#[test]
fn same_seed_same_run() {
    let strip = |mut s: RlStepLog| {
        (s.generate_s, s.score_s, s.update_s, s.elapsed_s) = (0.0, 0.0, 0.0, 0.0);
        s
    };
    let (a, b) = (policy(3), policy(3));
    let la: Vec<RlStepLog> = run(&a, &config(0.05, 4)).into_iter().map(strip).collect();
    let lb: Vec<RlStepLog> = run(&b, &config(0.05, 4)).into_iter().map(strip).collect();
    assert_eq!(la, lb);
    assert_eq!(weights(&a), weights(&b));
    // Another seed is another run.
    let c = policy(3);
    let other = RlConfig {
        seed: 2,
        ..config(0.05, 4)
    };
    let lc: Vec<RlStepLog> = run(&c, &other).into_iter().map(strip).collect();
    assert_ne!(la, lc);
}

fn weights(p: &Policy) -> Vec<(String, Vec<u32>)> {
    p.params()
        .vars()
        .into_iter()
        .map(|(n, v)| {
            let bits = v
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .into_iter()
                .map(f32::to_bits)
                .collect();
            (n, bits)
        })
        .collect()
}

/// An RL run stopped after step 3 (as a signal would: a checkpoint is written) and resumed
/// ends with bit-identical weights to the uninterrupted run, and the same log; a resume with
/// another β is refused.
#[test]
fn rl_resume_after_an_interruption_is_exact() {
    let prompts = prompts();
    let c = RlConfig {
        save_every: 2,
        ..config(0.05, 6)
    };
    let dir = tempfile::tempdir().unwrap();
    let go = |out: &std::path::Path, start: Start, stop_at: Option<usize>| {
        let p = policy(4);
        let reference = policy(4);
        let mut reward = FnReward::new("share-of-a", share_of_a);
        let run = RlRun {
            prompts: &prompts,
            eval_prompts: &[],
            out: Some(out),
            start,
            stop: None,
        };
        let summary = rl(&p, &reference, &c, &run, &mut reward, None, |e| match e {
            Event::Step(s) if Some(s.step) == stop_at => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .unwrap();
        (p, summary)
    };
    let (whole, _) = go(&dir.path().join("whole"), Start::Fresh, None);
    let cut = dir.path().join("cut");
    let (_, first) = go(&cut, Start::Fresh, Some(3));
    assert_eq!(first.steps, 3);
    assert_eq!(first.stop, rewardkit_rl::StopReason::Interrupted);
    assert!(cut.join("checkpoint-3").join("trainer_state.json").exists());
    let (resumed, second) = go(&cut, Start::Resume, None);
    assert_eq!((second.resumed_at, second.steps), (3, 6));
    assert_eq!(weights(&resumed), weights(&whole));
    let log = |d: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for k in ["generate_s", "score_s", "update_s", "elapsed_s"] {
                    v.as_object_mut().unwrap().remove(k);
                }
                v
            })
            .collect()
    };
    assert_eq!(log(&cut), log(&dir.path().join("whole")));
    assert!(cut.join("final").join("model.safetensors").exists());
    // Another β is another run.
    let p = policy(4);
    let mut reward = FnReward::new("share-of-a", share_of_a);
    let run = RlRun {
        prompts: &prompts,
        eval_prompts: &[],
        out: Some(&cut),
        start: Start::Resume,
        stop: None,
    };
    let other = RlConfig { beta: 0.5, ..c };
    let err = rl(
        &p,
        &p.snapshot().unwrap(),
        &other,
        &run,
        &mut reward,
        None,
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(err.is_usage() && err.to_string().contains("beta"), "{err}");
}

/// SFT teaches a response: the loss falls, and afterwards greedy decoding gives the response;
/// an SFT run cut after step 4 and resumed ends bit-identical to the uninterrupted run.
#[test]
fn sft_learns_the_responses_and_resumes_exactly() {
    let rows: Vec<SftRow> = [("x y ?", "a b c"), ("z ?", "d e"), ("h ?", "f")]
        .iter()
        .map(|(p, r)| SftRow {
            prompt: p.to_string(),
            response: r.to_string(),
        })
        .collect();
    let config = SftConfig {
        batch_size: 2,
        max_steps: Some(60),
        optim: OptimConfig {
            learning_rate: 0.02,
            ..SftConfig::default().optim
        },
        save_every: 10,
        seed: 0,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let go = |out: &std::path::Path, start: Start, stop_at: Option<usize>| {
        let p = policy(9);
        let mut losses = Vec::new();
        let run = SftRun {
            rows: &rows,
            out: Some(out),
            start,
            stop: None,
        };
        let summary = sft(&p, &config, &run, |e| match e {
            Event::Step(s) => {
                losses.push(s.loss);
                if Some(s.step) == stop_at {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
            _ => ControlFlow::Continue(()),
        })
        .unwrap();
        (p, summary, losses)
    };
    let (whole, summary, losses) = go(&dir.path().join("whole"), Start::Fresh, None);
    assert_eq!(summary.steps, 60);
    println!("SFT loss {:.3} → {:.3}", losses[0], losses[59]);
    assert!(
        losses[0] > 2.0 && losses[59] < 0.1,
        "{} → {}",
        losses[0],
        losses[59]
    );
    let greedy = rewardkit_model::GenerationConfig {
        temperature: 0.0,
        max_new_tokens: 5,
        ..Default::default()
    };
    let prompts: Vec<String> = rows.iter().map(|r| r.prompt.clone()).collect();
    let samples = whole.generate(&prompts, 1, &greedy, &mut |_| {}).unwrap();
    for (s, row) in samples.iter().zip(&rows) {
        assert!(s.finished, "ends with EOS");
        assert_eq!(s.text, row.response);
    }
    let cut = dir.path().join("cut");
    let (_, first, _) = go(&cut, Start::Fresh, Some(4));
    assert!(first.interrupted && first.final_dir.is_none());
    let (resumed, second, _) = go(&cut, Start::Resume, None);
    assert_eq!((second.resumed_at, second.steps), (4, 60));
    assert_eq!(weights(&resumed), weights(&whole));
    // The saved final model is the trained policy.
    let back = Policy::from_dir(&cut.join("final")).unwrap();
    assert_eq!(weights(&back), weights(&whole));
}

/// The stepwise session: samples come back with their scores and prompt indices, and the
/// reward can change between steps.
#[test]
fn a_session_steps_with_a_reward_that_changes() {
    let p = policy(6);
    let reference = p.snapshot().unwrap();
    let prompts = prompts();
    let mut session = RlSession::new(&p, &reference, &config(0.1, 100)).unwrap();
    let mut first = FnReward::new("share-of-a", share_of_a);
    let out = session.step(&prompts, &mut first, None).unwrap();
    assert_eq!(out.samples.len(), 16);
    assert!(out.samples.iter().all(|s| s.prompt_index < prompts.len()));
    let expected = share_of_a(
        &out.samples
            .iter()
            .map(|s| Completion {
                prompt_index: s.prompt_index,
                prompt: &prompts[s.prompt_index].prompt,
                response: &s.text,
                finished: s.finished,
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let got: Vec<f64> = out.samples.iter().map(|s| s.score).collect();
    assert_eq!(got, expected);
    let mut constant = FnReward::new("one", |rows: &[Completion]| Ok(vec![1.0; rows.len()]));
    let mut gold = FnReward::new("gold", |rows: &[Completion]| Ok(vec![0.5; rows.len()]));
    let out = session
        .step(&prompts, &mut constant, Some(&mut gold))
        .unwrap();
    assert_eq!(out.log.step, 2);
    assert_eq!((out.log.proxy_mean, out.log.gold), (1.0, Some(0.5)));
    assert_eq!(session.steps_done(), 2);
    // A reward that answers with the wrong count is an error naming it.
    let mut short = FnReward::new("short", |_: &[Completion]| Ok(vec![1.0]));
    let err = session.step(&prompts, &mut short, None).unwrap_err();
    assert!(err.to_string().contains("short"), "{err}");
}
