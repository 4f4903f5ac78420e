//! `LoadOptions::input_style`: an encoder can read prompt and response as one segment, as TRL
//! concatenates them, instead of a text pair; the choice is saved with the model; a decoder
//! refuses the pair style.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use candle_core::Device;
use rewardkit_data::Text;
use rewardkit_model::{load, save, InitMissing, LoadOptions};
use rewardkit_tokenize::InputStyle;

const PROMPT: &str = "\n\nHuman: How do I boil an egg?\n\nAssistant:";
const RESPONSE: &str = " Put it in boiling water for nine minutes.";

fn bert(style: Option<InputStyle>) -> rewardkit_model::LoadedModel {
    let options = LoadOptions {
        init_missing: InitMissing::ValueHead,
        input_style: style,
        ..LoadOptions::default()
    };
    // all-MiniLM-L6-v2 from `scripts/fetch-models.sh` (a BERT with its WordPiece tokenizer).
    let dir = common::real_model("minilm/config.json");
    load(dir.parent().unwrap(), &options, &Device::Cpu).unwrap()
}

#[test]
fn an_encoder_reads_one_segment_as_the_tokenizer_encodes_the_concatenated_text() {
    let model = bert(Some(InputStyle::Sequence));
    assert_eq!(model.tokenizer.style(), InputStyle::Sequence);
    let enc = model
        .tokenizer
        .encode(&Text::from(PROMPT), &Text::from(RESPONSE), 128)
        .unwrap();
    // The reference: what TRL feeds BERT, the HF tokenizer's encoding of `prompt + response`
    // with its special tokens (`[CLS] … [SEP]`), all of token type 0.
    let reference = model
        .tokenizer
        .inner()
        .encode(format!("{PROMPT}{RESPONSE}"), true)
        .unwrap();
    assert_eq!(enc.ids, reference.get_ids());
    assert!(enc.type_ids.iter().all(|&t| t == 0), "{:?}", enc.type_ids);

    // The default is the text pair: the response is segment 1, after its own separator.
    let pair = bert(None);
    assert_eq!(pair.tokenizer.style(), InputStyle::Pair);
    let enc_pair = pair
        .tokenizer
        .encode(&Text::from(PROMPT), &Text::from(RESPONSE), 128)
        .unwrap();
    assert_eq!(enc_pair.ids.len(), enc.ids.len() + 1, "one more [SEP]");
    assert!(enc_pair.type_ids.contains(&1));
}

#[test]
fn the_input_style_is_saved_with_the_model_and_read_back() {
    let model = bert(Some(InputStyle::Sequence));
    let out = tempfile::tempdir().unwrap();
    save(&model, out.path(), serde_json::json!({})).unwrap();
    let meta = common::read_json(&out.path().join("rewardkit.json"));
    assert_eq!(meta["model"]["input_style"], "sequence", "{meta}");
    let back = load(out.path(), &LoadOptions::default(), &Device::Cpu).unwrap();
    assert_eq!(back.tokenizer.style(), InputStyle::Sequence);
    assert_eq!(back.meta.input_style, Some(InputStyle::Sequence));

    // A model saved with its architecture's own style says nothing about it.
    let plain = bert(None);
    let out = tempfile::tempdir().unwrap();
    save(&plain, out.path(), serde_json::json!({})).unwrap();
    let meta = common::read_json(&out.path().join("rewardkit.json"));
    assert!(meta["model"].get("input_style").is_none(), "{meta}");
}

#[test]
fn a_decoder_refuses_the_pair_style() {
    let options = LoadOptions {
        input_style: Some(InputStyle::Pair),
        ..LoadOptions::default()
    };
    let err = load(
        &common::shared_models().join("tiny-llama-rm"),
        &options,
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("a decoder reads prompt + response as one sequence"),
        "{err}"
    );
}
