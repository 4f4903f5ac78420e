//! Layer norm over the last dimension, with the weight and bias gradients.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{add_in_order, check_simd, contiguous_f32, dot, rows_per_task, sum, sum_by};

struct LayerNormOp {
    eps: f32,
}
struct LayerNormBackward {
    eps: f32,
}

impl LayerNormOp {
    fn stats(row: &[f32], eps: f32) -> (f32, f32) {
        let n = row.len() as f32;
        let mean = sum(row) / n;
        let var = sum_by(row, |v| (v - mean) * (v - mean)) / n;
        (mean, 1.0 / (var + eps).sqrt())
    }
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "rk-layer-norm"
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
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let b = contiguous_f32(s3, l3, self.name())?;
        let n = w.len();
        let mut y = vec![0f32; x.len()];
        let chunk = rows_per_task(n) * n;
        y.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(yc, xc)| layer_norm_rows(xc, w, b, yc, self.eps));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // One kernel computes dx and the sums over rows of g⊙x̂ (dw) and g (db).
        let n = w.dim(0)?;
        let out = x.contiguous()?.apply_op3_no_bwd(
            w,
            &grad.contiguous()?,
            &LayerNormBackward { eps: self.eps },
        )?;
        let dx = out.narrow(0, 0, x.elem_count())?.reshape(x.shape())?;
        let dw = out.narrow(0, x.elem_count(), n)?;
        let db = out.narrow(0, x.elem_count() + n, n)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "rk-layer-norm-bwd"
    }
    /// Output (flat): `dx` (like x), then `Σ_rows g ⊙ x̂` and `Σ_rows g` (`[n]` each), summed
    /// per block of rows and then over blocks in order (independent of the thread count).
    /// `dx = rstd · (g⊙w − mean(g⊙w) − x̂ · mean(g⊙w⊙x̂))`.
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
        let mut out = vec![0f32; total + 2 * n];
        let (dx, sums) = out.split_at_mut(total);
        let chunk = rows_per_task(n) * n;
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .map(|(dxc, (xc, gc))| layer_norm_rows_bwd(xc, w, gc, dxc, self.eps))
            .collect();
        add_in_order(sums, partials);
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

multiversion! {
    /// `y` ← layer norm of each row of `x` (rows as long as `w`).
    pub(super) fn layer_norm_rows / layer_norm_rows_base(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], eps: f32) {
        let n = w.len();
        for (yr, xr) in y.chunks_mut(n).zip(x.chunks(n)) {
            let (mean, rstd) = LayerNormOp::stats(xr, eps);
            for i in 0..n {
                yr[i] = (xr[i] - mean) * rstd * w[i] + b[i];
            }
        }
    }
}

multiversion! {
    /// `dx` of each row, and `[Σ g⊙x̂, Σ g]` over these rows.
    pub(super) fn layer_norm_rows_bwd / layer_norm_rows_bwd_base(x: &[f32], w: &[f32], g: &[f32], dx: &mut [f32], eps: f32) -> Vec<f32> {
        let n = w.len();
        let mut acc = vec![0f32; 2 * n];
        let mut gx = vec![0f32; n];
        for ((dr, xr), gr) in dx.chunks_mut(n).zip(x.chunks(n)).zip(g.chunks(n)) {
            let (mean, rstd) = LayerNormOp::stats(xr, eps);
            for i in 0..n {
                gx[i] = gr[i] * (xr[i] - mean) * rstd;
            }
            let m1 = dot(gr, w) / n as f32; // mean(g⊙w)
            let m2 = dot(&gx, w) / n as f32; // mean(g⊙w⊙x̂)
            for i in 0..n {
                let xhat = (xr[i] - mean) * rstd;
                dr[i] = rstd * (gr[i] * w[i] - m1 - xhat * m2);
            }
            let (aw, ab) = acc.split_at_mut(n);
            for i in 0..n {
                aw[i] += gx[i];
                ab[i] += gr[i];
            }
        }
        acc
    }
}

/// Layer norm over the last dimension, fused on CPU.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    check_simd()?;
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?
            .apply_op3(w, b, LayerNormOp { eps: eps as f32 })
    } else {
        crate::nn::layer_norm_composed(x, w, b, eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_diff, rand};
    use candle_core::Var;

    #[test]
    fn layer_norm_matches_composed_including_weight_and_bias_gradients() {
        // 14 rows (one block of the kernels), and 900 (three blocks, whose partial sums of the
        // weight and bias gradients are added).
        for shape in [[2, 7, 48], [3, 300, 48]] {
            layer_norm_case(&shape);
        }
    }

    fn layer_norm_case(shape: &[usize]) {
        let w = Var::from_tensor(&(rand(&[48], 3, 0.5) + 1.0).unwrap()).unwrap();
        let b = Var::from_tensor(&rand(&[48], 4, 0.5)).unwrap();
        let x = Var::from_tensor(&rand(shape, 5, 3.0)).unwrap();
        let r = rand(shape, 6, 1.0);
        let fused = layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-12).unwrap();
        let composed =
            crate::nn::layer_norm_composed(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-12)
                .unwrap();
        assert!(max_diff(&fused, &composed) < 1e-5);
        let ga = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (composed * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&x, &w, &b] {
            let d = max_diff(
                ga.get(v.as_tensor()).unwrap(),
                gb.get(v.as_tensor()).unwrap(),
            );
            assert!(d < 1e-4, "gradient differs by {d}");
        }
    }
}
