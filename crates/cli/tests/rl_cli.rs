//! `rewardkit sft` then `rewardkit rl` on a tiny GPT-2 (the tiny-gpt2 fixture with its tied LM
//! head), the real binary end to end: the SFT loss falls, RL writes its per-step log and a
//! final policy, a resume with other settings is refused, and `--help` names every option.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use common::{jsonl, model_dir, models, ok, run};

#[test]
fn sft_then_rl_on_a_tiny_decoder() {
    let model = model_dir("tiny-gpt2", Some("t2"));
    let d = tempfile::tempdir().unwrap();
    let rows = d.path().join("rows.jsonl");
    let mut text = String::new();
    for i in 0..6 {
        let row =
            serde_json::json!({"prompt": format!("t{} t21", 20 + i), "response": "t30 t31 t32"});
        text.push_str(&format!("{row}\n"));
    }
    std::fs::write(&rows, text).unwrap();
    let sft = d.path().join("sft");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    ok(run(&[
        "sft",
        "--model",
        &s(model.path()),
        "--data",
        &s(&rows),
        "--out",
        &s(&sft),
        "--max-steps",
        "8",
        "--batch-size",
        "3",
        "--lr",
        "3e-3",
        "--threads",
        "1",
    ]));
    let log = jsonl(&sft.join("metrics.jsonl"));
    assert_eq!(log.len(), 8);
    let loss = |i: usize| log[i]["loss"].as_f64().unwrap();
    assert!(
        loss(7) < loss(0) - 0.5,
        "SFT loss {} → {}",
        loss(0),
        loss(7)
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sft.join("final/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "GPT2LMHeadModel");

    let prompts = d.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"t20 t21\"}\n{\"prompt\": \"t40\", \"id\": 7}\n",
    )
    .unwrap();
    let rm = models().join("tiny-llama-rm");
    let out = d.path().join("rl");
    let rl_args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "rl",
            "--model",
            &s(&sft.join("final")),
            "--prompts",
            &s(&prompts),
            "--reward-model",
            &s(&rm),
            "--gold-model",
            &s(&rm),
            "--out",
            &s(&out),
            "--max-steps",
            "3",
            "--prompts-per-step",
            "2",
            "--samples-per-prompt",
            "2",
            "--max-new-tokens",
            "4",
            "--lr",
            "1e-3",
            "--threads",
            "1",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let args = rl_args(&["--json"]);
    let o = ok(run(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["steps"], 3);
    assert_eq!(summary["stop"], "max_steps");
    let log = jsonl(&out.join("metrics.jsonl"));
    assert_eq!(log.len(), 3);
    for (i, l) in log.iter().enumerate() {
        assert_eq!(l["kind"], "rl");
        assert_eq!(l["step"], i + 1);
        for f in [
            "proxy_mean",
            "proxy_std",
            "kl",
            "sqrt_kl",
            "entropy",
            "response_length",
            "clip_fraction",
            "gold",
        ] {
            assert!(l[f].as_f64().is_some_and(f64::is_finite), "{f}: {l}");
        }
        // Gold is the same model as the proxy here: the same mean.
        assert!((l["gold"].as_f64().unwrap() - l["proxy_mean"].as_f64().unwrap()).abs() < 1e-9);
    }
    assert_eq!(
        log[0]["kl"], 0.0,
        "the first samples come from the reference itself"
    );
    assert!(out.join("final/model.safetensors").exists());
    // A config file with the same settings gives the same run as the flags (timings aside).
    let toml = d.path().join("rl.toml");
    std::fs::write(
        &toml,
        format!(
            "model = {:?}\nprompts = [{:?}]\nreward_models = [{:?}]\ngold_model = {:?}\n\
             out = {:?}\n[rl]\nmax_steps = 3\nprompts_per_step = 2\nsamples_per_prompt = 2\n\
             max_new_tokens = 4\n[rl.optim]\nlearning_rate = 1e-3\n",
            s(&sft.join("final")),
            s(&prompts),
            s(&rm),
            s(&rm),
            s(&d.path().join("rl-config"))
        ),
    )
    .unwrap();
    ok(run(&["rl", "--config", &s(&toml), "--threads", "1"]));
    let strip = |mut v: Vec<serde_json::Value>| {
        for l in &mut v {
            for k in ["generate_s", "score_s", "update_s", "elapsed_s"] {
                l.as_object_mut().unwrap().remove(k);
            }
        }
        v
    };
    assert_eq!(
        strip(jsonl(&d.path().join("rl-config/metrics.jsonl"))),
        strip(log.clone())
    );
    // A resume with another β belongs to another run: refused, exit 2, nothing touched.
    let args = rl_args(&["--resume", "--beta", "0.5"]);
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("beta"),
        "{}",
        common::stderr(&o)
    );
    // Held-out prompts: evaluated before steps 1 and 3 and at the end, 2 × 3 samples each;
    // gold and the proxy are the same model here, so they agree.
    let held_out = d.path().join("held-out.jsonl");
    std::fs::write(
        &held_out,
        "{\"prompt\": \"t30\"}\n{\"prompt\": \"t31 t32\"}\n",
    )
    .unwrap();
    let eval_out = d.path().join("rl-eval");
    let mut args = rl_args(&[
        "--eval-prompts",
        &s(&held_out),
        "--eval-every",
        "2",
        "--eval-samples-per-prompt",
        "3",
    ]);
    let at = args.iter().position(|a| a == "--out").unwrap();
    args[at + 1] = s(&eval_out);
    ok(run(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let log = jsonl(&eval_out.join("metrics.jsonl"));
    assert_eq!(log.len(), 4, "three steps and the final evaluation");
    let evals: Vec<&serde_json::Value> = log
        .iter()
        .filter_map(|l| match l["kind"].as_str() {
            Some("rl") => l.get("eval").filter(|e| !e.is_null()),
            _ => Some(l),
        })
        .collect();
    assert_eq!(evals.len(), 3, "{log:?}");
    for (e, updates) in evals.iter().zip([0, 2, 3]) {
        assert_eq!(e["updates"], updates, "{e}");
        assert_eq!(e["samples"], 6, "{e}");
        assert!((e["gold"].as_f64().unwrap() - e["proxy"].as_f64().unwrap()).abs() < 1e-9);
        assert!(e["gold_se"].as_f64().is_some_and(|x| x >= 0.0), "{e}");
    }
    assert_eq!(log[3]["kind"], "rl_eval");
    // Held-out prompts without a gold function: a bad command line.
    let mut args = rl_args(&["--eval-prompts", &s(&held_out), "--overwrite"]);
    let at = args.iter().position(|a| a == "--gold-model").unwrap();
    args.drain(at..at + 2);
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("gold"),
        "{}",
        common::stderr(&o)
    );
    // Two reward models without a rule is a bad command line.
    let args = rl_args(&["--reward-model", &s(&rm), "--overwrite"]);
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
}

#[test]
fn help_documents_every_option() {
    let help = String::from_utf8(ok(run(&["rl", "--help"])).stdout).unwrap();
    for flag in [
        "--model",
        "--reference",
        "--prompts",
        "--raw-prompts",
        "--reward-model",
        "--reward-baseline",
        "--reward-url",
        "--reward-api-key",
        "REWARDKIT_API_KEY",
        "Retry-After",
        "--combine",
        "--lambda",
        "--gold-gsm8k",
        "--gold-model",
        "--eval-prompts",
        "--eval-every",
        "--eval-samples-per-prompt",
        "--out",
        "--resume",
        "--resume-or-start",
        "--overwrite",
        "--prompts-per-step",
        "--samples-per-prompt",
        "--max-new-tokens",
        "--temperature",
        "--top-p",
        "--beta",
        "--kl-estimator",
        "--group-std",
        "--ppo-epochs",
        "--minibatches",
        "--clip-range",
        "--whiten-rewards",
        "--reward-clip",
        "--max-steps",
        "--target-kl",
        "--lr",
        "--weight-decay",
        "--warmup-steps",
        "--warmup-ratio",
        "--schedule",
        "--max-grad-norm",
        "--seed",
        "--save-every",
        "--config",
        "--json",
        "k1-in-reward",
        "k3-in-loss",
    ] {
        assert!(help.contains(flag), "rl --help lacks {flag}");
    }
    let help = String::from_utf8(ok(run(&["sft", "--help"])).stdout).unwrap();
    for flag in [
        "--model",
        "--data",
        "--out",
        "--batch-size",
        "--epochs",
        "--max-steps",
        "--max-length",
        "--lr",
        "--resume",
        "--config",
    ] {
        assert!(help.contains(flag), "sft --help lacks {flag}");
    }
}
