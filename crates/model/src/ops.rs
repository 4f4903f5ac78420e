//! Fused CPU kernels with their backward pass: linear layers, softmax over the last dimension,
//! layer norm, GELU (exact and tanh) and multi-head attention. Each is one pass over memory (or
//! one gemm) where the composed version in [`crate::nn`] makes five to eight (attention never
//! materialises the `[b, h, t, t]` scores), and each records a backward pass (the trap of
//! candle-nn's fused ops is that they do not). Each is also one node in candle's graph where the
//! composed version is several, each of whose backward passes copies a full-size gradient.
//! The element loops are compiled for AVX-512, AVX2 + FMA and the base target
//! (`multiversion!`) and the widest the CPU has runs. On other devices the composed versions are
//! used.
//!
//! The tests check them against the composed versions, values and gradients, and each
//! vectorised loop against its plain copy.

use std::sync::Arc;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Storage, Tensor,
};
use rayon::prelude::*;

use crate::nn::{DropoutDraw, Mode};

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

/// `e^x` in f32 with relative error below 1e-7 (Cephes' `expf`: a degree-6 polynomial on
/// `x − n ln 2`, scaled by `2^n` through the exponent bits), without a libm call, so loops over
/// it vectorise. Inputs are clamped to [−87.3, 88]: below, the result is ~1e−38 rather than 0.
#[inline]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.336_54, 88.0);
    let rounded = x * std::f32::consts::LOG2_E + ROUND;
    let n = rounded - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4; // x − n ln 2, in two parts
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // n is in the low bits of `rounded`: 2^n from them, with no float-to-int conversion.
    let biased = rounded
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    y * f32::from_bits(biased << 23)
}

/// Lanes for the reductions below: eight independent accumulators let them vectorise (a plain
/// f32 sum cannot be reordered by the compiler).
const LANES: usize = 8;

/// Σ f(x) over xs.
#[inline]
fn sum_by(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(x);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ xs.
#[inline]
fn sum(xs: &[f32]) -> f32 {
    sum_by(xs, |x| x)
}

/// Σ a ⊙ b.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// max of xs where `keep` is non-zero (−∞ when none is).
#[inline]
fn masked_max(xs: &[f32], keep: &[f32]) -> f32 {
    let keep = &keep[..xs.len()];
    let mut acc = [f32::NEG_INFINITY; LANES];
    let (xc, kc) = (xs.chunks_exact(LANES), keep.chunks_exact(LANES));
    let tail =
        (xc.remainder().iter().zip(kc.remainder())).fold(f32::NEG_INFINITY, |m, (&x, &k)| {
            if k != 0.0 {
                m.max(x)
            } else {
                m
            }
        });
    for (c, k) in xc.zip(kc) {
        for ((a, &x), &k) in acc.iter_mut().zip(c).zip(k) {
            let x = if k != 0.0 { x } else { f32::NEG_INFINITY };
            *a = if x > *a { x } else { *a };
        }
    }
    acc.iter().fold(tail, |m, &a| m.max(a))
}

/// The widest vector unit the kernels of this module use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// The base target (x86-64: 4-wide SSE2).
    Base,
    /// AVX2 with FMA (8 lanes).
    Avx2,
    /// AVX-512 F, BW, DQ, VL (16 lanes).
    Avx512,
}

/// The level the kernels run at: the widest this CPU has, lowered by the environment variable
/// `REWARDKIT_SIMD` (`avx512`, `avx2` or `base`; it can only lower it) when set, for comparing
/// numerics across machines and for the tests that run every level. Read once per process.
/// Every level computes the same operations in the same order, so the results are identical.
pub fn simd_level() -> SimdLevel {
    static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cpu = detect_simd();
        match std::env::var("REWARDKIT_SIMD").ok().as_deref() {
            Some("base") => SimdLevel::Base,
            Some("avx2") => cpu.min(SimdLevel::Avx2),
            _ => cpu,
        }
    })
}

fn detect_simd() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl");
        if avx512 && has!("avx2") && has!("fma") {
            return SimdLevel::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Base
}

/// Defines a kernel function compiled three times: for AVX-512 (F, BW, DQ, VL), for AVX2 with
/// FMA, and for the base target; each call runs the copy of [`simd_level`]. The build stays
/// portable while the loops (and the `#[inline]` helpers they call, such as [`exp`]) vectorise at
/// the machine's width: the base x86-64 target has only 4-wide SSE2. `fn name / name_base(…)`
/// also names the plain copy (the tests check the dispatched kernel against it).
macro_rules! multiversion {
    ($(#[$attr:meta])* fn $name:ident / $base:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? $body
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? $body
                match simd_level() {
                    // SAFETY: simd_level() reports a level only where the CPU has its features.
                    SimdLevel::Avx512 => return unsafe { v4($($arg),*) },
                    // SAFETY: as above.
                    SimdLevel::Avx2 => return unsafe { v3($($arg),*) },
                    SimdLevel::Base => {}
                }
            }
            $base($($arg),*)
        }

        /// The plain copy of the kernel of the same name without `_base`.
        #[allow(clippy::too_many_arguments)]
        fn $base($($arg: $ty),*) $(-> $ret)? $body
    };
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
    fn softmax_rows / softmax_rows_base(x: &[f32], y: &mut [f32], n: usize) {
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
    fn softmax_rows_bwd / softmax_rows_bwd_base(y: &[f32], g: &[f32], dx: &mut [f32], n: usize) {
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
    fn layer_norm_rows / layer_norm_rows_base(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], eps: f32) {
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
    fn layer_norm_rows_bwd / layer_norm_rows_bwd_base(x: &[f32], w: &[f32], g: &[f32], dx: &mut [f32], eps: f32) -> Vec<f32> {
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
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?
            .apply_op3(w, b, LayerNormOp { eps: eps as f32 })
    } else {
        crate::nn::layer_norm_composed(x, w, b, eps)
    }
}

// ---------------------------------------------------------------- GELU (erf)

/// erf with |error| < 4e-7 in f32 (Numerical Recipes' `erfc` Chebyshev fit, whose own error
/// is below 1.2e-7, with [`exp`]); branch-free, so loops over it vectorise.
#[inline]
fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -0.822_152_23 + t * 0.170_872_77;
    let p = 1.488_515_9 + t * p;
    let p = -1.135_204 + t * p;
    let p = 0.278_868_07 + t * p;
    let p = -0.186_288_06 + t * p;
    let p = 0.096_784_18 + t * p;
    let p = 0.374_091_96 + t * p;
    let p = 1.000_023_7 + t * p;
    let p = -1.265_512_2 + t * p;
    (1.0 - t * exp(p - z * z)).copysign(x)
}

/// The two GELUs of HF configs.
#[derive(Clone, Copy)]
enum Gelu {
    /// `x Φ(x)` (`gelu`).
    Erf,
    /// `½x (1 + tanh(√(2/π) (x + 0.044715 x³)))` (`gelu_new`; GPT-2).
    Tanh,
}

/// √(2/π).
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

impl Gelu {
    #[inline]
    fn value(self, v: f32) -> f32 {
        match self {
            Gelu::Erf => 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2)),
            Gelu::Tanh => 0.5 * v * (1.0 + tanh(SQRT_2_OVER_PI * v * (1.0 + 0.044_715 * v * v))),
        }
    }

    /// d/dx: `Φ(x) + x φ(x)`, or `½(1 + th) + ½x (1 − th²) √(2/π) (1 + 3·0.044715 x²)`.
    #[inline]
    fn grad(self, v: f32) -> f32 {
        match self {
            Gelu::Erf => {
                let cdf = 0.5 * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = 0.398_942_3 * exp(-0.5 * v * v); // 1/√(2π) e^(−x²/2)
                cdf + v * pdf
            }
            Gelu::Tanh => {
                // With e = e^{2u}: 1 + th = 2e/(e + 1) and 1 − th² = 4e/(e + 1)², free of the
                // cancellation in 1 − th·th where |th| is near 1.
                let e = exp(2.0 * SQRT_2_OVER_PI * v * (1.0 + 0.044_715 * v * v));
                let (inv, half) = (1.0 / (e + 1.0), e / (e + 1.0)); // half = (1 + th)/2
                let inner = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044_715 * v * v);
                half + 2.0 * v * half * inv * inner
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Gelu::Erf => "rk-gelu-erf",
            Gelu::Tanh => "rk-gelu-tanh",
        }
    }
}

/// tanh through [`exp`]: `1 − 2 / (e^{2u} + 1)` (|error| < 2e-7).
#[inline]
fn tanh(u: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * u) + 1.0)
}

struct GeluBackward(Gelu);

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        Gelu::name(*self)
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, Gelu::name(*self))?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(16384)
            .zip(x.par_chunks(16384))
            .for_each(|(yc, xc)| gelu_values(*self, xc, yc));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(arg.contiguous()?.apply_op2_no_bwd(
            &grad.contiguous()?,
            &GeluBackward(*self),
        )?))
    }
}

impl CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        match self.0 {
            Gelu::Erf => "rk-gelu-erf-bwd",
            Gelu::Tanh => "rk-gelu-tanh-bwd",
        }
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let g = contiguous_f32(s2, l2, self.name())?;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(16384)
            .zip(x.par_chunks(16384).zip(g.par_chunks(16384)))
            .for_each(|(dc, (xc, gc))| gelu_grads(self.0, xc, gc, dc));
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

multiversion! {
    /// `y` ← GELU(x), elementwise (one loop per kind, so each vectorises).
    fn gelu_values / gelu_values_base(kind: Gelu, x: &[f32], y: &mut [f32]) {
        match kind {
            Gelu::Erf => y.iter_mut().zip(x).for_each(|(o, &v)| *o = Gelu::Erf.value(v)),
            Gelu::Tanh => y.iter_mut().zip(x).for_each(|(o, &v)| *o = Gelu::Tanh.value(v)),
        }
    }
}

multiversion! {
    /// `dx` ← g ⊙ GELU'(x), elementwise.
    fn gelu_grads / gelu_grads_base(kind: Gelu, x: &[f32], g: &[f32], dx: &mut [f32]) {
        let rows = dx.iter_mut().zip(x).zip(g);
        match kind {
            Gelu::Erf => rows.for_each(|((o, &v), &gv)| *o = gv * Gelu::Erf.grad(v)),
            Gelu::Tanh => rows.for_each(|((o, &v), &gv)| *o = gv * Gelu::Tanh.grad(v)),
        }
    }
}

/// Exact GELU, `x Φ(x)`, fused on CPU.
pub fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Gelu::Erf)
    } else {
        x.gelu_erf()
    }
}

/// GELU's tanh approximation (candle's `gelu`, HF's `gelu_new`), fused on CPU.
pub fn gelu_tanh(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Gelu::Tanh)
    } else {
        x.gelu()
    }
}

// ---------------------------------------------------------------- linear

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
        let mut y = vec![0f32; rows * d_out];
        if let Some(b) = b {
            if b.len() != d_out {
                candle_core::bail!("rk-linear: bias of {} for {d_out} outputs", b.len());
            }
            for row in y.chunks_exact_mut(d_out) {
                row.copy_from_slice(b);
            }
        }
        // W as the `[in, out]` right-hand side: strides (row, column).
        let (rhs_rs, rhs_cs) = if self.transposed {
            (d_out, 1)
        } else {
            (1, d_in)
        };
        let threads = candle_core::utils::get_num_threads();
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        if rows > 0 && d_out > 0 {
            // SAFETY: y is rows × d_out, x rows × d_in and w d_in × d_out under the strides given.
            unsafe {
                gemm::gemm(
                    rows,
                    d_out,
                    d_in,
                    y.as_mut_ptr(),
                    1,
                    d_out as isize,
                    b.is_some(),
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
        }
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
    ) -> candle_core::Result<(Tensor, Tensor, Option<Tensor>)> {
        let (x, w) = (x.detach(), w.detach());
        let d_in = *x.dims().last().unwrap_or(&0);
        let d_out = *grad.dims().last().unwrap_or(&0);
        let x2 = x.reshape(((), d_in))?;
        let g2 = grad.detach().contiguous()?.reshape(((), d_out))?;
        let (dx, dw) = if self.transposed {
            (g2.matmul(&w.t()?)?, x2.t()?.matmul(&g2)?)
        } else {
            (g2.matmul(&w)?, g2.t()?.matmul(&x2)?)
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
        Ok((Some(dx), Some(dw)))
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
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.grads(x, w, grad, true)?;
        Ok((Some(dx), Some(dw), db))
    }
}

/// `x Wᵀ + b` (or `x W + b` when `transposed`, W `[in, out]`) over the last dimension of x,
/// fused on CPU (f32), composed from candle ops elsewhere.
pub fn linear(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    transposed: bool,
) -> candle_core::Result<Tensor> {
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

/// `out += Σ partials`, the blocks' partial sums added in block order (so a sum does not depend
/// on how many threads computed the blocks).
fn add_in_order(out: &mut [f32], partials: Vec<Vec<f32>>) {
    for p in partials {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
}

multiversion! {
    /// Σ over the rows (length `n`) of `x`.
    fn add_rows / add_rows_base(x: &[f32], n: usize) -> Vec<f32> {
        let mut acc = vec![0f32; n];
        for row in x.chunks_exact(n) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
        acc
    }
}

// ---------------------------------------------------------------- attention

/// What the attention kernels share: shapes, the key mask and the dropout draw.
#[derive(Clone)]
struct AttentionSpec {
    batch: usize,
    len: usize,
    heads: usize,
    head_dim: usize,
    scale: f32,
    causal: bool,
    /// `[batch, len]`: 1 for keys that may be attended to, 0 for padding.
    keys: Arc<Vec<f32>>,
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
    fn rows<'a>(&self, s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<Rows<'a>> {
        let CpuStorage::F32(data) = s else {
            candle_core::bail!("{op}: only f32 is supported")
        };
        let want = [self.batch, self.len, self.heads * self.head_dim];
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

    /// Element (0, 0) of head `h` of batch row `b` in `r`, and its row stride.
    fn head(&self, r: &Rows, b: usize, h: usize) -> (*const f32, usize) {
        let i = r.start + b * r.batch_stride + h * self.head_dim;
        (r.data[i..].as_ptr(), r.row_stride)
    }

    /// `p` (t×t) ← the attention probabilities of block `(b, h)` from its `q`, `k`: scaled
    /// scores, masked, softmax by row. A query that may see no key attends uniformly to all of
    /// them (what the additive −∞-like bias of the composed version gives).
    fn probs(&self, p: &mut [f32], q: (*const f32, usize), k: (*const f32, usize), b: usize) {
        let (t, d) = (self.len, self.head_dim);
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
            )
        };
        masked_softmax_rows(p, &self.keys[b * t..(b + 1) * t], self.causal);
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
    fn masked_softmax_rows / masked_softmax_rows_base(p: &mut [f32], keys: &[f32], causal: bool) {
        let t = keys.len();
        for (i, row) in p.chunks_mut(t).enumerate() {
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
    fn attention_scores_bwd / attention_scores_bwd_base(ds: &mut [f32], p: &[f32], p_used: &[f32], t: usize, keep_scale: Option<f32>, scale: f32) {
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

/// `dst` (m×n, row stride `dst_rs`, column stride 1) ← `alpha · lhs · rhs`, with `lhs` (m×k)
/// and `rhs` (k×n) given as (pointer, row stride, column stride). Single-threaded: the callers
/// run one per (batch row, head) in parallel.
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
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        false,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        0.0,
        alpha,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

/// A pointer into an output buffer, handed to the parallel blocks (each writes its own columns).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the blocks write disjoint elements.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}
impl OutPtr {
    fn at(self, i: usize) -> *mut f32 {
        // SAFETY: callers index inside the buffer.
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
        let (q, k, v) = (
            a.rows(s1, l1, self.name())?,
            a.rows(s2, l2, self.name())?,
            a.rows(s3, l3, self.name())?,
        );
        let (t, d, width) = (a.len, a.head_dim, a.heads * a.head_dim);
        let mut out = vec![0f32; a.batch * t * width];
        let dst = OutPtr(out.as_mut_ptr());
        (0..a.batch * a.heads).into_par_iter().for_each_init(
            || (vec![0f32; t * t], vec![0f32; t * t]),
            |(p, dropped), block| {
                let (b, h) = (block / a.heads, block % a.heads);
                a.probs(p, a.head(&q, b, h), a.head(&k, b, h), b);
                let p = match &a.dropout {
                    Some(draw) => {
                        a.drop_into(draw, block, p, dropped);
                        &*dropped
                    }
                    None => &*p,
                };
                let v = a.head(&v, b, h);
                // SAFETY: block (b, h) of `out` is t rows of d with row stride `width`.
                unsafe {
                    matmul(
                        t,
                        d,
                        t,
                        dst.at(b * t * width + h * d),
                        width,
                        (p.as_ptr(), t, 1),
                        (v.0, v.1, 1),
                        1.0,
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
        let n = q.elem_count();
        let part = |i: usize| out.narrow(0, i * n, n)?.reshape(q.shape());
        Ok((Some(part(0)?), Some(part(1)?), Some(part(2)?)))
    }
}

impl CustomOp3 for AttentionBackward {
    fn name(&self) -> &'static str {
        "rk-attention-bwd"
    }
    /// Output (flat): `dq`, `dk`, `dv`, each contiguous `[b, t, h·d]`. Per block, with
    /// P the probabilities (recomputed), P' = P ⊙ dropout and G the upstream gradient:
    /// `dv = P'ᵀ G`, `dP = (G vᵀ) ⊙ dropout`, `dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale`,
    /// `dq = dS k`, `dk = dSᵀ q`.
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
        let (q, k, v) = (
            a.rows(s1, l1, self.name())?,
            a.rows(s2, l2, self.name())?,
            a.rows(s3, l3, self.name())?,
        );
        let (storage, layout) = self.grad.storage_and_layout();
        let Storage::Cpu(g) = &*storage else {
            candle_core::bail!("{}: the gradient is not on the CPU", self.name())
        };
        let g = a.rows(g, layout, self.name())?;
        let (t, d, width) = (a.len, a.head_dim, a.heads * a.head_dim);
        let n = a.batch * t * width;
        let mut out = vec![0f32; 3 * n];
        let dst = OutPtr(out.as_mut_ptr());
        let keep_scale = a.dropout.as_ref().map(|draw| (1.0 / (1.0 - draw.p)) as f32);
        (0..a.batch * a.heads).into_par_iter().for_each_init(
            || (vec![0f32; t * t], vec![0f32; t * t], vec![0f32; t * t]),
            |(p, dropped, ds), block| {
                let (b, h) = (block / a.heads, block % a.heads);
                let (qh, kh, vh, gh) = (
                    a.head(&q, b, h),
                    a.head(&k, b, h),
                    a.head(&v, b, h),
                    a.head(&g, b, h),
                );
                a.probs(p, qh, kh, b);
                let p_used = match &a.dropout {
                    Some(draw) => {
                        a.drop_into(draw, block, p, dropped);
                        &*dropped
                    }
                    None => &*p,
                };
                let at = b * t * width + h * d;
                // SAFETY: every operand is t rows of d (or t) with the strides given, and
                // block (b, h) of each output is t rows of d with row stride `width`.
                unsafe {
                    // dv = P'ᵀ G
                    let pt = (p_used.as_ptr(), 1, t);
                    matmul(t, d, t, dst.at(2 * n + at), width, pt, (gh.0, gh.1, 1), 1.0);
                    // dP' = G vᵀ
                    matmul(
                        t,
                        t,
                        d,
                        ds.as_mut_ptr(),
                        t,
                        (gh.0, gh.1, 1),
                        (vh.0, 1, vh.1),
                        1.0,
                    );
                }
                attention_scores_bwd(ds, p, p_used, t, keep_scale, a.scale);
                // SAFETY: as above.
                unsafe {
                    // dq = dS k, dk = dSᵀ q
                    let ds = ds.as_ptr();
                    matmul(t, d, t, dst.at(at), width, (ds, t, 1), (kh.0, kh.1, 1), 1.0);
                    matmul(
                        t,
                        d,
                        t,
                        dst.at(n + at),
                        width,
                        (ds, 1, t),
                        (qh.0, qh.1, 1),
                        1.0,
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from(3 * n)))
    }
}

/// Multi-head attention ([`crate::nn::Attention`]) fused on CPU: per (batch row, head), the
/// scores, the masked softmax, dropout and the product with `v` in a block of t×t scratch;
/// the backward pass recomputes the probabilities the same way (nothing of size `[b, h, t, t]`
/// is kept between the passes).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    attn: &crate::nn::Attention,
    mode: Mode,
) -> candle_core::Result<Tensor> {
    let (batch, len, width) = q.dims3()?;
    if attn.heads == 0 || width % attn.heads != 0 {
        candle_core::bail!("width {width} is not a multiple of {} heads", attn.heads);
    }
    let keys: Vec<f32> = (mask.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?)
        .into_iter()
        .map(|m| if m != 0 { 1.0 } else { 0.0 })
        .collect();
    if keys.len() != batch * len {
        candle_core::bail!("mask {:?} does not match q {:?}", mask.dims(), q.dims());
    }
    let spec = AttentionSpec {
        batch,
        len,
        heads: attn.heads,
        head_dim: width / attn.heads,
        scale: attn.scale as f32,
        causal: attn.causal,
        keys: Arc::new(keys),
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
    fn exp_and_erf_are_accurate() {
        // Against f64 `exp` and the f64 erf of the same Chebyshev fit, |error| of the fit
        // itself < 1.2e-7 (Numerical Recipes 6.2).
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            assert!(rel < 2e-7, "exp({x}): relative error {rel}");
        }
        for (x, want) in [
            (0.0f32, 0.0f64),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
        ] {
            // erf(0.5), erf(1) from Abramowitz & Stegun table 7.1.
            assert!((erf(x) as f64 - want).abs() < 4e-7 && (erf(-x) as f64 + want).abs() < 4e-7);
        }
        assert_eq!(erf(10.0), 1.0);
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

    /// Values against candle's `gelu`; the backward pass against the derivative in closed form,
    /// evaluated in f64 (candle's own f32 backward loses ~1e-6 to the cancellation in
    /// 1 − tanh², where |tanh| is near 1).
    #[test]
    fn gelu_tanh_matches_candle_and_its_derivative() {
        let x = Var::from_tensor(&rand(&[5, 1000], 1, 3.0)).unwrap();
        let y = gelu_tanh(x.as_tensor()).unwrap();
        assert!(max_diff(&y, &x.as_tensor().gelu().unwrap()) < 1e-6);
        let grads = y.sum_all().unwrap().backward().unwrap();
        let got: Vec<f32> = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let xs: Vec<f32> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for (&v, &g) in xs.iter().zip(&got) {
            let v = v as f64;
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let th = (c * (v + 0.044_715 * v * v * v)).tanh();
            let want =
                0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * c * (1.0 + 3.0 * 0.044_715 * v * v);
            assert!((g as f64 - want).abs() < 1e-6, "x = {v}: {g} vs {want}");
        }
    }

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

    /// Each multiversioned kernel, run at the CPU's widest vector width, gives exactly what its
    /// plain copy gives (same operations in the same order: Rust never fuses or reorders float
    /// arithmetic on its own), on lengths that leave a remainder after the 8-lane loops.
    #[test]
    fn vectorised_kernels_equal_their_plain_copies() {
        let v = |n: usize, seed: u64, scale: f64| -> Vec<f32> {
            rand(&[n], seed, scale).to_vec1().unwrap()
        };
        let (rows, n) = (13, 45);
        let (x, g, w, b) = (
            v(rows * n, 1, 3.0),
            v(rows * n, 2, 1.0),
            v(n, 3, 1.0),
            v(n, 4, 1.0),
        );
        let both = |f: &dyn Fn(&mut [f32]), base: &dyn Fn(&mut [f32])| {
            let (mut a, mut c) = (vec![0f32; rows * n], vec![0f32; rows * n]);
            f(&mut a);
            base(&mut c);
            assert_eq!(a, c);
            assert!(a.iter().any(|&y| y != 0.0));
        };
        both(&|y| softmax_rows(&x, y, n), &|y| {
            softmax_rows_base(&x, y, n)
        });
        both(&|y| softmax_rows_bwd(&x, &g, y, n), &|y| {
            softmax_rows_bwd_base(&x, &g, y, n)
        });
        both(&|y| layer_norm_rows(&x, &w, &b, y, 1e-5), &|y| {
            layer_norm_rows_base(&x, &w, &b, y, 1e-5)
        });
        let (mut da, mut dc) = (vec![0f32; rows * n], vec![0f32; rows * n]);
        let sums = layer_norm_rows_bwd(&x, &w, &g, &mut da, 1e-5);
        assert_eq!(sums, layer_norm_rows_bwd_base(&x, &w, &g, &mut dc, 1e-5));
        assert_eq!(da, dc);
        for kind in [Gelu::Erf, Gelu::Tanh] {
            both(&|y| gelu_values(kind, &x, y), &|y| {
                gelu_values_base(kind, &x, y)
            });
            both(&|y| gelu_grads(kind, &x, &g, y), &|y| {
                gelu_grads_base(kind, &x, &g, y)
            });
        }
        let keys: Vec<f32> = (0..n).map(|i| f32::from(i % 7 != 3)).collect();
        let t = n;
        let (sq, gq) = (v(t * t, 5, 2.0), v(t * t, 6, 1.0));
        for causal in [false, true] {
            let (mut a, mut c) = (sq.clone(), sq.clone());
            masked_softmax_rows(&mut a, &keys, causal);
            masked_softmax_rows_base(&mut c, &keys, causal);
            assert_eq!(a, c);
            for keep in [None, Some(1.25)] {
                let (mut da, mut dc) = (gq.clone(), gq.clone());
                attention_scores_bwd(&mut da, &a, &a, t, keep, 0.3);
                attention_scores_bwd_base(&mut dc, &a, &a, t, keep, 0.3);
                assert_eq!(da, dc);
            }
        }
        assert_eq!(add_rows(&x, n), add_rows_base(&x, n));
    }

    /// The fused attention against [`crate::nn::Attention::forward_composed`]: values and the
    /// gradients of q, k and v, for right and left padding (left padding under a causal mask
    /// leaves queries that see no key), with q, k, v column slices of one wider tensor (GPT-2),
    /// and with dropout (the composed side applies the same masks, drawn from the same blocks).
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
        let mode = Mode::Train { seed: 5, step: 2 };
        for (causal, p) in [(false, 0.0), (true, 0.0), (false, 0.3), (true, 0.3)] {
            let attn = crate::nn::Attention {
                heads,
                causal,
                scale: 0.4,
                dropout: crate::nn::Dropout::new(p, "test"),
            };
            let qkv = Var::from_tensor(&rand(&[b, t, 3 * w], 7, 1.5)).unwrap();
            let part = |i: usize| qkv.as_tensor().narrow(2, i * w, w).unwrap();
            let (q, k, v) = (part(0), part(1), part(2));
            let fused = attention(&q, &k, &v, &mask, &attn, mode).unwrap();
            let composed = match attn.dropout.draw(mode) {
                None => attn.forward_composed(&q, &k, &v, &mask, mode).unwrap(),
                Some(draw) => {
                    let mut m = Vec::new();
                    for block in 0..b * heads {
                        let mut rng = draw.rng(block);
                        m.extend((0..t * t).map(|_| {
                            let kept = rng.uniform() < 1.0 - p;
                            if kept {
                                (1.0 / (1.0 - p)) as f32
                            } else {
                                0.0
                            }
                        }));
                    }
                    let m = Tensor::from_vec(m, (b, heads, t, t), &Device::Cpu).unwrap();
                    let split = |x: &Tensor| crate::nn::split_heads(x, heads).unwrap();
                    let bias = crate::nn::attention_bias(&mask, causal).unwrap();
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
}
