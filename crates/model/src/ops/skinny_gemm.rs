//! `y = x Wᵀ + b` for a few rows of x against a wide weight W `[out, in]` (row-major, as
//! `nn.Linear` stores it): the shape of decoding, one new token per sequence per step.
//!
//! A general gemm packs W into panels before it multiplies; with 16 rows of x that copy of every
//! weight costs as much as the multiplication, and its microkernel (64 rows by 6 columns on
//! AVX-512) is mostly padding. Here each task takes a block of W's rows and, four outputs by four
//! rows of x at a time, accumulates the dot products in 16-lane registers straight from W as it
//! lies: W is read once per call, and once from memory. Each output is one dot product whose
//! order does not depend on how many rows there are or how the outputs were split among threads,
//! so a row's result is the same whatever the batch it came in.

use rayon::prelude::*;

/// Whether the linear layer takes this path rather than the gemm for `rows` rows of x: up to 32
/// rows, and up to 64 when W is wider in than out (the gemm crate is slowest there). Measured on
/// SmolLM2-135M's projections with 2 threads (`skinny_timings` prints both side by side): at 16
/// rows this path runs at 60–100 GFLOP/s on every shape, the gemm at 13 (1536 → 576) to 80; at
/// 64 rows the gemm is faster except for 1536 → 576.
pub(super) fn applies(rows: usize, d_in: usize, d_out: usize) -> bool {
    rows <= 32 || (d_in > d_out && rows <= 64)
}

/// Lanes of the accumulators: one AVX-512 register (two AVX2, four SSE2).
const LANE: usize = 16;
/// Outputs by rows of x per tile: 16 accumulators, 4 loads of W and 4 of x per 16 inputs.
const TILE_OUT: usize = 2;
const TILE_ROWS: usize = 2;
/// Outputs per parallel task (a multiple of `TILE_OUT`).
const OUTS_PER_TASK: usize = 64;

/// `[rows, d_out]` = x `[rows, d_in]` · Wᵀ (+ b), W `[d_out, d_in]`; all row-major.
pub(super) fn skinny_gemm(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    d_in: usize,
    rows: usize,
    d_out: usize,
) -> Vec<f32> {
    // Output-major `[d_out, rows]` first, so each task writes one contiguous block.
    let mut yt = vec![0f32; d_out * rows];
    if rows > 0 && d_in > 0 {
        yt.par_chunks_mut(OUTS_PER_TASK * rows)
            .enumerate()
            .for_each(|(task, out)| {
                let o0 = task * OUTS_PER_TASK;
                let n_out = out.len() / rows;
                dots(x, &w[o0 * d_in..(o0 + n_out) * d_in], out, d_in, rows);
            });
    }
    let mut y = vec![0f32; rows * d_out];
    for (r, row) in y.chunks_exact_mut(d_out.max(1)).enumerate() {
        for (o, v) in row.iter_mut().enumerate() {
            *v = b.map_or(0.0, |b| b[o]) + yt[o * rows + r];
        }
    }
    y
}

multiversion! {
    /// `out[o · rows + r] = Σ_k w[o, k] · x[r, k]` for every row `o` of `w` (length `d_in`).
    fn dots / dots_base(x: &[f32], w: &[f32], out: &mut [f32], d_in: usize, rows: usize) {
        let n_out = w.len() / d_in;
        let mut o = 0;
        while o + TILE_OUT <= n_out {
            let mut r = 0;
            while r + TILE_ROWS <= rows {
                tile::<TILE_OUT, TILE_ROWS>(x, w, out, o, r, d_in, rows);
                r += TILE_ROWS;
            }
            // (A `TILE_OUT × 1` tile vectorises badly; single dot products do well.)
            for oo in o..o + TILE_OUT {
                for r in r..rows {
                    tile::<1, 1>(x, w, out, oo, r, d_in, rows);
                }
            }
            o += TILE_OUT;
        }
        for o in o..n_out {
            for r in 0..rows {
                tile::<1, 1>(x, w, out, o, r, d_in, rows);
            }
        }
    }
}

/// The dot products of W's rows `o..o + O` with x's rows `r..r + R`, into `out` (see [`dots`]).
/// Every product is summed the same way whatever O and R: lane by lane in `LANE` accumulators
/// over the whole chunks, the lanes added in order, then the tail.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<const O: usize, const R: usize>(
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    o: usize,
    r: usize,
    d_in: usize,
    rows: usize,
) {
    let wr: [&[f32]; O] = std::array::from_fn(|i| &w[(o + i) * d_in..(o + i + 1) * d_in]);
    let xr: [&[f32]; R] = std::array::from_fn(|j| &x[(r + j) * d_in..(r + j + 1) * d_in]);
    let wc: [&[[f32; LANE]]; O] = std::array::from_fn(|i| wr[i].as_chunks::<LANE>().0);
    let xc: [&[[f32; LANE]]; R] = std::array::from_fn(|j| xr[j].as_chunks::<LANE>().0);
    let chunks = d_in / LANE;
    let mut acc = [[[0f32; LANE]; R]; O];
    for c in 0..chunks {
        let xv: [[f32; LANE]; R] = std::array::from_fn(|j| xc[j][c]);
        for (acc_i, wc_i) in acc.iter_mut().zip(&wc) {
            let wv = wc_i[c];
            for (acc_ij, xv_j) in acc_i.iter_mut().zip(&xv) {
                mul_add_lanes(acc_ij, &wv, xv_j);
            }
        }
    }
    let full = chunks * LANE;
    for (i, (acc_i, w_i)) in acc.iter().zip(&wr).enumerate() {
        for (j, (acc_ij, x_j)) in acc_i.iter().zip(&xr).enumerate() {
            let tail: f32 = (full..d_in).map(|k| w_i[k] * x_j[k]).sum();
            out[(o + i) * rows + r + j] = acc_ij.iter().sum::<f32>() + tail;
        }
    }
}

/// `acc += w ⊙ x`, lane by lane: one vector multiply and add.
#[inline(always)]
fn mul_add_lanes(acc: &mut [f32; LANE], w: &[f32; LANE], x: &[f32; LANE]) {
    for ((a, &w), &x) in acc.iter_mut().zip(w).zip(x) {
        *a += w * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        test_util::values(n, seed, 0.5)
    }

    /// Against a plain f64 triple loop, on sizes that leave every remainder (outputs not a
    /// multiple of the tile or of a task, rows not a multiple of the tile, inputs not a
    /// multiple of the lanes), with and without bias; and every row's result equals the same row
    /// computed alone (the batch does not change it).
    #[test]
    fn matches_a_plain_product_and_rows_do_not_depend_on_the_batch() {
        let (d_in, d_out) = (37, 133);
        let w = values(d_out * d_in, 1);
        let b = values(d_out, 2);
        for rows in [1, 3, 4, 7, 16] {
            let x = values(rows * d_in, 3 + rows as u64);
            for bias in [None, Some(b.as_slice())] {
                let y = skinny_gemm(&x, &w, bias, d_in, rows, d_out);
                for r in 0..rows {
                    for o in 0..d_out {
                        let want: f64 = bias.map_or(0.0, |b| b[o] as f64)
                            + (0..d_in)
                                .map(|k| w[o * d_in + k] as f64 * x[r * d_in + k] as f64)
                                .sum::<f64>();
                        let got = y[r * d_out + o] as f64;
                        assert!(
                            (got - want).abs() < 1e-5,
                            "{rows} rows ({r}, {o}): {got} vs {want}"
                        );
                    }
                    let alone = skinny_gemm(&x[r * d_in..(r + 1) * d_in], &w, bias, d_in, 1, d_out);
                    assert_eq!(alone, y[r * d_out..(r + 1) * d_out], "row {r} of {rows}");
                }
            }
        }
    }

    /// The dispatched kernel against its plain copy: identical results.
    #[test]
    fn simd_copy_equals_plain_copy() {
        let (d_in, rows, n_out) = (70, 6, 9);
        let (x, w) = (values(rows * d_in, 5), values(n_out * d_in, 6));
        let (mut a, mut c) = (vec![0f32; n_out * rows], vec![0f32; n_out * rows]);
        dots(&x, &w, &mut a, d_in, rows);
        dots_base(&x, &w, &mut c, d_in, rows);
        assert_eq!(a, c);
    }

    /// Not a check but a measurement, to choose where [`applies`] draws the line: milliseconds per call of this
    /// kernel and of the gemm crate (as `LinearOp` calls it) on SmolLM2-135M's shapes, for 1 to
    /// 64 rows. `cargo test --release -p rewardkit-model skinny_timings -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn skinny_timings() {
        for (d_in, d_out) in [
            (576, 576),
            (576, 192),
            (576, 1536),
            (1536, 576),
            (576, 49152),
        ] {
            let w = values(d_out * d_in, 1);
            for rows in [1, 4, 16, 32, 64] {
                let x = values(rows * d_in, 2);
                let reps = (2_000_000_000 / (rows * d_in * d_out)).clamp(3, 400);
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(skinny_gemm(&x, &w, None, d_in, rows, d_out));
                }
                let skinny = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    let mut y = vec![0f32; rows * d_out];
                    super::super::linear::gemm_xw(&x, &w, &mut y, d_in, false, false).unwrap();
                    std::hint::black_box(y);
                }
                let gemm = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
                let gflops = |ms: f64| 2.0 * (rows * d_in * d_out) as f64 / ms / 1e6;
                println!(
                    "{d_in:>5} -> {d_out:>5}, {rows:>2} rows: skinny {skinny:.3} ms ({:.1} GFLOP/s), gemm {gemm:.3} ms ({:.1} GFLOP/s)",
                    gflops(skinny),
                    gflops(gemm)
                );
            }
        }
    }
}
