//! `rewardkit demo`: Goodhart's law end to end in the built-in world — biased labels, a biased
//! reward model (and its audit), gold falling while proxy reward rises under best-of-n, and
//! which mitigation helps. Nothing is downloaded; everything follows from the seed.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use indicatif::ProgressBar;

use rewardkit_demo::{run as run_demo, DemoConfig, DemoEvent};

use super::{print_json, print_text, read_config, write_atomic, write_report_files};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    command: Option<DemoCommand>,
    /// Demo settings (TOML or JSON with the fields of report.json's `config`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folder for report.json, report.md, goodhart.svg, audit/ and the trained models (models/).
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Seed of the world, labels, models and pools [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Print report.json on stdout instead of the story and tables.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum DemoCommand {
    /// Goodhart's law under RL: the base policy distilled into a tiny decoder, then RL against
    /// the biased proxy (β = 0, 0.01, 0.03, 0.1), the control, ensembles (min, mean − λ·std)
    /// and iteratively retrained reward models; every step to rl_curves.jsonl, goodhart_rl.svg.
    Rl(super::demo_rl::DemoRlArgs),
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if let Some(DemoCommand::Rl(rl)) = args.command {
        return super::demo_rl::run(rl);
    }
    default_to_one_thread();
    let mut config: DemoConfig = match &args.config {
        Some(p) => read_config(p, "demo config")?,
        None => DemoConfig::default(),
    };
    config.seed = args.seed.unwrap_or(config.seed);
    let out = &args.out;
    let started = Instant::now();
    let mut printer = EventPrinter::new(started);
    let report = run_demo(&config, out, &mut |event| printer.on(event))?;

    let audit_dir = out.join("audit");
    write_atomic(
        &audit_dir.join("report.json"),
        &serde_json::to_vec_pretty(&report.audit)?,
    )?;
    write_atomic(
        &audit_dir.join("report.md"),
        rewardkit_report::audit_markdown(&report.audit).as_bytes(),
    )?;
    for (name, svg) in rewardkit_report::audit_plots(&report.audit) {
        write_atomic(&audit_dir.join(name), svg.as_bytes())?;
    }
    write_report_files(out, &report, &rewardkit_report::demo_markdown(&report))?;
    let title = format!(
        "Best-of-n in the built-in world (seed {}): gold falls, proxy rises",
        report.config.seed
    );
    write_atomic(
        &out.join("goodhart.svg"),
        rewardkit_report::goodhart_svg(&report.analysis, &title).as_bytes(),
    )?;
    eprintln!(
        "demo took {:.1} s; wrote report.json, report.md, goodhart.svg, audit/ and models/ to {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    if args.json {
        print_json(&report)
    } else {
        print_text(&rewardkit_report::demo_text(&report))
    }
}

/// The demo's models are tiny: one thread trains them faster than two (on the 2-core machine,
/// under the same background load: 29 s per model for 5 epochs with one thread, 31 s for 4
/// epochs with two). `--threads` (or REWARDKIT_THREADS) overrides; main has set these variables
/// by then, before any tensor work starts.
pub(super) fn default_to_one_thread() {
    for var in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, "1");
        }
    }
}

/// Shows the demo's events on stderr: a progress bar per stage, a line when it finishes, logs.
pub(super) struct EventPrinter {
    started: Instant,
    bar: Option<ProgressBar>,
}

impl EventPrinter {
    pub(super) fn new(started: Instant) -> Self {
        EventPrinter { started, bar: None }
    }

    pub(super) fn on(&mut self, event: DemoEvent) {
        match event {
            DemoEvent::Stage { name, total, unit } => {
                let pb = crate::progress::bar(total as u64, unit);
                pb.set_message(name.to_string());
                self.bar = Some(pb);
            }
            DemoEvent::Progress { done } => {
                if let Some(pb) = &self.bar {
                    pb.set_position(done as u64);
                }
            }
            DemoEvent::Finished { name, seconds } => {
                if let Some(pb) = self.bar.take() {
                    pb.finish_and_clear();
                }
                eprintln!(
                    "[{:>5.1} s] {name}: {seconds:.1} s",
                    self.started.elapsed().as_secs_f64()
                );
            }
            DemoEvent::Log(line) => eprintln!("{line}"),
        }
    }
}
