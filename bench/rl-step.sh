#!/usr/bin/env bash
# Seconds per RL step on the demo world's decoder size (tiny Llama, 64 wide, 2 layers, 300
# words): B prompts × k samples of up to N new tokens, on $THREADS threads (default 2).
# Usage: bash bench/rl-step.sh [B] [k] [N] [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
# As the binary: mimalloc never returns freed pages to the OS.
export MIMALLOC_PURGE_DELAY=-1
export RAYON_NUM_THREADS="${THREADS:-2}" CANDLE_NUM_THREADS="${THREADS:-2}"
cargo run --release -q -p rewardkit-rl --example step_speed -- "${1:-16}" "${2:-4}" "${3:-40}" "${4:-5}"
