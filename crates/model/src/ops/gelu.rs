//! GELU, exact (`x Φ(x)`) and its tanh approximation.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{check_simd, contiguous_f32, exp};

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
pub(super) enum Gelu {
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
    pub(super) fn gelu_values / gelu_values_base(kind: Gelu, x: &[f32], y: &mut [f32]) {
        match kind {
            Gelu::Erf => y.iter_mut().zip(x).for_each(|(o, &v)| *o = Gelu::Erf.value(v)),
            Gelu::Tanh => y.iter_mut().zip(x).for_each(|(o, &v)| *o = Gelu::Tanh.value(v)),
        }
    }
}

multiversion! {
    /// `dx` ← g ⊙ GELU'(x), elementwise.
    pub(super) fn gelu_grads / gelu_grads_base(kind: Gelu, x: &[f32], g: &[f32], dx: &mut [f32]) {
        let rows = dx.iter_mut().zip(x).zip(g);
        match kind {
            Gelu::Erf => rows.for_each(|((o, &v), &gv)| *o = gv * Gelu::Erf.grad(v)),
            Gelu::Tanh => rows.for_each(|((o, &v), &gv)| *o = gv * Gelu::Tanh.grad(v)),
        }
    }
}

/// Exact GELU, `x Φ(x)`, fused on CPU.
pub fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    check_simd()?;
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Gelu::Erf)
    } else {
        x.gelu_erf()
    }
}

/// GELU's tanh approximation (candle's `gelu`, HF's `gelu_new`), fused on CPU.
pub fn gelu_tanh(x: &Tensor) -> candle_core::Result<Tensor> {
    check_simd()?;
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Gelu::Tanh)
    } else {
        x.gelu()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{check, max_diff, rand};
    use candle_core::Var;

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
}
