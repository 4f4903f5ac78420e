//! HH-RLHF transcripts: the split itself on two arbitrary strings (separated by a NUL byte),
//! and whole files read as HH.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rewardkit_data::hh::split_transcripts;
use rewardkit_data::Format;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let (chosen, rejected) = text.split_once('\0').unwrap_or((text, ""));
        if let Ok(s) = split_transcripts(chosen, rejected) {
            // Nothing is lost: prompt + response gives back each transcript.
            assert_eq!(format!("{}{}", s.prompt, s.chosen), chosen);
            assert_eq!(format!("{}{}", s.prompt, s.rejected), rejected);
        }
    }
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    common::load_checked(body, "in.jsonl", &common::options(selector, &[Some(Format::Hh)]));
});
