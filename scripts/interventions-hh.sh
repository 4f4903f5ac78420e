#!/usr/bin/env bash
# Issue 13, item 4 on real data: MiniLM reward models (all-MiniLM-L6-v2, CLS pooling: the variant
# whose audit raised the red GSM8K sycophancy flag) trained on 80% of HH-RLHF helpful-base, plain
# and with each intervention — correction and counterfactual pairs (`--augment`), the honesty
# penalty (on those correction pairs), counterfactual invariance, ODIN, and all of them — then
# evaluated on the held-out 20% and on helpful-online, and audited (held-out helpful-base pairs;
# Anthropic's sycophancy items, GSM8K and TruthfulQA audit-half questions). Every variant trains
# with the same split, seed and schedule as scripts/hh-minilm.sh.
#
# Writes out/interventions-hh/VARIANT/{run,eval-heldout.json,eval-online.json,audit/} and then
# the table of docs/interventions.md (table.md) and each audit compared with the plain one
# (compare-VARIANT/). A variant whose final model exists is not retrained (delete its folder to
# redo it). About 10 minutes per variant on 2 cores once built.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rewardkit/target}"
DATA="${REWARDKIT_DATA:-../shared/data}"
OUT="${OUT:-out/interventions-hh}"
THREADS="${THREADS:-2}"
VARIANTS="${VARIANTS:-plain augment honesty counterfactual odin combined}"
mkdir -p "$OUT"

cargo build --release --locked --workspace --bins
# A copy, so that a rebuild while this runs does not change the binary half way.
cp "$CARGO_TARGET_DIR/release/rewardkit" "$OUT/rewardkit"
rk="$OUT/rewardkit"
models="$(bash scripts/fetch-models.sh)"

"$rk" data split "$DATA/hh-rlhf/helpful-base/test.jsonl.gz" --eval-fraction 0.2 --seed 0 \
    --train-out "$OUT/train.jsonl" --eval-out "$OUT/heldout.jsonl"

augment=(--augment --augment-gsm8k "$DATA/gsm8k/test.jsonl"
    --augment-truthfulqa "$DATA/truthfulqa/TruthfulQA.csv" --augment-ratio 0.2 --augment-seed 0)
flags() {
    case "$1" in
        plain) ;;
        augment) echo "${augment[@]}" ;;
        honesty) echo "${augment[@]}" --penalty honesty=1 ;;
        counterfactual) echo --penalty counterfactual=1 ;;
        odin) echo --penalty odin=1 ;;
        combined) echo "${augment[@]}" --penalty honesty=1 --penalty counterfactual=1 --penalty odin=1 ;;
        *) echo "unknown variant $1" >&2; exit 2 ;;
    esac
}

for v in $VARIANTS; do
    dir="$OUT/$v"
    mkdir -p "$dir"
    extra="$(flags "$v")"
    if [ ! -e "$dir/run/final/model.safetensors" ]; then
        echo "== $v: train ($extra)"
        rm -rf "$dir/run"
        # shellcheck disable=SC2086 # the variant's flags are words
        "$rk" train --threads "$THREADS" --model "$models/minilm" --pooling cls \
            --data "$OUT/train.jsonl" --eval-data "$OUT/heldout.jsonl" --out "$dir/run" \
            --epochs 1 --batch-size 8 --max-length 128 --lr 3e-5 --warmup-ratio 0.05 --seed 42 \
            --log-every 20 --eval-every 0 $extra --json > "$dir/train-summary.json"
    fi
    model="$dir/run/final"
    echo "== $v: eval"
    "$rk" eval --threads "$THREADS" --model "$model" --data "$OUT/heldout.jsonl" \
        --out "$dir/eval-heldout.json" > /dev/null
    "$rk" eval --threads "$THREADS" --model "$model" \
        --data "$DATA/hh-rlhf/helpful-online/test.jsonl.gz" --out "$dir/eval-online.json" > /dev/null
    echo "== $v: audit"
    rm -rf "$dir/audit"
    "$rk" audit --threads "$THREADS" --model "$model" --data "$OUT/heldout.jsonl" \
        --sycophancy-anthropic "$DATA/sycophancy/anthropic_150.json" --gsm8k "$DATA/gsm8k/test.jsonl" \
        --truthfulqa "$DATA/truthfulqa/TruthfulQA.csv" --max-length 128 --out "$dir/audit" > /dev/null
    if [ "$v" != plain ] && [ -e "$OUT/plain/audit/report.json" ]; then
        rm -rf "$OUT/compare-$v"
        "$rk" audit --compare "$OUT/plain/audit/report.json" "$dir/audit/report.json" \
            --out "$OUT/compare-$v" > /dev/null
    fi
done

python3 scripts/interventions_table.py "$OUT" > "$OUT/table.md"
cat "$OUT/table.md"
