#!/usr/bin/env bash
# Decoder reward-model training memory: SmolLM2-135M-Instruct (GGUF, dequantised to f32) trained
# on the HH anchor split (../shared/data/hh-rlhf/helpful-base-anchor-split), a few steps and a small
# evaluation to `final/`, under /usr/bin/time -v. Prints per row: pairs per micro-batch, max
# length, gradient checkpointing, peak RSS (MiB), the trainer's own estimate (MiB), steady-state
# pairs/s (mean over steps 2..), and whether `final/` was written. PyTorch + transformers on the
# same weights at batch 8, length 256 peaks at 10.7 GB (issue 16).
#
#   bash bench/decoder-memory.sh                       # ROWS="8:256:ckpt" STEPS=6
#   ROWS="1:128:plain 1:256:plain 2:256:plain 2:256:ckpt" STEPS=3 bash bench/decoder-memory.sh
#
# Each run is capped by `ulimit -v` (CAP_KB, default 20 GB of address space) so that a row that
# does not fit fails instead of pushing the machine into swap or the OOM killer.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rewardkit/target}"
MODEL="${MODEL:-$HOME/.cache/rewardkit/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
DATA="$(cd ../shared/data/hh-rlhf/helpful-base-anchor-split && pwd)"
ROWS="${ROWS:-8:256:ckpt}"; STEPS="${STEPS:-6}"; EVAL_PAIRS="${EVAL_PAIRS:-16}"
THREADS="${THREADS:-2}"; CAP_KB="${CAP_KB:-20000000}"
OUT="${OUT:-bench/results/decoder-memory-$(date -u +%Y%m%dT%H%M)}"
mkdir -p "$OUT"
cargo build --release --locked -p rewardkit >&2
rk="$CARGO_TARGET_DIR/release/rewardkit"
head -n "$EVAL_PAIRS" "$DATA/eval.jsonl" > "$OUT/eval.jsonl"

printf '%-6s %-7s %-5s %14s %14s %8s %6s\n' batch length ckpt peak_rss_mib estimate_mib pairs/s final
for row in $ROWS; do
  IFS=: read -r batch len mode <<< "$row"
  flag=""; [ "$mode" = ckpt ] && flag="--gradient-checkpointing"
  run="$OUT/b${batch}_l${len}_${mode}"
  rm -rf "$run"
  status=0
  ( ulimit -v "$CAP_KB"
    exec /usr/bin/time -v -o "$run.time" "$rk" train --threads "$THREADS" --model "$MODEL" \
      --data "$DATA/train.jsonl" --eval-data "$OUT/eval.jsonl" --out "$run" \
      --max-steps "$STEPS" --batch-size "$batch" --max-length "$len" --log-every 1 $flag
  ) > "$run.log" 2>&1 || status=$?
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$run.time" 2>/dev/null || echo 0)
  est=$(sed -n 's/.*estimated peak memory \([0-9]*\) MiB.*/\1/p' "$run.log" | head -n 1)
  speed=$(python3 - "$run/metrics.jsonl" <<'PY' 2>/dev/null || echo nan
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
s = [r["pairs_per_s"] for r in rows if r.get("kind") == "train" and r["step"] > 1]
print(f"{sum(s) / len(s):.3f}" if s else "nan")
PY
)
  final=no; [ -d "$run/final" ] && final=yes
  printf '%-6s %-7s %-5s %14s %14s %8s %6s\n' "$batch" "$len" "$mode" \
    "$(( ${rss_kb:-0} / 1024 ))" "${est:-?}" "$speed" "$final$( [ $status = 0 ] || echo " (exit $status)")"
done
