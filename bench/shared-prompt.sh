#!/usr/bin/env bash
# The shared-prompt forward (issue 16 item 2) on real weights: SmolLM2-135M-Instruct (GGUF,
# dequantised to f32) as a reward model on HH pairs, a causal decoder's default (each pair in
# one row after its prompt, the prompt computed once) against `--no-shared-prompt` (one row per
# sequence), back to back on the same machine:
#   1. training: `rewardkit train` from the GGUF on the HH anchor split, batch 8 pairs, max
#      length 256, STEPS steps each way: steady pairs/s (steps 2..), positions computed per
#      pair, peak RSS;
#   2. scoring: `rewardkit eval` of the model the first run saved on the first EVAL_PAIRS rows
#      of HH helpful-base's test split (the pairs that load), each way: pairs/s, positions per pair (with padding), and the
#      largest score difference between the two `--save-scores` files (1e-5 is the bound).
#
#   bash bench/shared-prompt.sh                  # STEPS=4 EVAL_PAIRS=256 LENGTH=256
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
GGUF="${GGUF:-$MODELS/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
STEPS="${STEPS:-4}"; EVAL_PAIRS="${EVAL_PAIRS:-256}"; LENGTH="${LENGTH:-256}"
OUT="${OUT:-bench/results/$(date -u +%Y%m%dT%H%M)-shared-prompt}"
mkdir -p "$OUT"
build_rewardkit
anchor="$DATA/hh-rlhf/helpful-base-anchor-split"
head -n 16 "$anchor/eval.jsonl" > "$OUT/train-eval.jsonl"
hh_test_rows "$EVAL_PAIRS" > "$OUT/eval.jsonl"

for mode in shared separate; do
  flag=""; [ "$mode" = separate ] && flag="--no-shared-prompt"
  rm -rf "$OUT/train-$mode"
  /usr/bin/time -v -o "$OUT/train-$mode.time" "$rk" train --threads "$THREADS" --model "$GGUF" \
    --data "$anchor/train.jsonl" --eval-data "$OUT/train-eval.jsonl" --out "$OUT/train-$mode" \
    --max-steps "$STEPS" --batch-size 8 --max-length "$LENGTH" --log-every 1 $flag \
    > "$OUT/train-$mode.log" 2>&1
done
model="$OUT/train-shared/final"
for mode in shared separate; do
  flag=""; [ "$mode" = separate ] && flag="--no-shared-prompt"
  /usr/bin/time -v -o "$OUT/eval-$mode.time" "$rk" eval --threads "$THREADS" --model "$model" \
    --data "$OUT/eval.jsonl" \
    --max-length "$LENGTH" --batch-size 16 --save-scores "$OUT/scores-$mode.jsonl" --json $flag \
    > "$OUT/eval-$mode.json" 2> "$OUT/eval-$mode.log"
done

python3 - "$OUT" "$STEPS" "$EVAL_PAIRS" "$LENGTH" <<'PY' | tee "$OUT/summary.md"
import json, re, sys
out, steps, n, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def rss(path):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(path).read())
    return int(m.group(1)) / 1024**2
def train(mode):
    rows = [json.loads(l) for l in open(f"{out}/train-{mode}/metrics.jsonl")]
    rows = [r for r in rows if r.get("kind") == "train" and r["step"] > 1]
    pairs_s = sum(r["pairs_per_s"] for r in rows) / len(rows)
    # positions computed per pair = padded positions per second / pairs per second
    pos = sum(r["padded_tokens_per_s"] / r["pairs_per_s"] for r in rows) / len(rows)
    return pairs_s, pos, rss(f"{out}/train-{mode}.time")
def evaluate(mode):
    t = json.load(open(f"{out}/eval-{mode}.json"))["timing"]
    pos = t["padded_tokens_per_s"] / t["pairs_per_s"]
    return t["pairs_per_s"], pos, rss(f"{out}/eval-{mode}.time")
def scores(mode):
    return [(r["chosen_score"], r["rejected_score"])
            for r in map(json.loads, open(f"{out}/scores-{mode}.jsonl"))]
a, b = scores("shared"), scores("separate")
assert len(a) == len(b), (len(a), len(b))  # rows data.rs drops (with a reason) are left out
n = len(a)
diff = max(max(abs(x[0] - y[0]), abs(x[1] - y[1])) for x, y in zip(a, b))
print(f"SmolLM2-135M reward model, HH, max length {length}, 2 threads; "
      f"training {steps} steps of 8 pairs (steps 2.. averaged), scoring {n} pairs\n")
print("| pass | rows | pairs/s | positions per pair | peak RSS (GB) |")
print("|---|---|---|---|---|")
for name, f in [("training", train), ("scoring", evaluate)]:
    s, p = f("shared"), f("separate")
    print(f"| {name} | shared prompt | {s[0]:.2f} | {s[1]:.0f} | {s[2]:.2f} |")
    print(f"| {name} | one per sequence | {p[0]:.2f} | {p[1]:.0f} | {p[2]:.2f} |")
    print(f"| {name} | ratio | {s[0] / p[0]:.2f}x | {p[1] / s[1]:.2f}x fewer | |")
print(f"\nlargest score difference, shared vs separate rows: {diff:.2e} (bound 1e-5)")
assert diff <= 1e-5, diff
PY
