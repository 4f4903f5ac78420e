#!/usr/bin/env bash
# Runs every test: unit, integration (the real binary on the real data in ../shared/data), doc tests.
# The model tests use real pretrained weights: scripts/fetch-models.sh fetches them first (once;
# later runs only check their sha256).
# Tests are built with optimisation (--release) so numeric tests run in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rewardkit/target}"
bash scripts/fetch-models.sh >/dev/null
cargo test --workspace --release --locked "$@"
