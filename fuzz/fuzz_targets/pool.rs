//! Pool files for best-of-n (`goodhart --pool`): generate output and GSM8K solutions.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::input_file(data, "pool.jsonl");
    if let Ok(rows) = rewardkit_goodhart::pool::read_pool(&path) {
        let groups = rewardkit_goodhart::pool::group_by_prompt(&rows);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), rows.len());
        for r in &rows {
            let _ = rewardkit_goodhart::pool::final_number(&r.response);
        }
    }
    let _ = rewardkit_goodhart::pool::gsm8k_answers(&path);
});
