//! `rewardkit train` against what is already in its output folder: a finished run is never mixed
//! with a new one, a signal stops at a checkpoint that resumes exactly, and `--resume` refuses a
//! checkpoint of another run (other hyperparameters, data or starting model).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{bin, data, model_dir, ok, run, stderr, weights};

/// A small run of tiny-bert on synthetic pairs into `out`.
fn args(model: &Path, train: &Path, out: &Path, steps: &str) -> Vec<String> {
    [
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        train.to_str().unwrap(),
        "--eval-fraction",
        "0.1",
        "--out",
        out.to_str().unwrap(),
        "--max-steps",
        steps,
        "--lr",
        "1e-3",
        "--max-length",
        "32",
        "--log-every",
        "1",
        "--dropout",
        "--threads",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn with(mut a: Vec<String>, extra: &[&str]) -> Vec<String> {
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_new_run_into_a_finished_one_is_refused_and_overwrite_replaces_it() {
    let model = model_dir("tiny-bert", None);
    let work = tempfile::tempdir().unwrap();
    let (train, out) = (work.path().join("train.jsonl"), work.path().join("run"));
    data(&train, 32, 1);
    ok(bin()
        .args(args(model.path(), &train, &out, "4"))
        .output()
        .unwrap());
    let before = snapshot(&out);
    assert!(out.join("final/model.safetensors").exists());

    let o = bin()
        .args(args(model.path(), &train, &out, "6"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("not empty") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(snapshot(&out), before, "the old run was touched");

    let o = ok(bin()
        .args(with(
            args(model.path(), &train, &out, "6"),
            &["--overwrite"],
        ))
        .output()
        .unwrap());
    assert!(stderr(&o).contains("trained 6 steps"), "{}", stderr(&o));
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6], "only the new run's log");

    // --overwrite does not delete what is not a run's.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = bin()
        .args(with(
            args(model.path(), &train, &out, "6"),
            &["--overwrite"],
        ))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("notes.txt"), "{}", stderr(&o));
    assert!(out.join("final").exists());
}

#[test]
fn resume_needs_a_checkpoint_unless_resume_or_start() {
    let model = model_dir("tiny-bert", None);
    let work = tempfile::tempdir().unwrap();
    let (train, out) = (work.path().join("train.jsonl"), work.path().join("run"));
    data(&train, 24, 2);
    let o = bin()
        .args(with(args(model.path(), &train, &out, "2"), &["--resume"]))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to resume"), "{}", stderr(&o));
    let o = ok(bin()
        .args(with(
            args(model.path(), &train, &out, "2"),
            &["--resume-or-start"],
        ))
        .output()
        .unwrap());
    assert!(!stderr(&o).contains("resumed at step"), "{}", stderr(&o));
    assert!(out.join("final").exists());
    // The same command again finds the finished run's checkpoint and has nothing left to do.
    let o = ok(bin()
        .args(with(
            args(model.path(), &train, &out, "2"),
            &["--resume-or-start"],
        ))
        .output()
        .unwrap());
    assert!(stderr(&o).contains("resumed at step 2"), "{}", stderr(&o));
}

#[test]
fn resume_refuses_other_data_other_model_and_other_hyperparameters() {
    let model = model_dir("tiny-bert", None);
    let other_model = model_dir("tiny-bert", None);
    // Another starting model: the same architecture with one weight the model reads changed
    // (named: a tensor drawn from the map's order could be the pooler, unread with CLS pooling).
    let path = other_model.path().join("model.safetensors");
    let mut t = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let name = "encoder.layer.0.attention.self.query.weight".to_string();
    let w = t[&name].clone();
    t.insert(name, (w + 0.5).unwrap());
    candle_core::safetensors::save(&t, &path).unwrap();

    let work = tempfile::tempdir().unwrap();
    let (train, other, out) = (
        work.path().join("train.jsonl"),
        work.path().join("other.jsonl"),
        work.path().join("run"),
    );
    data(&train, 24, 3);
    data(&other, 24, 4);
    ok(bin()
        .args(args(model.path(), &train, &out, "2"))
        .output()
        .unwrap());
    let resume = |model: &Path, data: &Path, lr: &str| {
        let a: Vec<String> = args(model, data, &out, "2")
            .into_iter()
            .map(|a| if a == "1e-3" { lr.to_string() } else { a })
            .collect();
        bin().args(with(a, &["--resume"])).output().unwrap()
    };

    let o = resume(model.path(), &other, "1e-3");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("train data fingerprint (checkpoint "), "{err}");
    assert!(!err.contains("starting model"), "{err}");

    let o = resume(other_model.path(), &train, "1e-3");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("starting model fingerprint"),
        "{}",
        stderr(&o)
    );

    // The values are named in the right order: the checkpoint's first, then this run's.
    let o = resume(model.path(), &train, "2e-5");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("learning_rate (checkpoint 0.001, now 0.00002)"),
        "{}",
        stderr(&o)
    );

    // The same data, model and settings resume.
    let o = ok(resume(model.path(), &train, "1e-3"));
    assert!(stderr(&o).contains("resumed at step 2"), "{}", stderr(&o));
}

/// `train --augment` adds pairs to the training split only, records how in every checkpoint's
/// rewardkit.json, and a resume with other augmentation is another run's data (refused).
#[test]
fn augmented_training_records_its_augmentation_and_resumes_only_with_it() {
    let model = model_dir("tiny-bert", None);
    let work = tempfile::tempdir().unwrap();
    let (train, out) = (work.path().join("train.jsonl"), work.path().join("run"));
    data(&train, 40, 3);
    let gsm8k = common::shared("gsm8k/test.jsonl");
    let aug = |ratio: &str| {
        with(
            args(model.path(), &train, &out, "2"),
            &[
                "--augment",
                "--augment-ratio",
                ratio,
                "--augment-gsm8k",
                gsm8k.to_str().unwrap(),
            ],
        )
    };
    let o = ok(bin().args(aug("0.5")).output().unwrap());
    // As many added as the training split holds (ratio 0.5), half of them corrections; the
    // held-out pairs untouched.
    let err = stderr(&o);
    let line = err.lines().find(|l| l.starts_with("augment: ")).unwrap();
    let n: Vec<usize> = line
        .split(' ')
        .filter_map(|w| w.parse().ok())
        .take(3)
        .collect();
    let (added, original, corrections) = (n[0], n[1], n[2]);
    assert_eq!(added, original, "{line}");
    assert!(line.contains("(50.0% of the result)"), "{line}");
    assert_eq!(corrections, (added as f64 / 2.0).round() as usize, "{line}");
    assert!(
        err.contains(&format!(
            "{} training pairs, {} held out",
            2 * original,
            40 - original
        )),
        "{err}"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("final/rewardkit.json")).unwrap()).unwrap();
    let found = |v: &serde_json::Value| {
        v.pointer("/augment/added/augment~1correction~1gsm8k")
            .cloned()
    };
    let recorded = found(&meta).or_else(|| meta.get("meta").and_then(found));
    assert_eq!(recorded, Some(corrections.into()), "{meta}");
    let o = bin()
        .args(with(aug("0.3"), &["--resume"]))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("train data fingerprint"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn penalties_from_flags_and_config_join_the_loss_and_are_recorded() {
    let model = model_dir("tiny-bert", None);
    let work = tempfile::tempdir().unwrap();
    let (train, out) = (work.path().join("train.jsonl"), work.path().join("run"));
    data(&train, 40, 4);
    let config = work.path().join("run.toml");
    let gsm8k = common::shared("gsm8k/test.jsonl");
    // The `augment` table turns augmenting on (no --augment flag); --augment-ratio overrides it.
    std::fs::write(
        &config,
        format!(
            "[[train.penalties]]\nkind = \"counterfactual\"\nweight = 0.25\n\n[[train.penalties]]\nkind = \"honesty\"\nweight = 9.0\n\n[augment]\nratio = 0.3\ngsm8k = {:?}\n",
            gsm8k.to_str().unwrap()
        ),
    )
    .unwrap();
    let flags = [
        "--config",
        config.to_str().unwrap(),
        "--augment-ratio",
        "0.5",
        "--penalty",
        "honesty=2",
        "--penalty",
        "odin",
    ];
    let o = ok(bin()
        .args(with(args(model.path(), &train, &out, "3"), &flags))
        .output()
        .unwrap());
    // The progress lines name each term (stderr is not a terminal here).
    assert!(stderr(&o).contains(" counterfactual "), "{}", stderr(&o));
    // The flag replaced the config's honesty weight; the config's counterfactual stayed.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("final/rewardkit.json")).unwrap()).unwrap();
    let augment = &meta["augment"]["config"];
    assert_eq!(augment["ratio"], 0.5, "{meta}");
    assert_eq!(augment["gsm8k"], gsm8k.to_str().unwrap(), "{meta}");
    assert!(
        meta["augment"]["added"]["augment/correction/gsm8k"]
            .as_u64()
            .unwrap()
            > 0
    );
    let kinds: Vec<(String, f64)> = meta["train"]["penalties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().into(),
                p["weight"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("counterfactual".into(), 0.25),
            ("honesty".into(), 2.0),
            ("odin".into(), 1.0)
        ],
        "{meta}"
    );
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] == "train")
        .collect();
    assert_eq!(steps.len(), 3);
    assert!(
        steps.iter().all(|s| s["penalties"]["odin"].is_number()),
        "{log}"
    );
    // ODIN's length head is training state: in the checkpoint, not in the model.
    assert!(out
        .join("checkpoint-3/odin_length_head.safetensors")
        .exists());
    assert!(!out.join("final/odin_length_head.safetensors").exists());

    // A config file with a misspelt augment setting, or a penalty of an unknown kind, is a bad
    // file (exit 1) that names itself and the field.
    for (text, field) in [
        ("[augment]\nratioo = 0.2\n", "ratioo"),
        ("[[train.penalties]]\nkind = \"kl\"\nweight = 1.0\n", "kl"),
    ] {
        let bad = work.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let o = bin()
            .args(with(
                args(model.path(), &train, &work.path().join("bad"), "1"),
                &["--config", bad.to_str().unwrap()],
            ))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("bad.toml") && stderr(&o).contains(field),
            "{}",
            stderr(&o)
        );
    }
    // A penalty the trainer does not know, and one without what it needs, are refused.
    // (The second run has no config file, so no augmentation and no correction pair.)
    for (flag, why) in [("kl=1", "unknown penalty"), ("honesty", "correction pairs")] {
        let o = bin()
            .args(with(
                args(model.path(), &train, &work.path().join(flag), "1"),
                &["--penalty", flag],
            ))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(why), "{}", stderr(&o));
    }
}

#[cfg(unix)]
/// PandaLM's ties (`../shared/data/pandalm`, 865 pairs kept of 999 rows, 81 of them ties, as
/// `data stats` counts them and `crates/data/tests/real_data.rs` checks against the raw file)
/// are skipped by default and trained with `--ties train` or `ties = "train"`; soft labels come
/// from `p_chosen` or `--label-field`, and `--hard-labels` ignores them. Each is recorded.
#[test]
fn ties_and_soft_labels_from_flags_and_config() {
    let model = model_dir("tiny-bert", None);
    // PandaLM is English: MiniLM (fetched by scripts/fetch-models.sh) reads it; tiny-bert's
    // WordLevel tokenizer knows only `t0`…`t999` and adds no special tokens.
    let minilm = common::fetched_model("minilm");
    let work = tempfile::tempdir().unwrap();
    let pandalm = common::shared("pandalm/testset-v1.json");
    let run_on = |model: &Path, out: &Path, data: &Path, extra: &[&str]| {
        let mut a = with(
            args(model, data, out, "1"),
            &["--batch-size", "4", "--json"],
        );
        a.retain(|x| x != "--eval-fraction" && x != "0.1");
        a.extend([
            "--eval-data".to_string(),
            data.to_str().unwrap().to_string(),
        ]);
        bin().args(with(a, extra)).output().unwrap()
    };
    let json = |o| -> serde_json::Value { serde_json::from_slice(&ok(o).stdout).unwrap() };
    let base = |out: &Path, data: &Path, extra: &[&str]| {
        let model = if data == pandalm {
            &minilm
        } else {
            model.path()
        };
        json(run_on(model, out, data, extra))
    };
    // English through tiny-bert's tokenizer is no token at all: refused as bad input (exit 3),
    // naming the pair.
    let o = run_on(model.path(), &work.path().join("empty"), &pandalm, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{}:", pandalm.display()))
            && stderr(&o).contains("encode to no tokens"),
        "{}",
        stderr(&o)
    );
    let counts = |v: &serde_json::Value| {
        ["train_pairs", "trained_ties", "skipped_ties", "soft_labels"]
            .map(|k| v[k].as_u64().unwrap())
    };
    let skipped = base(&work.path().join("skip"), &pandalm, &[]);
    assert_eq!(counts(&skipped), [784, 0, 81, 0]);
    let trained = base(&work.path().join("train"), &pandalm, &["--ties", "train"]);
    assert_eq!(counts(&trained), [865, 81, 0, 0]);
    let meta = |run: &str| -> serde_json::Value {
        let path = work.path().join(run).join("final/rewardkit.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    assert_eq!(meta("train")["train"]["ties"], "train");
    assert!(
        meta("skip")["train"].get("ties").is_none(),
        "the default is not written"
    );
    let config = work.path().join("run.toml");
    std::fs::write(&config, "[train]\nties = \"train\"\n").unwrap();
    let from_file = base(
        &work.path().join("file"),
        &pandalm,
        &["--config", config.to_str().unwrap()],
    );
    assert_eq!(counts(&from_file), counts(&trained));

    // Soft labels: `p_chosen` by default, another field by name; the swap of a label under ½
    // and a tie at ½ happen on reading.
    let soft = work.path().join("soft.jsonl");
    let mut lines = String::new();
    for (i, p) in [0.9, 0.7, 1.0, 0.5, 0.2].iter().enumerate() {
        lines += &format!(
            "{{\"prompt\": \"t{i}\", \"chosen\": \"t7 t{i}\", \"rejected\": \"t9 t{i}\", \"pref\": {p}}}\n"
        );
    }
    std::fs::write(&soft, lines).unwrap();
    // Without --label-field the `pref` field is not read: five hard labels.
    assert_eq!(
        counts(&base(&work.path().join("s0"), &soft, &[])),
        [5, 0, 0, 0]
    );
    let named = base(
        &work.path().join("s1"),
        &soft,
        &["--label-field", "pref", "--ties", "train"],
    );
    assert_eq!(counts(&named), [5, 1, 0, 3]);
    assert_eq!(meta("s1")["run"]["label_field"], "pref");
    let hard = base(
        &work.path().join("s2"),
        &soft,
        &["--label-field", "pref", "--ties", "train", "--hard-labels"],
    );
    assert_eq!(counts(&hard), [5, 1, 0, 0]);
    assert_eq!(meta("s2")["train"]["use_soft_labels"], false);
    // A label out of range names its file and line: bad input (exit 3).
    std::fs::write(
        &soft,
        "{\"chosen\": \"a\", \"rejected\": \"b\", \"pref\": 2}\n",
    )
    .unwrap();
    let a = with(
        args(model.path(), &soft, &work.path().join("s3"), "1"),
        &["--label-field", "pref"],
    );
    let o = bin().args(a).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{}:1: field `pref`", soft.display())),
        "{}",
        stderr(&o)
    );
}

#[test]
fn sigint_saves_a_checkpoint_that_resumes_to_the_same_weights() {
    let model = model_dir("tiny-bert", None);
    let work = tempfile::tempdir().unwrap();
    let train = work.path().join("train.jsonl");
    data(&train, 64, 5);
    let (full, stopped) = (work.path().join("full"), work.path().join("stopped"));
    // No periodic saves: the only checkpoint before the end is the one the signal makes.
    ok(bin()
        .args(args(model.path(), &train, &full, "300"))
        .output()
        .unwrap());
    let child = bin()
        .args(args(model.path(), &train, &stopped, "300"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = stopped.join("metrics.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |l| l.lines().count()) < 5 {
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: sends SIGINT to the child we spawned.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("Resume with:") && err.contains("--resume"),
        "{err}"
    );
    let checkpoints: Vec<usize> = std::fs::read_dir(&stopped)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            rewardkit_train::parse_checkpoint_name(&name)
        })
        .collect();
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
    let step = checkpoints[0];
    assert!((5..300).contains(&step), "stopped at {step}");
    assert!(!stopped.join("final").exists());
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(stopped.join(format!("checkpoint-{step}/trainer_state.json")))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(state["step"], step);

    let o = ok(bin()
        .args(with(
            args(model.path(), &train, &stopped, "300"),
            &["--resume"],
        ))
        .output()
        .unwrap());
    assert!(
        stderr(&o).contains(&format!("resumed at step {step}")),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        weights(&stopped.join("final")),
        weights(&full.join("final"))
    );
}

#[test]
fn train_help_explains_every_flag() {
    let o = ok(run(&["train", "--help"]));
    insta::assert_snapshot!("train_help", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn max_steps_zero_is_a_bad_command_line() {
    let o = run(&[
        "train",
        "--max-steps",
        "0",
        "--model",
        "m",
        "--data",
        "d",
        "--out",
        "o",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("max-steps"), "{}", stderr(&o));
}
