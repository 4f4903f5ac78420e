//! The training path's log-probabilities (`CausalLm::response_logprobs`, batched and padded)
//! against the inference path's (`Policy::generate`'s `Sample::logprob_model` / `logprob` and
//! `Policy::sequence_logprob_ids`) on GPT-2, Llama (tied and untied) and SmolLM2-135M-Instruct
//! (GGUF, real weights); a finite-difference check of their gradient; save → load round trip.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use rewardkit_model::{
    word_level_tokenizer, ArchConfig, GenerationConfig, Mode, Policy, ResponseBatch,
};

const WORDS: [&str; 14] = [
    "?", "a", "b", "c", "d", "e", "f", "g", "h", "one", "two", "three", "four", ".",
];

fn tiny(kind: &str, tied: bool) -> ArchConfig {
    let vocab = WORDS.len() + 1;
    let json = match kind {
        "gpt2" => serde_json::json!({"model_type": "gpt2", "vocab_size": vocab, "n_embd": 16,
            "n_layer": 2, "n_head": 2, "n_positions": 64, "resid_pdrop": 0.0,
            "embd_pdrop": 0.0, "attn_pdrop": 0.0}),
        _ => serde_json::json!({"model_type": "llama", "vocab_size": vocab, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "tie_word_embeddings": tied,
            "initializer_range": 0.5}),
    };
    ArchConfig::from_json(&json.to_string()).unwrap()
}

/// A from-scratch decoder over the word vocabulary, EOS the special `</s>`. A large init
/// (Llama's 0.5) makes the distributions far from uniform, so equal log-probabilities mean
/// something.
fn tiny_policy(kind: &str, tied: bool, seed: u64) -> Policy {
    let tok = word_level_tokenizer(&WORDS, &["</s>"]).unwrap();
    let eos = tok.token_to_id("</s>").unwrap();
    Policy::from_scratch(&tiny(kind, tied), tok, eos, seed).unwrap()
}

/// Samples from `policy` (prompts of different lengths, so the batch pads both sides), then
/// the training path over the same tokens in one padded batch: per-row sums equal
/// `logprob_model` (temperature 1) and `logprob` (temperature 0.7, no top-p), and
/// `sequence_logprob_ids`, to 1e-4.
fn check_parity(policy: &Policy, prompts: &[&str]) {
    let prompts: Vec<String> = prompts.iter().map(|p| p.to_string()).collect();
    let lm = policy.trainable().unwrap();
    for temperature in [1.0, 0.7] {
        let config = GenerationConfig {
            max_new_tokens: 6,
            temperature,
            seed: 3,
            batch_size: 3,
            ..Default::default()
        };
        let samples = policy.generate(&prompts, 2, &config, &mut |_| {}).unwrap();
        let encoded: Vec<Vec<u32>> = prompts.iter().map(|p| policy.encode(p).unwrap()).collect();
        let rows: Vec<(&[u32], &[u32])> = samples
            .iter()
            .map(|s| (encoded[s.prompt_index].as_slice(), s.token_ids.as_slice()))
            .collect();
        let batch = ResponseBatch::new(
            &rows,
            policy.eos_ids()[0],
            policy.arch_config().hidden_size(),
            policy.device(),
        )
        .unwrap();
        assert!(batch.lengths.iter().min() < batch.lengths.iter().max() || rows.len() > 1);
        let out = lm
            .response_logprobs(&batch, Mode::Eval, temperature, true)
            .unwrap();
        let got: Vec<Vec<f32>> = out.logprobs.to_vec2().unwrap();
        for (s, row) in samples.iter().zip(&got) {
            let sum: f64 = row.iter().map(|&x| x as f64).sum();
            let want = if temperature == 1.0 {
                s.logprob_model
            } else {
                s.logprob
            };
            assert!(
                (sum - want).abs() < 1e-4,
                "T = {temperature}: training path {sum}, sampler {want}"
            );
            assert!(row[s.token_ids.len()..].iter().all(|&x| x == 0.0), "masked");
            if temperature == 1.0 {
                let direct = policy
                    .sequence_logprob_ids(&prompts[s.prompt_index], &s.token_ids)
                    .unwrap();
                assert!((sum - direct).abs() < 1e-4, "{sum} vs {direct}");
            }
        }
        let entropy: Vec<Vec<f32>> = out.entropy.unwrap().to_vec2().unwrap();
        let max_entropy = (policy.arch_config().hidden_size() as f32).max(1e9).ln();
        assert!(entropy
            .iter()
            .flatten()
            .all(|&h| (0.0..max_entropy).contains(&h)));
    }
}

#[test]
fn tiny_decoders_score_responses_as_the_sampler_does() {
    let prompts = ["a b c ?", "one ?", "d e f g h ?"];
    check_parity(&tiny_policy("gpt2", true, 1), &prompts);
    check_parity(&tiny_policy("llama", false, 2), &prompts);
    check_parity(&tiny_policy("llama", true, 3), &prompts);
}

#[test]
fn smollm2_gguf_scores_responses_as_the_sampler_does() {
    let policy = Policy::from_gguf(&common::real_model(
        "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ))
    .unwrap();
    let a = policy.format_prompt("What is 2 + 2?").unwrap();
    let b = policy.format_prompt("Name a colour.").unwrap();
    check_parity(&policy, &[&a, &b]);
}

/// ∂/∂θ of Σ log π(response | prompt) over a padded batch, by backprop, against central
/// differences of the same function, for the largest gradient entries of three tensors.
#[test]
fn response_logprob_gradients_match_finite_differences() {
    for (kind, tied) in [("llama", false), ("gpt2", true)] {
        let policy = tiny_policy(kind, tied, 7);
        let lm = policy.trainable().unwrap();
        let p1 = policy.encode("a b c ?").unwrap();
        let r1 = policy.encode("one two .").unwrap();
        let p2 = policy.encode("d ?").unwrap();
        let r2 = policy.encode("four").unwrap();
        let rows: Vec<(&[u32], &[u32])> = vec![(&p1, &r1), (&p2, &r2)];
        let batch = ResponseBatch::new(
            &rows,
            policy.eos_ids()[0],
            policy.arch_config().hidden_size(),
            policy.device(),
        )
        .unwrap();
        let f = || -> f64 {
            let lp = lm
                .response_logprobs(&batch, Mode::Eval, 1.0, false)
                .unwrap();
            lp.logprobs.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64
        };
        let loss = lm
            .response_logprobs(&batch, Mode::Eval, 1.0, false)
            .unwrap()
            .logprobs
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let vars = policy.params().vars();
        let mut checked = 0;
        for (name, var) in &vars {
            let wanted = name.contains("embed_tokens")
                || name.contains("wte")
                || name.contains("q_proj")
                || name.contains("c_attn.weight")
                || name.contains("down_proj")
                || name.contains("mlp.c_proj.weight");
            if !wanted {
                continue;
            }
            let g: Vec<f32> = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name} has no gradient"))
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let mut order: Vec<usize> = (0..g.len()).collect();
            order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
            let original = var.as_tensor().copy().unwrap();
            let values: Vec<f32> = original.flatten_all().unwrap().to_vec1().unwrap();
            for &i in order.iter().take(3) {
                let h = 1e-2f32;
                let set = |delta: f32| {
                    let mut v = values.clone();
                    v[i] += delta;
                    var.set(
                        &candle_core::Tensor::from_vec(v, original.shape(), original.device())
                            .unwrap(),
                    )
                    .unwrap();
                    f()
                };
                let numeric = (set(h) - set(-h)) / (2.0 * h as f64);
                var.set(&original).unwrap();
                let analytic = g[i] as f64;
                assert!(
                    (numeric - analytic).abs() < 2e-2 * analytic.abs().max(0.1),
                    "{kind} {name}[{i}]: backprop {analytic}, finite differences {numeric}"
                );
                checked += 1;
            }
        }
        assert_eq!(
            checked, 15,
            "{kind}: the embeddings and two tensors of each of 2 layers, three entries each"
        );
    }
}

/// The responses to one prompt after it, the two prompts' groups side by side in one row
/// without padding (`ResponseBatch::new`, an RL step's k samples), against a padded row per
/// response (`ResponseBatch::separate`): the per-token
/// log-probabilities and entropies agree to 1e-5 and every parameter's gradient to 1e-4 of its
/// largest, for Llama and GPT-2, and the shared rows compute fewer positions.
#[test]
fn responses_sharing_a_prompt_score_as_separate_rows() {
    for (kind, tied) in [("llama", false), ("gpt2", true)] {
        let policy = tiny_policy(kind, tied, 9);
        let lm = policy.trainable().unwrap();
        let enc = |t: &str| policy.encode(t).unwrap();
        let (p1, p2) = (enc("a b c d e ?"), enc("one ?"));
        let responses = [enc("one two ."), enc("four"), enc("a b c d"), enc("two .")];
        let rows: Vec<(&[u32], &[u32])> = vec![
            (&p1, &responses[0]),
            (&p2, &responses[3]),
            (&p1, &responses[1]),
            (&p1, &responses[2]),
            (&p2, &responses[0]),
        ];
        let pad = policy.eos_ids()[0];
        let hidden = policy.arch_config().hidden_size();
        let shared = ResponseBatch::new(&rows, pad, hidden, policy.device()).unwrap();
        let separate = ResponseBatch::separate(&rows, pad, policy.device()).unwrap();
        assert!(shared.positions < separate.positions, "{kind}");
        let run = |batch: &ResponseBatch| {
            let out = lm.response_logprobs(batch, Mode::Eval, 0.8, true).unwrap();
            // Each response weighted differently, so a token read from the wrong place shows.
            let w = candle_core::Tensor::new(&[1f32, -0.5, 2.0, 0.7, -1.3], policy.device())
                .unwrap()
                .unsqueeze(1)
                .unwrap();
            let loss = out.logprobs.broadcast_mul(&w).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let lp: Vec<Vec<f32>> = out.logprobs.to_vec2().unwrap();
            let h: Vec<Vec<f32>> = out.entropy.unwrap().to_vec2().unwrap();
            (lp, h, grads)
        };
        let (lp_a, h_a, g_a) = run(&shared);
        let (lp_b, h_b, g_b) = run(&separate);
        let max_diff = |a: &[Vec<f32>], b: &[Vec<f32>]| {
            a.iter()
                .flatten()
                .zip(b.iter().flatten())
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        };
        assert!(
            max_diff(&lp_a, &lp_b) <= 1e-5,
            "{kind}: {lp_a:?} vs {lp_b:?}"
        );
        assert!(max_diff(&h_a, &h_b) <= 1e-5, "{kind}: entropies");
        assert!(
            lp_a.iter().flatten().any(|&x| x < -0.1),
            "{kind}: not trivially zero"
        );
        for (name, var) in policy.params().vars() {
            let values = |g: &candle_core::backprop::GradStore| -> Vec<f32> {
                let g = g
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: no gradient"));
                g.flatten_all().unwrap().to_vec1().unwrap()
            };
            let (a, b) = (values(&g_a), values(&g_b));
            let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
            let diff = a
                .iter()
                .zip(&b)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                diff <= 1e-4 * scale.max(1e-6),
                "{kind} {name}: {diff} (largest {scale})"
            );
        }
    }
}

/// A policy saved as an HF causal-LM folder loads back with the same weights, tokenizer, EOS
/// and chat template, so it scores the same.
#[test]
fn saved_policies_load_back() {
    let policy = tiny_policy("llama", false, 5);
    let dir = tempfile::tempdir().unwrap();
    policy.save(dir.path()).unwrap();
    let back = Policy::from_dir(dir.path()).unwrap();
    assert_eq!(back.eos_ids(), policy.eos_ids());
    let config: serde_json::Value = common::read_json(&dir.path().join("config.json"));
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    let ids = policy.encode("one two .").unwrap();
    let a = policy.sequence_logprob_ids("a b ?", &ids).unwrap();
    let b = back.sequence_logprob_ids("a b ?", &ids).unwrap();
    assert_eq!(a, b);
    // A snapshot is a copy: changing the policy's weights leaves it as it was.
    let snap = policy.snapshot().unwrap();
    let (_, var) = &policy.params().vars()[0];
    var.set(&(var.as_tensor() * 2.0).unwrap()).unwrap();
    assert_eq!(snap.sequence_logprob_ids("a b ?", &ids).unwrap(), a);
    assert_ne!(policy.sequence_logprob_ids("a b ?", &ids).unwrap(), a);
}
