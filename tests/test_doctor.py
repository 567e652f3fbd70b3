"""``sbdeploy doctor`` answers without loading torch when torch is a CPU build (its version says so)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_doctor_reads_a_cpu_torch_from_its_metadata() -> None:
    torch_version = version("torch")
    if not torch_version.endswith("+cpu"):
        pytest.skip(f"torch {torch_version} may be a CUDA build: doctor imports it to ask for the GPU")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sbdeploy", "doctor", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "sbdeploy.doctor" in imported and "torch" not in imported
    report = json.loads(done.stdout)
    assert report["torch"] == torch_version and report["torch_cuda"] is None
    backends = {b["name"]: b for b in report["backends"]}
    assert backends["torch"]["available"] and not backends["torch-cuda"]["available"]
    assert "CPU build" in backends["torch-cuda"]["reason"]


def test_doctor_says_whether_the_kernel_library_is_built_and_why_not(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from sbdeploy import kernels
    from sbdeploy.doctor import diagnose
    from tests.conftest import kernel_library

    kernel_library()
    line = diagnose().kernels
    assert line.startswith("built (libsbkernels.so), instruction set ") and line.split()[4] in (
        "avx512_bf16",
        "avx512_vnni",
        "avx512",
        "avx2",
    )
    monkeypatch.setenv("SBDEPLOY_KERNEL_ISA", "scalar")  # the cap the tests use to reach every path
    assert "instruction set scalar here" in diagnose().kernels
    monkeypatch.setattr(kernels, "LIBRARY", tmp_path / "libsbkernels.so")
    monkeypatch.setattr(kernels, "BUILD_LOG", tmp_path / "build.txt")
    (tmp_path / "build.txt").write_text(
        "kernels: not built: no C++ compiler (g++); the portable ONNX forms run instead\n"
    )
    line = diagnose().kernels
    assert line.startswith("not built (kernels: not built: no C++ compiler") and "scripts/build_kernels.sh" in line


def test_doctor_names_openvino_and_what_its_cpu_plugin_computes_in() -> None:
    openvino = pytest.importorskip("openvino")
    from sbdeploy.doctor import diagnose

    report = diagnose()
    assert report.openvino == openvino.__version__.split("-")[0]
    assert {"FP32", "INT8"} <= set(report.openvino_capabilities)
    (row,) = [b for b in report.backends if b.name == "ov-cpu"]
    assert row.available and row.reason.startswith(f"OpenVINO {report.openvino} CPU plugin (")
