#!/usr/bin/env bash
# The GPU acceptance check: one run, everything under one folder, a one-screen summary.
#
#   bash scripts/gpu_check.sh [OUT]        (default OUT: gpu_check/<UTC time>)
#
# Runs with the machine's own Python (PYTHON, default python3) and the working tree on PYTHONPATH:
# no install step, no .venv. Steps, each under its own time limit (7.5 minutes in all at most):
#   1. sbdeploy doctor --json                        -> OUT/doctor.json            (30 s)
#   2. pytest -m gpu, JUnit XML                       -> OUT/pytest-gpu.xml, .log  (300 s)
#      every GPU test: TensorRT engines of the trt target (sidecar, parity at the profile's min/opt/max,
#      int8, timing cache, version-compatible, CUDA graphs), the pipeline end to end on TensorRT
#      (tests/test_pipeline_gpu.py), ONNX Runtime's CUDA/TensorRT providers, GPU timing
#   3. PyTorch CUDA fp32/fp16 latency, baseline vs SB, cifar_resnet56 / resnet18 / resnet50 at
#      batch 1 and 32, interleaved, with 95% intervals (scripts/bench_speedup.py --cuda-only)
#                                                     -> OUT/torch_cuda.json, .log (120 s)
#   4. the summary                                    -> OUT/summary.txt (and on screen)
# A step out of time gets SIGINT (then SIGKILL 5 s later): pytest, interrupted, still writes the JUnit XML
# of the tests it ran. At most 450 s of steps + 15 s of grace: under 8 minutes.
# Where a piece is missing it says so and runs the rest: without TensorRT the TensorRT tests skip
# with their reason (the summary says how many and what that leaves unchecked), without
# onnxruntime-gpu the provider tests skip, without CUDA the latency step records that it had no
# GPU. Exit status: 0 when every step ran and no test failed, 1 otherwise. On a machine without a
# GPU this is the dry run that tests/test_gpu_check.py runs.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${1:-gpu_check/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# A machine without pytest (and no downloads) can take it from a folder carried with the tree:
#   pip install --target .gpu_pylib pytest   (here), then carry .gpu_pylib to the GPU machine.
[ -d .gpu_pylib ] && export PYTHONPATH="$PYTHONPATH:$PWD/.gpu_pylib"
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep its exit code in OUT/NAME.rc
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s)"
    timeout --signal=INT --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$rc" > "$OUT/$name.rc"
    [ "$rc" -eq 0 ] || status=1
    [ "$rc" -eq 124 ] && echo "   $name ran out of time (${limit} s)" | tee -a "$OUT/$name.log"
    return 0
}
step doctor 30 "$PYTHON" -m sbdeploy doctor --json
cp "$OUT/doctor.log" "$OUT/doctor.json"
if "$PYTHON" -c "import pytest" 2>/dev/null; then
    step pytest-gpu 300 "$PYTHON" -m pytest -m gpu -q -rs -p no:cacheprovider --junitxml="$OUT/pytest-gpu.xml" tests
else
    echo "== pytest-gpu: pytest is not installed for $PYTHON; the GPU tests did not run" \
        "(install it, or pip install --target .gpu_pylib pytest and bring .gpu_pylib along)" | tee "$OUT/pytest-gpu.log"
    echo 1 > "$OUT/pytest-gpu.rc"
    status=1
fi
step torch-cuda 120 "$PYTHON" scripts/bench_speedup.py --cuda-only --pairs cifar_resnet56 resnet18 resnet50 \
    --batches 1 32 --reps 60 --budget 3 --turn 10 --out "$OUT/torch_cuda.json"
"$PYTHON" scripts/gpu_check_summary.py "$OUT" | tee "$OUT/summary.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
exit "$status"
