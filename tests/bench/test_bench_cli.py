"""``sbdeploy bench`` for real on tiny settings: every report file, valid PNG plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sbdeploy import environment
from tests.conftest import run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_bench_writes_every_report(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = run_cli(
        "bench", "-m", "cifar_resnet20_sb", "--backends", "torch,ort-cpu", "--batch", "1,2", "--warmup", "1",
        "--iters", "3", "--threads", "1", "--input-size", "16", "--report", str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "bench.json").read_text())
    rows = {(r["model"], r["backend"], r["batch"]): r for r in data["rows"]}
    assert set(rows) == {(m, b, n) for m in ("cifar_resnet20_sb", "cifar_resnet20") for b in ("torch", "ort-cpu") for n in (1, 2)}
    for (model, backend, batch), row in rows.items():
        assert row["runs"] == 3 and row["median_ms"] > 0
        if model.endswith("_sb"):
            assert row["baseline"] == "cifar_resnet20" and 0.45 < row["mac_ratio"] < 0.55 and row["speedup"] > 0
    assert data["environment"]["cpu_count"] >= 1 and data["settings"]["threads"] == 1
    assert len(list(csv.DictReader((out / "bench.csv").open()))) == 8
    assert "cifar_resnet20_sb" in (out / "bench.md").read_text()
    for png in ("latency_vs_macs.png", "speedup.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC and (out / png).stat().st_size > 5000


def test_bench_refuses_bad_options() -> None:
    for args, needle in [
        (("bench", "-m", "cifar_resnet20", "--backends", "tensorflow"), "unknown backend"),
        (("bench", "-m", "cifar_resnet20", "--batch", "0"), "--batch"),
        (("bench", "-m", "nope_net"), "neither a checkpoint folder nor a zoo name"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(environment.gpu_stack().tensorrt is not None, reason="TensorRT is installed here")
def test_trt_backend_without_tensorrt_is_one_clear_line() -> None:
    result = run_cli("bench", "-m", "cifar_resnet20", "--backends", "trt", "--batch", "1", "--iters", "1")
    assert result.returncode == 2
    assert "TensorRT is not installed" in result.stderr and "Traceback" not in result.stderr


def test_fp16_and_cuda_graph_flags(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = run_cli(
        "bench", "-m", "cifar_resnet20", "--no-baselines", "--backends", "ort-cpu", "--batch", "1", "--warmup", "1",
        "--iters", "2", "--threads", "1", "--input-size", "16", "--fp16", "--cuda-graph", "--report", str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "bench.json").read_text())
    assert data["settings"]["fp16"] is True and data["settings"]["cuda_graph"] is True
    assert data["settings"]["notes"] == ["--cuda-graph applies to trt only"]  # said once, in the report and on screen
    assert "--cuda-graph applies to trt only" in result.stdout
    assert [r["compute_median_ms"] for r in data["rows"]] == [None]  # ORT on the CPU has no separate compute time
    assert "| GPU ms |" in (out / "bench.md").read_text()

