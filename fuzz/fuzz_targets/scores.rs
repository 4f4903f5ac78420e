//! Score files: `eval --scores` (chosen/rejected scores) and `audit --scores` (scored rows).
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::input_file(data, "scores.jsonl");
    if let Ok(pairs) = rewardkit_eval::read_scores(&path) {
        for p in &pairs {
            assert!(p.gap().is_finite(), "{p:?}");
        }
        let report = rewardkit_eval::evaluate(&pairs);
        let gap = &report.overall.gap;
        for v in [gap.mean, gap.std, gap.median].into_iter().flatten() {
            assert!(v.is_finite(), "{gap:?}");
        }
    }
    let _ = rewardkit_data::ScoreTable::read(&path);
});
