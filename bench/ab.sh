#!/usr/bin/env bash
# A/B of rewardkit builds on the benchmark's training setup: runs each binary given, in turn, on
# the same 25 steps (MiniLM or GPT-2 6L, 2 threads, batch 8 pairs, max length 128) and prints the
# steady pairs/s (steps 6-25) and the seconds in forward, backward and optimizer. Alternate the
# binaries (A B A B) to average out a noisy machine. Needs a results folder of
# bench/compare_pytorch.sh (its train/eval split) and its model folders.
#
#   bash bench/ab.sh bench/results/<date> minilm /tmp/rk-before /tmp/rk-after /tmp/rk-before /tmp/rk-after
set -euo pipefail
R="$1"; m="$2"; shift 2
PTMODELS="${PTMODELS:-$HOME/.cache/rewardkit/bench-models}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for b in "$@"; do
  rm -rf "$out/run"
  "$b" train --threads "${THREADS:-2}" --model "$PTMODELS/$m" --data "$R/train.jsonl" \
      --eval-data "$R/eval.jsonl" --out "$out/run" --max-steps 25 --batch-size 8 --max-length 128 \
      --lr 2e-5 --log-every 1 --json > /dev/null 2> "$out/log"
  python3 - "$b" "$out/run/metrics.jsonl" <<'PY'
import json, sys
steps = {r["step"]: r for r in map(json.loads, open(sys.argv[2])) if r.get("kind") == "train"}
steady = [steps[s] for s in range(6, 26)]
wall = steps[25]["elapsed_s"] - steps[5]["elapsed_s"]
f, b, o = (sum(s[k] for s in steady) for k in ("forward_s", "backward_s", "optimizer_s"))
print(f"{sys.argv[1]:40s} {8 * len(steady) / wall:6.2f} pairs/s   forward {f:5.1f} s  backward {b:5.1f} s  optimizer {o:4.1f} s")
PY
done
