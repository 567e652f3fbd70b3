#!/usr/bin/env bash
# Create .venv and install sbdeploy with its test tools. Safe to run again.
# torch is pinned to 2.13.0: on the project's machines that is the CPU build already on
# disk; an unpinned `torch` would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }
pip install --quiet --upgrade pip
pip install --quiet "torch==2.13.0"
pip install --quiet -e ".[dev]"
pip install --quiet --no-deps "tensorrt-stubs==10.13.0.35.1"
echo "sbdeploy installed in .venv ($(.venv/bin/python -c 'import sbdeploy; print(sbdeploy.__version__)'))"
