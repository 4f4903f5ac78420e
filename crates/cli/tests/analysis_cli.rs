//! `rewardkit audit`, `goodhart` and `data cycles` as a user runs them, on the real data in
//! `../shared/data`.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::path::PathBuf;
use std::process::{Command, Output};

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rewardkit"))
        .args(args)
        .output()
        .expect("run rewardkit")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Filters for what moves between runs: times, temporary folders, the shared data's place.
fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"/[^\s:]*?/shared/data/", "[DATA]/");
    s.add_filter(r"/tmp/[^\s/]+/", "[TMP]/");
    s.add_filter(r"in \d+\.\d s", "in [S] s");
    s
}

/// An SVG plot, one element per line, coordinates filtered out: the snapshot keeps what the
/// plot says (elements, colours, labels, titles, tick values), not where each pixel is.
fn assert_svg_snapshot(name: &str, svg: &str) {
    let mut s = settings();
    s.add_filter(
        r#" (x|y|x1|y1|x2|y2|cx|cy|width|height)="-?[0-9.]+""#,
        r#" $1="_""#,
    );
    s.add_filter(r#"points="[^"]*""#, r#"points="…""#);
    s.add_filter(r"translate\([^)]*\)", "translate(_)");
    let lines = svg.replace("><", ">\n<");
    s.bind(|| insta::assert_snapshot!(name, lines));
}

/// 200 HH-RLHF helpful-online pairs in TRL form (the audit's input), written to `dir`.
fn small_data(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("pairs.jsonl");
    let o = run(&[
        "data",
        "split",
        shared("hh-rlhf/helpful-online/test.jsonl.gz")
            .to_str()
            .unwrap(),
        "--eval-fraction",
        "0.18",
        "--train-out",
        dir.join("rest.jsonl").to_str().unwrap(),
        "--eval-out",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    path
}

fn audit_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "audit",
        "--data",
        data,
        "--out",
        out,
        "--bootstrap",
        "200",
        "--probe-samples",
        "60",
    ]
}

#[test]
fn length_baseline_audit_flags_length_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_data(dir.path());
    let out = dir.path().join("audit");
    let gsm8k = shared("gsm8k/test.jsonl");
    let mut args = audit_args(data.to_str().unwrap(), out.to_str().unwrap());
    args.extend([
        "--baseline",
        "length",
        "--gsm8k",
        gsm8k.to_str().unwrap(),
        "--sycophancy-items",
        "50",
        "--probes",
        "filler,repeat_sentence,bold",
    ]);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    insta::assert_snapshot!("audit_length_flags", stdout);
    for f in [
        "report.json",
        "report.md",
        "score_vs_length.svg",
        "correlations.svg",
        "probes.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["scorer"], "baseline:length-chars");
    assert_eq!(report["probes"].as_array().unwrap().len(), 3);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let flags_at = md.find("## Flags").unwrap();
    assert!(flags_at < md.find("## Score against response features").unwrap());
    settings().bind(|| insta::assert_snapshot!("audit_length_report_md", md));
    for f in ["score_vs_length.svg", "correlations.svg", "probes.svg"] {
        let svg = std::fs::read_to_string(out.join(f)).unwrap();
        assert_svg_snapshot(&format!("audit_length_{}", f.replace('.', "_")), &svg);
    }

    // --fail-on red turns the red flags into exit code 4.
    args.extend(["--fail-on", "red"]);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
}

#[test]
fn a_score_file_from_exported_requests_audits_like_the_model_that_wrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_data(dir.path());
    let requests = dir.path().join("requests.jsonl");
    let out = dir.path().join("audit");
    let mut export = audit_args(data.to_str().unwrap(), out.to_str().unwrap());
    export.extend(["--export-requests", requests.to_str().unwrap()]);
    let o = run(&export);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Score every request by its length elsewhere (here), as an outside model would.
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&requests)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.len() > 400, "{}", rows.len());
    let scored: String = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let len = r["response"].as_str().unwrap().chars().count();
            r["score"] = len.into();
            format!("{r}\n")
        })
        .collect();
    let scores = dir.path().join("scored.jsonl");
    std::fs::write(&scores, &scored).unwrap();

    let mut from_file = audit_args(data.to_str().unwrap(), out.to_str().unwrap());
    from_file.extend(["--scores", scores.to_str().unwrap(), "--json"]);
    let a: serde_json::Value = serde_json::from_slice(&run(&from_file).stdout).unwrap();
    let out2 = dir.path().join("audit2");
    let mut baseline = audit_args(data.to_str().unwrap(), out2.to_str().unwrap());
    baseline.extend(["--baseline", "length", "--json"]);
    let b: serde_json::Value = serde_json::from_slice(&run(&baseline).stdout).unwrap();
    for key in ["flags", "correlations", "probes", "length_pairs", "ridge"] {
        assert_eq!(a[key], b[key], "{key}");
    }

    // A score file that lacks a request is bad input: exit 3, naming what is missing.
    let partial: String = scored.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&scores, partial).unwrap();
    let o = run(&from_file);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("no score for response"),
        "{}",
        text(&o.stderr)
    );
}

/// `audit --compare`: a length-paying scorer against a random one, on the same pairs and GSM8K
/// sycophancy items. Length correlation must fall significantly and its red flags be listed as
/// fixed; the other way round they are new, and `--fail-on red` says so with exit code 4.
#[test]
fn compare_tells_what_changed_between_two_audits() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_data(dir.path());
    let gsm8k = shared("gsm8k/test.jsonl");
    let audit = |baseline: &str, name: &str| {
        let out = dir.path().join(name);
        let mut args = audit_args(data.to_str().unwrap(), out.to_str().unwrap());
        args.extend([
            "--baseline",
            baseline,
            "--gsm8k",
            gsm8k.to_str().unwrap(),
            "--sycophancy-items",
            "50",
            "--probes",
            "filler,bold",
        ]);
        let o = run(&args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        out.join("report.json")
    };
    let (length, random) = (audit("length", "length"), audit("random:3", "random"));
    let (length, random) = (length.to_str().unwrap(), random.to_str().unwrap());
    let cmp = dir.path().join("cmp");
    let o = run(&[
        "audit",
        "--compare",
        length,
        random,
        "--out",
        cmp.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    settings().bind(|| insta::assert_snapshot!("audit_compare_text", text(&o.stdout)));
    assert!(cmp.join("comparison.md").is_file());
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cmp.join("comparison.json")).unwrap()).unwrap();
    let row = |subject: &str| {
        c["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["subject"] == subject)
            .unwrap()
            .clone()
    };
    let chars = row("chars");
    assert_eq!(chars["change"], "better");
    assert!(chars["ci"][1].as_f64().unwrap() < -0.5, "{chars}");
    assert!(c["fixed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["subject"] == "chars"));
    assert!(c["new"].as_array().unwrap().is_empty(), "{}", c["new"]);

    // The other way round: new red flags, and --fail-on red exits 4.
    let o = run(&[
        "audit",
        "--compare",
        random,
        length,
        "--json",
        "--fail-on",
        "red",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    let back: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(back["new"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["subject"] == "chars"));

    // A file that is not an audit's report is bad input (exit 3), named in the message.
    let o = run(&["audit", "--compare", length, data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("pairs.jsonl"),
        "{}",
        text(&o.stderr)
    );
}

/// `data augment` on 200 HH-RLHF pairs with GSM8K and TruthfulQA training questions: the
/// output holds every original and the added pairs, each added one with its `source`, the same
/// bytes for the same seed, and `data stats` counts the sources.
#[test]
fn data_augment_adds_marked_pairs_that_stats_counts() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_data(dir.path());
    let out = dir.path().join("augmented.jsonl");
    let (gsm8k, tqa) = (
        shared("gsm8k/test.jsonl"),
        shared("truthfulqa/TruthfulQA.csv"),
    );
    let args = [
        "data",
        "augment",
        data.to_str().unwrap(),
        "--augment-ratio",
        "0.2",
        "--augment-gsm8k",
        gsm8k.to_str().unwrap(),
        "--augment-truthfulqa",
        tqa.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let original = report["original"].as_u64().unwrap();
    let added: u64 = report["added"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    // ratio 0.2: added / (original + added) = 0.2.
    assert_eq!(added, (original as f64 * 0.25).round() as u64, "{report}");
    let first = std::fs::read(&out).unwrap();
    let rows: Vec<serde_json::Value> = std::str::from_utf8(&first)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len() as u64, original + added);
    let marked = rows.iter().filter(|r| r["source"].is_string()).count() as u64;
    assert_eq!(marked, added);
    // Correction prompts are HH transcripts, as the audited pairs are.
    let correction = rows
        .iter()
        .find(|r| r["source"] == "augment/correction/gsm8k")
        .unwrap();
    assert!(correction["prompt"]
        .as_str()
        .unwrap()
        .starts_with("\n\nHuman: "));
    // Deterministic: the same command writes the same bytes.
    assert!(run(&args).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), first);

    let o = run(&["data", "stats", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        stats["sources"][""].as_u64(),
        Some(original),
        "{}",
        stats["sources"]
    );
    for (k, v) in report["added"].as_object().unwrap() {
        assert_eq!(&stats["sources"][k], v, "{k}");
    }
    let o = run(&["data", "stats", out.to_str().unwrap()]);
    assert!(
        text(&o.stdout).contains("augment/counterfactual/filler"),
        "{}",
        text(&o.stdout)
    );

    // An edit kept for the audit is a bad command line (exit 2), named.
    let o = run(&[
        "data",
        "augment",
        data.to_str().unwrap(),
        "--augment-edits",
        "bold",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("`bold` is kept for the audit"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn data_cycles_on_pandalm() {
    let o = run(&[
        "data",
        "cycles",
        shared("pandalm/testset-v1.json").to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // PandaLM: 137 instructions compare three or more responses; their majority labels hold a
    // single intransitive triple (measured with this command).
    assert_eq!(v["tournaments"], 137);
    assert_eq!(v["cycles"], 1);
    assert_eq!(v["tournaments_with_cycles"], 1);
    assert!(v["bt_cost_nats"].as_f64().unwrap() > 0.0);
}

/// `goodhart label` then `goodhart curves` on a small pool scored by a real (tiny) reward model,
/// `../shared/models/tiny-llama-rm`, used twice as an ensemble of identical members.
#[test]
fn goodhart_curves_on_a_small_pool() {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool.jsonl");
    let mut rows = String::new();
    for p in 0..6 {
        for s in 0..4 {
            let response = format!("t{} t{} t{}", 7 + s, 20 + p, 9 * s);
            let row = serde_json::json!({
                "prompt_id": format!("p{p}"), "prompt": format!("t{p} t{}", p + 3),
                "sample": s, "response": response,
                "logprob": -1.0 - s as f64, "ref_logprob": -1.5 - 2.0 * s as f64,
                "gold": ((p + s) % 3) as f64,
            });
            rows.push_str(&format!("{row}\n"));
        }
    }
    std::fs::write(&pool, rows).unwrap();
    let model =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/tiny-llama-rm");
    let out = dir.path().join("curves");
    let o = run(&[
        "goodhart",
        "curves",
        "--pool",
        pool.to_str().unwrap(),
        "--proxy",
        model.to_str().unwrap(),
        "--proxy",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let a = &v["analysis"];
    assert_eq!(a["prompts"], 6);
    assert_eq!(a["samples_per_prompt"], 4);
    let curves = a["curves"].as_array().unwrap();
    let labels: Vec<&str> = curves
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels.len(), 7, "{labels:?}"); // proxy, 4 ensemble rules, 2 KL-penalised
    assert_eq!(labels[0], "proxy");
    // n = 1 is a random pick: gold = the mean gold of the pool, for every selector.
    let mean_gold = (0..6)
        .flat_map(|p| (0..4).map(move |s| ((p + s) % 3) as f64))
        .sum::<f64>()
        / 24.0;
    for c in curves {
        let g = c["points"][0]["gold"].as_f64().unwrap();
        assert!((g - mean_gold).abs() < 1e-12, "{}: {g}", c["label"]);
    }
    // Two identical members: the mean ensemble picks exactly what the proxy picks.
    assert_eq!(curves[0]["points"], curves[1]["points"]);
    for f in ["report.json", "report.md", "goodhart.svg"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    settings().bind(|| insta::assert_snapshot!("goodhart_curves_report_md", md));
    let svg = std::fs::read_to_string(out.join("goodhart.svg")).unwrap();
    assert_svg_snapshot("goodhart_curves_svg", &svg);

    // `label`: every prompt's gold-ordered pairs from the training part, the rest as a pool.
    let (pairs, held) = (
        dir.path().join("pairs.jsonl"),
        dir.path().join("held.jsonl"),
    );
    let o = run(&[
        "goodhart",
        "label",
        "--pool",
        pool.to_str().unwrap(),
        "--pairs-out",
        pairs.to_str().unwrap(),
        "--pool-out",
        held.to_str().unwrap(),
        "--heldout-fraction",
        "0.5",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let n_pairs = std::fs::read_to_string(&pairs).unwrap().lines().count();
    let held_rows = std::fs::read_to_string(&held).unwrap();
    let n_held = held_rows.lines().count();
    // The held-out pool is in the pool-row schema: samples renumbered per prompt, what the
    // input had kept (`logprob`, `ref_logprob`, `gold`), nothing absent written as null.
    let line = held_rows.lines().next().unwrap();
    let first: serde_json::Value = serde_json::from_str(line).unwrap();
    let mut keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "gold",
            "logprob",
            "prompt",
            "prompt_id",
            "ref_logprob",
            "response",
            "sample"
        ]
    );
    assert!(line.starts_with("{\"prompt_id\":\"p"), "{line}");
    assert!(!held_rows.contains("null"), "{held_rows}");
    assert_eq!(first["sample"], 0);
    // Each prompt has golds {0, 1, 2, x} over 4 samples: 5 ordered pairs per prompt.
    assert_eq!(n_held % 4, 0);
    assert_eq!(
        n_pairs,
        5 * (6 - n_held / 4),
        "{n_pairs} pairs, {n_held} held-out rows"
    );
}
