#!/usr/bin/env bash
# Accuracy parity with TRL (issue 16 item 6): the same reward model trained by TRL's RewardTrainer
# and by `rewardkit train`, over several seeds, on ../shared/data/hh-rlhf/helpful-base-anchor-split
# with TRL's anchor settings (../shared/baselines/RESULTS.md): all-MiniLM-L6-v2 from the same HF
# folder, one epoch (1,882 pairs, 236 steps of 8 pairs), max length 256, AdamW lr 3e-5 with linear
# decay and no warmup, dropout off, gradient clipping at 1.0, 2 threads; held-out accuracy on the
# split's 470 eval pairs. A seed sets the head's initialisation and the data order on both sides.
#
# rewardkit runs three ways: `--pooling pooler` (what BertForSequenceClassification reads: the
# tanh pooler over the CLS state), `--pooling mean`, and `--pooling pooler --input-style sequence`
# (prompt + response as one segment, TRL's string concatenation, instead of a text pair).
# Accuracy is counted as TRL counts it (reward(chosen) > reward(rejected), a tie is wrong).
#
#   bash bench/trl-parity.sh                 # SEEDS="1 2 3"; about 70 minutes on 2 cores
#   SIDES=rewardkit bash bench/trl-parity.sh # skip TRL (or SIDES=trl); OUT=DIR adds to DIR
#
# Writes bench/results/<date>-trl-parity/summary.md (mean ± sd per setting, and each run).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
SEEDS="${SEEDS:-1 2 3}"; SIDES="${SIDES:-trl rewardkit}"
OUT="${OUT:-bench/results/$(date -u +%Y%m%dT%H%M)-trl-parity}"
anchor="$DATA/hh-rlhf/helpful-base-anchor-split"
mkdir -p "$OUT"

source bench/venv.sh
prepare_bench_models
model="$PTMODELS/minilm"
[[ " $SIDES " != *" rewardkit "* ]] || build_rewardkit

rewardkit_run() { # name seed flags...
  local name=$1 seed=$2; shift 2
  local run="$OUT/rk-$name-s$seed"
  rm -rf "$run"
  "$rk" train --threads "$THREADS" --model "$model" --data "$anchor/train.jsonl" \
    --eval-data "$anchor/eval.jsonl" --out "$run" --epochs 1 --batch-size 8 --max-length 256 \
    --lr 3e-5 --warmup-steps 0 --warmup-ratio 0 --max-grad-norm 1.0 --seed "$seed" --packing \
    --eval-every 0 --log-every 50 "$@" --json > "$run.train.json" 2> "$run.train.log"
  "$rk" eval --threads "$THREADS" --model "$run/final" --data "$anchor/eval.jsonl" \
    --max-length 256 --max-batch-tokens 8192 --save-scores "$run.scores.jsonl" \
    --json > "$run.eval.json" 2> "$run.eval.log"
  rm -rf "$run"
}

for seed in $SEEDS; do
  if [[ " $SIDES " == *" trl "* ]]; then
    echo "== seed $seed: TRL RewardTrainer ($(date -u +%H:%M))"
    "$VENV/bin/python" "$BASE/trl_reward_baseline.py" --model "$model" --variant trl \
      --train-file "$anchor/train.jsonl" --eval-file "$anchor/eval.jsonl" --steps 236 \
      --warmup-steps 5 --max-eval-pairs 1000 --max-length 256 --truncation-side left \
      --lr 3e-5 --seed "$seed" --threads "$THREADS" --out-json "$OUT/trl-s$seed.json" \
      > "$OUT/trl-s$seed.log" 2>&1
  fi
  if [[ " $SIDES " == *" rewardkit "* ]]; then
    echo "== seed $seed: rewardkit ($(date -u +%H:%M))"
    rewardkit_run pooler "$seed" --pooling pooler
    rewardkit_run mean "$seed" --pooling mean
    rewardkit_run pooler-sequence "$seed" --pooling pooler --input-style sequence
  fi
done

python3 bench/trl_parity_summary.py "$OUT" | tee "$OUT/summary.md"
