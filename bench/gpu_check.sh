#!/usr/bin/env bash
# The GPU check with the project's own install (the machine may have no network: nothing is
# installed here). Run `make install` (or have .venv) first; otherwise the system python3 must
# already import torch and ablate's dependencies. Arguments go to bench/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! "$PY" -c "import torch, numpy, pyarrow" 2>/dev/null; then
    echo "gpu_check.sh: $PY cannot import torch, numpy and pyarrow; install the project first" >&2
    exit 2
fi
export PYTHONUNBUFFERED=1
timeout "${GPU_CHECK_TIMEOUT:-540}" "$PY" bench/gpu_check.py "$@"
