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
}

impl ReadArgs {
    pub fn load(&self, files: &[PathBuf], subset_from_file: bool) -> anyhow::Result<Dataset> {
        let options = LoadOptions {
            format: self.format,
            skip_invalid: self.skip_invalid,
            keep_duplicates: self.keep_duplicates,
            subset_from_file,
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
