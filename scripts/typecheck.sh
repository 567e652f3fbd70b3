#!/usr/bin/env bash
# Type-check the TensorRT backend against the real TensorRT 10.13 API (tensorrt-stubs) and the
# local pycuda stubs (typings/pycuda). No TensorRT or GPU needed. tests/backends/test_typecheck.py
# runs this script, so CI fails when a TensorRT or pycuda call does not match the API.
#
# tensorrt-stubs 10.13.0.35.1 cannot be used by mypy as installed: `tensorrt/` has no py.typed
# marker (mypy would skip it as untyped), it imports a `tensorrt_libs` module it does not ship, and
# five generated lines of tensorrt_bindings/tensorrt.pyi are not valid Python (a parameter named
# `in`, a parameter without default after defaulted ones). So the stubs are copied into a private
# directory on MYPYPATH and exactly those lines are repaired there; none of them is an API sbdeploy uses.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
stubs=$(mktemp -d)
trap 'rm -rf "$stubs"' EXIT
"$PYTHON" - "$stubs" <<'PY'
import importlib.util, pathlib, re, shutil, sys
spec = importlib.util.find_spec("tensorrt_stubs")
if spec is None or spec.origin is None:
    sys.exit("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs==10.13.0.35.1")
site, out = pathlib.Path(spec.origin).parent.parent, pathlib.Path(sys.argv[1])
for package in ("tensorrt", "tensorrt_bindings"):
    shutil.copytree(site / package, out / package)
(out / "tensorrt_libs").mkdir()
(out / "tensorrt_libs" / "__init__.pyi").write_text("")
bindings = out / "tensorrt_bindings" / "tensorrt.pyi"
text = bindings.read_text()
text, n_in = re.subn(r"(def \w+\([^)]*?)\bin: ", r"\1in_: ", text)
text, n_axis = re.subn(r"power: Weights = None, channel_axis: int\)", "power: Weights = None, channel_axis: int = ...)", text)
if (n_in, n_axis) != (4, 1):
    sys.exit(f"tensorrt-stubs changed ({n_in} `in` parameters, {n_axis} channel_axis); update scripts/typecheck.sh")
bindings.write_text(text)
PY
MYPYPATH="$stubs:typings" "$PYTHON" -m mypy --follow-imports=silent --no-incremental \
    sbdeploy/backends/tensorrt "$@"
