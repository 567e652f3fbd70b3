#!/usr/bin/env bash
# Type-check the TensorRT backend against both TensorRT APIs it supports, with no ignores:
#   1. the TensorRT 10.13 API (tensorrt-stubs): every line, the 10.x-only ones included;
#   2. the TensorRT 11.4 API (stubs generated from the real 11.4 bindings, tests/data/tensorrt_11_4_stubs):
#      every line a TensorRT 11 machine runs; mypy skips the 10.x-only lines under `if TENSORRT_10_API:`
#      (--always-false), which use names TensorRT 11 removed.
# pycuda comes from the local stubs in typings/ (pycuda ships none). No TensorRT or GPU needed.
# tests/backends/test_typecheck.py runs this script, so CI fails when a TensorRT or pycuda call
# does not match either API. scripts/prepare_trt_stubs.py says how the stubs are laid out.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
stubs=$(mktemp -d)
trap 'rm -rf "$stubs"' EXIT
"$PYTHON" scripts/prepare_trt_stubs.py "$stubs/10" --tensorrt 10
"$PYTHON" scripts/prepare_trt_stubs.py "$stubs/11" --tensorrt 11
echo "== TensorRT 10.13 API"
MYPYPATH="$stubs/10:typings" "$PYTHON" -m mypy --follow-imports=silent --no-incremental sbdeploy/backends/tensorrt "$@"
echo "== TensorRT 11.4 API"
MYPYPATH="$stubs/11:typings" "$PYTHON" -m mypy --follow-imports=silent --no-incremental --always-false TENSORRT_10_API \
    sbdeploy/backends/tensorrt "$@"
