//! Fused CPU kernels with their backward pass: softmax over the last dimension, layer norm and
//! exact (erf) GELU. Each is one pass over memory where the composed version in [`crate::nn`]
//! makes five to eight, and each records a backward pass (the trap of candle-nn's fused ops is
//! that they do not). On other devices the composed versions are used.
//!
//! The tests check them against the composed versions, values and gradients.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("{op}: only f32 is supported"),
    };
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

/// Rows per parallel task: enough work per task to amortise scheduling.
fn rows_per_task(row: usize) -> usize {
    (16384 / row.max(1)).max(1)
}

// ---------------------------------------------------------------- softmax

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
            .for_each(|(yc, xc)| {
                for (yr, xr) in yc.chunks_mut(n).zip(xc.chunks(n)) {
                    let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f32;
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        *o = (v - max).exp();
                        sum += *o;
                    }
                    let inv = 1.0 / sum;
                    yr.iter_mut().for_each(|o| *o *= inv);
                }
            });
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
            .for_each(|(dc, (yc, gc))| {
                for ((dr, yr), gr) in dc.chunks_mut(n).zip(yc.chunks(n)).zip(gc.chunks(n)) {
                    let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                    for ((o, &yv), &gv) in dr.iter_mut().zip(yr).zip(gr) {
                        *o = yv * (gv - dot);
                    }
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Softmax over the last dimension, fused on CPU.
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Softmax)
    } else {
        crate::nn::softmax_last_dim_composed(x)
    }
}

// ---------------------------------------------------------------- layer norm

struct LayerNormOp {
    eps: f32,
}
struct LayerNormBackward {
    eps: f32,
}

impl LayerNormOp {
    fn stats(row: &[f32], eps: f32) -> (f32, f32) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
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
            .for_each(|(yc, xc)| {
                for (yr, xr) in yc.chunks_mut(n).zip(xc.chunks(n)) {
                    let (mean, rstd) = Self::stats(xr, self.eps);
                    for i in 0..n {
                        yr[i] = (xr[i] - mean) * rstd * w[i] + b[i];
                    }
                }
            });
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
        // One kernel computes dx and, per row, g⊙x̂ and g; the sums over rows give dw and db.
        let n = w.dim(0)?;
        let out = x.contiguous()?.apply_op3_no_bwd(
            w,
            &grad.contiguous()?,
            &LayerNormBackward { eps: self.eps },
        )?;
        let dx = out.narrow(0, 0, x.elem_count())?.reshape(x.shape())?;
        let rows = x.elem_count() / n;
        let per_row = out
            .narrow(0, x.elem_count(), 2 * rows * n)?
            .reshape((rows, 2, n))?;
        let dw = per_row.narrow(1, 0, 1)?.sum((0, 1))?;
        let db = per_row.narrow(1, 1, 1)?.sum((0, 1))?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "rk-layer-norm-bwd"
    }
    /// Output (flat): `dx` (like x), then per row `[g ⊙ x̂, g]`.
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
        let mut out = vec![0f32; total * 3];
        let (dx, parts) = out.split_at_mut(total);
        let rows_chunk = rows_per_task(n);
        dx.par_chunks_mut(rows_chunk * n)
            .zip(parts.par_chunks_mut(rows_chunk * 2 * n))
            .zip(
                x.par_chunks(rows_chunk * n)
                    .zip(g.par_chunks(rows_chunk * n)),
            )
            .for_each(|((dxc, pc), (xc, gc))| {
                for (((dr, pr), xr), gr) in dxc
                    .chunks_mut(n)
                    .zip(pc.chunks_mut(2 * n))
                    .zip(xc.chunks(n))
                    .zip(gc.chunks(n))
                {
                    let (mean, rstd) = LayerNormOp::stats(xr, self.eps);
                    let (mut m1, mut m2) = (0f32, 0f32);
                    for i in 0..n {
                        let xhat = (xr[i] - mean) * rstd;
                        let gw = gr[i] * w[i];
                        m1 += gw;
                        m2 += gw * xhat;
                        pr[i] = gr[i] * xhat;
                        pr[n + i] = gr[i];
                    }
                    let (m1, m2) = (m1 / n as f32, m2 / n as f32);
                    for i in 0..n {
                        let xhat = (xr[i] - mean) * rstd;
                        dr[i] = rstd * (gr[i] * w[i] - m1 - xhat * m2);
                    }
                }
            });
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

/// Layer norm over the last dimension, fused on CPU.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?
            .apply_op3(w, b, LayerNormOp { eps: eps as f32 })
    } else {
        crate::nn::layer_norm_composed(x, w, b, eps)
    }
}

// ---------------------------------------------------------------- GELU (erf)

/// erf with |error| < 1.2e-7 (Numerical Recipes' `erfc` Chebyshev fit), branch-free enough to
/// vectorise.
#[inline]
fn erf(x: f32) -> f32 {
    let z = x.abs() as f64;
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let v = (1.0 - r) as f32;
    if x >= 0.0 {
        v
    } else {
        -v
    }
}

struct GeluErf;
struct GeluErfBackward;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "rk-gelu-erf"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, self.name())?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(16384)
            .zip(x.par_chunks(16384))
            .for_each(|(yc, xc)| {
                for (o, &v) in yc.iter_mut().zip(xc) {
                    *o = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            arg.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &GeluErfBackward)?,
        ))
    }
}

impl CustomOp2 for GeluErfBackward {
    fn name(&self) -> &'static str {
        "rk-gelu-erf-bwd"
    }
    /// `d/dx [x Φ(x)] = Φ(x) + x φ(x)`.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let g = contiguous_f32(s2, l2, self.name())?;
        let inv_sqrt_2pi = 0.398_942_3_f32; // 1/√(2π)
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(16384)
            .zip(x.par_chunks(16384).zip(g.par_chunks(16384)))
            .for_each(|(dc, (xc, gc))| {
                for ((o, &v), &gv) in dc.iter_mut().zip(xc).zip(gc) {
                    let cdf = 0.5 * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
                    let pdf = inv_sqrt_2pi * (-0.5 * v * v).exp();
                    *o = gv * (cdf + v * pdf);
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Exact GELU, `x Φ(x)`, fused on CPU.
pub fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(GeluErf)
    } else {
        x.gelu_erf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand(shape: &[usize], seed: u64, scale: f64) -> Tensor {
        let mut rng = crate::Rng::new(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// Values and gradients of `fused` against `composed` for a random input and a random
    /// upstream gradient (loss = Σ out ⊙ r).
    fn check(
        fused: impl Fn(&Tensor) -> Tensor,
        composed: impl Fn(&Tensor) -> Tensor,
        shape: &[usize],
        tol: f32,
    ) {
        let x = Var::from_tensor(&rand(shape, 1, 2.0)).unwrap();
        let r = rand(shape, 2, 1.0);
        let (a, b) = (fused(x.as_tensor()), composed(x.as_tensor()));
        assert!(
            max_diff(&a, &b) < tol,
            "values differ by {}",
            max_diff(&a, &b)
        );
        let ga = (a * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (b * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let (ga, gb) = (
            ga.get(x.as_tensor()).unwrap(),
            gb.get(x.as_tensor()).unwrap(),
        );
        assert!(
            max_diff(ga, gb) < tol,
            "gradients differ by {}",
            max_diff(ga, gb)
        );
    }

    #[test]
    fn softmax_matches_composed() {
        check(
            |x| softmax_last_dim(x).unwrap(),
            |x| crate::nn::softmax_last_dim_composed(x).unwrap(),
            &[3, 4, 37],
            1e-6,
        );
    }

    #[test]
    fn gelu_matches_candle() {
        check(
            |x| gelu_erf(x).unwrap(),
            |x| x.gelu_erf().unwrap(),
            &[5, 1000],
            1e-6,
        );
    }

    #[test]
    fn layer_norm_matches_composed_including_weight_and_bias_gradients() {
        let w = Var::from_tensor(&(rand(&[48], 3, 0.5) + 1.0).unwrap()).unwrap();
        let b = Var::from_tensor(&rand(&[48], 4, 0.5)).unwrap();
        let x = Var::from_tensor(&rand(&[2, 7, 48], 5, 3.0)).unwrap();
        let r = rand(&[2, 7, 48], 6, 1.0);
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
