//! `rewardkit serve`: the real binary on an ephemeral loopback port, a real HTTP client (ureq).
//! Scores over HTTP are those of `rewardkit score` on the same rows (a MiniLM reward model
//! trained here on HH-RLHF, `../shared/models/tiny-llama-rm` against its `reference.json`, an
//! ensemble of both); each protocol's request is built as its client builds it; batching
//! across requests changes no score; overload is 429, never a hang; SIGTERM answers what was
//! accepted.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::serve::Serve;
use common::{bin, models, ok, run};
use serde_json::{json, Value};

impl Serve {
    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        post_raw(&self.url(path), &body.to_string())
    }
}

fn post_raw(url: &str, body: &str) -> (u16, Value) {
    let resp = match ureq::post(url)
        .set("Content-Type", "application/json")
        .send_string(body)
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{url}: {e}"),
    };
    (resp.status(), resp.into_json().unwrap())
}

/// A GET's body as text.
fn get_text(url: &str) -> String {
    ureq::get(url).call().unwrap().into_string().unwrap()
}

/// The value of an unlabelled Prometheus sample.
fn metric(text: &str, name: &str) -> f64 {
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs {w}");
    }
}

fn shared_data() -> PathBuf {
    std::env::var_os("REWARDKIT_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    )
}

/// `n` real pairs of HH-RLHF helpful-base test, after the first `skip`.
fn hh_pairs(skip: usize, n: usize) -> Vec<rewardkit_data::PreferencePair> {
    let path = shared_data().join("hh-rlhf/helpful-base/test.jsonl.gz");
    let data = rewardkit_data::load(&[path], &Default::default()).unwrap();
    data.pairs.into_iter().skip(skip).take(n).collect()
}

/// `n` real (prompt, response): the chosen responses of [`hh_pairs`].
fn hh_items(n: usize, skip: usize) -> Vec<(String, String)> {
    hh_pairs(skip, n)
        .iter()
        .map(|p| (p.prompt.render(), p.chosen.render()))
        .collect()
}

/// A MiniLM reward model: all-MiniLM-L6-v2 (fetched by `scripts/fetch-models.sh`) with a value
/// head trained for a few steps on HH-RLHF pairs; made once per test binary.
fn minilm_rm() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let minilm = common::fetched_model("minilm");
        // Trained again by each run of this test binary (--overwrite), kept in cargo's folder.
        let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve_cli-minilm-rm");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("train.jsonl"), trl_rows(0, 16)).unwrap();
        std::fs::write(work.join("eval.jsonl"), trl_rows(16, 4)).unwrap();
        let out = work.join("run");
        ok(run(&[
            "--threads",
            "2",
            "train",
            "--model",
            minilm.to_str().unwrap(),
            "--data",
            work.join("train.jsonl").to_str().unwrap(),
            "--eval-data",
            work.join("eval.jsonl").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--max-length",
            "64",
            "--pooling",
            "mean",
            "--overwrite",
        ]));
        out.join("final")
    })
}

/// HH pairs as TRL JSONL rows.
fn trl_rows(skip: usize, n: usize) -> String {
    hh_pairs(skip, n)
        .iter()
        .map(|p| {
            let row = json!({"prompt": p.prompt.render(), "chosen": p.chosen.render(), "rejected": p.rejected.render()});
            row.to_string() + "\n"
        })
        .collect()
}

/// `rewardkit score` on the same rows.
fn cli_scores(model: &Path, items: &[(String, String)], extra: &[&str]) -> Vec<f64> {
    let work = tempfile::tempdir().unwrap();
    let rows: String = items
        .iter()
        .map(|(p, r)| json!({"prompt": p, "response": r}).to_string() + "\n")
        .collect();
    let input = work.path().join("rows.jsonl");
    std::fs::write(&input, rows).unwrap();
    let o = ok(bin()
        .args([
            "--threads",
            "2",
            "score",
            "--model",
            model.to_str().unwrap(),
            "--input",
        ])
        .arg(&input)
        .args(extra)
        .output()
        .unwrap());
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["score"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// `items` posted to `/v1/score` in requests of `per_request`, all at once from one thread
/// each; the scores in item order.
fn score_concurrently(s: &Serve, items: &[(String, String)], per_request: usize) -> Vec<f64> {
    let scores: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per_request)
            .map(|chunk| {
                scope.spawn(|| floats(&s.post("/v1/score", &score_body(chunk)).1["scores"]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    scores.concat()
}

fn score_body(items: &[(String, String)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(p, r)| json!({"prompt": p, "response": r}))
        .collect();
    json!({ "items": items })
}

#[test]
fn every_protocol_answers_the_scores_of_rewardkit_score() {
    let model = minilm_rm();
    let items = hh_items(12, 100);
    let want = cli_scores(model, &items, &["--max-length", "128"]);
    let s = Serve::start(&["--model", model.to_str().unwrap(), "--max-length", "128"]);

    let (st, v) = s.post("/v1/score", &score_body(&items));
    assert_eq!(st, 200, "{v}");
    assert_close(&floats(&v["scores"]), &want, 1e-6, "/v1/score");
    assert_eq!(v["truncated"].as_array().unwrap().len(), items.len());

    // OpenRLHF's remote RM client: {"query": prompt + response, "prompts": prompt}, reads
    // `rewards` (and logs every key of `extra_logs`).
    let query: Vec<String> = items.iter().map(|(p, r)| format!("{p}{r}")).collect();
    let prompts: Vec<&String> = items.iter().map(|(p, _)| p).collect();
    let (st, v) = s.post(
        "/get_reward",
        &json!({"query": query, "prompts": prompts, "labels": vec!["x"; 12]}),
    );
    assert_eq!(st, 200, "{v}");
    assert_close(&floats(&v["rewards"]), &want, 1e-6, "/get_reward rewards");
    assert_close(&floats(&v["scores"]), &want, 1e-6, "/get_reward scores");
    for key in ["monitor_length_r", "monitor_flags", "monitor_window_items"] {
        assert_eq!(
            v["extra_logs"][key].as_array().unwrap().len(),
            12,
            "{key}: {v}"
        );
    }

    // Without prompts, and through vLLM's /classify and TEI's /predict, a text alone is scored
    // as a response with no prompt: the same as `rewardkit score` on rows without a prompt.
    let responses: Vec<(String, String)> = items
        .iter()
        .map(|(_, r)| (String::new(), r.clone()))
        .collect();
    let alone = cli_scores(model, &responses, &["--max-length", "128"]);
    let texts: Vec<&String> = items.iter().map(|(_, r)| r).collect();
    let (st, v) = s.post("/get_reward", &json!({"query": texts}));
    assert_eq!(st, 200, "{v}");
    assert_close(
        &floats(&v["rewards"]),
        &alone,
        1e-6,
        "/get_reward without prompts",
    );
    // verl's reward loop: {"model", "input": [...], "activation": false}, reads data[i].probs.
    let (st, v) = s.post(
        "/classify",
        &json!({"model": "rm", "input": texts, "activation": false, "add_special_tokens": false}),
    );
    assert_eq!(st, 200, "{v}");
    let probs: Vec<f64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["probs"][0].as_f64().unwrap())
        .collect();
    assert_close(&probs, &alone, 1e-6, "/classify");
    assert_eq!(v["data"][3]["index"], 3);
    assert_eq!(v["data"][0]["num_classes"], 1);
    assert_eq!(v["model"], "rm");
    // Default activation: σ(reward).
    let (_, v) = s.post("/classify", &json!({"input": texts[0]}));
    let p = v["data"][0]["probs"][0].as_f64().unwrap();
    assert!((p - 1.0 / (1.0 + (-alone[0]).exp())).abs() < 1e-6, "{v}");
    // TEI: {"inputs": [[prompt, response], ...], "raw_scores": true} → [[{score, label}], ...].
    let pairs: Vec<[&String; 2]> = items.iter().map(|(p, r)| [p, r]).collect();
    let (st, v) = s.post("/predict", &json!({"inputs": pairs, "raw_scores": true}));
    assert_eq!(st, 200, "{v}");
    let got: Vec<f64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[0]["score"].as_f64().unwrap())
        .collect();
    assert_close(&got, &want, 1e-6, "/predict batch");
    let (_, v) = s.post(
        "/predict",
        &json!({"inputs": [items[0].0, items[0].1], "raw_scores": true}),
    );
    assert!(
        (v[0]["score"].as_f64().unwrap() - want[0]).abs() < 1e-6,
        "/predict single: {v}"
    );
    assert_eq!(v[0]["label"], "LABEL_0");

    let info: Value = ureq::get(&s.url("/info"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(info["members"][0]["architecture"], "bert");
    assert_eq!(info["members"][0]["pooling"], "mean");
    assert_eq!(info["members"][0]["max_length"], 128);
    assert!(s.terminate().success());
}

#[test]
fn tiny_llama_rm_matches_its_reference_and_openrlhf_gets_a_reward_per_query() {
    let dir = models().join("tiny-llama-rm");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let items: Vec<(String, String)> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["prompt"].as_str().unwrap().to_owned(),
                t["response"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let s = Serve::start(&["--model", dir.to_str().unwrap()]);
    assert_eq!(ureq::get(&s.url("/health")).call().unwrap().status(), 200);
    let (st, v) = s.post("/v1/score", &score_body(&items));
    assert_eq!(st, 200, "{v}");
    // transformers' LlamaForSequenceClassification, each text alone (../shared/MODELS.md).
    let want = floats(&reference["scores_unpadded_one_by_one"]);
    assert_close(&floats(&v["scores"]), &want, 1e-4, "tiny-llama-rm");
    let query: Vec<String> = items.iter().map(|(p, r)| format!("{p}{r}")).collect();
    let (st, v) = s.post("/get_reward", &json!({"query": query}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["rewards"].as_array().unwrap().len(), query.len());
    assert!(s.terminate().success());
}

#[test]
fn an_ensemble_answers_each_member_and_the_combined_reward() {
    let minilm = minilm_rm();
    let llama = models().join("tiny-llama-rm");
    let items = hh_items(6, 200);
    let a = cli_scores(minilm, &items, &["--max-length", "128"]);
    let b = cli_scores(&llama, &items, &["--max-length", "128"]);
    let s = Serve::start(&[
        "--model",
        minilm.to_str().unwrap(),
        "--model",
        llama.to_str().unwrap(),
        "--combine",
        "mean-std:0.5",
        "--max-length",
        "128",
    ]);
    let mut body = score_body(&items);
    body["return_members"] = json!(true);
    let (st, v) = s.post("/v1/score", &body);
    assert_eq!(st, 200, "{v}");
    for (i, m) in v["members"].as_array().unwrap().iter().enumerate() {
        let m = floats(m);
        assert_close(&m, &[a[i], b[i]], 1e-6, "members");
        let (mean, std) = ((a[i] + b[i]) / 2.0, (a[i] - b[i]).abs() / 2.0);
        assert!((v["std"][i].as_f64().unwrap() - std).abs() < 1e-9);
        assert!(
            (v["scores"][i].as_f64().unwrap() - (mean - 0.5 * std)).abs() < 1e-9,
            "{v}"
        );
    }
    let info: Value = ureq::get(&s.url("/info"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(info["combine"], "mean-0.5*std");
    assert_eq!(info["members"].as_array().unwrap().len(), 2);
    assert!(s.terminate().success());
}

#[test]
fn concurrent_clients_get_the_scores_each_row_gets_alone() {
    let model = minilm_rm();
    let items = hh_items(64 * 8, 0);
    let s = Serve::start(&[
        "--model",
        model.to_str().unwrap(),
        "--max-length",
        "64",
        "--max-wait-ms",
        "5",
    ]);
    // Each row alone: one request, one item, one forward pass.
    let alone: Vec<f64> = items
        .iter()
        .map(|it| {
            let (st, v) = s.post("/v1/score", &score_body(std::slice::from_ref(it)));
            assert_eq!(st, 200, "{v}");
            v["scores"][0].as_f64().unwrap()
        })
        .collect();
    let together = score_concurrently(&s, &items, 8);
    assert_close(&together, &alone, 1e-6, "batched across 64 clients");
    let batches = metric(&get_text(&s.url("/metrics")), "rewardkit_batches_total");
    // 512 alone + far fewer than 64 batches for the concurrent ones.
    assert!(
        batches < 512.0 + 64.0,
        "{batches} batches: no batching across requests"
    );
    assert!(s.terminate().success());
}

/// `--packing`: the items of concurrent requests, batched together and scored side by side
/// in one row without padding, get the scores `rewardkit score` gives them in padded rows.
#[test]
fn a_packing_server_answers_the_scores_of_padded_rows() {
    let model = minilm_rm();
    let items = hh_items(64, 0);
    let want = cli_scores(model, &items, &["--max-length", "128"]);
    let s = Serve::start(&[
        "--model",
        model.to_str().unwrap(),
        "--max-length",
        "128",
        "--packing",
        "--max-wait-ms",
        "20",
    ]);
    let together = score_concurrently(&s, &items, 8);
    assert_close(&together, &want, 1e-5, "packed across 8 clients");
    let batches = metric(&get_text(&s.url("/metrics")), "rewardkit_batches_total");
    assert!(
        batches < 8.0,
        "{batches} batches: no batching across requests"
    );
    assert!(s.terminate().success());
}

#[test]
fn a_burst_over_the_limit_is_answered_200_or_429_and_the_server_recovers() {
    let dir = models().join("tiny-llama-rm");
    let s = Serve::start(&[
        "--model",
        dir.to_str().unwrap(),
        "--max-concurrent-requests",
        "2",
    ]);
    let body =
        json!({"items": vec![json!({"prompt": "t5 t17", "response": " t3 t250"}); 32]}).to_string();
    let started = Instant::now();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..200)
            .map(|_| scope.spawn(|| post_raw(&s.url("/v1/score"), &body)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (st, v) = h.join().unwrap();
                if st == 429 {
                    assert_eq!(v["error_type"], "overloaded", "{v}");
                }
                st
            })
            .collect()
    });
    let ok = statuses.iter().filter(|&&c| c == 200).count();
    let busy = statuses.iter().filter(|&&c| c == 429).count();
    assert_eq!(ok + busy, 200, "{statuses:?}");
    assert!(ok >= 1 && busy >= 1, "{ok} answered, {busy} refused");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(ureq::get(&s.url("/health")).call().unwrap().status(), 200);
    let (st, v) = post_raw(&s.url("/v1/score"), &body);
    assert_eq!(st, 200, "{v}");
    let metrics = get_text(&s.url("/metrics"));
    assert!(
        metrics.contains(&format!(
            "rewardkit_requests_total{{endpoint=\"/v1/score\",status=\"429\"}} {busy}"
        )),
        "{metrics}"
    );
    assert!(s.terminate().success());
}

#[test]
fn malformed_and_oversized_bodies_get_json_errors() {
    let dir = models().join("tiny-llama-rm");
    let s = Serve::start(&["--model", dir.to_str().unwrap(), "--max-body-bytes", "1000"]);
    let (st, v) = post_raw(&s.url("/v1/score"), "{\"items\": [");
    assert_eq!(
        (st, v["error_type"].as_str()),
        (400, Some("invalid_json")),
        "{v}"
    );
    let big = json!({"items": [{"response": "t1 ".repeat(400)}]}).to_string();
    let (st, v) = post_raw(&s.url("/v1/score"), &big);
    assert_eq!(
        (st, v["error_type"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    let (st, v) = post_raw(&s.url("/get_reward"), "{\"query\": 3}");
    assert_eq!(st, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("`query`"), "{v}");
    assert!(s.terminate().success());
}

#[test]
fn sigterm_answers_every_accepted_request_then_exits_0() {
    let model = minilm_rm();
    let s = Serve::start(&[
        "--model",
        model.to_str().unwrap(),
        "--max-length",
        "64",
        "--max-batch-items",
        "4",
    ]);
    let items = hh_items(8, 300);
    let metrics_url = s.url("/metrics");
    let score_url = s.url("/v1/score");
    let body = score_body(&items).to_string();
    let answers = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| post_raw(&score_url, &body)))
            .collect();
        // Wait until all 64 items are accepted (queued or being scored), then SIGTERM.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = get_text(&metrics_url);
            let accepted =
                metric(&m, "rewardkit_queue_items") + metric(&m, "rewardkit_sequences_total");
            if accepted >= 64.0 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (st, v) in &answers {
        assert_eq!(*st, 200, "{v}");
        assert_eq!(v["scores"].as_array().unwrap().len(), 8);
    }
    let log = s.log.clone();
    let status = s.terminate();
    assert_eq!(status.code(), Some(0), "{}", log.lock().unwrap());
    assert!(log.lock().unwrap().contains("shutting down"));
}
