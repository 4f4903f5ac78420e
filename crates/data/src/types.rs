//! Plain types shared by every rewardkit crate: texts, preference pairs and where they came from.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One chat message, as in TRL's conversational datasets (`{"role": "user", "content": "…"}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A prompt or a response: plain text, or a list of chat messages.
///
/// Text is kept verbatim (an HH-RLHF response keeps the space that follows `Assistant:`), so that
/// `prompt + response` gives back the original transcript and nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Text {
    Plain(String),
    Chat(Vec<Message>),
}

impl Text {
    /// Number of characters (Unicode scalar values) of the text; for a chat, of all contents.
    pub fn char_len(&self) -> usize {
        match self {
            Text::Plain(s) => s.chars().count(),
            Text::Chat(messages) => messages.iter().map(|m| m.content.chars().count()).sum(),
        }
    }

    /// Number of whitespace-separated words.
    pub fn word_len(&self) -> usize {
        match self {
            Text::Plain(s) => s.split_whitespace().count(),
            Text::Chat(messages) => messages
                .iter()
                .map(|m| m.content.split_whitespace().count())
                .sum(),
        }
    }

    /// The text as one string. A chat is rendered as `role: content` blocks separated by blank
    /// lines; models with a chat template render chats themselves instead.
    pub fn render(&self) -> String {
        match self {
            Text::Plain(s) => s.clone(),
            Text::Chat(messages) => messages
                .iter()
                .map(|m| format!("{}: {}", m.role, m.content))
                .collect::<Vec<_>>()
                .join("\n\n"),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Text::Plain(s) => s.trim().is_empty(),
            Text::Chat(messages) => messages.iter().all(|m| m.content.trim().is_empty()),
        }
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text::Plain(s.to_string())
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text::Plain(s)
    }
}

/// Where a record came from: a file and a 1-based line (JSONL, JSON) or row (Parquet).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub file: Arc<str>,
    pub position: Position,
}

/// A 1-based position in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Position {
    /// A line of a text file (JSONL line, or the line where a JSON array element starts).
    Line(u64),
    /// A row of a Parquet file.
    Row(u64),
}

/// How a file is named in messages: its path, or `<stdin>` for `-`.
fn file_name(file: &Path) -> Arc<str> {
    if file.as_os_str() == "-" {
        "<stdin>".into()
    } else {
        file.display().to_string().into()
    }
}

impl Location {
    /// A line of `file` (`-` is named `<stdin>`).
    pub fn line(file: &Path, line: u64) -> Self {
        Location {
            file: file_name(file),
            position: Position::Line(line),
        }
    }

    /// A row of `file` (`-` is named `<stdin>`).
    pub fn row(file: &Path, row: u64) -> Self {
        Location {
            file: file_name(file),
            position: Position::Row(row),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Position::Line(n) => write!(f, "{}:{}", self.file, n),
            Position::Row(n) => write!(f, "{}:row {}", self.file, n),
        }
    }
}

impl Serialize for Location {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One human preference: for `prompt`, `chosen` was preferred to `rejected`, unless `tie` is set,
/// in which case the labellers found them equally good (and `chosen`/`rejected` are just the first
/// and second response).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreferencePair {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub prompt: Text,
    pub chosen: Text,
    pub rejected: Text,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tie: bool,
    /// A soft label: the probability that `chosen` is the better response (≥ 0.5: a file's
    /// label below ½ has its responses swapped on reading; exactly ½ is a tie). `None` for a
    /// hard label, which [`Self::target`] takes as 1. Written back as `p_chosen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_chosen: Option<f64>,
    /// How strongly `chosen` is preferred, for the margin loss `−logσ(Δ − m)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// A group for per-subset metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// How a pair that no labeller judged was made, e.g. `augment/correction/gsm8k` or
    /// `augment/counterfactual/filler` (see `rewardkit data augment`); `None` for a labelled
    /// pair. Read back from the `source` field of a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The file and line this pair was read from.
    pub location: Location,
}

impl PreferencePair {
    /// A pair built in code (tests, generated worlds): its location is `<memory>`.
    pub fn new(
        prompt: impl Into<Text>,
        chosen: impl Into<Text>,
        rejected: impl Into<Text>,
    ) -> Self {
        PreferencePair {
            id: None,
            prompt: prompt.into(),
            chosen: chosen.into(),
            rejected: rejected.into(),
            tie: false,
            p_chosen: None,
            margin: None,
            subset: None,
            source: None,
            location: Location {
                file: "<memory>".into(),
                position: Position::Line(0),
            },
        }
    }

    /// The probability that `chosen` is better, which the Bradley-Terry cross-entropy trains
    /// towards: ½ for a tie, the soft label where there is one, else 1.
    pub fn target(&self) -> f64 {
        if self.tie {
            0.5
        } else {
            self.p_chosen.unwrap_or(1.0)
        }
    }

    /// A correction pair: the user asserts a wrong answer, chosen corrects them, rejected
    /// agrees (its `source` starts with [`CORRECTION_SOURCE`]). The honesty penalty of
    /// `rewardkit-train` weights these.
    pub fn is_correction(&self) -> bool {
        self.source
            .as_deref()
            .is_some_and(|s| s.starts_with(CORRECTION_SOURCE))
    }
}

/// The `source` prefix of correction pairs (`augment/correction/gsm8k`, …).
pub const CORRECTION_SOURCE: &str = "augment/correction/";
