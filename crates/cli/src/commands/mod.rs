pub mod audit;
pub mod data;
pub mod demo;
pub mod demo_rl;
pub mod eval;
pub mod generate;
pub mod goodhart;
pub mod lora;
pub mod lora_args;
pub mod policy_args;
pub mod rl;
pub mod score;
pub mod scoring_args;
pub mod serve;
pub mod sft;
pub mod train;

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Writes `bytes` to `path` atomically (`rewardkit_io::write_file`: temporary file, fsync,
/// rename; the temporary file is removed on failure).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    Ok(rewardkit_io::write_file(path, bytes)?)
}

/// Writes `report.json` (`report` as pretty JSON) and `report.md` (`markdown`) into `out`,
/// each atomically.
pub fn write_report_files<T: serde::Serialize>(
    out: &Path,
    report: &T,
    markdown: &str,
) -> anyhow::Result<()> {
    write_atomic(
        &out.join("report.json"),
        &serde_json::to_vec_pretty(report)?,
    )?;
    write_atomic(&out.join("report.md"), markdown.as_bytes())
}

/// Prints text on stdout; a closed pipe (`| head`) surfaces as an error that main treats as
/// a quiet success.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Reads a config file (`-` is standard input; a byte-order mark is skipped): TOML when the
/// name ends in `.toml`, JSON otherwise.
pub fn read_config<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = rewardkit_io::read_to_string(path)?;
    if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).with_context(|| format!("{}: invalid {what}", path.display()))
    } else {
        serde_json::from_str(&text).with_context(|| format!("{}: invalid {what}", path.display()))
    }
}

/// clap's parser for counts that must be at least 1 (`--batch-size 0` is a bad command line).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// clap's parser for a share in [0, 1].
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("must be between 0 and 1, got {v}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Loads a reward model for scoring only (no autograd tracking), on the CPU.
pub fn load_for_scoring(
    dir: &Path,
    max_length: Option<usize>,
    input_style: Option<rewardkit_tokenize::InputStyle>,
) -> anyhow::Result<rewardkit_model::LoadedModel> {
    let options = rewardkit_model::LoadOptions {
        max_length,
        input_style,
        inference: true,
        ..Default::default()
    };
    Ok(rewardkit_model::load(
        dir,
        &options,
        &candle_core::Device::Cpu,
    )?)
}
