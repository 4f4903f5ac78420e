#!/usr/bin/env bash
# Runs every test: unit, integration (the real binary on the real data in ../shared/data), doc tests.
# Tests are built with optimisation (--release) so numeric tests run in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rewardkit/target}"
cargo test --workspace --release --locked "$@"
