#!/usr/bin/env bash
# `rewardkit serve` against a FastAPI + PyTorch server doing what OpenRLHF's serve_rm does
# (bench/serve_pytorch.py: each request scored on its own, no batching across requests), back to
# back on this machine, load from a second process on loopback (wrk, with bench/serve_wrk.lua
# posting OpenRLHF /get_reward bodies of 8 HH-RLHF queries each). Same MiniLM reward model
# (all-MiniLM-L6-v2 with a value head on BERT's pooler, trained a few steps here so that
# transformers' BertForSequenceClassification computes the same function), max length 128;
# concurrency 1, 8 and 64, one model and an ensemble of 3; then an overload run
# (--max-concurrent-requests 16 at concurrency 64). Reports sequences/s, p50/p99 latency, peak
# RSS, CPU seconds per 1,000 sequences and the ratios, in bench/results/<date>-serve/summary.md.
#
#   bash bench/serve.sh              # THREADS=2 DURATION=20 (seconds per run)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rewardkit/target}"
CACHE="${REWARDKIT_CACHE:-$HOME/.cache/rewardkit}"
VENV="${VENV:-$CACHE/bench-venv}"
MODELS="${REWARDKIT_MODELS:-$CACHE/models}"
BASE="$(cd ../shared/baselines && pwd)"
DATA="$(cd ../shared/data && pwd)/hh-rlhf/helpful-base/test.jsonl.gz"
THREADS="${THREADS:-2}"; DURATION="${DURATION:-20}"
OUT="${OUT:-bench/results/$(date -u +%Y%m%dT%H%M)-serve}"
mkdir -p "$OUT"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
BENCH_EXTRA="fastapi uvicorn" source bench/venv.sh
[ -f "$MODELS/minilm/model.safetensors" ] || bash scripts/fetch-models.sh

cargo build --release --locked -p rewardkit
rk="$CARGO_TARGET_DIR/release/rewardkit"

# The reward model, and the request bodies (8 queries each, prompt + response as OpenRLHF sends).
rm="$OUT/minilm-rm"
if [ ! -f "$rm/final/model.safetensors" ]; then
  "$rk" data split "$DATA" --eval-fraction 0.5 --seed 0 --train-out "$OUT/train.jsonl" --eval-out "$OUT/eval.jsonl" 2>/dev/null
  "$rk" train --threads "$THREADS" --model "$MODELS/minilm" --pooling pooler --data "$OUT/train.jsonl" \
      --eval-fraction 0.05 --out "$rm" --max-steps 8 --batch-size 8 --max-length 128 > /dev/null 2> "$OUT/train.log"
fi
python3 - "$OUT/eval.jsonl" "$OUT/bodies.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
items = [(r["prompt"], r[k]) for r in rows for k in ("chosen", "rejected")]
with open(sys.argv[2], "w") as f:
    for i in range(0, len(items) - 7, 8):
        chunk = items[i:i + 8]
        f.write(json.dumps({"query": [p + r for p, r in chunk], "prompts": [p for p, _ in chunk]}) + "\n")
PY

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_health() { for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.2; done; return 1; }

# run NAME PORT CONCURRENCY: wrk against the server, with its CPU time during the run.
run() {
  local name=$1 port=$2 c=$3 pid=$4
  local t=$(( c < 2 ? 1 : 2 ))
  wrk -t1 -c1 -d2s -s bench/serve_wrk.lua "http://127.0.0.1:$port" >/dev/null 2>&1 || true   # warm-up
  local before; before=$(cpu_ticks "$pid")
  BODIES="$OUT/bodies.jsonl" wrk -t"$t" -c"$c" -d"${DURATION}s" --timeout 60s --latency -s bench/serve_wrk.lua \
      "http://127.0.0.1:$port" > "$OUT/$name.wrk" 2>&1
  echo "cpu_ticks $(( $(cpu_ticks "$pid") - before )) hz $(getconf CLK_TCK) load $(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/$name.wrk"
}

# server NAME PORT COMMAND...: for each concurrency, a fresh server (the PyTorch one keeps
# computing requests whose clients have gone, which would burden the next run) under
# /usr/bin/time (peak RSS), then wrk.
server() {
  local name=$1 port=$2; shift 2
  for c in ${CONCURRENCY:-1 8 64}; do
    /usr/bin/time -f "%M" -o "$OUT/${name}_c$c.rss" "$@" > "$OUT/${name}_c$c.log" 2>&1 &
    local tpid=$!
    wait_health "$port"
    local pid; pid=$(pgrep -P "$tpid" | head -n 1)
    echo "== $name c=$c (load $(cut -d' ' -f1 /proc/loadavg))"
    run "${name}_c$c" "$port" "$c" "$pid"
    # The PyTorch server would first work off its whole backlog (minutes at concurrency 64).
    kill -TERM "$pid"; sleep 3; kill -KILL "$pid" 2>/dev/null || true; wait "$tpid" || true
  done
}

export BODIES="$OUT/bodies.jsonl"
for k in 1 3; do
  rk_models=(); pt_models=()
  for _ in $(seq 1 "$k"); do rk_models+=(--model "$rm/final"); pt_models+=(--model "$rm/final"); done
  server "rk_m$k" 8090 "$rk" --threads "$THREADS" serve "${rk_models[@]}" --port 8090 --max-length 128 --monitor-window 1000
  server "torch_m$k" 8091 "$VENV/bin/python" bench/serve_pytorch.py "${pt_models[@]}" --port 8091 --threads "$THREADS" --max-len 128
done
CONCURRENCY=64 server "rk_overload_m1" 8090 "$rk" --threads "$THREADS" serve --model "$rm/final" --port 8090 \
    --max-length 128 --max-concurrent-requests 16

python3 bench/serve_summary.py "$OUT" | tee "$OUT/summary.md"
