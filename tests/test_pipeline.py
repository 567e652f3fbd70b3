"""``sbdeploy pipeline`` end to end on the shipped trained model, with small settings (the README's main job)."""

from __future__ import annotations

import json
from pathlib import Path

from sbdeploy import environment
from tests.conftest import REPO, run_cli

SHIPPED_SB, SHIPPED_BASELINE = REPO / "models" / "digits_resnet20_sb", REPO / "models" / "digits_resnet20"

EXPECTED = {
    "model.onnx", "model.fp16.onnx", "validate.json", "validate.md", "bench.json", "bench.csv", "bench.md",
    "latency_vs_macs.png", "speedup.png", "summary.json", "summary.md",
}


def test_pipeline_on_the_shipped_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli(
        "pipeline", str(SHIPPED_SB), "--baseline", str(SHIPPED_BASELINE), "--out", str(out), "--fp16",
        "--batch", "1", "--iters", "2", "--warmup", "1", "--limit", "64", "--threads", "1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert EXPECTED <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    stack = environment.gpu_stack()  # the pipeline's own answer on this machine
    assert summary["passed"] and summary["engine_backend"] == ("trt" if stack.trt_ready else "ort-cpu")
    assert [s["name"] for s in summary["steps"]] == ["export + passes", "engine", "validate", "bench"]
    validation = json.loads((out / "validate.json").read_text())
    assert {"fp32", "fp16"} <= {c["precision"] for c in validation["checks"]} and validation["passed"]
    if not stack.trt_ready:
        assert f"{stack.why_not_trt()} here" in (out / "summary.md").read_text()
    accuracy = {a["backend"]: a["top1"] for a in validation["accuracy"]}
    assert accuracy["torch"] >= 0.95 and abs(accuracy["ort-cpu fp32"] - accuracy["torch"]) < 1e-9
    bench = json.loads((out / "bench.json").read_text())
    pairs = {(r["model"], r["baseline"]) for r in bench["rows"]}
    assert ("digits_resnet20_sb", "digits_resnet20") in pairs
