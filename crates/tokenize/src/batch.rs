//! Padding and length bucketing.

use crate::{Encoded, Packing};

/// Where padding goes. Right padding is the default for both encoders and decoders here:
/// pooling finds the last real token from the attention mask, so either side gives the same
/// scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingSide {
    Left,
    #[default]
    Right,
}

/// A padded batch, row-major `[rows, len]`: one sequence per row ([`pad_batch`]), or several
/// sharing a row ([`crate::pack_shared_prefix`], which sets `packing`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub rows: usize,
    pub len: usize,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Where the sequences of packed rows are; `None` when each row is one sequence.
    pub packing: Option<Packing>,
}

impl Batch {
    /// `rows` × `len` of padding (`pad_id`, mask 0), one sequence per row, to be filled in.
    pub fn padding(rows: usize, len: usize, pad_id: u32) -> Batch {
        Batch {
            rows,
            len,
            ids: vec![pad_id; rows * len],
            type_ids: vec![0; rows * len],
            attention_mask: vec![0; rows * len],
            packing: None,
        }
    }

    /// The sequences the batch holds: its rows, or the packed sequences.
    pub fn sequences(&self) -> usize {
        self.packing.as_ref().map_or(self.rows, |p| p.last.len())
    }

    /// Real (unpadded) tokens over all positions: 1.0 means no compute went to padding.
    pub fn fill(&self) -> f64 {
        let real: u32 = self.attention_mask.iter().sum();
        real as f64 / (self.rows * self.len).max(1) as f64
    }
}

/// Pads `rows` to the longest one.
pub fn pad_batch(rows: &[&Encoded], pad_id: u32, side: PaddingSide) -> Batch {
    let len = rows.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let n = rows.len();
    let mut batch = Batch::padding(n, len, pad_id);
    for (i, e) in rows.iter().enumerate() {
        let start = match side {
            PaddingSide::Right => i * len,
            PaddingSide::Left => i * len + len - e.ids.len(),
        };
        let end = start + e.ids.len();
        batch.ids[start..end].copy_from_slice(&e.ids);
        batch.type_ids[start..end].copy_from_slice(&e.type_ids);
        batch.attention_mask[start..end].fill(1);
    }
    batch
}

/// Groups indices into batches of at most `batch_size` items of similar length: sorted by
/// length (longest first, ties by index, so the result is deterministic), then cut in order.
/// A trainer shuffles the order of the batches, not their contents.
pub fn length_buckets(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(lengths[i]), i));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}
