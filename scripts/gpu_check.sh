#!/usr/bin/env bash
# Every GPU check of the project in one go, in under 8 minutes on one H100/H200 (the
# timeouts add up to 7.8):
#   1. the learner bench on CUDA in bf16 (packed tree vs per-leaf rows), as JSON;
#   2. the policy tests with the transformers backend on CUDA (TREEGYM_TEST_DEVICE=cuda);
#   3. the vLLM tests on the GPU (greedy parity with transformers, prefix reuse, weight
#      sync), when vllm is installed.
# It needs a CUDA build of torch in $PYTHON's environment (the Makefile's venv pins the
# CPU wheel), and exits 2, having run nothing, when torch sees no GPU.
# Usage: scripts/gpu_check.sh            (PYTHON=path/to/python to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA GPU visible to torch $("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo '(not importable)'); nothing run" >&2
    exit 2
fi
"$PYTHON" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"gpu_check on {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}")'

step() { echo; echo "== $1 ($(date +%T))"; }

step "learner bench, cuda bf16 (speedup, peak memory; diffs are bf16-sized, not the fp32 bounds)"
timeout 150 "$PYTHON" -c '
import json
from treegym.learn.bench import bench_learner
print(json.dumps(bench_learner(device="cuda"), indent=2))'

step "policy tests, transformers on cuda"
TREEGYM_TEST_DEVICE=cuda timeout 120 "$PYTHON" -m pytest -q tests/policy \
    --ignore=tests/policy/test_policy_vllm.py --ignore=tests/policy/test_policy_vllm_sync.py \
    --ignore=tests/policy/test_policy_openai.py

if "$PYTHON" -c 'import vllm' 2>/dev/null; then
    step "vLLM on the GPU: parity with transformers on cuda, prefix reuse, weight sync"
    TREEGYM_TEST_DEVICE=cuda TREEGYM_REQUIRE_VLLM=1 timeout 200 "$PYTHON" -m pytest -q \
        tests/policy/test_policy_vllm.py tests/policy/test_policy_vllm_sync.py
else
    step "vLLM: skipped, vllm is not installed"
fi
echo; echo "gpu_check: all GPU checks passed"
