//! Laws that hold on any input: the split does not depend on file order, and every row read is
//! either kept or dropped with a reason.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use proptest::prelude::*;
use rewardkit_data::{load, LoadOptions, PreferencePair, SplitConfig, SplitKey};

/// One JSONL line: valid, invalid (several ways), a tie, or a copy of an earlier one.
#[derive(Debug, Clone)]
enum Row {
    Pair(u8, u8, u8),
    Tie(u8, u8),
    Identical(u8),
    Broken(u8),
    WrongType,
    NotAnObject,
    Blank,
    Copy(usize),
}

fn row() -> impl Strategy<Value = Row> {
    prop_oneof![
        4 => (0u8..6, 0u8..6, 0u8..6).prop_map(|(p, c, r)| Row::Pair(p, c, r)),
        1 => (0u8..6, 0u8..6).prop_map(|(p, c)| Row::Tie(p, c)),
        1 => (0u8..6).prop_map(Row::Identical),
        1 => (0u8..4).prop_map(Row::Broken),
        1 => Just(Row::WrongType),
        1 => Just(Row::NotAnObject),
        1 => Just(Row::Blank),
        2 => (0usize..64).prop_map(Row::Copy),
    ]
}

fn render(rows: &[Row]) -> (String, u64) {
    let mut lines: Vec<String> = Vec::new();
    let mut records = 0;
    for r in rows {
        let line = match *r {
            Row::Pair(p, c, rj) => format!(
                r#"{{"prompt": "p{p}", "response1": "a{c}", "response2": "b{rj}", "annotator1": 1}}"#
            ),
            Row::Tie(p, c) => format!(
                r#"{{"prompt": "p{p}", "response1": "a{c}", "response2": "b{c}", "annotator1": 0, "annotator2": 0}}"#
            ),
            Row::Identical(p) => format!(
                r#"{{"prompt": "p{p}", "response1": "same", "response2": "same", "label": 2}}"#
            ),
            Row::Broken(k) => [
                r#"{"prompt": "#,
                "nope",
                r#"{"prompt": NaN}"#,
                r#"{"a": 1, "a": 2}"#,
            ][k as usize]
                .to_string(),
            Row::WrongType => {
                r#"{"prompt": "p", "response1": 3, "response2": [1], "label": 1}"#.into()
            }
            // (an array first would make the file one JSON array, a file-level error)
            Row::NotAnObject => "17".into(),
            Row::Blank => String::new(),
            Row::Copy(i) => match lines.iter().filter(|l| !l.is_empty()).nth(i) {
                Some(l) => l.clone(),
                None => String::new(),
            },
        };
        if !line.is_empty() {
            records += 1;
        }
        lines.push(line);
    }
    (lines.join("\n") + "\n", records)
}

fn pairs(n: usize) -> Vec<PreferencePair> {
    (0..n)
        .map(|i| {
            PreferencePair::new(
                format!("q{}", i % 7),
                format!("a{i}"),
                format!("b{}", i * 3),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn rows_read_equal_kept_plus_dropped(rows in proptest::collection::vec(row(), 1..60), keep in any::<bool>()) {
        let (text, records) = render(&rows);
        prop_assume!(records > 0);
        let (_d, path) = common::file("rows.jsonl", &text);
        let options = LoadOptions {
            format: Some(rewardkit_data::Format::Pairwise),
            skip_invalid: true,
            keep_duplicates: keep,
            ..Default::default()
        };
        let data = load(&[&path], &options).unwrap();
        let r = &data.report;
        prop_assert_eq!(r.rows_read, records);
        prop_assert_eq!(r.rows_read, r.pairs + r.dropped_total());
        prop_assert_eq!(r.pairs as usize, data.pairs.len());
        prop_assert_eq!(r.dropped_rows.len() as u64, r.dropped_total());
        prop_assert!(r.ties <= r.pairs && r.ties <= r.tie_rows);
    }

    #[test]
    fn the_split_does_not_depend_on_file_order(
        n in 1usize..80,
        seed in any::<u64>(),
        fraction in 0.0f64..=1.0,
        by_prompt in any::<bool>(),
        order in any::<u64>(),
    ) {
        let config = SplitConfig {
            eval_fraction: fraction,
            seed,
            key: if by_prompt { SplitKey::Prompt } else { SplitKey::Pair },
        };
        let original = pairs(n);
        // A permutation of the pairs, drawn from `order`.
        let mut shuffled = original.clone();
        rewardkit_data::Rng::new(order).shuffle(&mut shuffled);
        let side = |pairs: Vec<PreferencePair>| {
            let (train, eval) = config.split(pairs);
            let mut train: Vec<String> = train.iter().map(|p| format!("{p:?}")).collect();
            let mut eval: Vec<String> = eval.iter().map(|p| format!("{p:?}")).collect();
            train.sort();
            eval.sort();
            (train, eval)
        };
        let (a, b) = (side(original), side(shuffled));
        prop_assert_eq!(a.0.len() + a.1.len(), n);
        prop_assert_eq!(a, b);
        if by_prompt {
            // Every pair of one prompt is on one side.
            for p in pairs(n) {
                let twin = PreferencePair::new(p.prompt.clone(), "other", "answer");
                prop_assert_eq!(config.side(&p), config.side(&twin));
            }
        }
    }
}
