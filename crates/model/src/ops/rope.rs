//! Rotary position embeddings (transformers' `rotate_half` layout) on `[b, t, heads, d]`, the
//! heads after the positions as the projections give them. RoPE is a rotation, so its backward
//! pass is the rotation by the opposite angles and keeps nothing: one op and one output where
//! the composed version (`x·cos + rotate_half(x)·sin`) keeps four tensors of `x`'s size.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{check_simd, contiguous_f32};

/// The cos and sin of every position's angles, `[b, t, d/2]` each: for position `p` of batch row
/// `i`, `cos[(i·t + j)·d/2 + f] = cos(p · inv_freq[f])`.
#[derive(Clone, Debug)]
pub struct RopeTables {
    batch: usize,
    len: usize,
    half: usize,
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
}

impl RopeTables {
    /// The tables for the position ids `positions[i][j]` of each batch row (all rows as long),
    /// in f32 like transformers (which disables autocast for the product `p · inv_freq`).
    pub fn new(inv_freq: &[f32], positions: &[Vec<u32>]) -> candle_core::Result<Self> {
        let batch = positions.len();
        let len = positions.first().map_or(0, Vec::len);
        if positions.iter().any(|r| r.len() != len) {
            candle_core::bail!("rope: position rows of different lengths");
        }
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(batch * len * half);
        let mut sin = Vec::with_capacity(batch * len * half);
        for &p in positions.iter().flatten() {
            for &f in inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok(RopeTables {
            batch,
            len,
            half,
            cos: Arc::new(cos),
            sin: Arc::new(sin),
        })
    }

    /// `(cos, sin)` as `[b, t, 1, d]` tensors in transformers' layout (the angles twice over,
    /// `cat(freqs, freqs)`), for the composed version.
    pub fn tensors(&self, dev: &candle_core::Device) -> candle_core::Result<(Tensor, Tensor)> {
        let full = |half: &[f32]| -> Vec<f32> {
            half.chunks(self.half.max(1))
                .flat_map(|c| c.iter().chain(c.iter()).copied())
                .collect()
        };
        let shape = (self.batch, self.len, 1, 2 * self.half);
        Ok((
            Tensor::from_vec(full(&self.cos), shape, dev)?,
            Tensor::from_vec(full(&self.sin), shape, dev)?,
        ))
    }
}

/// The rotation (or, `inverse`, its transpose) as an op.
struct Rope {
    tables: RopeTables,
    inverse: bool,
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rk-rope"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, self.name())?;
        let RopeTables {
            batch, len, half, ..
        } = self.tables;
        let (b, t, heads, d) = l.shape().dims4()?;
        if (b, t, d) != (batch, len, 2 * half) {
            candle_core::bail!(
                "{}: x {:?} does not match tables of [{batch}, {len}, {half}]",
                self.name(),
                l.dims()
            );
        }
        let mut y = vec![0f32; x.len()];
        let position = heads * d;
        let sign = if self.inverse { -1.0 } else { 1.0 };
        y.par_chunks_mut(position)
            .zip(x.par_chunks(position))
            .enumerate()
            .for_each(|(i, (yp, xp))| {
                let (cos, sin) = (
                    &self.tables.cos[i * half..(i + 1) * half],
                    &self.tables.sin[i * half..(i + 1) * half],
                );
                rotate_heads(xp, yp, cos, sin, sign);
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let back = Rope {
            tables: self.tables.clone(),
            inverse: !self.inverse,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

multiversion! {
    /// One position's heads (`x`, `y`: heads × d): `y1 = x1·cos − s·x2·sin`,
    /// `y2 = x2·cos + s·x1·sin` over the halves of each head, `s` = 1 for the rotation and −1
    /// for its inverse.
    pub(super) fn rotate_heads / rotate_heads_base(x: &[f32], y: &mut [f32], cos: &[f32], sin: &[f32], sign: f32) {
        let half = cos.len();
        for (yh, xh) in y.chunks_mut(2 * half).zip(x.chunks(2 * half)) {
            let (x1, x2) = xh.split_at(half);
            let (y1, y2) = yh.split_at_mut(half);
            for f in 0..half {
                let s = sign * sin[f];
                y1[f] = x1[f] * cos[f] - x2[f] * s;
                y2[f] = x2[f] * cos[f] + x1[f] * s;
            }
        }
    }
}

/// RoPE on `x` `[b, t, heads, d]` with the tables of its positions, fused on CPU (the backward
/// pass rotates the gradient back); composed from candle ops elsewhere.
pub fn rope(x: &Tensor, tables: &RopeTables) -> candle_core::Result<Tensor> {
    check_simd()?;
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Rope {
            tables: tables.clone(),
            inverse: false,
        })
    } else {
        let (cos, sin) = tables.tensors(x.device())?;
        rope_composed(x, &cos.to_dtype(x.dtype())?, &sin.to_dtype(x.dtype())?)
    }
}

/// `x · cos + rotate_half(x) · sin`, the tables broadcast over `x`, where
/// `rotate_half([x1, x2]) = [−x2, x1]` (halves of the last dimension); composed from candle ops.
pub fn rope_composed(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    use candle_core::D;
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_diff, rand};
    use candle_core::{Device, Var};

    /// Values and gradients equal the composed version's, with left- and right-padded rows
    /// (positions that restart and repeat, as a padded batch's position ids do).
    #[test]
    fn rope_matches_composed_values_and_gradients() {
        let inv_freq: Vec<f32> = (0..4).map(|i| 10_000f32.powf(-(i as f32) / 4.0)).collect();
        let positions = vec![
            vec![0, 0, 0, 1, 2, 3, 4],
            vec![0, 1, 2, 3, 4, 5, 6],
            vec![0, 1, 2, 2, 2, 2, 2],
        ];
        let tables = RopeTables::new(&inv_freq, &positions).unwrap();
        let shape = [3, 7, 5, 8];
        let x = Var::from_tensor(&rand(&shape, 1, 2.0)).unwrap();
        let r = rand(&shape, 2, 1.0);
        let fused = rope(x.as_tensor(), &tables).unwrap();
        let (cos, sin) = tables.tensors(&Device::Cpu).unwrap();
        let composed = rope_composed(x.as_tensor(), &cos, &sin).unwrap();
        assert!(max_diff(&fused, &composed) < 1e-5);
        let ga = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (composed * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let d = max_diff(
            ga.get(x.as_tensor()).unwrap(),
            gb.get(x.as_tensor()).unwrap(),
        );
        assert!(d < 1e-5, "gradient differs by {d}");
        // Position 0 is the identity.
        let x0 = x.as_tensor().narrow(1, 0, 1).unwrap();
        let f0 = rope(x.as_tensor(), &tables)
            .unwrap()
            .narrow(1, 0, 1)
            .unwrap();
        assert_eq!(max_diff(&x0, &f0), 0.0);
    }

    #[test]
    fn rope_refuses_a_shape_its_tables_do_not_cover() {
        let tables = RopeTables::new(&[1.0, 0.5], &[vec![0, 1, 2]]).unwrap();
        let x = Tensor::zeros((1, 4, 2, 4), DType::F32, &Device::Cpu).unwrap();
        let err = rope(&x, &tables).unwrap_err().to_string();
        assert!(err.contains("does not match tables"), "{err}");
    }
}
