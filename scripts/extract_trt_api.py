"""Write tests/data/tensorrt_11_4_stubs/: type stubs of the real TensorRT 11.4 Python API, made from its binary.

TensorRT cannot be installed without NVIDIA's package index, but PyPI's
``tensorrt-cu13-bindings==11.4.0.106`` wheel (1.3 MB) holds the real extension module
``tensorrt_bindings/tensorrt.so``. It links against libnvinfer/libnvonnxparser/
libnvinfer_plugin, but only to call a handful of C entry points (``createInferBuilder_INTERNAL``
and the like) when a Builder, Runtime or parser is created; registering the Python classes
needs none of them. So this script reads the binary's undefined dynamic symbols, compiles
one stub library per TensorRT library (every such symbol a function returning 0), imports
the real bindings against them, and lets pybind11-stubgen write the stubs, exactly as
``tensorrt-stubs`` (the 10.13 stubs) were made: per class, every method, property and
enum value with the argument names and types pybind11 records. Docstrings are dropped
(the stubs are data), the generated lines mypy cannot parse are repaired as
scripts/prepare_trt_stubs.py repairs the 10.13 stubs, and the classes that implement the
buffer protocol (which CPython 3.11 cannot show pybind11-stubgen) get ``__buffer__``.

Nothing of TensorRT is run beyond module registration: no stub library function is called.

Prerequisites: CPython 3.11 (the wheel is cp311), gcc, binutils (nm, readelf), and
pybind11-stubgen (``pip install sbdeploy[stubgen]``).

Usage (reproducible; the wheel's sha256 is checked):
    python -m pip download --no-deps tensorrt-cu13-bindings==11.4.0.106 -d /tmp/trt11
    python scripts/extract_trt_api.py /tmp/trt11/tensorrt_cu13_bindings-11.4.0.106-*.whl
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_trt_stubs import repair_stub_text  # noqa: E402

WHEEL_SHA256 = "d072ac2a095e2be749fefc847adfb25d5ebe70303401df62ede8fe67a59f27fc"
WHEEL_NAME = "tensorrt_cu13_bindings-11.4.0.106-cp311-none-manylinux_2_28_x86_64.whl"
STUBGEN = "pybind11-stubgen==3.0.0"
OUTPUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "tensorrt_11_4_stubs"

# Lists, in the stub libraries' environment, the classes whose type has a buffer slot
# (CPython 3.11 PyTypeObject: tp_as_buffer is the 21st pointer-sized field).
_BUFFER_CLASSES = """
import ctypes, inspect, tensorrt_bindings.tensorrt as t
slot = lambda tp: ctypes.c_void_p.from_address(id(tp) + 20 * ctypes.sizeof(ctypes.c_void_p)).value
assert slot(bytes) and not slot(object), "not the CPython 3.11 type layout"
print("\\n".join(n for n, c in vars(t).items() if inspect.isclass(c) and slot(c)))
"""


def _run(*cmd: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def stub_libraries(binary: Path, out: Path) -> list[Path]:
    """One shared library per TensorRT library ``binary`` needs, defining its unversioned undefined symbols."""
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(libnv[^\]]+)\]", _run("readelf", "-d", str(binary)))
    symbols = sorted(
        line.split()[-1]
        for line in _run("nm", "-D", "--undefined-only", str(binary)).splitlines()
        if line.split()[0] == "U" and "@" not in line and not line.split()[-1].startswith(("Py", "_Py"))
    )
    if not needed or not symbols:
        raise SystemExit(
            f"{binary}: found no TensorRT libraries or symbols to stub (needed {needed}, symbols {symbols})"
        )
    source = out / "stub.c"
    source.write_text("".join(f"void *{name}(void) {{ return 0; }}\n" for name in symbols))
    libraries = []
    for soname in needed:
        library = out / soname
        _run("gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(library), str(source))
        libraries.append(library)
    return libraries


def strip_docstrings(text: str) -> str:
    """The stub without docstrings (class and function bodies keep ``...``)."""

    def strip(body: list[ast.stmt]) -> list[ast.stmt]:
        kept: list[ast.stmt] = []
        for node in body:
            if (
                isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                continue
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                node.body = strip(node.body) or [ast.Expr(ast.Constant(...))]
            kept.append(node)
        return kept

    tree = ast.parse(text)
    tree.body = strip(tree.body)
    return ast.unparse(tree) + "\n"


def add_buffer_protocol(text: str, classes: list[str]) -> str:
    """Give each class of ``classes`` the ``__buffer__`` method that makes it a ``Buffer`` for mypy."""
    for name in classes:
        text, count = re.subn(
            rf"^class {name}(\(.*\))?:\n",
            lambda m: m.group(0) + "\n    def __buffer__(self, flags: int, /) -> memoryview:\n        ...\n",
            text,
            flags=re.M,
        )
        if count != 1:
            raise SystemExit(f"class {name} not found once in the generated stubs")
    return text


def extract(wheel: Path, output: Path) -> None:
    if sys.version_info[:2] != (3, 11):
        raise SystemExit(f"the wheel is for CPython 3.11; this is {sys.version.split()[0]}")
    if importlib.util.find_spec("pybind11_stubgen") is None:
        raise SystemExit(f"pybind11-stubgen is not installed: pip install {STUBGEN} (or sbdeploy[stubgen])")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(work / "wheel")
        libs = work / "libs"
        libs.mkdir()
        stub_libraries(work / "wheel" / "tensorrt_bindings" / "tensorrt.so", libs)
        env = {**os.environ, "LD_LIBRARY_PATH": str(libs), "PYTHONPATH": str(work / "wheel")}
        _run(sys.executable, "-m", "pybind11_stubgen", "tensorrt_bindings", "-o", str(work / "gen"), env=env)
        buffers = _run(sys.executable, "-c", _BUFFER_CLASSES, env=env).split()
        header = [
            f"# TensorRT 11.4 Python API: stubs generated from {WHEEL_NAME} (sha256 {WHEEL_SHA256})",
            f"# by scripts/extract_trt_api.py with {STUBGEN}; docstrings dropped. Do not edit; regenerate.",
        ]
        if output.exists():
            shutil.rmtree(output)
        (output / "tensorrt_bindings").mkdir(parents=True)
        for name in ("__init__.pyi", "tensorrt.pyi"):
            text = strip_docstrings(repair_stub_text((work / "gen" / "tensorrt_bindings" / name).read_text(), name))
            if name == "tensorrt.pyi":
                text = add_buffer_protocol(text, buffers)
            (output / "tensorrt_bindings" / name).write_text("\n".join(header) + "\n" + text)
    print(f"TensorRT 11.4 stubs -> {output} (buffer protocol: {', '.join(buffers) or 'none'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help=f"path of {WHEEL_NAME}")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    digest = hashlib.sha256(args.wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{args.wheel} has sha256 {digest}, expected {WHEEL_SHA256} ({WHEEL_NAME})")
    extract(args.wheel, args.output)


if __name__ == "__main__":
    main()
