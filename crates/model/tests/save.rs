//! A saved model folder: every file written atomically through rewardkit-io, readable by
//! everyone (0644 under the usual umask), the weights under their names and dtypes, and the
//! folder loads back to the same model.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use std::os::unix::fs::PermissionsExt;

use candle_core::{DType, Device};
use rewardkit_model::{load, save, InitMissing, LoadOptions};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn saved_files_are_0644_complete_and_load_back() {
    let src = common::shared_models().join("tiny-llama-rm");
    let model = load(&src, &LoadOptions::default(), &Device::Cpu).unwrap();
    let out = tempfile::tempdir().unwrap();
    save(&model, out.path(), serde_json::json!({"note": 1})).unwrap();
    // What a plain new file gets here (the same umask): 0644 under the usual 022.
    let probe = out.path().join("probe");
    std::fs::File::create(&probe).unwrap();
    let plain = mode(&probe);
    std::fs::remove_file(&probe).unwrap();
    assert_eq!(
        plain & 0o444,
        0o444,
        "umask {plain:o} hides files from others"
    );
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "config.json",
            "model.safetensors",
            "rewardkit.json",
            "tokenizer.json",
            "tokenizer_config.json"
        ],
        "no temporary file is left"
    );
    for name in &names {
        let m = mode(&out.path().join(name));
        assert_eq!(m, plain, "{name}: mode {m:o}");
        if plain == 0o644 {
            assert_eq!(m, 0o644);
        }
    }
    // The weights under the model's names, f32, with its values.
    let saved =
        candle_core::safetensors::load(out.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let vars = model.model.params().vars();
    assert_eq!(saved.len(), vars.len());
    for (name, var) in &vars {
        let t = &saved[name];
        assert_eq!(t.dtype(), DType::F32, "{name}");
        let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{name}");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("rewardkit.json")).unwrap()).unwrap();
    assert_eq!(meta["note"], 1);
    assert_eq!(meta["model"]["pooling"], "last");
    // A reward model: it loads strictly, nothing initialised.
    let back = load(out.path(), &LoadOptions::default(), &Device::Cpu).unwrap();
    assert!(back.initialised.is_empty());
    assert_eq!(
        back.model.params().num_params(),
        model.model.params().num_params()
    );
}

/// A bare backbone trained (here: only its new head) saves as a complete reward model.
#[test]
fn a_backbone_with_a_new_head_saves_as_a_reward_model() {
    let dir = tempfile::tempdir().unwrap();
    let models = common::shared_models();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(models.join("tiny-bert").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(
        models.join("tiny-llama-rm/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let options = LoadOptions {
        init_missing: InitMissing::ValueHead,
        ..Default::default()
    };
    let model = load(dir.path(), &options, &Device::Cpu).unwrap();
    assert_eq!(model.initialised, ["classifier.bias", "classifier.weight"]);
    let out = tempfile::tempdir().unwrap();
    save(&model, out.path(), serde_json::json!({})).unwrap();
    let back = load(out.path(), &LoadOptions::default(), &Device::Cpu).unwrap();
    assert!(back.initialised.is_empty());
}
