//! GGUF headers: metadata and tensor index, then everything derived from the metadata alone
//! (architecture, config, tokenizer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewardkit_model::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::read_header(std::path::Path::new("in.gguf"), &mut std::io::Cursor::new(data)) else {
        return;
    };
    let _ = file.architecture();
    let _ = file.vocab_size();
    let _ = file.config_json();
    let _ = file.arch_config();
    let _ = file.tokenizer();
    let _ = file.tensor_names();
});
