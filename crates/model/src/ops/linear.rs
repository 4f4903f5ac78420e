//! Linear layers (`nn.Linear` and GPT-2's `Conv1D`) as one gemm, and column sums.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{add_in_order, check_simd, contiguous_f32, rows_per_task, skinny_gemm};

/// `y = x Wᵀ + b` (W `[out, in]`, `nn.Linear`) or `y = x W + b` (W `[in, out]`, GPT-2's
/// `Conv1D`), x `[..., in]`: one gemm that starts from the bias rows, and one node in the graph.
/// Composed from candle ops, the same layer is five nodes (two reshapes, a transpose, the matmul,
/// the broadcast add) whose backward passes each copy a full-size gradient; here the backward is
/// two matmuls and a column sum, with the weight gradient made in the weight's own layout.
struct LinearOp {
    /// W stored `[in, out]` (Conv1D).
    transposed: bool,
}

impl LinearOp {
    /// `[rows, out]` from contiguous x, W and (optional) b.
    fn compute(
        &self,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        d_in: usize,
    ) -> candle_core::Result<Vec<f32>> {
        if d_in == 0 || !w.len().is_multiple_of(d_in) || !x.len().is_multiple_of(d_in) {
            candle_core::bail!(
                "rk-linear: input of {} values, weight of {} for {d_in} inputs",
                x.len(),
                w.len()
            );
        }
        let (rows, d_out) = (x.len() / d_in, w.len() / d_in);
        if b.is_some_and(|b| b.len() != d_out) {
            candle_core::bail!(
                "rk-linear: bias of {} for {d_out} outputs",
                b.map_or(0, <[f32]>::len)
            );
        }
        if !self.transposed && skinny_gemm::applies(rows, d_in, d_out) {
            return Ok(skinny_gemm::skinny_gemm(x, w, b, d_in, rows, d_out));
        }
        let mut y = vec![0f32; rows * d_out];
        if let Some(b) = b {
            for row in y.chunks_exact_mut(d_out) {
                row.copy_from_slice(b);
            }
        }
        gemm_xw(x, w, &mut y, d_in, self.transposed, b.is_some())?;
        Ok(y)
    }

    fn out_shape(&self, x: &Layout, w: &Layout) -> candle_core::Result<Shape> {
        let (wd0, wd1) = w.shape().dims2()?;
        let (d_in, d_out) = if self.transposed {
            (wd0, wd1)
        } else {
            (wd1, wd0)
        };
        let mut dims = x.dims().to_vec();
        match dims.last_mut() {
            Some(last) if *last == d_in => *last = d_out,
            _ => candle_core::bail!(
                "rk-linear: input {:?} does not end in the weight's {d_in} inputs",
                x.dims()
            ),
        }
        Ok(Shape::from(dims))
    }

    fn d_in(&self, w: &Layout) -> candle_core::Result<usize> {
        let (a, b) = w.shape().dims2()?;
        Ok(if self.transposed { a } else { b })
    }

    /// Gradients of x and W (and of b, when `with_bias`) from the output gradient.
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
        with_bias: bool,
    ) -> candle_core::Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
        // A weight that records no graph (a frozen LoRA base) gets no gradient: skip its matmul.
        let need_w = w.track_op();
        let (x, w) = (x.detach(), w.detach());
        let d_in = *x.dims().last().unwrap_or(&0);
        let d_out = *grad.dims().last().unwrap_or(&0);
        let x2 = x.reshape(((), d_in))?;
        let g2 = grad.detach().contiguous()?.reshape(((), d_out))?;
        let (dx, dw) = if self.transposed {
            let dw = need_w.then(|| x2.t()?.matmul(&g2)).transpose()?;
            (g2.matmul(&w.t()?)?, dw)
        } else {
            let dw = need_w.then(|| g2.t()?.matmul(&x2)).transpose()?;
            (g2.matmul(&w)?, dw)
        };
        let db = if with_bias {
            Some(column_sums(&g2)?)
        } else {
            None
        };
        Ok((dx.reshape(x.shape())?, dw, db))
    }
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "rk-linear"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "rk-linear")?;
        let w = contiguous_f32(s2, l2, "rk-linear")?;
        let y = self.compute(x, w, None, self.d_in(l2)?)?;
        Ok((CpuStorage::F32(y), self.out_shape(l1, l2)?))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.grads(x, w, grad, false)?;
        Ok((Some(dx), dw))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "rk-linear"
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
        let x = contiguous_f32(s1, l1, "rk-linear")?;
        let w = contiguous_f32(s2, l2, "rk-linear")?;
        let b = contiguous_f32(s3, l3, "rk-linear")?;
        let y = self.compute(x, w, Some(b), self.d_in(l2)?)?;
        Ok((CpuStorage::F32(y), self.out_shape(l1, l2)?))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.grads(x, w, grad, b.track_op())?;
        Ok((Some(dx), dw, db))
    }
}

/// `y ← x · W` (`+ y` when `accumulate`) by the gemm crate on candle's thread count: x
/// `[rows, d_in]`, y `[rows, d_out]`, W `[d_out, d_in]` read as its transpose (`nn.Linear`) or,
/// when `transposed`, `[d_in, d_out]` as it is (`Conv1D`); all row-major.
pub(super) fn gemm_xw(
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    d_in: usize,
    transposed: bool,
    accumulate: bool,
) -> candle_core::Result<()> {
    if d_in == 0 || !x.len().is_multiple_of(d_in) || !w.len().is_multiple_of(d_in) {
        candle_core::bail!(
            "rk-linear: {} inputs, {} weights for {d_in} inputs",
            x.len(),
            w.len()
        );
    }
    let (rows, d_out) = (x.len() / d_in, w.len() / d_in);
    if y.len() != rows * d_out {
        candle_core::bail!("rk-linear: {} outputs for {rows} × {d_out}", y.len());
    }
    if rows == 0 || d_out == 0 {
        return Ok(());
    }
    // W as the `[in, out]` right-hand side: strides (row, column).
    let (rhs_rs, rhs_cs) = if transposed { (d_out, 1) } else { (1, d_in) };
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: y is rows × d_out, x rows × d_in and w d_in × d_out under the strides given
    // (lengths checked above).
    unsafe {
        gemm::gemm(
            rows,
            d_out,
            d_in,
            y.as_mut_ptr(),
            1,
            d_out as isize,
            accumulate,
            x.as_ptr(),
            1,
            d_in as isize,
            w.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    };
    Ok(())
}

/// `x Wᵀ + b` (or `x W + b` when `transposed`, W `[in, out]`) over the last dimension of x,
/// fused on CPU (f32), composed from candle ops elsewhere.
pub fn linear(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    transposed: bool,
) -> candle_core::Result<Tensor> {
    check_simd()?;
    let op = LinearOp { transposed };
    if x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32 {
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        match b {
            Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
            None => x.apply_op2(&w, op),
        }
    } else {
        crate::nn::linear_composed(x, w, b, transposed)
    }
}

/// Sums over the rows of a contiguous `[rows, n]` f32 matrix (no backward pass): `[n]`.
pub(crate) fn column_sums(x: &Tensor) -> candle_core::Result<Tensor> {
    check_simd()?;
    x.contiguous()?.apply_op1_no_bwd(&ColumnSums)
}

struct ColumnSums;

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "rk-column-sums"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, self.name())?;
        let (_, n) = l.shape().dims2()?;
        Ok((CpuStorage::F32(sum_rows(x, n)), Shape::from(n)))
    }
}

/// Column sums of a row-major `[_, n]` slice, the rows split among threads (partial sums per
/// block, then added in block order: the result does not depend on the thread count).
fn sum_rows(x: &[f32], n: usize) -> Vec<f32> {
    if n == 0 {
        return Vec::new();
    }
    let block = rows_per_task(n) * n;
    let partials: Vec<Vec<f32>> = x.par_chunks(block).map(|c| add_rows(c, n)).collect();
    let mut out = vec![0f32; n];
    add_in_order(&mut out, partials);
    out
}

multiversion! {
    /// Σ over the rows (length `n`) of `x`.
    pub(super) fn add_rows / add_rows_base(x: &[f32], n: usize) -> Vec<f32> {
        let mut acc = vec![0f32; n];
        for row in x.chunks_exact(n) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_diff, rand};
    use candle_core::Var;

    /// The fused linear layer against [`crate::nn::linear_composed`]: values and the gradients
    /// of x, W and b, for both weight layouts (`nn.Linear` `[out, in]`, GPT-2's `Conv1D`
    /// `[in, out]`), with and without bias, on a 3-D input whose 700 rows span several blocks of
    /// the bias-gradient sum.
    #[test]
    fn linear_matches_composed() {
        let (d_in, d_out) = (37, 21);
        for transposed in [false, true] {
            for with_bias in [true, false] {
                let wshape = if transposed {
                    [d_in, d_out]
                } else {
                    [d_out, d_in]
                };
                let w = Var::from_tensor(&rand(&wshape, 11, 0.3)).unwrap();
                let b = Var::from_tensor(&rand(&[d_out], 12, 1.0)).unwrap();
                let x = Var::from_tensor(&rand(&[7, 100, d_in], 13, 1.0)).unwrap();
                let r = rand(&[7, 100, d_out], 14, 1.0);
                let bias = with_bias.then(|| b.as_tensor());
                let fused = linear(x.as_tensor(), w.as_tensor(), bias, transposed).unwrap();
                let composed =
                    crate::nn::linear_composed(x.as_tensor(), w.as_tensor(), bias, transposed)
                        .unwrap();
                assert_eq!(fused.dims(), &[7, 100, d_out]);
                let d = max_diff(&fused, &composed);
                assert!(d < 1e-5, "{transposed} {with_bias}: values differ by {d}");
                let ga = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let gb = (composed * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let vars = if with_bias {
                    vec![&x, &w, &b]
                } else {
                    assert!(ga.get(b.as_tensor()).is_none());
                    vec![&x, &w]
                };
                for v in vars {
                    let (a, c) = (
                        ga.get(v.as_tensor()).unwrap(),
                        gb.get(v.as_tensor()).unwrap(),
                    );
                    assert_eq!(a.dims(), v.dims(), "gradient in the parameter's layout");
                    let d = max_diff(a, c);
                    assert!(
                        d < 1e-4,
                        "{transposed} {with_bias}: gradient differs by {d}"
                    );
                }
            }
        }
    }
}
