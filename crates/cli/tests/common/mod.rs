//! Helpers shared by the CLI tests: the real binary, the tiny models of `../shared/models`, and
//! synthetic preference data a model can learn (chosen responses mention `t7`, rejected `t9`).
#![allow(dead_code)] // each test binary uses its own subset
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::Device;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rewardkit"))
}

/// A file of the shared data (`../shared/data/REL`).
pub fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
}

pub fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

/// A folder of the pretrained models `scripts/fetch-models.sh` fetches: `$REWARDKIT_MODELS/REL`
/// (default `~/.cache/rewardkit/models/REL`).
pub fn fetched_model(rel: &str) -> PathBuf {
    match std::env::var_os("REWARDKIT_MODELS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/rewardkit/models"),
    }
    .join(rel)
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run rewardkit")
}

pub fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The JSON values of a JSONL file, one per line.
pub fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A model folder from a fixture's config and weights plus tiny-llama-rm's tokenizer; `eos`
/// names the EOS token for decoders (the fixtures' config says eos_token_id 2 = `t2`).
pub fn model_dir(fixture: &str, eos: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(models().join(fixture).join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(
        models().join("tiny-llama-rm/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    if let Some(eos) = eos {
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            format!(r#"{{"eos_token": "{eos}"}}"#),
        )
        .unwrap();
    }
    dir
}

/// `n` TRL rows; a simple LCG keeps them reproducible without extra dependencies.
pub fn data(path: &Path, n: usize, seed: u64) {
    let mut x = seed;
    let mut next = |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    let mut out = String::new();
    for _ in 0..n {
        let mut words = |k: u64| {
            (0..1 + next(k))
                .map(|_| format!("t{}", 20 + next(200)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (p, a, b) = (words(5), words(4), words(4));
        out.push_str(&serde_json::json!({"prompt": p, "chosen": format!(" {a} t7 {b}"), "rejected": format!(" {b} t9 {a}")}).to_string());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// Every tensor of a model folder's `model.safetensors`, by name.
pub fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let t = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
