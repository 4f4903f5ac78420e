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
    #[command(flatten)]
    batch: super::scoring_args::BatchArgs,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let model = args.batch.load(&args.model)?;
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
    // Each row is encoded (and cut) alone: its score does not depend on the rows beside it.
    let mut encoded = Vec::with_capacity(inputs.len());
    for (p, r) in &inputs {
        encoded.push(model.encode(p, r)?);
    }
    // Score in chunks so the progress bar moves; each chunk is batched by length inside.
    let mut scores = Vec::with_capacity(encoded.len());
    for chunk in encoded.chunks(args.batch.chunk()) {
        scores.extend(match args.batch.max_batch_tokens {
            Some(tokens) => model.score_encoded_packed(chunk, None, tokens)?,
            None => model.score_encoded(chunk, args.batch.batch_size)?,
        });
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
