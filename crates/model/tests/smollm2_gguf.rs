//! SmolLM2-135M-Instruct (Q4_1 GGUF, fetched by `scripts/fetch-models.sh`): the tokenizer rebuilt
//! from the GGUF metadata, the HF config and tensors, against
//! `../shared/models/smollm2-reference.json` (transformers on the dequantised weights).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use rewardkit_model::{llama::Llama, ArchConfig, GgufFile, Mode};
use rewardkit_tokenize::InputStyle;

fn gguf_path() -> PathBuf {
    common::real_model("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn reference() -> serde_json::Value {
    common::read_json(&common::shared_models().join("smollm2-reference.json"))
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokenizer_from_metadata_gives_the_reference_ids() {
    let gguf = GgufFile::open(&gguf_path()).unwrap();
    let tok = gguf.tokenizer().unwrap();
    let refs = reference();
    for r in refs["refs"].as_array().unwrap() {
        let prompt = r["prompt"].as_str().unwrap();
        let enc = tok.tokenizer.encode(prompt, true).unwrap();
        assert_eq!(enc.get_ids(), ids(&r["input_ids"]), "prompt {prompt:?}");
        // Decoding gives the prompt back, special tokens included.
        assert_eq!(tok.tokenizer.decode(enc.get_ids(), false).unwrap(), prompt);
    }
    assert_eq!(tok.eos_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(tok.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(tok.pad_token.as_deref(), Some("<|im_end|>"));
    let template = tok.chat_template.as_deref().unwrap();
    assert!(template.contains("<|im_start|>"), "{template}");
    // The reward-model wrapper picks up EOS and padding from the file.
    let rt = tok.reward_tokenizer(InputStyle::Sequence).unwrap();
    assert_eq!(rt.eos_id(), Some(2));
    assert_eq!(rt.pad_id(), 2);
    // Digits are split one by one (SmolLM2's `Digits(individual_digits)` pre-tokenizer).
    let digits = tok.tokenizer.encode("x 2024", false).unwrap();
    assert_eq!(digits.get_tokens(), ["x", "Ġ", "2", "0", "2", "4"]);
}

#[test]
fn config_from_metadata() {
    let gguf = GgufFile::open(&gguf_path()).unwrap();
    let c = gguf.config_json().unwrap();
    assert_eq!(c["model_type"], "llama");
    assert_eq!(c["vocab_size"], 49152);
    assert_eq!(c["hidden_size"], 576);
    assert_eq!(c["intermediate_size"], 1536);
    assert_eq!(c["num_hidden_layers"], 30);
    assert_eq!(c["num_attention_heads"], 9);
    assert_eq!(c["num_key_value_heads"], 3);
    assert_eq!(c["head_dim"], 64);
    assert_eq!(c["rms_norm_eps"], 1e-5);
    assert_eq!(c["rope_theta"], 100000.0);
    assert_eq!(c["max_position_embeddings"], 8192);
    assert_eq!(c["tie_word_embeddings"], true);
}

#[test]
fn tensors_have_hf_names_and_shapes() {
    let gguf = GgufFile::open(&gguf_path()).unwrap();
    let tensors = gguf.tensors(&Device::Cpu).unwrap();
    assert_eq!(tensors.len(), 2 + 30 * 9);
    let shape = |n: &str| tensors[n].dims().to_vec();
    assert_eq!(shape("model.embed_tokens.weight"), [49152, 576]);
    assert_eq!(shape("model.norm.weight"), [576]);
    assert_eq!(shape("model.layers.0.self_attn.q_proj.weight"), [576, 576]);
    assert_eq!(shape("model.layers.29.self_attn.k_proj.weight"), [192, 576]);
    assert_eq!(shape("model.layers.29.self_attn.v_proj.weight"), [192, 576]);
    assert_eq!(shape("model.layers.7.self_attn.o_proj.weight"), [576, 576]);
    assert_eq!(shape("model.layers.7.mlp.gate_proj.weight"), [1536, 576]);
    assert_eq!(shape("model.layers.7.mlp.up_proj.weight"), [1536, 576]);
    assert_eq!(shape("model.layers.7.mlp.down_proj.weight"), [576, 1536]);
    assert_eq!(shape("model.layers.7.input_layernorm.weight"), [576]);
    assert_eq!(
        shape("model.layers.7.post_attention_layernorm.weight"),
        [576]
    );
    assert!(!tensors.contains_key("lm_head.weight"));
}

/// The Llama backbone on the dequantised GGUF weights against transformers: the final hidden
/// state, the top-5 next tokens and the greedy continuation of both reference prompts.
#[test]
fn llama_forward_matches_transformers() {
    let gguf = GgufFile::open(&gguf_path()).unwrap();
    let ArchConfig::Llama(config) = gguf.arch_config().unwrap() else {
        panic!("SmolLM2 is a Llama")
    };
    assert!(config.tie_word_embeddings);
    let dev = Device::Cpu;
    let store = gguf.param_store(0, &dev).unwrap();
    let model = Llama::new(store.var_builder().pp("model"), &config, None).unwrap();
    assert!(
        store.initialised().is_empty(),
        "missing weights: {:?}",
        store.initialised()
    );
    assert!(
        store.unused().is_empty(),
        "unused weights: {:?}",
        store.unused()
    );
    let tok = gguf.tokenizer().unwrap();
    let eos = tok
        .tokenizer
        .token_to_id(tok.eos_token.as_deref().unwrap())
        .unwrap();

    // Hidden state after the final norm and logits at the last position.
    let last = |ids: &[u32]| -> (Vec<f32>, Vec<f32>) {
        let n = ids.len();
        let t = Tensor::from_slice(ids, (1, n), &dev).unwrap();
        let mask = Tensor::ones((1, n), DType::U32, &dev).unwrap();
        let hidden = model.forward(&t, &mask, Mode::Eval).unwrap();
        let h = hidden.get(0).unwrap().get(n - 1).unwrap();
        let logits = model.logits(&h).unwrap();
        (h.to_vec1().unwrap(), logits.to_vec1().unwrap())
    };
    let argsort = |v: &[f32]| {
        let mut idx: Vec<u32> = (0..v.len() as u32).collect();
        idx.sort_by(|&a, &b| v[b as usize].total_cmp(&v[a as usize]));
        idx
    };

    for r in reference()["refs"].as_array().unwrap() {
        let prompt = r["prompt"].as_str().unwrap();
        let prompt_ids = ids(&r["input_ids"]);
        let (hidden, logits) = last(&prompt_ids);

        let want_hidden: Vec<f64> = r["final_hidden_last_token_first16"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let hidden_diff = want_hidden
            .iter()
            .zip(&hidden)
            .map(|(w, g)| (*g as f64 - w).abs() / w.abs().max(1.0))
            .fold(0.0, f64::max);

        let top5 = &argsort(&logits)[..5];
        assert_eq!(top5, ids(&r["top5_ids"]), "top-5 next tokens of {prompt:?}");
        let logit_diff = r["top5_logits"]
            .as_array()
            .unwrap()
            .iter()
            .zip(top5)
            .map(|(w, &i)| (logits[i as usize] as f64 - w.as_f64().unwrap()).abs())
            .fold(0.0, f64::max);

        // Greedy decoding, 8 new tokens at most, stopping after EOS (as `generate` does).
        let mut seq = prompt_ids.clone();
        for _ in 0..8 {
            let next = argsort(&last(&seq).1)[0];
            seq.push(next);
            if next == eos {
                break;
            }
        }
        let continuation = tok
            .tokenizer
            .decode(&seq[prompt_ids.len()..], false)
            .unwrap();
        eprintln!(
            "{prompt:?}: max rel |hidden diff| = {hidden_diff:.2e}, max |top-5 logit diff| = \
             {logit_diff:.2e}, continuation {continuation:?}"
        );
        assert!(
            hidden_diff < 1e-3,
            "hidden state of {prompt:?}: {hidden_diff}"
        );
        assert!(
            logit_diff < 1e-2,
            "top-5 logits of {prompt:?}: {logit_diff}"
        );
        assert_eq!(continuation, r["greedy_8_tokens"].as_str().unwrap());
    }
}
