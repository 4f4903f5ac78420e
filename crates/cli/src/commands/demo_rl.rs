//! `rewardkit demo rl`: Goodhart's law under RL in the built-in world — the base policy
//! distilled into a tiny decoder, RL against the biased proxy (several β), the control, the
//! ensembles and iteratively retrained reward models, gold measured at every step.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use rewardkit_demo::{run_rl, RlDemoConfig};

use super::demo::EventPrinter;
use super::{print_json, print_text, read_config, write_atomic, write_report_files};

#[derive(Args)]
pub struct DemoRlArgs {
    /// Settings (TOML or JSON with the fields of report.json's `config`: `demo` holds the
    /// world, labelers and reward models as in `rewardkit demo`; `decoder`, `sft`, `rl`, `runs`
    /// and `window` the rest).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folder for rl_curves.jsonl, report.json, report.md, goodhart_rl.svg and the models
    /// (models/: reward models, the decoder before and after SFT, retrained models).
    #[arg(long, default_value = "out/demo-rl")]
    out: PathBuf,
    /// Seed of the world, labels, models, decoder and every RL run [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Print report.json on stdout instead of the story and the table of runs.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DemoRlArgs) -> anyhow::Result<()> {
    super::demo::default_to_one_thread();
    let mut config: RlDemoConfig = match &args.config {
        Some(p) => read_config(p, "demo rl config")?,
        None => RlDemoConfig::default(),
    };
    config.seed = args.seed.unwrap_or(config.seed);
    let out = &args.out;
    let started = Instant::now();
    let mut printer = EventPrinter::new(started);
    let output = run_rl(&config, out, &mut |event| printer.on(event))?;
    let report = &output.report;
    let mut curves = Vec::new();
    for row in &output.rows {
        serde_json::to_writer(&mut curves, row)?;
        curves.push(b'\n');
    }
    write_atomic(&out.join("rl_curves.jsonl"), &curves)?;
    write_report_files(out, report, &rewardkit_report::rl_markdown(report))?;
    let summaries: Vec<_> = report.runs.iter().map(|r| r.summary.clone()).collect();
    let title = format!(
        "RL in the built-in world (seed {}): gold and proxy against √KL",
        report.config.seed
    );
    write_atomic(
        &out.join("goodhart_rl.svg"),
        rewardkit_report::goodhart_rl_svg(&summaries, Some(&report.best_of_n), &title).as_bytes(),
    )?;
    eprintln!(
        "demo rl took {:.1} s; wrote rl_curves.jsonl, report.json, report.md, goodhart_rl.svg and models/ to {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    if args.json {
        print_json(report)
    } else {
        print_text(&rewardkit_report::rl_text(report))
    }
}
