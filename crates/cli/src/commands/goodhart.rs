//! `rewardkit goodhart`: proxy against gold under best-of-n pressure, on pools of real samples.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use rewardkit_goodhart::pool::{gold_pairs, group_by_prompt, held_out, read_pool, PoolRow};

use super::write_atomic;

#[derive(Subcommand)]
pub enum GoodhartCommand {
    /// Split a pool with gold labels by prompt: preference pairs labelled by gold from one part
    /// (to train a proxy or a verifier), the other part kept as a pool for best-of-n.
    Label(LabelArgs),
}

#[derive(Args)]
pub struct LabelArgs {
    /// A pool: `rewardkit generate` rows with a `gold` field, or GSM8K's
    /// example_model_solutions.jsonl (real solutions labelled correct or not).
    #[arg(long)]
    pool: PathBuf,
    /// TRL-style preference pairs (gold-better response chosen) from the training prompts.
    #[arg(long)]
    pairs_out: PathBuf,
    /// The held-out prompts' samples, as pool rows.
    #[arg(long)]
    pool_out: PathBuf,
    /// Share of prompts held out for best-of-n.
    #[arg(long, default_value_t = 0.5)]
    heldout_fraction: f64,
    /// Seed of the prompt split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(cmd: GoodhartCommand) -> anyhow::Result<()> {
    match cmd {
        GoodhartCommand::Label(args) => label(args),
    }
}

fn pool_row_json(r: &PoolRow, sample: usize) -> serde_json::Value {
    serde_json::json!({
        "prompt_id": r.prompt_id,
        "prompt": r.prompt,
        "sample": sample,
        "response": r.response,
        "logprob": r.logprob,
        "ref_logprob": r.ref_logprob,
        "gold": r.gold,
    })
}

fn label(args: LabelArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.heldout_fraction),
        "--heldout-fraction must be in [0, 1]"
    );
    let rows = read_pool(&args.pool)?;
    let groups = group_by_prompt(&rows);
    let (held, train): (Vec<Vec<usize>>, Vec<Vec<usize>>) = groups
        .into_iter()
        .partition(|g| held_out(&rows[g[0]].prompt_id, args.heldout_fraction, args.seed));
    let pairs = gold_pairs(&rows, &train);
    let mut buf = Vec::new();
    for p in &pairs {
        serde_json::to_writer(
            &mut buf,
            &serde_json::json!({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}),
        )?;
        buf.push(b'\n');
    }
    write_atomic(&args.pairs_out, &buf)?;
    let mut buf = Vec::new();
    for g in &held {
        for (k, &i) in g.iter().enumerate() {
            serde_json::to_writer(&mut buf, &pool_row_json(&rows[i], k))?;
            buf.push(b'\n');
        }
    }
    write_atomic(&args.pool_out, &buf)?;
    eprintln!(
        "{} prompts: {} training prompts gave {} gold-labelled pairs ({}); {} held-out prompts ({} samples) in {}",
        train.len() + held.len(),
        train.len(),
        pairs.len(),
        args.pairs_out.display(),
        held.len(),
        held.iter().map(Vec::len).sum::<usize>(),
        args.pool_out.display()
    );
    Ok(())
}
