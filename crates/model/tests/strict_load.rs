//! `load` refuses weights that do not match the config: missing tensors (a config of another
//! architecture, more layers than the weights hold, a bare backbone without a value head) and
//! tensors the model would not read. Only training (`InitMissing`) may initialise, and the load
//! says what it initialised.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use std::path::Path;

use candle_core::Device;
use rewardkit_model::{load, InitMissing, LoadOptions, LoadedModel, ModelError};

/// A folder with `config` (edited by `edit`), the weights of fixture `weights` and tiny-llama-rm's
/// tokenizer.
fn folder(
    config: &str,
    weights: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let models = common::shared_models();
    let mut c = common::read_json(&models.join(config).join("config.json"));
    edit(&mut c);
    std::fs::write(dir.path().join("config.json"), c.to_string()).unwrap();
    std::fs::copy(
        models.join(weights).join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    std::fs::copy(
        models.join("tiny-llama-rm/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    dir
}

fn with(init_missing: InitMissing) -> LoadOptions {
    LoadOptions {
        init_missing,
        ..Default::default()
    }
}

fn try_load(dir: &Path, init: InitMissing) -> Result<LoadedModel, ModelError> {
    load(dir, &with(init), &Device::Cpu)
}

/// The mismatch's lists, or a panic naming what came instead.
fn mismatch(r: Result<LoadedModel, ModelError>) -> (Vec<String>, Vec<String>, bool, String) {
    match r {
        Err(e @ ModelError::WeightsMismatch { .. }) => {
            let msg = e.to_string();
            let ModelError::WeightsMismatch {
                missing,
                unused,
                head_only,
                ..
            } = e
            else {
                unreachable!()
            };
            (missing, unused, head_only, msg)
        }
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("loaded"),
    }
}

#[test]
fn a_bert_config_over_gpt2_weights_is_refused_naming_the_tensors() {
    let dir = folder("tiny-bert", "tiny-gpt2", |_| {});
    // Even training may not initialise a backbone the weights do not hold.
    for init in [InitMissing::Refuse, InitMissing::ValueHead] {
        let (missing, unused, head_only, msg) = mismatch(try_load(dir.path(), init));
        assert!(!head_only);
        assert!(
            missing.contains(&"bert.embeddings.word_embeddings.weight".to_string()),
            "{missing:?}"
        );
        assert!(missing.contains(&"bert.encoder.layer.1.output.dense.weight".to_string()));
        // 37 backbone tensors; with Refuse the two of the head as well.
        let head = if init == InitMissing::Refuse { 2 } else { 0 };
        assert_eq!(missing.len(), 37 + head, "{missing:?}");
        assert_eq!(unused.len(), 28, "every GPT-2 tensor is unused: {unused:?}");
        assert!(unused.contains(&"wte.weight".to_string()));
        assert!(msg.contains("`bert.embeddings"), "{msg}");
        assert!(
            msg.contains("`h.0.attn.c_attn.bias`") || msg.contains("more"),
            "{msg}"
        );
        assert!(msg.contains("same model"), "{msg}");
    }
}

#[test]
fn more_layers_than_the_weights_hold_is_refused() {
    let dir = folder("tiny-bert", "tiny-bert", |c| {
        c["num_hidden_layers"] = 4.into();
    });
    let (missing, unused, head_only, msg) = mismatch(try_load(dir.path(), InitMissing::ValueHead));
    assert!(!head_only);
    assert!(unused.is_empty(), "{unused:?}");
    // Layers 2 and 3, 16 tensors each; nothing of layers 0 and 1.
    assert_eq!(missing.len(), 32, "{missing:?}");
    assert!(missing
        .iter()
        .all(|n| n.starts_with("bert.encoder.layer.2.") || n.starts_with("bert.encoder.layer.3.")));
    assert!(msg.contains("lack 32 tensors"), "{msg}");
}

#[test]
fn fewer_layers_than_the_weights_hold_is_refused() {
    let dir = folder("tiny-bert", "tiny-bert", |c| {
        c["num_hidden_layers"] = 1.into();
    });
    let (missing, unused, _, msg) = mismatch(try_load(dir.path(), InitMissing::ValueHead));
    assert!(missing.is_empty(), "{missing:?}");
    assert_eq!(unused.len(), 16, "{unused:?}");
    assert!(unused.iter().all(|n| n.starts_with("encoder.layer.1.")));
    assert!(
        msg.contains("16 tensors in the weights that the config does not use"),
        "{msg}"
    );
}

#[test]
fn a_bare_backbone_is_no_reward_model_but_trains_with_a_new_head() {
    for (fixture, head) in [
        ("tiny-bert", vec!["classifier.bias", "classifier.weight"]),
        ("tiny-gpt2", vec!["score.weight"]),
        ("tiny-llama", vec!["score.weight"]),
    ] {
        let dir = folder(fixture, fixture, |_| {});
        let (missing, unused, head_only, msg) = mismatch(try_load(dir.path(), InitMissing::Refuse));
        assert!(head_only, "{fixture}");
        assert_eq!(missing, head, "{fixture}");
        assert!(unused.is_empty(), "{fixture}: {unused:?}");
        assert!(msg.contains("bare backbone"), "{msg}");
        assert!(msg.contains(&format!("`{}`", head[0])), "{msg}");
        // Training may start the head; the load says so.
        let m = try_load(dir.path(), InitMissing::ValueHead).unwrap();
        assert_eq!(m.initialised, head, "{fixture}");
    }
}

#[test]
fn a_complete_reward_model_loads_with_nothing_initialised() {
    let dir = common::shared_models().join("tiny-llama-rm");
    for init in [InitMissing::Refuse, InitMissing::ValueHead] {
        let m = try_load(&dir, init).unwrap();
        assert!(m.initialised.is_empty(), "{:?}", m.initialised);
        assert!(m.model.params().num_params() > 10_000);
    }
}

#[test]
fn from_scratch_reports_every_tensor_initialised() {
    // Weights of another architecture do not matter: they are not read.
    let dir = folder("tiny-bert", "tiny-gpt2", |_| {});
    let m = try_load(dir.path(), InitMissing::All).unwrap();
    assert_eq!(m.initialised.len(), 39);
    assert_eq!(m.initialised.len(), m.model.params().vars().len());
}

/// MiniLM as shipped: `position_ids` and a pooler that CLS and mean pooling do not read are
/// known extras, not errors; without a head it is refused for scoring and trains with a new one.
#[test]
fn minilm_extras_are_known_and_its_missing_head_is_named() {
    let dir = common::real_model("minilm");
    let (missing, unused, head_only, _) = mismatch(try_load(&dir, InitMissing::Refuse));
    assert!(head_only);
    assert_eq!(missing, ["classifier.bias", "classifier.weight"]);
    assert!(unused.is_empty(), "{unused:?}");
    let m = try_load(&dir, InitMissing::ValueHead).unwrap();
    assert_eq!(m.initialised, ["classifier.bias", "classifier.weight"]);
    // With the pooler read (BertForSequenceClassification's pooling), nothing more is new.
    let options = LoadOptions {
        pooling: Some(rewardkit_model::Pooling::Pooler),
        init_missing: InitMissing::ValueHead,
        ..Default::default()
    };
    let m = load(&dir, &options, &Device::Cpu).unwrap();
    assert_eq!(m.initialised, ["classifier.bias", "classifier.weight"]);
}

#[test]
fn known_extras() {
    use rewardkit_model::checkpoint::is_known_extra;
    for name in [
        "embeddings.position_ids",
        "bert.embeddings.position_ids",
        "pooler.dense.weight",
        "bert.pooler.dense.bias",
        "h.0.attn.bias",
        "transformer.h.11.attn.masked_bias",
        "lm_head.weight",
        "model.layers.0.self_attn.rotary_emb.inv_freq",
        "cls.predictions.bias",
    ] {
        assert!(is_known_extra(name), "{name}");
    }
    for name in [
        "h.0.attn.c_attn.bias",
        "encoder.layer.1.output.dense.weight",
        "wte.weight",
        "classifier.weight",
        "score.weight",
    ] {
        assert!(!is_known_extra(name), "{name}");
    }
}
