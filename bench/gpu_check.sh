#!/usr/bin/env bash
# The GPU check from a bare checkout, on a machine with a CUDA torch and no network: nothing
# is installed, the checkout is imported as it is (bench/gpu_check.py says how), and what is
# missing besides torch and numpy is skipped and said. Ends with one JSON line of figures.
#
#   bash bench/gpu_check.sh               # the gpu tests, then medium k=1 and k=0 vs the record
#   bash bench/gpu_check.sh --cpu-smoke   # the same script's non-CUDA part, on CPU at tiny size
#
# PYTHON picks the interpreter (default python3); GPU_CHECK_TIMEOUT caps the whole run in
# seconds (default 480: inside 8 minutes). Other arguments go to bench/gpu_check.py.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then
    echo "gpu_check.sh: $PY cannot import torch and numpy, the two things this check needs" >&2
    exit 2
fi
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
timeout --kill-after=10 "${GPU_CHECK_TIMEOUT:-480}" "$PY" bench/gpu_check.py "$@"
status=$?
[ $status -eq 124 ] && echo "gpu_check.sh: stopped after ${GPU_CHECK_TIMEOUT:-480} s" >&2
exit $status
