//! The statistics of one logging window of training: what a `metrics.jsonl` line reports.

use std::collections::BTreeMap;
use std::time::Instant;

use rewardkit_eval::{Metric, ScoredPair};

/// Accumulates the pairs, losses, tokens and timings of the steps since the last log line.
/// As a [`Metric`] it takes the training pairs' scores (accuracy and the Bradley-Terry weight
/// σ(−Δ) per pair); the loss, token counts and timings come through their own methods.
#[derive(Debug, Clone)]
pub struct TrainWindow {
    pairs: usize,
    right: usize,
    grad_weight: f64,
    hist: [usize; 10],
    loss: f64,
    steps: usize,
    tokens: usize,
    padded: usize,
    forward_s: f64,
    backward_s: f64,
    optimizer_s: f64,
    penalties: BTreeMap<&'static str, f64>,
    started: Instant,
}

/// What a window reports.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    pub pairs: usize,
    pub steps: usize,
    /// Mean loss per optimizer step.
    pub loss: f64,
    pub accuracy: f64,
    /// Mean σ(−Δ).
    pub mean_grad_weight: f64,
    /// Pairs per tenth of σ(−Δ) ∈ [0, 1].
    pub grad_weight_hist: [usize; 10],
    pub tokens: usize,
    pub padded_tokens: usize,
    pub forward_s: f64,
    pub backward_s: f64,
    pub optimizer_s: f64,
    /// Mean value per optimizer step of each penalty term (weighted, as in the loss), by name.
    pub penalties: BTreeMap<&'static str, f64>,
    /// Wall-clock seconds since the window was opened.
    pub seconds: f64,
}

impl Default for TrainWindow {
    fn default() -> Self {
        TrainWindow {
            pairs: 0,
            right: 0,
            grad_weight: 0.0,
            hist: [0; 10],
            loss: 0.0,
            steps: 0,
            tokens: 0,
            padded: 0,
            forward_s: 0.0,
            backward_s: 0.0,
            optimizer_s: 0.0,
            penalties: BTreeMap::new(),
            started: Instant::now(),
        }
    }
}

impl TrainWindow {
    /// Adds a micro-batch's share of the step loss and its token counts (real, and positions
    /// computed including padding).
    pub fn add_batch(&mut self, loss_share: f64, tokens: usize, padded: usize) {
        self.loss += loss_share;
        self.tokens += tokens;
        self.padded += padded;
    }

    /// Adds a micro-batch's share of a penalty term (already in `loss_share`).
    pub fn add_penalty(&mut self, name: &'static str, share: f64) {
        *self.penalties.entry(name).or_default() += share;
    }

    pub fn add_times(&mut self, forward_s: f64, backward_s: f64) {
        self.forward_s += forward_s;
        self.backward_s += backward_s;
    }

    /// Closes an optimizer step that took `optimizer_s` seconds.
    pub fn end_step(&mut self, optimizer_s: f64) {
        self.optimizer_s += optimizer_s;
        self.steps += 1;
    }

    /// Restarts the wall clock without forgetting anything (after an evaluation or a save, whose
    /// time is not training time).
    pub fn restart_clock(&mut self) {
        self.started = Instant::now();
    }
}

impl Metric for TrainWindow {
    type Output = WindowStats;

    fn update(&mut self, pair: &ScoredPair) {
        let gap = pair.gap();
        self.pairs += 1;
        self.right += usize::from(gap > 0.0);
        let w = 1.0 / (1.0 + gap.exp()); // σ(−Δ)
        self.grad_weight += w;
        self.hist[((w * 10.0) as usize).min(9)] += 1;
    }

    fn compute(&self) -> WindowStats {
        let n = self.pairs.max(1) as f64;
        WindowStats {
            pairs: self.pairs,
            steps: self.steps,
            loss: self.loss / self.steps.max(1) as f64,
            accuracy: self.right as f64 / n,
            mean_grad_weight: self.grad_weight / n,
            grad_weight_hist: self.hist,
            tokens: self.tokens,
            padded_tokens: self.padded,
            forward_s: self.forward_s,
            backward_s: self.backward_s,
            optimizer_s: self.optimizer_s,
            penalties: self
                .penalties
                .iter()
                .map(|(&k, &v)| (k, v / self.steps.max(1) as f64))
                .collect(),
            seconds: self.started.elapsed().as_secs_f64().max(1e-9),
        }
    }

    fn clear(&mut self) {
        *self = TrainWindow::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_what_it_saw_and_clears() {
        let mut w = TrainWindow::default();
        // Gaps 0 (σ(−0) = 0.5, wrong: equal scores), 2 (right, σ(−2) = 0.1192) and −2 (0.8808).
        w.update_all(&[
            ScoredPair::new(1.0, 1.0),
            ScoredPair::new(2.0, 0.0),
            ScoredPair::new(0.0, 2.0),
        ]);
        w.add_batch(0.25, 10, 16);
        w.add_batch(0.25, 6, 16);
        w.end_step(0.5);
        w.add_batch(1.0, 1, 2);
        w.add_penalty("honesty", 0.5);
        w.end_step(0.5);
        let s = w.compute();
        assert_eq!(
            (s.pairs, s.steps, s.tokens, s.padded_tokens),
            (3, 2, 17, 34)
        );
        assert!((s.loss - 0.75).abs() < 1e-12);
        assert!((s.accuracy - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.mean_grad_weight - 0.5).abs() < 1e-12); // σ(−2) + σ(2) = 1
        assert_eq!(s.grad_weight_hist, [0, 1, 0, 0, 0, 1, 0, 0, 1, 0]);
        assert_eq!(s.optimizer_s, 1.0);
        assert_eq!(s.penalties["honesty"], 0.25); // one term of 0.5 over two steps
        w.clear();
        let c = w.compute();
        assert_eq!((c.pairs, c.steps, c.tokens), (0, 0, 0));
        assert_eq!(c.grad_weight_hist, [0; 10]);
        assert!(c.penalties.is_empty());
    }
}
