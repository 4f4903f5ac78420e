//! The real public data sets in `../shared/data` (see its README for sources and licences).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use std::collections::HashMap;

use common::shared_data;
use rewardkit_data::{load, DataStats, DropReason, Format, LoadOptions, Side, SplitConfig, Text};

#[test]
fn hh_helpful_base_test_every_row_accounted_for() {
    let data = load(
        &[shared_data("hh-rlhf/helpful-base/test.jsonl.gz")],
        &LoadOptions::default(),
    )
    .unwrap();
    let r = &data.report;
    assert_eq!(r.files[0].format, Format::Hh);
    assert_eq!(r.rows_read, 2354); // the data README's row count
                                   // Counted with an independent Python split of the same file: 9 pairs whose transcripts
                                   // differ before the last Assistant turn, and 2 with identical transcripts (lines 722, 2169).
    assert_eq!(r.dropped[&DropReason::Unsplittable], 9);
    assert_eq!(r.dropped[&DropReason::NoPreference], 2);
    assert_eq!(r.pairs, 2343);
    assert_eq!(r.rows_read, r.pairs + r.dropped_total());
    let identical: Vec<String> = r
        .dropped_rows
        .iter()
        .filter(|d| d.reason == DropReason::NoPreference)
        .map(|d| d.location.to_string())
        .collect();
    assert!(
        identical[0].ends_with(":722") && identical[1].ends_with(":2169"),
        "{identical:?}"
    );
}

#[test]
fn hh_split_agrees_with_the_anchor_split_used_by_trl() {
    // `helpful-base-anchor-split` is helpful-base split into TRL's prompt/chosen/rejected (the
    // data README). Every pair we split ourselves must appear there verbatim.
    let ours = load(
        &[shared_data("hh-rlhf/helpful-base/test.jsonl.gz")],
        &LoadOptions::default(),
    )
    .unwrap();
    let anchor = load(
        &[
            shared_data("hh-rlhf/helpful-base-anchor-split/train.jsonl"),
            shared_data("hh-rlhf/helpful-base-anchor-split/eval.jsonl"),
        ],
        &LoadOptions {
            keep_duplicates: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(anchor.report.files[0].format, Format::Trl);
    assert_eq!(anchor.report.rows_read, 1882 + 470);
    let mut by_content: HashMap<(String, String, String), usize> = HashMap::new();
    for p in &anchor.pairs {
        *by_content
            .entry((p.prompt.render(), p.chosen.render(), p.rejected.render()))
            .or_default() += 1;
    }
    let found = ours
        .pairs
        .iter()
        .filter(|p| {
            by_content.contains_key(&(p.prompt.render(), p.chosen.render(), p.rejected.render()))
        })
        .count();
    assert_eq!(found, ours.pairs.len());
}

#[test]
fn pandalm_reads_999_rows_and_reports_ties() {
    let data = load(
        &[shared_data("pandalm/testset-v1.json")],
        &LoadOptions::default(),
    )
    .unwrap();
    let r = &data.report;
    assert_eq!(r.files[0].format, Format::Pairwise);
    assert_eq!(r.rows_read, 999);
    // Majority votes counted in Python over the raw file: 85 unanimous ties and 20 rows where
    // two of three annotators voted 0.
    assert_eq!(r.tie_rows, 105);
    assert_eq!(r.rows_read, r.pairs + r.dropped_total());
    assert_eq!(r.ties as usize, data.pairs.iter().filter(|p| p.tie).count());
    // Six responses are JSON booleans in the file; each is read as text and noted.
    assert_eq!(r.notes.len(), 6);
    let kept_with_duplicates = load(
        &[shared_data("pandalm/testset-v1.json")],
        &LoadOptions {
            keep_duplicates: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(kept_with_duplicates.report.pairs, 999);
    assert_eq!(kept_with_duplicates.report.ties, 105);
}

#[test]
fn alpaca_eval_soft_labels_are_read_from_p_chosen() {
    let data = load(
        &[shared_data("alpaca-eval-gpt4/pairs.jsonl.gz")],
        &LoadOptions::default(),
    )
    .unwrap();
    let r = &data.report;
    // Counted in Python over the raw file: 24,150 rows; 2 exact copies (prompt, chosen,
    // rejected and p_chosen alike, both with p_chosen null); p_chosen 1.0 in 18,048 rows,
    // strictly between 0.5 and 1 in 5,294, null in 808 (hard labels: 806 kept); none below
    // 0.5, none exactly 0.5.
    assert_eq!(r.rows_read, 24_150);
    assert_eq!(r.pairs, 24_148);
    assert_eq!(r.dropped.get(&DropReason::Duplicate), Some(&2));
    assert_eq!(r.soft_labels, 5_294);
    assert_eq!(r.ties, 0);
    assert!(r.notes.is_empty());
    let hard = data.pairs.iter().filter(|p| p.p_chosen.is_none()).count();
    assert_eq!(hard, 806);
    assert!(data.pairs.iter().all(|p| (0.5..=1.0).contains(&p.target())));
}

#[test]
fn split_is_stable_under_reordering_and_seeded() {
    let data = load(
        &[shared_data("hh-rlhf/helpful-base/test.jsonl.gz")],
        &LoadOptions::default(),
    )
    .unwrap();
    let config = SplitConfig {
        eval_fraction: 0.2,
        seed: 7,
        ..Default::default()
    };
    let side = |p: &rewardkit_data::PreferencePair| config.side(p);
    let forward: Vec<Side> = data.pairs.iter().map(side).collect();
    let mut reversed = data.pairs.clone();
    reversed.reverse();
    let (train_r, eval_r) = config.split(reversed);
    let (train, eval) = config.split(data.pairs.clone());
    assert_eq!(train.len(), train_r.len());
    assert_eq!(eval.len(), eval_r.len());
    assert_eq!(
        eval.len(),
        forward.iter().filter(|s| **s == Side::Eval).count()
    );
    // About 20% (binomial sd ≈ 0.8 points at n = 2343).
    let share = eval.len() as f64 / data.pairs.len() as f64;
    assert!((share - 0.2).abs() < 0.03, "{share}");
    // Another seed, another split.
    let other = SplitConfig { seed: 8, ..config };
    let differ = data
        .pairs
        .iter()
        .filter(|p| other.side(p) != config.side(p))
        .count();
    assert!(differ > 300, "{differ}");
    // Splitting by prompt keeps every prompt on one side.
    let by_prompt = SplitConfig {
        key: rewardkit_data::SplitKey::Prompt,
        ..config
    };
    let mut sides: HashMap<String, Side> = HashMap::new();
    for p in &data.pairs {
        let s = by_prompt.side(p);
        assert_eq!(*sides.entry(p.prompt.render()).or_insert(s), s);
    }
}

#[test]
fn split_hash_values_are_pinned() {
    // The split must not change between versions or machines. Reference values from an
    // independent Python implementation of the documented hash (FNV-1a 64 over the seed's 8
    // little-endian bytes, then each text followed by 0xff; SplitMix64 finaliser).
    let p = rewardkit_data::PreferencePair::new("prompt", "chosen", "rejected");
    let mut h = rewardkit_data::StableHasher::new(0);
    h.text(&Text::Plain("prompt".into()));
    let pinned = h.finish();
    assert_eq!(pinned, PINNED_PROMPT_HASH);
    let c = SplitConfig {
        eval_fraction: 0.5,
        seed: 0,
        ..Default::default()
    };
    assert_eq!(c.side(&p), PINNED_SIDE);
}

const PINNED_PROMPT_HASH: u64 = 15_095_587_834_947_941_825;
// unit = 0.31167… < 0.5
const PINNED_SIDE: Side = Side::Eval;

#[test]
fn stats_of_hh_helpful_base() {
    let data = load(
        &[shared_data("hh-rlhf/helpful-base/test.jsonl.gz")],
        &LoadOptions::default(),
    )
    .unwrap();
    let s = DataStats::of(&data);
    let b = &s.pick_longer;
    // Counted independently in Python (len() of the split responses, in code points).
    assert_eq!(
        (b.pairs, b.chosen_longer, b.rejected_longer, b.same_length),
        (2343, 1394, 934, 15)
    );
    assert!((b.accuracy.unwrap() - 1394.0 / 2343.0).abs() < 1e-12);
}
