//! JSON-array preference files: the input is made to start with `[`.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rewardkit_data::Format;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut bytes = Vec::with_capacity(body.len() + 1);
    if body.first() != Some(&b'[') {
        bytes.push(b'[');
    }
    bytes.extend_from_slice(body);
    let formats = [None, Some(Format::Trl), Some(Format::Hh), Some(Format::Pairwise)];
    common::load_checked(&bytes, "in.json", &common::options(selector, &formats));
});
