pub mod audit;
pub mod data;
pub mod demo;
pub mod eval;
pub mod generate;
pub mod goodhart;
pub mod score;
pub mod train;

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Writes `bytes` to `path` atomically (`rewardkit_io::write_file`: temporary file, fsync,
/// rename; the temporary file is removed on failure).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    Ok(rewardkit_io::write_file(path, bytes)?)
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

/// Reads a config file: TOML when the name ends in `.toml`, JSON otherwise.
pub fn read_config<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).with_context(|| format!("{}: invalid {what}", path.display()))
    } else {
        serde_json::from_str(&text).with_context(|| format!("{}: invalid {what}", path.display()))
    }
}

/// Loads a reward model for scoring only (no autograd tracking), on the CPU.
pub fn load_for_scoring(
    dir: &Path,
    max_length: Option<usize>,
) -> anyhow::Result<rewardkit_model::LoadedModel> {
    let options = rewardkit_model::LoadOptions {
        max_length,
        inference: true,
        ..Default::default()
    };
    Ok(rewardkit_model::load(
        dir,
        &options,
        &candle_core::Device::Cpu,
    )?)
}
