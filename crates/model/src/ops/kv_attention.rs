//! Attention over a KV cache, for inference (decoding has no backward pass): one layer's keys and
//! values of a batch in a buffer that grows in place ([`KvBuffer`]), and the softmax attention of
//! the new tokens' queries over every key so far, per (batch row, query head). Grouped-query
//! attention reads K/V head `h / (heads / kv_heads)`; the K/V heads are never repeated.
//!
//! Composed from candle ops, each decoding step concatenated the cache with the new keys (a copy
//! of the whole cache per layer), repeated the K/V heads for grouped-query attention (three
//! more), and ran `[1, d] × [d, t]` products one (row, head) at a time through the gemm crate.

use rayon::prelude::*;

use super::{dot, exp};

/// One layer's keys and values (after RoPE) of `rows` sequences: `[rows, kv_heads, capacity,
/// head_dim]` each, the first `len` positions of every row filled. Appending writes in place; the
/// capacity doubles when it runs out.
#[derive(Debug, Clone)]
pub struct KvBuffer {
    k: Vec<f32>,
    v: Vec<f32>,
    rows: usize,
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
}

impl KvBuffer {
    /// An empty buffer for `rows` sequences.
    pub fn new(rows: usize, kv_heads: usize, head_dim: usize) -> Self {
        KvBuffer {
            k: Vec::new(),
            v: Vec::new(),
            rows,
            kv_heads,
            head_dim,
            capacity: 0,
            len: 0,
        }
    }

    /// Positions held per row.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first append.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the keys and values of `t` new positions per row, `k` and `v` `[rows, t, kv_heads,
    /// head_dim]` (the projections' layout).
    pub fn append(&mut self, k: &[f32], v: &[f32]) -> candle_core::Result<()> {
        let per_pos = self.rows * self.kv_heads * self.head_dim;
        if per_pos == 0 || k.len() != v.len() || !k.len().is_multiple_of(per_pos) {
            candle_core::bail!(
                "kv-cache: {} keys and {} values for {} rows of {} heads of {}",
                k.len(),
                v.len(),
                self.rows,
                self.kv_heads,
                self.head_dim
            );
        }
        let t = k.len() / per_pos;
        if self.len + t > self.capacity {
            self.grow((self.len + t).max(2 * self.capacity));
        }
        let (kv, d) = (self.kv_heads, self.head_dim);
        for r in 0..self.rows {
            for i in 0..t {
                for h in 0..kv {
                    let src = ((r * t + i) * kv + h) * d;
                    let dst = self.at(r, h, self.len + i);
                    self.k[dst..dst + d].copy_from_slice(&k[src..src + d]);
                    self.v[dst..dst + d].copy_from_slice(&v[src..src + d]);
                }
            }
        }
        self.len += t;
        Ok(())
    }

    /// The buffer of the rows `picks` (in that order, repeats allowed): the prompt's cache copied
    /// to each of its samples.
    pub fn select_rows(&self, picks: &[usize]) -> candle_core::Result<Self> {
        if let Some(&bad) = picks.iter().find(|&&r| r >= self.rows) {
            candle_core::bail!("kv-cache: row {bad} of {}", self.rows);
        }
        let block = self.kv_heads * self.capacity * self.head_dim;
        let gather = |src: &[f32]| -> Vec<f32> {
            picks
                .iter()
                .flat_map(|&r| src[r * block..(r + 1) * block].iter().copied())
                .collect()
        };
        Ok(KvBuffer {
            k: gather(&self.k),
            v: gather(&self.v),
            rows: picks.len(),
            ..*self
        })
    }

    /// Offset of position `pos` of K/V head `h` of row `r`.
    fn at(&self, r: usize, h: usize, pos: usize) -> usize {
        ((r * self.kv_heads + h) * self.capacity + pos) * self.head_dim
    }

    fn grow(&mut self, capacity: usize) {
        let d = self.head_dim;
        let mut k = vec![0f32; self.rows * self.kv_heads * capacity * d];
        let mut v = k.clone();
        for block in 0..self.rows * self.kv_heads {
            let (src, dst) = (block * self.capacity * d, block * capacity * d);
            let n = self.len * d;
            k[dst..dst + n].copy_from_slice(&self.k[src..src + n]);
            v[dst..dst + n].copy_from_slice(&self.v[src..src + n]);
        }
        (self.k, self.v, self.capacity) = (k, v, capacity);
    }

    /// The attention output `[rows, t, heads · head_dim]` of the last `t` positions' queries
    /// `q` `[rows, t, heads, head_dim]` over the keys so far: query `i` sits at position
    /// `len − t + i` and sees the keys up to it whose `mask[row][j]` is non-zero; scores scaled
    /// by `scale`. A query that sees no key (a padded position) attends uniformly to all of them,
    /// as the additive −∞-like bias of the composed version gives.
    pub fn attend(
        &self,
        q: &[f32],
        mask: &[Vec<u32>],
        heads: usize,
        scale: f32,
    ) -> candle_core::Result<Vec<f32>> {
        let (kv, d, len) = (self.kv_heads, self.head_dim, self.len);
        let per_pos = self.rows * heads * d;
        if kv == 0 || !heads.is_multiple_of(kv) || per_pos == 0 || !q.len().is_multiple_of(per_pos)
        {
            candle_core::bail!(
                "kv-cache: {} query values for {} rows of {heads} heads of {d} over {kv} K/V heads",
                q.len(),
                self.rows
            );
        }
        let t = q.len() / per_pos;
        if t > len || mask.len() != self.rows || mask.iter().any(|m| m.len() != len) {
            candle_core::bail!(
                "kv-cache: {t} queries, {len} keys, a mask of {} rows for {} rows",
                mask.len(),
                self.rows
            );
        }
        let group = heads / kv;
        let blocks: Vec<Vec<f32>> = (0..self.rows * heads)
            .into_par_iter()
            .map(|task| {
                let (r, h) = (task / heads, task % heads);
                let start = self.at(r, h / group, 0);
                let (k, v) = (
                    &self.k[start..start + len * d],
                    &self.v[start..start + len * d],
                );
                let mut out = vec![0f32; t * d];
                let mut scores = vec![0f32; len];
                for (i, o) in out.chunks_exact_mut(d).enumerate() {
                    let qi = &q[((r * t + i) * heads + h) * d..][..d];
                    let visible = len - t + i + 1;
                    attend_one(qi, k, v, &mask[r], visible, scale, &mut scores, o);
                }
                out
            })
            .collect();
        let mut ctx = vec![0f32; q.len()];
        for (task, block) in blocks.iter().enumerate() {
            let (r, h) = (task / heads, task % heads);
            for (i, o) in block.chunks_exact(d).enumerate() {
                let dst = ((r * t + i) * heads + h) * d;
                ctx[dst..dst + d].copy_from_slice(o);
            }
        }
        Ok(ctx)
    }
}

multiversion! {
    /// `out` ← softmax(scale · q·Kᵀ) · V over the first `visible` keys of `k`, `v` (`[len, d]`)
    /// where `mask` is non-zero; uniform over all `len` keys when none of them is.
    fn attend_one / attend_one_base(q: &[f32], k: &[f32], v: &[f32], mask: &[u32], visible: usize, scale: f32, scores: &mut [f32], out: &mut [f32]) {
        let d = q.len();
        let len = k.len() / d;
        let mut max = f32::NEG_INFINITY;
        for (j, s) in scores[..visible].iter_mut().enumerate() {
            *s = if mask[j] != 0 {
                let x = dot(q, &k[j * d..(j + 1) * d]) * scale;
                max = max.max(x);
                x
            } else {
                f32::NEG_INFINITY
            };
        }
        out.fill(0.0);
        let (seen, weight) = if max == f32::NEG_INFINITY {
            scores[..len].fill(1.0);
            (len, 1.0 / len as f32)
        } else {
            let mut total = 0.0;
            for (j, s) in scores[..visible].iter_mut().enumerate() {
                *s = if mask[j] != 0 { exp(*s - max) } else { 0.0 };
                total += *s;
            }
            (visible, 1.0 / total)
        };
        for (j, &p) in scores[..seen].iter().enumerate() {
            if p != 0.0 {
                let w = p * weight;
                for (o, &x) in out.iter_mut().zip(&v[j * d..(j + 1) * d]) {
                    *o += w * x;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        test_util::values(n, seed, 0.5)
    }

    /// Plain softmax attention in f64 of query `qi` of row `r`, head `h`, at position `pos`.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        q: &[f64],
        keys: &[Vec<f64>],
        values: &[Vec<f64>],
        mask: &[u32],
        pos: usize,
        scale: f64,
    ) -> Vec<f64> {
        let seen: Vec<usize> = (0..=pos).filter(|&j| mask[j] != 0).collect();
        // No key visible: every score is the same −∞-like bias, so the weights are uniform.
        let (seen, s): (Vec<usize>, Vec<f64>) = if seen.is_empty() {
            ((0..keys.len()).collect(), vec![0.0; keys.len()])
        } else {
            let s = seen
                .iter()
                .map(|&j| q.iter().zip(&keys[j]).map(|(a, b)| a * b).sum::<f64>() * scale)
                .collect();
            (seen, s)
        };
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        let mut out = vec![0.0; q.len()];
        for (&j, p) in seen.iter().zip(&e) {
            for (o, x) in out.iter_mut().zip(&values[j]) {
                *o += p / z * x;
            }
        }
        out
    }

    /// A prefill of 5 positions (row 1 left-padded by 2, so its first queries see no key), then
    /// 3 single-token steps and one of 2 tokens, through capacity growth, with 6 query heads
    /// over 2 K/V heads; every output against the f64 reference from the same keys. Then
    /// `select_rows` copies rows whole: the copy's attention equals the original row's.
    #[test]
    fn attends_like_the_reference_through_growth_and_row_selection() {
        let (rows, heads, kv, d) = (2, 6, 2, 19);
        let scale = 1.0 / (d as f32).sqrt();
        let mut buf = KvBuffer::new(rows, kv, d);
        let mut mask: Vec<Vec<u32>> = vec![vec![1; 5], vec![0, 0, 1, 1, 1]];
        // keys[r][h][pos], values likewise, kept in f64 for the reference.
        let mut keys = vec![vec![Vec::<Vec<f64>>::new(); kv]; rows];
        let mut vals = keys.clone();
        for (step, t) in [5usize, 1, 1, 1, 2].into_iter().enumerate() {
            if step > 0 {
                for m in &mut mask {
                    m.extend(std::iter::repeat_n(1, t));
                }
            }
            let (k, v) = (
                values(rows * t * kv * d, 10 + step as u64),
                values(rows * t * kv * d, 20 + step as u64),
            );
            for r in 0..rows {
                for i in 0..t {
                    for h in 0..kv {
                        let at = ((r * t + i) * kv + h) * d;
                        keys[r][h].push(k[at..at + d].iter().map(|&x| x as f64).collect());
                        vals[r][h].push(v[at..at + d].iter().map(|&x| x as f64).collect());
                    }
                }
            }
            buf.append(&k, &v).unwrap();
            let q = values(rows * t * heads * d, 30 + step as u64);
            let ctx = buf.attend(&q, &mask, heads, scale).unwrap();
            let len = buf.len();
            for r in 0..rows {
                for i in 0..t {
                    for h in 0..heads {
                        let at = ((r * t + i) * heads + h) * d;
                        let qi: Vec<f64> = q[at..at + d].iter().map(|&x| x as f64).collect();
                        let g = h / (heads / kv);
                        let want = reference(
                            &qi,
                            &keys[r][g],
                            &vals[r][g],
                            &mask[r],
                            len - t + i,
                            scale as f64,
                        );
                        for (a, b) in ctx[at..at + d].iter().zip(&want) {
                            assert!(
                                (*a as f64 - b).abs() < 1e-5,
                                "step {step} ({r}, {i}, {h}): {a} vs {b}"
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(buf.len(), 10);
        let picked = buf.select_rows(&[1, 1, 0]).unwrap();
        let q = values(heads * d, 99);
        let three: Vec<f32> = (0..3).flat_map(|_| q.iter().copied()).collect();
        let picked_mask = vec![mask[1].clone(), mask[1].clone(), mask[0].clone()];
        let got = picked.attend(&three, &picked_mask, heads, scale).unwrap();
        let both: Vec<f32> = (0..2).flat_map(|_| q.iter().copied()).collect();
        let orig = buf.attend(&both, &mask, heads, scale).unwrap();
        let n = heads * d;
        assert_eq!(got[..n], orig[n..]);
        assert_eq!(got[n..2 * n], orig[n..]);
        assert_eq!(got[2 * n..], orig[..n]);
        assert!(buf.select_rows(&[2]).is_err());
    }
}
