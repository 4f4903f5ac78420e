//! Softmax over the last dimension.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{check_simd, contiguous_f32, dot, exp, rows_per_task, sum};

struct Softmax;
struct SoftmaxBackward;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "rk-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, self.name())?;
        let n = l.dims().last().copied().unwrap_or(1).max(1);
        let mut y = vec![0f32; x.len()];
        let chunk = rows_per_task(n) * n;
        y.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(yc, xc)| softmax_rows(xc, yc, n));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBackward)?,
        ))
    }
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "rk-softmax-bwd"
    }
    /// `dx = y ⊙ (g − Σ g⊙y)` row by row.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(s1, l1, self.name())?;
        let g = contiguous_f32(s2, l2, self.name())?;
        let n = l1.dims().last().copied().unwrap_or(1).max(1);
        let mut dx = vec![0f32; y.len()];
        let chunk = rows_per_task(n) * n;
        dx.par_chunks_mut(chunk)
            .zip(y.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .for_each(|(dc, (yc, gc))| softmax_rows_bwd(yc, gc, dc, n));
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

multiversion! {
    /// `y` ← softmax of each row (length `n`) of `x`.
    pub(super) fn softmax_rows / softmax_rows_base(x: &[f32], y: &mut [f32], n: usize) {
        for (yr, xr) in y.chunks_mut(n).zip(x.chunks(n)) {
            let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = exp(v - max);
            }
            let inv = 1.0 / sum(yr);
            yr.iter_mut().for_each(|o| *o *= inv);
        }
    }
}

multiversion! {
    /// `dx = y ⊙ (g − Σ g⊙y)` for each row (length `n`).
    pub(super) fn softmax_rows_bwd / softmax_rows_bwd_base(y: &[f32], g: &[f32], dx: &mut [f32], n: usize) {
        for ((dr, yr), gr) in dx.chunks_mut(n).zip(y.chunks(n)).zip(g.chunks(n)) {
            let dot = dot(yr, gr);
            for ((o, &yv), &gv) in dr.iter_mut().zip(yr).zip(gr) {
                *o = yv * (gv - dot);
            }
        }
    }
}

/// Softmax over the last dimension, fused on CPU.
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    check_simd()?;
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Softmax)
    } else {
        crate::nn::softmax_last_dim_composed(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::check;

    #[test]
    fn softmax_matches_composed() {
        check(
            |x| softmax_last_dim(x).unwrap(),
            |x| crate::nn::softmax_last_dim_composed(x).unwrap(),
            &[3, 4, 37],
            1e-6,
        );
    }
}
