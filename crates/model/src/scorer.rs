//! Scoring (prompt, response) pairs with a loaded reward model, in length-sorted batches.

use std::sync::atomic::{AtomicUsize, Ordering};

use rewardkit_data::{Scorer, Text};
use rewardkit_tokenize::{length_buckets, pad_batch, Encoded, PaddingSide};

use crate::checkpoint::LoadedModel;
use crate::error::{ModelError, Result};
use crate::nn::Mode;

impl LoadedModel {
    /// Encodes one (prompt, response) with the model's tokenizer and length limit.
    pub fn encode(&self, prompt: &Text, response: &Text) -> Result<Encoded> {
        Ok(self
            .tokenizer
            .encode(prompt, response, self.meta.max_length)?)
    }

    /// Scores already-encoded inputs, `batch_size` sequences per forward pass, sorted by length
    /// so that little compute goes to padding; scores come back in input order.
    pub fn score_encoded(&self, inputs: &[Encoded], batch_size: usize) -> Result<Vec<f64>> {
        let lengths: Vec<usize> = inputs.iter().map(|e| e.ids.len()).collect();
        let mut scores = vec![0.0; inputs.len()];
        for bucket in length_buckets(&lengths, batch_size) {
            let rows: Vec<&Encoded> = bucket.iter().map(|&i| &inputs[i]).collect();
            let batch = pad_batch(&rows, self.tokenizer.pad_id(), PaddingSide::Right);
            let out: Vec<f32> = self.model.forward(&batch, Mode::Eval)?.to_vec1()?;
            self.scored.add(&batch.attention_mask, rows.len());
            for (&i, s) in bucket.iter().zip(out) {
                scores[i] = f64::from(s);
            }
        }
        Ok(scores)
    }
}

/// Running totals of what scoring computed: sequences, real tokens, and positions including
/// padding (their ratio is the share of work that went to padding).
#[derive(Debug, Default)]
pub struct ScoringCounters {
    sequences: AtomicUsize,
    tokens: AtomicUsize,
    padded_tokens: AtomicUsize,
}

impl ScoringCounters {
    fn add(&self, mask: &[u32], rows: usize) {
        let real = mask.iter().filter(|&&m| m != 0).count();
        self.sequences.fetch_add(rows, Ordering::Relaxed);
        self.tokens.fetch_add(real, Ordering::Relaxed);
        self.padded_tokens.fetch_add(mask.len(), Ordering::Relaxed);
    }

    /// (sequences, real tokens, positions including padding) so far.
    pub fn totals(&self) -> (usize, usize, usize) {
        (
            self.sequences.load(Ordering::Relaxed),
            self.tokens.load(Ordering::Relaxed),
            self.padded_tokens.load(Ordering::Relaxed),
        )
    }
}

/// A loaded model as a [`Scorer`], with its forward batch size.
pub struct ModelScorer<'a> {
    pub model: &'a LoadedModel,
    /// Sequences per forward pass.
    pub batch_size: usize,
}

impl Scorer for ModelScorer<'_> {
    type Error = ModelError;

    fn score_batch(&self, items: &[(&Text, &Text)]) -> Result<Vec<f64>> {
        let inputs = items
            .iter()
            .map(|(p, r)| self.model.encode(p, r))
            .collect::<Result<Vec<_>>>()?;
        self.model.score_encoded(&inputs, self.batch_size)
    }

    fn name(&self) -> String {
        format!("model:{}", self.model.source.display())
    }
}
