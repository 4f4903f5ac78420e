//! Seconds per RL step on a tiny from-scratch Llama (the demo world's size: 64 wide, 2 layers,
//! a vocabulary of 300 words), B × k samples of up to `max_new_tokens` tokens, a closure reward.
//! `cargo run --release -p rewardkit-rl --example step_speed -- [B] [k] [max_new_tokens] [steps]`
//! (run by `bench/rl-step.sh`). Prints one JSON line per step and a summary.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark: the panic is the report, stdout the result

// The binary's allocator (bench/rl-step.sh sets MIMALLOC_PURGE_DELAY=-1 as the binary does):
// with the system allocator a third of the time goes to the kernel zeroing pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rewardkit_model::{word_level_tokenizer, ArchConfig, Policy};
use rewardkit_rl::{Completion, FnReward, OptimConfig, RlConfig, RlPrompt, RlSession};

fn main() {
    let arg = |i: usize, d: usize| std::env::args().nth(i).map_or(d, |s| s.parse().unwrap());
    let (b, k, max_new, steps) = (arg(1, 16), arg(2, 4), arg(3, 40), arg(4, 5));
    let words: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
    let vocab: Vec<&str> = words.iter().map(String::as_str).collect();
    let tok = word_level_tokenizer(&vocab, &["</s>"]).unwrap();
    let eos = tok.token_to_id("</s>").unwrap();
    let config = ArchConfig::from_json(
        &serde_json::json!({"model_type": "llama", "vocab_size": 301, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "tie_word_embeddings": true})
        .to_string(),
    )
    .unwrap();
    let policy = Policy::from_scratch(&config, tok, eos, 0).unwrap();
    let reference = policy.snapshot().unwrap();
    let prompts: Vec<RlPrompt> = (0..64)
        .map(|i| {
            RlPrompt::plain(format!(
                "w{} w{} w{} w{}",
                i,
                i + 1,
                i * 2 % 300,
                i * 3 % 300
            ))
        })
        .collect();
    let rl = RlConfig {
        prompts_per_step: b,
        samples_per_prompt: k,
        max_new_tokens: max_new,
        forward_batch_size: 64,
        optim: OptimConfig {
            learning_rate: 1e-3,
            ..RlConfig::default().optim
        },
        ..Default::default()
    };
    let mut session = RlSession::new(&policy, &reference, &rl).unwrap();
    let mut reward = FnReward::new("w7", |rows: &[Completion]| {
        Ok(rows
            .iter()
            .map(|c| c.response.matches("w7").count() as f64)
            .collect())
    });
    let mut total = 0.0;
    for _ in 0..steps {
        let log = session.step(&prompts, &mut reward, None).unwrap().log;
        let s = log.generate_s + log.score_s + log.update_s;
        total += s;
        println!(
            "{}",
            serde_json::json!({"step": log.step, "seconds": s, "generate_s": log.generate_s,
                "score_s": log.score_s, "update_s": log.update_s,
                "response_length": log.response_length})
        );
    }
    println!(
        "{}",
        serde_json::json!({"samples_per_step": b * k, "max_new_tokens": max_new,
            "mean_seconds_per_step": total / steps as f64})
    );
}
