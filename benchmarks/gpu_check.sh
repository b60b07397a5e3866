#!/usr/bin/env bash
# The GPU check (issue 15): XTTS-v2's real size on one NVIDIA GPU in at most 8 minutes, one table.
#   benchmarks/gpu_check.sh            # from the repository root, after `make install`
# It refuses at once, saying why, on a machine without an NVIDIA GPU or without CUDA in PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LIMIT=${GPU_CHECK_SECONDS:-480}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none) — run this script on a machine with one" >&2
  exit 2
fi
if [ ! -x "$PY" ]; then
  echo "gpu_check: $PY not found — run 'make install' first (or set PYTHON=/path/to/python)" >&2
  exit 2
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: PyTorch ($PY) sees no CUDA GPU although nvidia-smi does — install a CUDA build of torch" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --signal=INT --kill-after=20 "$LIMIT" "$PY" benchmarks/gpu_check.py
