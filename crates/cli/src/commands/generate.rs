//! `rewardkit generate`: a pool of sampled responses per prompt from a policy model, for
//! best-of-n experiments.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use rewardkit_data::{for_each_record, json_type, DataError, RowError, RowErrorKind};
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
    /// The pool: JSONL, one row per sample with `prompt_id`, `prompt`, `sample`, `response`,
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

/// One row of the pool.
#[derive(Serialize)]
struct PoolRow<'a> {
    prompt_id: &'a serde_json::Value,
    prompt: &'a str,
    sample: usize,
    response: &'a str,
    logprob: f64,
    logprob_model: f64,
    tokens: usize,
    finished: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ref_logprob: Option<f64>,
}

/// `(id, prompt)` per line of the prompts file.
fn read_prompts(path: &std::path::Path) -> anyhow::Result<Vec<(serde_json::Value, String)>> {
    let mut prompts = Vec::new();
    for_each_record(path, |record| -> Result<(), DataError> {
        let (location, obj) = record.into_result()?;
        let wrong = |field: &str, expected, v: &serde_json::Value| RowErrorKind::WrongType {
            field: field.into(),
            expected,
            found: json_type(v).into(),
        };
        let prompt = match obj.get("prompt") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => Err(RowError {
                location: location.clone(),
                kind: wrong("prompt", "a string", v),
            })?,
            None => Err(RowError {
                location: location.clone(),
                kind: RowErrorKind::MissingField("prompt".into()),
            })?,
        };
        let id = match obj.get("id") {
            None | Some(serde_json::Value::Null) => prompts.len().into(),
            Some(v @ (serde_json::Value::String(_) | serde_json::Value::Number(_))) => v.clone(),
            Some(v) => Err(RowError {
                location,
                kind: wrong("id", "a string or a number", v),
            })?,
        };
        prompts.push((id, prompt));
        Ok(())
    })?;
    if prompts.is_empty() {
        Err(DataError::Empty {
            path: path.to_path_buf(),
        })?;
    }
    Ok(prompts)
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
        .map(|(_, p)| policy.format_prompt(p))
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
                let prompt = reference.format_prompt(&prompts[s.prompt_index].1)?;
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

    let mut buf = Vec::new();
    for (s, ref_logprob) in samples.iter().zip(ref_logprobs) {
        let (id, prompt) = &prompts[s.prompt_index];
        let row = PoolRow {
            prompt_id: id,
            prompt,
            sample: s.sample_index,
            response: &s.text,
            logprob: s.logprob,
            logprob_model: s.logprob_model,
            tokens: s.token_ids.len(),
            finished: s.finished,
            ref_logprob,
        };
        serde_json::to_writer(&mut buf, &row)?;
        buf.push(b'\n');
    }
    super::write_atomic(&args.out, &buf)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {} rows to {}", samples.len(), args.out.display());
    Ok(())
}
