//! Fused CPU kernels with their backward pass: linear layers, softmax over the last dimension,
//! layer norm, RMS norm, rotary position embeddings, GELU (exact and tanh), SwiGLU,
//! multi-head attention, and the log-probability of target tokens (log-softmax and gather). Each is one pass over memory (or
//! one gemm) where the composed version in [`crate::nn`] makes five to eight (attention never
//! materialises the `[b, h, t, t]` scores), and each records a backward pass (the trap of
//! candle-nn's fused ops is that they do not). Each is also one node in candle's graph where the
//! composed version is several, each of whose backward passes copies a full-size gradient.
//! Two kernels are for decoding, one token per sequence per step: the linear layer's path for
//! a few rows (`skinny_gemm`, which the forward pass takes whatever the mode) and attention over
//! a KV cache ([`KvBuffer`], inference only).
//! The element loops are compiled for AVX-512, AVX2 + FMA and the base target
//! (`multiversion!`) and the widest the CPU has runs. On other devices the composed versions are
//! used.
//!
//! One file per op, as in candle-nn; this module holds what they share: `exp` and the
//! vectorisable reductions, the SIMD level and the `multiversion!` macro; [`denormals`] flushes
//! subnormal floats to zero, without which training slows down a hundredfold once a softmax is
//! confident.
//!
//! The tests check them against the composed versions, values and gradients, and each
//! vectorised loop against its plain copy.

use candle_core::{CpuStorage, Layout};

use crate::error::{ModelError, Result};

/// Defines a kernel function compiled three times: for AVX-512 (F, BW, DQ, VL), for AVX2 with
/// FMA, and for the base target; each call runs the copy of [`simd_level`]. The build stays
/// portable while the loops (and the `#[inline]` helpers they call, such as [`exp`]) vectorise at
/// the machine's width: the base x86-64 target has only 4-wide SSE2. `fn name / name_base(…)`
/// also names the plain copy (the tests check the dispatched kernel against it).
macro_rules! multiversion {
    ($(#[$attr:meta])* $vis:vis fn $name:ident / $base:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? $body
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? $body
                match $crate::ops::kernel_level() {
                    // SAFETY: the level is never above the CPU's (`cpu_simd_level`).
                    $crate::ops::SimdLevel::Avx512 => return unsafe { v4($($arg),*) },
                    // SAFETY: as above.
                    $crate::ops::SimdLevel::Avx2 => return unsafe { v3($($arg),*) },
                    $crate::ops::SimdLevel::Base => {}
                }
            }
            $base($($arg),*)
        }

        /// The plain copy of the kernel of the same name without `_base`.
        #[allow(clippy::too_many_arguments)]
        $vis fn $base($($arg: $ty),*) $(-> $ret)? $body
    };
}

mod attention;
pub mod denormals;
mod gelu;
mod kv_attention;
mod layer_norm;
mod linear;
mod rms_norm;
mod rope;
mod skinny_gemm;
mod softmax;
mod swiglu;
mod token_logprobs;

pub use attention::attention;
pub use gelu::{gelu_erf, gelu_tanh};
pub use kv_attention::KvBuffer;
pub use layer_norm::layer_norm;
pub use linear::linear;
pub use rms_norm::rms_norm;
pub use rope::{rope, rope_composed, RopeTables};
pub use softmax::softmax_last_dim;
pub use swiglu::swiglu;
pub use token_logprobs::{token_logprobs, token_logprobs_composed};

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

/// `out += Σ partials`, the blocks' partial sums added in block order (so a sum does not depend
/// on how many threads computed the blocks).
fn add_in_order(out: &mut [f32], partials: Vec<Vec<f32>>) {
    for p in partials {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
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

impl SimdLevel {
    /// The name `REWARDKIT_SIMD` takes for this level: `avx512`, `avx2` or `base`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Base => "base",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

impl std::fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The level the kernels run at: the widest this CPU has ([`cpu_simd_level`]), lowered by the
/// environment variable `REWARDKIT_SIMD` (`avx512`, `avx2` or `base`; it can only lower it) when
/// set, for comparing numerics across machines and for the tests that run every level. Read
/// once per process; any other value is an error ([`ModelError::Simd`]), returned here and by
/// every op of this module (and so by the first forward pass), and by [`crate::load`].
/// Every level computes the same operations in the same order, so the results are identical.
pub fn simd_level() -> Result<SimdLevel> {
    configured_level()
        .clone()
        .map_err(|value| ModelError::Simd { value })
}

fn configured_level() -> &'static std::result::Result<SimdLevel, String> {
    static LEVEL: std::sync::OnceLock<std::result::Result<SimdLevel, String>> =
        std::sync::OnceLock::new();
    LEVEL.get_or_init(|| {
        let var = std::env::var_os("REWARDKIT_SIMD").map(|v| v.to_string_lossy().into_owned());
        level_for(var.as_deref(), cpu_simd_level())
    })
}

/// The level that `REWARDKIT_SIMD=var` gives on a CPU whose widest is `cpu`; an unknown value
/// is `Err(value)`. Unset (or empty) is the CPU's level.
fn level_for(var: Option<&str>, cpu: SimdLevel) -> std::result::Result<SimdLevel, String> {
    let Some(raw) = var else { return Ok(cpu) };
    match raw.trim().to_ascii_lowercase().as_str() {
        "" | "avx512" => Ok(cpu),
        "avx2" => Ok(cpu.min(SimdLevel::Avx2)),
        "base" => Ok(SimdLevel::Base),
        _ => Err(raw.to_string()),
    }
}

/// The level the kernels dispatch on. The ops check [`simd_level`] before they run a kernel,
/// so an unknown `REWARDKIT_SIMD` never gets here; were it to, the base copy runs.
fn kernel_level() -> SimdLevel {
    *configured_level().as_ref().unwrap_or(&SimdLevel::Base)
}

/// [`simd_level`] as the error of an op; also flushes subnormals to zero on this thread and
/// the worker pools ([`denormals::ensure`]), which every op needs to run at speed.
fn check_simd() -> candle_core::Result<()> {
    denormals::ensure();
    simd_level().map(drop).map_err(candle_core::Error::wrap)
}

/// The widest level this CPU has, whatever `REWARDKIT_SIMD` says.
pub fn cpu_simd_level() -> SimdLevel {
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

#[cfg(test)]
pub(crate) mod test_util {
    use candle_core::{Device, Tensor, Var};

    pub(super) fn rand(shape: &[usize], seed: u64, scale: f64) -> Tensor {
        Tensor::from_vec(
            values(shape.iter().product(), seed, scale),
            shape,
            &Device::Cpu,
        )
        .unwrap()
    }

    /// `n` draws of N(0, scale²) from `seed`.
    pub(super) fn values(n: usize, seed: u64, scale: f64) -> Vec<f32> {
        let mut rng = crate::Rng::new(seed);
        (0..n).map(|_| (rng.normal() * scale) as f32).collect()
    }

    pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
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
    pub(super) fn check(
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
}

#[cfg(test)]
mod tests {
    use super::attention::{attention_scores_bwd, attention_scores_bwd_base};
    use super::attention::{masked_softmax_rows, masked_softmax_rows_base};
    use super::gelu::{gelu_grads, gelu_grads_base, gelu_values, gelu_values_base, Gelu};
    use super::layer_norm::{layer_norm_rows, layer_norm_rows_base};
    use super::layer_norm::{layer_norm_rows_bwd, layer_norm_rows_bwd_base};
    use super::linear::{add_rows, add_rows_base};
    use super::rms_norm::{rms_norm_rows, rms_norm_rows_base};
    use super::rms_norm::{rms_norm_rows_bwd, rms_norm_rows_bwd_base};
    use super::rope::{rotate_heads, rotate_heads_base};
    use super::softmax::{
        softmax_rows, softmax_rows_base, softmax_rows_bwd, softmax_rows_bwd_base,
    };
    use super::swiglu::{swiglu_grads, swiglu_grads_base, swiglu_values, swiglu_values_base};
    use super::test_util::rand;
    use super::token_logprobs::{logprob_row, logprob_row_base};
    use super::token_logprobs::{logprob_row_bwd, logprob_row_bwd_base};
    use super::*;

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
        both(&|y| rms_norm_rows(&x, &w, y, 1e-5), &|y| {
            rms_norm_rows_base(&x, &w, y, 1e-5)
        });
        let (mut da, mut dc) = (vec![0f32; rows * n], vec![0f32; rows * n]);
        let sums = rms_norm_rows_bwd(&x, &w, &g, &mut da, 1e-5);
        assert_eq!(sums, rms_norm_rows_bwd_base(&x, &w, &g, &mut dc, 1e-5));
        assert_eq!(da, dc);
        both(&|y| swiglu_values(&x, &g, y), &|y| {
            swiglu_values_base(&x, &g, y)
        });
        let (mut ua, mut uc) = (vec![0f32; rows * n], vec![0f32; rows * n]);
        swiglu_grads(&x, &w.repeat(rows), &g, &mut da, &mut ua);
        swiglu_grads_base(&x, &w.repeat(rows), &g, &mut dc, &mut uc);
        assert_eq!((&da, &ua), (&dc, &uc));
        // RoPE over positions of 5 heads of 10 (11 positions of the 585 values).
        type RotateFn = fn(&[f32], &mut [f32], &[f32], &[f32], f32);
        let (cos, sin) = (v(5, 7, 1.0), v(5, 8, 1.0));
        let rope_all = |y: &mut [f32], sign: f32, f: RotateFn| {
            for (yp, xp) in y[..550].chunks_mut(50).zip(x[..550].chunks(50)) {
                f(xp, yp, &cos, &sin, sign);
            }
        };
        for sign in [1.0, -1.0] {
            both(&|y| rope_all(y, sign, rotate_heads), &|y| {
                rope_all(y, sign, rotate_heads_base)
            });
        }
        // One row of 585 logits, target 17, temperature 0.8.
        for entropy in [false, true] {
            let a = logprob_row(&x, 17, 1.25, entropy);
            assert_eq!(a, logprob_row_base(&x, 17, 1.25, entropy));
        }
        both(&|y| logprob_row_bwd(&x, 17, 0.6, 1.25, y), &|y| {
            logprob_row_bwd_base(&x, 17, 0.6, 1.25, y)
        });
        for kind in [Gelu::Erf, Gelu::Tanh] {
            both(&|y| gelu_values(kind, &x, y), &|y| {
                gelu_values_base(kind, &x, y)
            });
            both(&|y| gelu_grads(kind, &x, &g, y), &|y| {
                gelu_grads_base(kind, &x, &g, y)
            });
        }
        let t = n;
        let shared: Vec<f32> = (0..t).map(|i| f32::from(i % 7 != 3)).collect();
        let per_query: Vec<f32> = (0..t * t).map(|i| f32::from(i % 5 != 2)).collect();
        let (sq, gq) = (v(t * t, 5, 2.0), v(t * t, 6, 1.0));
        for (causal, keys) in [false, true]
            .into_iter()
            .flat_map(|c| [(c, &shared), (c, &per_query)])
        {
            let (mut a, mut c) = (sq.clone(), sq.clone());
            masked_softmax_rows(&mut a, keys, t, causal);
            masked_softmax_rows_base(&mut c, keys, t, causal);
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

    /// `REWARDKIT_SIMD` can only lower the CPU's level; anything else is an error naming the
    /// value (the message names the variable and the accepted values).
    #[test]
    fn simd_variable_lowers_the_level_or_is_an_error() {
        use SimdLevel::{Avx2, Avx512, Base};
        assert_eq!(level_for(None, Avx512), Ok(Avx512));
        assert_eq!(level_for(Some("avx512"), Avx2), Ok(Avx2));
        assert_eq!(level_for(Some("avx2"), Avx512), Ok(Avx2));
        assert_eq!(level_for(Some("avx2"), Base), Ok(Base));
        assert_eq!(level_for(Some("AVX2"), Avx512), Ok(Avx2));
        assert_eq!(level_for(Some("base"), Avx512), Ok(Base));
        assert_eq!(level_for(Some(""), Avx2), Ok(Avx2));
        for bad in ["avx9", "sse", "avx-512", "0"] {
            assert_eq!(level_for(Some(bad), Avx512), Err(bad.to_string()));
        }
        let msg = ModelError::Simd {
            value: "avx9".into(),
        }
        .to_string();
        assert!(msg.contains("REWARDKIT_SIMD=\"avx9\""), "{msg}");
        assert!(msg.contains("avx512|avx2|base"), "{msg}");
        assert_eq!(Avx512.to_string(), "avx512");
        assert!(simd_level().unwrap() <= cpu_simd_level());
    }
}
