#!/usr/bin/env bash
# Type-check the TensorRT backend against the real TensorRT 10.13 API (tensorrt-stubs) and the
# local pycuda stubs (typings/pycuda; pycuda ships none). No TensorRT or GPU needed.
# tests/backends/test_typecheck.py runs this script, so CI fails when a TensorRT or pycuda call
# does not match the API. scripts/prepare_trt_stubs.py says why the stubs are copied first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
stubs=$(mktemp -d)
trap 'rm -rf "$stubs"' EXIT
"$PYTHON" scripts/prepare_trt_stubs.py "$stubs"
MYPYPATH="$stubs:typings" "$PYTHON" -m mypy --follow-imports=silent --no-incremental \
    sbdeploy/backends/tensorrt "$@"
