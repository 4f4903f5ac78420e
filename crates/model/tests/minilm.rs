//! all-MiniLM-L6-v2 (fetched by `scripts/fetch-models.sh`) against
//! `../shared/models/minilm-reference.json` (transformers): tokenizer ids, the CLS hidden state
//! and the mean-pooled hidden state of three texts.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use candle_core::{DType, Device, Tensor};
use rewardkit_model::{bert::Bert, ArchConfig, Mode, ParamStore};
use rewardkit_tokenize::{InputStyle, RewardTokenizer};

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

#[test]
fn minilm_matches_transformers() {
    let dir = common::real_model("minilm");
    let reference = common::read_json(&common::shared_models().join("minilm-reference.json"));
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let want_ids = common::rows_u32(&reference["input_ids"]);
    let want_mask = common::rows_u32(&reference["attention_mask"]);

    // Tokenizer: `[CLS] … [SEP]` from tokenizer.json's post-processor, padded with [PAD] (0)
    // to the longest row as the reference batch is (the file itself pads to a fixed 128).
    let tok = RewardTokenizer::from_path(&dir, InputStyle::Pair).unwrap();
    let mut inner = tok.inner().clone();
    inner.with_padding(None).with_truncation(None).unwrap();
    let width = want_ids[0].len();
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for (i, text) in texts.iter().enumerate() {
        let enc = inner.encode(*text, true).unwrap();
        let mut row = enc.get_ids().to_vec();
        let mut m = vec![1u32; row.len()];
        assert!(row.len() <= width);
        row.resize(width, tok.pad_id());
        m.resize(width, 0);
        assert_eq!(row, want_ids[i], "ids of {text:?}");
        assert_eq!(m, want_mask[i], "mask of {text:?}");
        ids.extend(row);
        mask.extend(m);
    }

    let config = ArchConfig::from_file(&dir.join("config.json")).unwrap();
    let ArchConfig::Bert(c) = &config else {
        panic!("MiniLM is a BERT")
    };
    let dev = Device::Cpu;
    let store = ParamStore::from_safetensors(&[dir.join("model.safetensors")], 0, &dev).unwrap();
    let model = Bert::new(store.var_builder(), c, false).unwrap();
    assert!(
        store.initialised().is_empty(),
        "missing weights: {:?}",
        store.initialised()
    );
    let n = texts.len();
    let ids = Tensor::from_vec(ids, (n, width), &dev).unwrap();
    let mask = Tensor::from_vec(mask, (n, width), &dev).unwrap();
    let type_ids = Tensor::zeros_like(&ids).unwrap();
    let hidden = model.forward(&ids, &type_ids, &mask, Mode::Eval).unwrap();

    let cls: Vec<Vec<f32>> = hidden
        .narrow(1, 0, 1)
        .unwrap()
        .squeeze(1)
        .unwrap()
        .to_vec2()
        .unwrap();
    let m = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    let mean: Vec<Vec<f32>> = hidden
        .broadcast_mul(&m)
        .unwrap()
        .sum(1)
        .unwrap()
        .broadcast_div(&m.sum(1).unwrap())
        .unwrap()
        .to_vec2()
        .unwrap();
    let cls_diff = max_abs_diff(&cls, &common::rows_f32(&reference["cls_hidden"]));
    let mean_diff = max_abs_diff(&mean, &common::rows_f32(&reference["mean_pooled"]));
    eprintln!("MiniLM: max |CLS diff| = {cls_diff:.2e}, max |mean-pooled diff| = {mean_diff:.2e}");
    assert!(cls_diff < 1e-4, "CLS hidden state: max |diff| = {cls_diff}");
    assert!(
        mean_diff < 1e-4,
        "mean-pooled hidden state: max |diff| = {mean_diff}"
    );
}
