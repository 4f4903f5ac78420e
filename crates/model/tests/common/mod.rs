#![allow(dead_code)]
//! Shared helpers for the model tests: the fixtures in `../shared/models` (made with PyTorch
//! 2.15 / transformers 5.24, see `../shared/MODELS.md`).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use rewardkit_model::{ArchConfig, ParamStore};
use rewardkit_tokenize::{pad_batch, Batch, Encoded, PaddingSide};

pub fn shared_models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `config.json` and a store over `model.safetensors` of a fixture folder.
pub fn fixture(name: &str) -> (ArchConfig, ParamStore) {
    let dir = shared_models().join(name);
    let config = ArchConfig::from_file(&dir.join("config.json")).unwrap();
    let store =
        ParamStore::from_safetensors(&[dir.join("model.safetensors")], 0, &Device::Cpu).unwrap();
    (config, store)
}

/// A JSON array of arrays of integers.
pub fn rows_u32(v: &serde_json::Value) -> Vec<Vec<u32>> {
    rows(v, |x| x.as_u64().unwrap() as u32)
}

/// A JSON array of arrays of numbers.
pub fn rows_f32(v: &serde_json::Value) -> Vec<Vec<f32>> {
    rows(v, |x| x.as_f64().unwrap() as f32)
}

fn rows<T>(v: &serde_json::Value, f: impl Fn(&serde_json::Value) -> T) -> Vec<Vec<T>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(&f).collect())
        .collect()
}

/// A `[rows, cols]` u32 tensor from a JSON array of arrays.
pub fn u32_matrix(v: &serde_json::Value) -> Tensor {
    let rows = rows_u32(v);
    let (n, m) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (n, m), &Device::Cpu).unwrap()
}

/// Largest |a − b| between a `[b, t, h]` tensor and the reference `last_hidden_state` at the
/// positions where `mask` is 1 (the fixtures only give unpadded positions meaningfully).
pub fn max_diff_masked(
    hidden: &Tensor,
    reference: &serde_json::Value,
    mask: &serde_json::Value,
) -> f64 {
    let got: Vec<Vec<Vec<f32>>> = hidden.to_vec3().unwrap();
    let mut worst = 0f64;
    for (b, row) in reference.as_array().unwrap().iter().enumerate() {
        for (t, vec) in row.as_array().unwrap().iter().enumerate() {
            if mask[b][t].as_u64() != Some(1) {
                continue;
            }
            for (h, x) in vec.as_array().unwrap().iter().enumerate() {
                worst = worst.max((got[b][t][h] as f64 - x.as_f64().unwrap()).abs());
            }
        }
    }
    worst
}

/// The folder `scripts/fetch-models.sh` fills: `$REWARDKIT_MODELS`, or
/// `~/.cache/rewardkit/models`.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("REWARDKIT_MODELS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            PathBuf::from(home).join(".cache/rewardkit/models")
        }
    }
}

/// A file of the real pretrained models, e.g. `real_model("minilm/config.json")`. Panics (the
/// test fails, it is not skipped) when it is missing.
pub fn real_model(rel: &str) -> PathBuf {
    let path = models_dir().join(rel);
    assert!(
        path.exists(),
        "{} is missing: run `scripts/fetch-models.sh` first (it fetches the pretrained models \
         into $REWARDKIT_MODELS, default ~/.cache/rewardkit/models)",
        path.display()
    );
    path
}

pub fn encoded(ids: &[u32]) -> Encoded {
    Encoded {
        ids: ids.to_vec(),
        type_ids: vec![0; ids.len()],
        truncation: Default::default(),
    }
}

/// Two preference pairs in one right-padded batch: rows 0..2 chosen, rows 2..4 rejected.
pub fn pairs_batch() -> Batch {
    let rows = [
        encoded(&[5, 17, 42, 99, 3, 250]),
        encoded(&[8, 64, 128, 9]),
        encoded(&[5, 17, 42, 99, 7, 11, 12]),
        encoded(&[8, 64, 300]),
    ];
    let refs: Vec<&Encoded> = rows.iter().collect();
    pad_batch(&refs, 0, PaddingSide::Right)
}
