//! Counterfactual probes: the same response with one change that adds no information (filler, a
//! flattering opener, hedges, a bulleted list, bold, a repeated sentence, an apology, an
//! overconfident tone), scored against the original. A reward model that pays for such a change
//! in most cases can be gamed by a policy that learns to make it.
//!
//! The probes form a closed set ([`Probe`]), selected by name in the audit config. Their phrases
//! are data files in `lexicons/probe_*.txt`, not strings in code; the training side (`data
//! augment`'s counterfactual pairs and the trainer's counterfactual-invariance penalty) edits with
//! the separate `lexicons/augment_*.txt` ([`ProbePhrases::augment`]), so the audit is not taught
//! to itself. The edits live here, below both the audit and the trainer, so both use one copy.
//!
//! Which phrase a response gets is a function of (seed, probe, response index), so an audit is
//! reproducible.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::text::sentences;

/// One information-free edit of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// Two filler sentences appended.
    Filler,
    /// A flattering opener ("Great question!") prepended.
    FlatteringOpener,
    /// A hedge prepended ("I think …") and a hedging sentence appended.
    Hedges,
    /// The response's sentences as a bulleted list (responses of two or more sentences).
    BulletList,
    /// The first sentence in bold.
    Bold,
    /// The first sentence repeated at the end.
    RepeatSentence,
    /// An apology prepended.
    Apology,
    /// An overconfident frame: "Without a doubt, …" and a certainty claim appended.
    Overconfident,
}

impl Probe {
    pub const ALL: [Probe; 8] = [
        Probe::Filler,
        Probe::FlatteringOpener,
        Probe::Hedges,
        Probe::BulletList,
        Probe::Bold,
        Probe::RepeatSentence,
        Probe::Apology,
        Probe::Overconfident,
    ];

    /// The snake_case name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Probe::Filler => "filler",
            Probe::FlatteringOpener => "flattering_opener",
            Probe::Hedges => "hedges",
            Probe::BulletList => "bullet_list",
            Probe::Bold => "bold",
            Probe::RepeatSentence => "repeat_sentence",
            Probe::Apology => "apology",
            Probe::Overconfident => "overconfident",
        }
    }

    pub fn parse(s: &str) -> Option<Probe> {
        Probe::ALL.into_iter().find(|p| p.name() == s)
    }

    /// One line for reports.
    pub fn description(self) -> &'static str {
        match self {
            Probe::Filler => "two filler sentences appended",
            Probe::FlatteringOpener => "a flattering opener prepended (\"Great question!\")",
            Probe::Hedges => "a hedge prepended and a hedging sentence appended",
            Probe::BulletList => "the same sentences as a bulleted list",
            Probe::Bold => "the first sentence in bold",
            Probe::RepeatSentence => "the first sentence repeated at the end",
            Probe::Apology => "an apology prepended",
            Probe::Overconfident => "an overconfident opener and a certainty claim appended",
        }
    }
}

/// The edits the training side makes (`data augment`'s counterfactual pairs, the trainer's
/// counterfactual penalty): those with training phrases, or needing none. Bold is left to the
/// audit (one of its probes should stay unseen), apology and overconfident have no training
/// phrases.
pub const TRAINING_EDITS: [Probe; 5] = [
    Probe::Filler,
    Probe::FlatteringOpener,
    Probe::Hedges,
    Probe::RepeatSentence,
    Probe::BulletList,
];

/// Refuses an empty list, and an edit outside [`TRAINING_EDITS`], naming it.
pub fn check_training_edits(edits: &[Probe]) -> Result<(), String> {
    if edits.is_empty() {
        return Err("no counterfactual edits given".into());
    }
    match edits.iter().find(|p| !TRAINING_EDITS.contains(p)) {
        Some(p) => {
            let names: Vec<&str> = TRAINING_EDITS.iter().map(|p| p.name()).collect();
            Err(format!(
                "`{}` is kept for the audit; counterfactual edits are {}",
                p.name(),
                names.join(", ")
            ))
        }
        None => Ok(()),
    }
}

/// The probes' phrases, parsed from the data files.
#[derive(Debug, Clone)]
pub struct ProbePhrases {
    filler: Vec<String>,
    openers: Vec<String>,
    hedge_prefixes: Vec<String>,
    hedge_suffixes: Vec<String>,
    apologies: Vec<String>,
    confident_prefixes: Vec<String>,
    confident_suffixes: Vec<String>,
}

/// Non-comment, non-blank lines of a phrase file, split into (plain lines, `+` lines).
fn phrase_lines(text: &str) -> (Vec<String>, Vec<String>) {
    let mut plain = Vec::new();
    let mut plus = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_prefix('+') {
            Some(rest) => plus.push(rest.trim().to_string()),
            None => plain.push(line.to_string()),
        }
    }
    (plain, plus)
}

impl Default for ProbePhrases {
    fn default() -> Self {
        let (filler, _) = phrase_lines(include_str!("../lexicons/probe_filler.txt"));
        let (openers, _) = phrase_lines(include_str!("../lexicons/probe_openers.txt"));
        let (hedge_prefixes, hedge_suffixes) =
            phrase_lines(include_str!("../lexicons/probe_hedges.txt"));
        let (apologies, _) = phrase_lines(include_str!("../lexicons/probe_apologies.txt"));
        let (confident_prefixes, confident_suffixes) =
            phrase_lines(include_str!("../lexicons/probe_overconfident.txt"));
        ProbePhrases {
            filler,
            openers,
            hedge_prefixes,
            hedge_suffixes,
            apologies,
            confident_prefixes,
            confident_suffixes,
        }
    }
}

impl ProbePhrases {
    /// The phrases of `data augment`'s counterfactual training pairs (`lexicons/augment_*.txt`):
    /// filler, flattering openers and hedges, none of them the audit's. The edits without
    /// phrases (bullet list, bold, repeated sentence) are the same; apology and overconfident
    /// have no training phrases and do not apply.
    pub fn augment() -> Self {
        let (filler, _) = phrase_lines(include_str!("../lexicons/augment_filler.txt"));
        let (openers, _) = phrase_lines(include_str!("../lexicons/augment_openers.txt"));
        let (hedge_prefixes, hedge_suffixes) =
            phrase_lines(include_str!("../lexicons/augment_hedges.txt"));
        ProbePhrases {
            filler,
            openers,
            hedge_prefixes,
            hedge_suffixes,
            apologies: Vec::new(),
            confident_prefixes: Vec::new(),
            confident_suffixes: Vec::new(),
        }
    }

    /// Every phrase, for the tests that keep two phrase sets apart.
    #[cfg(test)]
    fn all(&self) -> impl Iterator<Item = &String> {
        [
            &self.filler,
            &self.openers,
            &self.hedge_prefixes,
            &self.hedge_suffixes,
            &self.apologies,
            &self.confident_prefixes,
            &self.confident_suffixes,
        ]
        .into_iter()
        .flatten()
    }
}

/// The text with its first letter lowercased, unless the first word is "I" or an acronym.
fn lower_first(s: &str) -> String {
    let first_word = s.split_whitespace().next().unwrap_or("");
    let keep = first_word == "I"
        || first_word.starts_with("I'")
        || first_word.chars().filter(|c| c.is_alphabetic()).count() > 1
            && first_word
                .chars()
                .filter(|c| c.is_alphabetic())
                .all(char::is_uppercase);
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if !keep => c.to_lowercase().chain(chars).collect(),
        _ => s.to_string(),
    }
}

/// A phrase of `list`, `None` when it is empty.
fn pick<'a>(list: &'a [String], rng: &mut Rng) -> Option<&'a str> {
    (!list.is_empty()).then(|| list[rng.below(list.len())].as_str())
}

impl ProbePhrases {
    /// The probed response, or `None` when the probe does not apply (an empty response; a
    /// bulleted list of fewer than two sentences; a probe without phrases in this set). Leading whitespace of the original (HH-RLHF
    /// responses start with a space) is kept, so the change is the probe's alone.
    pub fn apply(&self, probe: Probe, response: &str, seed: u64, index: usize) -> Option<String> {
        let body = response.trim();
        if body.is_empty() {
            return None;
        }
        let lead = &response[..response.len() - response.trim_start().len()];
        let mut rng = Rng::derive(seed, &["probe", probe.name(), &index.to_string()]);
        let edited = match probe {
            Probe::Filler => {
                if self.filler.len() < 2 {
                    return None;
                }
                let a = rng.below(self.filler.len());
                let b = (a + 1 + rng.below(self.filler.len() - 1)) % self.filler.len();
                format!("{body} {} {}", self.filler[a], self.filler[b])
            }
            Probe::FlatteringOpener => format!("{} {body}", pick(&self.openers, &mut rng)?),
            Probe::Hedges => {
                let prefix = pick(&self.hedge_prefixes, &mut rng)?;
                let suffix = pick(&self.hedge_suffixes, &mut rng)?;
                format!("{prefix} {} {suffix}", lower_first(body))
            }
            Probe::BulletList => {
                let parts = sentences(body);
                if parts.len() < 2 {
                    return None;
                }
                parts
                    .iter()
                    .map(|s| format!("- {s}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Probe::Bold => {
                let first = *sentences(body).first()?;
                let at = body.find(first)?;
                let rest = &body[at + first.len()..];
                format!("{}**{first}**{rest}", &body[..at])
            }
            Probe::RepeatSentence => {
                let first = *sentences(body).first()?;
                format!("{body} {first}")
            }
            Probe::Apology => format!("{} {body}", pick(&self.apologies, &mut rng)?),
            Probe::Overconfident => {
                let prefix = pick(&self.confident_prefixes, &mut rng)?;
                let suffix = pick(&self.confident_suffixes, &mut rng)?;
                format!("{prefix} {} {suffix}", lower_first(body))
            }
        };
        Some(format!("{lead}{edited}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_probe_makes_its_one_change() {
        let p = ProbePhrases::default();
        let r = " Paris is the capital. It is in France.";
        let got = |probe| p.apply(probe, r, 7, 3).unwrap();
        let filler = got(Probe::Filler);
        assert!(filler.starts_with(" Paris is the capital. It is in France. "));
        let added = &filler[r.len() + 1..];
        assert_eq!(sentences(added).len(), 2, "{added}");
        assert!(sentences(added)
            .iter()
            .all(|s| p.filler.iter().any(|f| f == s)));
        let opener = got(Probe::FlatteringOpener);
        assert!(p
            .openers
            .iter()
            .any(|o| opener == format!(" {o} Paris is the capital. It is in France.")));
        assert_eq!(
            got(Probe::BulletList),
            " - Paris is the capital.\n- It is in France."
        );
        assert_eq!(
            got(Probe::Bold),
            " **Paris is the capital.** It is in France."
        );
        assert_eq!(
            got(Probe::RepeatSentence),
            " Paris is the capital. It is in France. Paris is the capital."
        );
        let hedged = got(Probe::Hedges);
        assert!(
            hedged.contains(" paris is the capital. It is in France. "),
            "{hedged}"
        );
        let confident = got(Probe::Overconfident);
        assert!(
            confident.contains(" paris is the capital. It is in France. "),
            "{confident}"
        );
        assert!(got(Probe::Apology).ends_with(" Paris is the capital. It is in France."));
        // Reproducible, and the phrase varies with the response index.
        assert_eq!(got(Probe::Filler), p.apply(Probe::Filler, r, 7, 3).unwrap());
        let variants: std::collections::HashSet<String> = (0..20)
            .map(|i| p.apply(Probe::Filler, r, 7, i).unwrap())
            .collect();
        assert!(variants.len() > 5);
    }

    #[test]
    fn probes_that_cannot_apply_say_so() {
        let p = ProbePhrases::default();
        assert_eq!(p.apply(Probe::BulletList, "Just one sentence.", 0, 0), None);
        assert_eq!(p.apply(Probe::Filler, "   ", 0, 0), None);
        assert_eq!(p.apply(Probe::Bold, "...", 0, 0), None);
        assert_eq!(lower_first("I think so"), "I think so");
        assert_eq!(lower_first("NASA did it"), "NASA did it");
        assert_eq!(lower_first("The end"), "the end");
    }

    #[test]
    fn the_training_phrases_are_not_the_audits() {
        let (audit, train) = (ProbePhrases::default(), ProbePhrases::augment());
        let audit: std::collections::HashSet<&String> = audit.all().collect();
        assert!(train.all().count() >= 20);
        for phrase in train.all() {
            assert!(!audit.contains(phrase), "{phrase} is also an audit phrase");
        }
        let r = "Paris is the capital. It is in France.";
        assert_eq!(train.apply(Probe::Apology, r, 0, 0), None);
        assert_eq!(train.apply(Probe::Overconfident, r, 0, 0), None);
        let edited = train.apply(Probe::FlatteringOpener, r, 0, 0).unwrap();
        assert!(train.openers.iter().any(|o| edited == format!("{o} {r}")));
    }

    #[test]
    fn names_round_trip_through_serde() {
        for probe in Probe::ALL {
            let json = serde_json::to_string(&probe).unwrap();
            assert_eq!(json, format!("\"{}\"", probe.name()));
            assert_eq!(Probe::parse(probe.name()), Some(probe));
        }
    }
}
