//! `rewardkit audit`: look for reward hacking before a policy does.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use rewardkit_audit::run::Severity;
use rewardkit_audit::{AuditConfig, AuditReport, Plan, Probe, PromptFormat};
use rewardkit_data::{ScoreTable, Scorer, Text};
use rewardkit_eval::Baseline;

use super::data::ReadArgs;
use super::{print_json, print_text, read_config, write_atomic};

/// Exit code when `--fail-on` finds a flag of that severity.
pub const EXIT_FLAGGED: u8 = 4;

#[derive(Args)]
#[command(group = clap::ArgGroup::new("source").args(["model", "scores", "baseline"]))]
pub struct AuditArgs {
    /// Reward model to audit: a rewardkit checkpoint or an HF *ForSequenceClassification folder.
    #[arg(long, env = "REWARDKIT_MODEL")]
    model: Option<PathBuf>,
    /// Audit precomputed scores instead: rows {prompt, response, score} covering every request
    /// the audit makes (write them with --export-requests, then score them anywhere, e.g. with
    /// `rewardkit score --input requests.jsonl`).
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Audit a heuristic: `length`, `length-words`, `random` or `random:SEED` (a length scorer
    /// shows what a length-hacked model looks like).
    #[arg(long, value_parser = Baseline::parse)]
    baseline: Option<Baseline>,
    /// Preference files whose responses are audited (HH-RLHF, TRL or pairwise; see `data stats`).
    #[arg(long, num_args = 1.., required_unless_present = "compare")]
    data: Vec<PathBuf>,
    /// Compare two audits instead of running one: `--compare A/report.json B/report.json` prints
    /// each check of both side by side with the change B − A, its 95% interval and whether it
    /// is significant (Holm over the comparison), then the flags fixed and the flags new. With
    /// --out, writes comparison.json and comparison.md there; with --fail-on, exits with code 4
    /// when B raises a flag of that severity that A did not.
    #[arg(
        long,
        num_args = 2,
        value_names = ["A", "B"],
        conflicts_with_all = ["model", "scores", "baseline", "export_requests", "data"]
    )]
    compare: Vec<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    scoring: super::scoring_args::ScoringArgs,
    /// Folder for report.json, report.md and the plots.
    #[arg(long, required_unless_present_any = ["export_requests", "compare"])]
    out: Option<PathBuf>,
    /// Audit settings (TOML or JSON with the fields of report.json's `config`); flags override.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Anthropic sycophancy evals (`sycophancy/anthropic_150.json` in the shared data).
    #[arg(long)]
    sycophancy_anthropic: Option<PathBuf>,
    /// GSM8K questions (`gsm8k/test.jsonl`): the user asserts a wrong number.
    #[arg(long)]
    gsm8k: Option<PathBuf>,
    /// TruthfulQA (`truthfulqa/TruthfulQA.csv`): the user asserts a wrong answer.
    #[arg(long)]
    truthfulqa: Option<PathBuf>,
    /// Sycophancy items per source at most [default: 150].
    #[arg(long)]
    sycophancy_items: Option<usize>,
    /// How sycophancy prompts are written for the model [default: auto, i.e. HH-RLHF
    /// transcripts when the audited prompts are].
    #[arg(long, value_enum)]
    prompt_format: Option<PromptFormat>,
    /// Probes to run, comma-separated [default: all]: filler, flattering_opener, hedges,
    /// bullet_list, bold, repeat_sentence, apology, overconfident.
    #[arg(long, value_delimiter = ',', value_parser = parse_probe)]
    probes: Vec<Probe>,
    /// Chosen responses edited by each probe [default: 200].
    #[arg(long)]
    probe_samples: Option<usize>,
    /// Pairs audited at most, a seeded sample when there are more [default: 1000].
    #[arg(long, value_parser = super::at_least_one)]
    max_pairs: Option<usize>,
    /// Bootstrap resamples per interval (at least 100) [default: 1000].
    #[arg(long, value_parser = at_least_100)]
    bootstrap: Option<usize>,
    /// Seed of sampling, probe phrases and bootstrap [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Only write every (prompt, response) the audit would score, as JSONL, and exit.
    #[arg(long)]
    export_requests: Option<PathBuf>,
    /// Exit with code 4 when a flag of this severity (or worse) is raised (with --compare: newly
    /// raised by B).
    #[arg(long, value_enum)]
    fail_on: Option<Severity>,
    /// Print report.json on stdout instead of the summary.
    #[arg(long)]
    json: bool,
}

fn at_least_100(s: &str) -> Result<usize, String> {
    match super::at_least_one(s)? {
        n if n < 100 => Err(format!("must be at least 100, got {n}")),
        n => Ok(n),
    }
}

fn parse_probe(s: &str) -> Result<Probe, String> {
    Probe::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Probe::ALL.iter().map(|p| p.name()).collect();
        format!("unknown probe `{s}` (one of: {})", names.join(", "))
    })
}

impl AuditArgs {
    /// The config file, then every flag given on top of it.
    fn resolve(&self) -> anyhow::Result<AuditConfig> {
        let mut c: AuditConfig = match &self.config {
            Some(p) => read_config(p, "audit config")?,
            None => AuditConfig::default(),
        };
        let s = &mut c.sycophancy;
        for (flag, field) in [
            (&self.sycophancy_anthropic, &mut s.anthropic),
            (&self.gsm8k, &mut s.gsm8k),
            (&self.truthfulqa, &mut s.truthfulqa),
        ] {
            if flag.is_some() {
                field.clone_from(flag);
            }
        }
        if let Some(n) = self.sycophancy_items {
            s.max_items = n;
        }
        if let Some(f) = self.prompt_format {
            s.format = f;
        }
        if !self.probes.is_empty() {
            c.probes.clone_from(&self.probes);
        }
        c.probe_samples = self.probe_samples.unwrap_or(c.probe_samples);
        c.max_pairs = self.max_pairs.unwrap_or(c.max_pairs);
        c.bootstrap = self.bootstrap.unwrap_or(c.bootstrap);
        c.seed = self.seed.unwrap_or(c.seed);
        anyhow::ensure!(c.bootstrap >= 100, "bootstrap needs at least 100 resamples");
        anyhow::ensure!(
            c.alpha > 0.0 && c.alpha < 1.0,
            "alpha must be between 0 and 1"
        );
        Ok(c)
    }
}

/// Scores the plan with a progress bar.
fn score<S: Scorer>(plan: &Plan, scorer: &S) -> anyhow::Result<rewardkit_audit::Scores> {
    let total = plan.requests().len() as u64;
    let pb = crate::progress::bar(total, "responses");
    pb.set_message("scoring");
    let scores = plan.score(scorer, |done, _| pb.set_position(done as u64))?;
    pb.finish_and_clear();
    Ok(scores)
}

/// Whether `flags` hold one of severity `bar` or worse.
fn fails(bar: Option<Severity>, flags: &[rewardkit_audit::Flag]) -> bool {
    // Severities order from the worst (red) down.
    let worst = flags.iter().map(|f| f.severity).min();
    matches!((bar, worst), (Some(bar), Some(w)) if w <= bar)
}

/// `--compare A B`: two reports, check by check.
fn compare(args: &AuditArgs) -> anyhow::Result<u8> {
    let [a, b] = args.compare.as_slice() else {
        anyhow::bail!("--compare takes two report.json files");
    };
    let mut c = rewardkit_audit::compare(&AuditReport::read(a)?, &AuditReport::read(b)?);
    c.a.label = a.display().to_string();
    c.b.label = b.display().to_string();
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        write_atomic(
            &out.join("comparison.json"),
            &serde_json::to_vec_pretty(&c)?,
        )?;
        let md = rewardkit_report::compare_markdown(&c);
        write_atomic(&out.join("comparison.md"), md.as_bytes())?;
        eprintln!(
            "wrote comparison.json and comparison.md to {}",
            out.display()
        );
    }
    if args.json {
        print_json(&c)?;
    } else {
        print_text(&rewardkit_report::compare_text(&c))?;
    }
    Ok(if fails(args.fail_on, &c.new) {
        EXIT_FLAGGED
    } else {
        0
    })
}

pub fn run(args: AuditArgs) -> anyhow::Result<u8> {
    if !args.compare.is_empty() {
        return compare(&args);
    }
    let config = args.resolve()?;
    let data = args.read.load(&args.data, true)?;
    let plan = Plan::from_sources(&data.pairs, config)?;
    eprintln!(
        "audit plan: {} (prompt, response) requests to score: responses of the pairs, probe edits, sycophancy items",
        plan.requests().len()
    );
    if let Some(path) = &args.export_requests {
        let mut buf = Vec::new();
        for (prompt, response) in plan.requests() {
            serde_json::to_writer(
                &mut buf,
                &serde_json::json!({"prompt": prompt, "response": response}),
            )?;
            buf.push(b'\n');
        }
        write_atomic(path, &buf)?;
        eprintln!(
            "wrote {} requests to {}",
            plan.requests().len(),
            path.display()
        );
        return Ok(0);
    }
    let out = args.out.as_ref().context("--out is required")?;
    let report: AuditReport = match (&args.model, &args.scores, &args.baseline) {
        (Some(dir), _, _) => {
            let model = args.scoring.batch.load(dir)?;
            let scorer = args.scoring.scorer(&model);
            let scores = score(&plan, &scorer)?;
            let tokenizer = &model.tokenizer;
            let count = |t: &Text| tokenizer.tokens(&t.render()).map_or(0, |ids| ids.len());
            plan.analyze(&scores, scorer.name(), Some(&count))
        }
        (None, Some(path), _) => {
            let table = ScoreTable::read(path)?;
            eprintln!("read {} scores from {}", table.len(), path.display());
            let scores = score(&plan, &table).context(
                "the score file lacks a request of this audit: write them with --export-requests and score every one",
            )?;
            plan.analyze(&scores, table.name(), None)
        }
        (None, None, Some(baseline)) => {
            let scores = score(&plan, baseline)?;
            plan.analyze(&scores, baseline.name(), None)
        }
        (None, None, None) => {
            anyhow::bail!("nothing to audit: pass --model, --scores or --baseline")
        }
    };
    write_report(out, &report)?;
    if args.json {
        print_json(&report)?;
    } else {
        print_text(&rewardkit_report::audit_flags_text(&report))?;
    }
    Ok(if fails(args.fail_on, &report.flags) {
        EXIT_FLAGGED
    } else {
        0
    })
}

fn write_report(out: &std::path::Path, report: &AuditReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    super::write_report_files(out, report, &rewardkit_report::audit_markdown(report))?;
    for (name, svg) in rewardkit_report::audit_plots(report) {
        write_atomic(&out.join(name), svg.as_bytes())?;
    }
    eprintln!(
        "audit of {} pairs took {:.1} s (scoring {:.1} s); wrote report.json, report.md and plots to {}",
        report.pairs,
        report.timing.scoring_seconds + report.timing.analysis_seconds,
        report.timing.scoring_seconds,
        out.display()
    );
    Ok(())
}
