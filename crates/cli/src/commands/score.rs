//! `rewardkit score`: scores for (prompt, response) rows.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use rewardkit_data::{for_each_record, text_field, DataError, RowError};

#[derive(Args)]
pub struct ScoreArgs {
    /// Reward model folder (a rewardkit checkpoint or an HF *ForSequenceClassification model).
    #[arg(long)]
    model: PathBuf,
    /// JSONL (or JSON array, gzip, Parquet) rows with `prompt` (optional) and `response`, each a
    /// string or a list of {role, content} messages. Other fields are passed through. `-` reads
    /// standard input.
    #[arg(long)]
    input: PathBuf,
    /// Write the scored rows here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Sequences per forward pass (rows are sorted by length first).
    #[arg(long, default_value_t = 32, value_parser = super::at_least_one)]
    batch_size: usize,
    /// Tokens per sequence at most (default: the model's).
    #[arg(long, value_parser = super::at_least_one)]
    max_length: Option<usize>,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let model = super::load_for_scoring(&args.model, args.max_length)?;
    let mut rows = Vec::new();
    let mut inputs = Vec::new();
    for_each_record(&args.input, |record| -> Result<(), DataError> {
        let (location, obj) = record.into_result()?;
        let parsed = text_field(&obj, "prompt", false)
            .and_then(|p| Ok((p, text_field(&obj, "response", true)?)));
        let (prompt, response) = parsed.map_err(|kind| RowError { location, kind })?;
        inputs.push((prompt, response));
        rows.push(obj);
        Ok(())
    })?;
    let pb = crate::progress::bar(rows.len() as u64, "rows");
    pb.set_message("scoring");
    let mut encoded = Vec::with_capacity(inputs.len());
    for (p, r) in &inputs {
        encoded.push(model.encode(p, r)?);
    }
    // Score in chunks so the progress bar moves; each chunk is sorted by length inside.
    let mut scores = Vec::with_capacity(encoded.len());
    for chunk in encoded.chunks(args.batch_size.max(1) * 8) {
        scores.extend(model.score_encoded(chunk, args.batch_size.max(1))?);
        pb.set_position(scores.len() as u64);
    }
    pb.finish_and_clear();
    let mut buf = Vec::new();
    for (mut obj, s) in rows.into_iter().zip(scores) {
        obj.insert("score".into(), s.into());
        serde_json::to_writer(&mut buf, &obj)?;
        buf.push(b'\n');
    }
    match &args.output {
        Some(path) => {
            super::write_atomic(path, &buf)?;
            eprintln!(
                "wrote {} scored rows to {}",
                buf.iter().filter(|&&b| b == b'\n').count(),
                path.display()
            );
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            out.write_all(&buf)?;
            out.flush()?;
        }
    }
    Ok(())
}
