//! SwiGLU, the Llama MLP's gate: `silu(gate) ⊙ up`, `silu(x) = x · σ(x)`. One op where the
//! composed version is two (keeping `silu(gate)` for the product's backward pass); the backward
//! pass recomputes `σ(gate)` from the inputs, which the op keeps.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{check_simd, contiguous_f32, exp};

struct SwiGlu;
struct SwiGluBackward;

/// Elements per parallel task.
const CHUNK: usize = 16384;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "rk-swiglu"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let gate = contiguous_f32(s1, l1, self.name())?;
        let up = contiguous_f32(s2, l2, self.name())?;
        if l1.dims() != l2.dims() {
            candle_core::bail!(
                "{}: gate {:?} and up {:?} differ",
                self.name(),
                l1.dims(),
                l2.dims()
            );
        }
        let mut y = vec![0f32; gate.len()];
        y.par_chunks_mut(CHUNK)
            .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
            .for_each(|(yc, (gc, uc))| swiglu_values(gc, uc, yc));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = gate.elem_count();
        let out = gate.contiguous()?.apply_op3_no_bwd(
            &up.contiguous()?,
            &grad.contiguous()?,
            &SwiGluBackward,
        )?;
        let dgate = out.narrow(0, 0, n)?.reshape(gate.shape())?;
        let dup = out.narrow(0, n, n)?.reshape(up.shape())?;
        Ok((Some(dgate), Some(dup)))
    }
}

impl CustomOp3 for SwiGluBackward {
    fn name(&self) -> &'static str {
        "rk-swiglu-bwd"
    }
    /// Output (flat): `d gate` then `d up`, each like the inputs:
    /// `d up = g ⊙ silu(gate)`, `d gate = g ⊙ up ⊙ σ(gate) · (1 + gate · (1 − σ(gate)))`.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let gate = contiguous_f32(s1, l1, self.name())?;
        let up = contiguous_f32(s2, l2, self.name())?;
        let g = contiguous_f32(s3, l3, self.name())?;
        let n = gate.len();
        let mut out = vec![0f32; 2 * n];
        let (dgate, dup) = out.split_at_mut(n);
        dgate
            .par_chunks_mut(CHUNK)
            .zip(dup.par_chunks_mut(CHUNK))
            .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((dg, du), (gc, uc)), gr)| swiglu_grads(gc, uc, gr, dg, du));
        Ok((CpuStorage::F32(out), Shape::from(2 * n)))
    }
}

multiversion! {
    /// `y` ← `silu(gate) ⊙ up`.
    pub(super) fn swiglu_values / swiglu_values_base(gate: &[f32], up: &[f32], y: &mut [f32]) {
        for ((o, &a), &u) in y.iter_mut().zip(gate).zip(up) {
            let s = 1.0 / (1.0 + exp(-a));
            *o = a * s * u;
        }
    }
}

multiversion! {
    /// The gradients of `silu(gate) ⊙ up` for the upstream gradient `g`.
    pub(super) fn swiglu_grads / swiglu_grads_base(gate: &[f32], up: &[f32], g: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
        for i in 0..gate.len() {
            let a = gate[i];
            let s = 1.0 / (1.0 + exp(-a));
            dup[i] = g[i] * a * s;
            dgate[i] = g[i] * up[i] * s * (1.0 + a * (1.0 - s));
        }
    }
}

/// `silu(gate) ⊙ up`, fused on CPU; composed from candle ops elsewhere.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    check_simd()?;
    if gate.device().is_cpu() && gate.dtype() == DType::F32 && up.dtype() == DType::F32 {
        gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
    } else {
        gate.silu()? * up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_diff, rand};
    use candle_core::Var;

    #[test]
    fn swiglu_matches_composed_values_and_both_gradients() {
        // 40,000 elements: three parallel chunks, the last one short.
        let shape = [2, 100, 200];
        let gate = Var::from_tensor(&rand(&shape, 1, 4.0)).unwrap();
        let up = Var::from_tensor(&rand(&shape, 2, 1.0)).unwrap();
        let r = rand(&shape, 3, 1.0);
        let fused = swiglu(gate.as_tensor(), up.as_tensor()).unwrap();
        let composed = (gate.as_tensor().silu().unwrap() * up.as_tensor()).unwrap();
        assert!(max_diff(&fused, &composed) < 1e-5);
        let ga = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (composed * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&gate, &up] {
            let d = max_diff(
                ga.get(v.as_tensor()).unwrap(),
                gb.get(v.as_tensor()).unwrap(),
            );
            assert!(d < 1e-5, "gradient differs by {d}");
        }
    }
}
