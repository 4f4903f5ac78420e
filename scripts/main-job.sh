#!/usr/bin/env bash
# The main job: build rewardkit and run `rewardkit demo`, Goodhart's law end to end in the
# built-in world, with nothing downloaded: a labeler biased toward long and agreeing answers → a
# reward model trained on its labels (a tiny transformer, from scratch) → the audit that finds its
# biases → best-of-n against it, where gold quality peaks and falls while the proxy score rises →
# which mitigation (ensembles, iterative retraining) helps and by how much.
# Then the sycophancy pipeline and the interventions against it (docs/interventions.md).
# About 3 minutes on 2 cores once built (measured: 2 min 54 s; 1 min 44 s before the four
# intervention models). Results under out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rewardkit/target}"
cargo build --release --locked -p rewardkit
"$CARGO_TARGET_DIR/release/rewardkit" demo --out "${OUT:-out/demo}" "$@"
