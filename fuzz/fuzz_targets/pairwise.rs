//! Labelled pairwise files (PandaLM layout, votes and ties), JSONL or JSON arrays.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rewardkit_data::Format;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let options = common::options(selector, &[Some(Format::Pairwise)]);
    if let Some(d) = common::load_checked(body, "in.json", &options) {
        assert!(d.report.ties <= d.report.pairs);
    }
});
