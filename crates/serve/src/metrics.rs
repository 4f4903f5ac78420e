//! Counters of what the server did, rendered as Prometheus text by [`Metrics::render`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the request latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds of the batch-size histogram (items per forward pass).
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, &b) in self.counts.iter_mut().zip(bounds) {
            if v <= b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in bounds.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

/// Everything `/metrics` exports (the monitor's figures are added by the caller).
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    batch_items: Mutex<Histogram>,
    queue_items: AtomicI64,
    batches: AtomicU64,
    failed_batches: AtomicU64,
    sequences: AtomicU64,
    tokens: AtomicU64,
    padded_tokens: AtomicU64,
    compute_us: AtomicU64,
    truncated: AtomicU64,
    dropped: AtomicU64,
}

impl Metrics {
    /// One answered request.
    pub fn request(&self, endpoint: &str, status: u16, elapsed: Duration) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((endpoint.to_owned(), status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            l.entry(endpoint.to_owned())
                .or_default()
                .observe(&LATENCY_BUCKETS, elapsed.as_secs_f64());
        }
    }

    /// Requests answered so far with `status` on `endpoint`.
    pub fn requests(&self, endpoint: &str, status: u16) -> u64 {
        self.requests
            .lock()
            .ok()
            .and_then(|r| r.get(&(endpoint.to_owned(), status)).copied())
            .unwrap_or(0)
    }

    pub(crate) fn queue_items_add(&self, n: i64) {
        self.queue_items.fetch_add(n, Ordering::Relaxed);
    }

    /// Items waiting or being scored.
    pub fn queue_items(&self) -> i64 {
        self.queue_items.load(Ordering::Relaxed)
    }

    pub(crate) fn dropped_items(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Items never computed because their client had gone.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sequences the model computed (successful batches).
    pub fn sequences(&self) -> u64 {
        self.sequences.load(Ordering::Relaxed)
    }

    pub(crate) fn truncated(&self, n: usize) {
        self.truncated.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn batch(&self, items: usize, real: usize, padded: usize, took: Duration, ok: bool) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed_batches.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Ok(mut h) = self.batch_items.lock() {
            h.observe(&BATCH_BUCKETS, items as f64);
        }
        self.sequences.fetch_add(items as u64, Ordering::Relaxed);
        self.tokens.fetch_add(real as u64, Ordering::Relaxed);
        self.padded_tokens
            .fetch_add(padded as u64, Ordering::Relaxed);
        self.compute_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "rewardkit_requests_total",
            "counter",
            "Requests answered, by endpoint and HTTP status.",
        );
        if let Ok(r) = self.requests.lock() {
            for ((e, s), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "rewardkit_requests_total{{endpoint=\"{e}\",status=\"{s}\"}} {n}"
                );
            }
        }
        head(
            &mut out,
            "rewardkit_request_duration_seconds",
            "histogram",
            "Request latency, by endpoint.",
        );
        if let Ok(l) = self.latency.lock() {
            for (e, h) in l.iter() {
                let labels = format!("endpoint=\"{e}\"");
                h.render(
                    &mut out,
                    "rewardkit_request_duration_seconds",
                    &labels,
                    &LATENCY_BUCKETS,
                );
            }
        }
        head(
            &mut out,
            "rewardkit_queue_items",
            "gauge",
            "Items queued or being scored.",
        );
        let _ = writeln!(out, "rewardkit_queue_items {}", self.queue_items());
        head(
            &mut out,
            "rewardkit_batch_items",
            "histogram",
            "Items per forward pass.",
        );
        if let Ok(h) = self.batch_items.lock() {
            h.render(&mut out, "rewardkit_batch_items", "", &BATCH_BUCKETS);
        }
        let counters = [
            (
                "rewardkit_batches_total",
                "Batches run by the model thread.",
                get(&self.batches),
            ),
            (
                "rewardkit_batches_failed_total",
                "Batches the model failed on (answered 500).",
                get(&self.failed_batches),
            ),
            (
                "rewardkit_sequences_total",
                "Sequences scored (per ensemble member once).",
                get(&self.sequences),
            ),
            (
                "rewardkit_tokens_total",
                "Real tokens scored (the longest member's).",
                get(&self.tokens),
            ),
            (
                "rewardkit_padded_tokens_total",
                "Positions computed, padding included.",
                get(&self.padded_tokens),
            ),
            (
                "rewardkit_truncated_total",
                "Items cut to the model's length.",
                get(&self.truncated),
            ),
            (
                "rewardkit_dropped_items_total",
                "Queued items dropped because their client had gone.",
                get(&self.dropped),
            ),
        ];
        for (name, help, v) in counters {
            head(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {v}");
        }
        let secs = get(&self.compute_us) as f64 / 1e6;
        head(
            &mut out,
            "rewardkit_compute_seconds_total",
            "counter",
            "Seconds the model thread spent scoring.",
        );
        let _ = writeln!(out, "rewardkit_compute_seconds_total {secs}");
        head(
            &mut out,
            "rewardkit_tokens_per_second",
            "gauge",
            "Real tokens per second of scoring time.",
        );
        let tps = if secs > 0.0 {
            get(&self.tokens) as f64 / secs
        } else {
            0.0
        };
        let _ = writeln!(out, "rewardkit_tokens_per_second {tps}");
        out
    }
}
