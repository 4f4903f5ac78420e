//! `rewardkit data …`: statistics and splits of preference data.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use rewardkit_data::{load, DataStats, Dataset, Format, LoadOptions, SplitConfig, SplitKey};
use rewardkit_tokenize::{InputStyle, RewardTokenizer, TokenLengthStats};

use super::{print_json, print_text, write_atomic};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Account for every row (pairs kept, ties, drops with reasons), describe lengths in
    /// characters, words and tokens, and give the "pick the longer response" baseline.
    Stats(StatsArgs),
    /// Split into train and eval files by a stable hash of each pair and a seed (independent of
    /// file order), after exact de-duplication. Writes TRL-style JSONL.
    Split(SplitArgs),
    /// Preference cycles: group pairs by prompt (several responses compared per prompt, as in
    /// PandaLM), count intransitive triples of each prompt's majority relation, and measure what
    /// they cost a Bradley-Terry fit (a single score per response).
    Cycles(CyclesArgs),
    /// Add pairs that teach what the audit checks: correction pairs (the user asserts a wrong
    /// answer; chosen corrects, rejected agrees) from the training half of GSM8K and TruthfulQA,
    /// and counterfactual pairs (a chosen response preferred to its information-free edit:
    /// filler, flattering opener, hedges, repeated sentence, bulleted list), with wordings and
    /// phrases the audit does not use. Writes the pairs and the added ones, each added pair with
    /// a `source`; `data stats` counts them.
    Augment(AugmentArgs),
}

/// How `data augment` and `train --augment` add pairs.
#[derive(Args, Clone, Default)]
pub struct AugmentFlags {
    /// Share of the augmented data that is added pairs, in [0, 1) [default: 0.2].
    #[arg(long)]
    pub augment_ratio: Option<f64>,
    /// Share of the added pairs that are correction pairs when --augment-gsm8k or
    /// --augment-truthfulqa is given [default: 0.5].
    #[arg(long)]
    pub augment_correction_share: Option<f64>,
    /// GSM8K `test.jsonl`: correction pairs from its training half (never the audit's questions).
    #[arg(long)]
    pub augment_gsm8k: Option<PathBuf>,
    /// TruthfulQA's CSV: correction pairs from its training half.
    #[arg(long)]
    pub augment_truthfulqa: Option<PathBuf>,
    /// Counterfactual edits, comma-separated [default: filler, flattering_opener, hedges,
    /// repeat_sentence, bullet_list]; `none` for correction pairs only.
    #[arg(long, value_delimiter = ',')]
    pub augment_edits: Vec<String>,
    /// Seed of the sampling and the phrases [default: 0].
    #[arg(long)]
    pub augment_seed: Option<u64>,
}

impl AugmentFlags {
    /// The config these flags give (unset ones at their defaults).
    pub fn config(&self) -> anyhow::Result<rewardkit_audit::AugmentConfig> {
        self.apply(rewardkit_audit::AugmentConfig::default())
    }

    /// `base` (a config file's `[augment]` table) with the flags that are set replacing its
    /// values.
    pub fn apply(
        &self,
        base: rewardkit_audit::AugmentConfig,
    ) -> anyhow::Result<rewardkit_audit::AugmentConfig> {
        let mut c = base;
        c.ratio = self.augment_ratio.unwrap_or(c.ratio);
        c.correction_share = self.augment_correction_share.unwrap_or(c.correction_share);
        if self.augment_gsm8k.is_some() {
            c.gsm8k.clone_from(&self.augment_gsm8k);
        }
        if self.augment_truthfulqa.is_some() {
            c.truthfulqa.clone_from(&self.augment_truthfulqa);
        }
        c.seed = self.augment_seed.unwrap_or(c.seed);
        if self.augment_edits.iter().any(|e| e == "none") {
            c.counterfactual.clear();
        } else if !self.augment_edits.is_empty() {
            c.counterfactual = self
                .augment_edits
                .iter()
                .map(|e| {
                    rewardkit_audit::Probe::parse(e)
                        .ok_or_else(|| crate::Usage(format!("--augment-edits: unknown edit `{e}`")))
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(c)
    }
}

/// Pairs plus their augmentation, with a one-line account on stderr.
pub fn augmented(
    pairs: Vec<rewardkit_data::PreferencePair>,
    config: &rewardkit_audit::AugmentConfig,
) -> anyhow::Result<(
    Vec<rewardkit_data::PreferencePair>,
    rewardkit_audit::AugmentReport,
)> {
    let a = rewardkit_audit::augment(&pairs, config)?;
    let kinds: Vec<String> = a
        .report
        .added
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    eprintln!(
        "augment: {} pairs added to {} ({:.1}% of the result): {}",
        a.pairs.len(),
        a.report.original,
        100.0 * a.report.achieved_ratio,
        kinds.join(", ")
    );
    for s in &a.report.shortfall {
        eprintln!("augment: short: {s}");
    }
    let mut all = pairs;
    all.extend(a.pairs);
    Ok((all, a.report))
}

#[derive(Args)]
pub struct AugmentArgs {
    /// Preference files to augment (the training data: augment after splitting off eval).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    flags: AugmentFlags,
    /// Where the pairs and the added pairs go (TRL-style JSONL).
    #[arg(long, short)]
    out: PathBuf,
    /// Print the report (what was added, any shortfall) as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn augment(args: AugmentArgs) -> anyhow::Result<()> {
    let config = args.flags.config()?;
    let data = args.read.load(&args.files, false)?;
    let (pairs, report) = augmented(data.pairs, &config)?;
    let mut buf = Vec::new();
    for p in &pairs {
        serde_json::to_writer(&mut buf, p)?;
        buf.write_all(b"\n")?;
    }
    write_atomic(&args.out, &buf)?;
    eprintln!("wrote {} pairs to {}", pairs.len(), args.out.display());
    if args.json {
        print_json(&report)?;
    }
    Ok(())
}

#[derive(Args)]
pub struct CyclesArgs {
    /// Preference files (ties count half a win each).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// MM iterations per Bradley-Terry fit at most.
    #[arg(long, default_value_t = 20_000, value_parser = super::at_least_one)]
    iterations: usize,
    /// Print JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

fn cycles(args: CyclesArgs) -> anyhow::Result<()> {
    let data = args.read.load(&args.files, false)?;
    let c = rewardkit_goodhart::cycles::cycles_in_pairs(&data.pairs, args.iterations);
    if args.json {
        return super::print_json(&c);
    }
    let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.1}%", 100.0 * v));
    super::print_text(&format!(
        "{} prompts with ≥ 3 responses and ≥ 3 comparisons ({} comparisons)\n\
         {} of them have a preference cycle; {} intransitive triples in all\n\
         Bradley-Terry (one score per response, fitted per prompt) gives up {:.2} nats \
         ({:.4} per comparison) against the saturated model\n\
         BT fit orders {} of decided comparisons as labelled: {} in prompts without cycles, {} in prompts with cycles\n",
        c.tournaments,
        c.comparisons,
        c.tournaments_with_cycles,
        c.cycles,
        c.bt_cost_nats,
        c.bt_cost_per_comparison,
        pct(c.bt_accuracy),
        pct(c.bt_accuracy_acyclic),
        pct(c.bt_accuracy_cyclic),
    ))
}

/// How preference files are read (shared by every command that reads them).
#[derive(Args, Clone)]
pub struct ReadArgs {
    /// Data layout of every file; detected per file from its first record when omitted.
    ///
    /// trl: {"prompt"?, "chosen", "rejected"} as strings or {role, content} message lists.
    /// hh: Anthropic HH-RLHF transcripts, split at the last Assistant turn.
    /// pairwise: instruction/input, response1/response2 and annotator votes (0 = tie), as
    /// PandaLM.
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,
    /// Count and list malformed records instead of failing on the first one.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Keep exact duplicate pairs (dropped by default, and counted).
    #[arg(long)]
    pub keep_duplicates: bool,
    /// The field of each record holding its soft label: the probability in [0, 1] that chosen
    /// is better (null: a hard label; below 0.5 the responses are swapped; 0.5 is a tie). Every
    /// record must have it. Default: `p_chosen` where a record has it, as AlpacaEval's
    /// annotations do.
    #[arg(long, value_name = "FIELD")]
    pub label_field: Option<String>,
}

impl ReadArgs {
    pub fn load(&self, files: &[PathBuf], subset_from_file: bool) -> anyhow::Result<Dataset> {
        let options = LoadOptions {
            format: self.format,
            skip_invalid: self.skip_invalid,
            keep_duplicates: self.keep_duplicates,
            subset_from_file,
            label_field: self.label_field.clone(),
        };
        let data = load(files, &options)?;
        let r = &data.report;
        eprintln!(
            "read {} rows from {} file(s): {} pairs, {} dropped",
            r.rows_read,
            r.files.len(),
            r.pairs,
            r.dropped_total()
        );
        Ok(data)
    }
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

#[derive(Args)]
pub struct StatsArgs {
    /// Preference files: .jsonl, .jsonl.gz, .json (array) or .parquet; `-` reads standard
    /// input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// Name each pair without a `subset` field after its file, to count pairs per file.
    #[arg(long)]
    subset_from_file: bool,
    /// A tokenizer (tokenizer.json, or a folder with it or with vocab.json + merges.txt) for
    /// token lengths and truncation counts.
    #[arg(long, env = "REWARDKIT_TOKENIZER")]
    tokenizer: Option<PathBuf>,
    /// How inputs are built when counting tokens.
    #[arg(long, value_enum, default_value = "pair")]
    style: InputStyle,
    /// Maximum input length in tokens, to count what would be truncated.
    #[arg(long, default_value_t = 512, value_parser = super::at_least_one)]
    max_length: usize,
    /// Print JSON on stdout instead of a table (every dropped row is listed).
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct StatsOutput<'a> {
    #[serde(flatten)]
    stats: &'a DataStats,
    tokens: Option<&'a TokenLengthStats>,
}

#[derive(Args)]
pub struct SplitArgs {
    /// Preference files to split.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// Share of pairs that go to the eval file, in [0, 1].
    #[arg(long, default_value_t = 0.2, value_parser = super::fraction)]
    eval_fraction: f64,
    /// Seed of the hash; another seed gives another split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// What the hash is taken of.
    #[arg(long, value_enum, default_value = "pair")]
    by: SplitKey,
    /// Where to write the training pairs (JSONL).
    #[arg(long)]
    train_out: PathBuf,
    /// Where to write the evaluation pairs (JSONL).
    #[arg(long)]
    eval_out: PathBuf,
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Stats(args) => stats(args),
        DataCommand::Split(args) => split(args),
        DataCommand::Cycles(args) => cycles(args),
        DataCommand::Augment(args) => augment(args),
    }
}

fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let data = args.read.load(&args.files, args.subset_from_file)?;
    let stats = DataStats::of(&data);
    let tokens = match &args.tokenizer {
        Some(path) => {
            let tok = RewardTokenizer::from_path(path, args.style)?;
            Some(TokenLengthStats::of(&tok, &data.pairs, args.max_length)?)
        }
        None => None,
    };
    if args.json {
        print_json(&StatsOutput {
            stats: &stats,
            tokens: tokens.as_ref(),
        })
    } else {
        print_text(&rewardkit_report::stats_table(&stats, tokens.as_ref()))?;
        if tokens.is_none() {
            eprintln!("(token lengths: pass --tokenizer)");
        }
        Ok(())
    }
}

fn split(args: SplitArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.eval_fraction),
        "--eval-fraction must be in [0, 1], got {}",
        args.eval_fraction
    );
    let data = args.read.load(&args.files, false)?;
    let config = SplitConfig {
        eval_fraction: args.eval_fraction,
        seed: args.seed,
        key: args.by,
    };
    let (train, eval) = config.split(data.pairs);
    for (path, pairs) in [(&args.train_out, &train), (&args.eval_out, &eval)] {
        let mut buf = Vec::new();
        for p in pairs {
            serde_json::to_writer(&mut buf, p)?;
            buf.write_all(b"\n")?;
        }
        write_atomic(path, &buf)?;
    }
    eprintln!(
        "wrote {} train pairs to {} and {} eval pairs to {}",
        train.len(),
        args.train_out.display(),
        eval.len(),
        args.eval_out.display()
    );
    Ok(())
}
