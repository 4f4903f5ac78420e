//! Peak-memory estimate of a training run, checked against the memory available before the
//! first step, so that a run that cannot fit fails at once with what would fit, instead of being
//! killed by the kernel after the work is done.
//!
//! The estimate adds three parts, since the allocator keeps what a step freed and the next
//! transient comes on top of it:
//! - `parameters × 16 bytes` (f32 weights, the step's gradients, AdamW's two moments) and
//!   256 MiB for the rest of the process (tokenizer, data, runtime);
//! - the activations the backward pass keeps, counted per position of the micro-batch
//!   (rows × padded length) in f32 values. For the BERT and GPT-2 blocks, `12 · hidden +
//!   2 · intermediate` per block and `24 · hidden` once for the rest of the model (embeddings,
//!   the last norm, the gradients in flight); for the Llama family (gated MLP, fused RMSNorm,
//!   RoPE, SwiGLU and grouped-query attention), `14 · hidden + 3 · intermediate` per block and
//!   `7 · hidden + 3 · intermediate` once. Attention keeps nothing of size `heads × length` in
//!   any of them (the fused kernel recomputes its probabilities). With gradient checkpointing one
//!   `[rows, length, hidden]` input per block is kept, plus two blocks' worth while one block is
//!   recomputed;
//! - a checkpoint save: `parameters × 8 bytes` (the moments serialised).
//!
//! The activation counts were fitted to the peak-RSS growth of one training step on resized
//! tiny models of the three architectures (`crates/train/tests/memory_measured.rs`, which holds
//! the estimate to within 25% of the measured growth) and checked on SmolLM2-135M
//! (`bench/decoder-memory.sh`; docs/training.md has the figures).
//!
//! ```
//! use rewardkit_train::memory::{estimate, Footprint};
//! let smollm2 = Footprint { params: 134_515_584, layers: 30, hidden: 576, intermediate: 1536,
//!     gated_block: true };
//! let plain = estimate(&smollm2, 16, 256, false);
//! let checkpointed = estimate(&smollm2, 16, 256, true);
//! assert!(checkpointed.total() < plain.total() / 2);
//! ```

use rewardkit_model::ArchConfig;

/// Environment variable that replaces `/proc/meminfo`'s `MemAvailable` (in MiB) for the check:
/// to test the refusal, or to hold a run to less than the machine has.
pub const MEM_AVAILABLE_ENV: &str = "REWARDKIT_MEM_AVAILABLE_MIB";

const MIB: u64 = 1 << 20;

/// What the estimate needs to know of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Footprint {
    pub params: usize,
    pub layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    /// A Llama-family block (RMSNorm, RoPE, grouped-query attention, the gated MLP); else a
    /// BERT or GPT-2 block.
    pub gated_block: bool,
}

impl Footprint {
    /// The footprint of a model with `params` parameters and this architecture.
    pub fn of(config: &ArchConfig, params: usize) -> Footprint {
        let (layers, hidden, intermediate, gated_block) = match config {
            ArchConfig::Bert(c) => (
                c.num_hidden_layers,
                c.hidden_size,
                c.intermediate_size,
                false,
            ),
            ArchConfig::Gpt2(c) => (
                c.n_layer,
                c.n_embd,
                c.n_inner.unwrap_or(4 * c.n_embd),
                false,
            ),
            ArchConfig::Llama(c) | ArchConfig::Qwen2(c) => (
                c.num_hidden_layers,
                c.hidden_size,
                c.intermediate_size,
                true,
            ),
        };
        Footprint {
            params,
            layers,
            hidden,
            intermediate,
            gated_block,
        }
    }

    /// f32 values one block keeps per position for the backward pass (fitted, see the module
    /// docs).
    fn per_block(&self) -> u64 {
        let (h, i) = (self.hidden, self.intermediate);
        let values = if self.gated_block {
            14 * h + 3 * i
        } else {
            12 * h + 2 * i
        };
        values as u64
    }

    /// f32 values the rest of the model keeps per position (embeddings, the last norm, the
    /// gradients in flight while one block is differentiated).
    fn per_model(&self) -> u64 {
        let (h, i) = (self.hidden, self.intermediate);
        let values = if self.gated_block {
            7 * h + 3 * i
        } else {
            24 * h
        };
        values as u64
    }
}

/// An estimate of a run's peak memory, in bytes, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Weights, gradients, optimizer state and the rest of the process.
    pub parameters: u64,
    /// What the forward pass keeps for the backward pass.
    pub activations: u64,
    /// The bytes of a checkpoint being written.
    pub checkpoint: u64,
}

impl Estimate {
    pub fn total(&self) -> u64 {
        self.parameters + self.activations + self.checkpoint
    }
}

/// The estimated peak of training `model` on micro-batches of `rows` sequences (two per pair)
/// padded to `len` tokens.
pub fn estimate(model: &Footprint, rows: usize, len: usize, checkpointing: bool) -> Estimate {
    let positions = (rows * len) as u64;
    let block = model.per_block();
    let per_position = if checkpointing {
        (model.layers * model.hidden) as u64 + 2 * block
    } else {
        block * model.layers as u64
    };
    let params = model.params as u64;
    Estimate {
        parameters: 16 * params + 256 * MIB,
        activations: 4 * positions * (per_position + model.per_model()),
        checkpoint: 8 * params,
    }
}

/// `MemAvailable` of `/proc/meminfo` in bytes, or the [`MEM_AVAILABLE_ENV`] override; `None`
/// where neither can be read (not Linux): the check is then skipped.
pub fn mem_available() -> Option<u64> {
    if let Ok(v) = std::env::var(MEM_AVAILABLE_ENV) {
        return v.trim().parse::<u64>().ok().map(|mib| mib * MIB);
    }
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

/// `MemAvailable` from the text of `/proc/meminfo`, in bytes.
fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The settings of a run, for [`check_fits`] and its advice.
#[derive(Debug, Clone, Copy)]
pub struct RunShape {
    /// Pairs per micro-batch.
    pub batch_size: usize,
    /// The longest padded length a micro-batch will have.
    pub len: usize,
    pub checkpointing: bool,
}

/// Refuses a run whose estimate exceeds `available` bytes: the message gives the estimate, what
/// is available, and settings that would fit.
pub fn check_fits(model: &Footprint, run: RunShape, available: u64) -> Result<Estimate, String> {
    let fits = |batch: usize, len: usize, ckpt: bool| {
        estimate(model, 2 * batch, len, ckpt).total() <= available
    };
    let est = estimate(model, 2 * run.batch_size, run.len, run.checkpointing);
    if est.total() <= available {
        return Ok(est);
    }
    let mut advice = Vec::new();
    if !run.checkpointing && fits(run.batch_size, run.len, true) {
        advice.push("--gradient-checkpointing".to_string());
    }
    let ckpt = run.checkpointing || !advice.is_empty();
    let flag = if ckpt && !run.checkpointing {
        " with --gradient-checkpointing"
    } else {
        ""
    };
    if let Some(b) = (1..run.batch_size).rev().find(|&b| fits(b, run.len, ckpt)) {
        advice.push(format!("--batch-size {b}{flag}"));
    }
    if let Some(l) = (1..=run.len / 16)
        .rev()
        .map(|k| k * 16)
        .find(|&l| l < run.len && fits(run.batch_size, l, ckpt))
    {
        advice.push(format!("--max-length {l}{flag}"));
    }
    let advice = if advice.is_empty() {
        "no smaller batch or length fits: the parameters and optimizer state alone need more"
            .to_string()
    } else {
        format!("these would fit: {}", advice.join("; or "))
    };
    Err(format!(
        "training needs an estimated {} MiB ({} MiB parameters, gradients and AdamW state; {} MiB \
         activations at {} pairs × {} tokens{}; {} MiB a checkpoint save) but {} MiB is \
         available; {advice}",
        est.total() / MIB,
        est.parameters / MIB,
        est.activations / MIB,
        run.batch_size,
        run.len,
        if run.checkpointing {
            ", checkpointed"
        } else {
            ""
        },
        est.checkpoint / MIB,
        available / MIB,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> Footprint {
        Footprint {
            params: 134_515_584,
            layers: 30,
            hidden: 576,
            intermediate: 1536,
            gated_block: true,
        }
    }

    #[test]
    fn reads_mem_available() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   12345 kB\n";
        assert_eq!(parse_meminfo(text), Some(12345 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn refuses_with_the_estimate_and_what_would_fit() {
        let run = RunShape {
            batch_size: 8,
            len: 256,
            checkpointing: false,
        };
        let est = estimate(&smollm2(), 16, 256, false);
        let err = check_fits(&smollm2(), run, 8 << 30).unwrap_err();
        assert!(err.contains(&format!("{} MiB", est.total() / MIB)), "{err}");
        assert!(err.contains("8192 MiB is available"), "{err}");
        assert!(err.contains("--gradient-checkpointing"), "{err}");
        // The advice is right: the settings it names fit.
        let ckpt = RunShape {
            checkpointing: true,
            ..run
        };
        assert!(check_fits(&smollm2(), ckpt, 8 << 30).is_ok());
        // Nothing fits in 1 GiB: the parameters alone need 2.3 GiB.
        let err = check_fits(&smollm2(), ckpt, 1 << 30).unwrap_err();
        assert!(err.contains("no smaller batch or length fits"), "{err}");
    }

    #[test]
    fn checkpointing_keeps_one_input_per_block() {
        let m = smollm2();
        let plain = estimate(&m, 16, 256, false);
        let ckpt = estimate(&m, 16, 256, true);
        assert_eq!(plain.parameters, ckpt.parameters);
        assert_eq!(plain.checkpoint, 8 * m.params as u64);
        // At this setting the plain run's activations are several times the checkpointed ones
        // (7.6× with the fused Llama block's counts).
        assert!(plain.activations > 7 * ckpt.activations);
        // Activations grow with rows linearly.
        let half = estimate(&m, 8, 256, false);
        assert_eq!(2 * half.activations, plain.activations);
    }

    /// SmolLM2-135M at 8 pairs × 256 tokens: the peak RSS `bench/decoder-memory.sh` measured
    /// (2026-12-07, `bench/results/20261207T0800-decoder-memory`, the Llama block fused), in MiB.
    const PLAIN: u64 = 9_107;
    const CKPT: u64 = 4_426;

    #[test]
    fn smollm2_at_8_pairs_by_256_tokens() {
        let m = smollm2();
        let plain = estimate(&m, 16, 256, false).total() / MIB;
        let ckpt = estimate(&m, 16, 256, true).total() / MIB;
        assert!((PLAIN * 4 / 5..PLAIN * 5 / 4).contains(&plain), "{plain}");
        assert!((CKPT * 4 / 5..CKPT * 5 / 4).contains(&ckpt), "{ckpt}");
    }
}
