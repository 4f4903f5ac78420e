//! Which keys each query may attend to, and each token's position: from a batch's attention
//! mask, and for packed rows ([`rewardkit_tokenize::pack`]) from its groups and branches too.
//!
//! In a row of one sequence a query sees the real keys (and, when causal, only those up to
//! itself), and positions count the real tokens (`cumsum(mask) − 1`). In a packed row a query
//! also needs the key to be in its group and either in the group's shared prefix (branch 0) or
//! in its own branch; its position counts the keys it sees, so each packed sequence is computed
//! exactly as it would be alone.

use std::sync::{Arc, OnceLock};

use candle_core::{DType, Tensor};
use rewardkit_tokenize::Packing;

/// The keys each query may see, for a batch `[b, t]`.
#[derive(Debug, Clone)]
pub struct Keys {
    /// `[b, t]` (u32): 1 for real tokens, 0 for padding.
    mask: Tensor,
    segments: Option<Arc<Segments>>,
}

/// Packed rows' groups and branches, row-major `[b, t]`.
#[derive(Debug)]
struct Segments {
    group: Vec<u32>,
    branch: Vec<u32>,
    /// [`Packing::shares_prefix`].
    shares_prefix: bool,
    /// [`Keys::blocks`] without and with the causal rule, made at the first layer that asks.
    blocks: [OnceLock<Arc<Blocks>>; 2],
}

/// A run of one group's tokens in one row (`start..start + len`): tokens of other groups are
/// never seen from it, so the fused attention computes it as a block of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub row: usize,
    pub start: usize,
    pub len: usize,
}

/// Packed rows cut into [`Span`]s that cover every token, and for each span the `len × len`
/// table of which keys each of its queries sees (1 or 0), the tables one after another.
#[derive(Debug)]
pub struct Blocks {
    pub spans: Vec<Span>,
    /// Where each span's table starts in `tables`.
    pub offsets: Vec<usize>,
    pub tables: Vec<f32>,
}

impl Keys {
    /// One sequence per row.
    pub fn new(mask: &Tensor) -> Keys {
        Keys {
            mask: mask.clone(),
            segments: None,
        }
    }

    /// Packed rows: `packing` describes the same `[b, t]` as `mask`, each group's tokens
    /// contiguous in its row (as [`rewardkit_tokenize::pack`] lays them out; a group id that
    /// comes back after another group's tokens is a group of its own). Where every row holds one
    /// sequence (one group; its prefix, then at most one branch), the mask alone says the same
    /// and the keys are [`Keys::new`]'s.
    pub fn packed(mask: &Tensor, packing: &Packing) -> candle_core::Result<Keys> {
        let n = mask.elem_count();
        if packing.group.len() != n || packing.branch.len() != n {
            candle_core::bail!(
                "packing of {} groups and {} branches does not match the mask {:?}",
                packing.group.len(),
                packing.branch.len(),
                mask.dims()
            );
        }
        let t = mask.dims().last().copied().unwrap_or(0).max(1);
        let real = mask.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?;
        // Padding (never a key, never read) does not count.
        let one_sequence = |r: usize| {
            let tokens = || (r * t..(r + 1) * t).filter(|&i| real[i] != 0);
            let first = tokens().next().map(|i| packing.group[i]);
            let mut branches = tokens().map(|i| packing.branch[i]);
            let mut previous = 0;
            tokens().all(|i| Some(packing.group[i]) == first)
                && branches.all(|b| {
                    let ok = b <= 1 && b >= previous;
                    previous = b;
                    ok
                })
        };
        if (0..n / t).all(one_sequence) {
            return Ok(Keys::new(mask));
        }
        Ok(Keys {
            mask: mask.clone(),
            segments: Some(Arc::new(Segments {
                group: packing.group.clone(),
                branch: packing.branch.clone(),
                shares_prefix: packing.shares_prefix,
                blocks: Default::default(),
            })),
        })
    }

    /// The `[b, t]` attention mask.
    pub fn mask(&self) -> &Tensor {
        &self.mask
    }

    /// Whether rows hold several sequences.
    pub fn is_packed(&self) -> bool {
        self.segments.is_some()
    }

    /// Whether packed sequences share a prefix computed once (right only for causal models:
    /// in a bidirectional one the prefix would need to see each sequence's own tokens).
    pub fn shares_prefix(&self) -> bool {
        self.segments.as_ref().is_some_and(|s| s.shares_prefix)
    }

    /// The most positions one sequence needs: the row length for rows of one sequence (padding
    /// included, as [`Keys::positions`] counts it), the longest packed sequence otherwise.
    pub fn longest(&self) -> candle_core::Result<usize> {
        if self.segments.is_none() {
            return Ok(self.mask.dims().last().copied().unwrap_or(0));
        }
        let max = self
            .positions()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<u32>()?;
        Ok(max as usize + 1)
    }

    /// Position ids `[b, t]` (u32): the number of keys each token sees (itself included, under
    /// the causal rule) minus one; for rows of one sequence, `cumsum(mask) − 1` clamped at 0
    /// ([`crate::nn::position_ids_from_mask`]). Padding gets position 0.
    pub fn positions(&self) -> candle_core::Result<Tensor> {
        let Some(s) = &self.segments else {
            return crate::nn::position_ids_from_mask(&self.mask);
        };
        let (b, t) = self.mask.dims2()?;
        let mask = self.mask_values()?;
        let mut ids = vec![0u32; b * t];
        for r in 0..b {
            // Keys seen so far: per (group, branch); branch 0 is every branch's prefix.
            let mut seen: std::collections::HashMap<(u32, u32), u32> = Default::default();
            for i in r * t..(r + 1) * t {
                if mask[i] == 0 {
                    continue;
                }
                let (g, br) = (s.group[i], s.branch[i]);
                let own = seen.entry((g, br)).or_insert(0);
                *own += 1;
                let own = *own;
                let prefix = if br == 0 {
                    0
                } else {
                    seen.get(&(g, 0)).copied().unwrap_or(0)
                };
                ids[i] = prefix + own - 1;
            }
        }
        Tensor::from_vec(ids, (b, t), self.mask.device())
    }

    /// For packed rows, `[b, t, t]` (row-major): 1 where query `i` may attend to key `j`
    /// (a real key of its group, in the shared prefix or its own branch, and `j ≤ i` when
    /// `causal`), 0 elsewhere. `None` for rows of one sequence, where the mask alone decides.
    /// (The fused attention reads [`Keys::blocks`], which holds only each group's own block.)
    pub fn allowed(&self, causal: bool) -> candle_core::Result<Option<Vec<f32>>> {
        let Some(blocks) = self.blocks(causal)? else {
            return Ok(None);
        };
        let (b, t) = self.mask.dims2()?;
        let mut out = vec![0f32; b * t * t];
        for (span, &at) in blocks.spans.iter().zip(&blocks.offsets) {
            let n = span.len;
            for i in 0..n {
                let row = (span.row * t + span.start + i) * t + span.start;
                out[row..row + n].copy_from_slice(&blocks.tables[at + i * n..at + (i + 1) * n]);
            }
        }
        Ok(Some(out))
    }

    /// For packed rows, the [`Blocks`] the fused attention computes: each row's runs of one
    /// group, and which keys each query of a run sees (a real key of the run, in the group's
    /// shared prefix or the query's own branch, and not after the query when `causal`). `None`
    /// for rows of one sequence. Made once and shared by every layer.
    pub fn blocks(&self, causal: bool) -> candle_core::Result<Option<Arc<Blocks>>> {
        let Some(s) = &self.segments else {
            return Ok(None);
        };
        let cell = &s.blocks[usize::from(causal)];
        if let Some(blocks) = cell.get() {
            return Ok(Some(blocks.clone()));
        }
        let blocks = Arc::new(self.make_blocks(s, causal)?);
        Ok(Some(cell.get_or_init(|| blocks).clone()))
    }

    fn make_blocks(&self, s: &Segments, causal: bool) -> candle_core::Result<Blocks> {
        let (b, t) = self.mask.dims2()?;
        let mask = self.mask_values()?;
        let mut spans = Vec::new();
        for row in 0..b {
            let mut start = 0;
            while start < t {
                let g = s.group[row * t + start];
                let len = s.group[row * t + start..(row + 1) * t]
                    .iter()
                    .take_while(|&&x| x == g)
                    .count();
                spans.push(Span { row, start, len });
                start += len;
            }
        }
        let mut offsets = Vec::with_capacity(spans.len());
        let mut tables = Vec::with_capacity(spans.iter().map(|s| s.len * s.len).sum());
        for span in &spans {
            offsets.push(tables.len());
            let base = span.row * t + span.start;
            for i in 0..span.len {
                let qi = base + i;
                for j in 0..span.len {
                    let kj = base + j;
                    let sees = mask[kj] != 0
                        && (!causal || j <= i)
                        && (s.branch[kj] == 0 || s.branch[kj] == s.branch[qi]);
                    tables.push(if sees { 1.0 } else { 0.0 });
                }
            }
        }
        Ok(Blocks {
            spans,
            offsets,
            tables,
        })
    }

    /// The additive bias `[b, 1, t, t]` of the composed attention: 0 where a query may attend
    /// to a key, a large negative number elsewhere ([`crate::nn::attention_bias`] for rows of
    /// one sequence).
    pub fn bias(&self, causal: bool) -> candle_core::Result<Tensor> {
        let Some(allowed) = self.allowed(causal)? else {
            return crate::nn::attention_bias(&self.mask, causal);
        };
        let (b, t) = self.mask.dims2()?;
        let allowed = Tensor::from_slice(&allowed, (b, 1, t, t), self.mask.device())?;
        (allowed - 1.0)? * (f32::MAX as f64 * 0.5)
    }

    fn mask_values(&self) -> candle_core::Result<Vec<u32>> {
        self.mask.to_dtype(DType::U32)?.flatten_all()?.to_vec1()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The module doc's row, `p0 p1 p2 | c0 c1 | r0 r1 r2`, then one padding token.
    fn pair_row() -> Keys {
        let mask = Tensor::new(&[[1u32, 1, 1, 1, 1, 1, 1, 1, 0]], &Device::Cpu).unwrap();
        let packing = Packing {
            group: vec![0; 9],
            branch: vec![0, 0, 0, 1, 1, 2, 2, 2, 0],
            first: vec![0, 0],
            last: vec![4, 7],
            shares_prefix: true,
        };
        Keys::packed(&mask, &packing).unwrap()
    }

    #[test]
    fn positions_restart_after_the_prefix() {
        let pos: Vec<Vec<u32>> = pair_row().positions().unwrap().to_vec2().unwrap();
        assert_eq!(pos, [[0, 1, 2, 3, 4, 3, 4, 5, 0]]);
    }

    #[test]
    fn a_branch_sees_the_prefix_and_itself_but_not_the_other_branch() {
        let a = pair_row().allowed(true).unwrap().unwrap();
        let a = a.as_slice();
        let row = |i: usize| a[i * 9..(i + 1) * 9].to_vec();
        assert_eq!(row(2), [1., 1., 1., 0., 0., 0., 0., 0., 0.]);
        assert_eq!(row(4), [1., 1., 1., 1., 1., 0., 0., 0., 0.]);
        assert_eq!(row(6), [1., 1., 1., 0., 0., 1., 1., 0., 0.]);
        // The padding query sees the prefix only (its branch is 0); nobody sees the padding key.
        assert_eq!(row(8), [1., 1., 1., 0., 0., 0., 0., 0., 0.]);
    }

    #[test]
    fn groups_in_one_row_do_not_see_each_other() {
        let mask = Tensor::new(&[[1u32, 1, 1, 1]], &Device::Cpu).unwrap();
        let packing = Packing {
            group: vec![0, 0, 1, 1],
            branch: vec![1, 1, 1, 1],
            first: vec![0, 2],
            last: vec![1, 3],
            shares_prefix: false,
        };
        let keys = Keys::packed(&mask, &packing).unwrap();
        let pos: Vec<Vec<u32>> = keys.positions().unwrap().to_vec2().unwrap();
        assert_eq!(pos, [[0, 1, 0, 1]]);
        let a = keys.allowed(true).unwrap().unwrap();
        assert_eq!(&a[12..], &[0., 0., 1., 1.]);
    }

    #[test]
    fn rows_of_one_sequence_each_need_no_segments() {
        let mask = Tensor::new(&[[1u32, 1, 1, 0], [1, 1, 1, 1]], &Device::Cpu).unwrap();
        let packing = Packing {
            group: vec![0, 0, 0, 0, 1, 1, 1, 1],
            branch: vec![0, 0, 1, 0, 1, 1, 1, 1],
            first: vec![0, 4],
            last: vec![2, 7],
            shares_prefix: true,
        };
        let keys = Keys::packed(&mask, &packing).unwrap();
        assert!(!keys.is_packed());
        let pos: Vec<Vec<u32>> = keys.positions().unwrap().to_vec2().unwrap();
        assert_eq!(pos, [[0, 1, 2, 2], [0, 1, 2, 3]]);
        // A prefix token after a branch's (which sees only the prefix) is not one sequence.
        let packing = Packing {
            branch: vec![0, 1, 0, 0, 1, 1, 1, 1],
            ..packing
        };
        assert!(Keys::packed(&mask, &packing).unwrap().is_packed());
    }

    #[test]
    fn a_packing_of_another_shape_is_refused() {
        let mask = Tensor::new(&[[1u32, 1]], &Device::Cpu).unwrap();
        let packing = Packing {
            group: vec![0; 3],
            branch: vec![0; 3],
            first: vec![0],
            last: vec![2],
            shares_prefix: true,
        };
        assert!(Keys::packed(&mask, &packing).is_err());
    }
}
