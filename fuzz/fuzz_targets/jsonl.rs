//! JSONL preference files (any layout, gzip recognised by content) through `rewardkit_data::load`.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rewardkit_data::Format;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let formats = [None, Some(Format::Trl), Some(Format::Hh), Some(Format::Pairwise)];
    common::load_checked(body, "in.jsonl", &common::options(selector, &formats));
});
