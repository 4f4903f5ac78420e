//! Input building, truncation, padding and bucketing, on two real tokenizer pipelines: the
//! WordLevel tokenizer shipped with `../shared/models/tiny-llama-rm` (made with transformers) and
//! a BERT-style WordPiece `tokenizer.json` written out here.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::path::PathBuf;

use rewardkit_data::Text;
use rewardkit_tokenize::{
    length_buckets, pad_batch, InputStyle, PaddingSide, RewardTokenizer, TokenizeError,
};

fn tiny_llama_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/tiny-llama-rm")
}

/// A BERT pipeline in the `tokenizer.json` layout that transformers writes for BERT models:
/// lower-casing normaliser, WordPiece, post-processor `[CLS] A [SEP] B [SEP]`.
fn bert() -> RewardTokenizer {
    let words = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "how", "do", "i", "boil", "an", "egg", "?", "put",
        "it", "in", "water", ".", "##s", "hot",
    ];
    let vocab: serde_json::Map<String, serde_json::Value> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i.into()))
        .collect();
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    });
    let t: tokenizers::Tokenizer = json.to_string().parse().unwrap();
    RewardTokenizer::new(t, InputStyle::Pair, None, Some("[PAD]")).unwrap()
}

fn text(s: &str) -> Text {
    Text::Plain(s.into())
}

#[test]
fn encoder_pair_gets_cls_sep_and_type_ids() {
    let tok = bert();
    assert_eq!(tok.special_tokens(), 3);
    let e = tok
        .encode(
            &text("How do I boil an egg?"),
            &text("Put it in hot water."),
            64,
        )
        .unwrap();
    // [CLS] how do i boil an egg ? [SEP] put it in hot water . [SEP]
    assert_eq!(
        e.ids,
        [2, 4, 5, 6, 7, 8, 9, 10, 3, 11, 12, 13, 17, 14, 15, 3]
    );
    assert_eq!(e.type_ids, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
    assert!(!e.truncation.any());
}

#[test]
fn truncation_cuts_prompt_start_first_then_response_end() {
    let tok = bert();
    // Budget 10 − 3 specials = 7: the 6-token response fits, 1 prompt token stays (the last, "?").
    let e = tok
        .encode(
            &text("How do I boil an egg?"),
            &text("Put it in hot water."),
            10,
        )
        .unwrap();
    assert_eq!(e.ids, [2, 10, 3, 11, 12, 13, 17, 14, 15, 3]);
    assert_eq!((e.truncation.prompt, e.truncation.response), (6, 0));
    // Budget 5 − 3 = 2: the prompt is gone and the response keeps its start.
    let e = tok
        .encode(
            &text("How do I boil an egg?"),
            &text("Put it in hot water."),
            5,
        )
        .unwrap();
    assert_eq!(e.ids, [2, 3, 11, 12, 3]);
    assert_eq!((e.truncation.prompt, e.truncation.response), (7, 4));
    assert!(matches!(
        tok.encode(&text("a"), &text("b"), 3),
        Err(TokenizeError::TooShort {
            max_length: 3,
            special: 3
        })
    ));
}

#[test]
fn decoder_sequence_matches_the_reference_ids_of_tiny_llama_rm() {
    // reference.json: "prompt + response of texts[i] gives exactly input_ids[i]" (no EOS: the
    // HF forward pass scores the plain concatenation).
    let dir = tiny_llama_dir();
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let tok = RewardTokenizer::from_path(&dir, InputStyle::Sequence)
        .unwrap()
        .with_append_eos(false);
    for (i, t) in reference["texts"].as_array().unwrap().iter().enumerate() {
        let e = tok
            .encode(
                &text(t["prompt"].as_str().unwrap()),
                &text(t["response"].as_str().unwrap()),
                128,
            )
            .unwrap();
        let mask = reference["attention_mask"][i].as_array().unwrap();
        let expected: Vec<u32> = reference["input_ids"][i]
            .as_array()
            .unwrap()
            .iter()
            .zip(mask)
            .filter(|(_, m)| m.as_u64() == Some(1))
            .map(|(v, _)| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(e.ids, expected, "row {i}");
    }
    // With EOS appended (the default for decoders), a tokenizer without one is an error.
    let with_eos = RewardTokenizer::from_path(&dir, InputStyle::Sequence).unwrap();
    assert!(matches!(
        with_eos.encode(&text("t1"), &text(" t2"), 8),
        Err(TokenizeError::NoEos(_))
    ));
}

#[test]
fn decoder_appends_eos_and_truncates_keeping_it() {
    // The tiny WordLevel vocabulary t0..t999 with t2 named as EOS, as its config.json says
    // (eos_token_id 2).
    let dir = tiny_llama_dir();
    let inner = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let tok = RewardTokenizer::new(inner, InputStyle::Sequence, Some("t2"), None).unwrap();
    assert_eq!(tok.eos_id(), Some(2));
    let e = tok
        .encode(&text("t5 t17 t42"), &text(" t3 t250"), 128)
        .unwrap();
    assert_eq!(e.ids, [5, 17, 42, 3, 250, 2]);
    let e = tok
        .encode(&text("t5 t17 t42"), &text(" t3 t250"), 4)
        .unwrap();
    assert_eq!(e.ids, [42, 3, 250, 2]);
    assert_eq!((e.truncation.prompt, e.truncation.response), (2, 0));
}

#[test]
fn responses_to_one_prompt_keep_the_same_prompt_tokens() {
    let dir = tiny_llama_dir();
    let inner = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let tok = RewardTokenizer::new(inner, InputStyle::Sequence, Some("t2"), None).unwrap();
    let prompt = text("t5 t17 t42 t43");
    let (short, long) = (text(" t3"), text(" t7 t8 t9"));
    // Budget 6 − 1 (EOS) = 5: alone, the short response would keep 4 prompt tokens and the long
    // one 2; together both keep the 2 the long one leaves.
    let alone = tok.encode(&prompt, &short, 6).unwrap();
    assert_eq!(alone.ids, [5, 17, 42, 43, 3, 2]);
    let both = tok.encode_group(&prompt, &[&short, &long], 6).unwrap();
    assert_eq!(both[0].ids, [42, 43, 3, 2]);
    assert_eq!(both[1].ids, [42, 43, 7, 8, 9, 2]);
    assert_eq!(both[0].truncation.prompt, 2);
    assert_eq!(both[1].truncation.prompt, 2);
    // A response over the budget alone is cut at its end, and leaves no prompt to any.
    let over = text(" t7 t8 t9 t10 t11 t12");
    let both = tok.encode_group(&prompt, &[&short, &over], 6).unwrap();
    assert_eq!(both[0].ids, [3, 2]);
    assert_eq!(both[1].ids, [7, 8, 9, 10, 11, 2]);
    assert_eq!(
        (both[1].truncation.prompt, both[1].truncation.response),
        (4, 1)
    );
    // One response: the same as encode.
    assert_eq!(
        tok.encode_group(&prompt, &[&long], 6).unwrap()[0],
        tok.encode(&prompt, &long, 6).unwrap()
    );
}

#[test]
fn padding_and_mask_either_side() {
    let tok = bert();
    let a = tok
        .encode(&text("boil an egg"), &text("put it in water"), 64)
        .unwrap();
    let b = tok.encode(&text("egg"), &text("hot"), 64).unwrap();
    let batch = pad_batch(&[&a, &b], tok.pad_id(), PaddingSide::Right);
    assert_eq!((batch.rows, batch.len), (2, a.ids.len()));
    assert_eq!(&batch.ids[batch.len..batch.len + 5], &[2, 9, 3, 17, 3]);
    assert_eq!(
        &batch.attention_mask[batch.len..],
        &[1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    );
    assert_eq!(batch.ids[2 * batch.len - 1], 0); // [PAD]
    let left = pad_batch(&[&a, &b], tok.pad_id(), PaddingSide::Left);
    assert_eq!(
        &left.attention_mask[left.len..],
        &[0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    );
    assert_eq!(&left.ids[2 * left.len - 5..], &[2, 9, 3, 17, 3]);
    assert!((batch.fill() - 15.0 / 20.0).abs() < 1e-12);
}

#[test]
fn length_buckets_group_similar_lengths_deterministically() {
    let lengths = [5, 100, 7, 98, 6, 99, 50];
    let buckets = length_buckets(&lengths, 3);
    assert_eq!(buckets, vec![vec![1, 5, 3], vec![6, 2, 4], vec![0]]);
    // Every index exactly once.
    let mut all: Vec<usize> = buckets.concat();
    all.sort();
    assert_eq!(all, (0..7).collect::<Vec<_>>());
}

#[test]
fn token_length_stats_count_truncation() {
    let tok = bert();
    let pairs = vec![
        rewardkit_data::PreferencePair::new(
            "how do i boil an egg ?",
            "put it in hot water .",
            "egg",
        ),
        rewardkit_data::PreferencePair::new("egg", "hot", "water"),
    ];
    // Budget at max length 10: 7 content tokens. Pair 1: 7 + 6 and 7 + 1 → both cut.
    let s = rewardkit_tokenize::TokenLengthStats::of(&tok, &pairs, 10).unwrap();
    assert_eq!(
        (
            s.sequences_truncated,
            s.pairs_truncated,
            s.pairs_response_truncated
        ),
        (2, 1, 0)
    );
    assert_eq!(s.prompt.as_ref().unwrap().max, 7.0);
    assert_eq!(s.sequence.as_ref().unwrap().max, 16.0);
}

#[test]
fn padding_and_truncation_inside_tokenizer_json_are_switched_off() {
    // sentence-transformers' MiniLM tokenizer.json pads every text to 128 and truncates at 128:
    // left on, every input would be 128 tokens of which most are [PAD] marked as real.
    let mut inner = bert().inner().clone();
    inner.with_padding(Some(tokenizers::PaddingParams {
        strategy: tokenizers::PaddingStrategy::Fixed(128),
        pad_id: 0,
        ..Default::default()
    }));
    inner
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: 4,
            ..Default::default()
        }))
        .unwrap();
    let tok = RewardTokenizer::new(inner, InputStyle::Pair, None, None).unwrap();
    let e = tok
        .encode(
            &text("How do I boil an egg?"),
            &text("Put it in hot water."),
            64,
        )
        .unwrap();
    assert_eq!(e.ids.len(), 16);
    assert_eq!(tok.tokens("boil an egg").unwrap(), [7, 8, 9]);
    assert_eq!(tok.pad_id(), 0);
}
