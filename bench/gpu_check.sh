#!/usr/bin/env bash
# One script for a lent GPU (< 8 minutes): installs the pinned stack if it is missing, then
# runs the medium model with k = 0 and 1 extra embeddings (bench/gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch, pyarrow, rich" 2>/dev/null || python3 -m pip install -q -c constraints.txt torch pyarrow rich numpy
export PYTHONUNBUFFERED=1
timeout 470 python3 bench/gpu_check.py "$@"
