"""Lay out TensorRT type stubs in a folder mypy can use as MYPYPATH: the 10.13 API or the 11.4 API.

``--tensorrt 10`` (default) copies ``tensorrt-stubs`` 10.13.0.35.1 (PyPI; installed by
scripts/setup.sh), which mypy cannot use as installed: ``tensorrt/`` has no ``py.typed``
marker (mypy would skip it as untyped), it imports a ``tensorrt_libs`` module it does not
ship, and five generated lines of ``tensorrt_bindings/tensorrt.pyi`` are not valid Python
(a parameter named ``in``; a parameter without default after defaulted ones). Those are
repaired (:func:`repair_stub_text`); none of them is an API sbdeploy uses.

``--tensorrt 11`` lays out the stubs generated from the real TensorRT 11.4 bindings
(tests/data/tensorrt_11_4_stubs, made by scripts/extract_trt_api.py from
``tensorrt-cu13-bindings==11.4.0.106``): per class, the members and signatures TensorRT 11.4
has. scripts/typecheck.sh checks sbdeploy's TensorRT code against both.

Usage: python scripts/prepare_trt_stubs.py OUTDIR [--tensorrt 10|11]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import sys
from pathlib import Path

STUBS_11_4 = Path(__file__).resolve().parent.parent / "tests" / "data" / "tensorrt_11_4_stubs"


def repair_stub_text(text: str, name: str) -> str:
    """Repair the lines of pybind11-stubgen's ``tensorrt.pyi`` that are not valid Python (other files pass through)."""
    if name != "tensorrt.pyi":
        return text
    text, n_in = re.subn(r"(def \w+\([^)]*?)\bin: ", r"\1in_: ", text)
    text, n_axis = re.subn(r"(power: Weights = None, channel_axis: [\w.]+)\)", r"\1 = ...)", text)
    if (n_in, n_axis) != (4, 1):
        sys.exit(f"the TensorRT stubs changed ({n_in} `in` parameters, {n_axis} channel_axis); update {__file__}")
    return text


def _finish(out: Path) -> Path:
    """The parts both layouts need: ``py.typed`` and the ``tensorrt_libs`` module the stubs import."""
    (out / "tensorrt" / "py.typed").write_text("")
    (out / "tensorrt_libs").mkdir(exist_ok=True)
    (out / "tensorrt_libs" / "__init__.pyi").write_text("")
    return out


def prepare_10(out: Path) -> Path:
    """tensorrt-stubs (TensorRT 10.13) in ``out``, repaired."""
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        sys.exit("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs==10.13.0.35.1")
    site = Path(spec.origin).parent.parent
    for package in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(site / package, out / package, dirs_exist_ok=True)
    bindings = out / "tensorrt_bindings" / "tensorrt.pyi"
    bindings.write_text(repair_stub_text(bindings.read_text(), bindings.name))
    return _finish(out)


def prepare_11(out: Path) -> Path:
    """The TensorRT 11.4 stubs in ``out``; ``tensorrt`` re-exports ``tensorrt_bindings`` as the real package does."""
    if not (STUBS_11_4 / "tensorrt_bindings" / "tensorrt.pyi").is_file():
        sys.exit(f"{STUBS_11_4} is missing; make it with scripts/extract_trt_api.py")
    shutil.copytree(STUBS_11_4 / "tensorrt_bindings", out / "tensorrt_bindings", dirs_exist_ok=True)
    (out / "tensorrt").mkdir(exist_ok=True)
    shutil.copyfile(STUBS_11_4 / "tensorrt_bindings" / "__init__.pyi", out / "tensorrt" / "__init__.pyi")
    return _finish(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path)
    parser.add_argument(
        "--tensorrt", choices=("10", "11"), default="10", help="which API: 10.13 (tensorrt-stubs) or 11.4"
    )
    args = parser.parse_args()
    (prepare_10 if args.tensorrt == "10" else prepare_11)(args.outdir)
