//! Config files: the training config and the audit config, as TOML and as JSON.
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
    let _ = toml::from_str::<rewardkit_audit::AuditConfig>(text);
    let _ = serde_json::from_str::<rewardkit_audit::AuditConfig>(text);
});
