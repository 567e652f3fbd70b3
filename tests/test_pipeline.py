"""``sbdeploy pipeline`` end to end on a checkpoint, with small settings."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli

EXPECTED = {
    "model.onnx", "model.fp16.onnx", "validate.json", "validate.md", "bench.json", "bench.csv", "bench.md",
    "latency_vs_macs.png", "speedup.png", "summary.json", "summary.md",
}


def test_pipeline_produces_the_folder(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("pipeline", str(tiny_checkpoint), "--out", str(out), "--fp16", "--batch", "1", "--iters", "2", "--warmup", "1", "--limit", "32", "--threads", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert EXPECTED <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] and summary["engine_backend"] == "ort-cpu"
    assert [s["name"] for s in summary["steps"]] == ["export + passes", "engine", "validate", "bench"]
    validation = json.loads((out / "validate.json").read_text())
    assert {c["precision"] for c in validation["checks"]} == {"fp32", "fp16"} and validation["passed"]
    assert "TensorRT is not installed" in (out / "summary.md").read_text()
