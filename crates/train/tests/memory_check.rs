//! The memory check refuses, before any step, a run whose estimated peak exceeds the memory
//! available (here set to 0 MiB through `REWARDKIT_MEM_AVAILABLE_MIB`), with the estimate and
//! what is available in the message; nothing is trained or written. A binary of its own: it
//! sets an environment variable, which other tests running in parallel would read.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::ops::ControlFlow;
use std::path::PathBuf;

use candle_core::Device;
use rewardkit_data::PreferencePair;
use rewardkit_model::{load, LoadOptions};
use rewardkit_train::{memory::MEM_AVAILABLE_ENV, train, Run, TrainConfig, TrainError};

#[test]
fn a_run_that_cannot_fit_is_refused_before_any_step() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/tiny-llama-rm");
    let options = LoadOptions {
        max_length: Some(32),
        ..Default::default()
    };
    let model = load(&dir, &options, &Device::Cpu).unwrap();
    let pairs: Vec<PreferencePair> = (0..8)
        .map(|i| PreferencePair::new(format!("t{i} t3"), "t7 t8", "t9"))
        .collect();
    let out = tempfile::tempdir().unwrap();
    std::env::set_var(MEM_AVAILABLE_ENV, "0");
    let config = TrainConfig {
        batch_size: 4,
        max_steps: Some(2),
        ..Default::default()
    };
    let err = train(&model, &config, &Run::new(&pairs, &[], out.path()), |_| {
        ControlFlow::Continue(())
    })
    .err()
    .unwrap();
    let TrainError::WontFit(message) = &err else {
        panic!("expected WontFit, got {err}")
    };
    assert!(message.contains("0 MiB is available"), "{message}");
    assert!(message.contains("training needs an estimated"), "{message}");
    assert!(!out.path().join("final").exists());
    assert!(!out.path().join("metrics.jsonl").exists());
}
