//! `rewardkit eval`: metrics of a reward model from its scores.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use rewardkit_data::{score_pairs, Scorer};
use rewardkit_eval::{evaluate, read_scores, scored_pairs, write_scores, Baseline, EvalSummary};

use super::data::ReadArgs;
use super::{print_json, print_text, write_atomic};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["scores", "baseline"]))]
pub struct EvalArgs {
    /// A score file: one JSON object per pair with `chosen_score` and `rejected_score`, and
    /// optionally `subset` (string) and `tie` (boolean). Any model can write one.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Score the pairs of --data with a heuristic instead of a model: `length` (characters),
    /// `length-words`, `random` or `random:SEED`.
    #[arg(long, requires = "data", value_parser = Baseline::parse)]
    baseline: Option<Baseline>,
    /// Preference files to score (each file is a subset unless its rows name one).
    #[arg(long, num_args = 1..)]
    data: Vec<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// Write the per-pair scores (a score file, readable by --scores).
    #[arg(long)]
    save_scores: Option<PathBuf>,
    /// Write the reliability diagram as SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write the JSON report to this file too.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print JSON on stdout instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let (scorer, inputs, scored) = match (&args.scores, &args.baseline) {
        (Some(path), _) => {
            let scored = read_scores(path)?;
            eprintln!("read {} scored pairs from {}", scored.len(), path.display());
            (
                format!("scores:{}", path.display()),
                vec![path.display().to_string()],
                scored,
            )
        }
        (None, Some(baseline)) => {
            let data = args.read.load(&args.data, true)?;
            let pb = crate::progress::bar(data.pairs.len() as u64, "pairs");
            pb.set_message("scoring");
            let scores = score_pairs(baseline, &data.pairs, 256, |n| pb.set_position(n as u64))?;
            pb.finish_and_clear();
            if let Some(path) = &args.save_scores {
                let mut buf = Vec::new();
                write_scores(&mut buf, &data.pairs, &scores)?;
                write_atomic(path, &buf)?;
                eprintln!(
                    "wrote scores of {} pairs to {}",
                    scores.len(),
                    path.display()
                );
            }
            let inputs = args.data.iter().map(|p| p.display().to_string()).collect();
            (baseline.name(), inputs, scored_pairs(&data.pairs, &scores))
        }
        (None, None) => unreachable!("clap requires --scores or --baseline"),
    };
    let report = evaluate(&scored);
    let summary = EvalSummary {
        scorer: scorer.clone(),
        inputs,
        report,
    };
    if let Some(path) = &args.out {
        write_atomic(path, &serde_json::to_vec_pretty(&summary)?)?;
        eprintln!("wrote report to {}", path.display());
    }
    if let Some(path) = &args.plot {
        let title = format!("Reliability · {scorer}");
        let svg = rewardkit_report::reliability_svg(&summary.report.overall.calibration, &title);
        write_atomic(path, svg.as_bytes()).with_context(|| format!("plot {}", path.display()))?;
        eprintln!("wrote reliability diagram to {}", path.display());
    }
    if args.json {
        print_json(&summary)
    } else {
        print_text(&rewardkit_report::eval_table(&summary.report, &scorer))
    }
}
