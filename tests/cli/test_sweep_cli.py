"""``sbdeploy sweep`` in a subprocess, with the default target (ort-cpu's per-batch files) and every sampling set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sbdeploy.data import open_source
from sbdeploy.sweep.run import SAMPLING_SETS
from sbdeploy.train import TrainConfig, train
from tests.conftest import run_cli


@pytest.mark.slow
def test_sweep_prints_json_and_writes_its_reports(tmp_path: Path) -> None:
    data = open_source("synthetic", size=8)
    train("cifar_resnet20", data, tmp_path / "base", TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=3))
    out = tmp_path / "sweep"
    argv = ["sweep", str(tmp_path / "base"), "--data", "synthetic", "--out", str(out), "--batch", "1"]
    run = run_cli(*argv, "--max-drop", "1", "--budget", "0.5", "--calibration-images", "64", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report == json.loads((out / "sweep.json").read_text())
    assert {r["sampling"] for r in report["rows"]} == {None, *SAMPLING_SETS}
    assert {r["file"].split(".", 1)[1] for r in report["rows"]} == {"ort-cpu.b1.fp32.onnx"}
    assert [p["batch"] for p in report["picks"]] == [1] and "wrote" in run.stderr
    rerun = run_cli(*argv, "--budget", "0.5", "--calibration-images", "32")  # the folder holds other settings
    assert rerun.returncode == 2 and rerun.stderr.startswith("error: ") and "calibration_images" in rerun.stderr
    assert len(rerun.stderr.strip().splitlines()) == 1
