#!/usr/bin/env bash
# `rewardkit rl` against TRL's GRPOTrainer (bench/rl_trl.py, the bench venv), back to back on this
# machine: the same policy (SmolLM2-135M-Instruct, its Q4_1 GGUF dequantised to f32 on both sides,
# full fine-tuning), the same prompts (GSM8K questions in the chat template), B prompts × k samples
# per step, the same max new tokens, temperature 1, β > 0 (both keep a reference model), one
# optimizer step per generation batch, the same reward model (MiniLM with a value head on BERT's
# pooler, trained a few steps here so that transformers' BertForSequenceClassification computes the
# same function), the same thread count. Reports seconds per step with its split (generation;
# scoring + log-probabilities; update), completion tokens per second, peak RSS and the ratio
# TRL / rewardkit, in bench/results/<date>-rl/summary.md.
#
#   bash bench/rl.sh                 # THREADS=2 B=4 K=4 NEW=64 STEPS=5 (the first step is warmup)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
B="${B:-4}"; K="${K:-4}"; NEW="${NEW:-64}"; STEPS="${STEPS:-5}"
BETA="${BETA:-0.05}"; LR="${LR:-1e-6}"
OUT="${OUT:-bench/results/$(date -u +%Y%m%dT%H%M)-rl}"
mkdir -p "$OUT"

BENCH_EXTRA="gguf==0.19.0" source bench/venv.sh
[ -f "$MODELS/minilm/model.safetensors" ] || bash scripts/fetch-models.sh
GGUF_DIR="$MODELS/smollm2"; GGUF=SmolLM2-135M-Instruct.Q4_1.gguf

cargo build --release --locked -p rewardkit
rk="$CARGO_TARGET_DIR/release/rewardkit"

# The reward model (as bench/serve.sh trains it) and the prompts: the first B·(STEPS+1) questions.
rm="$OUT/minilm-rm"
if [ ! -f "$rm/final/model.safetensors" ]; then
  "$rk" data split "$DATA/hh-rlhf/helpful-base/test.jsonl.gz" --eval-fraction 0.5 --seed 0 \
      --train-out "$OUT/hh-train.jsonl" --eval-out "$OUT/hh-eval.jsonl" 2>/dev/null
  "$rk" train --threads "$THREADS" --model "$MODELS/minilm" --pooling pooler --data "$OUT/hh-train.jsonl" \
      --eval-fraction 0.05 --out "$rm" --max-steps 8 --batch-size 8 --max-length 128 > /dev/null 2> "$OUT/rm-train.log"
fi
# The policy for TRL: the GGUF's weights, dequantised to f32 by transformers, as an HF folder.
hf="$CACHE/bench-models/smollm2-135m-instruct-f32"
[ -f "$hf/model.safetensors" ] || "$VENV/bin/python" bench/export_gguf_hf.py "$GGUF_DIR" "$GGUF" "$hf" 2> "$OUT/export.log"
python3 -c 'import json, sys
for line in list(open(sys.argv[1]))[: int(sys.argv[2])]:
    print(json.dumps({"prompt": json.loads(line)["question"]}))' "$DATA/gsm8k/test.jsonl" $(( B * (STEPS + 1) )) > "$OUT/prompts.jsonl"

echo "== TRL GRPOTrainer (load $(cut -d' ' -f1 /proc/loadavg))"
/usr/bin/time -f "%M" -o "$OUT/trl.rss" "$VENV/bin/python" bench/rl_trl.py --policy-dir "$hf" \
    --reward-model "$rm/final" --prompts "$OUT/prompts.jsonl" \
    --prompts-per-step "$B" --samples-per-prompt "$K" --max-new-tokens "$NEW" --steps "$STEPS" \
    --beta "$BETA" --lr "$LR" --threads "$THREADS" --out-json "$OUT/trl.json" > "$OUT/trl.log" 2>&1

echo "== rewardkit rl (load $(cut -d' ' -f1 /proc/loadavg))"
rm -rf "$OUT/rk-run"
/usr/bin/time -f "%M" -o "$OUT/rk.rss" "$rk" rl --threads "$THREADS" --model "$GGUF_DIR/$GGUF" \
    --prompts "$OUT/prompts.jsonl" --reward-model "$rm/final" --out "$OUT/rk-run" --max-steps "$STEPS" \
    --prompts-per-step "$B" --samples-per-prompt "$K" --max-new-tokens "$NEW" --temperature 1 \
    --beta "$BETA" --lr "$LR" --ppo-epochs 1 --minibatches 1 > "$OUT/rk.log" 2>&1

python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, sys
out = sys.argv[1]
trl = json.load(open(f"{out}/trl.json"))
lines = [json.loads(l) for l in open(f"{out}/rk-run/metrics.jsonl")]
steps = [l for l in lines if l.get("kind") == "rl"][1:]  # the first step is warmup on both sides
def mean(k): return sum(s[k] for s in steps) / len(steps)
prev = [l for l in lines if l.get("kind") == "rl"]
step_s = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(prev, prev[1:])]
rk = {"step_s": sum(step_s) / len(step_s), "generate_s": mean("generate_s"), "score_s": mean("score_s"),
      "update_s": mean("update_s"), "tokens": mean("response_length") * trl["samples_per_step"]}
rk["tokens_per_s"] = rk["tokens"] / rk["step_s"]
rss = {t: int(open(f"{out}/{t}.rss").read().split()[-1]) / 1e6 for t in ("trl", "rk")}
print(f"# rewardkit rl vs TRL GRPOTrainer ({trl['samples_per_step']} samples/step, {len(steps)} timed steps, "
      f"{trl['threads']} threads; TRL {trl['trl_version']}, torch {trl['torch_version']})\n")
print("| tool | s/step | generate s | score + logprobs s | update s | completion tokens/step | tokens/s | peak RSS GB |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
print(f"| TRL | {trl['step_s']:.2f} | {trl['generate_s']:.2f} | {trl['score_s']:.2f} | {trl['update_s']:.2f} | "
      f"{trl['completion_tokens_per_step']:.0f} | {trl['tokens_per_s']:.1f} | {rss['trl']:.2f} |")
print(f"| rewardkit | {rk['step_s']:.2f} | {rk['generate_s']:.2f} | {rk['score_s']:.2f} | {rk['update_s']:.2f} | "
      f"{rk['tokens']:.0f} | {rk['tokens_per_s']:.1f} | {rss['rk']:.2f} |")
print(f"\nspeed ratio (TRL s/step ÷ rewardkit s/step): {trl['step_s'] / rk['step_s']:.2f}×; "
      f"per completion token: {rk['tokens_per_s'] / trl['tokens_per_s']:.2f}×")
PY
