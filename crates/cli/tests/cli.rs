//! The real `rewardkit` binary, run as a user runs it; what it prints is snapshotted with insta
//! (temporary paths and the shared-data prefix filtered out).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rewardkit"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared(rel: &str) -> PathBuf {
    root().join("../shared/data").join(rel)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run rewardkit")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

/// Replaces the shared data prefix and temporary folders in what a snapshot shows.
fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"/[^\s:]*?/shared/data/", "[DATA]/");
    s.add_filter(r"/tmp/[^\s/]+/", "[TMP]/");
    s
}

#[test]
fn help_explains_commands_and_exit_codes() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    insta::assert_snapshot!("help", stdout(&o));
    let o = run(&["eval", "--help"]);
    insta::assert_snapshot!("eval_help", stdout(&o));
}

/// The flags whose values are library enums (`ValueEnum` behind each crate's `clap` feature):
/// the value names a user types stay what they were.
#[test]
fn help_of_commands_with_enum_flags() {
    for (name, args) in [
        ("audit_help", &["audit", "--help"][..]),
        ("data_stats_help", &["data", "stats", "--help"]),
        ("data_split_help", &["data", "split", "--help"]),
        ("goodhart_curves_help", &["goodhart", "curves", "--help"]),
        ("generate_help", &["generate", "--help"]),
        ("sft_help", &["sft", "--help"]),
        ("rl_help", &["rl", "--help"]),
        ("serve_help", &["serve", "--help"]),
    ] {
        let o = run(args);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        insta::assert_snapshot!(name, stdout(&o));
    }
    // `goodhart curves` takes the audit's prompt formats but not `auto`.
    let o = run(&[
        "goodhart",
        "curves",
        "--pool",
        "p",
        "--proxy",
        "m",
        "--out",
        "o",
        "--prompt-format",
        "auto",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("[possible values: plain, hh]"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn data_stats_hh_accounts_for_every_row() {
    let path = shared("hh-rlhf/helpful-base/test.jsonl.gz");
    let v = json(&run(&["data", "stats", path.to_str().unwrap(), "--json"]));
    assert_eq!(v["rows_read"], 2354);
    let dropped: u64 = v["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(v["pairs"].as_u64().unwrap() + dropped, 2354);
    let rows = v["dropped_rows"].as_array().unwrap();
    assert_eq!(rows.len() as u64, dropped);
    for r in rows {
        assert!(!r["reason"].as_str().unwrap().is_empty());
        assert!(!r["detail"].as_str().unwrap().is_empty());
        assert!(r["location"].as_str().unwrap().contains("test.jsonl.gz:"));
    }
    assert_eq!(v["pick_longer"]["chosen_longer"], 1394);
}

#[test]
fn data_stats_pandalm_table() {
    let path = shared("pandalm/testset-v1.json");
    let o = run(&["data", "stats", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    settings().bind(|| insta::assert_snapshot!("pandalm_stats", stdout(&o)));
    let v = json(&run(&["data", "stats", path.to_str().unwrap(), "--json"]));
    assert_eq!(
        (v["rows_read"].as_u64(), v["tie_rows"].as_u64()),
        (Some(999), Some(105))
    );
}

#[test]
fn broken_third_line_fails_with_file_line_and_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.jsonl");
    std::fs::write(
        &path,
        "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n{\"prompt\": \"a\", \"chosen\": \"x\", \"rejected\": \"c\"}\n{\"prompt\": \"a\", \"chosen\": \n",
    )
    .unwrap();
    let o = run(&["data", "stats", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(o.stdout.is_empty());
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}:3: invalid JSON", path.display())),
        "{err}"
    );
    // With --skip-invalid the line is counted and listed instead.
    let v = json(&run(&[
        "data",
        "stats",
        path.to_str().unwrap(),
        "--skip-invalid",
        "--json",
    ]));
    assert_eq!(v["dropped"]["invalid"], 1);
    assert!(v["dropped_rows"][0]["location"]
        .as_str()
        .unwrap()
        .ends_with("broken.jsonl:3"));
}

#[test]
fn usage_errors_exit_2_and_missing_files_exit_1() {
    assert_eq!(run(&["eval"]).status.code(), Some(2));
    assert_eq!(
        run(&["data", "stats", "--format", "csv", "x"])
            .status
            .code(),
        Some(2)
    );
    let o = run(&["data", "stats", "/nonexistent/prefs.jsonl"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/prefs.jsonl"));
}

/// Runs scripts/reference_metrics.py (an independent plain-Python implementation).
fn python_reference(scores: &Path) -> serde_json::Value {
    let o = Command::new("python3")
        .arg(root().join("scripts/reference_metrics.py"))
        .arg(scores)
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn eval_scores_equals_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let scores = dir.path().join("length.jsonl");
    let files: Vec<PathBuf> = [
        "helpful-base",
        "harmless-base",
        "helpful-online",
        "helpful-rejection-sampled",
    ]
    .iter()
    .map(|s| shared(&format!("hh-rlhf/{s}/test.jsonl.gz")))
    .collect();
    let mut args = vec![
        "eval",
        "--baseline",
        "length",
        "--save-scores",
        scores.to_str().unwrap(),
        "--json",
        "--data",
    ];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let from_data = json(&run(&args));
    let v = json(&run(&[
        "eval",
        "--scores",
        scores.to_str().unwrap(),
        "--json",
    ]));
    // Scoring then evaluating, or evaluating the saved scores, gives the same report.
    assert_eq!(v["overall"], from_data["overall"]);
    assert_eq!(v["subsets"], from_data["subsets"]);
    let reference = python_reference(&scores);
    let o = &v["overall"];
    let cal = &o["calibration"];
    let close = |a: &serde_json::Value, b: &serde_json::Value, what: &str| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            "{what}: {a} vs {b}"
        );
    };
    assert_eq!(o["accuracy"]["n"], reference["n"]);
    close(
        &o["accuracy"]["accuracy"],
        &reference["accuracy"],
        "accuracy",
    );
    close(&cal["ece"], &reference["ece"], "ECE");
    close(&cal["brier"], &reference["brier"], "Brier");
    close(&cal["log_loss"], &reference["log_loss"], "log loss");
    close(
        &cal["temperature"]["temperature"],
        &reference["temperature"],
        "temperature",
    );
    assert_eq!(v["subsets"].as_object().unwrap().len(), 4);
    // Per subset, the temperature exists exactly where the mean gap is positive.
    for (name, s) in v["subsets"].as_object().unwrap() {
        let mean_gap = s["gap"]["mean"].as_f64().unwrap();
        let t = &s["calibration"]["temperature"]["temperature"];
        assert_eq!(t.is_null(), mean_gap <= 0.0, "{name}");
    }
}

#[test]
fn eval_table_and_plot_on_a_small_score_file() {
    let dir = tempfile::tempdir().unwrap();
    let scores = dir.path().join("scores.jsonl");
    std::fs::write(
        &scores,
        [
            r#"{"chosen_score": 2.0, "rejected_score": 0.0, "subset": "a"}"#,
            r#"{"chosen_score": 0.0, "rejected_score": 1.0, "subset": "a"}"#,
            r#"{"chosen_score": 1.0, "rejected_score": 1.0, "subset": "a"}"#,
            r#"{"chosen_score": 0.5, "rejected_score": 0.0, "subset": "a"}"#,
            r#"{"chosen_score": 3.0, "rejected_score": 0.5, "subset": "b"}"#,
            r#"{"chosen_score": 1.0, "rejected_score": 0.2, "tie": true}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let plot = dir.path().join("reliability.svg");
    let o = run(&[
        "eval",
        "--scores",
        scores.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    settings().bind(|| insta::assert_snapshot!("eval_table", stdout(&o)));
    let svg = std::fs::read_to_string(&plot).unwrap();
    // One bar per non-empty bin (five here), labelled with its count.
    assert_eq!(svg.matches("n=1<").count(), 5);
    // The plot as a user sees it: elements, colours, labels and ticks (coordinates filtered).
    let mut s = settings();
    s.add_filter(
        r#" (x|y|x1|y1|x2|y2|cx|cy|width|height)="-?[0-9.]+""#,
        r#" $1="_""#,
    );
    s.add_filter(r#"points="[^"]*""#, r#"points="…""#);
    s.add_filter(r"translate\([^)]*\)", "translate(_)");
    s.bind(|| insta::assert_snapshot!("eval_reliability_svg", svg.replace("><", ">\n<")));
}

#[test]
fn data_split_is_reproducible_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = shared("hh-rlhf/helpful-base/test.jsonl.gz");
    let split = |tag: &str| {
        let (train, eval) = (
            dir.path().join(format!("train{tag}.jsonl")),
            dir.path().join(format!("eval{tag}.jsonl")),
        );
        let o = run(&[
            "data",
            "split",
            path.to_str().unwrap(),
            "--seed",
            "3",
            "--train-out",
            train.to_str().unwrap(),
            "--eval-out",
            eval.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        (
            std::fs::read_to_string(train).unwrap(),
            std::fs::read_to_string(eval).unwrap(),
        )
    };
    let (train, eval) = split("1");
    assert_eq!(split("2"), (train.clone(), eval.clone()));
    assert_eq!(train.lines().count() + eval.lines().count(), 2343);
    let share = eval.lines().count() as f64 / 2343.0;
    assert!((share - 0.2).abs() < 0.03, "{share}");
    // The written files read back as TRL data with the same pairs.
    let v = json(&run(&[
        "data",
        "stats",
        dir.path().join("train1.jsonl").to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["files"][0]["format"], "trl");
    assert_eq!(v["pairs"].as_u64().unwrap() as usize, train.lines().count());
}

/// `demo rl --help` names every option and the files it writes; a config with an unknown field
/// is refused before anything runs, naming the file and the field.
#[test]
fn demo_rl_help_and_bad_config() {
    let o = run(&["demo", "rl", "--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let help = stdout(&o);
    for word in [
        "--config",
        "--out",
        "--seed",
        "--json",
        "rl_curves.jsonl",
        "goodhart_rl.svg",
    ] {
        assert!(help.contains(word), "{word}: {help}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"runs": {"betas": [0.0], "nonsense": 1}}"#).unwrap();
    let out = dir.path().join("o");
    let o = run(&[
        "demo",
        "rl",
        "--config",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("bad.json") && err.contains("nonsense"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
}
