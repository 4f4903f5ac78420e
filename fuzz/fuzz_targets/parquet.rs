//! Parquet files: the input is made to start with Parquet's magic `PAR1`.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rewardkit_data::Format;

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys's panic hook aborts even on panics the reader catches (it turns the parquet
    // crate's panics on malformed files into errors); a panic that escapes the target still
    // aborts, in libfuzzer-sys's own catch_unwind.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut bytes = Vec::with_capacity(body.len() + 4);
    if !body.starts_with(b"PAR1") {
        bytes.extend_from_slice(b"PAR1");
    }
    bytes.extend_from_slice(body);
    let formats = [None, Some(Format::Trl), Some(Format::Pairwise)];
    common::load_checked(&bytes, "in.parquet", &common::options(selector, &formats));
});
