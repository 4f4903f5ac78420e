//! The matrix-multiply rate rewardkit's CPU path reaches on this machine, for `bench/peak.sh`:
//! an `n × n × n` product through candle's matmul (the gemm crate underneath, as the model's
//! linear layers call it) in f32 and in bf16, best of `reps` after one warm-up, on the threads
//! of rayon's global pool (`RAYON_NUM_THREADS`). One JSON line per dtype on stdout:
//! `{"impl": "candle", "dtype": "f32", "n": 2048, "threads": 2, "gflops": …}`.
//!
//! ```text
//! cargo run --release -p rewardkit-model --example gemm_peak -- 2048 5
//! ```
#![allow(clippy::print_stdout)] // a benchmark: its results go to stdout

use std::time::Instant;

use candle_core::{DType, Device, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2048);
    let reps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let device = Device::Cpu;
    for (name, dtype) in [("f32", DType::F32), ("bf16", DType::BF16)] {
        let a = Tensor::randn(0f32, 1.0, (n, n), &device)?.to_dtype(dtype)?;
        let b = Tensor::randn(0f32, 1.0, (n, n), &device)?.to_dtype(dtype)?;
        a.matmul(&b)?; // warm-up: pages touched, threads started
        let mut best = f64::INFINITY;
        for _ in 0..reps.max(1) {
            let t = Instant::now();
            let c = a.matmul(&b)?;
            best = best.min(t.elapsed().as_secs_f64());
            drop(c);
        }
        let gflops = 2.0 * (n as f64).powi(3) / best / 1e9;
        println!(
            "{{\"impl\": \"candle\", \"dtype\": \"{name}\", \"n\": {n}, \"threads\": {}, \"gflops\": {gflops:.1}}}",
            rayon::current_num_threads()
        );
    }
    Ok(())
}
