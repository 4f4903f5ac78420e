//! Score files: reading, errors with line numbers, and the round trip through `write_scores`.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use rewardkit_data::{PairScores, PreferencePair};
use rewardkit_eval::{read_scores, write_scores, EvalError};

fn write(content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scores.jsonl");
    std::fs::write(&path, content).unwrap();
    (dir, path)
}

#[test]
fn reads_scores_with_subset_and_tie() {
    let (_d, path) = write(concat!(
        r#"{"chosen_score": 1.5, "rejected_score": -2, "subset": "chat"}"#,
        "\n",
        r#"{"chosen_score": 0, "rejected_score": 0.25, "tie": true, "id": "x"}"#,
        "\n"
    ));
    let s = read_scores(&path).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(
        (s[0].chosen, s[0].rejected, s[0].subset.as_deref()),
        (1.5, -2.0, Some("chat"))
    );
    assert!(s[1].tie && !s[0].tie);
}

#[test]
fn malformed_lines_are_named() {
    let cases = [
        (r#"{"chosen_score": 1}"#, "missing field `rejected_score`"),
        (
            r#"{"chosen_score": "1", "rejected_score": 0}"#,
            "field `chosen_score` should be a number, found a string",
        ),
        (
            r#"{"chosen_score": 1, "rejected_score": 0, "tie": "no"}"#,
            "field `tie` should be a boolean, found a string",
        ),
        (
            r#"{"chosen_score": 1, "rejected_score": 0, "subset": 1}"#,
            "field `subset` should be a string, found a number",
        ),
        (r#"{"chosen_score": 1, "#, "invalid JSON"),
    ];
    for (line, expected) in cases {
        let (_d, path) = write(&format!(
            "{}\n{}\n",
            r#"{"chosen_score": 1, "rejected_score": 0}"#, line
        ));
        let msg = read_scores(&path).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("{}:2: ", path.display())), "{msg}");
        assert!(msg.contains(expected), "{msg}");
    }
    let (_d, path) = write("\n");
    assert!(matches!(read_scores(&path), Err(EvalError::Empty(_))));
}

#[test]
fn written_scores_read_back() {
    let mut a = PreferencePair::new("p", "c", "r");
    a.subset = Some("s".into());
    a.id = Some("a1".into());
    let mut b = PreferencePair::new("p2", "c2", "r2");
    b.tie = true;
    let scores = [
        PairScores {
            chosen: 0.125,
            rejected: -3.5,
        },
        PairScores {
            chosen: 1e-9,
            rejected: 2.0,
        },
    ];
    let mut buf = Vec::new();
    write_scores(&mut buf, &[a, b], &scores).unwrap();
    let (_d, path) = write(std::str::from_utf8(&buf).unwrap());
    let back = read_scores(&path).unwrap();
    assert_eq!((back[0].chosen, back[0].rejected), (0.125, -3.5));
    assert_eq!(back[0].subset.as_deref(), Some("s"));
    assert!(back[1].tie);
    assert_eq!(back[1].chosen, 1e-9);
}

#[test]
fn a_gap_that_overflows_is_an_error_naming_the_line() {
    let (_d, path) = write(concat!(
        r#"{"chosen_score": 1e308, "rejected_score": 1e308}"#,
        "\n",
        r#"{"chosen_score": 1e308, "rejected_score": -1e308}"#,
        "\n"
    ));
    let msg = read_scores(&path).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:2: field `rejected_score`: the gap",
            path.display()
        )),
        "{msg}"
    );
    assert!(msg.contains("overflows"), "{msg}");
    // Huge scores whose gaps are finite give finite metrics (no inf, no NaN).
    let (_d, path) = write(concat!(
        r#"{"chosen_score": 1e308, "rejected_score": 2e307}"#,
        "\n",
        r#"{"chosen_score": -1.5e308, "rejected_score": -7e307}"#,
        "\n",
        r#"{"chosen_score": 1e308, "rejected_score": 2e307}"#,
        "\n"
    ));
    let report = rewardkit_eval::evaluate(&read_scores(&path).unwrap());
    let gap = &report.overall.gap;
    for v in [gap.mean, gap.std, gap.median] {
        assert!(v.unwrap().is_finite(), "{gap:?}");
    }
    assert_eq!(gap.median, Some(1e308 - 2e307));
}
