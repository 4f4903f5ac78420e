//! The server in process on an ephemeral loopback port, with a real HTTP client (ureq), over a
//! word-counting engine that can be told to fail: validation, limits, authentication, model
//! failures and disconnects. (Scores of real models are tested in the CLI's `serve_cli.rs`.)
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rewardkit_data::Text;
use rewardkit_serve::{Engine, MemberInfo, Metrics, Prepared, ServeConfig, Server};
use rewardkit_tokenize::{Encoded, Truncation};
use serde_json::{json, Value};

/// An id that makes the batch fail with an error, and one that makes it panic.
const FAIL: u32 = 1_000_001;
const PANIC: u32 = 1_000_002;

/// One token per whitespace word of prompt and response, cut (prompt first) to `max_len`;
/// the score of an item is its token count; `delay` per batch.
struct Words {
    max_len: usize,
    delay: Duration,
    largest_batch: AtomicUsize,
}

impl Engine for Words {
    fn prepare(&self, prompt: &Text, response: &Text) -> Result<Prepared, String> {
        let id = |w: &str| match w {
            "FAIL" => FAIL,
            "PANIC" => PANIC,
            _ => 7,
        };
        let p: Vec<u32> = prompt.render().split_whitespace().map(id).collect();
        let r: Vec<u32> = response.render().split_whitespace().map(id).collect();
        let keep_r = r.len().min(self.max_len);
        let keep_p = p.len().min(self.max_len - keep_r);
        let ids: Vec<u32> = p[p.len() - keep_p..]
            .iter()
            .chain(&r[..keep_r])
            .copied()
            .collect();
        Ok(Prepared::new(vec![Encoded {
            type_ids: vec![0; ids.len()],
            ids,
            truncation: Truncation {
                prompt: p.len() - keep_p,
                response: r.len() - keep_r,
            },
        }]))
    }

    fn score(&self, batch: &[&Prepared]) -> Result<Vec<Vec<f64>>, String> {
        self.largest_batch.fetch_max(batch.len(), Ordering::SeqCst);
        std::thread::sleep(self.delay);
        let ids = || batch.iter().flat_map(|p| &p.members[0].ids);
        if ids().any(|&i| i == PANIC) {
            panic!("told to panic");
        }
        if ids().any(|&i| i == FAIL) {
            return Err("told to fail".into());
        }
        Ok(batch
            .iter()
            .map(|p| vec![p.members[0].ids.len() as f64])
            .collect())
    }

    fn response_tokens(&self, response: &Text) -> Option<usize> {
        Some(response.word_len())
    }

    fn members(&self) -> Vec<MemberInfo> {
        vec![]
    }

    fn name(&self) -> String {
        "words".into()
    }
}

struct Running {
    base: String,
    metrics: Arc<Metrics>,
    engine: Arc<Words>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: tokio::runtime::Runtime,
    done: Option<tokio::task::JoinHandle<std::io::Result<Arc<Metrics>>>>,
}

impl Running {
    /// Stops the server (graceful) and waits for it.
    fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let done = self.done.take().unwrap();
        self.runtime.block_on(done).unwrap().unwrap();
    }
}

fn start(config: ServeConfig, delay_ms: u64) -> Running {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = Arc::new(Words {
        max_len: 16,
        delay: Duration::from_millis(delay_ms),
        largest_batch: AtomicUsize::new(0),
    });
    let server = Server::start(engine.clone(), config).unwrap();
    let metrics = server.metrics();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = runtime.spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    Running {
        base,
        metrics,
        engine,
        stop: Some(tx),
        runtime,
        done: Some(done),
    }
}

/// Status, JSON body and `Retry-After` of a POST.
fn post(url: &str, body: &str, key: Option<&str>) -> (u16, Value, Option<String>) {
    let mut req = ureq::post(url).set("Content-Type", "application/json");
    if let Some(k) = key {
        req = req.set("Authorization", &format!("Bearer {k}"));
    }
    let resp = match req.send_string(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{url}: {e}"),
    };
    let status = resp.status();
    let retry = resp.header("Retry-After").map(str::to_owned);
    (status, resp.into_json().unwrap(), retry)
}

fn items(texts: &[&str]) -> String {
    let items: Vec<Value> = texts
        .iter()
        .map(|t| json!({"prompt": "p q", "response": t}))
        .collect();
    json!({ "items": items }).to_string()
}

#[test]
fn bad_inputs_get_their_status_and_a_message_naming_the_field() {
    let config = ServeConfig {
        max_client_batch: 3,
        max_body_bytes: 1000,
        ..Default::default()
    };
    let s = start(config, 0);
    let url = format!("{}/v1/score", s.base);
    let cases: Vec<(String, u16, &str, &str)> = vec![
        ("{not json".into(), 400, "invalid_json", "invalid JSON"),
        ("[1]".into(), 422, "validation", "should be a JSON object"),
        (r#"{"items": []}"#.into(), 422, "validation", "`items` is empty"),
        (items(&["a", "b", "c", "d"]), 422, "validation", "more than --max-client-batch 3"),
        (r#"{"items": [{"response": "a"}, {"response": 5}]}"#.into(), 422, "validation",
            "items[1]: field `response` should be a string or a list of {role, content} messages, found a number"),
        (r#"{"items": [{"prompt": "a"}]}"#.into(), 422, "validation", "items[0]: missing field `response`"),
        (r#"{"items": [{"response": "a", "extra": 1}]}"#.into(), 422, "validation", "items[0]: unknown field `extra`"),
        (r#"{"itemz": []}"#.into(), 422, "validation", "unknown field `itemz`"),
        (r#"{"items": [{"response": "a"}], "return_members": "yes"}"#.into(), 422, "validation", "`return_members` should be a boolean"),
        (format!(r#"{{"items": [{{"response": "{}"}}]}}"#, "x".repeat(2000)), 413, "payload_too_large", "--max-body-bytes"),
    ];
    for (body, status, kind, message) in cases {
        let (got, v, _) = post(&url, &body, None);
        assert_eq!(got, status, "{body:.80}: {v}");
        assert_eq!(v["error_type"], kind, "{body:.80}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(message),
            "{body:.80}: {v}"
        );
    }
    // Bytes that are not UTF-8 inside the second item's response.
    let mut body = br#"{"items": [{"response": "ok"}, {"response": "bad "#.to_vec();
    body.extend([0xff, 0xfe]);
    body.extend(br#""}]}"#);
    let resp = match ureq::post(&url).send_bytes(&body) {
        Err(ureq::Error::Status(_, r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(resp.status(), 422);
    let v: Value = resp.into_json().unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("items[1].response: the body is not valid UTF-8"),
        "{v}"
    );
    // The other protocols name their fields too.
    let (st, v, _) = post(
        &format!("{}/get_reward", s.base),
        r#"{"query": ["a", 3]}"#,
        None,
    );
    assert_eq!(
        (st, v["error"].as_str().unwrap()),
        (422, "query[1] should be a string, found a number")
    );
    let (st, v, _) = post(
        &format!("{}/get_reward", s.base),
        r#"{"query": ["p a"], "prompts": ["q"]}"#,
        None,
    );
    assert_eq!(st, 422, "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("query[0] does not start with prompts[0]"));
    let (st, v, _) = post(&format!("{}/classify", s.base), r#"{"input": 1}"#, None);
    assert_eq!(st, 422, "{v}");
    let (st, v, _) = post(
        &format!("{}/predict", s.base),
        r#"{"inputs": [["a", 1]]}"#,
        None,
    );
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("inputs[0] should be"),
        "{v}"
    );
    // Nothing reached the model.
    assert_eq!(s.metrics.sequences(), 0);
    s.stop();
}

#[test]
fn over_long_inputs_are_cut_and_flagged_or_refused() {
    let s = start(ServeConfig::default(), 0);
    let long = "w ".repeat(20); // 20 words, the limit is 16
    let (st, v, _) = post(
        &format!("{}/v1/score", s.base),
        &items(&["a b", &long]),
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["scores"], json!([4.0, 16.0]));
    assert_eq!(v["truncated"], json!([false, true]));
    // TEI's per-request `truncate: false` refuses it, naming the item.
    let body = json!({"inputs": [["p", "a"], ["p", long]], "truncate": false}).to_string();
    let (st, v, _) = post(&format!("{}/predict", s.base), &body, None);
    assert_eq!(st, 422, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("item 1: "), "{v}");
    s.stop();
    let s = start(
        ServeConfig {
            truncate: false,
            ..Default::default()
        },
        0,
    );
    let (st, v, _) = post(
        &format!("{}/v1/score", s.base),
        &items(&["a b", &long]),
        None,
    );
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("item 1: 16 tokens, longer than the model's length"),
        "{v}"
    );
    s.stop();
}

#[test]
fn a_failing_batch_answers_500_and_the_server_goes_on() {
    let s = start(ServeConfig::default(), 0);
    let url = format!("{}/v1/score", s.base);
    for marker in ["FAIL", "PANIC"] {
        let (st, v, _) = post(&url, &items(&["a", &format!("b {marker}")]), None);
        assert_eq!(st, 500, "{v}");
        assert_eq!(v["error_type"], "backend");
        let (st, v, _) = post(&url, &items(&["a b c"]), None);
        assert_eq!(
            (st, v["scores"].clone()),
            (200, json!([5.0])),
            "after {marker}"
        );
    }
    assert_eq!(s.metrics.queue_items(), 0);
    s.stop();
}

#[test]
fn over_the_concurrency_limit_is_429_with_retry_after() {
    let config = ServeConfig {
        max_concurrent_requests: 2,
        ..Default::default()
    };
    let s = start(config, 50);
    let url = format!("{}/v1/score", s.base);
    let answers: Vec<(u16, Value, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| post(&url, &items(&["a"]), None)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let busy: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert_eq!(ok + busy.len(), 20, "{answers:?}");
    assert!(
        ok >= 1 && !busy.is_empty(),
        "{ok} answered, {} refused",
        busy.len()
    );
    for (_, v, retry) in &busy {
        assert_eq!(v["error_type"], "overloaded");
        assert_eq!(retry.as_deref(), Some("1"));
    }
    assert_eq!(s.metrics.sequences() as usize, ok);
    let (st, _, _) = post(&url, &items(&["a"]), None);
    assert_eq!(st, 200);
    s.stop();
}

#[test]
fn batches_respect_the_item_limit_and_answer_each_request_its_own_scores() {
    let config = ServeConfig {
        max_batch_items: 4,
        max_wait_ms: 20,
        ..Default::default()
    };
    let s = start(config, 5);
    let url = format!("{}/v1/score", s.base);
    std::thread::scope(|scope| {
        for c in 0..16usize {
            let url = &url;
            scope.spawn(move || {
                let texts: Vec<String> = (0..3).map(|k| "w ".repeat(1 + (c + k) % 9)).collect();
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let (st, v, _) = post(url, &items(&refs), None);
                assert_eq!(st, 200, "{v}");
                let want: Vec<f64> = (0..3).map(|k| (3 + (c + k) % 9) as f64).collect();
                assert_eq!(v["scores"], json!(want), "client {c}");
            });
        }
    });
    let largest = s.engine.largest_batch.load(Ordering::SeqCst);
    assert!((2..=4).contains(&largest), "largest batch {largest}");
    s.stop();
}

#[test]
fn a_client_that_disconnects_has_its_queued_work_dropped() {
    let config = ServeConfig {
        max_batch_items: 1,
        ..Default::default()
    };
    let s = start(config, 300);
    let url = format!("{}/v1/score", s.base);
    std::thread::scope(|scope| {
        // Two items of 300 ms each keep the model thread busy.
        let busy = scope.spawn(|| post(&url, &items(&["a", "b"]), None));
        std::thread::sleep(Duration::from_millis(100));
        // A client sends five items and goes away while they wait.
        let addr = s.base.trim_start_matches("http://");
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        let body = items(&["c", "d", "e", "f", "g"]);
        write!(
            conn,
            "POST /v1/score HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(conn);
        let (st, v, _) = busy.join().unwrap();
        assert_eq!((st, v["scores"].clone()), (200, json!([3.0, 3.0])));
    });
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(s.metrics.dropped(), 5);
    assert_eq!(
        s.metrics.sequences(),
        2,
        "the gone client's items were computed"
    );
    assert_eq!(
        s.metrics.queue_items(),
        0,
        "the queue gauge counts what is left"
    );
    s.stop();
}

#[test]
fn an_api_key_guards_every_endpoint_but_health() {
    let config = ServeConfig {
        api_key: Some("sekrit".into()),
        ..Default::default()
    };
    let s = start(config, 0);
    let url = format!("{}/v1/score", s.base);
    let (st, v, _) = post(&url, &items(&["a"]), None);
    assert_eq!((st, v["error_type"].as_str()), (401, Some("unauthorized")));
    let (st, _, _) = post(&url, &items(&["a"]), Some("wrong"));
    assert_eq!(st, 401);
    let (st, _, _) = post(&url, &items(&["a"]), Some("sekrit"));
    assert_eq!(st, 200);
    for path in ["/info", "/metrics", "/v1/monitor", "/openapi.json"] {
        let e = ureq::get(&format!("{}{path}", s.base)).call().unwrap_err();
        assert!(matches!(e, ureq::Error::Status(401, _)), "{path}: {e}");
    }
    assert_eq!(
        ureq::get(&format!("{}/health", s.base))
            .call()
            .unwrap()
            .status(),
        200
    );
    s.stop();
}

#[test]
fn metrics_monitor_info_and_openapi_describe_the_server() {
    let s = start(ServeConfig::default(), 0);
    let url = format!("{}/v1/score", s.base);
    for _ in 0..3 {
        assert_eq!(post(&url, &items(&["a b", "c"]), None).0, 200);
    }
    let text = ureq::get(&format!("{}/metrics", s.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        text.contains("rewardkit_requests_total{endpoint=\"/v1/score\",status=\"200\"} 3"),
        "{text}"
    );
    assert!(text.contains("rewardkit_sequences_total 6"), "{text}");
    assert!(
        text.contains("rewardkit_request_duration_seconds_count{endpoint=\"/v1/score\"} 3"),
        "{text}"
    );
    assert!(text.contains("rewardkit_monitor_window_items 6"), "{text}");
    let m: Value = ureq::get(&format!("{}/v1/monitor", s.base))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(m["n"], 6);
    assert_eq!(m["features"].as_array().unwrap().len(), 6);
    let doc: Value = ureq::get(&format!("{}/openapi.json", s.base))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    for path in [
        "/v1/score",
        "/get_reward",
        "/classify",
        "/predict",
        "/health",
        "/info",
        "/metrics",
        "/v1/monitor",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["ScoreResponse"].is_object());
    s.stop();
}
