#!/usr/bin/env bash
# The GPU check, in one command on a CUDA machine (from the repository root, after `make install`):
#
#   bash benchmarks/gpu_check.sh            # writes benchmarks/results_cuda.json and prints two tables
#
# 1. The equivalences on CUDA, in bf16, with the compiled flex backend (benchmarks/gpu_check.py):
#    our decode == generate, attention fusion with N = 1 == origin, flex == dense, a batch == each
#    example alone, for the tiny model of every family in the architecture matrix and the embedded
#    SmolLM2; each line PASS or FAIL with the share of answers that agree.
# 2. A short benchmark of every method on CUDA (benchmarks/bench_methods.py, 20 facts, N 1/2/5).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False)" >&2
  exit 2
fi
"$PY" benchmarks/gpu_check.py
"$PY" benchmarks/bench_methods.py --device cuda --dtype bfloat16 --ns 1 2 5 --limit 20 --out benchmarks/results_cuda.json
