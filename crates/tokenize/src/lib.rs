//! # rewardkit-tokenize
//!
//! From (prompt, response) to model inputs, the way reward models expect them:
//!
//! - [`InputStyle::Pair`] for encoders (BERT, MiniLM): prompt and response as a text pair; the
//!   tokenizer's post-processor adds `[CLS] … [SEP] … [SEP]` and token type ids.
//! - [`InputStyle::Sequence`] for decoders (GPT-2, Llama, Qwen2, SmolLM): one sequence
//!   `prompt + response`, then the tokenizer's EOS unless it already ends with it (TRL's
//!   convention), so that last-token pooling reads a state that has seen the whole response.
//! - **Truncation keeps the response**: the start of the prompt is cut first, then the end of
//!   the response; every cut is counted in [`Truncation`].
//! - [`pad_batch`] pads dynamically with an attention mask; [`length_buckets`] groups
//!   sequences of similar length so little compute goes to padding.
//! - [`pack_shared_prefix`] puts sequences that start alike (a pair's chosen and rejected after
//!   their prompt) in one row, the common prefix once, for causal decoders; [`pack`] puts
//!   several sequences (or such groups) in one row with no padding between them, in batches
//!   of a token budget ([`token_budget_batches`]).
//!
//! ```no_run
//! use rewardkit_tokenize::{InputStyle, RewardTokenizer};
//!
//! let tok = RewardTokenizer::from_path("models/minilm".as_ref(), InputStyle::Pair)?;
//! let enc = tok.encode(&"How do I boil an egg?".into(), &" Put it in boiling water.".into(), 128)?;
//! assert!(enc.ids.len() <= 128);
//! # Ok::<(), rewardkit_tokenize::TokenizeError>(())
//! ```

mod batch;
mod pack;
mod tokenizer;

pub use batch::{length_buckets, pad_batch, Batch, PaddingSide};
pub use pack::{
    pack, pack_shared_prefix, packed_len, packing_runs, shared_prefix_len, token_budget_batches,
    Packing,
};
pub use tokenizer::{
    Encoded, InputStyle, RewardTokenizer, TokenLengthStats, TokenizeError, Truncation,
};
