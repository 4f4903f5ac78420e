//! `rewardkit generate`: a pool of sampled responses per prompt from a policy model, for
//! best-of-n experiments.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use rewardkit_goodhart::pool::{read_prompts, write_pool, PoolRow};
use rewardkit_model::{GenerationConfig, Policy};

#[derive(Args)]
pub struct GenerateArgs {
    /// Policy model: a GGUF file of a Llama-family chat model (its tokenizer, EOS token and chat
    /// template are read from the file; only ChatML templates are rendered).
    #[arg(long, env = "REWARDKIT_POLICY")]
    model: PathBuf,
    /// Prompts: JSONL (or JSON array, gzip, Parquet), one object per prompt with `prompt` (a
    /// string, the user's message) and optionally `id` (a string or number; default: the
    /// prompt's 0-based index).
    #[arg(long)]
    prompts: PathBuf,
    /// Responses per prompt.
    #[arg(long, default_value_t = 4, value_parser = super::at_least_one)]
    n: usize,
    /// The pool: JSONL, one row per sample with `prompt_id` (the prompt's id as a string),
    /// `prompt`, `sample`, `response`,
    /// `logprob` (under the distribution sampled from), `logprob_model` (under the model at
    /// temperature 1), `tokens` (generated tokens, EOS included) and `finished` (ended with
    /// EOS). Written atomically.
    #[arg(long)]
    out: PathBuf,
    /// Reference model (GGUF): adds `ref_logprob`, the log-probability of each response (and
    /// of its EOS when finished) under this model at temperature 1, for a KL penalty: of the
    /// sampled tokens when the two models share a vocabulary, else of the response text.
    #[arg(long, env = "REWARDKIT_REF_MODEL")]
    ref_model: Option<PathBuf>,
    /// Softmax temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Nucleus sampling: draw from the most likely tokens whose probability reaches this
    /// (1 = all tokens).
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// New tokens per response at most.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Seed; each (prompt, sample) has its own stream, so results do not depend on
    /// --batch-size.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8, value_parser = super::at_least_one)]
    batch_size: usize,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        batch_size: args.batch_size,
    };
    let prompts = read_prompts(&args.prompts)?;
    let policy = Policy::from_gguf(&args.model)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let formatted = prompts
        .iter()
        .map(|p| policy.format_prompt(&p.text))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: formatting prompts", args.model.display()))?;
    eprintln!(
        "generating {} × {} responses from {} (temperature {}, top-p {}, ≤ {} tokens)",
        prompts.len(),
        args.n,
        args.model.display(),
        config.temperature,
        config.top_p,
        config.max_new_tokens
    );

    let pb = crate::progress::bar((prompts.len() * args.n) as u64, "samples");
    pb.set_message("generating");
    let start = Instant::now();
    let samples = policy.generate(&formatted, args.n, &config, &mut |done| {
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let tokens: usize = samples.iter().map(|s| s.token_ids.len()).sum();
    eprintln!(
        "generated {} responses, {tokens} tokens in {seconds:.1} s ({:.1} tokens/s)",
        samples.len(),
        tokens as f64 / seconds.max(1e-9)
    );
    let vocab = policy.tokenizer().get_vocab(true);
    drop(policy);

    let ref_logprobs = match &args.ref_model {
        None => vec![None; samples.len()],
        Some(path) => {
            let reference =
                Policy::from_gguf(path).with_context(|| format!("loading {}", path.display()))?;
            // The same vocabulary: score the sampled tokens themselves; otherwise the text.
            let same_vocab = reference.tokenizer().get_vocab(true) == vocab;
            if !same_vocab {
                eprintln!("the reference model has another vocabulary: scoring response texts");
            }
            let pb = crate::progress::bar(samples.len() as u64, "samples");
            pb.set_message("reference log-probs");
            let mut out = Vec::with_capacity(samples.len());
            for s in &samples {
                let prompt = reference.format_prompt(&prompts[s.prompt_index].text)?;
                let lp = match same_vocab {
                    true => reference.sequence_logprob_ids(&prompt, &s.token_ids)?,
                    false => reference.sequence_logprob(&prompt, &s.text, s.finished)?,
                };
                out.push(Some(lp));
                pb.inc(1);
            }
            pb.finish_and_clear();
            out
        }
    };

    let rows: Vec<PoolRow> = samples
        .iter()
        .zip(ref_logprobs)
        .map(|(s, ref_logprob)| {
            let prompt = &prompts[s.prompt_index];
            PoolRow {
                prompt_id: prompt.id.clone(),
                prompt: prompt.text.clone(),
                sample: Some(s.sample_index),
                response: s.text.clone(),
                logprob: Some(s.logprob),
                logprob_model: Some(s.logprob_model),
                tokens: Some(s.token_ids.len()),
                finished: Some(s.finished),
                ref_logprob,
                gold: None,
            }
        })
        .collect();
    write_pool(&args.out, &rows)?;
    eprintln!("wrote {} rows to {}", samples.len(), args.out.display());
    Ok(())
}
