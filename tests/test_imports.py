"""Commands that need no torch import none: ``sbdeploy check``, ``triton-repo`` of ONNX files and engines, the TensorRT runner.

Each case runs in a fresh interpreter (torch, once imported, stays in ``sys.modules``),
does the real work through the CLI entry point or the runner factory, and reports which
modules were loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve._artifacts import fake_engine, tiny_onnx

ROOT = Path(__file__).resolve().parents[1]

REPORT = "print(json.dumps({'code': code, 'torch': sorted(m for m in sys.modules if m.split('.')[0] == 'torch')}))"
CLI = f"""
import json, sys
from sbdeploy.cli.main import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as done:
    code = done.code
{REPORT}
"""


def _loaded(code: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("no_torch")
    return {"onnx": tiny_onnx(folder / "tiny.onnx"), "engine": fake_engine(folder / "tiny_trt.engine", [(1, 4, 8)])}


def test_check_imports_no_torch(files: dict[str, Path]) -> None:
    assert _loaded(CLI, "check", str(files["onnx"]), "--json") == {"code": 0, "torch": []}


def test_triton_repo_of_onnx_files_and_engines_imports_no_torch(files: dict[str, Path], tmp_path: Path) -> None:
    args = ("triton-repo", str(files["onnx"]), str(files["engine"]), "--out", str(tmp_path / "repo"), "--json")
    assert _loaded(CLI, *args) == {"code": 0, "torch": []}
    assert (tmp_path / "repo" / "tiny_trt" / "config.pbtxt").is_file()


def test_the_tensorrt_runner_imports_no_torch(files: dict[str, Path]) -> None:
    """The runner made by the factory, as validate and bench make it; activating it needs TensorRT and a GPU."""
    code = f"""
import json, sys
from sbdeploy.backends import get_runner
from sbdeploy.files import describe_file
runner = get_runner("trt", describe_file(sys.argv[1]).path, cuda_graph=True)
code = 0
{REPORT}
"""
    assert _loaded(code, str(files["engine"])) == {"code": 0, "torch": []}
