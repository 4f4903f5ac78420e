//! `rewardkit lora merge`: fold a LoRA adapter folder into plain weights.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use rewardkit_model::{LoadOptions, Policy};

#[derive(Args)]
pub struct LoraArgs {
    #[command(subcommand)]
    command: LoraCommand,
}

#[derive(Subcommand)]
enum LoraCommand {
    /// Fold an adapter into its base, W + (alpha/r)·B·A, and write a normal model folder (a
    /// reward model when the adapter folder has rewardkit.json, else a policy) that loads
    /// without the base.
    Merge(MergeArgs),
}

#[derive(Args)]
struct MergeArgs {
    /// The adapter folder (adapter_config.json + adapter_model.safetensors, e.g. a run's
    /// final/); its base_model_name_or_path must point at the base model.
    adapter: PathBuf,
    /// The folder to write (refused when it exists and is not empty; written atomically).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: LoraArgs) -> anyhow::Result<()> {
    let LoraCommand::Merge(m) = args.command;
    if !rewardkit_model::peft::is_adapter_dir(&m.adapter) {
        return Err(crate::Usage(format!(
            "{}: no adapter_config.json (not a LoRA adapter folder)",
            m.adapter.display()
        ))
        .into());
    }
    if std::fs::read_dir(&m.out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(crate::Usage(format!("{}: exists and is not empty", m.out.display())).into());
    }
    if m.adapter.join("rewardkit.json").exists() {
        let model = rewardkit_model::load(
            &m.adapter,
            &LoadOptions::default(),
            &candle_core::Device::Cpu,
        )
        .with_context(|| format!("loading {}", m.adapter.display()))?;
        let merged = model.merged()?;
        rewardkit_io::write_dir(&m.out, |tmp| {
            rewardkit_model::save(&merged, tmp, serde_json::json!({})).map_err(anyhow::Error::from)
        })?;
    } else {
        let policy = Policy::from_dir(&m.adapter)
            .with_context(|| format!("loading {}", m.adapter.display()))?;
        let merged = policy.merged()?;
        rewardkit_io::write_dir(&m.out, |tmp| merged.save(tmp).map_err(anyhow::Error::from))?;
    }
    eprintln!("merged {} into {}", m.adapter.display(), m.out.display());
    Ok(())
}
