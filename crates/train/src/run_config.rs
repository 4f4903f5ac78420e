//! The whole configuration of a training run: the schema of a `--config` file and of the `run`
//! field that every checkpoint's `rewardkit.json` records, so any tool can read it back.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use rewardkit_data::{Format, SplitConfig};
use rewardkit_model::{LoraConfig, Pooling};
use rewardkit_tokenize::InputStyle;

use crate::config::TrainConfig;

/// Everything a training run needs. A config file (TOML or JSON) holds these fields; the CLI's
/// flags override them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The starting model folder (or a `.gguf` file).
    pub model: Option<PathBuf>,
    /// Initialise every weight from `train.seed` instead of reading them.
    pub from_scratch: bool,
    pub pooling: Option<Pooling>,
    /// How prompt and response become one input, where not the architecture's own (an encoder
    /// trained as TRL does, on one segment: `sequence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_style: Option<InputStyle>,
    /// Training preference files.
    pub data: Vec<PathBuf>,
    /// Held-out preference files; without them `split` holds out a share of `data`.
    pub eval_data: Vec<PathBuf>,
    pub format: Option<Format>,
    /// The field of each record holding its soft label (see `LoadOptions::label_field` of
    /// rewardkit-data); `None` reads `p_chosen` where a record has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_field: Option<String>,
    pub split: SplitConfig,
    /// The run folder.
    pub out: Option<PathBuf>,
    pub train: TrainConfig,
    /// LoRA adapters (`lora.r > 0`): only they and the value head train.
    pub lora: LoraConfig,
}

impl RunConfig {
    /// Reads a run config from TOML (a `.toml` name) or JSON text; `origin` names it in errors.
    pub fn parse(text: &str, toml: bool, origin: &str) -> Result<Self, String> {
        let config: RunConfig = if toml {
            ::toml::from_str(text).map_err(|e| format!("{origin}: invalid run config: {e}"))?
        } else {
            serde_json::from_str(text).map_err(|e| format!("{origin}: invalid run config: {e}"))?
        };
        config
            .train
            .validate()
            .map_err(|e| format!("{origin}: invalid training configuration: {e}"))?;
        Ok(config)
    }

    /// A run config from an already parsed document (a config file whose other tables a caller
    /// took out first); `origin` names it in errors.
    pub fn from_value(value: serde_json::Value, origin: &str) -> Result<Self, String> {
        let config: RunConfig = serde_json::from_value(value)
            .map_err(|e| format!("{origin}: invalid run config: {e}"))?;
        config
            .train
            .validate()
            .map_err(|e| format!("{origin}: invalid training configuration: {e}"))?;
        Ok(config)
    }

    /// The run config recorded in a model folder's `rewardkit.json` (`run` field), if any.
    pub fn from_model_meta(meta: &serde_json::Value) -> Option<Result<Self, String>> {
        let run = meta.get("run")?;
        Some(serde_json::from_value(run.clone()).map_err(|e| format!("rewardkit.json: run: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_read_the_same_config() {
        let t = RunConfig::parse(
            "model = \"m\"\ndata = [\"a.jsonl\"]\n[train]\nbatch_size = 4\nlearning_rate = 1e-5\n",
            true,
            "run.toml",
        )
        .unwrap();
        let j = RunConfig::parse(
            r#"{"model": "m", "data": ["a.jsonl"], "train": {"batch_size": 4, "learning_rate": 1e-5}}"#,
            false,
            "run.json",
        )
        .unwrap();
        assert_eq!(t, j);
        assert_eq!(t.train.batch_size, 4);
        let round: RunConfig = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(round, t);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_with_the_origin() {
        let e = RunConfig::parse("modle = \"m\"", true, "run.toml").unwrap_err();
        assert!(
            e.starts_with("run.toml: invalid run config") && e.contains("modle"),
            "{e}"
        );
        let e = RunConfig::parse("[train]\nmax_steps = 0", true, "run.toml").unwrap_err();
        assert!(e.contains("max_steps"), "{e}");
        // From a document whose other tables were taken out: the same checks.
        let e = RunConfig::from_value(serde_json::json!({"modle": "m"}), "run.toml").unwrap_err();
        assert!(
            e.starts_with("run.toml: invalid run config") && e.contains("modle"),
            "{e}"
        );
        let e = RunConfig::from_value(serde_json::json!({"train": {"max_steps": 0}}), "r.json")
            .unwrap_err();
        assert!(e.contains("max_steps"), "{e}");
        let ok = RunConfig::from_value(serde_json::json!({"model": "m"}), "r.json").unwrap();
        assert_eq!(ok.model, Some("m".into()));
    }
}
