//! `rewardkit goodhart`: proxy against gold under best-of-n pressure, on pools of real samples.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use rewardkit_audit::PromptFormat;
use rewardkit_data::{Scorer, Text};
use rewardkit_goodhart::analysis::{analyze_labelled, CurvesReport, Mitigations};
use rewardkit_goodhart::bon::default_ns;
use rewardkit_goodhart::pool::{
    gold_pairs, group_by_prompt, gsm8k_answers, gsm8k_gold, has_logprobs, numbered_rows,
    pool_scores, read_pool, split_prompts, write_pool,
};

use super::{print_json, print_text, write_atomic};

#[derive(Subcommand)]
pub enum GoodhartCommand {
    /// Split a pool with gold labels by prompt: preference pairs labelled by gold from one part
    /// (to train a proxy or a verifier), the other part kept as a pool for best-of-n.
    Label(LabelArgs),
    /// Best-of-n curves on a pool: proxy reward models pick, gold judges. For n = 1…N the
    /// unbiased estimator of the proxy and gold of the pick, against √KL (KL of best-of-n =
    /// log n − (n−1)/n), the fit R(d) = d(α − βd), the sweet spot, and the mitigations: ensembles
    /// (mean, min, mean − λ·var, mean − λ·std) and, when the pool has log-probabilities, the
    /// KL-penalised reward r − β·(log π − log π_ref).
    Curves(Box<CurvesArgs>),
}

#[derive(Args)]
pub struct CurvesArgs {
    /// The pool: `rewardkit generate` output (with `ref_logprob` for the KL penalty), a
    /// `goodhart label --pool-out` file, or GSM8K's example_model_solutions.jsonl.
    #[arg(long)]
    pool: PathBuf,
    /// Proxy reward models; the first is "the proxy", all of them form the ensemble.
    #[arg(long = "proxy", required = true)]
    proxies: Vec<PathBuf>,
    /// Gold from a reward model scoring the same samples (a larger or better-trained one, as in
    /// Gao et al. 2022). Without it: --gsm8k-answers, else the pool's `gold` field.
    #[arg(long)]
    gold_model: Option<PathBuf>,
    /// Gold from GSM8K (test.jsonl): 1 when a sample's final number is the answer, else 0.
    #[arg(long)]
    gsm8k_answers: Option<PathBuf>,
    /// How prompts are shown to the reward models: as they are, or as HH-RLHF transcripts
    /// (`\n\nHuman: …\n\nAssistant:`) for models trained on HH-RLHF.
    #[arg(long, default_value = "plain", value_parser = plain_or_hh())]
    prompt_format: PromptFormat,
    /// λ of the ensemble rules mean − λ·var and mean − λ·std.
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    /// β values of the KL-penalised selectors (used when the pool has logprob and ref_logprob).
    #[arg(long, value_delimiter = ',', default_values_t = [0.05, 0.2])]
    kl_beta: Vec<f64>,
    #[command(flatten)]
    scoring: super::scoring_args::ScoringArgs,
    /// Folder for report.json, report.md and goodhart.svg.
    #[arg(long)]
    out: PathBuf,
    /// Print report.json on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// The audit's prompt formats without `auto` (a pool's prompts are bare user messages).
fn plain_or_hh() -> impl TypedValueParser<Value = PromptFormat> {
    PossibleValuesParser::new(["plain", "hh"]).map(|s| match s.as_str() {
        "hh" => PromptFormat::Hh,
        _ => PromptFormat::Plain,
    })
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
    #[arg(long, default_value_t = 0.5, value_parser = super::fraction)]
    heldout_fraction: f64,
    /// Seed of the prompt split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(cmd: GoodhartCommand) -> anyhow::Result<()> {
    match cmd {
        GoodhartCommand::Label(args) => label(args),
        GoodhartCommand::Curves(args) => curves(*args),
    }
}

fn label(args: LabelArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.heldout_fraction),
        "--heldout-fraction must be in [0, 1]"
    );
    let rows = read_pool(&args.pool)?;
    let (held, train) = split_prompts(&rows, args.heldout_fraction, args.seed);
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
    write_pool(&args.pool_out, &numbered_rows(&rows, &held))?;
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

/// Scores every row with one model, with a progress bar.
fn score_rows(
    model_dir: &std::path::Path,
    inputs: &[(Text, Text)],
    args: &CurvesArgs,
) -> anyhow::Result<Vec<f64>> {
    let model = args.scoring.batch.load(model_dir)?;
    let scorer = args.scoring.scorer(&model);
    let pb = crate::progress::bar(inputs.len() as u64, "samples");
    pb.set_message(format!("scoring with {}", model_dir.display()));
    let mut scores = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(args.scoring.batch.chunk()) {
        let items: Vec<(&Text, &Text)> = chunk.iter().map(|(p, r)| (p, r)).collect();
        scores.extend(scorer.score_batch(&items)?);
        pb.set_position(scores.len() as u64);
    }
    pb.finish_and_clear();
    Ok(scores)
}

fn curves(args: CurvesArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let rows = read_pool(&args.pool)?;
    let groups = group_by_prompt(&rows);
    let format = args.prompt_format;
    let inputs: Vec<(Text, Text)> = rows
        .iter()
        .map(|r| (format.prompt(&r.prompt), format.response(&r.response)))
        .collect();
    eprintln!(
        "pool {}: {} prompts, {} samples",
        args.pool.display(),
        groups.len(),
        rows.len()
    );
    let members: Vec<Vec<f64>> = args
        .proxies
        .iter()
        .map(|m| score_rows(m, &inputs, &args))
        .collect::<anyhow::Result<_>>()?;
    let (gold, gold_source): (Vec<f64>, String) = if let Some(g) = &args.gold_model {
        (
            score_rows(g, &inputs, &args)?,
            format!("model:{}", g.display()),
        )
    } else if let Some(path) = &args.gsm8k_answers {
        let answers = gsm8k_answers(path)?;
        let gold = gsm8k_gold(&rows, &answers).map_err(|prompt| {
            anyhow::anyhow!("{}: no GSM8K answer for {prompt:?}", path.display())
        })?;
        (gold, format!("gsm8k:{}", path.display()))
    } else {
        let gold = rows
            .iter()
            .map(|r| r.gold)
            .collect::<Option<Vec<f64>>>()
            .context(
                "no gold: pass --gold-model or --gsm8k-answers, or a pool with a `gold` field",
            )?;
        (gold, "pool `gold` field".into())
    };
    let pool = pool_scores(&rows, &groups, &members, &gold);
    let selectors = Mitigations {
        ensemble: (members.len() > 1).then(Vec::new),
        lambda_var: args.lambda,
        lambda_std: args.lambda,
        kl_betas: if has_logprobs(&rows) {
            args.kl_beta.clone()
        } else {
            Vec::new()
        },
    }
    .selectors();
    let n_max = groups.iter().map(Vec::len).min().unwrap_or(1);
    let analysis = analyze_labelled(&pool, &selectors, &default_ns(n_max))?;
    let report = CurvesReport {
        pool: args.pool.display().to_string(),
        proxies: args
            .proxies
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        gold: gold_source.clone(),
        seconds: started.elapsed().as_secs_f64(),
        analysis,
    };
    let analysis = &report.analysis;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_atomic(
        &args.out.join("report.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    let title = format!("Best-of-n on {}", args.pool.display());
    write_atomic(
        &args.out.join("goodhart.svg"),
        rewardkit_report::goodhart_svg(analysis, &title).as_bytes(),
    )?;
    let md = rewardkit_report::analysis_markdown(analysis, &title, &gold_source);
    write_atomic(&args.out.join("report.md"), md.as_bytes())?;
    eprintln!(
        "wrote report.json, report.md and goodhart.svg to {} ({:.0} s)",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    if args.json {
        print_json(&report)
    } else {
        print_text(&md)
    }
}
