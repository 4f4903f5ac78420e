//! Which keys each query may attend to, and each token's position: from a batch's attention
//! mask, and for packed rows ([`rewardkit_tokenize::pack_shared_prefix`]) from its groups and
//! branches too.
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
    /// [`Keys::allowed`] under the causal rule, made at the first layer that asks.
    causal: OnceLock<Arc<Vec<f32>>>,
}

impl Keys {
    /// One sequence per row.
    pub fn new(mask: &Tensor) -> Keys {
        Keys {
            mask: mask.clone(),
            segments: None,
        }
    }

    /// Packed rows: `packing` describes the same `[b, t]` as `mask`. Where every row holds one
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
                causal: OnceLock::new(),
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
    /// The causal table is made once and shared by every layer.
    pub fn allowed(&self, causal: bool) -> candle_core::Result<Option<Arc<Vec<f32>>>> {
        let Some(s) = &self.segments else {
            return Ok(None);
        };
        if !causal {
            return Ok(Some(Arc::new(self.table(s, false)?)));
        }
        if let Some(table) = s.causal.get() {
            return Ok(Some(table.clone()));
        }
        let table = Arc::new(self.table(s, true)?);
        Ok(Some(s.causal.get_or_init(|| table).clone()))
    }

    fn table(&self, s: &Segments, causal: bool) -> candle_core::Result<Vec<f32>> {
        let (b, t) = self.mask.dims2()?;
        let mask = self.mask_values()?;
        let mut out = vec![0f32; b * t * t];
        for r in 0..b {
            for i in 0..t {
                let qi = r * t + i;
                let visible = if causal { i + 1 } else { t };
                let row = &mut out[qi * t..qi * t + visible];
                for (j, a) in row.iter_mut().enumerate() {
                    let kj = r * t + j;
                    let sees = mask[kj] != 0
                        && s.group[kj] == s.group[qi]
                        && (s.branch[kj] == 0 || s.branch[kj] == s.branch[qi]);
                    *a = if sees { 1.0 } else { 0.0 };
                }
            }
        }
        Ok(out)
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
            last: vec![4, 7],
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
            last: vec![1, 3],
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
            last: vec![2, 7],
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
            last: vec![2],
        };
        assert!(Keys::packed(&mask, &packing).is_err());
    }
}
