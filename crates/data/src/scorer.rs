//! The one thing every consumer of a reward model needs: score (prompt, response) pairs.

use crate::types::{PreferencePair, Text};

/// Something that gives a scalar reward to a response to a prompt: a trained checkpoint, a file of
/// precomputed scores, or a heuristic baseline. Audits and evaluation depend only on this trait, so
/// a model trained anywhere can be evaluated and audited.
pub trait Scorer {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Scores a batch; the result has one score per item, in order.
    fn score_batch(&self, items: &[(&Text, &Text)]) -> Result<Vec<f64>, Self::Error>;

    /// A short human-readable name, used in reports.
    fn name(&self) -> String;
}

/// Scores of one preference pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairScores {
    pub chosen: f64,
    pub rejected: f64,
}

/// Scores every pair with `scorer`, `batch_pairs` pairs (2 × that many texts) at a time.
/// `progress` is called with the number of pairs scored so far.
pub fn score_pairs<S: Scorer>(
    scorer: &S,
    pairs: &[PreferencePair],
    batch_pairs: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<PairScores>, S::Error> {
    let batch_pairs = batch_pairs.max(1);
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_pairs) {
        let mut items = Vec::with_capacity(chunk.len() * 2);
        for p in chunk {
            items.push((&p.prompt, &p.chosen));
            items.push((&p.prompt, &p.rejected));
        }
        let scores = scorer.score_batch(&items)?;
        assert_eq!(
            scores.len(),
            items.len(),
            "scorer {} broke the Scorer contract: {} scores for {} items",
            scorer.name(),
            scores.len(),
            items.len()
        );
        for s in scores.chunks_exact(2) {
            out.push(PairScores {
                chosen: s[0],
                rejected: s[1],
            });
        }
        progress(out.len());
    }
    Ok(out)
}
