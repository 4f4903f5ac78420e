//! `rewardkit`: train, evaluate, audit and serve reward models for RLHF.
//!
//! Logs and progress go to stderr, results to stdout (a table, or JSON with `--json`).
//! Exit codes: 0 success, 1 failure, 2 bad command line, 3 bad input data (the message names the
//! file and line), 4 `audit --fail-on` found a flag.

// The binary is where printing belongs: results on stdout, logs and progress on stderr (the
// workspace lints forbid printing everywhere else).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;
mod progress;
mod signals;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Reward models for RLHF: read preference data, train reward models, evaluate and calibrate
/// them, audit them for reward hacking, and measure Goodhart's law (`rewardkit demo`).
///
/// Results go to stdout (readable tables, or JSON with --json); logs and progress to stderr.
///
/// Exit codes: 0 success · 1 failure · 2 bad command line · 3 bad input data (the message names
/// FILE:LINE and what is wrong) · 4 `audit --fail-on` found a flag.
#[derive(Parser)]
#[command(name = "rewardkit", version, max_term_width = 100)]
struct Cli {
    /// Threads for tensor work (default: all cores).
    #[arg(long, global = true, env = "REWARDKIT_THREADS")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and prepare preference data (TRL, HH-RLHF, labelled pairwise; JSONL, gzip, JSON,
    /// Parquet).
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Evaluate a reward model (or its saved scores, or a baseline): accuracy, reward gap,
    /// calibration, per subset.
    Eval(commands::eval::EvalArgs),
    /// Train a reward model on preference pairs (Bradley-Terry loss), with checkpoints and
    /// exact resume.
    Train(Box<commands::train::TrainArgs>),
    /// Score (prompt, response) rows with a reward model.
    Score(commands::score::ScoreArgs),
    /// Audit a reward model for reward hacking: feature correlations, a ridge probe,
    /// counterfactual probes and a sycophancy audit, with report.json, report.md and plots.
    Audit(Box<commands::audit::AuditArgs>),
    /// Goodhart's law on real pools: best-of-n curves of proxy against gold, fitted, with
    /// mitigations (ensembles, KL penalty); gold-labelled pairs for verifiers and retraining.
    #[command(subcommand)]
    Goodhart(commands::goodhart::GoodhartCommand),
    /// Serve reward models over HTTP for RL loops (OpenRLHF, verl, TRL): batching across
    /// requests, backpressure (429), ensembles, Prometheus metrics and a live reward-hacking
    /// monitor. Stops on SIGINT or SIGTERM after answering what it accepted.
    Serve(Box<commands::serve::ServeArgs>),
    /// Sample responses to prompts from a policy model (a pool for best-of-n), with their
    /// log-probabilities (and a reference model's, for a KL penalty).
    Generate(commands::generate::GenerateArgs),
    /// Supervised fine-tuning of a decoder on (prompt, response) rows: cross-entropy on the
    /// response tokens, with train's checkpoints, resume and signals.
    Sft(Box<commands::sft::SftArgs>),
    /// On-policy RL of a decoder against a reward model (or an ensemble, or a baseline) with a
    /// KL penalty to a frozen reference: RLOO/GRPO advantages, PPO clipping, exact resume.
    Rl(Box<commands::rl::RlArgs>),
    /// LoRA adapters (written by train, sft and rl with --lora-rank, in PEFT's layout): `merge`
    /// folds one into plain weights.
    Lora(commands::lora::LoraArgs),
    /// Goodhart's law end to end in a built-in world: biased labels, a biased reward model and
    /// its audit, gold falling while proxy reward rises under best-of-n, and which mitigation
    /// helps. Nothing is downloaded; deterministic from --seed. Uses one thread unless
    /// --threads says otherwise (faster for its tiny models).
    Demo(commands::demo::DemoArgs),
}

/// Exit codes, as documented in `--help`.
#[derive(Debug, Clone, Copy)]
pub enum Exit {
    Failure = 1,
    Usage = 2,
    BadInput = 3,
}

/// A command line that cannot work as given (a value out of range, a missing flag, flags that
/// contradict what is on disk): exit code 2, like clap's own errors.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// mimalloc, told never to return freed memory to the kernel: tensor ops allocate and free
/// buffers of the same sizes over and over, and glibc (or mimalloc's default 10 ms purge) gave
/// each one fresh zeroed pages (measured on 2 cores: MiniLM training 2.6 → 3.9 pairs/s; scoring
/// 200 HH pairs 18.7 s → 12.3 s, system time 7.4 s → 0.5 s).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in `mimalloc.h` (v2 and v3: the member just before
/// `mi_option_use_numa_nodes`, which libmimalloc-sys exports as 16); -1 = never purge.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_use_numa_nodes - 1;

fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return; // the user's choice, read by mimalloc itself
    }
    // SAFETY: sets a process-wide allocator option; any value is valid.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if let Some(n) = cli.threads.filter(|&n| n > 0) {
        // candle's CPU kernels read these when they start their thread pools.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    // A non-zero exit code that is not an error: `audit --fail-on` found what it was told to
    // fail on (4), a signal stopped `train` after its checkpoint (130).
    let mut flagged = 0u8;
    let result = match cli.command {
        Command::Data(cmd) => commands::data::run(cmd),
        Command::Eval(args) => commands::eval::run(args),
        Command::Train(args) => commands::train::run(*args).map(|code| {
            flagged = code;
        }),
        Command::Score(args) => commands::score::run(args),
        Command::Audit(args) => commands::audit::run(*args).map(|code| {
            flagged = code;
        }),
        Command::Serve(args) => commands::serve::run(*args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Sft(args) => commands::sft::run(*args).map(|code| {
            flagged = code;
        }),
        Command::Rl(args) => commands::rl::run(*args).map(|code| {
            flagged = code;
        }),
        Command::Lora(args) => commands::lora::run(args),
        Command::Goodhart(cmd) => commands::goodhart::run(cmd),
        Command::Demo(args) => commands::demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::from(flagged),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::from(exit_code(&e) as u8)
        }
    }
}

/// The error and its causes, `: `-separated, each said once: a cause whose text the previous
/// one already ends with (`PATH: No such file…` over `No such file…`) is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if previous.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        previous = text;
    }
    out
}

/// The reader of stdout went away (`rewardkit … | head`): not a failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// Bad input data (a malformed file, a missing field) is told apart from other failures; an
/// error from the operating system (a missing file, a failed read) is a failure, whichever
/// crate's error carries it.
fn exit_code(e: &anyhow::Error) -> Exit {
    if e.chain()
        .any(|c| c.is::<std::io::Error>() || c.is::<rewardkit_io::IoError>())
    {
        return Exit::Failure;
    }
    for cause in e.chain() {
        if cause.is::<Usage>()
            || cause
                .downcast_ref::<rewardkit_train::TrainError>()
                .is_some_and(|t| t.is_usage())
            || cause
                .downcast_ref::<rewardkit_rl::RlError>()
                .is_some_and(|t| t.is_usage())
            || matches!(
                cause.downcast_ref::<rewardkit_audit::AuditError>(),
                Some(rewardkit_audit::AuditError::Config(_))
            )
        {
            return Exit::Usage;
        }
        if cause.is::<rewardkit_data::DataError>()
            || cause.is::<rewardkit_data::RowError>()
            || cause.is::<rewardkit_eval::EvalError>()
            || cause.is::<rewardkit_tokenize::TokenizeError>()
            || cause.is::<rewardkit_data::MissingScore>()
            || matches!(
                cause.downcast_ref::<rewardkit_train::TrainError>(),
                Some(rewardkit_train::TrainError::Encode { .. })
            )
            || matches!(
                cause.downcast_ref::<rewardkit_audit::AuditError>(),
                Some(rewardkit_audit::AuditError::Input { .. })
            )
        {
            let io = matches!(
                cause.downcast_ref::<rewardkit_data::DataError>(),
                Some(rewardkit_data::DataError::Io { .. })
            );
            if !io {
                return Exit::BadInput;
            }
        }
    }
    Exit::Failure
}
