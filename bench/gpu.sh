#!/usr/bin/env bash
# GPU figures in one prepared run. Needs a CUDA device and the project's venv
# (or PYTHON pointing at an interpreter with requirements.txt installed). Prints, never judges:
#   the card, learner updates/s with and without bf16 autocast and torch.compile, Policy.act on
#   CUDA against CPU (torch and onnxruntime), and the controller node's scan -> command latency
#   with device:=cuda against device:=cpu, measured in the same run.
#     bench/gpu.sh                # about 3 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("bench/gpu.sh: no CUDA device visible to torch (torch %s); nothing to measure" % torch.__version__)
print("card:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" bench/bench_learner.py --quick
"$PYTHON" bench/bench_node_latency.py --device cuda --seconds 5 --model models/attn_dqn_route.pt
"$PYTHON" bench/bench_node_latency.py --device cpu --seconds 5 --model models/attn_dqn_route.pt
