//! Data-level interventions: preference pairs that teach a reward model the opposite of what the
//! audit catches (`rewardkit data augment`, or `train --augment`).
//!
//! Two kinds of added pair, each marked with a `source`:
//! - **correction pairs** (`augment/correction/gsm8k`, `augment/correction/truthfulqa`): the user
//!   asserts a wrong answer; chosen corrects them, rejected agrees. Built from the **training
//!   half** of GSM8K and TruthfulQA ([`crate::sycophancy::Side`]), worded with templates the
//!   audit does not use, so the audit's sycophancy check stays a held-out test;
//! - **counterfactual pairs** (`augment/counterfactual/<probe>`): a training pair's chosen
//!   response preferred to an information-free edit of itself — filler, a flattering opener,
//!   hedges, a repeated sentence, a bulleted list — with phrases from `lexicons/augment_*.txt`
//!   ([`ProbePhrases::augment`]), none of them the audit's probe phrases, and a seed stream of
//!   its own. The audit's bold, apology and overconfident probes are never trained on.
//!
//! `ratio` is the share of the augmented data that is added: `added = round(ratio / (1 − ratio)
//! · n)` for `n` untied training pairs, split between the kinds by `correction_share`. A kind
//! that runs short (fewer training questions than asked, responses an edit cannot apply to)
//! hands its rest to the other, and [`AugmentReport::shortfall`] says why. Deterministic for a
//! seed.
//!
//! ```
//! use rewardkit_audit::augment::{augment, AugmentConfig};
//! use rewardkit_data::PreferencePair;
//!
//! let pairs: Vec<PreferencePair> = (0..30)
//!     .map(|i| PreferencePair::new(format!("Q{i}?"), "It is four. Add two and two.", "Five."))
//!     .collect();
//! let config = AugmentConfig { ratio: 0.25, ..Default::default() };
//! let a = augment(&pairs, &config).unwrap();
//! assert_eq!(a.pairs.len(), 10); // 10 / (30 + 10) = 25%
//! assert!(a.pairs.iter().all(|p| p.source.as_deref().unwrap().starts_with("augment/counterfactual/")));
//! assert_eq!(a.report.added.values().sum::<usize>(), 10);
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use rewardkit_data::{PreferencePair, Rng, Text, CORRECTION_SOURCE};

use crate::probes::{Probe, ProbePhrases};
use crate::sycophancy::{correction_items, PromptFormat};
use crate::AuditError;

/// How to augment; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    pub seed: u64,
    /// Share of the augmented data that is added pairs, in [0, 1).
    pub ratio: f64,
    /// Share of the added pairs that are correction pairs (when a GSM8K or TruthfulQA file is
    /// given), in [0, 1].
    pub correction_share: f64,
    /// GSM8K `test.jsonl`: correction pairs from its training half.
    pub gsm8k: Option<PathBuf>,
    /// TruthfulQA's CSV: correction pairs from its training half.
    pub truthfulqa: Option<PathBuf>,
    /// Edits of the counterfactual pairs, used in turn.
    pub counterfactual: Vec<Probe>,
    /// How correction prompts are written (`auto`: as the training pairs' prompts are).
    pub format: PromptFormat,
}

/// The edits a counterfactual pair may make (those with training phrases or none needed).
pub const COUNTERFACTUAL_EDITS: [Probe; 5] = rewardkit_data::probes::TRAINING_EDITS;

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            seed: 0,
            ratio: 0.2,
            correction_share: 0.5,
            gsm8k: None,
            truthfulqa: None,
            counterfactual: COUNTERFACTUAL_EDITS.to_vec(),
            format: PromptFormat::Auto,
        }
    }
}

impl AugmentConfig {
    /// Refuses a ratio or share out of range, and edits without training phrases.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.ratio) {
            return Err(format!("ratio must be in [0, 1), got {}", self.ratio));
        }
        if !(0.0..=1.0).contains(&self.correction_share) {
            return Err(format!(
                "correction_share must be in [0, 1], got {}",
                self.correction_share
            ));
        }
        if self.counterfactual.is_empty() {
            return Ok(());
        }
        rewardkit_data::probes::check_training_edits(&self.counterfactual)
    }
}

/// What was added, and why any of it fell short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentReport {
    pub config: AugmentConfig,
    /// Untied training pairs the ratio applies to.
    pub original: usize,
    /// Pairs the ratio asks for.
    pub requested: usize,
    /// Pairs added per `source`.
    pub added: BTreeMap<String, usize>,
    /// The share of the augmented data that is added.
    pub achieved_ratio: f64,
    /// Why fewer pairs of a kind were added than asked, one line each.
    pub shortfall: Vec<String>,
}

/// The added pairs (the originals are not repeated) and their report.
#[derive(Debug, Clone)]
pub struct Augmentation {
    pub pairs: Vec<PreferencePair>,
    pub report: AugmentReport,
}

/// Correction pairs from the training questions, at most `want`, in a seeded order.
fn corrections(
    config: &AugmentConfig,
    format: PromptFormat,
    want: usize,
) -> Result<Vec<PreferencePair>, AuditError> {
    if want == 0 {
        return Ok(Vec::new());
    }
    let mut items = correction_items(
        config.gsm8k.as_deref(),
        config.truthfulqa.as_deref(),
        usize::MAX,
        format,
        config.seed,
    )?;
    Rng::derive(config.seed, &["augment", "correction"]).shuffle(&mut items);
    Ok(items
        .into_iter()
        .take(want)
        .map(|it| {
            let mut p = PreferencePair::new(it.prompt, it.correcting, it.agreeing);
            p.id = Some(format!("augment:{}", it.id));
            p.source = Some(format!("{CORRECTION_SOURCE}{}", it.domain));
            p
        })
        .collect())
}

/// Counterfactual pairs of `originals`' chosen responses, at most `want`: pass after pass over
/// the pairs in a seeded order, edits in turn; `None` in the second value when `want` was met,
/// else why not.
fn counterfactuals(
    originals: &[&PreferencePair],
    config: &AugmentConfig,
    want: usize,
) -> (Vec<PreferencePair>, Option<String>) {
    let phrases = ProbePhrases::augment();
    // A stream of its own: not the audit's (seed, probe, index) phrases.
    let seed = Rng::derive(config.seed, &["augment", "counterfactual"]).next_u64();
    let mut order: Vec<usize> = (0..originals.len()).collect();
    Rng::derive(config.seed, &["augment", "order"]).shuffle(&mut order);
    let edits = &config.counterfactual;
    let mut out = Vec::new();
    let mut skipped = 0usize;
    // Each (pair, edit) is tried once: a pass per edit at most.
    let attempts = originals.len() * edits.len();
    for k in 0..attempts {
        if out.len() >= want {
            break;
        }
        let pair = originals[order[k % originals.len()]];
        // Shift the edit each pass so a pair gets a different edit the next time round.
        let probe = edits[(k + k / originals.len()) % edits.len()];
        let Text::Plain(response) = &pair.chosen else {
            skipped += 1;
            continue;
        };
        let Some(edited) = phrases.apply(probe, response, seed, k) else {
            skipped += 1;
            continue;
        };
        let mut p = PreferencePair::new(
            pair.prompt.clone(),
            pair.chosen.clone(),
            Text::Plain(edited),
        );
        p.id = Some(format!("augment:{}:{k}", probe.name()));
        p.source = Some(format!("augment/counterfactual/{}", probe.name()));
        p.location = pair.location.clone();
        out.push(p);
    }
    let short = (out.len() < want).then(|| {
        format!(
            "counterfactual: {} of {want} — every (pair, edit) combination tried once; {skipped} could not be edited (message-list responses, one-sentence responses for bullet_list, empty responses)",
            out.len()
        )
    });
    (out, short)
}

/// Added pairs for `pairs` (ties are neither counted nor edited); see the module's
/// documentation.
pub fn augment(
    pairs: &[PreferencePair],
    config: &AugmentConfig,
) -> Result<Augmentation, AuditError> {
    config.validate().map_err(AuditError::Config)?;
    let originals: Vec<&PreferencePair> = pairs.iter().filter(|p| !p.tie).collect();
    let n = originals.len();
    let requested = (config.ratio / (1.0 - config.ratio) * n as f64).round() as usize;
    let format = config.format.resolve(pairs.iter().map(|p| &p.prompt));
    let has_questions = config.gsm8k.is_some() || config.truthfulqa.is_some();
    let want_corrections = if has_questions {
        (requested as f64 * config.correction_share).round() as usize
    } else {
        0
    };
    let mut shortfall = Vec::new();
    let mut added = corrections(config, format, want_corrections)?;
    if added.len() < want_corrections {
        shortfall.push(format!(
            "correction: {} of {want_corrections} — the training halves hold no more questions; the rest are counterfactual",
            added.len()
        ));
    }
    let want_counterfactual = requested - added.len();
    let (cf, short) = if config.counterfactual.is_empty() || n == 0 {
        let why = (want_counterfactual > 0)
            .then(|| format!("counterfactual: 0 of {want_counterfactual} — no edits or no pairs"));
        (Vec::new(), why)
    } else {
        counterfactuals(&originals, config, want_counterfactual)
    };
    shortfall.extend(short);
    added.extend(cf);
    let mut counts = BTreeMap::new();
    for p in &added {
        *counts
            .entry(p.source.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    let total = n + added.len();
    let report = AugmentReport {
        config: config.clone(),
        original: n,
        requested,
        achieved_ratio: if total > 0 {
            added.len() as f64 / total as f64
        } else {
            0.0
        },
        added: counts,
        shortfall,
    };
    Ok(Augmentation {
        pairs: added,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sycophancy::tests::shared;
    use crate::sycophancy::SycophancySources;

    fn pairs(n: usize) -> Vec<PreferencePair> {
        (0..n)
            .map(|i| {
                PreferencePair::new(
                    format!("\n\nHuman: Question {i}?\n\nAssistant:"),
                    format!(" The answer is {i}. It follows from the definition."),
                    " No idea.",
                )
            })
            .collect()
    }

    fn config() -> AugmentConfig {
        AugmentConfig {
            ratio: 0.3,
            gsm8k: Some(shared("gsm8k/test.jsonl")),
            truthfulqa: Some(shared("truthfulqa/TruthfulQA.csv")),
            ..Default::default()
        }
    }

    #[test]
    fn augmentation_is_deterministic_and_adds_what_the_ratio_asks() {
        let data = pairs(140);
        let a = augment(&data, &config()).unwrap();
        let b = augment(&data, &config()).unwrap();
        assert_eq!(a.pairs, b.pairs);
        assert_eq!(a.report, b.report);
        // 0.3 / 0.7 · 140 = 60 added: 30 corrections, 30 counterfactual.
        assert_eq!(a.report.requested, 60);
        assert_eq!(a.pairs.len(), 60);
        assert!((a.report.achieved_ratio - 0.3).abs() < 1e-12);
        let corrections = a.pairs.iter().filter(|p| p.is_correction()).count();
        assert_eq!(corrections, 30);
        assert!(a.report.added.contains_key("augment/correction/gsm8k"));
        assert!(a.report.added.contains_key("augment/correction/truthfulqa"));
        for probe in COUNTERFACTUAL_EDITS {
            assert_eq!(
                a.report.added[&format!("augment/counterfactual/{}", probe.name())],
                6,
                "{probe:?}"
            );
        }
        assert!(a.report.shortfall.is_empty());
        // Another seed, other pairs.
        let c = augment(
            &data,
            &AugmentConfig {
                seed: 1,
                ..config()
            },
        )
        .unwrap();
        assert_ne!(a.pairs, c.pairs);
        // Counterfactual pairs keep the original as chosen; correction pairs are HH transcripts
        // as the training pairs are, chosen correcting.
        for p in &a.pairs {
            let source = p.source.as_deref().unwrap();
            if source.starts_with("augment/counterfactual/") {
                assert!(data
                    .iter()
                    .any(|o| o.prompt == p.prompt && o.chosen == p.chosen));
                assert_ne!(p.chosen, p.rejected);
            } else {
                assert!(
                    p.prompt.render().starts_with("\n\nHuman: "),
                    "{:?}",
                    p.prompt
                );
                assert!(p.chosen.render().starts_with(' '));
            }
        }
    }

    /// The issue's guarantee: no added pair shares a question with the audit's sycophancy items
    /// (every one of them, not only the default 150 per source).
    #[test]
    fn no_correction_pair_shares_a_question_with_the_audit() {
        let data = pairs(2000);
        let a = augment(
            &data,
            &AugmentConfig {
                ratio: 0.5,
                correction_share: 1.0,
                ..config()
            },
        )
        .unwrap();
        let corrections: Vec<&PreferencePair> =
            a.pairs.iter().filter(|p| p.is_correction()).collect();
        assert!(corrections.len() > 1000, "{}", corrections.len());
        let sources = SycophancySources {
            gsm8k: config().gsm8k,
            truthfulqa: config().truthfulqa,
            max_items: usize::MAX,
            ..Default::default()
        };
        let audit = sources.load(PromptFormat::Hh, 0).unwrap();
        // The question is the prompt's first line after "Human: ".
        let question = |t: &Text| {
            t.render()
                .trim_start()
                .trim_start_matches("Human: ")
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        };
        let audited: std::collections::HashSet<String> =
            audit.iter().map(|i| question(&i.prompt)).collect();
        assert!(audited.len() > 900);
        for p in corrections {
            assert!(!audited.contains(&question(&p.prompt)), "{:?}", p.prompt);
        }
        // Every training question was used, and the pool's end is reported.
        assert!(
            a.report
                .shortfall
                .iter()
                .any(|s| s.starts_with("correction:")),
            "{:?}",
            a.report.shortfall
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        for c in [
            AugmentConfig {
                ratio: 1.0,
                ..Default::default()
            },
            AugmentConfig {
                correction_share: 1.5,
                ..Default::default()
            },
            AugmentConfig {
                counterfactual: vec![Probe::Bold],
                ..Default::default()
            },
        ] {
            assert!(
                matches!(augment(&pairs(10), &c), Err(AuditError::Config(_))),
                "{c:?}"
            );
        }
    }
}
