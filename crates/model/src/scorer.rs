//! Scoring (prompt, response) pairs with a loaded reward model: in length-sorted batches of
//! padded rows; or packed without padding, by token budget ([`rewardkit_tokenize::pack`]);
//! and for causal decoders read at the last token, with the responses to one prompt sharing
//! one run whose prompt is computed once ([`rewardkit_tokenize::pack_shared_prefix`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use rewardkit_data::{Scorer, Text};
use rewardkit_tokenize::{
    length_buckets, pack, packed_len, packing_runs, pad_batch, shared_prefix_len,
    token_budget_batches, Batch, Encoded, PaddingSide,
};

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

    /// Encodes responses to one prompt with the same prompt tokens in each
    /// ([`rewardkit_tokenize::RewardTokenizer::encode_group`]: where the longest response
    /// needs the prompt cut, every response's prompt is cut alike).
    pub fn encode_group(&self, prompt: &Text, responses: &[&Text]) -> Result<Vec<Encoded>> {
        Ok(self
            .tokenizer
            .encode_group(prompt, responses, self.meta.max_length)?)
    }

    /// Scores already-encoded inputs, `batch_size` sequences per forward pass, one per row,
    /// sorted by length so that little compute goes to padding; scores come back in input order.
    pub fn score_encoded(&self, inputs: &[Encoded], batch_size: usize) -> Result<Vec<f64>> {
        let lengths: Vec<usize> = inputs.iter().map(|e| e.ids.len()).collect();
        let mut scores = vec![0.0; inputs.len()];
        for bucket in length_buckets(&lengths, batch_size) {
            let rows: Vec<&Encoded> = bucket.iter().map(|&i| &inputs[i]).collect();
            let batch = pad_batch(&rows, self.tokenizer.pad_id(), PaddingSide::Right);
            self.score_into(&batch, &bucket, &mut scores)?;
        }
        Ok(scores)
    }

    /// [`LoadedModel::score_encoded`] with the inputs of each group (indices into `inputs`,
    /// each in one group: the responses to one prompt) packed into rows, their common prefix
    /// computed once; up to `batch_size` sequences per forward pass, rows sorted by packed
    /// length. The scores equal [`LoadedModel::score_encoded`]'s up to rounding. Needs a model
    /// that packs ([`crate::RewardModel::packs`]).
    ///
    /// A group is split where a member's share of a row would cost more than a row of its own
    /// ([`rewardkit_tokenize::packing_runs`]: attention grows with the row, so best-of-n's many
    /// samples of one prompt, or a small model, pack fewer per row).
    pub fn score_encoded_shared(
        &self,
        inputs: &[Encoded],
        groups: &[Vec<usize>],
        batch_size: usize,
    ) -> Result<Vec<f64>> {
        let refs: Vec<&Encoded> = inputs.iter().collect();
        let units = self.shared_units(&refs, groups, batch_size);
        let lengths: Vec<usize> = units.iter().map(|g| packed_len(&refs, g)).collect();
        let mut order: Vec<usize> = (0..units.len()).collect();
        order.sort_by_key(|&g| (std::cmp::Reverse(lengths[g]), g));
        let mut batches: Vec<Vec<Vec<usize>>> = Vec::new();
        let mut start = 0;
        while start < order.len() {
            // Whole groups, up to `batch_size` sequences (at least one group), a row each.
            let mut end = start + 1;
            let mut seqs = units[order[start]].len();
            while end < order.len() && seqs + units[order[end]].len() <= batch_size {
                seqs += units[order[end]].len();
                end += 1;
            }
            batches.push(order[start..end].iter().map(|&u| vec![u]).collect());
            start = end;
        }
        self.score_packed(inputs, &units, &batches, true)
    }

    /// Scores `inputs` packed side by side without padding, up to `max_tokens` tokens a forward
    /// pass (one row; a longer sequence alone), longest first; scores come back in input order
    /// and equal [`LoadedModel::score_encoded`]'s up to rounding. With `groups` (indices into
    /// `inputs`, each in one group: the responses to one prompt) and a model that shares a
    /// prompt ([`crate::RewardModel::shares_prompt`]), each group's common prefix is computed
    /// once, as in [`LoadedModel::score_encoded_shared`].
    pub fn score_encoded_packed(
        &self,
        inputs: &[Encoded],
        groups: Option<&[Vec<usize>]>,
        max_tokens: usize,
    ) -> Result<Vec<f64>> {
        let refs: Vec<&Encoded> = inputs.iter().collect();
        let share = groups.is_some() && self.model.shares_prompt();
        let units: Vec<Vec<usize>> = match groups {
            Some(groups) if share => self.shared_units(&refs, groups, usize::MAX),
            _ => (0..inputs.len()).map(|i| vec![i]).collect(),
        };
        let lengths: Vec<usize> = units
            .iter()
            .map(|u| {
                if share {
                    packed_len(&refs, u)
                } else {
                    refs[u[0]].ids.len()
                }
            })
            .collect();
        let batches: Vec<Vec<Vec<usize>>> = token_budget_batches(&lengths, max_tokens)
            .into_iter()
            .map(|row| vec![row])
            .collect();
        self.score_packed(inputs, &units, &batches, share)
    }

    /// The groups cut into runs worth a row each ([`packing_runs`]), at most `max_members` a run.
    fn shared_units(
        &self,
        refs: &[&Encoded],
        groups: &[Vec<usize>],
        max_members: usize,
    ) -> Vec<Vec<usize>> {
        let per_token = 6.0 * self.model.config().hidden_size() as f64;
        groups
            .iter()
            .flat_map(|g| split_group(refs, g, per_token, max_members))
            .collect()
    }

    /// Scores `units` (each a list of indices into `inputs`: a group that may share a prefix)
    /// as `batches`, each a list of rows, each row a list of units.
    fn score_packed(
        &self,
        inputs: &[Encoded],
        units: &[Vec<usize>],
        batches: &[Vec<Vec<usize>>],
        share_prefix: bool,
    ) -> Result<Vec<f64>> {
        let mut scores = vec![0.0; inputs.len()];
        for rows in batches {
            // The batch's own sequences, numbered in the order they are packed.
            let members: Vec<usize> = rows
                .iter()
                .flatten()
                .flat_map(|&u| units[u].clone())
                .collect();
            let seqs: Vec<&Encoded> = members.iter().map(|&i| &inputs[i]).collect();
            let mut next = 0;
            let local: Vec<Vec<Vec<usize>>> = rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|&u| {
                            next += units[u].len();
                            (next - units[u].len()..next).collect()
                        })
                        .collect()
                })
                .collect();
            let batch = pack(&seqs, &local, share_prefix, self.tokenizer.pad_id());
            self.score_into(&batch, &members, &mut scores)?;
        }
        Ok(scores)
    }

    /// Scores `batch`, whose sequences are `inputs[at[k]]`, into `scores[at[k]]`.
    fn score_into(&self, batch: &Batch, at: &[usize], scores: &mut [f64]) -> Result<()> {
        let out: Vec<f32> = self.model.forward(batch, Mode::Eval)?.to_vec1()?;
        self.scored.add(&batch.attention_mask, batch.sequences());
        for (&i, s) in at.iter().zip(out) {
            scores[i] = f64::from(s);
        }
        Ok(())
    }
}

/// Running totals of what scoring computed: sequences, real tokens, and positions including
/// padding (their ratio is the share of work that went to padding). With a shared prompt, a
/// prompt computed once counts once.
#[derive(Debug, Default)]
pub struct ScoringCounters {
    sequences: AtomicUsize,
    tokens: AtomicUsize,
    padded_tokens: AtomicUsize,
}

impl ScoringCounters {
    fn add(&self, mask: &[u32], sequences: usize) {
        let real = mask.iter().filter(|&&m| m != 0).count();
        self.sequences.fetch_add(sequences, Ordering::Relaxed);
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

/// A loaded model as a [`Scorer`]: `batch_size` sequences per forward pass of padded rows, or
/// ([`ModelScorer::max_batch_tokens`]) sequences packed without padding up to a token budget;
/// and (by default, where the model can) the responses of a batch that share a prompt scored
/// with the prompt computed once.
pub struct ModelScorer<'a> {
    model: &'a LoadedModel,
    batch_size: usize,
    shared_prompt: bool,
    max_batch_tokens: Option<usize>,
}

impl<'a> ModelScorer<'a> {
    /// `batch_size` sequences per forward pass; the shared prompt on where the model packs.
    pub fn new(model: &'a LoadedModel, batch_size: usize) -> Self {
        ModelScorer {
            model,
            batch_size,
            shared_prompt: model.model.shares_prompt(),
            max_batch_tokens: None,
        }
    }

    /// Packs sequences side by side without padding, up to `tokens` a forward pass, instead of
    /// `batch_size` padded rows (`None`: padded rows).
    pub fn max_batch_tokens(mut self, tokens: Option<usize>) -> Self {
        self.max_batch_tokens = tokens.map(|t| t.max(1));
        self
    }

    /// Whether responses to one prompt share a row (ignored where the model does not pack:
    /// encoders, or decoders pooled other than at the last token).
    pub fn shared_prompt(mut self, on: bool) -> Self {
        self.shared_prompt = on && self.model.model.shares_prompt();
        self
    }

    /// Whether responses to one prompt share a row.
    pub fn shares_prompt(&self) -> bool {
        self.shared_prompt
    }
}

impl Scorer for ModelScorer<'_> {
    type Error = ModelError;

    /// Responses to one prompt are encoded with the same prompt tokens (cut alike where one
    /// is too long: [`LoadedModel::encode_group`]), with or without the shared prompt, so both
    /// give the same scores up to rounding.
    fn score_batch(&self, items: &[(&Text, &Text)]) -> Result<Vec<f64>> {
        let groups = prompt_groups(items);
        let mut inputs: Vec<Option<Encoded>> = vec![None; items.len()];
        for g in &groups {
            let responses: Vec<&Text> = g.iter().map(|&i| items[i].1).collect();
            let encoded = self.model.encode_group(items[g[0]].0, &responses)?;
            for (&i, e) in g.iter().zip(encoded) {
                inputs[i] = Some(e);
            }
        }
        let inputs: Vec<Encoded> = inputs.into_iter().flatten().collect();
        if let Some(tokens) = self.max_batch_tokens {
            let groups = self.shared_prompt.then_some(groups.as_slice());
            return self.model.score_encoded_packed(&inputs, groups, tokens);
        }
        if !self.shared_prompt {
            return self.model.score_encoded(&inputs, self.batch_size);
        }
        self.model
            .score_encoded_shared(&inputs, &groups, self.batch_size)
    }

    fn name(&self) -> String {
        format!("model:{}", self.model.source.display())
    }
}

/// The items' indices grouped by equal prompt, in order of first appearance.
fn prompt_groups(items: &[(&Text, &Text)]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_prompt: HashMap<&Text, usize> = HashMap::new();
    for (i, (prompt, _)) in items.iter().enumerate() {
        let g = *by_prompt.entry(*prompt).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// `members` cut, in order, into runs worth a row each ([`packing_runs`]), at most
/// `max_members` a row.
fn split_group(
    seqs: &[&Encoded],
    members: &[usize],
    per_token: f64,
    max_members: usize,
) -> Vec<Vec<usize>> {
    let prefix = shared_prefix_len(seqs, members);
    let rest: Vec<usize> = members
        .iter()
        .map(|&i| seqs[i].ids.len() - prefix)
        .collect();
    packing_runs(prefix, &rest, per_token, max_members)
        .into_iter()
        .map(|run| run.into_iter().map(|k| members[k]).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` tokens whose first `prefix` are shared; the rest differ by `salt`.
    fn enc(n: usize, prefix: usize, salt: u32) -> Encoded {
        let ids: Vec<u32> = (0..n as u32)
            .map(|i| {
                if (i as usize) < prefix {
                    i
                } else {
                    1000 * (salt + 1) + i
                }
            })
            .collect();
        Encoded {
            ids: ids.clone(),
            type_ids: vec![0; n],
            truncation: Default::default(),
        }
    }

    #[test]
    fn items_are_grouped_by_prompt_in_order_of_first_appearance() {
        let (a, b) = (Text::Plain("a".into()), Text::Plain("b".into()));
        let r = Text::Plain("r".into());
        let items = [(&a, &r), (&b, &r), (&a, &r), (&b, &r), (&a, &r)];
        assert_eq!(prompt_groups(&items), [vec![0, 2, 4], vec![1, 3]]);
    }

    #[test]
    fn a_group_is_split_where_a_row_of_its_own_is_cheaper() {
        // A prompt of 100 tokens and responses of 50 (packing_runs' own example, per-token
        // work 48): three a row; members keep their indices.
        let seqs: Vec<Encoded> = (0..5).map(|s| enc(150, 100, s)).collect();
        let refs: Vec<&Encoded> = seqs.iter().collect();
        assert_eq!(
            split_group(&refs, &[4, 3, 2, 1, 0], 48.0, 16),
            [vec![4, 3, 2], vec![1, 0]]
        );
        // And by the batch's sequence count.
        assert_eq!(
            split_group(&refs, &[0, 1, 2, 3, 4], 48.0, 2),
            [vec![0, 1], vec![2, 3], vec![4]]
        );
    }
}
