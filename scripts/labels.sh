#!/usr/bin/env bash
# Issue 14, item 4 on real data: soft labels and ties in training, each against the hard-label
# default, with all-MiniLM-L6-v2 (CLS pooling), over SEEDS.
#
#  (a) AlpacaEval (`alpaca-eval-gpt4/pairs.jsonl.gz`, GPT-4 annotators' p_chosen), split by
#      prompt (every pair of an instruction shares its reference answer), 20% of the prompts held
#      out; STEPS steps of batch 8 on the rest: `soft` (the default: p_chosen is the target) and
#      `hard` (--hard-labels).
#  (b) PandaLM (`pandalm/testset-v1.json`, 865 pairs, 81 of them ties by majority vote), 20% of
#      the pairs held out; one epoch: `skip` (the default: ties left out) and `train` (--ties
#      train, as p = 1/2).
#
# Writes out/labels/{alpaca,pandalm}/VARIANT-sSEED/summary.json (the `train --json` summary,
# with the held-out evaluation) and out/labels/table.md (mean ± sd over seeds; per seed in
# table.json). About an hour on 2 cores with the defaults (8 minutes an AlpacaEval run, 2 a
# PandaLM run), once built. A run whose summary exists is not redone.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rewardkit/target}"
DATA="${REWARDKIT_DATA:-../shared/data}"
OUT="${OUT:-out/labels}"
THREADS="${THREADS:-2}"
SEEDS="${SEEDS:-1 2 3}"
STEPS="${STEPS:-300}"
mkdir -p "$OUT/alpaca" "$OUT/pandalm"

cargo build --release --locked -p rewardkit
cp "$CARGO_TARGET_DIR/release/rewardkit" "$OUT/rewardkit"
rk="$OUT/rewardkit"
models="$(bash scripts/fetch-models.sh)"

"$rk" data split "$DATA/alpaca-eval-gpt4/pairs.jsonl.gz" --eval-fraction 0.2 --seed 0 \
    --by prompt --train-out "$OUT/alpaca/train.jsonl" --eval-out "$OUT/alpaca/heldout.jsonl"
"$rk" data split "$DATA/pandalm/testset-v1.json" --eval-fraction 0.2 --seed 0 \
    --train-out "$OUT/pandalm/train.jsonl" --eval-out "$OUT/pandalm/heldout.jsonl"

train() { # SET VARIANT SEED FLAGS…
    local set="$1" variant="$2" seed="$3"
    shift 3
    local dir="$OUT/$set/$variant-s$seed"
    [ -s "$dir/summary.json" ] && return
    echo "== $set $variant seed $seed: $*" >&2
    rm -rf "$dir/run"
    mkdir -p "$dir"
    "$rk" train --threads "$THREADS" --model "$models/minilm" --pooling cls \
        --data "$OUT/$set/train.jsonl" --eval-data "$OUT/$set/heldout.jsonl" --out "$dir/run" \
        --batch-size 8 --max-length 256 --lr 3e-5 --warmup-ratio 0.05 --seed "$seed" \
        --log-every 50 "$@" --json > "$dir/summary.json.part"
    mv "$dir/summary.json.part" "$dir/summary.json"
    # The weights are not needed for the table.
    rm -rf "$dir/run"
}

for seed in $SEEDS; do
    train alpaca soft "$seed" --max-steps "$STEPS"
    train alpaca hard "$seed" --max-steps "$STEPS" --hard-labels
    train pandalm skip "$seed" --epochs 1
    train pandalm train "$seed" --epochs 1 --ties train
done

python3 scripts/labels_table.py "$OUT" > "$OUT/table.md"
cat "$OUT/table.md"
