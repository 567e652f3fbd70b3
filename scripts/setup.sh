#!/usr/bin/env bash
# Create .venv and install sbdeploy with its test tools. Safe to run again.
#
#   bash scripts/setup.sh                 .venv: torch, sbdeploy (editable) and the test tools
#   bash scripts/setup.sh --with-triton   also .venv-triton, PyTriton's Triton server for the live
#                                         serving tests (about 20 s and 370 MB; .ci/run asks for it)
#
# Each step prints one line; pip's own output goes to .venv/setup.log (shown when a step fails).
# Every install takes the versions the suite passed with from requirements/constraints.txt (and
# requirements/constraints-triton.txt for .venv-triton); their headers say how to update them.
# torch is pinned to 2.13.0: on the project's machines that is the CPU build already on disk; an
# unpinned `torch` would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WITH_TRITON=0
for arg in "$@"; do
  case "$arg" in
    --with-triton) WITH_TRITON=1 ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (bash scripts/setup.sh [--with-triton])" >&2; exit 2 ;;
  esac
done

LOG=.venv/setup.log
step() { printf '==> %s\n' "$1"; }
# run CMD...: append its output to $LOG; on failure show the end of the log and stop.
run() {
  local start=$SECONDS
  if ! "$@" >>"$LOG" 2>&1; then
    echo "setup.sh: failed: $*" >&2
    echo "---- last lines of $LOG ----" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  printf '    done in %d s\n' $((SECONDS - start))
}
# install ARGS...: pip install into .venv, held to the tested versions.
install() { .venv/bin/python -m pip --disable-pip-version-check install -c requirements/constraints.txt "$@"; }

if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
: >"$LOG"
step "upgrading pip in .venv"
run install --upgrade pip
step "installing torch 2.13.0 (the CPU build; about 200 MB when it is not cached)"
run install "torch==2.13.0"
step "installing sbdeploy (editable) with the dev and serve extras: onnx, onnxruntime, onnxscript, pytest, mypy, tritonclient..."
run install -e ".[dev,serve]"
# tensorrt-stubs names the real tensorrt wheel as a requirement, which needs a GPU index: --no-deps.
step "installing tensorrt-stubs (TensorRT 10.13 type stubs for scripts/typecheck.sh)"
run install --no-deps "tensorrt-stubs==10.13.0.35.1"

# OpenVINO (the ov-cpu backend, about 180 MB installed): best effort; without it ov-cpu says so in one line and its tests skip.
step "installing the openvino extra (the ov-cpu backend)"
if install -e ".[openvino]" >>"$LOG" 2>&1; then
  echo "    OpenVINO $(.venv/bin/python -c 'import openvino; print(openvino.__version__.split("-")[0])')"
else
  echo "    not installed (see $LOG); the ov-cpu backend is unavailable, the rest works"
fi

# PyTriton's bundled Triton server, for the live serving tests and scripts/bench_triton.py. PyTriton
# pins numpy<2 (pytriton#93), so it gets its own small venv that sees .venv's packages (torch,
# onnxruntime, sbdeploy) behind its own through a .pth file. Without it those tests skip, saying why.
# The fused SB kernel library (issue 23): built where a compiler and ONNX Runtime's C API headers can be had;
# elsewhere its one line says why, and the plain ONNX forms run (its tests then skip, saying so).
step "building the fused SB kernel library (scripts/build_kernels.sh)"
bash scripts/build_kernels.sh | sed 's/^/    /' || true

if [ "$WITH_TRITON" = 1 ]; then
  if [ ! -x .venv-triton/bin/python ]; then
    # The same base interpreter as .venv: the .pth layering needs the same Python ABI.
    step "creating .venv-triton (for the live Triton tests)"
    run "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv .venv-triton
  fi
  step "installing nvidia-pytriton 0.7.0 in .venv-triton (about 370 MB)"
  run .venv-triton/bin/python -m pip --disable-pip-version-check install -c requirements/constraints-triton.txt \
    "nvidia-pytriton==0.7.0"
  main_site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  triton_site=$(.venv-triton/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  echo "import site; site.addsitedir('$main_site')" >"$triton_site/sbdeploy_main_venv.pth"
  echo "PyTriton installed in .venv-triton ($(.venv-triton/bin/python -c 'import numpy, pytriton; print("numpy", numpy.__version__)'))"
fi
echo "sbdeploy $(.venv/bin/python -c 'import sbdeploy; print(sbdeploy.__version__)') installed in .venv (pip's output: $LOG)"
