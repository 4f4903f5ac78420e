#!/usr/bin/env bash
# Goodhart on GSM8K with real model solutions and checkable gold (the final number).
#
# GSM8K's example_model_solutions.jsonl holds, for each of 1,319 test questions, four real
# solutions (GPT-3 6B/175B, fine-tuned or verifier-ranked) labelled correct or not. Half of the
# questions train K MiniLM verifiers (proxies: reward models on gold-labelled pairs, different
# seeds); the other half is the best-of-n pool (N = 4). The proxies pick, gold judges.
# Also the HH-RLHF reward model of the main job as a proxy (trained for helpfulness, not math).
# About 25 minutes on 2 cores. Results under out/goodhart-gsm8k/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rewardkit/target}"
DATA="${REWARDKIT_DATA:-../shared/data}"
OUT="${OUT:-out/goodhart-gsm8k}"
THREADS="${THREADS:-2}"
K="${K:-3}"
mkdir -p "$OUT"

cargo build --release --locked -p rewardkit
rk="$CARGO_TARGET_DIR/release/rewardkit"
models="$(bash scripts/fetch-models.sh)"

"$rk" goodhart label --pool "$DATA/gsm8k/example_model_solutions.jsonl" \
    --pairs-out "$OUT/train-pairs.jsonl" --pool-out "$OUT/pool.jsonl" --heldout-fraction 0.5

proxies=()
for seed in $(seq 1 "$K"); do
    if [ ! -f "$OUT/proxy-$seed/final/model.safetensors" ]; then
        "$rk" train --threads "$THREADS" --model "$models/minilm" --pooling mean \
            --data "$OUT/train-pairs.jsonl" --out "$OUT/proxy-$seed" --split-seed "$seed" \
            --epochs 1 --batch-size 8 --max-length 256 --lr 3e-5 --warmup-ratio 0.05 --seed "$seed" \
            --log-every 20 --eval-every 0 --json > "$OUT/proxy-$seed.json"
    fi
    proxies+=(--proxy "$OUT/proxy-$seed/final")
done

"$rk" goodhart curves --threads "$THREADS" --pool "$OUT/pool.jsonl" "${proxies[@]}" \
    --max-length 256 --out "$OUT/verifiers"
if [ -d out/hh-minilm/minilm-rm/final ]; then
    "$rk" goodhart curves --threads "$THREADS" --pool "$OUT/pool.jsonl" \
        --proxy out/hh-minilm/minilm-rm/final --prompt-format hh --max-length 256 --out "$OUT/hh-proxy"
fi
