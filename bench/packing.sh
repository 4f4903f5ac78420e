#!/usr/bin/env bash
# No padding (issue 16 item 3) on real weights and data: padded rows against sequences packed
# side by side (`train --packing`, `eval --max-batch-tokens`), back to back on the same machine.
#   1. MiniLM (all-MiniLM-L6-v2, an encoder, CLS pooling): `rewardkit train` on the HH anchor
#      split, batch 8 pairs, max length 256, STEPS steps each way: steady pairs/s (steps 2..),
#      positions computed per pair, peak RSS; then `rewardkit eval` of the packed run's model
#      on the first EVAL_PAIRS rows of HH helpful-base test, --batch-size 32 against
#      --max-batch-tokens 8192: pairs/s, positions per pair, and the largest score difference
#      between the two --save-scores files (1e-5 is the bound).
#   2. SmolLM2-135M-Instruct (GGUF, dequantised to f32; a decoder read at the last token,
#      with the shared prompt on both sides): the same eval of a model trained STEPS steps.
#
#   bash bench/packing.sh                  # STEPS=12 EVAL_PAIRS=256 LENGTH=256
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
GGUF="${GGUF:-$MODELS/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
MINILM="${MINILM:-$MODELS/minilm}"
STEPS="${STEPS:-12}"; EVAL_PAIRS="${EVAL_PAIRS:-256}"; LENGTH="${LENGTH:-256}"
OUT="${OUT:-bench/results/$(date -u +%Y%m%dT%H%M)-packing}"
mkdir -p "$OUT"
build_rewardkit
anchor="$DATA/hh-rlhf/helpful-base-anchor-split"
head -n 16 "$anchor/eval.jsonl" > "$OUT/train-eval.jsonl"
hh_test_rows "$EVAL_PAIRS" > "$OUT/eval.jsonl"

train() { # name model steps flags...
  local name=$1 model=$2 steps=$3; shift 3
  rm -rf "$OUT/train-$name"
  /usr/bin/time -v -o "$OUT/train-$name.time" "$rk" train --threads "$THREADS" --model "$model" \
    --data "$anchor/train.jsonl" --eval-data "$OUT/train-eval.jsonl" --out "$OUT/train-$name" \
    --max-steps "$steps" --batch-size 8 --max-length "$LENGTH" --log-every 1 "$@" \
    > "$OUT/train-$name.log" 2>&1
}
evaluate() { # name model flags...
  local name=$1 model=$2; shift 2
  /usr/bin/time -v -o "$OUT/eval-$name.time" "$rk" eval --threads "$THREADS" --model "$model" \
    --data "$OUT/eval.jsonl" --max-length "$LENGTH" --save-scores "$OUT/scores-$name.jsonl" \
    --json "$@" > "$OUT/eval-$name.json" 2> "$OUT/eval-$name.log"
}

train minilm-padded "$MINILM" "$STEPS"
train minilm-packed "$MINILM" "$STEPS" --packing
evaluate minilm-padded "$OUT/train-minilm-packed/final" --batch-size 32
evaluate minilm-packed "$OUT/train-minilm-packed/final" --max-batch-tokens 8192
train smollm2 "$GGUF" 2 --packing
evaluate smollm2-padded "$OUT/train-smollm2/final" --batch-size 16
evaluate smollm2-packed "$OUT/train-smollm2/final" --max-batch-tokens 4096

python3 - "$OUT" "$STEPS" "$LENGTH" <<'PY' | tee "$OUT/summary.md"
import json, re, sys
out, steps, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def rss(path):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(path).read())
    return int(m.group(1)) / 1024**2
def train(name):
    rows = [json.loads(l) for l in open(f"{out}/train-{name}/metrics.jsonl")]
    rows = [r for r in rows if r.get("kind") == "train" and r["step"] > 1]
    pairs_s = sum(r["pairs_per_s"] for r in rows) / len(rows)
    # positions computed per pair = positions per second / pairs per second
    pos = sum(r["padded_tokens_per_s"] / r["pairs_per_s"] for r in rows) / len(rows)
    real = sum(r["tokens_per_s"] / r["pairs_per_s"] for r in rows) / len(rows)
    return pairs_s, pos, real, rss(f"{out}/train-{name}.time")
def evaluate(name):
    t = json.load(open(f"{out}/eval-{name}.json"))["timing"]
    pos = t["padded_tokens_per_s"] / t["pairs_per_s"]
    real = t["tokens_per_s"] / t["pairs_per_s"]
    return t["pairs_per_s"], pos, real, rss(f"{out}/eval-{name}.time")
def scores(name):
    return [(r["chosen_score"], r["rejected_score"])
            for r in map(json.loads, open(f"{out}/scores-{name}.jsonl"))]
print(f"HH, max length {length}, 2 threads; training {steps} steps of 8 pairs "
      f"(steps 2.. averaged)\n")
print("| model | pass | rows | pairs/s | positions per pair | real tokens per pair | peak RSS (GB) |")
print("|---|---|---|---|---|---|---|")
rows = [("MiniLM", "training", train, "minilm-padded", "minilm-packed"),
        ("MiniLM", "scoring", evaluate, "minilm-padded", "minilm-packed"),
        ("SmolLM2-135M", "scoring (shared prompt)", evaluate, "smollm2-padded", "smollm2-packed")]
diffs = []
for model, name, f, a, b in rows:
    p, q = f(a), f(b)
    print(f"| {model} | {name} | padded | {p[0]:.2f} | {p[1]:.0f} | {p[2]:.0f} | {p[3]:.2f} |")
    print(f"| {model} | {name} | packed | {q[0]:.2f} | {q[1]:.0f} | {q[2]:.0f} | {q[3]:.2f} |")
    print(f"| {model} | {name} | ratio | {q[0] / p[0]:.2f}x | {p[1] / q[1]:.2f}x fewer | | |")
    if f is evaluate:
        x, y = scores(a), scores(b)
        assert len(x) == len(y), (len(x), len(y))
        d = max(max(abs(u[0] - v[0]), abs(u[1] - v[1])) for u, v in zip(x, y))
        diffs.append(d)
        print(f"| {model} | {name} | largest score difference | {d:.2e} | | | |")
print(f"\nscore differences, packed vs padded rows: at most {max(diffs):.2e} (bound 1e-5)")
assert max(diffs) <= 1e-5, diffs
PY
