//! Subnormal floats flushed to zero: FTZ and DAZ on x86-64 (MXCSR), FZ on AArch64 (FPCR).
//!
//! A float below 2⁻¹²⁶ (≈ 1.2·10⁻³⁸ in f32) is *subnormal*, and on x86 every multiply or add that
//! reads or produces one takes a microcode assist, about 100 times slower than a normal one
//! (a 2048×128×2048 gemm: 56 GFLOP/s on normal inputs, 0.47 on subnormal ones, one core of this
//! project's machine). Training makes them: a confident softmax puts probabilities of e⁻⁹⁰ on
//! most of the vocabulary, and their gradients flow into the output layer's weight gradient.
//! The world's tiny decoder spent 2.2 s per SFT step instead of 0.1 once it had learnt the
//! world's text, and `demo rl` went from minutes to most of an hour.
//!
//! TensorFlow sets both flags on its CPU threads; PyTorch offers `torch.set_flush_denormal`.
//! Here [`ensure`] sets them on the calling thread (every op of [`crate::ops`] calls it when it
//! builds its node, so the backward pass on that thread runs flushed too) and, once per process,
//! on the worker threads of rayon's global pool (candle's gemm) and of candle's barrier pool
//! (its element-wise maps).
//! Values below 2⁻¹²⁶ then read and compute as 0: nothing a reward model or policy can see.

/// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6).
#[cfg(target_arch = "x86_64")]
const MXCSR_FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

/// FPCR's flush-to-zero (bit 24).
#[cfg(target_arch = "aarch64")]
const FPCR_FZ: u64 = 1 << 24;

/// Whether subnormals are flushed to zero on the calling thread.
pub fn flushed_on_this_thread() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        read_mxcsr() & MXCSR_FTZ_DAZ == MXCSR_FTZ_DAZ
    }
    #[cfg(target_arch = "aarch64")]
    {
        read_fpcr() & FPCR_FZ == FPCR_FZ
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Flushes subnormals to zero on the calling thread; a no-op where it already does (one
/// register read) and on other architectures.
pub fn flush_on_this_thread() {
    #[cfg(target_arch = "x86_64")]
    {
        let csr = read_mxcsr();
        if csr & MXCSR_FTZ_DAZ != MXCSR_FTZ_DAZ {
            write_mxcsr(csr | MXCSR_FTZ_DAZ);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let fpcr = read_fpcr();
        if fpcr & FPCR_FZ != FPCR_FZ {
            write_fpcr(fpcr | FPCR_FZ);
        }
    }
}

/// [`flush_on_this_thread`], and once per process on the threads of rayon's global pool and of
/// candle's barrier pool (threads spawned later inherit the setting of the thread that spawns
/// them).
pub fn ensure() {
    static POOLS: std::sync::Once = std::sync::Once::new();
    flush_on_this_thread();
    POOLS.call_once(|| {
        rayon::broadcast(|_| flush_on_this_thread());
        candle_core::utils::barrier_pool().execute(|_| flush_on_this_thread());
    });
}

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut csr: u32 = 0;
    // SAFETY: `stmxcsr` stores the 32-bit MXCSR to the given address, a live local; SSE is part
    // of every x86-64 CPU.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
    }
    csr
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(csr: u32) {
    // SAFETY: `ldmxcsr` loads MXCSR from a live local; the value differs from the current one
    // only in the FTZ and DAZ bits, which change how subnormals round, nothing else.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
    }
}

#[cfg(target_arch = "aarch64")]
fn read_fpcr() -> u64 {
    let fpcr: u64;
    // SAFETY: reading FPCR has no side effect.
    unsafe {
        std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags));
    }
    fpcr
}

#[cfg(target_arch = "aarch64")]
fn write_fpcr(fpcr: u64) {
    // SAFETY: the value differs from the current FPCR only in FZ, which flushes subnormals.
    unsafe {
        std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack, preserves_flags));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::hint::black_box;

    /// The smallest normal f32 halved: subnormal (2⁻¹²⁷).
    const SUBNORMAL: f32 = f32::MIN_POSITIVE / 2.0;

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn a_thread_that_flushes_computes_subnormals_as_zero() {
        // A fresh thread: the test harness's threads may already have been set by other tests.
        std::thread::spawn(|| {
            assert!(SUBNORMAL > 0.0 && !SUBNORMAL.is_normal());
            if !flushed_on_this_thread() {
                let before = black_box(SUBNORMAL) * black_box(1.0f32);
                assert_eq!(before, SUBNORMAL, "without the flag the subnormal survives");
            }
            flush_on_this_thread();
            assert!(flushed_on_this_thread());
            assert_eq!(black_box(SUBNORMAL) * black_box(1.0f32), 0.0);
            assert_eq!(black_box(f32::MIN_POSITIVE) * black_box(0.5f32), 0.0);
            // Normal numbers are untouched.
            assert_eq!(
                black_box(f32::MIN_POSITIVE) * black_box(2.0f32),
                2.0 * f32::MIN_POSITIVE
            );
        })
        .join()
        .unwrap();
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn ensure_reaches_the_worker_pools_and_threads_they_spawn() {
        std::thread::spawn(|| {
            ensure();
            let pool_flags: Vec<bool> = rayon::broadcast(|_| flushed_on_this_thread());
            assert!(pool_flags.iter().all(|&f| f), "{pool_flags:?}");
            let child = std::thread::spawn(flushed_on_this_thread).join().unwrap();
            assert!(
                child,
                "a thread spawned by a flushing thread inherits the setting"
            );
        })
        .join()
        .unwrap();
    }
}
