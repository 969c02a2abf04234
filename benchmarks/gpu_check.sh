#!/usr/bin/env bash
# The GPU check, in one command on a CUDA machine (from the repository root, after `make install`):
#
#   bash benchmarks/gpu_check.sh            # writes benchmarks/gpu_check.json, benchmarks/results_cuda.json
#
# 1. The equivalences on CUDA, in bf16, with the compiled flex backend (benchmarks/gpu_check.py):
#    our decode == generate, attention fusion with N = 1 == origin, flex == dense, a batch == each
#    example alone, for the tiny model (head_dim 16) of every family in the architecture matrix and
#    the embedded SmolLM2; each line PASS, FAIL (with the error) or SKIP (with the reason) and the
#    share of answers that agree. A failing check does not stop the others.
# 2. A short benchmark of every method on CUDA (benchmarks/bench_methods.py, 20 facts, N 1/2/5).
#    It runs even when the check failed.
#
# Exit status: 0 when both passed, 1 when either failed (each one's is printed), 2 without CUDA.
set -uo pipefail  # no -e: a failed step is remembered, not the end of the script
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False)" >&2
  exit 2
fi
"$PY" benchmarks/gpu_check.py --out benchmarks/gpu_check.json
check=$?
"$PY" benchmarks/bench_methods.py --device cuda --dtype bfloat16 --ns 1 2 5 --limit 20 --out benchmarks/results_cuda.json
bench=$?
echo "gpu_check: equivalence check exit ${check} (benchmarks/gpu_check.json), benchmark exit ${bench} (benchmarks/results_cuda.json)"
if [ "$check" -ne 0 ] || [ "$bench" -ne 0 ]; then
  [ "$check" -ne 0 ] && echo "gpu_check: FAILED: the equivalence check (see the FAIL lines above and benchmarks/gpu_check.json)" >&2
  [ "$bench" -ne 0 ] && echo "gpu_check: FAILED: the benchmark" >&2
  exit 1
fi
echo "gpu_check: all passed"
