//! `rewardkit train`, `score` and `eval --model` as a user runs them, on the tiny random models in
//! `../shared/models` (made with transformers) and a synthetic rule a model can learn: chosen
//! responses mention `t7`, rejected ones `t9` (the tokenizer is tiny-llama-rm's `t0`…`t999`).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{bin, data, model_dir, models, ok, run, weights};
use rewardkit_model::ops::SimdLevel;

#[test]
fn train_score_and_eval_a_decoder_reward_model() {
    let model = model_dir("tiny-llama", Some("t2"));
    let work = tempfile::tempdir().unwrap();
    let (train, heldout, out) = (
        work.path().join("train.jsonl"),
        work.path().join("eval.jsonl"),
        work.path().join("run"),
    );
    data(&train, 96, 1);
    data(&heldout, 40, 2);
    let o = ok(run(&[
        "train",
        "--model",
        model.path().to_str().unwrap(),
        "--data",
        train.to_str().unwrap(),
        "--eval-data",
        heldout.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--max-steps",
        "12",
        "--lr",
        "3e-3",
        "--batch-size",
        "8",
        "--max-length",
        "32",
        "--log-every",
        "1",
        "--json",
    ]));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["steps"], 12);
    let acc = summary["final_eval"]["accuracy"]["accuracy"]
        .as_f64()
        .unwrap();
    assert!(acc > 0.85, "held-out accuracy {acc}");
    let final_dir = out.join("final");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(final_dir.join("rewardkit.json")).unwrap())
            .unwrap();
    assert_eq!(meta["model"]["pooling"], "last");
    assert_eq!(meta["run"]["train"]["learning_rate"], 3e-3);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(final_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "LlamaForSequenceClassification");
    // eval --model on the same held-out file gives the trainer's final accuracy.
    let o = ok(run(&[
        "eval",
        "--model",
        final_dir.to_str().unwrap(),
        "--data",
        heldout.to_str().unwrap(),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["overall"]["accuracy"]["accuracy"].as_f64().unwrap(), acc);
    // score: rows come back in order with a score; the t7 response outscores the t9 one.
    let input = work.path().join("rows.jsonl");
    std::fs::write(&input, "{\"prompt\": \"t30 t40\", \"response\": \" t50 t7 t60\", \"id\": 1}\n{\"prompt\": \"t30 t40\", \"response\": \" t50 t9 t60\", \"id\": 2}\n").unwrap();
    let o = ok(run(&[
        "score",
        "--model",
        final_dir.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        (rows[0]["id"].as_i64(), rows[1]["id"].as_i64()),
        (Some(1), Some(2))
    );
    assert!(
        rows[0]["score"].as_f64().unwrap() > rows[1]["score"].as_f64().unwrap(),
        "{rows:?}"
    );
}

#[test]
fn killed_run_resumes_to_the_same_weights() {
    let model = model_dir("tiny-bert", None);
    let work = tempfile::tempdir().unwrap();
    let train = work.path().join("train.jsonl");
    data(&train, 64, 3);
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--model",
            model.path().to_str().unwrap(),
            "--data",
            train.to_str().unwrap(),
            "--eval-fraction",
            "0.1",
            "--out",
            out.to_str().unwrap(),
            "--max-steps",
            "300",
            "--save-every",
            "3",
            "--lr",
            "1e-3",
            "--max-length",
            "32",
            "--dropout",
            "--threads",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let (full, killed) = (work.path().join("full"), work.path().join("killed"));
    ok(bin().args(args(&full)).output().unwrap());
    // Start the same run, kill -9 it once a checkpoint exists, then resume.
    let mut child = bin()
        .args(args(&killed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !killed
        .join("checkpoint-6")
        .join("trainer_state.json")
        .exists()
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !killed.join("final").exists(),
        "the run finished before it was killed"
    );
    let mut resume = args(&killed);
    resume.push("--resume".into());
    let o = ok(bin().args(&resume).output().unwrap());
    assert!(String::from_utf8_lossy(&o.stderr).contains("resumed at step"));
    assert_eq!(weights(&killed.join("final")), weights(&full.join("final")));
}

#[test]
fn config_file_and_flags_agree() {
    let model = model_dir("tiny-bert", None);
    let work = tempfile::tempdir().unwrap();
    let train = work.path().join("train.jsonl");
    data(&train, 24, 4);
    let config = work.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "model = {:?}\ndata = [{:?}]\nout = {:?}\n[split]\neval_fraction = 0.25\n[train]\nbatch_size = 4\nlearning_rate = 0.01\nmax_steps = 2\nmax_length = 24\n",
            model.path(),
            train,
            work.path().join("run")
        ),
    )
    .unwrap();
    ok(run(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--lr",
        "0.02",
    ]));
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join("run/final/rewardkit.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["train"]["learning_rate"], 0.02); // the flag wins
    assert_eq!(meta["train"]["batch_size"], 4); // the file's value stays
    assert_eq!(meta["run"]["split"]["eval_fraction"], 0.25);
    // A typo in the config file is an error, not silently ignored.
    std::fs::write(&config, "modle = \"x\"\n").unwrap();
    let o = run(&["train", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("modle"));
}

#[test]
fn missing_model_and_bad_rows_are_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("rows.jsonl");
    std::fs::write(
        &input,
        "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"a\"}\n",
    )
    .unwrap();
    // A complete reward model (a bare backbone is refused before any row is read).
    let model = model_dir("tiny-llama-rm", None);
    let o = run(&[
        "score",
        "--model",
        model.path().to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rows.jsonl:2: missing field `response`"));
    let o = run(&[
        "score",
        "--model",
        "/nonexistent/model",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/model/config.json"));
}

/// The fused kernels compiled for AVX-512, AVX2 and the base target (`REWARDKIT_SIMD` lowers the
/// level the CPU allows) train to bit-identical weights: a BERT encoder (exact GELU, layer norm,
/// attention) and a GPT-2 decoder (tanh GELU, causal attention), with dropout on so that the
/// attention-dropout backward runs too. On a CPU without AVX-512 the first two runs are the same
/// level; the comparison still holds.
#[test]
fn every_simd_level_trains_to_the_same_weights() {
    let work = tempfile::tempdir().unwrap();
    let train = work.path().join("train.jsonl");
    data(&train, 32, 5);
    for (fixture, eos) in [("tiny-bert", None), ("tiny-gpt2", Some("t2"))] {
        let model = model_dir(fixture, eos);
        let initial = weights(model.path());
        let mut runs = Vec::new();
        for level in ["avx512", "avx2", "base"] {
            let out = work.path().join(format!("{fixture}-{level}"));
            let o = ok(bin()
                .env("REWARDKIT_SIMD", level)
                .args([
                    "train",
                    "--model",
                    model.path().to_str().unwrap(),
                    "--data",
                    train.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                    "--max-steps",
                    "3",
                    "--lr",
                    "1e-3",
                    "--batch-size",
                    "4",
                    "--max-length",
                    "24",
                    "--dropout",
                    "--eval-every",
                    "0",
                ])
                .output()
                .unwrap());
            // The level that ran: the one asked for, or the CPU's widest where that is lower.
            let cpu = rewardkit_model::ops::cpu_simd_level();
            let expected = match level {
                "avx512" => cpu,
                "avx2" => cpu.min(SimdLevel::Avx2),
                _ => SimdLevel::Base,
            };
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains(&format!("kernels {expected};")),
                "{fixture} {level}: {err}"
            );
            runs.push(weights(&out.join("final")));
        }
        assert!(
            runs[0] == runs[1],
            "{fixture}: AVX2 kernels differ from AVX-512"
        );
        assert!(
            runs[0] == runs[2],
            "{fixture}: base kernels differ from AVX-512"
        );
        let moved = runs[0]
            .iter()
            .filter(|(name, v)| {
                // The checkpoint may carry the model prefix (`bert.`) the fixture lacks.
                initial.iter().any(|(n, w)| {
                    (name.ends_with(n.as_str()) || n.ends_with(name.as_str())) && w != v
                })
            })
            .count();
        assert!(
            moved > 10,
            "{fixture}: training changed only {moved} tensors"
        );
    }
}

/// A folder with `config`'s config.json (edited by `edit`), `weights`' model.safetensors and
/// tiny-llama-rm's tokenizer.
fn mixed_dir(
    config: &str,
    weights: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> tempfile::TempDir {
    let dir = model_dir(weights, None);
    let text = std::fs::read_to_string(models().join(config).join("config.json")).unwrap();
    let mut c: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut c);
    std::fs::write(dir.path().join("config.json"), c.to_string()).unwrap();
    dir
}

/// `train` of `model` on `pairs` into `out`: two steps of 4 pairs at length 24, no evaluation
/// before the end, with `extra` flags.
fn train_two_steps(model: &Path, pairs: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        pairs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--max-length",
        "24",
        "--eval-every",
        "0",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn rows_file(dir: &Path) -> PathBuf {
    let input = dir.join("rows.jsonl");
    std::fs::write(
        &input,
        "{\"prompt\": \"t30 t40\", \"response\": \" t50 t7 t60\"}\n",
    )
    .unwrap();
    input
}

/// `score` (and `eval --model`) refuse weights that do not match the config, exit 1, naming a
/// missing tensor; nothing is printed on stdout.
#[test]
fn mismatched_weights_are_refused_naming_the_missing_tensors() {
    let work = tempfile::tempdir().unwrap();
    let input = rows_file(work.path());
    let cases: [(&str, tempfile::TempDir, &str); 2] = [
        (
            "BERT config over GPT-2 weights",
            mixed_dir("tiny-bert", "tiny-gpt2", |_| {}),
            "`bert.embeddings.word_embeddings.weight`",
        ),
        (
            "4 layers claimed over 2",
            mixed_dir("tiny-bert", "tiny-bert", |c| {
                c["num_hidden_layers"] = 4.into()
            }),
            "`bert.encoder.layer.2.",
        ),
    ];
    for (what, dir, named) in cases {
        let o = run(&[
            "score",
            "--model",
            dir.path().to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains(named), "{what}: {err}");
        assert!(err.contains("lack"), "{what}: {err}");
        assert!(o.stdout.is_empty(), "{what}");
    }
}

/// A bare backbone (tiny-bert without a head; MiniLM as shipped) is no reward model: `score`
/// and `eval --model` refuse it, exit 1, naming the missing head. `train` on it starts a new
/// head and says so; the trained model then scores.
#[test]
fn a_bare_backbone_is_refused_for_scoring_and_trains_with_a_new_head() {
    let work = tempfile::tempdir().unwrap();
    let input = rows_file(work.path());
    let pairs = work.path().join("pairs.jsonl");
    data(&pairs, 8, 3);
    let bert = model_dir("tiny-bert", None);
    let minilm = common::fetched_model("minilm");
    for dir in [bert.path(), minilm.as_path()] {
        let dir = dir.to_str().unwrap();
        let o = run(&["score", "--model", dir, "--input", input.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{dir}: {err}");
        assert!(err.contains("`classifier.weight`"), "{dir}: {err}");
        assert!(err.contains("bare backbone"), "{dir}: {err}");
        let o = run(&["eval", "--model", dir, "--data", pairs.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{dir}: {err}");
        assert!(err.contains("`classifier.weight`"), "{dir}: {err}");
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains("accuracy"),
            "{dir}"
        );
    }
    let out = work.path().join("run");
    let o = ok(train_two_steps(bert.path(), &pairs, &out, &[]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("initialised 2 tensor(s) from seed")
            && err.contains("classifier.bias, classifier.weight"),
        "{err}"
    );
    let o = ok(run(&[
        "score",
        "--model",
        out.join("final").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]));
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert!(row["score"].as_f64().unwrap().is_finite(), "{row}");
    // A weights mismatch is refused by training too (it cannot start a backbone's tensors).
    let bad = mixed_dir("tiny-bert", "tiny-gpt2", |_| {});
    let o = run(&[
        "train",
        "--model",
        bad.path().to_str().unwrap(),
        "--data",
        pairs.to_str().unwrap(),
        "--out",
        work.path().join("bad").to_str().unwrap(),
        "--max-steps",
        "1",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`bert.embeddings.word_embeddings.weight`"),
        "{err}"
    );
}

/// Without `--max-length`, the length is the model's `max_position_embeddings` (tiny-bert: 128)
/// rather than a fixed 512: `train` and `score` on rows far longer than 128 tokens truncate them
/// (a 512 limit failed the first long row: "longer than the model's 128 positions").
#[test]
fn max_length_defaults_to_the_models_positions() {
    let work = tempfile::tempdir().unwrap();
    let long = |from: usize| {
        (0..300)
            .map(|i| format!("t{}", from + i % 100))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let pairs = work.path().join("long.jsonl");
    let mut rows = String::new();
    for i in 0..8 {
        rows.push_str(&serde_json::json!({"prompt": long(20 + i), "chosen": format!(" t7 {}", long(300)), "rejected": format!(" t9 {}", long(400))}).to_string());
        rows.push('\n');
    }
    std::fs::write(&pairs, rows).unwrap();
    let bert = model_dir("tiny-bert", None);
    let out = work.path().join("run");
    ok(run(&[
        "train",
        "--model",
        bert.path().to_str().unwrap(),
        "--data",
        pairs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--eval-every",
        "0",
    ]));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("final/rewardkit.json")).unwrap())
            .unwrap();
    assert_eq!(meta["model"]["max_length"], 128);
    let input = work.path().join("rows.jsonl");
    std::fs::write(
        &input,
        format!(
            "{}\n",
            serde_json::json!({"prompt": long(20), "response": long(500)})
        ),
    )
    .unwrap();
    let o = ok(run(&[
        "score",
        "--model",
        out.join("final").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]));
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert!(row["score"].as_f64().unwrap().is_finite(), "{row}");
}

/// An unknown `REWARDKIT_SIMD` is an error naming the variable and the accepted values, not a
/// silent run at full width.
#[test]
fn an_unknown_simd_level_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    let input = rows_file(work.path());
    let o = bin()
        .env("REWARDKIT_SIMD", "avx9")
        .args([
            "score",
            "--model",
            models().join("tiny-llama-rm").to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("REWARDKIT_SIMD=\"avx9\""), "{err}");
    assert!(err.contains("avx512|avx2|base"), "{err}");
    assert!(o.stdout.is_empty());
}

/// `eval --model` of a decoder reward model (`../shared/models/tiny-llama-rm`, transformers'
/// `LlamaForSequenceClassification` layout) scores each pair in one row after its prompt by
/// default; `--no-shared-prompt` scores one row per sequence; `--max-batch-tokens` packs
/// sequences (or pairs after their prompt) side by side without padding. The saved scores
/// agree to 1e-5, with prompts cut by truncation (max length 12) and not; packed, every
/// position computed is a real token (`padded_tokens_per_s` equals `tokens_per_s`).
#[test]
fn eval_shared_prompt_scores_equal_separate_rows() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    data(&pairs, 40, 11);
    let model = models().join("tiny-llama-rm");
    for max_length in ["12", "64"] {
        let scores = |name: &str, extra: &[&str]| -> Vec<(f64, f64)> {
            let path = dir.path().join(format!("{name}-{max_length}.jsonl"));
            let mut args = vec![
                "eval",
                "--model",
                model.to_str().unwrap(),
                "--data",
                pairs.to_str().unwrap(),
                "--max-length",
                max_length,
                "--batch-size",
                "6",
                "--save-scores",
                path.to_str().unwrap(),
                "--json",
            ];
            args.extend(extra);
            let out = ok(run(&args));
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let timing = &report["timing"];
            let (tokens, positions) = (&timing["tokens_per_s"], &timing["padded_tokens_per_s"]);
            if extra.contains(&"--max-batch-tokens") {
                assert_eq!(tokens, positions, "{name}: {timing}");
            } else {
                assert!(tokens.as_f64() < positions.as_f64(), "{name}: {timing}");
            }
            common::jsonl(&path)
                .iter()
                .map(|r| {
                    let f = |k: &str| r[k].as_f64().unwrap();
                    (f("chosen_score"), f("rejected_score"))
                })
                .collect()
        };
        let shared = scores("shared", &[]);
        let separate = scores("separate", &["--no-shared-prompt"]);
        let packed = scores(
            "packed",
            &["--max-batch-tokens", "64", "--no-shared-prompt"],
        );
        let packed_shared = scores("packed-shared", &["--max-batch-tokens", "64"]);
        assert_eq!(shared.len(), 40);
        for other in [&separate, &packed, &packed_shared] {
            assert_eq!(shared.len(), other.len());
            for (i, (a, b)) in shared.iter().zip(other).enumerate() {
                assert!(
                    (a.0 - b.0).abs() <= 1e-5 && (a.1 - b.1).abs() <= 1e-5,
                    "max length {max_length}, pair {i}: {a:?} vs {b:?}"
                );
            }
        }
        // The scores are not all alike: the equality says something.
        assert!(shared.iter().any(|s| (s.0 - shared[0].0).abs() > 1e-3));
    }
}

/// `--input-style`: an encoder trained on one segment (`train --input-style sequence`, TRL's
/// string concatenation) keeps it in its rewardkit.json, so `score` reads it so by default; the
/// flag overrides it when scoring (and the scores change: the style reaches the model); a
/// decoder refuses `pair`, exit 1.
#[test]
fn an_encoders_input_style_is_trained_saved_and_overridable() {
    let work = tempfile::tempdir().unwrap();
    let input = rows_file(work.path());
    let pairs = work.path().join("pairs.jsonl");
    data(&pairs, 8, 3);
    // all-MiniLM-L6-v2 (scripts/fetch-models.sh): a BERT tokenizer whose post-processor marks
    // the segments (the tiny fixtures' tokenizer has none, so both styles would read alike).
    let minilm = common::fetched_model("minilm");
    let out = work.path().join("run");
    ok(train_two_steps(
        &minilm,
        &pairs,
        &out,
        &["--input-style", "sequence"],
    ));
    let final_dir = out.join("final");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(final_dir.join("rewardkit.json")).unwrap())
            .unwrap();
    assert_eq!(meta["model"]["input_style"], "sequence", "{meta}");
    assert_eq!(meta["run"]["input_style"], "sequence", "{meta}");
    let score = |extra: &[&str]| -> f64 {
        let mut args = vec![
            "score",
            "--model",
            final_dir.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = ok(run(&args));
        let row: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
        row["score"].as_f64().unwrap()
    };
    let saved = score(&[]);
    assert_eq!(saved, score(&["--input-style", "sequence"]));
    let pair = score(&["--input-style", "pair"]);
    assert!((saved - pair).abs() > 1e-6, "{saved} {pair}");

    let o = run(&[
        "score",
        "--model",
        models().join("tiny-llama-rm").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--input-style",
        "pair",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("a decoder reads prompt + response as one sequence"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}
