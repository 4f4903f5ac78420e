//! Config files: the run config (`train --config`, which holds the training config), the
//! training config alone, the audit and augmentation configs, as TOML and as JSON; and an
//! audit's `report.json` as `audit --compare` reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = toml::from_str::<rewardkit_train::TrainConfig>(text) {
        // What was read can be written and read back.
        let again = toml::to_string(&c).expect("serialise");
        let _ = toml::from_str::<rewardkit_train::TrainConfig>(&again);
    }
    let _ = serde_json::from_str::<rewardkit_train::TrainConfig>(text);
    for toml in [true, false] {
        if let Ok(run) = rewardkit_train::RunConfig::parse(text, toml, "fuzz") {
            // A config that parses survives a round trip through JSON (values JSON cannot hold,
            // such as a NaN decay, fail to read back instead).
            let json = serde_json::to_string(&run).expect("serialise");
            if let Ok(again) = rewardkit_train::RunConfig::parse(&json, false, "fuzz") {
                assert_eq!(again, run);
            }
        }
    }
    let _ = toml::from_str::<rewardkit_audit::AuditConfig>(text);
    let _ = serde_json::from_str::<rewardkit_audit::AuditConfig>(text);
    let _ = toml::from_str::<rewardkit_audit::AugmentConfig>(text);
    if let Ok(c) = serde_json::from_str::<rewardkit_audit::AugmentConfig>(text) {
        let _ = c.validate();
    }
    if let Ok(report) = serde_json::from_str::<rewardkit_audit::AuditReport>(text) {
        // Any report that reads compares with itself without a panic.
        let _ = rewardkit_audit::compare(&report, &report);
    }
});
