"""scripts/gpu_check.sh's dry run on a machine without a GPU: it runs what it can and says "no GPU" cleanly.

The script uses the machine's own Python with the working tree on PYTHONPATH (here: this
interpreter). Checked: it exits 0, writes everything under the one output folder (doctor
JSON, the ``pytest -m gpu`` JUnit XML with no failure, the latency report), and its summary
says there is no GPU and no TensorRT and that the latency step had no GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sbdeploy import environment
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.mark.skipif(environment.gpu_stack().has_gpu, reason="a GPU machine runs scripts/gpu_check.sh itself, not its dry run")
def test_dry_run_without_a_gpu(tmp_path: Path) -> None:
    out = tmp_path / "check"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHON": sys.executable}
    result = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert {"doctor.json", "pytest-gpu.xml", "torch_cuda.json", "summary.txt"} <= {p.name for p in out.iterdir()}
    doctor = json.loads((out / "doctor.json").read_text())
    assert doctor["gpu_name"] is None and doctor["tensorrt"] is None
    suite = ET.parse(out / "pytest-gpu.xml").getroot()
    cases = list(suite.iter("testcase"))
    assert cases and not [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    assert all(c.find("skipped") is not None for c in cases)  # no GPU: every GPU test skips, with its reason
    assert json.loads((out / "torch_cuda.json").read_text())["rows"] == []
    summary = (out / "summary.txt").read_text()
    assert summary == result.stdout[result.stdout.index("sbdeploy GPU check:"):]  # on screen and in the folder
    assert "machine: no GPU" in summary and "TensorRT: not installed" in summary
    assert "PyTorch CUDA latency: skipped, no GPU" in summary and "steps: doctor ok, pytest-gpu ok, torch-cuda ok" in summary
    assert len(summary.splitlines()) <= 25
