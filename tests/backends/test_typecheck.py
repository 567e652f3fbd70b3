"""CI type-checks the TensorRT and pycuda code: scripts/typecheck.sh (mypy against the TensorRT 10.13 and 11.4 APIs, typings/pycuda) must pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is a dev dependency")
pytest.importorskip("tensorrt_stubs", reason="tensorrt-stubs is installed by scripts/setup.sh")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # two mypy runs over the TensorRT backend
def test_tensorrt_backend_typechecks() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "typecheck.sh")],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("Success: no issues found") == 2, result.stdout  # the 10.13 pass and the 11.4 pass


def test_no_type_ignores_in_the_tensorrt_backend() -> None:
    for path in (ROOT / "sbdeploy" / "backends" / "tensorrt").glob("*.py"):
        assert "type: ignore" not in path.read_text(), f"{path.name} silences mypy"
