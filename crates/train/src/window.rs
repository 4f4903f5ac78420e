//! The statistics of one logging window of training: what a `metrics.jsonl` line reports.

use std::collections::BTreeMap;
use std::time::Instant;

use rewardkit_eval::{Metric, ScoredPair};

/// Accumulates the pairs, losses, tokens and timings of the steps since the last log line.
/// It takes the training pairs' gaps and labels ([`Self::update_target`]; as a [`Metric`], a
/// scored pair's tie flag and soft label): accuracy and the Bradley-Terry weight |σ(Δ) − p| per
/// pair. The loss, token counts and timings come through their own methods.
#[derive(Debug, Clone)]
pub struct TrainWindow {
    pairs: usize,
    /// Pairs with a preference (not ties), which accuracy counts over.
    decided: usize,
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
    /// Mean |σ(Δ) − p| (σ(−Δ) for a hard label).
    pub mean_grad_weight: f64,
    /// Pairs per tenth of |σ(Δ) − p| ∈ [0, 1].
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
            decided: 0,
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

    /// Adds a training pair's gap Δ and the probability `p` that chosen is better it trains
    /// towards (1 for a hard label, ½ for a tie, which accuracy leaves out).
    pub fn update_target(&mut self, gap: f64, p: f64) {
        self.pairs += 1;
        if p != 0.5 {
            self.decided += 1;
            self.right += usize::from((gap > 0.0) == (p > 0.5));
        }
        // |σ(Δ) − p| as |(1 − p) − σ(−Δ)|: exactly σ(−Δ) for a hard label.
        let w = ((1.0 - p) - 1.0 / (1.0 + gap.exp())).abs();
        self.grad_weight += w;
        self.hist[((w * 10.0) as usize).min(9)] += 1;
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
        let p = if pair.tie {
            0.5
        } else {
            pair.p_chosen.unwrap_or(1.0)
        };
        self.update_target(pair.gap(), p);
    }

    fn compute(&self) -> WindowStats {
        let n = self.pairs.max(1) as f64;
        WindowStats {
            pairs: self.pairs,
            steps: self.steps,
            loss: self.loss / self.steps.max(1) as f64,
            accuracy: self.right as f64 / self.decided.max(1) as f64,
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

    #[test]
    fn ties_are_left_out_of_accuracy_and_soft_labels_weigh_their_distance() {
        let mut w = TrainWindow::default();
        w.update_target(0.0, 0.5); // a tie the model scores equal: no gradient
        w.update_target(2.0, 0.5); // a tie scored apart: σ(2) − ½ = 0.3808
        w.update_target(1.0, 0.8); // right, |σ(1) − 0.8| = 0.0689
        w.update_target(-1.0, 0.8); // wrong, |σ(−1) − 0.8| = 0.5311
        let s = w.compute();
        assert_eq!(s.pairs, 4);
        assert!((s.accuracy - 0.5).abs() < 1e-12); // 1 of the 2 decided pairs
        let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
        let expected =
            ((sigma(2.0) - 0.5) + (sigma(1.0) - 0.8).abs() + (sigma(-1.0) - 0.8).abs()) / 4.0;
        assert!((s.mean_grad_weight - expected).abs() < 1e-12);
        assert_eq!(s.grad_weight_hist, [2, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
        // Through the Metric interface a tie is p = ½, a soft label its p, and any other pair 1.
        let mut m = TrainWindow::default();
        m.update(&ScoredPair {
            tie: true,
            p_chosen: None,
            ..ScoredPair::new(2.0, 0.0)
        });
        m.update(&ScoredPair::new(2.0, 0.0));
        m.update(&ScoredPair {
            p_chosen: Some(0.8),
            ..ScoredPair::new(1.0, 0.0)
        });
        let s = m.compute();
        assert_eq!(s.accuracy, 1.0);
        let expected = ((sigma(2.0) - 0.5) + sigma(-2.0) + (sigma(1.0) - 0.8).abs()) / 3.0;
        assert!((s.mean_grad_weight - expected).abs() < 1e-12);
    }
}
