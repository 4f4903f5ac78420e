//! A word-level tokenizer over a fixed vocabulary: what a tiny decoder trained from scratch on a
//! closed language (a toy world, a test) reads. Words are split on whitespace and punctuation,
//! unknown words map to the first entry, and decoding joins the words with spaces.

use serde_json::json;

use crate::generate::GenerateError;

/// A `tokenizers::Tokenizer` whose ids are the positions of `vocab` (every entry special-free
/// plain words; `specials` are added as special tokens after them, matched whole in a text).
/// `vocab[0]` is the unknown token.
pub fn word_level_tokenizer(
    vocab: &[&str],
    specials: &[&str],
) -> Result<tokenizers::Tokenizer, GenerateError> {
    let mut ids = serde_json::Map::new();
    for (i, w) in vocab.iter().chain(specials).enumerate() {
        if ids.insert((*w).to_string(), json!(i)).is_some() {
            return Err(GenerateError::Tokenizer(format!(
                "the vocabulary has {w:?} twice"
            )));
        }
    }
    let Some(unk) = vocab.first() else {
        return Err(GenerateError::Tokenizer("an empty vocabulary".into()));
    };
    let added: Vec<serde_json::Value> = specials
        .iter()
        .enumerate()
        .map(|(i, content)| {
            json!({"id": vocab.len() + i, "content": content, "single_word": false,
                   "lstrip": false, "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": false},
        "model": {"type": "WordLevel", "vocab": ids, "unk_token": unk},
    });
    spec.to_string()
        .parse()
        .map_err(|e: tokenizers::Error| GenerateError::Tokenizer(e.to_string()))
}
