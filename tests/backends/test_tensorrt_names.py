"""Every TensorRT name sbdeploy uses on the 11.x path exists in TensorRT 11.4; 10.x-only names stay on the 10.x branch.

The uses are found by mypy, from the code itself: scripts/prepare_trt_stubs.py prunes
tensorrt-stubs (the 10.13 API) down to the names the real TensorRT 11.4 bindings define
(tests/data/tensorrt_11_4_names.txt, made by scripts/extract_trt_names.py from the
``tensorrt-cu13-bindings==11.4.0.106`` wheel), then mypy checks sbdeploy's TensorRT code
against it. Each "has no attribute" error is a use of a name TensorRT 11.4 lacks; all of
them must sit in a function whose name ends in ``_trt10`` (reached only on TensorRT 10.x,
see ``_compat.py``), and there must be at least one there (or the pruning proves nothing).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is a dev dependency")
pytest.importorskip("tensorrt_stubs", reason="tensorrt-stubs is installed by scripts/setup.sh")

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sbdeploy" / "backends" / "tensorrt"
NAMES_11_4 = ROOT / "tests" / "data" / "tensorrt_11_4_names.txt"
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*)$")


def _prepare_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("prepare_trt_stubs", ROOT / "scripts" / "prepare_trt_stubs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _enclosing_function(path: Path, line: int) -> str:
    """Name of the innermost function of ``path`` that spans ``line`` ("<module>" if none)."""
    best, best_start = "<module>", 0
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.lineno <= line <= (node.end_lineno or node.lineno):
            if node.lineno >= best_start:
                best, best_start = node.name, node.lineno
    return best


@pytest.fixture(scope="module")
def errors_against_11_4(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, int, str, str]]:
    """(file, line, enclosing function, message) of every mypy error against the 11.4-pruned stubs."""
    stubs = tmp_path_factory.mktemp("trt_11_4_stubs")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "prepare_trt_stubs.py"), str(stubs), "--only-names", str(NAMES_11_4)],
        check=True,
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental", "sbdeploy/backends/tensorrt"],
        cwd=ROOT,
        env={**__import__("os").environ, "MYPYPATH": f"{stubs}:{ROOT / 'typings'}"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = []
    for line in result.stdout.splitlines():
        match = ERROR.match(line)
        if match:
            path = ROOT / match["file"]
            errors.append((match["file"], int(match["line"]), _enclosing_function(path, int(match["line"])), match["message"]))
    assert errors or result.returncode == 0, result.stdout + result.stderr
    return errors


def test_name_list_is_discriminative() -> None:
    present = _prepare_module().read_names(NAMES_11_4)
    # Names TensorRT 11 removed (GPU_STACK_NOTES.md) are absent; names it keeps are present.
    assert not {"FP16", "INT8", "EXPLICIT_BATCH", "execute_async_v2", "max_workspace_size"} & present
    assert {"STRONGLY_TYPED", "TF32", "OnnxParser", "execute_async_v3", "set_input_shape", "num_errors", "Logger"} <= present


def test_11x_path_uses_only_tensorrt_11_4_names(errors_against_11_4: list[tuple[str, int, str, str]]) -> None:
    stray = [e for e in errors_against_11_4 if not e[2].endswith("_trt10")]
    assert not stray, f"TensorRT names TensorRT 11.4 lacks, used outside the 10.x branch: {stray}"


def test_10x_only_names_are_on_the_10x_branch(errors_against_11_4: list[tuple[str, int, str, str]]) -> None:
    on_branch = [e for e in errors_against_11_4 if e[2].endswith("_trt10")]
    assert on_branch, "the 10.x FP16-flag route should use BuilderFlag.FP16, which TensorRT 11.4 lacks"
    assert all('has no attribute "FP16"' in e[3] for e in on_branch), on_branch
