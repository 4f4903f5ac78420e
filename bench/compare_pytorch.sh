#!/usr/bin/env bash
# rewardkit against the plain-PyTorch reward-model loop of ../shared/baselines, back to back on the
# same machine, same data (HH-RLHF helpful-base), same backbones (all-MiniLM-L6-v2; GPT-2 with 6
# layers / 384 wide, random init), batch 8 pairs, max length 128, the same thread count.
# Reports training pairs/s (steady state: steps 6-25), scoring pairs/s and sequences/s, peak RSS,
# and rewardkit / PyTorch ratios, in bench/results/<date>/summary.md; and the work per pair on
# both sides (positions computed, padding included: bench/padding.py replays the harness's batches)
# with the speed ratio in positions per second; and each row's GFLOP/s as a share of this CPU's
# measured gemm peak (bench/peak.sh, run first into the same folder). The PyTorch side runs twice:
# f32, and under bf16 autocast (bench/autocast.py); the ratios are against its faster setting.
#
#   bash bench/compare_pytorch.sh            # THREADS=2 REPS=2 by default
#
# First run installs the PyTorch venv (~6 GB, a few minutes) and prepares the models.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
DATA="$DATA/hh-rlhf/helpful-base/test.jsonl.gz"
REPS="${REPS:-2}"; STEPS="${STEPS:-25}"; WARMUP="${WARMUP:-5}"; EVAL_PAIRS="${EVAL_PAIRS:-256}"
OUT="${OUT:-bench/results/$(date -u +%Y%m%dT%H%M)}"
mkdir -p "$OUT"

# 1. The PyTorch side (as ../shared/baselines/SETUP.md describes).
source bench/venv.sh
prepare_bench_models

# 2. The rewardkit side: the same model folders, the same pairs.
build_rewardkit
# 3. This CPU's gemm peak, for each row's share of it (bench/peak.sh).
OUT="$OUT" REPS=20 bash bench/peak.sh > /dev/null
"$rk" data split "$DATA" --eval-fraction 0.2 --seed 0 --train-out "$OUT/train.jsonl" --eval-out "$OUT/eval-all.jsonl"
head -n "$EVAL_PAIRS" "$OUT/eval-all.jsonl" > "$OUT/eval.jsonl"

for rep in $(seq 1 "$REPS"); do
  for m in minilm gpt2-small-6l; do
    # PyTorch twice: f32, and under bf16 autocast (bench/autocast.py), its faster setting here.
    for side in torch torchbf16; do
      echo "== rep $rep $m: $side (load $(cut -d' ' -f1 /proc/loadavg))"
      wrap=(); [ "$side" = torchbf16 ] && wrap=(bench/autocast.py)
      "$VENV/bin/python" "${wrap[@]}" "$BASE/trl_reward_baseline.py" --model "$PTMODELS/$m" --variant torch \
          --train-file "$OUT/train.jsonl" --eval-file "$OUT/eval.jsonl" --steps "$STEPS" --warmup-steps "$WARMUP" \
          --max-eval-pairs "$EVAL_PAIRS" --max-length 128 --batch-pairs 8 --eval-batch-pairs 32 \
          --threads "$THREADS" --out-json "$OUT/${m}_${side}_r$rep.json" > "$OUT/${m}_${side}_r$rep.log" 2>&1
    done
    if [ "$rep" = 1 ]; then  # how much of the harness's work is padding (bench/padding.py)
      "$VENV/bin/python" bench/padding.py "$OUT" "$PTMODELS/$m" > "$OUT/${m}_torch_padding.json" 2> /dev/null
    fi
    echo "== rep $rep $m: rewardkit (load $(cut -d' ' -f1 /proc/loadavg))"
    run="$OUT/${m}_rk_r$rep"
    rm -rf "$run"
    /usr/bin/time -f "%M" -o "$run.train.rss" "$rk" train --threads "$THREADS" --model "$PTMODELS/$m" \
        --data "$OUT/train.jsonl" --eval-data "$OUT/eval.jsonl" --out "$run" --max-steps "$STEPS" \
        --batch-size 8 --max-length 128 --lr 2e-5 --log-every 1 --json > "$run.train.json" 2> "$run.train.log"
    /usr/bin/time -f "%M" -o "$run.eval.rss" "$rk" eval --threads "$THREADS" --model "$run/final" \
        --data "$OUT/eval.jsonl" --batch-size 64 --max-length 128 --json > "$run.eval.json" 2> "$run.eval.log"
  done
done

python3 bench/summarize.py "$OUT" "$WARMUP" "$PTMODELS" | tee "$OUT/summary.md"
