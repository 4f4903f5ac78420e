#!/usr/bin/env bash
# This CPU's measured matrix-multiply peak (issue 16 item 5), f32 and bf16, on THREADS threads:
# PyTorch's torch.matmul (bench/peak.py) and rewardkit's path, candle's matmul over the gemm crate
# (crates/model/examples/gemm_peak.rs), an N × N × N product, best of REPS. The peak of a dtype is
# the faster of the two; bench/compare_pytorch.sh reports each row's GFLOP/s as a share of it.
#
#   bash bench/peak.sh                  # N=2048 REPS=20 THREADS=2; under a minute once built
#
# Writes $OUT/peak.jsonl (one line per implementation and dtype) and $OUT/peak.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
N="${N:-2048}"; REPS="${REPS:-20}"
OUT="${OUT:-bench/results/$(date -u +%Y%m%dT%H%M)-peak}"
mkdir -p "$OUT"
source bench/venv.sh
cargo build --release --locked -p rewardkit-model --example gemm_peak >&2
{
  "$VENV/bin/python" bench/peak.py "$N" "$REPS" "$THREADS"
  RAYON_NUM_THREADS="$THREADS" "$CARGO_TARGET_DIR/release/examples/gemm_peak" "$N" "$REPS"
} > "$OUT/peak.jsonl"
python3 - "$OUT/peak.jsonl" <<'PY' | tee "$OUT/peak.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"| gemm {rows[0]['n']}³, {rows[0]['threads']} threads | f32 GFLOP/s | bf16 GFLOP/s |")
print("| --- | --- | --- |")
for impl in dict.fromkeys(r["impl"] for r in rows):
    g = {r["dtype"]: r["gflops"] for r in rows if r["impl"] == impl}
    print(f"| {impl} | {g.get('f32', '—')} | {g.get('bf16', '—')} |")
peak = {d: max(r["gflops"] for r in rows if r["dtype"] == d) for d in ("f32", "bf16")}
print(f"| **peak** | **{peak['f32']}** | **{peak['bf16']}** |")
PY
