//! Heuristic scorers: the baselines every reward model must beat. A reward model that barely
//! beats "the longer response wins" has learnt length, not quality.

use std::convert::Infallible;

use serde::{Deserialize, Serialize};

use rewardkit_data::{Scorer, StableHasher, Text};

/// A scorer that needs no model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Baseline {
    /// Score = the response's length in characters.
    LengthChars,
    /// Score = the response's length in whitespace-separated words.
    LengthWords,
    /// Score = a uniform number in [0, 1) from a hash of (seed, prompt, response): chance level,
    /// the same for the same text in every run.
    Random { seed: u64 },
}

impl Baseline {
    /// Parses `length`, `length-chars`, `length-words`, `random` or `random:SEED`.
    pub fn parse(s: &str) -> Result<Baseline, String> {
        match s {
            "length" | "length-chars" => Ok(Baseline::LengthChars),
            "length-words" => Ok(Baseline::LengthWords),
            "random" => Ok(Baseline::Random { seed: 0 }),
            _ => match s.strip_prefix("random:") {
                Some(seed) => seed
                    .parse()
                    .map(|seed| Baseline::Random { seed })
                    .map_err(|_| format!("bad seed in `{s}`")),
                None => Err(format!(
                    "unknown baseline `{s}` (expected length, length-words, random or random:SEED)"
                )),
            },
        }
    }

    pub fn score(&self, prompt: &Text, response: &Text) -> f64 {
        match *self {
            Baseline::LengthChars => response.char_len() as f64,
            Baseline::LengthWords => response.word_len() as f64,
            Baseline::Random { seed } => {
                let mut h = StableHasher::new(seed);
                h.text(prompt);
                h.text(response);
                h.unit()
            }
        }
    }
}

impl Scorer for Baseline {
    type Error = Infallible;
    fn score_batch(&self, items: &[(&Text, &Text)]) -> Result<Vec<f64>, Infallible> {
        Ok(items.iter().map(|(p, r)| self.score(p, r)).collect())
    }
    fn name(&self) -> String {
        match self {
            Baseline::LengthChars => "baseline:length-chars".into(),
            Baseline::LengthWords => "baseline:length-words".into(),
            Baseline::Random { seed } => format!("baseline:random:{seed}"),
        }
    }
}
