#!/usr/bin/env bash
# Python's `peft` reads rewardkit's LoRA adapters as rewardkit does (issue 12, item 5), on real
# weights, in the bench venv (+ peft):
#  1. policy: `rewardkit sft --lora-rank` on SmolLM2-135M-Instruct (its GGUF dequantised to an HF
#     folder, as bench/rl.sh does) for a few steps at a high learning rate, so the update is
#     large; `rewardkit lora merge`; peft's PeftModel + merge_and_unload gives the same weights
#     (bench/peft_check.py causal).
#  2. reward model: `rewardkit train --lora-rank` on MiniLM (value head on BERT's pooler, which is
#     BertForSequenceClassification); peft merges it and saves an HF folder; `rewardkit score` of
#     that folder equals `rewardkit score` of the adapter folder, row by row, while the trained head
#     on the base encoder alone (the LoRA update left out) scores far from both.
# Prints a summary and writes it to bench/results/<date>-peft/summary.md; exits 1 on a mismatch.
#
#   bash bench/peft-roundtrip.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
OUT="${OUT:-bench/results/$(date -u +%Y%m%dT%H%M)-peft}"
mkdir -p "$OUT"

BENCH_EXTRA="gguf==0.19.0 peft==0.21.2" source bench/venv.sh
[ -f "$MODELS/minilm/model.safetensors" ] || bash scripts/fetch-models.sh
cargo build --release --locked -p rewardkit
rk="$CARGO_TARGET_DIR/release/rewardkit"
hf="$CACHE/bench-models/smollm2-135m-instruct-f32"
[ -f "$hf/model.safetensors" ] || "$VENV/bin/python" bench/export_gguf_hf.py "$MODELS/smollm2" SmolLM2-135M-Instruct.Q4_1.gguf "$hf" 2> "$OUT/export.log"

# 1. The policy: SFT rows from GSM8K (question, reference solution).
python3 -c 'import json, sys
for line in list(open(sys.argv[1]))[:16]:
    r = json.loads(line)
    print(json.dumps({"prompt": r["question"], "response": r["answer"]}))' "$DATA/gsm8k/test.jsonl" > "$OUT/sft.jsonl"
rm -rf "$OUT/sft" "$OUT/sft-merged"
"$rk" sft --threads "$THREADS" --model "$hf" --data "$OUT/sft.jsonl" --out "$OUT/sft" --max-steps 3 \
    --batch-size 4 --max-length 128 --lr 1e-2 --lora-rank 8 --lora-alpha 16 \
    --lora-targets q_proj,v_proj,down_proj > /dev/null 2> "$OUT/sft.log"
"$rk" lora merge "$OUT/sft/final" --out "$OUT/sft-merged" > /dev/null 2>> "$OUT/sft.log"
policy=$("$VENV/bin/python" bench/peft_check.py causal "$OUT/sft/final" "$OUT/sft-merged" 2> "$OUT/peft-policy.log") \
    || { echo "policy: peft disagrees: $policy" >&2; exit 1; }

# 2. The reward model: HH-RLHF pairs.
"$rk" data split "$DATA/hh-rlhf/helpful-base/test.jsonl.gz" --eval-fraction 0.5 --seed 0 \
    --train-out "$OUT/hh-train.jsonl" --eval-out "$OUT/hh-eval.jsonl" 2>/dev/null
rm -rf "$OUT/rm"
"$rk" train --threads "$THREADS" --model "$MODELS/minilm" --pooling pooler --data "$OUT/hh-train.jsonl" \
    --eval-fraction 0.05 --out "$OUT/rm" --max-steps 6 --batch-size 8 --max-length 128 --lr 1e-2 \
    --lora-rank 8 --lora-alpha 16 > /dev/null 2> "$OUT/rm-train.log"
rm_report=$("$VENV/bin/python" bench/peft_check.py seqcls "$OUT/rm/final" "$OUT/rm-peft-merged" 2> "$OUT/peft-rm.log") \
    || { echo "reward model: peft disagrees: $rm_report" >&2; exit 1; }
python3 -c 'import json, sys
for line in list(open(sys.argv[1]))[:64]:
    r = json.loads(line)
    print(json.dumps({"prompt": r["prompt"], "response": r["chosen"]}))' "$OUT/hh-eval.jsonl" > "$OUT/score-rows.jsonl"
"$rk" score --threads "$THREADS" --model "$OUT/rm/final" --input "$OUT/score-rows.jsonl" --max-length 128 > "$OUT/scores-adapter.jsonl" 2>/dev/null
"$rk" score --threads "$THREADS" --model "$OUT/rm-peft-merged" --input "$OUT/score-rows.jsonl" --max-length 128 > "$OUT/scores-peft.jsonl" 2>/dev/null
"$rk" score --threads "$THREADS" --model "$OUT/rm-peft-merged-head-only" --input "$OUT/score-rows.jsonl" --max-length 128 > "$OUT/scores-head-only.jsonl" 2>/dev/null

python3 - "$OUT" "$policy" "$rm_report" <<'PY' | tee "$OUT/summary.md"
import json, sys
out, policy, rm = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
a = [json.loads(l)["score"] for l in open(f"{out}/scores-adapter.jsonl")]
b = [json.loads(l)["score"] for l in open(f"{out}/scores-peft.jsonl")]
assert len(a) == len(b) > 0, (len(a), len(b))
c = [json.loads(l)["score"] for l in open(f"{out}/scores-head-only.jsonl")]
diff = max(abs(x - y) for x, y in zip(a, b))
moved = max(abs(x - y) for x, y in zip(a, c))
print(f"# peft {policy['peft']} reads rewardkit's LoRA adapters\n")
print("| adapter | check | result |")
print("| --- | --- | --- |")
print(f"| SmolLM2-135M-Instruct policy (`sft --lora-rank 8`, q/v/down_proj) | peft's merge_and_unload against `rewardkit lora merge`, {policy['compared']} tensors | max diff {policy['max_diff']:.2e} (largest LoRA update {policy['max_update']:.3f}) |")
print(f"| MiniLM reward model (`train --lora-rank 8`, query/value + head) | `rewardkit score` of peft's merged folder against the adapter folder, {len(a)} rows | max diff {diff:.2e} (the LoRA update moves scores by up to {moved:.3f}: the head alone on the base encoder; largest weight update {rm['max_update']:.3f}) |")
sys.exit(0 if diff <= 1e-4 and moved > 100 * max(diff, 1e-6) else 1)
PY
