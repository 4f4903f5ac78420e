//! Deterministic train/eval splits that do not depend on file order: each pair goes to a side by
//! a stable hash of its content and a seed, so the same pair lands on the same side in every run,
//! on every machine, whatever else the file holds.

use serde::{Deserialize, Serialize};

use crate::types::{PreferencePair, Text};

/// What the split hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SplitKey {
    /// The whole pair (prompt, chosen, rejected).
    #[default]
    Pair,
    /// The prompt only: every pair of one prompt is on the same side, so no prompt is seen in
    /// training and then evaluated on.
    Prompt,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SplitConfig {
    /// Share of pairs that go to evaluation, in [0, 1].
    pub eval_fraction: f64,
    pub seed: u64,
    pub key: SplitKey,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            eval_fraction: 0.2,
            seed: 0,
            key: SplitKey::Pair,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Train,
    Eval,
}

impl SplitConfig {
    /// The side `pair` belongs to.
    pub fn side(&self, pair: &PreferencePair) -> Side {
        let mut h = StableHasher::new(self.seed);
        h.text(&pair.prompt);
        if self.key == SplitKey::Pair {
            h.text(&pair.chosen);
            h.text(&pair.rejected);
        }
        if h.unit() < self.eval_fraction {
            Side::Eval
        } else {
            Side::Train
        }
    }

    /// Splits `pairs` into (train, eval), each in input order.
    pub fn split(&self, pairs: Vec<PreferencePair>) -> (Vec<PreferencePair>, Vec<PreferencePair>) {
        pairs.into_iter().partition(|p| self.side(p) == Side::Train)
    }
}

/// FNV-1a over the bytes (with field separators), finished with SplitMix64: stable across Rust
/// versions and platforms, unlike `std`'s hasher.
pub struct StableHasher(u64);

impl StableHasher {
    pub fn new(seed: u64) -> Self {
        let mut h = StableHasher(0xcbf2_9ce4_8422_2325);
        h.bytes(&seed.to_le_bytes());
        h
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// A string, followed by a separator byte that cannot occur in UTF-8.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
        self.bytes(&[0xff]);
    }

    pub fn text(&mut self, t: &Text) {
        match t {
            Text::Plain(s) => self.str(s),
            Text::Chat(messages) => {
                for m in messages {
                    self.str(&m.role);
                    self.str(&m.content);
                }
                self.bytes(&[0xfe]);
            }
        }
    }

    pub fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The hash as a number uniform in [0, 1).
    pub fn unit(&self) -> f64 {
        (self.finish() >> 11) as f64 / (1u64 << 53) as f64
    }
}
