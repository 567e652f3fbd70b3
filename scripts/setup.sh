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
pip install --quiet -e ".[dev,serve]"
pip install --quiet --no-deps "tensorrt-stubs==10.13.0.35.1"
# PyTriton's bundled Triton server, for the live serving tests and scripts/bench_triton.py. PyTriton
# pins numpy<2 (pytriton#93), so it gets its own small venv that sees .venv's packages (torch,
# onnxruntime, sbdeploy) behind its own through a .pth file. About 20 s and 370 MB.
# SBDEPLOY_NO_TRITON=1 skips it (the live tests then skip, saying why).
if [ "${SBDEPLOY_NO_TRITON:-0}" != 1 ]; then
  # The same base interpreter as .venv: the .pth layering needs the same Python ABI.
  [ -x .venv-triton/bin/python ] || "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv .venv-triton
  .venv-triton/bin/python -m pip install --quiet "nvidia-pytriton==0.7.0"
  main_site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  triton_site=$(.venv-triton/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  echo "import site; site.addsitedir('$main_site')" > "$triton_site/sbdeploy_main_venv.pth"
  echo "PyTriton installed in .venv-triton ($(.venv-triton/bin/python -c 'import numpy, pytriton; print("numpy", numpy.__version__)'))"
fi
echo "sbdeploy installed in .venv ($(.venv/bin/python -c 'import sbdeploy; print(sbdeploy.__version__)'))"
