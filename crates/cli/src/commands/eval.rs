//! `rewardkit eval`: metrics of a reward model from its scores.

use std::path::PathBuf;

use clap::Args;

use rewardkit_data::{score_pairs, Scorer};
use rewardkit_eval::{
    evaluate, read_scores, scored_pairs, write_scores, Baseline, EvalSummary, ScoredPair,
};

use super::data::ReadArgs;
use super::{print_json, print_text, write_atomic};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["scores", "baseline", "model"]))]
pub struct EvalArgs {
    /// A score file: one JSON object per pair with `chosen_score` and `rejected_score`, and
    /// optionally `subset` (string) and `tie` (boolean). Any model can write one. `-` reads
    /// standard input.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Score the pairs of --data with a heuristic instead of a model: `length` (characters),
    /// `length-words`, `random` or `random:SEED`.
    #[arg(long, requires = "data", value_parser = Baseline::parse)]
    baseline: Option<Baseline>,
    /// A reward model folder: score the pairs of --data with it.
    #[arg(long, requires = "data")]
    model: Option<PathBuf>,
    /// Preference files to score (each file is a subset unless its rows name one).
    #[arg(long, num_args = 1..)]
    data: Vec<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    scoring: super::scoring_args::ScoringArgs,
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

/// How long scoring took.
#[derive(serde::Serialize)]
struct Timing {
    seconds: f64,
    pairs_per_s: f64,
    sequences_per_s: f64,
    /// Real tokens per second (models only).
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_per_s: Option<f64>,
    /// Positions computed per second, padding included (models only).
    #[serde(skip_serializing_if = "Option::is_none")]
    padded_tokens_per_s: Option<f64>,
}

#[derive(serde::Serialize)]
struct EvalOutput<'a> {
    #[serde(flatten)]
    summary: &'a EvalSummary,
    /// Present when the pairs were scored here (--model, --baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    timing: Option<Timing>,
}

/// Scores the pairs of --data with `scorer` (64 pairs per call, for the progress bar), saving
/// the scores when asked.
type Scored = (String, Vec<String>, Vec<ScoredPair>, Option<Timing>);

fn score_data<S: Scorer>(args: &EvalArgs, scorer: &S) -> anyhow::Result<Scored>
where
    S::Error: Into<anyhow::Error>,
{
    let data = args.read.load(&args.data, true)?;
    let pb = crate::progress::bar(data.pairs.len() as u64, "pairs");
    pb.set_message("scoring");
    let started = std::time::Instant::now();
    let scores =
        score_pairs(scorer, &data.pairs, 64, |n| pb.set_position(n as u64)).map_err(Into::into)?;
    let seconds = started.elapsed().as_secs_f64();
    pb.finish_and_clear();
    eprintln!(
        "scored {} pairs in {seconds:.1} s ({:.1} pairs/s)",
        scores.len(),
        scores.len() as f64 / seconds.max(1e-9)
    );
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
    let n = scores.len() as f64;
    let timing = Timing {
        seconds,
        pairs_per_s: n / seconds.max(1e-9),
        sequences_per_s: 2.0 * n / seconds.max(1e-9),
        tokens_per_s: None,
        padded_tokens_per_s: None,
    };
    Ok((
        scorer.name(),
        inputs,
        scored_pairs(&data.pairs, &scores),
        Some(timing),
    ))
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let (scorer, inputs, scored, timing) = match (&args.scores, &args.baseline) {
        (None, None) => {
            let dir = args.model.as_ref().expect("clap requires one source");
            let model = args.scoring.batch.load(dir)?;
            let scorer = args.scoring.scorer(&model);
            let (name, inputs, scored, mut timing) = score_data(&args, &scorer)?;
            if let Some(t) = timing.as_mut() {
                let (_, tokens, padded) = model.scored.totals();
                t.tokens_per_s = Some(tokens as f64 / t.seconds.max(1e-9));
                t.padded_tokens_per_s = Some(padded as f64 / t.seconds.max(1e-9));
            }
            (name, inputs, scored, timing)
        }
        (Some(path), _) => {
            let scored = read_scores(path)?;
            eprintln!("read {} scored pairs from {}", scored.len(), path.display());
            (
                format!("scores:{}", path.display()),
                vec![path.display().to_string()],
                scored,
                None,
            )
        }
        (None, Some(baseline)) => score_data(&args, baseline)?,
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
        write_atomic(path, svg.as_bytes())?;
        eprintln!("wrote reliability diagram to {}", path.display());
    }
    if args.json {
        print_json(&EvalOutput {
            summary: &summary,
            timing,
        })
    } else {
        print_text(&rewardkit_report::eval_table(&summary.report, &scorer))
    }
}
