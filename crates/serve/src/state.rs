//! What every handler shares, and the one path all scoring endpoints take: a concurrency
//! permit (or 429), tokenisation and validation, the queue, the answer, the monitor.

use std::sync::{Arc, Mutex};

use rewardkit_data::Text;
use tokio::sync::{oneshot, Semaphore};

use crate::config::ServeConfig;
use crate::engine::Engine;
use crate::error::{ErrorKind, ServeError};
use crate::metrics::Metrics;
use crate::monitor::{self, Monitor, MonitorReport};
use crate::queue::{Entry, QueueHandle};
use rewardkit_audit::FeatureExtractor;

pub struct AppState {
    pub engine: Arc<dyn Engine>,
    pub config: ServeConfig,
    pub queue: QueueHandle,
    pub metrics: Arc<Metrics>,
    pub monitor: Mutex<Monitor>,
    pub extractor: FeatureExtractor,
    pub permits: Arc<Semaphore>,
}

/// Scores of a request's items.
pub struct Scored {
    /// Combined reward per item.
    pub scores: Vec<f64>,
    /// Per item, each member's score.
    pub members: Vec<Vec<f64>>,
    pub truncated: Vec<bool>,
    /// Tokens of the inputs (the longest member's encoding of each item, summed).
    pub tokens: usize,
}

impl AppState {
    /// Scores `items` (prompt, response); `truncate` overrides `--truncate` for this request.
    /// Dropping the returned future (a client that disconnects) drops its queued work.
    pub async fn score(
        &self,
        items: Vec<(Text, Text)>,
        truncate: Option<bool>,
    ) -> Result<Scored, ServeError> {
        let _permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            ServeError::new(
                ErrorKind::Overloaded,
                format!(
                    "{} requests in flight (--max-concurrent-requests); retry later",
                    self.config.max_concurrent_requests
                ),
            )
        })?;
        let truncate = truncate.unwrap_or(self.config.truncate);
        let mut prepared = Vec::with_capacity(items.len());
        for (i, (p, r)) in items.iter().enumerate() {
            let item = self
                .engine
                .prepare(p, r)
                .map_err(|e| ServeError::validation(format!("item {i}: {e}")))?;
            if item.truncated && !truncate {
                return Err(ServeError::validation(format!(
                    "item {i}: {} tokens, longer than the model's length (and truncation is off)",
                    item.members.iter().map(|e| e.ids.len()).max().unwrap_or(0)
                )));
            }
            prepared.push(item);
        }
        let truncated: Vec<bool> = prepared.iter().map(|p| p.truncated).collect();
        let tokens = prepared.iter().map(|p| p.tokens).sum();
        let (reply, rx) = oneshot::channel();
        self.queue.push(Entry {
            items: prepared,
            reply,
        })?;
        let members = rx.await.map_err(|_| {
            ServeError::new(
                ErrorKind::Unavailable,
                "the model thread stopped before answering",
            )
        })??;
        let scores: Vec<f64> = members
            .iter()
            .map(|m| self.config.combine.apply(m))
            .collect();
        self.metrics
            .truncated(truncated.iter().filter(|&&t| t).count());
        self.observe(&items, &scores);
        Ok(Scored {
            scores,
            members,
            truncated,
            tokens,
        })
    }

    /// Adds served items to the monitor (features computed before taking its lock).
    fn observe(&self, items: &[(Text, Text)], scores: &[f64]) {
        if self.config.monitor_window == 0 {
            return;
        }
        let observed: Vec<_> = items
            .iter()
            .map(|(p, r)| {
                let tokens = self.engine.response_tokens(r);
                monitor::features(&self.extractor, &p.render(), &r.render(), tokens)
            })
            .collect();
        if let Ok(mut m) = self.monitor.lock() {
            for (f, &s) in observed.into_iter().zip(scores) {
                m.record(f, s);
            }
        }
    }

    /// The monitor's figures now; `intervals` adds bootstrap intervals.
    pub fn monitor_report(&self, intervals: bool) -> Option<MonitorReport> {
        self.monitor.lock().ok().map(|m| m.report(intervals))
    }
}
