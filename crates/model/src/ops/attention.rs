//! Multi-head attention: scores, masked softmax, dropout and the product with the values per
//! (batch row, head), nothing of size `[b, h, t, t]` kept between the passes. Keys and values
//! may have fewer heads than the queries (grouped-query attention, Llama's
//! `num_key_value_heads`): query head `h` reads K/V head `h / (heads / kv_heads)`, so the K/V
//! heads are never repeated in memory.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::{check_simd, dot, exp, masked_max, sum};
use crate::keys::{Blocks, Keys, Span};
use crate::nn::{DropoutDraw, Mode};

/// What the attention kernels share: shapes, the key mask and the dropout draw.
#[derive(Clone)]
struct AttentionSpec {
    batch: usize,
    len: usize,
    heads: usize,
    /// Heads of `k` and `v`: `heads` divided by the group size.
    kv_heads: usize,
    head_dim: usize,
    scale: f32,
    causal: bool,
    /// What is computed on its own: every row whole, or for packed rows each run of one group
    /// ([`Keys::blocks`]; a query never sees a key of another group). Each block's key table
    /// holds 1 for keys that may be attended to, 0 for the others: `len` values (every query
    /// of the block sees the same keys: padding is masked), or `len × len` (one set per query:
    /// packed rows).
    blocks: Arc<Blocks>,
    /// Whether the key tables hold one set per query.
    per_query: bool,
    dropout: Option<DropoutDraw>,
}

/// A `[b, t, h·d]` operand whose rows may be strided (a column slice of a wider tensor):
/// the whole storage, the offset of element (0, 0, 0), and the batch and row strides.
struct Rows<'a> {
    data: &'a [f32],
    start: usize,
    batch_stride: usize,
    row_stride: usize,
}

impl AttentionSpec {
    /// The operand `s` of `heads` heads (the queries' or the keys' and values').
    fn rows<'a>(
        &self,
        s: &'a CpuStorage,
        l: &Layout,
        op: &str,
        heads: usize,
    ) -> candle_core::Result<Rows<'a>> {
        let CpuStorage::F32(data) = s else {
            candle_core::bail!("{op}: only f32 is supported")
        };
        let want = [self.batch, self.len, heads * self.head_dim];
        let stride = l.stride();
        if l.dims() != want || stride[2] != 1 {
            candle_core::bail!("{op}: expected a row-major {want:?} operand, got {l:?}");
        }
        Ok(Rows {
            data,
            start: l.start_offset(),
            batch_stride: stride[0],
            row_stride: stride[1],
        })
    }

    /// The first element of head `h` in block `x` of `r`, and its row stride.
    fn head(&self, r: &Rows, x: &Span, h: usize) -> (*const f32, usize) {
        let i = r.start + x.row * r.batch_stride + x.start * r.row_stride + h * self.head_dim;
        (r.data[i..].as_ptr(), r.row_stride)
    }

    /// The longest block (the side of the scratch each task needs).
    fn longest(&self) -> usize {
        self.blocks.spans.iter().map(|x| x.len).max().unwrap_or(0)
    }

    /// Query heads per K/V head.
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// The query, key and value operands.
    fn operands<'a>(
        &self,
        (s1, l1): (&'a CpuStorage, &Layout),
        (s2, l2): (&'a CpuStorage, &Layout),
        (s3, l3): (&'a CpuStorage, &Layout),
        op: &str,
    ) -> candle_core::Result<[Rows<'a>; 3]> {
        Ok([
            self.rows(s1, l1, op, self.heads)?,
            self.rows(s2, l2, op, self.kv_heads)?,
            self.rows(s3, l3, op, self.kv_heads)?,
        ])
    }

    /// `p` (the first t×t, t the block's length) ← the attention probabilities of one head of
    /// block `x` from its `q`, `k`: scaled scores, masked, softmax by row. A query that may see
    /// no key attends uniformly to all of the block's (what the additive −∞-like bias of the
    /// composed version gives a row of one sequence).
    fn probs(&self, p: &mut [f32], q: (*const f32, usize), k: (*const f32, usize), xi: usize) {
        let x = &self.blocks.spans[xi];
        let (t, d) = (x.len, self.head_dim);
        let p = &mut p[..t * t];
        // SAFETY: q and k point at t rows of d valid elements with the given row strides.
        unsafe {
            matmul(
                t,
                t,
                d,
                p.as_mut_ptr(),
                t,
                (q.0, q.1, 1),
                (k.0, 1, k.1),
                self.scale,
                false,
            )
        };
        let n = if self.per_query { t * t } else { t };
        let at = self.blocks.offsets[xi];
        masked_softmax_rows(p, &self.blocks.tables[at..at + n], t, self.causal);
    }

    /// `out` ← `p` with block `part`'s dropout mask applied (inverted dropout).
    fn drop_into(&self, draw: &DropoutDraw, part: usize, p: &[f32], out: &mut [f32]) {
        let mut rng = draw.rng(part);
        let keep = 1.0 - draw.p;
        let scale = (1.0 / keep) as f32;
        for (o, &x) in out.iter_mut().zip(p) {
            *o = if rng.uniform() < keep { x * scale } else { 0.0 };
        }
    }
}

multiversion! {
    /// Softmax of each row of the t×t scores `p` over the keys where `keys` is non-zero (and, when
    /// `causal`, not after the row's own position); a row that sees no key becomes uniform.
    /// `keys` is one set of `t` for every row, or `t` sets of `t`, one per row.
    pub(super) fn masked_softmax_rows / masked_softmax_rows_base(p: &mut [f32], keys: &[f32], t: usize, causal: bool) {
        let stride = if keys.len() == t * t { t } else { 0 };
        for (i, row) in p.chunks_mut(t).enumerate() {
            let keys = &keys[i * stride..i * stride + t];
            let visible = if causal { i + 1 } else { t };
            let (seen, unseen) = row.split_at_mut(visible);
            let max = masked_max(seen, keys);
            if max == f32::NEG_INFINITY {
                row.fill(1.0 / t as f32);
                continue;
            }
            unseen.fill(0.0);
            for (x, &k) in seen.iter_mut().zip(keys) {
                *x = exp(*x - max) * k;
            }
            let inv = 1.0 / sum(seen);
            seen.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

multiversion! {
    /// dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale, in place over `ds` (which holds dP), row by row
    /// (length `t`); with dropout (`keep_scale`), dP is first masked where P' (`p_used`) is zero.
    pub(super) fn attention_scores_bwd / attention_scores_bwd_base(ds: &mut [f32], p: &[f32], p_used: &[f32], t: usize, keep_scale: Option<f32>, scale: f32) {
        for ((dr, pr), pdr) in ds.chunks_mut(t).zip(p.chunks(t)).zip(p_used.chunks(t)) {
            if let Some(ks) = keep_scale {
                // dropout's mask is `ks` where P' is non-zero; where P' is zero but P
                // is not, it dropped the element. (Where P is zero, dS is zero anyway.)
                for (x, &pd) in dr.iter_mut().zip(pdr) {
                    *x = if pd != 0.0 { *x * ks } else { 0.0 };
                }
            }
            let dot = dot(dr, pr);
            for (x, &y) in dr.iter_mut().zip(pr) {
                *x = y * (*x - dot) * scale;
            }
        }
    }
}

/// `dst` (m×n, row stride `dst_rs`, column stride 1) ← `alpha · lhs · rhs` (or, `accumulate`,
/// `dst + alpha · lhs · rhs`), with `lhs` (m×k) and `rhs` (k×n) given as (pointer, row stride,
/// column stride). Single-threaded: the callers run one per (batch row, head) in parallel.
///
/// # Safety
/// Every pointer must address the whole matrix its strides describe.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    alpha: f32,
    accumulate: bool,
) {
    // SAFETY: the caller guarantees each pointer spans the matrix its strides describe; gemm
    // reads lhs and rhs and writes dst within those bounds (dst is read only to accumulate).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.0,
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0,
            rhs.2 as isize,
            rhs.1 as isize,
            if accumulate { 1.0 } else { 0.0 },
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// A pointer into an output buffer, handed to the parallel blocks (each writes its own columns).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the blocks write disjoint elements.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}
impl OutPtr {
    /// The pointer `i` elements past the start of the buffer.
    ///
    /// # Safety
    /// The pointer came from a live buffer of at least `i` elements (`i` may equal its length,
    /// as [`pointer::add`] allows), and what is written through the result is written by no
    /// other block at the same time.
    unsafe fn at(self, i: usize) -> *mut f32 {
        // SAFETY: the caller keeps `i` within the buffer.
        unsafe { self.0.add(i) }
    }
}

struct AttentionOp(AttentionSpec);
struct AttentionBackward {
    spec: AttentionSpec,
    /// The upstream gradient, contiguous `[b, t, h·d]`.
    grad: Tensor,
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "rk-attention"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let a = &self.0;
        let [q, k, v] = a.operands((s1, l1), (s2, l2), (s3, l3), self.name())?;
        let (t, d, width) = (a.len, a.head_dim, a.heads * a.head_dim);
        let mut out = vec![0f32; a.batch * t * width];
        let dst = OutPtr(out.as_mut_ptr());
        let side = a.longest();
        (0..a.blocks.spans.len() * a.heads)
            .into_par_iter()
            .for_each_init(
                || (vec![0f32; side * side], vec![0f32; side * side]),
                |(p, dropped), task| {
                    let (xi, h) = (task / a.heads, task % a.heads);
                    let x = &a.blocks.spans[xi];
                    let n = x.len;
                    a.probs(p, a.head(&q, x, h), a.head(&k, x, h / a.group()), xi);
                    let p = match &a.dropout {
                        Some(draw) => {
                            a.drop_into(draw, task, &p[..n * n], &mut dropped[..n * n]);
                            &*dropped
                        }
                        None => &*p,
                    };
                    let v = a.head(&v, x, h / a.group());
                    // SAFETY: head h of block x in `out` is n rows of d with row stride `width`
                    // starting at (x.row·t + x.start)·width + h·d, inside `out` (batch·t·width
                    // elements); blocks do not overlap, so only this task writes those elements.
                    unsafe {
                        matmul(
                            n,
                            d,
                            n,
                            dst.at((x.row * t + x.start) * width + h * d),
                            width,
                            (p.as_ptr(), n, 1),
                            (v.0, v.1, 1),
                            1.0,
                            false,
                        )
                    };
                },
            );
        Ok((CpuStorage::F32(out), Shape::from((a.batch, t, width))))
    }
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let back = AttentionBackward {
            spec: self.0.clone(),
            grad: grad.contiguous()?,
        };
        let out = q.apply_op3_no_bwd(k, v, &back)?;
        let (n, nk) = (q.elem_count(), k.elem_count());
        let dq = out.narrow(0, 0, n)?.reshape(q.shape())?;
        let dk = out.narrow(0, n, nk)?.reshape(k.shape())?;
        let dv = out.narrow(0, n + nk, nk)?.reshape(v.shape())?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

impl CustomOp3 for AttentionBackward {
    fn name(&self) -> &'static str {
        "rk-attention-bwd"
    }
    /// Output (flat): `dq` (contiguous `[b, t, heads·d]`), `dk` and `dv` (contiguous
    /// `[b, t, kv_heads·d]`). Per (batch row, query head), with P the probabilities
    /// (recomputed), P' = P ⊙ dropout and G the upstream gradient: `dv = P'ᵀ G`,
    /// `dP = (G vᵀ) ⊙ dropout`, `dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale`, `dq = dS k`,
    /// `dk = dSᵀ q`; a K/V head's `dk` and `dv` add those of the query heads of its group, in
    /// head order (one task per (batch row, K/V head) writes them).
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let a = &self.spec;
        let [q, k, v] = a.operands((s1, l1), (s2, l2), (s3, l3), self.name())?;
        let (storage, layout) = self.grad.storage_and_layout();
        let Storage::Cpu(g) = &*storage else {
            candle_core::bail!("{}: the gradient is not on the CPU", self.name())
        };
        let g = a.rows(g, layout, self.name(), a.heads)?;
        let (t, d) = (a.len, a.head_dim);
        let (width, kv_width) = (a.heads * d, a.kv_heads * d);
        let (n, nk) = (a.batch * t * width, a.batch * t * kv_width);
        let mut out = vec![0f32; n + 2 * nk];
        let dst = OutPtr(out.as_mut_ptr());
        let keep_scale = a.dropout.as_ref().map(|draw| (1.0 / (1.0 - draw.p)) as f32);
        let side = a.longest();
        (0..a.blocks.spans.len() * a.kv_heads)
            .into_par_iter()
            .for_each_init(
                || {
                    let scratch = || vec![0f32; side * side];
                    (scratch(), scratch(), scratch())
                },
                |(p, dropped, ds), task| {
                    let (xi, kvh) = (task / a.kv_heads, task % a.kv_heads);
                    let x = &a.blocks.spans[xi];
                    let m = x.len;
                    let (p, dropped, ds) =
                        (&mut p[..m * m], &mut dropped[..m * m], &mut ds[..m * m]);
                    let (kh, vh) = (a.head(&k, x, kvh), a.head(&v, x, kvh));
                    let first = x.row * t + x.start;
                    let at_q = |h: usize| first * width + h * d;
                    let at_kv = n + first * kv_width + kvh * d;
                    for r in 0..a.group() {
                        let h = kvh * a.group() + r;
                        let (qh, gh) = (a.head(&q, x, h), a.head(&g, x, h));
                        a.probs(p, qh, kh, xi);
                        let p_used = match &a.dropout {
                            Some(draw) => {
                                a.drop_into(draw, xi * a.heads + h, p, dropped);
                                &*dropped
                            }
                            None => &*p,
                        };
                        let acc = r > 0;
                        // SAFETY: every operand is m rows of d (or m) with the strides given; query
                        // head h's block of dq is m rows of d at `at_q(h)` with row stride `width`
                        // (inside the first n elements), and K/V head kvh's blocks of dk and dv are
                        // m rows of d at `at_kv` and `at_kv + nk` with row stride `kv_width`
                        // (inside the last 2·nk); blocks do not overlap, so only this task writes
                        // those elements.
                        unsafe {
                            // dv (+)= P'ᵀ G
                            let pt = (p_used.as_ptr(), 1, m);
                            let dv = dst.at(at_kv + nk);
                            matmul(m, d, m, dv, kv_width, pt, (gh.0, gh.1, 1), 1.0, acc);
                            // dP' = G vᵀ
                            let (gr, vt) = ((gh.0, gh.1, 1), (vh.0, 1, vh.1));
                            matmul(m, m, d, ds.as_mut_ptr(), m, gr, vt, 1.0, false);
                        }
                        attention_scores_bwd(ds, p, p_used, m, keep_scale, a.scale);
                        // SAFETY: as above.
                        unsafe {
                            // dq = dS k, dk (+)= dSᵀ q
                            let ds = ds.as_ptr();
                            let (dq, dk) = (dst.at(at_q(h)), dst.at(at_kv));
                            matmul(m, d, m, dq, width, (ds, m, 1), (kh.0, kh.1, 1), 1.0, false);
                            matmul(m, d, m, dk, kv_width, (ds, 1, m), (qh.0, qh.1, 1), 1.0, acc);
                        }
                    }
                },
            );
        Ok((CpuStorage::F32(out), Shape::from(n + 2 * nk)))
    }
}

/// Multi-head attention ([`crate::nn::Attention`]) fused on CPU: per (batch row, head), the
/// scores, the masked softmax, dropout and the product with `v` in a block of t×t scratch;
/// the backward pass recomputes the probabilities the same way (nothing of size `[b, h, t, t]`
/// is kept between the passes). `q` is `[b, t, heads·d]`; `k` and `v` are `[b, t, kv·d]` for
/// any `kv` dividing `heads` (grouped-query attention when `kv < heads`); `keys` says which
/// keys each query may see (the padding mask, and for packed rows their branches).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    keys: &Keys,
    attn: &crate::nn::Attention,
    mode: Mode,
) -> candle_core::Result<Tensor> {
    check_simd()?;
    let (batch, len, width) = q.dims3()?;
    if attn.heads == 0 || width % attn.heads != 0 {
        candle_core::bail!("width {width} is not a multiple of {} heads", attn.heads);
    }
    let head_dim = width / attn.heads;
    let kv_width = k.dim(2)?;
    let kv_heads = kv_width / head_dim;
    if k.dims() != v.dims()
        || k.dims()[..2] != [batch, len]
        || kv_heads == 0
        || !kv_width.is_multiple_of(head_dim)
        || !attn.heads.is_multiple_of(kv_heads)
    {
        candle_core::bail!(
            "keys {:?} and values {:?} do not fit queries {:?} of {} heads",
            k.dims(),
            v.dims(),
            q.dims(),
            attn.heads
        );
    }
    let mask = keys.mask();
    if mask.dims() != [batch, len] {
        candle_core::bail!("mask {:?} does not match q {:?}", mask.dims(), q.dims());
    }
    let (blocks, per_query) = match keys.blocks(attn.causal)? {
        Some(packed) => (packed, true),
        None => {
            let mask = mask.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?;
            let rows = Blocks {
                spans: (0..batch).map(|row| Span { row, start: 0, len }).collect(),
                offsets: (0..batch).map(|row| row * len).collect(),
                tables: mask
                    .into_iter()
                    .map(|m| if m != 0 { 1.0 } else { 0.0 })
                    .collect(),
            };
            (Arc::new(rows), false)
        }
    };
    let spec = AttentionSpec {
        batch,
        len,
        heads: attn.heads,
        kv_heads,
        head_dim,
        scale: attn.scale as f32,
        causal: attn.causal,
        blocks,
        per_query,
        dropout: attn.dropout.draw(mode),
    };
    // The kernels read rows with any stride but need each row's elements adjacent.
    let rows = |x: &Tensor| -> candle_core::Result<Tensor> {
        if x.stride()[2] == 1 {
            Ok(x.clone())
        } else {
            x.contiguous()
        }
    };
    rows(q)?.apply_op3(&rows(k)?, &rows(v)?, AttentionOp(spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_diff, rand};
    use candle_core::{Device, Var};

    /// The fused attention against [`crate::nn::Attention::forward_composed`]: values and the
    /// gradients of q, k and v, for right and left padding (left padding under a causal mask
    /// leaves queries that see no key), with q, k, v column slices of one wider tensor (GPT-2),
    /// with dropout (the composed side applies the same masks, drawn from the same blocks), and
    /// for packed rows (a shared prefix and two branches; two groups in one row).
    #[test]
    fn attention_matches_composed() {
        // 19 keys: two full lanes of the kernels' reductions and a remainder.
        let (b, t, heads, d) = (3, 19, 3, 4);
        let w = heads * d;
        let padded = |left: usize, right: usize| -> Vec<u32> {
            (0..t)
                .map(|i| u32::from(i >= left && i + right < t))
                .collect()
        };
        let mask = Tensor::from_vec(
            [padded(0, 0), padded(0, 5), padded(11, 0)].concat(),
            (b, t),
            &Device::Cpu,
        )
        .unwrap();
        // Row 0: a prefix of 7, branches of 8 and 4; row 1: groups of 9 and 5, then padding;
        // row 2: one sequence after left padding.
        let run = |n: usize, v: u32| vec![v; n];
        let packing = rewardkit_tokenize::Packing {
            group: [run(t, 0), run(9, 0), run(10, 1), run(t, 0)].concat(),
            branch: [run(7, 0), run(8, 1), run(4, 2), run(t, 1), run(t, 0)].concat(),
            first: vec![0, 0],
            last: vec![14, 18],
            shares_prefix: true,
        };
        let packed = Keys::packed(&mask, &packing).unwrap();
        let mode = Mode::Train { seed: 5, step: 2 };
        let cases = [(false, 0.0), (true, 0.0), (false, 0.3), (true, 0.3)];
        for ((causal, p), keys) in cases
            .into_iter()
            .flat_map(|c| [(c, Keys::new(&mask)), (c, packed.clone())])
        {
            let attn = crate::nn::Attention {
                heads,
                causal,
                scale: 0.4,
                dropout: crate::nn::Dropout::new(p, "test"),
            };
            let qkv = Var::from_tensor(&rand(&[b, t, 3 * w], 7, 1.5)).unwrap();
            let part = |i: usize| qkv.as_tensor().narrow(2, i * w, w).unwrap();
            let (q, k, v) = (part(0), part(1), part(2));
            let fused = attention(&q, &k, &v, &keys, &attn, mode).unwrap();
            let composed = match attn.dropout.draw(mode) {
                None => attn.forward_composed(&q, &k, &v, &keys, mode).unwrap(),
                Some(draw) => {
                    // The kernel draws dropout per block (a row, or a packed row's run of one
                    // group) and head, row-major within the block; outside the blocks the
                    // probabilities are zero.
                    let spans = match keys.blocks(causal).unwrap() {
                        Some(blocks) => blocks.spans.clone(),
                        None => (0..b)
                            .map(|row| crate::keys::Span {
                                row,
                                start: 0,
                                len: t,
                            })
                            .collect(),
                    };
                    let mut m = vec![1f32; b * heads * t * t];
                    for (si, span) in spans.iter().enumerate() {
                        for h in 0..heads {
                            let mut rng = draw.rng(si * heads + h);
                            for i in 0..span.len {
                                for j in 0..span.len {
                                    let kept = rng.uniform() < 1.0 - p;
                                    let at = ((span.row * heads + h) * t + span.start + i) * t
                                        + span.start
                                        + j;
                                    m[at] = if kept { (1.0 / (1.0 - p)) as f32 } else { 0.0 };
                                }
                            }
                        }
                    }
                    let m = Tensor::from_vec(m, (b, heads, t, t), &Device::Cpu).unwrap();
                    let split = |x: &Tensor| crate::nn::split_heads(x, heads).unwrap();
                    let bias = keys.bias(causal).unwrap();
                    let scores = (split(&q).matmul(&split(&k).t().unwrap()).unwrap() * 0.4)
                        .unwrap()
                        .broadcast_add(&bias)
                        .unwrap();
                    let probs = crate::nn::softmax_last_dim_composed(&scores).unwrap();
                    let out = (probs * m).unwrap().matmul(&split(&v)).unwrap();
                    crate::nn::merge_heads(&out).unwrap()
                }
            };
            let diff = max_diff(&fused, &composed);
            assert!(
                diff < 1e-5,
                "causal {causal} p {p}: values differ by {diff}"
            );
            let r = rand(&[b, t, w], 8, 1.0);
            let ga = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (composed * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let (ga, gb) = (
                ga.get(qkv.as_tensor()).unwrap(),
                gb.get(qkv.as_tensor()).unwrap(),
            );
            let diff = max_diff(ga, gb);
            assert!(
                diff < 1e-5,
                "causal {causal} p {p}: gradients differ by {diff}"
            );
            assert!(
                ga.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 1.0
            );
        }
    }

    /// Grouped-query attention (3 K/V heads for 6 query heads, as SmolLM2's 3 for 9) against
    /// the composed version over K/V heads repeated in memory (transformers' `repeat_kv`):
    /// values, and gradients of q, k and v (a K/V head's gradient sums its group's), causal, with
    /// left padding; without dropout, and with it (the same blocks' masks on both sides).
    #[test]
    fn grouped_query_attention_matches_repeated_heads() {
        let (b, t, heads, kv, d) = (2, 13, 6, 3, 4);
        let (w, wk) = (heads * d, kv * d);
        let mask = Tensor::from_vec(
            [vec![1u32; t], (0..t).map(|i| u32::from(i >= 4)).collect()].concat(),
            (b, t),
            &Device::Cpu,
        )
        .unwrap();
        let qkv = Var::from_tensor(&rand(&[b, t, w + 2 * wk], 9, 1.5)).unwrap();
        let q = qkv.as_tensor().narrow(2, 0, w).unwrap();
        let k = qkv.as_tensor().narrow(2, w, wk).unwrap();
        let v = qkv.as_tensor().narrow(2, w + wk, wk).unwrap();
        let r = rand(&[b, t, w], 10, 1.0);
        let eval = Mode::Eval;
        for p in [0.0, 0.3] {
            let attn = crate::nn::Attention {
                heads,
                causal: true,
                scale: 0.5,
                dropout: crate::nn::Dropout::new(p, "gqa"),
            };
            let mode = if p > 0.0 {
                Mode::Train { seed: 3, step: 1 }
            } else {
                eval
            };
            let keys = Keys::new(&mask);
            let fused = attention(&q, &k, &v, &keys, &attn, mode).unwrap();
            let (kr, vr) = (
                crate::nn::repeat_kv_heads(&k, d, heads / kv).unwrap(),
                crate::nn::repeat_kv_heads(&v, d, heads / kv).unwrap(),
            );
            // The same kernel over the repeated heads: the reference for dropout, whose masks
            // the composed version draws differently.
            let repeated = attention(&q, &kr, &vr, &keys, &attn, mode).unwrap();
            let diff = max_diff(&fused, &repeated);
            assert!(
                diff < 1e-6,
                "p {p}: values differ from the repeated heads' by {diff}"
            );
            if p == 0.0 {
                let composed = attn.forward_composed(&q, &k, &v, &keys, eval).unwrap();
                let diff = max_diff(&fused, &composed);
                assert!(diff < 1e-5, "values differ from the composed by {diff}");
            }
            let ga = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (repeated * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let (ga, gb) = (
                ga.get(qkv.as_tensor()).unwrap(),
                gb.get(qkv.as_tensor()).unwrap(),
            );
            let diff = max_diff(ga, gb);
            assert!(diff < 1e-5, "p {p}: gradients differ by {diff}");
            let dk: f32 = ga
                .narrow(2, w, wk)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(dk > 0.1, "no gradient reached the keys: {dk}");
        }
    }

    #[test]
    fn keys_that_do_not_divide_the_query_heads_are_refused() {
        let attn = crate::nn::Attention {
            heads: 6,
            causal: true,
            scale: 0.5,
            dropout: crate::nn::Dropout::new(0.0, "gqa"),
        };
        let q = Tensor::zeros((1, 3, 24), DType::F32, &Device::Cpu).unwrap();
        let k = Tensor::zeros((1, 3, 16), DType::F32, &Device::Cpu).unwrap();
        let mask = Tensor::ones((1, 3), DType::U32, &Device::Cpu).unwrap();
        let err = attention(&q, &k, &k, &Keys::new(&mask), &attn, Mode::Eval)
            .unwrap_err()
            .to_string();
        assert!(err.contains("do not fit queries"), "{err}");
    }
}
