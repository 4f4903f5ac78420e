# Sourced by the bench scripts: makes sure the PyTorch/TRL venv of ../shared/baselines exists
# (../shared/baselines/SETUP.md; ~6 GB, a few minutes the first time) at $VENV, plus any extra
# PyPI packages named in BENCH_EXTRA (e.g. BENCH_EXTRA="gguf==0.19.0"). Needs BASE and VENV set.
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, transformers, trl" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$BASE/requirements-lock.txt"
fi
for pkg in ${BENCH_EXTRA:-}; do
  "$VENV/bin/pip" show -q "${pkg%%[=<>]*}" >/dev/null 2>&1 || "$VENV/bin/pip" install -q "$pkg"
done
