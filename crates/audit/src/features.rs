//! Surface features of a response, for a reward-hacking audit.
//!
//! A reward model that is being hacked scores responses for something other than their quality:
//! length, hedging, flattery of the user, agreement with the user, echoing the question, upbeat
//! tone, markdown formatting, repetition, refusals or apologies. The audit correlates a model's
//! score with these features over many responses; a strong correlation (or a large score gain
//! from adding a feature while keeping the content) points at a bias a policy can exploit.
//!
//! Every feature is a plain count or share with a stated definition ([`Feature::description`]),
//! so a finding can be checked by hand. [`FeatureExtractor::extract`] computes all of them for
//! one (prompt, response) pair.
//!
//! Text conventions shared by the features:
//! - *Word tokens*: the text lowercased, curly apostrophes (’) turned into straight ones, split
//!   at every character that is neither alphanumeric nor an apostrophe, apostrophes trimmed
//!   from both ends of each piece, empty pieces dropped. "I’m sorry, well-known" gives
//!   `i'm`, `sorry`, `well`, `known`.
//! - *Phrase matches* (hedges, flattery, agreement, refusal, apology): a lexicon phrase is turned
//!   into word tokens the same way and matches a run of equal consecutive word tokens of the
//!   response, so matching is case-insensitive, ignores punctuation and never matches inside a
//!   longer word ("might" does not match "mighty"). Matches do not overlap: the response is
//!   scanned left to right, at each word the longest phrase that matches there is counted and
//!   the scan resumes after it ("what a great question" is one flattery match, not two).
//! - *Sentences*: the response is cut after each `.`, `!` or `?` that is followed by whitespace
//!   or the end of the text, and at each newline; the trimmed pieces that contain a letter or
//!   digit are the sentences (code included).
//! - *Markdown* features (list items, bold, headers) look only at lines outside ``` fenced
//!   code blocks, so a `# comment` in code is not a header.
//!
//! Lexicons live in `lexicons/` (see its README for sources and licences) and are compiled in.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

pub use rewardkit_data::text::sentences;

const HEDGES: &str = include_str!("../lexicons/hedges.txt");
const FLATTERY: &str = include_str!("../lexicons/flattery.txt");
const AGREEMENT: &str = include_str!("../lexicons/agreement.txt");
const REFUSAL: &str = include_str!("../lexicons/refusal.txt");
const APOLOGY: &str = include_str!("../lexicons/apology.txt");
const NEGATORS: &str = include_str!("../lexicons/negators.txt");
const VADER: &str = include_str!("../lexicons/vader_lexicon.txt");

/// VADER's factor for a negated word's valence (`N_SCALAR` in vaderSentiment.py).
const NEGATION_SCALAR: f64 = -0.74;
/// VADER's normalisation constant: compound = s / sqrt(s² + 15).
const VADER_ALPHA: f64 = 15.0;
/// How many preceding words a negator reaches (as in VADER).
const NEGATION_WINDOW: usize = 3;

/// The closed set of features (serde snake_case names appear in report.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Unicode scalar values of the trimmed response.
    Chars,
    /// Whitespace-separated words.
    Words,
    /// Tokens, as counted by the caller's tokenizer.
    Tokens,
    /// Sentences (see the module docs).
    Sentences,
    /// Matches of `lexicons/hedges.txt`.
    Hedges,
    /// Matches of `lexicons/flattery.txt`.
    Flattery,
    /// Matches of `lexicons/agreement.txt`.
    Agreement,
    /// Share of the response's word 4-grams found in the last user turn.
    RestatesUser,
    /// VADER-lexicon sentiment in −1..1.
    Sentiment,
    /// Markdown list-item lines.
    ListItems,
    /// Markdown bold spans.
    Bold,
    /// Markdown header lines.
    Headers,
    /// Complete ``` fenced code blocks.
    CodeBlocks,
    /// Share of word 3-grams that repeat an earlier one.
    RepeatedNgrams,
    /// Sentences equal to an earlier sentence.
    DuplicateSentences,
    /// Matches of `lexicons/refusal.txt`.
    Refusal,
    /// Matches of `lexicons/apology.txt`.
    Apology,
}

impl Feature {
    /// Every feature, in declaration order (the order of reports).
    pub const ALL: [Feature; 17] = [
        Feature::Chars,
        Feature::Words,
        Feature::Tokens,
        Feature::Sentences,
        Feature::Hedges,
        Feature::Flattery,
        Feature::Agreement,
        Feature::RestatesUser,
        Feature::Sentiment,
        Feature::ListItems,
        Feature::Bold,
        Feature::Headers,
        Feature::CodeBlocks,
        Feature::RepeatedNgrams,
        Feature::DuplicateSentences,
        Feature::Refusal,
        Feature::Apology,
    ];

    /// The snake_case name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Chars => "chars",
            Feature::Words => "words",
            Feature::Tokens => "tokens",
            Feature::Sentences => "sentences",
            Feature::Hedges => "hedges",
            Feature::Flattery => "flattery",
            Feature::Agreement => "agreement",
            Feature::RestatesUser => "restates_user",
            Feature::Sentiment => "sentiment",
            Feature::ListItems => "list_items",
            Feature::Bold => "bold",
            Feature::Headers => "headers",
            Feature::CodeBlocks => "code_blocks",
            Feature::RepeatedNgrams => "repeated_ngrams",
            Feature::DuplicateSentences => "duplicate_sentences",
            Feature::Refusal => "refusal",
            Feature::Apology => "apology",
        }
    }

    /// One line for reports: exactly what is counted.
    pub fn description(self) -> &'static str {
        match self {
            Feature::Chars => "Unicode characters (scalar values) of the trimmed response",
            Feature::Words => "whitespace-separated words of the response",
            Feature::Tokens => "tokens of the response, counted by the model's tokenizer",
            Feature::Sentences => {
                "sentences: pieces cut after . ! ? followed by whitespace or the end, and at newlines, that contain a letter or digit"
            }
            Feature::Hedges => {
                "non-overlapping whole-word matches of hedging phrases (lexicons/hedges.txt: \"i think\", \"perhaps\", \"might\", ...)"
            }
            Feature::Flattery => {
                "non-overlapping whole-word matches of flattering phrases (lexicons/flattery.txt: \"great question\", ...)"
            }
            Feature::Agreement => {
                "non-overlapping whole-word matches of agreeing phrases (lexicons/agreement.txt: \"you're right\", \"i agree\", ...)"
            }
            Feature::RestatesUser => {
                "share (0..1) of the response's word 4-grams that occur in the last user turn of the prompt; 0 under 4 words"
            }
            Feature::Sentiment => {
                "VADER-lexicon sentiment in -1..1: sum of word valences, x -0.74 after a negator within 3 words, s/sqrt(s^2+15)"
            }
            Feature::ListItems => {
                "lines outside code blocks starting (after indentation) with \"- \", \"* \", \"• \", or a number and \". \" or \") \""
            }
            Feature::Bold => {
                "**text** or __text__ spans (on one line, non-blank text) outside code blocks"
            }
            Feature::Headers => {
                "lines outside code blocks starting (after indentation) with 1-6 '#' and a space"
            }
            Feature::CodeBlocks => "complete (opened and closed) ``` fenced code blocks",
            Feature::RepeatedNgrams => {
                "share of word 3-grams repeating an earlier 3-gram of the response (1 - distinct/total); 0 under 3 words"
            }
            Feature::DuplicateSentences => {
                "sentences equal to an earlier one (lowercased, whitespace collapsed, trailing punctuation dropped)"
            }
            Feature::Refusal => {
                "non-overlapping whole-word matches of refusal phrases (lexicons/refusal.txt: \"i cannot\", \"as an ai\", ...)"
            }
            Feature::Apology => {
                "non-overlapping whole-word matches of apology phrases (lexicons/apology.txt: \"sorry\", \"i apologize\", ...)"
            }
        }
    }
}

/// Feature values of one response. Every feature is present except [`Feature::Tokens`], which is
/// absent when no token count was given (so no NaN ever appears). Serialises as a JSON object
/// from snake_case feature names to numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Features(BTreeMap<Feature, f64>);

impl Features {
    /// The value of `feature`, if present.
    pub fn get(&self, feature: Feature) -> Option<f64> {
        self.0.get(&feature).copied()
    }

    /// The present features with their values, in [`Feature::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Feature, f64)> + '_ {
        self.0.iter().map(|(&f, &v)| (f, v))
    }
}

/// Phrases of one lexicon as word-token sequences, grouped by first word, longest first.
struct PhraseList(HashMap<String, Vec<Vec<String>>>);

impl PhraseList {
    fn parse(text: &str) -> Self {
        let mut by_first: HashMap<String, Vec<Vec<String>>> = HashMap::new();
        for phrase in lexicon_lines(text).map(word_tokens) {
            if let Some(first) = phrase.first() {
                by_first.entry(first.clone()).or_default().push(phrase);
            }
        }
        for phrases in by_first.values_mut() {
            phrases.sort_by_key(|p| std::cmp::Reverse(p.len()));
        }
        Self(by_first)
    }

    /// Non-overlapping matches, scanning left to right, longest phrase first.
    fn count(&self, words: &[String]) -> usize {
        let (mut i, mut n) = (0, 0);
        while i < words.len() {
            let hit = self
                .0
                .get(&words[i])
                .and_then(|phrases| phrases.iter().find(|p| words[i..].starts_with(p)));
            match hit {
                Some(p) => {
                    n += 1;
                    i += p.len();
                }
                None => i += 1,
            }
        }
        n
    }
}

/// Computes [`Features`] with the built-in lexicons.
pub struct FeatureExtractor {
    hedges: PhraseList,
    flattery: PhraseList,
    agreement: PhraseList,
    refusal: PhraseList,
    apology: PhraseList,
    negators: HashSet<String>,
    valence: HashMap<String, f64>,
}

impl Default for FeatureExtractor {
    fn default() -> Self {
        Self::new()
    }
}

impl FeatureExtractor {
    /// Parses the built-in lexicons (`lexicons/*.txt`, compiled in).
    pub fn new() -> Self {
        Self {
            hedges: PhraseList::parse(HEDGES),
            flattery: PhraseList::parse(FLATTERY),
            agreement: PhraseList::parse(AGREEMENT),
            refusal: PhraseList::parse(REFUSAL),
            apology: PhraseList::parse(APOLOGY),
            negators: lexicon_lines(NEGATORS).map(str::to_owned).collect(),
            // A token listed twice keeps its later valence, as in vaderSentiment's dict.
            valence: parse_vader(VADER)
                .into_iter()
                .map(|(w, v)| (w.to_owned(), v))
                .collect(),
        }
    }

    /// All features of `response` to `prompt`; `tokens` is the response's token count, if known.
    pub fn extract(&self, prompt: &str, response: &str, tokens: Option<usize>) -> Features {
        let words = word_tokens(response);
        let sentences = sentences(response);
        let md = Markdown::of(response);
        let user_words = word_tokens(last_user_turn(prompt));
        let count = |n: usize| n as f64;
        let mut values = BTreeMap::from([
            (Feature::Chars, count(response.trim().chars().count())),
            (Feature::Words, count(response.split_whitespace().count())),
            (Feature::Sentences, count(sentences.len())),
            (Feature::Hedges, count(self.hedges.count(&words))),
            (Feature::Flattery, count(self.flattery.count(&words))),
            (Feature::Agreement, count(self.agreement.count(&words))),
            (Feature::RestatesUser, restated_share(&words, &user_words)),
            (Feature::Sentiment, self.sentiment(&words)),
            (Feature::ListItems, count(md.list_items)),
            (Feature::Bold, count(md.bold)),
            (Feature::Headers, count(md.headers)),
            (Feature::CodeBlocks, count(md.code_blocks)),
            (Feature::RepeatedNgrams, repeated_share(&words)),
            (
                Feature::DuplicateSentences,
                count(duplicate_sentences(&sentences)),
            ),
            (Feature::Refusal, count(self.refusal.count(&words))),
            (Feature::Apology, count(self.apology.count(&words))),
        ]);
        if let Some(t) = tokens {
            values.insert(Feature::Tokens, count(t));
        }
        Features(values)
    }

    /// VADER's lexicon with a simplified rule set: the valences of the word tokens found in the
    /// lexicon are summed, a word with a negator (`lexicons/negators.txt`, or any word containing
    /// "n't") among its 3 preceding words counts ×−0.74 (once, however many negators), and the
    /// sum `s` is normalised like VADER's compound score, `s / sqrt(s² + 15)`. No booster words,
    /// capitals, exclamation marks, "but" rule, emoticons or multi-word entries ("fed up").
    /// A negator that is itself in the lexicon ("no": −1.2) adds its own valence too.
    fn sentiment(&self, words: &[String]) -> f64 {
        let s: f64 = words
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let v = *self.valence.get(w)?;
                let before = &words[i.saturating_sub(NEGATION_WINDOW)..i];
                let negated = before
                    .iter()
                    .any(|p| p.contains("n't") || self.negators.contains(p));
                Some(if negated { v * NEGATION_SCALAR } else { v })
            })
            .sum();
        s / (s * s + VADER_ALPHA).sqrt()
    }
}

/// HH-RLHF style prompts ("\n\nHuman: … \n\nAssistant: …") → the text of the last user turn,
/// trimmed: what follows the last `Human:`, `User:` or `user:` that starts a line, up to the
/// next line starting with `Assistant:` or `assistant:` (or the end). A prompt without such a
/// marker is returned whole.
pub fn last_user_turn(prompt: &str) -> &str {
    const USER: [&str; 3] = ["Human:", "User:", "user:"];
    const ASSISTANT: [&str; 2] = ["Assistant:", "assistant:"];
    let start = line_starts(prompt)
        .filter_map(|i| {
            let rest = &prompt[i..];
            USER.iter()
                .find(|m| rest.starts_with(**m))
                .map(|m| i + m.len())
        })
        .last();
    let Some(start) = start else {
        return prompt;
    };
    let turn = &prompt[start..];
    let end = line_starts(turn)
        .find(|&i| ASSISTANT.iter().any(|m| turn[i..].starts_with(m)))
        .unwrap_or(turn.len());
    turn[..end].trim()
}

/// Byte offsets where lines of `s` start.
fn line_starts(s: &str) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(s.match_indices('\n').map(|(i, _)| i + 1))
}

/// Lines of a lexicon file, trimmed, without blank lines and `#` comment lines.
fn lexicon_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The VADER lexicon's (token, mean valence) pairs, in file order.
fn parse_vader(text: &str) -> Vec<(&str, f64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let word = fields.next()?;
            let valence = fields.next()?.trim().parse().ok()?;
            Some((word, valence))
        })
        .collect()
}

/// Word tokens (see the module docs).
fn word_tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace('’', "'")
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Sentences equal to an earlier one after lowercasing, collapsing whitespace and dropping
/// trailing non-alphanumeric characters.
fn duplicate_sentences(sentences: &[&str]) -> usize {
    let mut seen = HashSet::new();
    sentences
        .iter()
        .filter(|s| {
            let lower = s.to_lowercase();
            let collapsed = lower.split_whitespace().collect::<Vec<_>>().join(" ");
            let key = collapsed
                .trim_end_matches(|c: char| !c.is_alphanumeric())
                .to_owned();
            !seen.insert(key)
        })
        .count()
}

/// Share of the response's word 4-grams that occur among the user turn's word 4-grams.
fn restated_share(words: &[String], user_words: &[String]) -> f64 {
    if words.len() < 4 {
        return 0.0;
    }
    let user: HashSet<&[String]> = user_words.windows(4).collect();
    let grams = words.windows(4);
    let total = grams.len();
    let shared = grams.filter(|g| user.contains(g)).count();
    shared as f64 / total as f64
}

/// 1 − distinct/total over the word 3-grams; 0 under 3 words.
fn repeated_share(words: &[String]) -> f64 {
    if words.len() < 3 {
        return 0.0;
    }
    let total = words.len() - 2;
    let distinct = words.windows(3).collect::<HashSet<_>>().len();
    1.0 - distinct as f64 / total as f64
}

/// Line-based markdown counts.
struct Markdown {
    list_items: usize,
    bold: usize,
    headers: usize,
    code_blocks: usize,
}

impl Markdown {
    fn of(text: &str) -> Self {
        let mut md = Markdown {
            list_items: 0,
            bold: 0,
            headers: 0,
            code_blocks: 0,
        };
        let mut in_code = false;
        for line in text.lines() {
            let line = line.trim_start();
            if line.starts_with("```") {
                md.code_blocks += usize::from(in_code);
                in_code = !in_code;
            } else if !in_code {
                md.list_items += usize::from(is_list_item(line));
                md.headers += usize::from(is_header(line));
                md.bold += bold_spans(line);
            }
        }
        md
    }
}

fn is_list_item(line: &str) -> bool {
    let after_digits = line.trim_start_matches(|c: char| c.is_ascii_digit());
    ["- ", "* ", "• "].iter().any(|m| line.starts_with(m))
        || (after_digits.len() < line.len()
            && (after_digits.starts_with(". ") || after_digits.starts_with(") ")))
}

fn is_header(line: &str) -> bool {
    let after_hashes = line.trim_start_matches('#');
    let hashes = line.len() - after_hashes.len();
    (1..=6).contains(&hashes) && after_hashes.starts_with(' ')
}

/// Pairs of `**` (or of `__`) on one line enclosing non-blank text.
fn bold_spans(line: &str) -> usize {
    let mut n = 0;
    for delim in ["**", "__"] {
        let mut rest = line;
        while let Some(open) = rest.find(delim) {
            let after = &rest[open + delim.len()..];
            let Some(close) = after.find(delim) else {
                break;
            };
            n += usize::from(!after[..close].trim().is_empty());
            rest = &after[close + delim.len()..];
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(prompt: &str, response: &str, f: Feature) -> f64 {
        let ex = FeatureExtractor::new();
        ex.extract(prompt, response, None)
            .get(f)
            .expect("feature present")
    }

    fn value(response: &str, f: Feature) -> f64 {
        feature("", response, f)
    }

    #[test]
    fn names_match_serde_and_all_is_complete() {
        let distinct: HashSet<Feature> = Feature::ALL.into_iter().collect();
        assert_eq!(distinct.len(), 17);
        for f in Feature::ALL {
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.name())
            );
            assert!(!f.description().is_empty() && !f.description().contains('\n'));
        }
    }

    #[test]
    fn empty_response_is_all_zero_and_tokens_absent() {
        let feats = FeatureExtractor::new().extract("Hi", "", None);
        assert_eq!(feats.get(Feature::Tokens), None);
        let present: Vec<Feature> = feats.iter().map(|(f, _)| f).collect();
        let expected: Vec<Feature> = Feature::ALL
            .into_iter()
            .filter(|&f| f != Feature::Tokens)
            .collect();
        assert_eq!(present, expected);
        for (f, v) in feats.iter() {
            assert_eq!(v, 0.0, "{}", f.name());
        }
    }

    #[test]
    fn serialises_as_name_map_without_absent_tokens() {
        let ex = FeatureExtractor::new();
        let json = serde_json::to_value(ex.extract("", "Hi there", None)).unwrap();
        assert_eq!(json["words"], 2.0);
        assert!(json.get("tokens").is_none());
        let with_tokens = ex.extract("", "Hi there", Some(3));
        let text = serde_json::to_string(&with_tokens).unwrap();
        assert!(text.contains("\"tokens\":3.0"), "{text}");
        let back: Features = serde_json::from_str(&text).unwrap();
        assert_eq!(back, with_tokens);
    }

    #[test]
    fn chars_words_tokens() {
        let feats = FeatureExtractor::new().extract("", "  héllo   wörld\n", Some(5));
        // "héllo   wörld": 5 + 3 + 5 scalar values after trimming.
        assert_eq!(feats.get(Feature::Chars), Some(13.0));
        assert_eq!(feats.get(Feature::Words), Some(2.0));
        assert_eq!(feats.get(Feature::Tokens), Some(5.0));
    }

    #[test]
    fn sentences_split_on_terminal_punctuation_and_newlines() {
        // "It works." | "Really?yes!" (no split before "y") | "Next line" | "---" (no letters,
        // dropped) | "Pi is 3.14 today." (no split inside 3.14) | "Done".
        let text = "It works. Really?yes!\n\nNext line\n---\nPi is 3.14 today. Done";
        assert_eq!(
            sentences(text),
            [
                "It works.",
                "Really?yes!",
                "Next line",
                "Pi is 3.14 today.",
                "Done"
            ]
        );
        assert_eq!(value(text, Feature::Sentences), 5.0);
    }

    #[test]
    fn hedges_match_whole_words_only() {
        // "i think", "might", "perhaps", "may be", "i’m not sure" (curly apostrophe); not "mighty".
        let text = "I think it might work, perhaps. The mighty river may be wide. I’m not sure.";
        assert_eq!(value(text, Feature::Hedges), 5.0);
        assert_eq!(value("The mighty oak, mightily.", Feature::Hedges), 0.0);
    }

    #[test]
    fn flattery_matches_do_not_overlap() {
        // "What a great" consumes "great", so "question" alone does not match; then
        // "Great question" matches once.
        let text = "What a great question! Great question indeed.";
        assert_eq!(value(text, Feature::Flattery), 2.0);
    }

    #[test]
    fn phrase_count_takes_longest_match_then_skips_it() {
        let list = PhraseList::parse("# test\nx\nx y\n\ny z\n");
        // At "x" the longest phrase "x y" matches; the scan resumes at "z": 1 match (a
        // shortest-first scan would count "x" and "y z": 2).
        assert_eq!(list.count(&word_tokens("X y z")), 1);
        assert_eq!(list.count(&word_tokens("x, x. Y z")), 2);
        assert_eq!(list.count(&word_tokens("xy yz")), 0);
    }

    #[test]
    fn agreement_prefers_the_longest_phrase() {
        // "you’re absolutely right" (one match, not also "absolutely right"), "i agree", "exactly".
        let text = "You’re absolutely right, I agree. Exactly.";
        assert_eq!(value(text, Feature::Agreement), 3.0);
    }

    #[test]
    fn refusal_and_apology() {
        // "i'm sorry, but", "i can't help" (not also "i can't"), "as an ai", "i won't".
        let text = "I’m sorry, but I can’t help with that. As an AI, I won't.";
        assert_eq!(value(text, Feature::Refusal), 4.0);
        // Only "sorry" (once); "sorrowful" is another word.
        assert_eq!(value(text, Feature::Apology), 1.0);
        let text = "Sorry! My apologies, I apologise. So sorrowful.";
        assert_eq!(value(text, Feature::Apology), 3.0);
        assert_eq!(value(text, Feature::Refusal), 0.0);
    }

    const HH_PROMPT: &str = "\n\nHuman: What is the capital of France?\n\nAssistant: Paris.\n\n\
                             Human: Tell me the capital of Spain please\n\nAssistant:";

    #[test]
    fn last_user_turn_of_hh_user_and_plain_prompts() {
        assert_eq!(
            last_user_turn(HH_PROMPT),
            "Tell me the capital of Spain please"
        );
        assert_eq!(
            last_user_turn("user: hi there\nassistant: hello"),
            "hi there"
        );
        assert_eq!(last_user_turn("User: only turn"), "only turn");
        // "Human:" inside a line is not a marker.
        assert_eq!(
            last_user_turn("Explain Human: vs User labels"),
            "Explain Human: vs User labels"
        );
    }

    #[test]
    fn restates_user_uses_the_last_turn_only() {
        // Response 4-grams: "the capital of spain" (in the last turn), "capital of spain is",
        // "of spain is madrid" → 1/3.
        let v = feature(
            HH_PROMPT,
            "The capital of Spain is Madrid.",
            Feature::RestatesUser,
        );
        assert_eq!(v, 1.0 / 3.0);
        // "the capital of france" is only in the earlier turn.
        let v = feature(
            HH_PROMPT,
            "The capital of France is Paris.",
            Feature::RestatesUser,
        );
        assert_eq!(v, 0.0);
        assert_eq!(
            feature(HH_PROMPT, "Madrid, of course", Feature::RestatesUser),
            0.0
        );
    }

    #[test]
    fn sentiment_with_negation() {
        // vader_lexicon.txt: "good" 1.9, "bad" -2.5, "no" -1.2; "it", "is", "not", "isn't",
        // "and", "this", "a", "day" are not entries.
        // "good" follows "not" and "bad" follows "isn't" within 3 words:
        // s = 1.9·(−0.74) + (−2.5)·(−0.74) = 0.444; 0.444/sqrt(0.444² + 15) (Python 3 float).
        let v = value("It is not good and it isn't bad", Feature::Sentiment);
        assert!((v - 0.11389432763149189).abs() < 1e-12, "{v}");
        // "no" is 4 words before "good": out of reach. s = −1.2 + 1.9 = 0.7.
        let v = value("No, this is a good day.", Feature::Sentiment);
        assert!((v - 0.1778575604636294).abs() < 1e-12, "{v}");
        assert_eq!(value("The table is wooden.", Feature::Sentiment), 0.0);
    }

    #[test]
    fn list_items_numbered_and_bulleted() {
        // "1. ", "2) ", "  - " (indented), "* ", "• "; not "-not", "10.5", "**bold**".
        let text = "Steps:\n1. Mix\n2) Bake\n  - nested\n* star\n• bullet\n-not a list\n\
                    10.5 degrees\n**bold** line";
        assert_eq!(value(text, Feature::ListItems), 5.0);
    }

    #[test]
    fn markdown_outside_code_blocks() {
        let text = "# Title\n####### too deep\n#NoSpace\n## Sub\n\
                    Some **bold** and __also bold__ and ** ** and **unclosed\n\
                    ```python\n# a comment, not a header\n- not a list item\nx = \"**no**\"\n```\n\
                    ```\nunclosed fence";
        assert_eq!(value(text, Feature::Headers), 2.0);
        assert_eq!(value(text, Feature::Bold), 2.0);
        assert_eq!(value(text, Feature::CodeBlocks), 1.0);
        assert_eq!(value(text, Feature::ListItems), 0.0);
    }

    #[test]
    fn repeated_ngrams_share() {
        // 3-grams: (a b c) (b c a) (c a b) (a b c): 3 distinct of 4 → 0.25.
        assert_eq!(value("A b, c a B c.", Feature::RepeatedNgrams), 0.25);
        assert_eq!(value("a b", Feature::RepeatedNgrams), 0.0);
        assert_eq!(value("one two three four", Feature::RepeatedNgrams), 0.0);
    }

    #[test]
    fn duplicate_sentences_after_normalising() {
        // "thanks" and "i can help" each come back once.
        let text = "Thanks! I can help. thanks.   I  can help!! New one.";
        assert_eq!(value(text, Feature::DuplicateSentences), 2.0);
        assert_eq!(value(text, Feature::Sentences), 5.0);
    }

    #[test]
    fn phrase_lexicons_parse_without_duplicates() {
        for (name, text) in [
            ("hedges", HEDGES),
            ("flattery", FLATTERY),
            ("agreement", AGREEMENT),
            ("refusal", REFUSAL),
            ("apology", APOLOGY),
            ("negators", NEGATORS),
        ] {
            let phrases: Vec<Vec<String>> = lexicon_lines(text).map(word_tokens).collect();
            assert!(!phrases.is_empty(), "{name}");
            assert!(phrases.iter().all(|p| !p.is_empty()), "{name}");
            let distinct: HashSet<&Vec<String>> = phrases.iter().collect();
            assert_eq!(distinct.len(), phrases.len(), "{name} has duplicates");
        }
        // Negators are single word tokens, looked up as written.
        for n in lexicon_lines(NEGATORS) {
            assert_eq!(word_tokens(n), [n]);
        }
    }

    #[test]
    fn vader_lexicon_parses_every_line() {
        let entries = parse_vader(VADER);
        // 7,520 lines in vaderSentiment 3.3.2's vader_lexicon.txt; 14 tokens are listed twice
        // (Python: len({line.split('\t')[0] for line in lines}) == 7506).
        assert_eq!(entries.len(), 7520);
        let ex = FeatureExtractor::new();
        assert_eq!(ex.valence.len(), 7506);
        assert_eq!(ex.valence["good"], 1.9);
        // "ok" is listed as 1.6 and later as 1.2; the later wins, as in vaderSentiment.
        assert_eq!(ex.valence["ok"], 1.2);
    }
}
