//! The bounded queue and the one model thread (the design of text-embeddings-inference): request
//! handlers push an [`Entry`] (prepared items and a oneshot channel for the answer); the model
//! thread forms batches by token budget from the oldest waiting items, sorts each batch by
//! length, scores it and answers every request through its own channel once all its items are
//! scored. A request whose client has gone (its receiver dropped) is skipped, not computed. A
//! failing (or panicking) batch answers its requests with a `backend` error and the thread
//! goes on.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::engine::{Engine, Prepared};
use crate::error::{ErrorKind, ServeError};
use crate::metrics::Metrics;

/// Per item, one score per ensemble member.
pub type MemberScores = Vec<Vec<f64>>;

/// One request's work.
pub struct Entry {
    pub items: Vec<Prepared>,
    pub reply: oneshot::Sender<Result<MemberScores, ServeError>>,
}

/// How the model thread forms batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Tokens per batch at most, padded (longest item × items) unless `packed`; a single longer
    /// item still runs.
    pub max_tokens: usize,
    /// Whether the engine packs a batch without padding, so that it costs its items' tokens.
    pub packed: bool,
    pub max_items: usize,
    /// How long to wait for more work while a batch is not full.
    pub max_wait: Duration,
}

/// The handlers' side of the queue.
#[derive(Clone)]
pub struct QueueHandle {
    tx: SyncSender<Entry>,
}

impl QueueHandle {
    /// Queues an entry; a full queue is `overloaded` (the concurrency limit normally answers
    /// first: the queue holds as many entries as requests may be in flight).
    pub fn push(&self, entry: Entry) -> Result<(), ServeError> {
        self.tx.try_send(entry).map_err(|e| match e {
            TrySendError::Full(_) => ServeError::new(ErrorKind::Overloaded, "the queue is full"),
            TrySendError::Disconnected(_) => {
                ServeError::new(ErrorKind::Unavailable, "the model thread has stopped")
            }
        })
    }
}

/// Starts the model thread with a queue of `capacity` entries. The thread ends once every
/// [`QueueHandle`] is dropped and the work already queued is answered.
pub fn start(
    engine: Arc<dyn Engine>,
    limits: BatchLimits,
    capacity: usize,
    metrics: Arc<Metrics>,
) -> std::io::Result<(QueueHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
    let thread = std::thread::Builder::new()
        .name("rewardkit-model".into())
        .spawn(move || ModelThread::new(engine, limits, metrics).run(rx))?;
    Ok((QueueHandle { tx }, thread))
}

/// A request being worked on: the next item to schedule and the scores so far.
struct Pending {
    entry: Entry,
    next: usize,
    scores: Vec<Option<Vec<f64>>>,
    done: usize,
    /// A batch holding one of its items failed: it is answered with the error.
    failed: bool,
}

struct ModelThread {
    engine: Arc<dyn Engine>,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
    pending: VecDeque<Pending>,
    /// Items of `pending` not yet scheduled, and their tokens.
    waiting_items: usize,
    waiting_tokens: usize,
}

impl ModelThread {
    fn new(engine: Arc<dyn Engine>, limits: BatchLimits, metrics: Arc<Metrics>) -> Self {
        Self {
            engine,
            limits,
            metrics,
            pending: VecDeque::new(),
            waiting_items: 0,
            waiting_tokens: 0,
        }
    }

    fn run(mut self, rx: Receiver<Entry>) {
        let mut open = true;
        while open || !self.pending.is_empty() {
            if self.pending.is_empty() {
                match rx.recv() {
                    Ok(entry) => self.add(entry),
                    Err(_) => break,
                }
            }
            open = self.fill(&rx);
            self.drop_abandoned();
            if let Some(batch) = self.next_batch() {
                self.run_batch(batch);
            }
        }
    }

    fn add(&mut self, entry: Entry) {
        let n = entry.items.len();
        self.waiting_items += n;
        self.waiting_tokens += entry.items.iter().map(|p| p.tokens).sum::<usize>();
        self.metrics.queue_items_add(n as i64);
        self.pending.push_back(Pending {
            scores: vec![None; n],
            entry,
            next: 0,
            done: 0,
            failed: false,
        });
    }

    /// Takes what is queued, waiting up to `max_wait` while the budget is not full. Returns
    /// whether the queue is still open.
    fn fill(&mut self, rx: &Receiver<Entry>) -> bool {
        let deadline = Instant::now() + self.limits.max_wait;
        loop {
            let full = self.waiting_items >= self.limits.max_items
                || self.waiting_tokens >= self.limits.max_tokens;
            let wait = deadline.saturating_duration_since(Instant::now());
            let got = if full || wait.is_zero() {
                rx.try_recv().map_err(|e| match e {
                    std::sync::mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    std::sync::mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                rx.recv_timeout(wait)
            };
            match got {
                Ok(entry) => self.add(entry),
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// Requests whose client is gone: their unscheduled items are dropped.
    fn drop_abandoned(&mut self) {
        let mut kept = VecDeque::with_capacity(self.pending.len());
        for p in self.pending.drain(..) {
            if p.entry.reply.is_closed() {
                let left = &p.entry.items[p.next..];
                self.waiting_items -= left.len();
                self.waiting_tokens -= left.iter().map(|i| i.tokens).sum::<usize>();
                // Items already scored stay computed; the rest never are.
                self.metrics.dropped_items(p.entry.items.len() - p.done);
                self.metrics.queue_items_add(-(p.entry.items.len() as i64));
            } else {
                kept.push_back(p);
            }
        }
        self.pending = kept;
    }

    /// The oldest unscheduled items within the budget: (request, item) indices.
    fn next_batch(&mut self) -> Option<Vec<(usize, usize)>> {
        let mut batch = Vec::new();
        let (mut longest, mut tokens) = (0, 0);
        'requests: for (r, p) in self.pending.iter_mut().enumerate() {
            while p.next < p.entry.items.len() {
                let t = p.entry.items[p.next].tokens;
                let cost = if self.limits.packed {
                    tokens + t
                } else {
                    longest.max(t) * (batch.len() + 1)
                };
                if !batch.is_empty()
                    && (batch.len() >= self.limits.max_items || cost > self.limits.max_tokens)
                {
                    break 'requests;
                }
                longest = longest.max(t);
                tokens += t;
                batch.push((r, p.next));
                self.waiting_items -= 1;
                self.waiting_tokens -= t;
                p.next += 1;
            }
        }
        (!batch.is_empty()).then_some(batch)
    }

    fn run_batch(&mut self, mut batch: Vec<(usize, usize)>) {
        batch.sort_by_key(|&(r, i)| self.pending[r].entry.items[i].tokens);
        let items: Vec<&Prepared> = batch
            .iter()
            .map(|&(r, i)| &self.pending[r].entry.items[i])
            .collect();
        let started = Instant::now();
        let engine = &self.engine;
        let result = catch_unwind(AssertUnwindSafe(|| engine.score(&items)))
            .unwrap_or_else(|_| Err("the model panicked on this batch".into()))
            .and_then(|scores| {
                if scores.len() == items.len() {
                    Ok(scores)
                } else {
                    Err(format!("{} scores for {} items", scores.len(), items.len()))
                }
            });
        let longest = items.iter().map(|p| p.tokens).max().unwrap_or(0);
        let real: usize = items.iter().map(|p| p.tokens).sum();
        self.metrics.batch(
            items.len(),
            real,
            longest * items.len(),
            started.elapsed(),
            result.is_ok(),
        );
        match result {
            Ok(scores) => {
                for ((r, i), s) in batch.into_iter().zip(scores) {
                    let p = &mut self.pending[r];
                    p.scores[i] = Some(s);
                    p.done += 1;
                }
            }
            Err(message) => {
                let mut failed: Vec<usize> = batch.iter().map(|&(r, _)| r).collect();
                failed.dedup();
                for r in failed {
                    let p = &mut self.pending[r];
                    // Its items not yet scheduled are never computed.
                    let left = &p.entry.items[p.next..];
                    self.waiting_items -= left.len();
                    self.waiting_tokens -= left.iter().map(|i| i.tokens).sum::<usize>();
                    p.next = p.entry.items.len();
                    p.failed = true;
                }
                self.answer_failed(&message);
            }
        }
        self.answer_complete();
    }

    fn answer_failed(&mut self, message: &str) {
        let (failed, kept): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|p| p.failed);
        self.pending = kept.into();
        for p in failed {
            self.metrics.queue_items_add(-(p.entry.items.len() as i64));
            let err = ServeError::new(ErrorKind::Model, format!("scoring failed: {message}"));
            let _ = p.entry.reply.send(Err(err));
        }
    }

    fn answer_complete(&mut self) {
        let (complete, kept): (Vec<_>, Vec<_>) = self
            .pending
            .drain(..)
            .partition(|p| p.done == p.entry.items.len());
        self.pending = kept.into();
        for p in complete {
            self.metrics.queue_items_add(-(p.entry.items.len() as i64));
            let scores: MemberScores = p.scores.into_iter().flatten().collect();
            // A client gone meanwhile is no error of the server's.
            let _ = p.entry.reply.send(Ok(scores));
        }
    }
}
