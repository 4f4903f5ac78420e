use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokenizers::{Encoding, PostProcessor, TruncationDirection};

use rewardkit_data::{Distribution, PreferencePair, Text};

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("{path}: cannot load tokenizer: {message}")]
    Load { path: PathBuf, message: String },
    #[error("tokenizer: {0}")]
    Encode(String),
    #[error("decoder inputs end with EOS, but the tokenizer has none of {0}; name one in tokenizer_config.json or turn EOS off")]
    NoEos(String),
    #[error("max length {max_length} leaves no room: the tokenizer adds {special} special tokens")]
    TooShort { max_length: usize, special: usize },
    /// A prompt and response that become no token at all (a tokenizer that adds no special
    /// token and knows none of the words): a model has nothing to read.
    #[error("the prompt and response encode to no tokens (the tokenizer adds no special tokens and knows none of their words)")]
    Empty,
}

fn encode_err(e: tokenizers::Error) -> TokenizeError {
    TokenizeError::Encode(e.to_string())
}

/// How a (prompt, response) pair becomes one input sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum InputStyle {
    /// A text pair with the post-processor's special tokens and segment ids (BERT: `[CLS]
    /// prompt [SEP] response [SEP]`); encoders' default.
    Pair,
    /// One segment, `prompt + response` (BERT: `[CLS] prompt response [SEP]`, TRL's string
    /// concatenation); decoders always, with their EOS appended.
    Sequence,
}

/// How many tokens truncation removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Truncation {
    /// Tokens cut from the start of the prompt.
    pub prompt: usize,
    /// Tokens cut from the end of the response.
    pub response: usize,
}

impl Truncation {
    pub fn any(&self) -> bool {
        self.prompt + self.response > 0
    }
}

/// One model input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub truncation: Truncation,
}

/// A `tokenizers` tokenizer plus the conventions of reward-model inputs.
#[derive(Clone)]
pub struct RewardTokenizer {
    inner: tokenizers::Tokenizer,
    style: InputStyle,
    eos_id: Option<u32>,
    append_eos: bool,
    pad_id: u32,
}

/// EOS tokens tried, in order, when no `tokenizer_config.json` names one.
const EOS_CANDIDATES: [&str; 6] = [
    "<|endoftext|>",
    "</s>",
    "<|im_end|>",
    "<|end_of_text|>",
    "<eos>",
    "[SEP]",
];

impl RewardTokenizer {
    /// Loads `tokenizer.json`, a folder holding it (or GPT-2 style `vocab.json` + `merges.txt`),
    /// reading EOS and pad tokens from `tokenizer_config.json` beside it when present.
    pub fn from_path(path: &Path, style: InputStyle) -> Result<Self, TokenizeError> {
        let load_err = |message: String| TokenizeError::Load {
            path: path.to_path_buf(),
            message,
        };
        let (inner, dir) = if path.is_dir() {
            let json = path.join("tokenizer.json");
            if json.exists() {
                let t =
                    tokenizers::Tokenizer::from_file(&json).map_err(|e| load_err(e.to_string()))?;
                (t, path.to_path_buf())
            } else if path.join("vocab.json").exists() && path.join("merges.txt").exists() {
                (byte_level_bpe(path).map_err(load_err)?, path.to_path_buf())
            } else {
                return Err(load_err(
                    "no tokenizer.json, nor vocab.json + merges.txt, in this folder".into(),
                ));
            }
        } else {
            let t = tokenizers::Tokenizer::from_file(path).map_err(|e| load_err(e.to_string()))?;
            (t, path.parent().map(Path::to_path_buf).unwrap_or_default())
        };
        let config = read_tokenizer_config(&dir.join("tokenizer_config.json"));
        Self::new(inner, style, config.eos.as_deref(), config.pad.as_deref())
    }

    /// Wraps a tokenizer. `eos`/`pad` name special tokens; when `None`, EOS is looked up among
    /// common names (decoders need one) and pad falls back to the tokenizer's padding setting,
    /// then to id 0 (padded positions are masked, so its value does not matter).
    ///
    /// Padding and truncation configured inside the tokenizer (sentence-transformers' MiniLM
    /// `tokenizer.json` pads every text to 128) are switched off: rewardkit truncates pairs itself
    /// and pads batches dynamically with an attention mask.
    pub fn new(
        mut inner: tokenizers::Tokenizer,
        style: InputStyle,
        eos: Option<&str>,
        pad: Option<&str>,
    ) -> Result<Self, TokenizeError> {
        let eos_id = match eos {
            Some(t) => inner.token_to_id(t),
            None => EOS_CANDIDATES.iter().find_map(|t| inner.token_to_id(t)),
        };
        let pad_id = pad
            .and_then(|t| inner.token_to_id(t))
            .or_else(|| inner.get_padding().map(|p| p.pad_id))
            .unwrap_or(0);
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        Ok(RewardTokenizer {
            inner,
            style,
            eos_id,
            append_eos: style == InputStyle::Sequence,
            pad_id,
        })
    }

    /// Whether decoder inputs end with EOS (the default for [`InputStyle::Sequence`]). Turn it
    /// off to score exactly as a model was trained without it (a plain HF
    /// `*ForSequenceClassification` forward pass on `prompt + response`).
    pub fn with_append_eos(mut self, append: bool) -> Self {
        self.append_eos = append && self.style == InputStyle::Sequence;
        self
    }

    pub fn style(&self) -> InputStyle {
        self.style
    }
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids of a text without special tokens.
    pub fn tokens(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(encode_err)?
            .get_ids()
            .to_vec())
    }

    /// Special tokens this style adds around the content.
    pub fn special_tokens(&self) -> usize {
        let processor = self.inner.get_post_processor();
        match self.style {
            InputStyle::Pair => processor.map_or(0, |p| p.added_tokens(true)),
            // The EOS is appended unless the post-processor already ends with it; reserve it.
            InputStyle::Sequence => {
                processor.map_or(0, |p| p.added_tokens(false)) + usize::from(self.append_eos)
            }
        }
    }

    /// Encodes one (prompt, response) into at most `max_length` tokens, cutting the start of the
    /// prompt first and then the end of the response.
    pub fn encode(
        &self,
        prompt: &Text,
        response: &Text,
        max_length: usize,
    ) -> Result<Encoded, TokenizeError> {
        let mut one = self.encode_group(prompt, &[response], max_length)?;
        one.pop()
            .ok_or_else(|| TokenizeError::Encode("no encoding came back".into()))
    }

    /// Encodes responses to one prompt (a pair's chosen and rejected, best-of-n's samples) into
    /// at most `max_length` tokens each, with the same prompt tokens in each: each response is
    /// cut at its end only if it alone is over the budget, and the prompt's start is cut as far
    /// as the longest (kept) response needs. The responses are so compared in the same context,
    /// and a causal decoder can compute that context once ([`crate::pack_shared_prefix`]). For
    /// a single response this is [`RewardTokenizer::encode`].
    pub fn encode_group(
        &self,
        prompt: &Text,
        responses: &[&Text],
        max_length: usize,
    ) -> Result<Vec<Encoded>, TokenizeError> {
        if self.append_eos && self.eos_id.is_none() {
            return Err(TokenizeError::NoEos(EOS_CANDIDATES.join(", ")));
        }
        let special = self.special_tokens();
        if max_length <= special {
            return Err(TokenizeError::TooShort {
                max_length,
                special,
            });
        }
        let budget = max_length - special;
        let mut p = self
            .inner
            .encode(prompt.render(), false)
            .map_err(encode_err)?;
        let responses = responses
            .iter()
            .map(|r| self.inner.encode(r.render(), false).map_err(encode_err))
            .collect::<Result<Vec<_>, _>>()?;
        let longest = responses.iter().map(|r| r.len().min(budget)).max();
        let plen = p.len();
        let keep_p = plen.min(budget - longest.unwrap_or(0));
        if keep_p < plen {
            p.truncate(keep_p, 0, TruncationDirection::Left);
        }
        responses
            .into_iter()
            .map(|mut r| {
                let rlen = r.len();
                let keep_r = rlen.min(budget);
                if keep_r < rlen {
                    r.truncate(keep_r, 0, TruncationDirection::Right);
                }
                let truncation = Truncation {
                    prompt: plen - keep_p,
                    response: rlen - keep_r,
                };
                self.finish(p.clone(), r, truncation)
            })
            .collect()
    }

    /// The model input of a (cut) prompt and response: the post-processor's special tokens,
    /// then the EOS where this style appends one.
    fn finish(
        &self,
        p: Encoding,
        r: Encoding,
        truncation: Truncation,
    ) -> Result<Encoded, TokenizeError> {
        let enc = match self.style {
            InputStyle::Pair => self
                .inner
                .post_process(p, Some(r), true)
                .map_err(encode_err)?,
            InputStyle::Sequence => {
                let joined = Encoding::merge([p, r], false);
                self.inner
                    .post_process(joined, None, true)
                    .map_err(encode_err)?
            }
        };
        let mut ids = enc.get_ids().to_vec();
        let mut type_ids = enc.get_type_ids().to_vec();
        if let (true, Some(eos)) = (self.append_eos, self.eos_id) {
            if ids.last() != Some(&eos) {
                ids.push(eos);
                type_ids.push(0);
            }
        }
        if ids.is_empty() {
            return Err(TokenizeError::Empty);
        }
        Ok(Encoded {
            ids,
            type_ids,
            truncation,
        })
    }
}

fn byte_level_bpe(dir: &Path) -> Result<tokenizers::Tokenizer, String> {
    use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let vocab = dir.join("vocab.json");
    let merges = dir.join("merges.txt");
    let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
        .build()
        .map_err(|e| e.to_string())?;
    let mut t = tokenizers::Tokenizer::new(bpe);
    t.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    t.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(t)
}

#[derive(Default)]
struct TokenizerConfig {
    eos: Option<String>,
    pad: Option<String>,
}

/// `eos_token` / `pad_token` from a `tokenizer_config.json` (a string or `{"content": …}`).
fn read_tokenizer_config(path: &Path) -> TokenizerConfig {
    let Ok(text) = std::fs::read_to_string(path) else {
        return TokenizerConfig::default();
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        return TokenizerConfig::default();
    };
    let token = |key: &str| match value.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => o
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    };
    TokenizerConfig {
        eos: token("eos_token"),
        pad: token("pad_token"),
    }
}

/// Token lengths of a dataset and how much a `max_length` would truncate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLengthStats {
    /// Content tokens, without special tokens.
    pub prompt: Option<Distribution>,
    pub chosen: Option<Distribution>,
    pub rejected: Option<Distribution>,
    /// Full model inputs (special tokens included), before truncation.
    pub sequence: Option<Distribution>,
    pub max_length: usize,
    /// Sequences (two per pair) that do not fit `max_length`.
    pub sequences_truncated: usize,
    /// Pairs with at least one truncated sequence.
    pub pairs_truncated: usize,
    /// Pairs whose response itself is cut (not only the prompt).
    pub pairs_response_truncated: usize,
}

impl TokenLengthStats {
    pub fn of(
        tok: &RewardTokenizer,
        pairs: &[PreferencePair],
        max_length: usize,
    ) -> Result<Self, TokenizeError> {
        let special = tok.special_tokens();
        let budget = max_length.saturating_sub(special);
        let (mut prompt, mut chosen, mut rejected, mut seq) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut seq_cut, mut pair_cut, mut resp_cut) = (0, 0, 0);
        for p in pairs {
            let pl = tok.tokens(&p.prompt.render())?.len();
            let cl = tok.tokens(&p.chosen.render())?.len();
            let rl = tok.tokens(&p.rejected.render())?.len();
            prompt.push(pl as f64);
            chosen.push(cl as f64);
            rejected.push(rl as f64);
            seq.push((pl + cl + special) as f64);
            seq.push((pl + rl + special) as f64);
            let cut = usize::from(pl + cl > budget) + usize::from(pl + rl > budget);
            seq_cut += cut;
            pair_cut += usize::from(cut > 0);
            resp_cut += usize::from(cl > budget || rl > budget);
        }
        Ok(TokenLengthStats {
            prompt: Distribution::of(&prompt),
            chosen: Distribution::of(&chosen),
            rejected: Distribution::of(&rejected),
            sequence: Distribution::of(&seq),
            max_length,
            sequences_truncated: seq_cut,
            pairs_truncated: pair_cut,
            pairs_response_truncated: resp_cut,
        })
    }
}
