#!/usr/bin/env bash
# RL on real weights: SmolLM2-135M-Instruct (GGUF) with LoRA adapters as the policy, GSM8K
# questions as prompts, a MiniLM verifier as the reward, gold = GSM8K's final-number check on
# held-out questions.
#
# GSM8K here is its 1,319 test questions with four real model solutions each (../shared/data).
# `scripts/goodhart-gsm8k.sh` (run first, with K=1 unless it has run already) splits them in
# halves: the verifier trains on the solutions of one half; here RL trains on the questions of
# that half ("training questions") and gold is measured on EVAL_N questions of the other half,
# which neither the verifier nor RL has seen, EVAL_K samples each with the same random streams
# at every evaluation (`rl --eval-prompts`; mean ± standard error in metrics.jsonl's `eval`).
# The HH-RLHF reward model of scripts/hh-minilm.sh, the textbook proxy (trained for
# helpfulness, not maths), is a second run when out/hh-minilm/minilm-rm/final exists.
#
#   bash scripts/rl-gsm8k.sh          # STEPS=40 B=4 K=4 NEW=128 THREADS=2, about 30 min per run
#
# Results under out/rl-gsm8k/: <run>/metrics.jsonl, <run>/final/ (the adapters, PEFT layout),
# curves.md (gold and proxy per evaluation).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rewardkit/target}"
DATA="${REWARDKIT_DATA:-../shared/data}"
OUT="${OUT:-out/rl-gsm8k}"
VERIFIERS="${VERIFIERS:-out/goodhart-gsm8k}"
THREADS="${THREADS:-2}"; STEPS="${STEPS:-40}"; B="${B:-4}"; K="${K:-4}"; NEW="${NEW:-128}"
BETA="${BETA:-0.05}"; LR="${LR:-1e-4}"; RANK="${RANK:-8}"
EVAL_N="${EVAL_N:-16}"; EVAL_K="${EVAL_K:-2}"; EVAL_EVERY="${EVAL_EVERY:-5}"
mkdir -p "$OUT"

cargo build --release --locked -p rewardkit
rk="$CARGO_TARGET_DIR/release/rewardkit"
models="$(bash scripts/fetch-models.sh)"
[ -f "$VERIFIERS/proxy-1/final/model.safetensors" ] || OUT="$VERIFIERS" K=1 bash scripts/goodhart-gsm8k.sh

# Training questions: those of the verifier's pairs; held-out: the first EVAL_N of the other half.
python3 - "$VERIFIERS/train-pairs.jsonl" "$VERIFIERS/pool.jsonl" "$EVAL_N" "$OUT" <<'EOF'
import json, sys
pairs, pool, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def questions(path):
    seen = []
    for line in open(path):
        q = json.loads(line)["prompt"]
        if q not in seen:
            seen.append(q)
    return seen
train, held = questions(pairs), questions(pool)
assert not set(train) & set(held), "the halves overlap"
for name, qs in [("train-prompts.jsonl", train), ("eval-prompts.jsonl", held[:n])]:
    with open(f"{out}/{name}", "w") as f:
        for q in qs:
            f.write(json.dumps({"prompt": q}) + "\n")
print(f"{len(train)} training questions, {min(n, len(held))} held-out", file=sys.stderr)
EOF

run() { # NAME REWARD_MODEL [extra flags]
    local name="$1" reward="$2"; shift 2
    "$rk" rl --threads "$THREADS" --model "$models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" \
        --lora-rank "$RANK" --prompts "$OUT/train-prompts.jsonl" --reward-model "$reward" \
        --gold-gsm8k "$DATA/gsm8k/test.jsonl" --eval-prompts "$OUT/eval-prompts.jsonl" \
        --eval-every "$EVAL_EVERY" --eval-samples-per-prompt "$EVAL_K" \
        --max-steps "$STEPS" --prompts-per-step "$B" --samples-per-prompt "$K" \
        --max-new-tokens "$NEW" --beta "$BETA" --lr "$LR" --save-every 5 \
        --out "$OUT/$name" --resume-or-start --json "$@" > "$OUT/$name.json"
}
run verifier "$VERIFIERS/proxy-1/final"
[ -d out/hh-minilm/minilm-rm/final ] && run hh-proxy out/hh-minilm/minilm-rm/final

# One table per run: the held-out evaluations and the training steps' proxy and KL.
python3 - "$OUT" <<'EOF' > "$OUT/curves.md"
import json, os, sys
out = sys.argv[1]
for name in ["verifier", "hh-proxy"]:
    path = os.path.join(out, name, "metrics.jsonl")
    if not os.path.exists(path):
        continue
    rows = [json.loads(l) for l in open(path)]
    steps = [r for r in rows if r.get("kind") == "rl"]
    print(f"## {name}\n")
    print("| updates | held-out gold | proxy (held-out) | KL (step) | response tokens |")
    print("|---:|---:|---:|---:|---:|")
    for r in steps:
        e = r.get("eval")
        if e:
            print(f"| {e['updates']} | {e['gold']:.3f} ± {e['gold_se']:.3f} | {e['proxy']:.3f} ± {e['proxy_se']:.3f} | {r['kl']:.2f} | {e['response_length']:.0f} |")
    for e in (r for r in rows if r.get("kind") == "rl_eval"):
        print(f"| {e['updates']} (final) | {e['gold']:.3f} ± {e['gold_se']:.3f} | {e['proxy']:.3f} ± {e['proxy_se']:.3f} | | {e['response_length']:.0f} |")
    sec = sum(r["generate_s"] + r["score_s"] + r["update_s"] for r in steps)
    print(f"\n{len(steps)} steps in {sec:.0f} s ({sec / max(len(steps), 1):.1f} s per step).\n")
EOF
cat "$OUT/curves.md"
