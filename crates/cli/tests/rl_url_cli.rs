//! `rewardkit rl --reward-url`: the reward of a running `rewardkit serve` (the real binary on a
//! loopback port, serving the `../shared/models/tiny-llama-rm` fixture). The same run against
//! the folder itself gives the same rewards; the server's 429 is retried after its
//! `Retry-After`; an unreachable server is an error naming the URL.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::serve::Serve;
use common::{jsonl, model_dir, models, ok, run, stderr};
use rewardkit_rl::{Completion, Reward, ScorerReward, UrlReward, UrlRewardConfig};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// 3 steps of 2 prompts × 4 samples, 6 new tokens each.
const SMALL_RUN: [&str; 12] = [
    "--max-steps=3",
    "--prompts-per-step=2",
    "--samples-per-prompt=4",
    "--max-new-tokens=6",
    "--lr=1e-3",
    "--threads=1",
    "--seed=42",
    "--beta=0.05",
    "--ppo-epochs=1",
    "--minibatches=1",
    "--clip-range=0.2",
    "--temperature=1",
];

/// `rl` for 3 steps of 2 prompts × 4 samples from the tiny GPT-2, with `reward` flags.
fn rl(policy: &Path, prompts: &Path, out: &Path, reward: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = [
        "rl",
        "--model",
        &s(policy),
        "--prompts",
        &s(prompts),
        "--out",
        &s(out),
    ]
    .iter()
    .chain(&SMALL_RUN)
    .map(|x| x.to_string())
    .collect();
    args.extend(reward.iter().map(|x| x.to_string()));
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn rl_through_a_served_reward_model_gives_the_folders_rewards() {
    let policy = model_dir("tiny-gpt2", Some("t2"));
    let d = tempfile::tempdir().unwrap();
    let prompts = d.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"t20 t21\"}\n{\"prompt\": \"t40 t41 t42\"}\n",
    )
    .unwrap();
    let rm = models().join("tiny-llama-rm");
    let direct = d.path().join("direct");
    ok(rl(
        policy.path(),
        &prompts,
        &direct,
        &["--reward-model", &s(&rm)],
    ));

    let serve = Serve::start(&["--model", &s(&rm)]);
    let served = d.path().join("served");
    ok(rl(
        policy.path(),
        &prompts,
        &served,
        &["--reward-url", &serve.base],
    ));
    let (a, b) = (
        jsonl(&direct.join("metrics.jsonl")),
        jsonl(&served.join("metrics.jsonl")),
    );
    assert_eq!(a.len(), 3);
    assert_eq!(b.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        for f in [
            "proxy_mean",
            "proxy_std",
            "reward_mean",
            "kl",
            "loss",
            "grad_norm",
        ] {
            let (p, q) = (x[f].as_f64().unwrap(), y[f].as_f64().unwrap());
            assert!((p - q).abs() <= 1e-6, "{f}: {p} (folder) vs {q} (served)");
        }
        assert_eq!(x["response_length"], y["response_length"]);
    }
    // The rewards are not all alike (the comparison above would then say little).
    assert!(a[0]["proxy_std"].as_f64().unwrap() > 1e-4, "{}", a[0]);
    let m = ureq::get(&serve.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        m.contains("rewardkit_requests_total{endpoint=\"/v1/score\",status=\"200\"} 3"),
        "one request per step: {m}"
    );
    assert!(serve.terminate().success());

    // Server down: an error naming the URL, exit code 1.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let o = rl(
        policy.path(),
        &prompts,
        &d.path().join("down"),
        &["--reward-url", &url],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{url}/v1/score")) && e.contains("cannot reach"),
        "{e}"
    );
    // Not http://: a usage error.
    let o = rl(
        policy.path(),
        &prompts,
        &d.path().join("tls"),
        &["--reward-url", "https://x:1"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// Waits until `/metrics` shows an item in the server's queue.
fn wait_queued(serve: &Serve) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let m = ureq::get(&serve.url("/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        if m.lines()
            .any(|l| l.starts_with("rewardkit_queue_items ") && !l.ends_with(" 0"))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the first request never reached the queue");
}

#[test]
fn a_busy_server_is_retried_after_retry_after_and_refused_past_the_retries() {
    let rm = models().join("tiny-llama-rm");
    // One request in flight at most; each waits 1.5 s in the queue for its batch to fill.
    let serve = Serve::start(&[
        "--model",
        &s(&rm),
        "--max-concurrent-requests",
        "1",
        "--max-wait-ms",
        "1500",
    ]);
    let rows: Vec<Completion> = ["t30 t31", "t40", "t50 t51 t52"]
        .iter()
        .map(|r| Completion {
            prompt_index: 0,
            prompt: "t20 t21",
            response: r,
            finished: true,
        })
        .collect();
    let options = rewardkit_model::LoadOptions {
        inference: true,
        ..Default::default()
    };
    let model = rewardkit_model::load(&rm, &options, &candle_core::Device::Cpu).unwrap();
    let scorer = rewardkit_model::ModelScorer::new(&model, 16);
    let want = ScorerReward(&scorer).score(&rows).unwrap();

    let holder = |serve: &Serve| {
        let url = serve.url("/v1/score");
        std::thread::spawn(move || {
            ureq::post(&url)
                .send_string(r#"{"items": [{"response": "t60"}]}"#)
                .map_or_else(|e| panic!("the holder: {e}"), |r| r.status())
        })
    };
    // Refused at once with no retries: the server's message and the URL.
    let first = holder(&serve);
    wait_queued(&serve);
    let mut impatient = UrlReward::new(UrlRewardConfig {
        max_retries: 0,
        ..UrlRewardConfig::new(serve.base.as_str())
    })
    .unwrap();
    let e = impatient.score(&rows).unwrap_err().to_string();
    assert!(
        e.contains("429") && e.contains("overloaded") && e.contains(&serve.base),
        "{e}"
    );
    assert_eq!(first.join().unwrap(), 200);

    // With retries: 429 (Retry-After: 1) while the holder is queued, then the scores.
    let second = holder(&serve);
    wait_queued(&serve);
    let t = Instant::now();
    let mut patient = UrlReward::new(UrlRewardConfig::new(serve.base.as_str())).unwrap();
    let got = patient.score(&rows).unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(second.join().unwrap(), 200);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6, "{g} (served) vs {w} (folder)");
    }
    let m = ureq::get(&serve.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let refused: f64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix("rewardkit_requests_total{endpoint=\"/v1/score\",status=\"429\"} ")
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 2.0, "{m}");
}
