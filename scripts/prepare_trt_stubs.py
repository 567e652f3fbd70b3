"""Copy tensorrt-stubs (TensorRT 10.13 API) into a folder mypy can use as MYPYPATH, repairing what mypy cannot read.

tensorrt-stubs 10.13.0.35.1 cannot be used by mypy as installed: ``tensorrt/`` has no
``py.typed`` marker (mypy would skip it as untyped), it imports a ``tensorrt_libs``
module it does not ship, and five generated lines of ``tensorrt_bindings/tensorrt.pyi``
are not valid Python (a parameter named ``in``; a parameter without default after
defaulted ones). This copies the stubs to OUTDIR and repairs exactly those lines;
none of them is an API sbdeploy uses. Used by scripts/typecheck.sh and the tests.

With ``--only-names tests/data/tensorrt_11_4_names.txt`` it also prunes the stubs to the
names TensorRT 11.4 defines (classes, methods, properties, enum values and module names
absent from 11.4 are removed), so that mypy run over sbdeploy's TensorRT code reports
every use of a name TensorRT 11 no longer has (tests/backends/test_tensorrt_names.py).

Usage: python scripts/prepare_trt_stubs.py OUTDIR [--only-names NAMES.txt]
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import shutil
import sys
from pathlib import Path


def prepare(out: Path) -> Path:
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        sys.exit("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs==10.13.0.35.1")
    site = Path(spec.origin).parent.parent
    for package in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(site / package, out / package, dirs_exist_ok=True)
    (out / "tensorrt_libs").mkdir(exist_ok=True)
    (out / "tensorrt_libs" / "__init__.pyi").write_text("")
    bindings = out / "tensorrt_bindings" / "tensorrt.pyi"
    text = bindings.read_text()
    text, n_in = re.subn(r"(def \w+\([^)]*?)\bin: ", r"\1in_: ", text)
    text, n_axis = re.subn(r"power: Weights = None, channel_axis: int\)", "power: Weights = None, channel_axis: int = ...)", text)
    if (n_in, n_axis) != (4, 1):
        sys.exit(f"tensorrt-stubs changed ({n_in} `in` parameters, {n_axis} channel_axis); update {__file__}")
    bindings.write_text(text)
    return out


def word_suffixes(name: str) -> set[str]:
    """Suffixes of an identifier that start a word ("get_num_errors" -> "num_errors", "ILogger" -> "Logger").

    The linker stores a string literal as the tail of a longer one when it can, so a name read
    from a binary's .rodata may only survive as such a suffix.
    """
    out = set()
    for i in range(1, len(name)):
        prev, cur, nxt = name[i - 1], name[i], name[i + 1 : i + 2]
        if prev == "_" or (cur.isupper() and (prev.islower() or prev.isdigit() or (prev.isupper() and nxt.islower()))):
            out.add(name[i:])
    return out


def read_names(path: Path) -> set[str]:
    """The names of a list written by scripts/extract_trt_names.py, with their word suffixes."""
    names = {line for line in path.read_text().splitlines() if line and not line.startswith("#")}
    return names | {suffix for name in names for suffix in word_suffixes(name)}


def _prune_body(body: list[ast.stmt], keep: set[str]) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.ClassDef):
            if node.name not in keep:
                continue
            node.body = _prune_body(node.body, keep) or [ast.Expr(ast.Constant(...))]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name not in keep and not (node.name.startswith("__") and node.name.endswith("__")):
                continue
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id not in keep and not node.target.id.startswith("__"):
                continue
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tensorrt_bindings"):
            node.names = [a for a in node.names if (a.asname or a.name) in keep]
            if not node.names:
                continue
        out.append(node)
    return out


def prune(out: Path, keep: set[str]) -> None:
    """Remove from the stubs in ``out`` every name not in ``keep``."""
    for stub in (out / "tensorrt" / "__init__.pyi", out / "tensorrt_bindings" / "__init__.pyi", out / "tensorrt_bindings" / "tensorrt.pyi"):
        tree = ast.parse(stub.read_text())
        tree.body = _prune_body(tree.body, keep | {"tensorrt", "typing", "typing_extensions", "numpy"})
        stub.write_text(ast.unparse(tree) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--only-names", type=Path, help="keep only the names of this list (and their word suffixes)")
    args = parser.parse_args()
    prepare(args.outdir)
    if args.only_names:
        prune(args.outdir, read_names(args.only_names))
