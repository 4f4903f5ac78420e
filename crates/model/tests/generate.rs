//! Generation: the KV cache against the full forward pass (tiny-llama fixture), and sampling
//! from SmolLM2-135M-Instruct (GGUF, fetched by `scripts/fetch-models.sh`) against
//! `../shared/models/smollm2-reference.json` (transformers' greedy continuations on the
//! dequantised weights).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use rewardkit_model::{llama::Llama, ArchConfig, GenerationConfig, Mode, Policy, Sample};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Prefill of a left-padded batch of two prompts (5 and 3 tokens), then three steps of one
/// token: at every step the last-position logits equal those of a full forward pass over the
/// whole padded sequence, and those of each row run alone without padding.
#[test]
fn cached_decoding_matches_the_full_forward() {
    let (ArchConfig::Llama(config), store) = common::fixture("tiny-llama") else {
        panic!("tiny-llama is a llama")
    };
    let root = store.var_builder();
    // The fixture is a bare `LlamaModel`: its LM head is seeded-initialised, which is all an
    // equality test needs.
    let model = Llama::new(root.pp("model"), &config, Some(root.pp("lm_head"))).unwrap();
    let dev = Device::Cpu;
    let mut rows: Vec<Vec<u32>> = vec![vec![5, 17, 42, 99, 3], vec![8, 64, 128]];
    let pads = [0usize, 2];
    let padded = |rows: &[Vec<u32>]| {
        let ids: Vec<u32> = rows
            .iter()
            .zip(pads)
            .flat_map(|(r, p)| std::iter::repeat_n(0, p).chain(r.iter().copied()))
            .collect();
        let mask: Vec<u32> = rows
            .iter()
            .zip(pads)
            .flat_map(|(r, p)| std::iter::repeat_n(0, p).chain(std::iter::repeat_n(1, r.len())))
            .collect();
        let t = ids.len() / 2;
        (
            Tensor::from_vec(ids, (2, t), &dev).unwrap(),
            Tensor::from_vec(mask, (2, t), &dev).unwrap(),
        )
    };
    let last_logits = |hidden: &Tensor| {
        let t = hidden.dim(1).unwrap();
        model
            .logits(&hidden.narrow(1, t - 1, 1).unwrap().squeeze(1).unwrap())
            .unwrap()
    };

    let mut cache = model.new_cache();
    let (ids, mask) = padded(&rows);
    let mut cached = last_logits(&model.forward_cached(&ids, &mask, &mut cache).unwrap());
    for step in 0..4 {
        let (ids, mask) = padded(&rows);
        assert_eq!(cache.len(), ids.dim(1).unwrap());
        let full = last_logits(&model.forward(&ids, &mask, Mode::Eval).unwrap());
        let diff = max_abs_diff(&cached, &full);
        assert!(diff < 1e-4, "step {step}: cached vs full forward {diff}");
        for (i, row) in rows.iter().enumerate() {
            let alone = Tensor::from_slice(row, (1, row.len()), &dev).unwrap();
            let ones = Tensor::ones((1, row.len()), DType::U32, &dev).unwrap();
            let want = last_logits(&model.forward(&alone, &ones, Mode::Eval).unwrap());
            let diff = max_abs_diff(&cached.narrow(0, i, 1).unwrap(), &want);
            assert!(diff < 1e-4, "step {step}, row {i}: cached vs alone {diff}");
        }
        // Next token: an arbitrary id per row, fed with mask 1.
        let next = [(7 + 31 * step) as u32, (500 + step) as u32];
        for (row, &t) in rows.iter_mut().zip(&next) {
            row.push(t);
        }
        let ids = Tensor::from_slice(&next, (2, 1), &dev).unwrap();
        let ones = Tensor::ones((2, 1), DType::U32, &dev).unwrap();
        cached = last_logits(&model.forward_cached(&ids, &ones, &mut cache).unwrap());
    }
}

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        Policy::from_gguf(&common::real_model(
            "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ))
        .unwrap()
    })
}

fn chat_prompts() -> Vec<String> {
    ["Name a colour.", "Write one sentence about the sea."]
        .iter()
        .map(|p| policy().format_prompt(p).unwrap())
        .collect()
}

fn sampling(temperature: f64, top_p: f64, seed: u64, batch_size: usize) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: 12,
        temperature,
        top_p,
        seed,
        batch_size,
    }
}

fn generate(prompts: &[String], n: usize, config: &GenerationConfig) -> Vec<Sample> {
    let mut calls = Vec::new();
    let samples = policy()
        .generate(prompts, n, config, &mut |done| calls.push(done))
        .unwrap();
    assert_eq!(samples.len(), prompts.len() * n);
    assert_eq!(calls.last(), Some(&samples.len()));
    samples
}

/// Greedy decoding through the cache, both reference prompts in one left-padded batch, gives
/// transformers' 8-token continuations (`greedy_8_tokens`, decoded with special tokens).
#[test]
fn greedy_continuations_match_transformers() {
    let refs = common::read_json(&common::shared_models().join("smollm2-reference.json"));
    let refs = refs["refs"].as_array().unwrap();
    let prompts: Vec<String> = refs
        .iter()
        .map(|r| r["prompt"].as_str().unwrap().to_string())
        .collect();
    let config = GenerationConfig {
        max_new_tokens: 8,
        temperature: 0.0,
        ..Default::default()
    };
    let samples = generate(&prompts, 1, &config);
    for (s, r) in samples.iter().zip(refs) {
        let eos = if s.finished { "<|im_end|>" } else { "" };
        assert_eq!(
            format!("{}{eos}", s.text),
            r["greedy_8_tokens"].as_str().unwrap()
        );
        assert_eq!(s.logprob, 0.0);
        assert!(s.logprob_model < 0.0);
    }
    // " Paris.\n\nThe answer is:" runs to the limit; "The answer is 4.<|im_end|>" stops at EOS.
    assert!(!samples[0].finished && samples[0].token_ids.len() == 8);
    assert!(samples[1].finished && samples[1].token_ids.last() == Some(&2));
}

/// The same seed gives the same samples whatever the batch size; another seed other samples.
#[test]
fn samples_depend_on_the_seed_not_the_batch_size() {
    let prompts = chat_prompts();
    let a = generate(&prompts, 3, &sampling(1.0, 0.9, 7, 6));
    let b = generate(&prompts, 3, &sampling(1.0, 0.9, 7, 4));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (
                x.prompt_index,
                x.sample_index,
                &x.token_ids,
                &x.text,
                x.finished
            ),
            (
                y.prompt_index,
                y.sample_index,
                &y.token_ids,
                &y.text,
                y.finished
            )
        );
        assert!((x.logprob - y.logprob).abs() < 1e-4);
        assert!((x.logprob_model - y.logprob_model).abs() < 1e-4);
        // The nucleus renormalises upwards: p/Z ≥ p at temperature 1.
        assert!(x.logprob <= 0.0 && x.logprob_model <= x.logprob + 1e-9);
    }
    // Samples of one prompt differ from each other, and another seed changes them.
    assert!(a[0].token_ids != a[1].token_ids || a[1].token_ids != a[2].token_ids);
    let c = generate(&prompts, 3, &sampling(1.0, 0.9, 8, 6));
    assert!(a.iter().zip(&c).any(|(x, y)| x.token_ids != y.token_ids));
}

/// A prompt's samples drawn in one batch (the prompt run once, its cache copied to each sample)
/// are those drawn one at a time (each with its own run of the prompt), to the bit: the copy
/// carries every layer's keys and values and the mask, and a row's decoding does not depend on
/// the rows beside it.
#[test]
fn samples_sharing_one_prompt_run_equal_samples_drawn_alone() {
    let prompts = chat_prompts();
    let together = generate(&prompts[1..], 3, &sampling(1.0, 1.0, 11, 3));
    let alone = generate(&prompts[1..], 3, &sampling(1.0, 1.0, 11, 1));
    for (x, y) in together.iter().zip(&alone) {
        assert_eq!((&x.token_ids, x.finished), (&y.token_ids, y.finished));
        assert_eq!(x.logprob_model.to_bits(), y.logprob_model.to_bits());
    }
    assert!(together.iter().all(|s| !s.token_ids.is_empty()));
}

/// A nucleus of probability 1e-6 holds the most likely token alone: greedy decoding.
#[test]
fn tiny_top_p_is_greedy() {
    let prompts = chat_prompts();
    let greedy = generate(&prompts, 1, &sampling(0.0, 1.0, 0, 2));
    let nucleus = generate(&prompts, 1, &sampling(1.0, 1e-6, 3, 2));
    for (g, n) in greedy.iter().zip(&nucleus) {
        assert_eq!(g.token_ids, n.token_ids);
        assert_eq!((g.logprob, n.logprob), (0.0, 0.0));
        assert!((g.logprob_model - n.logprob_model).abs() < 1e-9);
    }
}

/// Teacher-forced scoring gives a sample's `logprob_model`: of its token ids always, of its
/// text whenever its tokens are the tokenizer's own encoding of that text.
#[test]
fn sequence_logprob_agrees_with_generation() {
    let p = policy();
    let prompts = chat_prompts();
    let samples = generate(&prompts, 2, &sampling(0.8, 0.95, 11, 4));
    let mut by_text = 0;
    for s in &samples {
        let prompt = &prompts[s.prompt_index];
        let lp = p.sequence_logprob_ids(prompt, &s.token_ids).unwrap();
        assert!(
            (lp - s.logprob_model).abs() < 1e-3,
            "{lp} vs {} for {:?}",
            s.logprob_model,
            s.text
        );
        let mut ids = p
            .tokenizer()
            .encode(s.text.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        if s.finished {
            ids.push(p.eos_ids()[0]);
        }
        if ids == s.token_ids {
            let lp = p.sequence_logprob(prompt, &s.text, s.finished).unwrap();
            assert!(
                (lp - s.logprob_model).abs() < 1e-3,
                "{lp} vs {}",
                s.logprob_model
            );
            by_text += 1;
        }
    }
    assert!(
        by_text >= 2,
        "only {by_text} samples re-tokenise to their ids"
    );
}
