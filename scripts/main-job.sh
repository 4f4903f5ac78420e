#!/usr/bin/env bash
# The main job: build rewardkit, describe the real preference data in ../shared/data, and evaluate
# the "longer response wins" baseline on HH-RLHF with every metric (the bar any reward model must
# clear). Writes results under out/main-job/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rewardkit/target}"
DATA="${REWARDKIT_DATA:-../shared/data}"
OUT="${OUT:-out/main-job}"
mkdir -p "$OUT"

cargo build --release --locked -p rewardkit
rk="$CARGO_TARGET_DIR/release/rewardkit"

echo "== rewardkit data stats: HH-RLHF helpful-base (test)"
"$rk" data stats "$DATA/hh-rlhf/helpful-base/test.jsonl.gz"
echo
echo "== rewardkit data stats: PandaLM (human labels with ties)"
"$rk" data stats "$DATA/pandalm/testset-v1.json"
echo
echo "== rewardkit eval: the length baseline on the four HH-RLHF test sets"
"$rk" eval --baseline length --data "$DATA"/hh-rlhf/{helpful-base,harmless-base,helpful-online,helpful-rejection-sampled}/test.jsonl.gz \
    --save-scores "$OUT/length-scores.jsonl" --out "$OUT/length-eval.json" >/dev/null
echo
echo "== rewardkit eval --scores (the saved scores, as any model's would be evaluated)"
"$rk" eval --scores "$OUT/length-scores.jsonl" --plot "$OUT/reliability.svg"
echo
echo "results: $OUT/length-eval.json, $OUT/reliability.svg"
