//! LoRA adapters: with `B = 0` a model's outputs are the base model's exactly (tiny Llama
//! policy, tiny Llama reward model, all-MiniLM-L6-v2 with its real weights); only adapters and
//! the value head are trainable and change in a step; save → load gives identical outputs;
//! merging gives the adapter model's outputs to 1e-5 (Llama and GPT-2's `Conv1D`); the files are
//! PEFT's (key names as `get_peft_model_state_dict` writes them for `LlamaForCausalLM` with
//! `target_modules=["q_proj", "v_proj"]`, `adapter_config.json` fields as `LoraConfig`'s); the
//! reference (adapters off) is the base model; an adapter whose base is missing is refused.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use candle_core::{Device, Tensor};
use rewardkit_data::Text;
use rewardkit_model::{
    checkpoint, word_level_tokenizer, InitMissing, LoadOptions, LoraConfig, Mode, ParamStore,
    Policy,
};

fn lora(r: usize, targets: &[&str]) -> LoraConfig {
    LoraConfig {
        r,
        lora_alpha: 8.0,
        lora_dropout: 0.0,
        target_modules: targets.iter().map(|s| s.to_string()).collect(),
    }
}

/// A policy over a fixture's weights (tiny-llama: 2 layers, hidden 64, vocab 1000; its LM head
/// is seeded, the fixture being a `LlamaModel`), saved as a full folder to act as a base.
fn base_policy(fixture: &str, dir: &std::path::Path) -> Policy {
    let (config, store) = common::fixture(fixture);
    let tok = word_level_tokenizer(&["a", "b", "c"], &["</s>"]).unwrap();
    let policy = Policy::new(&config, store, tok, vec![3], None).unwrap();
    policy.trainable().unwrap();
    policy.save(dir).unwrap();
    Policy::from_dir(dir).unwrap()
}

/// Logits of the policy's sampling model on two fixed rows (the second right-padded).
fn logits(policy: &Policy) -> Vec<f32> {
    let ids = Tensor::new(
        &[[5u32, 17, 256, 3, 999, 42], [7, 8, 9, 10, 0, 0]],
        &Device::Cpu,
    )
    .unwrap();
    let mask = Tensor::new(&[[1u32, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], &Device::Cpu).unwrap();
    let lm = policy.model();
    let h = lm.forward(&ids, &mask, Mode::Eval).unwrap();
    lm.logits(&h)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Sets every `lora_B` to seeded noise, so the adapters change the outputs.
fn perturb_b(store: &ParamStore) {
    let mut rng = rewardkit_model::Rng::new(7);
    for (name, var) in store.vars() {
        if name.contains(".lora_B.") {
            let v: Vec<f32> = (0..var.elem_count())
                .map(|_| 0.5 * rng.normal() as f32)
                .collect();
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
}

#[test]
fn zero_b_llama_policy_equals_the_base_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base_policy("tiny-llama", tmp.path());
    let before = logits(&base);
    let policy = base.with_lora(&lora(4, &[]), tmp.path()).unwrap();
    // PEFT's default for Llama: q_proj and v_proj; 2 layers × 2 modules × (A, B).
    let names: Vec<String> = policy.params().vars().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names.iter().all(|n| n.contains(".lora_")), "{names:?}");
    assert_eq!(max_diff(&before, &logits(&policy)), 0.0);
    perturb_b(policy.params());
    assert!(
        max_diff(&before, &logits(&policy)) > 1e-3,
        "the adapters do nothing"
    );
}

#[test]
fn zero_b_minilm_reward_model_equals_the_base_exactly() {
    let dir = common::real_model("minilm");
    let options = LoadOptions {
        init_missing: InitMissing::ValueHead,
        seed: 3,
        ..Default::default()
    };
    let base = checkpoint::load(&dir, &options, &Device::Cpu).unwrap();
    let texts = ["The capital of France is Paris.", "Two plus two is five."];
    let inputs: Vec<_> = texts
        .iter()
        .map(|t| {
            base.encode(&Text::Plain("Q".into()), &Text::Plain(t.to_string()))
                .unwrap()
        })
        .collect();
    let want = base.score_encoded(&inputs, 2).unwrap();
    let model = base.with_lora(&lora(8, &[]), &dir).unwrap();
    let got = model.score_encoded(&inputs, 2).unwrap();
    assert_eq!(want, got, "B = 0 must leave the scores unchanged");
    let names: Vec<String> = model
        .model
        .params()
        .vars()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    // query and value of 6 layers × (A, B), and the classifier's weight and bias.
    assert_eq!(names.len(), 6 * 2 * 2 + 2, "{names:?}");
    assert!(names.contains(&"classifier.weight".to_string()));
    assert!(names.contains(&"bert.encoder.layer.5.attention.self.value.lora_B.weight".to_string()));
}

#[test]
fn only_adapters_and_head_get_gradients_and_change() {
    let dir = common::shared_models().join("tiny-llama-rm");
    let loaded = checkpoint::load(&dir, &LoadOptions::default(), &Device::Cpu).unwrap();
    let model = loaded
        .with_lora(&lora(4, &["q_proj", "v_proj", "down_proj"]), &dir)
        .unwrap();
    let store = model.model.params().clone();
    // Words of the tiny model's vocabulary (`t0` … `t999`): unknown words would all be the same
    // token, whose equal values give the queries no gradient but rounding noise.
    let enc = model
        .encode(
            &Text::Plain("t17 t305 t42".into()),
            &Text::Plain("t9 t871".into()),
        )
        .unwrap();
    let batch = rewardkit_tokenize::pad_batch(&[&enc], 0, rewardkit_tokenize::PaddingSide::Right);
    // A frozen base weight (not a target): a plain tensor shared with the model.
    let frozen = "model.layers.0.mlp.up_proj.weight";
    let base_weight = store.merged_tensors().unwrap().remove(frozen).unwrap();
    let base_copy = base_weight.copy().unwrap();
    let loss = model
        .model
        .forward(&batch, Mode::Train { seed: 1, step: 0 })
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in store.vars() {
        assert!(
            name.contains(".lora_") || name.starts_with("score."),
            "trainable base weight {name}"
        );
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
        // dL/dA = 0 while B = 0 (the product's other factor); B and the head get a signal.
        if !name.contains(".lora_A.") {
            assert!(norm > 0.0, "zero gradient for {name}");
        }
    }
    // The base weight is a plain tensor: no gradient is computed for it.
    assert!(grads.get(&base_weight).is_none());
    // One SGD step: the adapters change, the base does not.
    let before = model.score_encoded(std::slice::from_ref(&enc), 1).unwrap();
    for (_, var) in store.vars() {
        if let Some(g) = grads.get(var.as_tensor()) {
            var.set(&(var.as_tensor() - (g * 0.1).unwrap()).unwrap())
                .unwrap();
        }
    }
    let after = model.score_encoded(std::slice::from_ref(&enc), 1).unwrap();
    assert_ne!(before, after);
    let still = store.merged_tensors().unwrap().remove(frozen).unwrap();
    let flat = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let moved = max_diff(&flat(&still), &flat(&base_copy));
    assert_eq!(moved, 0.0, "a frozen base weight changed");
}

#[test]
fn policy_adapter_saves_in_peft_layout_and_loads_back_identically() {
    let base_dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let policy = base_policy("tiny-llama", base_dir.path())
        .with_lora(&lora(4, &["q_proj", "v_proj"]), base_dir.path())
        .unwrap();
    perturb_b(policy.params());
    let want = logits(&policy);
    policy.save(out.path()).unwrap();
    assert!(!out.path().join("model.safetensors").exists());

    // Keys as PEFT's `get_peft_model_state_dict` writes them for a LlamaForCausalLM
    // (`base_model.model.` + module path + `.lora_A.weight`, adapter name removed).
    let saved =
        candle_core::safetensors::load(out.path().join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    let mut keys: Vec<(String, Vec<usize>)> = saved
        .iter()
        .map(|(k, t)| (k.clone(), t.dims().to_vec()))
        .collect();
    keys.sort();
    let mut want_keys = Vec::new();
    for layer in 0..2 {
        for m in ["q_proj", "v_proj"] {
            let p = format!("base_model.model.model.layers.{layer}.self_attn.{m}");
            want_keys.push((format!("{p}.lora_A.weight"), vec![4, 64]));
            // v_proj's output is the K/V width: 2 KV heads × head_dim 16.
            let out = if m == "q_proj" { 64 } else { 32 };
            want_keys.push((format!("{p}.lora_B.weight"), vec![out, 4]));
        }
    }
    want_keys.sort();
    assert_eq!(keys, want_keys);

    let config = common::read_json(&out.path().join("adapter_config.json"));
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 8.0);
    assert_eq!(config["lora_dropout"], 0.0);
    assert_eq!(config["bias"], "none");
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    assert_eq!(config["fan_in_fan_out"], false);
    assert_eq!(config["modules_to_save"], serde_json::Value::Null);
    let base = std::path::absolute(base_dir.path()).unwrap();
    assert_eq!(
        config["base_model_name_or_path"],
        base.display().to_string()
    );

    let back = Policy::from_dir(out.path()).unwrap();
    assert_eq!(max_diff(&want, &logits(&back)), 0.0);

    // Merged: plain weights whose outputs are the adapter model's (to 1e-5).
    let merged = back.merged().unwrap();
    assert!(merged.params().lora().is_none());
    let d = max_diff(&want, &logits(&merged));
    assert!(d < 1e-5, "merged differs by {d}");

    // The reference (adapters off) is the base model, sharing its weights.
    let reference = back.reference().unwrap();
    let plain = Policy::from_dir(base_dir.path()).unwrap();
    assert_eq!(max_diff(&logits(&plain), &logits(&reference)), 0.0);
    assert!(max_diff(&want, &logits(&reference)) > 1e-3);
}

#[test]
fn gpt2_conv1d_adapter_merges_to_the_same_outputs() {
    let base_dir = tempfile::tempdir().unwrap();
    let policy = base_policy("tiny-gpt2", base_dir.path())
        .with_lora(&lora(4, &["c_attn", "c_proj"]), base_dir.path())
        .unwrap();
    perturb_b(policy.params());
    let want = logits(&policy);
    let merged = policy.merged().unwrap();
    let d = max_diff(&want, &logits(&merged));
    assert!(d < 1e-5, "merged differs by {d}");
    assert!(max_diff(&want, &logits(&policy.reference().unwrap())) > 1e-3);
}

#[test]
fn reward_model_adapter_round_trip_and_missing_base_is_refused() {
    let dir = common::shared_models().join("tiny-llama-rm");
    let loaded = checkpoint::load(&dir, &LoadOptions::default(), &Device::Cpu).unwrap();
    let model = loaded.with_lora(&lora(2, &[]), &dir).unwrap();
    perturb_b(model.model.params());
    let enc = model
        .encode(
            &Text::Plain("a prompt".into()),
            &Text::Plain("a response".into()),
        )
        .unwrap();
    let want = model.score_encoded(std::slice::from_ref(&enc), 1).unwrap();
    let out = tempfile::tempdir().unwrap();
    checkpoint::save(&model, out.path(), serde_json::json!({})).unwrap();
    let config = common::read_json(&out.path().join("adapter_config.json"));
    assert_eq!(config["task_type"], "SEQ_CLS");
    assert_eq!(config["modules_to_save"], serde_json::json!(["score"]));
    let saved =
        candle_core::safetensors::load(out.path().join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    assert!(saved.contains_key("base_model.model.score.weight"));
    assert!(saved.contains_key("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"));
    assert_eq!(saved.len(), 2 * 2 * 2 + 1);

    let back = checkpoint::load(out.path(), &LoadOptions::default(), &Device::Cpu).unwrap();
    assert_eq!(
        back.score_encoded(std::slice::from_ref(&enc), 1).unwrap(),
        want
    );
    let merged = back.merged().unwrap();
    let m = merged.score_encoded(std::slice::from_ref(&enc), 1).unwrap();
    assert!((m[0] - want[0]).abs() < 1e-5, "{m:?} vs {want:?}");

    // The base named in adapter_config.json is gone: refused, saying so.
    let mut config = config;
    config["base_model_name_or_path"] = "/nonexistent/base".into();
    std::fs::write(
        out.path().join("adapter_config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let err = checkpoint::load(out.path(), &LoadOptions::default(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("base_model_name_or_path"), "{err}");
}
