//! RMS norm over the last dimension (Llama's `x · rsqrt(mean(x²) + eps) · w`), with the weight
//! gradient. The backward pass recomputes `rsqrt` from `x`, so the op keeps nothing but its
//! input (which the residual stream keeps anyway); the composed version keeps `x²`, the
//! normalised `x` and the product with `w`, three full-size tensors a block.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{add_in_order, check_simd, contiguous_f32, dot, rows_per_task, sum_by};

struct RmsNormOp {
    eps: f32,
}
struct RmsNormBackward {
    eps: f32,
}

/// `1 / sqrt(mean(x²) + eps)` of one row.
#[inline]
fn rstd(row: &[f32], eps: f32) -> f32 {
    let ms = sum_by(row, |v| v * v) / row.len() as f32;
    1.0 / (ms + eps).sqrt()
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "rk-rms-norm"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let n = w.len();
        if n == 0 || !x.len().is_multiple_of(n) {
            candle_core::bail!("{}: rows of {n} do not divide {:?}", self.name(), l1.dims());
        }
        let mut y = vec![0f32; x.len()];
        let chunk = rows_per_task(n) * n;
        y.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(yc, xc)| rms_norm_rows(xc, w, yc, self.eps));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // One kernel computes dx and the sum over rows of g⊙x̂ (dw).
        let n = w.dim(0)?;
        let out = x.contiguous()?.apply_op3_no_bwd(
            w,
            &grad.contiguous()?,
            &RmsNormBackward { eps: self.eps },
        )?;
        let dx = out.narrow(0, 0, x.elem_count())?.reshape(x.shape())?;
        let dw = out.narrow(0, x.elem_count(), n)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rk-rms-norm-bwd"
    }
    /// Output (flat): `dx` (like x), then `Σ_rows g ⊙ x̂` (`[n]`), summed per block of rows and
    /// then over blocks in order (independent of the thread count).
    /// `dx = rstd · (g⊙w − x̂ · mean(g⊙w⊙x̂))` with `x̂ = x · rstd`.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let g = contiguous_f32(s3, l3, self.name())?;
        let n = w.len();
        let total = x.len();
        let mut out = vec![0f32; total + n];
        let (dx, sums) = out.split_at_mut(total);
        let chunk = rows_per_task(n) * n;
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .map(|(dxc, (xc, gc))| rms_norm_rows_bwd(xc, w, gc, dxc, self.eps))
            .collect();
        add_in_order(sums, partials);
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

multiversion! {
    /// `y` ← RMS norm of each row of `x` (rows as long as `w`).
    pub(super) fn rms_norm_rows / rms_norm_rows_base(x: &[f32], w: &[f32], y: &mut [f32], eps: f32) {
        let n = w.len();
        for (yr, xr) in y.chunks_mut(n).zip(x.chunks(n)) {
            let r = rstd(xr, eps);
            for i in 0..n {
                yr[i] = xr[i] * r * w[i];
            }
        }
    }
}

multiversion! {
    /// `dx` of each row, and `Σ g⊙x̂` over these rows.
    pub(super) fn rms_norm_rows_bwd / rms_norm_rows_bwd_base(x: &[f32], w: &[f32], g: &[f32], dx: &mut [f32], eps: f32) -> Vec<f32> {
        let n = w.len();
        let mut acc = vec![0f32; n];
        let mut gx = vec![0f32; n];
        for ((dr, xr), gr) in dx.chunks_mut(n).zip(x.chunks(n)).zip(g.chunks(n)) {
            let r = rstd(xr, eps);
            for i in 0..n {
                gx[i] = gr[i] * xr[i] * r;
            }
            let m = dot(&gx, w) / n as f32; // mean(g⊙w⊙x̂)
            for i in 0..n {
                dr[i] = r * (gr[i] * w[i] - xr[i] * r * m);
            }
            for i in 0..n {
                acc[i] += gx[i];
            }
        }
        acc
    }
}

/// RMS norm over the last dimension, fused on CPU (`x · rsqrt(mean(x²) + eps) · w`, as
/// transformers' `LlamaRMSNorm`); composed from candle ops elsewhere.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    check_simd()?;
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op2(w, RmsNormOp { eps: eps as f32 })
    } else {
        crate::nn::rms_norm_composed(x, w, eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_diff, rand};
    use candle_core::Var;

    #[test]
    fn rms_norm_matches_composed_including_the_weight_gradient() {
        // 14 rows (one block of the kernels), and 900 (three blocks, whose partial sums of the
        // weight gradient are added).
        for shape in [[2, 7, 48], [3, 300, 48]] {
            let w = Var::from_tensor(&(rand(&[48], 3, 0.5) + 1.0).unwrap()).unwrap();
            let x = Var::from_tensor(&rand(&shape, 5, 3.0)).unwrap();
            let r = rand(&shape, 6, 1.0);
            let fused = rms_norm(x.as_tensor(), w.as_tensor(), 1e-5).unwrap();
            let composed =
                crate::nn::rms_norm_composed(x.as_tensor(), w.as_tensor(), 1e-5).unwrap();
            assert!(max_diff(&fused, &composed) < 1e-5);
            let ga = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (composed * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in [&x, &w] {
                let d = max_diff(
                    ga.get(v.as_tensor()).unwrap(),
                    gb.get(v.as_tensor()).unwrap(),
                );
                assert!(d < 1e-4, "gradient differs by {d}");
            }
        }
    }

    /// A row of zeros (a padded position of a model with no bias) normalises to zeros with a
    /// finite gradient, as the composed version does (`eps` keeps the root away from 0).
    #[test]
    fn a_zero_row_gives_zeros_and_finite_gradients() {
        let w = Var::from_tensor(&rand(&[16], 1, 1.0)).unwrap();
        let x = Var::from_tensor(
            &Tensor::zeros((2, 16), DType::F32, &candle_core::Device::Cpu).unwrap(),
        )
        .unwrap();
        let y = rms_norm(x.as_tensor(), w.as_tensor(), 1e-6).unwrap();
        assert_eq!(
            y.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx: Vec<f32> = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(dx.iter().all(|v| v.is_finite()));
        // d/dx of x·rsqrt(eps)·w at 0 is w / sqrt(eps).
        let w: Vec<f32> = w.as_tensor().to_vec1().unwrap();
        assert!((dx[3] - w[3] / 1e-6f32.sqrt()).abs() < 1e-2 * (w[3] / 1e-6f32.sqrt()).abs());
    }
}
