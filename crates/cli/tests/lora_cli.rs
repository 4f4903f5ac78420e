//! LoRA through the real binary: `train --lora-rank 4` on the tiny Llama reward model writes
//! PEFT's files (and no full weights) in its checkpoints and `final/`, resumes from them to the
//! same final adapter, and
//! `lora merge` turns the adapter into a plain model folder; `rl --lora-rank 4` on a tiny GPT-2
//! runs with the reference being the policy with its adapters off: the KL of step 1 (sampled
//! before any update) is exactly 0, and later steps' is not (the adapters moved, the reference
//! did not).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use common::{data, model_dir, models, ok, run};

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn s(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn train_with_lora_writes_peft_files_resumes_and_merges() {
    let model = model_dir("tiny-llama-rm", None);
    let d = tempfile::tempdir().unwrap();
    let train = d.path().join("train.jsonl");
    data(&train, 24, 5);
    let out = d.path().join("run");
    let args = |steps: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "train",
            "--model",
            &s(model.path()),
            "--data",
            &s(&train),
            "--eval-fraction",
            "0.2",
            "--out",
            &s(&out),
            "--max-steps",
            steps,
            "--batch-size",
            "4",
            "--lr",
            "1e-2",
            "--save-every",
            "2",
            "--lora-rank",
            "4",
            "--lora-targets",
            "q_proj,v_proj,o_proj",
            "--threads",
            "1",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let a = args("4", &[]);
    ok(run(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    let fin = out.join("final");
    let whole = std::fs::read(fin.join("adapter_model.safetensors")).unwrap();
    // As if killed after checkpoint-2: resuming from its adapter gives the same final adapter.
    std::fs::remove_dir_all(&fin).unwrap();
    std::fs::remove_dir_all(out.join("checkpoint-4")).unwrap();
    assert!(out.join("checkpoint-2/adapter_model.safetensors").exists());
    let a = args("4", &["--resume"]);
    ok(run(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    let resumed = std::fs::read(fin.join("adapter_model.safetensors")).unwrap();
    assert!(whole == resumed, "resume gave other adapter weights");
    assert!(!fin.join("model.safetensors").exists());
    let config = read_json(&fin.join("adapter_config.json"));
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "SEQ_CLS");
    assert_eq!(config["r"], 4);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "o_proj"])
    );
    assert_eq!(config["modules_to_save"], serde_json::json!(["score"]));
    let meta = read_json(&fin.join("rewardkit.json"));
    assert_eq!(meta["run"]["lora"]["r"], 4);
    let weights = candle_core::safetensors::load(
        fin.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    // 2 layers × 3 modules × (A, B), and the head.
    assert_eq!(weights.len(), 2 * 3 * 2 + 1);
    assert!(weights.contains_key("base_model.model.score.weight"));

    let merged = d.path().join("merged");
    ok(run(&["lora", "merge", &s(&fin), "--out", &s(&merged)]));
    assert!(merged.join("model.safetensors").exists());
    assert!(!merged.join("adapter_config.json").exists());
    let rows = d.path().join("rows.jsonl");
    std::fs::write(&rows, "{\"prompt\": \"a b\", \"response\": \"c d\"}\n").unwrap();
    let score = |m: &std::path::Path| -> f64 {
        let o = ok(run(&["score", "--model", &s(m), "--input", &s(&rows)]));
        let line = String::from_utf8(o.stdout).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        v["score"].as_f64().unwrap()
    };
    let (a, b) = (score(&fin), score(&merged));
    assert!((a - b).abs() < 1e-5, "adapter {a} vs merged {b}");
}

#[test]
fn rl_with_lora_uses_the_adapters_off_policy_as_reference() {
    let model = model_dir("tiny-gpt2", Some("t2"));
    let d = tempfile::tempdir().unwrap();
    let prompts = d.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"t20 t21\"}\n{\"prompt\": \"t40\"}\n",
    )
    .unwrap();
    let out = d.path().join("rl");
    let rm = models().join("tiny-llama-rm");
    ok(run(&[
        "rl",
        "--model",
        &s(model.path()),
        "--prompts",
        &s(&prompts),
        "--reward-model",
        &s(&rm),
        "--out",
        &s(&out),
        "--max-steps",
        "4",
        "--prompts-per-step",
        "2",
        "--samples-per-prompt",
        "2",
        "--max-new-tokens",
        "4",
        "--lr",
        "5e-2",
        "--lora-rank",
        "4",
        "--threads",
        "1",
    ]));
    let log: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(log.len(), 4);
    assert_eq!(log[0]["kl"].as_f64().unwrap(), 0.0, "{:?}", log[0]);
    let later: f64 = log[1..]
        .iter()
        .map(|l| l["kl"].as_f64().unwrap().abs())
        .sum();
    assert!(
        later > 0.0,
        "the reference moved with the adapters: {log:?}"
    );
    let config = read_json(&out.join("final/adapter_config.json"));
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(config["target_modules"], serde_json::json!(["c_attn"]));
    assert_eq!(config["fan_in_fan_out"], true);
}
