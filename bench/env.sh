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
