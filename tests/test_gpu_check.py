"""scripts/gpu_check.sh's dry run on a machine without a GPU: it runs what it can and says "no GPU" cleanly.

The script uses the machine's own Python with the working tree on PYTHONPATH (here: this
interpreter). Checked: it exits 0, writes everything under the one output folder (doctor
JSON, the ``pytest -m gpu`` JUnit XML with no failure, the latency report), and its summary
says there is no GPU and no TensorRT and that the latency step had no GPU, that it ran (and skipped) every
GPU test, the pipeline's on TensorRT included, and what the skips leave unchecked. The summary's reading of
a JUnit XML (failures, skip reasons, modules skipped at collection) is checked on a written one, and its
latency table on a report of scripts/bench_speedup.py's own rows (which only a GPU machine writes for real).
"""

from __future__ import annotations

import importlib.util
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


@pytest.mark.skipif(
    environment.gpu_stack().has_gpu, reason="a GPU machine runs scripts/gpu_check.sh itself, not its dry run"
)
def test_dry_run_without_a_gpu(tmp_path: Path) -> None:
    out = tmp_path / "check"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {"doctor.json", "pytest-gpu.xml", "torch_cuda.json", "summary.txt"} <= {p.name for p in out.iterdir()}
    doctor = json.loads((out / "doctor.json").read_text())
    assert doctor["gpu_name"] is None and doctor["tensorrt"] is None
    suite = ET.parse(out / "pytest-gpu.xml").getroot()
    cases = list(suite.iter("testcase"))
    assert cases and not [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    assert all(c.find("skipped") is not None for c in cases)  # no GPU: every GPU test skips, with its reason
    modules = {c.get("classname") for c in cases}
    assert {"tests.test_pipeline_gpu", "tests.backends.test_tensorrt_gpu", "tests.backends.test_ort_gpu"} <= modules
    assert json.loads((out / "torch_cuda.json").read_text())["rows"] == []
    summary = (out / "summary.txt").read_text()
    assert summary == result.stdout[result.stdout.index("sbdeploy GPU check:") :]  # on screen and in the folder
    assert "machine: no GPU" in summary and "TensorRT: not installed" in summary
    assert (
        "PyTorch CUDA latency: skipped, no GPU" in summary
        and "steps: doctor ok, pytest-gpu ok, torch-cuda ok" in summary
    )
    assert "need TensorRT: engine builds, engine parity and the pipeline on TensorRT are NOT checked here" in summary
    assert len(summary.splitlines()) <= 25


def test_summary_reads_failures_skips_and_uncollected_modules(tmp_path: Path) -> None:
    junit = """<testsuites><testsuite name="pytest">
<testcase classname="" name="tests.serve.test_triton_repo"><skipped message="collection skipped">('tests/serve/test_triton_repo.py', 15, 'Skipped: tritonclient absent')</skipped></testcase>
<testcase classname="tests.test_pipeline_gpu" name="test_a"><skipped type="pytest.skip" message="needs TensorRT: TensorRT is not installed">x</skipped></testcase>
<testcase classname="tests.test_pipeline_gpu" name="test_b"><skipped type="pytest.skip" message="needs TensorRT: TensorRT is not installed">x</skipped></testcase>
<testcase classname="tests.backends.test_gpu_timing" name="test_torch_cuda_compute_time"/>
<testcase classname="tests.backends.test_cudagraph" name="test_replay"><failure message="assert 1 == 2&#10;more">tb</failure></testcase>
</testsuite></testsuites>"""
    (tmp_path / "pytest-gpu.xml").write_text(junit)
    (tmp_path / "pytest-gpu.rc").write_text("124\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_check_summary.py"), str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "GPU tests (pytest -m gpu): 1 passed, 1 failed, 2 skipped" in lines
    assert "  FAILED tests.backends.test_cudagraph.test_replay: assert 1 == 2" in lines
    assert "  skipped 2x: needs TensorRT: TensorRT is not installed" in lines
    assert (
        "  2 of them need TensorRT: engine builds, engine parity and the pipeline on TensorRT are NOT checked here"
        in lines
    )
    assert "  1 test modules not collected here (tritonclient absent)" in lines
    assert "steps that failed: pytest-gpu (exit 124, out of time)" in lines


def test_summary_says_why_the_gpu_tests_left_no_junit_xml(tmp_path: Path) -> None:
    # gpu_check.sh writes this line when the machine's Python has no pytest (a lent machine may not).
    (tmp_path / "pytest-gpu.log").write_text(
        "== pytest-gpu: pytest is not installed for python3; the GPU tests did not run\n\n"
    )
    (tmp_path / "pytest-gpu.rc").write_text("1\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_check_summary.py"), str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert (
        "GPU tests: no JUnit XML (pytest-gpu.log: == pytest-gpu: pytest is not installed for python3; the GPU tests did not run)"
        in result.stdout
    )


def test_summary_prints_the_cuda_latency_rows_bench_speedup_writes(tmp_path: Path) -> None:
    from sbdeploy.bench.timing import TimingPlan

    spec = importlib.util.spec_from_file_location("bench_speedup", REPO / "scripts" / "bench_speedup.py")
    assert spec is not None and spec.loader is not None
    bench_speedup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_speedup)

    def slow() -> None:
        sum(range(2000))

    result = bench_speedup.measure(
        {"base": slow, "sb": lambda: None}, TimingPlan(warmup_iters=2, iters=200), ["sb"], 0.5
    )
    row = bench_speedup._row("cifar_resnet56", 32, "torch-cuda-float16", result, gpu="NVIDIA H200")
    report = {
        "cuda_available": True,
        "torch": "2.11.0+cu128",
        "torch_cuda": "12.8",
        "cudnn_allow_tf32": True,
        "rows": [row],
    }
    (tmp_path / "torch_cuda.json").write_text(json.dumps(report))
    result_ = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_check_summary.py"), str(tmp_path)], capture_output=True, text=True
    )
    lines = result_.stdout.splitlines()
    header = lines.index(
        "PyTorch CUDA latency, median ms (baseline / SB), speedup [95% interval], MAC ratio; "
        "float32 with TF32 convolutions (PyTorch's default):"
    )
    figures = lines[header + 1].split()
    assert figures[:3] == ["cifar_resnet56", "b32", "float16"] and figures[4] == "/" and figures[-1] == "0.500", lines[
        header + 1
    ]
    low, high = (float(v) for v in figures[-2].strip("[]").split("-"))
    assert low <= row["speedup"] <= high and f"{row['speedup']:.2f}x" == figures[-3]
