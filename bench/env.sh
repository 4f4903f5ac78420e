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
