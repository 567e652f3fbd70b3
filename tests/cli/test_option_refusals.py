"""Options that do not go together are refused before anything is made: one ``error:`` line, exit 2, nothing written.

Each row is a command line whose options cannot all be honoured (a tuned pipeline whose int8
file would keep the rule's form; ``--tune-budget`` without ``--tune``; ``--tune`` on a target
with one form; a form variant where only ``export`` writes one; ``--int8`` on given files, or on
a checkpoint with no dataset to judge int8 on; ``export --bf16`` on ov-cpu, a run-time hint, without ``--tune``;
a precision ov-cpu does not offer), each said in one sentence naming what to do.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import sbdeploy
from sbdeploy.checkpoint import CheckpointConfig, save_checkpoint
from sbdeploy.cli.main import main
from tests.serve._artifacts import tiny_onnx


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    config = CheckpointConfig(
        arch="cifar_resnet20",
        options={"num_classes": 10, "in_chans": 3},
        input_size=(32, 32),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        class_names=tuple(str(i) for i in range(10)),
    )  # no dataset named
    np.save(root / "calibration.npy", np.zeros((4, 3, 32, 32), np.float32))
    model = sbdeploy.create_model("cifar_resnet20", num_classes=10).eval()
    ckpt = save_checkpoint(root / "ckpt", model, config)
    sb_config = dataclasses.replace(config, arch="cifar_resnet20_sb", options={**config.options, "sampling": "single"})
    sb = save_checkpoint(root / "sb", sbdeploy.create_model("cifar_resnet20_sb", num_classes=10).eval(), sb_config)
    return {"ckpt": ckpt, "sb": sb, "onnx": tiny_onnx(root / "model.onnx"), "npy": root / "calibration.npy"}


ROWS = {
    "pipeline --tune --int8": (
        ["pipeline", "{ckpt}", "--tune", "--int8", "--calibration", "{npy}", "--out", "{out}"],
        "--tune times fp32",
    ),
    "pipeline --tune-budget alone": (
        ["pipeline", "{ckpt}", "--tune-budget", "3", "--out", "{out}"],
        "--tune-budget belongs to --tune",
    ),
    "pipeline --tune --target grouped": (
        ["pipeline", "{ckpt}", "--tune", "--target", "grouped", "--out", "{out}"],
        "has one form",
    ),
    "pipeline --int8, no dataset": (
        ["pipeline", "{ckpt}", "--int8", "--calibration", "{npy}", "--out", "{out}"],
        "judged on real images",
    ),
    "validate --int8, no dataset": (
        ["validate", "{ckpt}", "--int8", "--calibration", "{npy}", "--artifacts", "{out}"],
        "judged on real images",
    ),
    "bench --target variant": (
        ["bench", "-m", "{ckpt}", "--target", "ort-cpu:taps", "--artifacts", "{out}"],
        "a form variant",
    ),
    "export --bf16 without --tune": (
        ["export", "{ckpt}", "-o", "{out}/m.onnx", "--target", "ov-cpu", "--batch", "1", "--bf16"],
        "run-time setting of its fp32 file",
    ),
    "export --tune --fp16 on ov-cpu": (
        ["export", "{ckpt}", "-o", "{out}/m.onnx", "--target", "ov-cpu", "--batch", "1", "--tune", "--fp16"],
        "offers fp32, bf16, int8, not 'fp16'",
    ),
    "bench files --int8": (
        ["bench", "-m", "{onnx}", "--int8", "--report", "{out}"],
        "timed in the precision they hold",
    ),
    "sweep --distill without --epochs": (
        ["sweep", "{ckpt}", "--data", "synthetic", "--distill", "--out", "{out}"],
        "--distill applies to the fine-tune",
    ),
    "sweep --target trt": (
        ["sweep", "{ckpt}", "--data", "synthetic", "--target", "trt", "--out", "{out}"],
        "a sweep times on ort-cpu, which does not run --target trt",
    ),
    "sweep --data of other images": (
        ["sweep", "{ckpt}", "--data", "digits", "--out", "{out}"],
        "the checkpoint expects 3-channel 32x32",
    ),
    "sweep of an SB checkpoint": (
        ["sweep", "{sb}", "--data", "synthetic", "--out", "{out}"],
        "is an SB network already",
    ),
    "sbify --stages beyond the network": (
        ["sbify", "{ckpt}", "--stages", "2,4", "--no-recalibrate", "--out", "{out}"],
        "distinct stage numbers 1..3, got [2, 4]",
    ),
    "sbify --stages not numbers": (
        ["sbify", "{ckpt}", "--stages", "two", "--no-recalibrate", "--out", "{out}"],
        "--stages takes comma-separated integers",
    ),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_options_that_do_not_go_together(
    name: str, inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, says = ROWS[name]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(out=out, **inputs) for a in argv])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], (
        captured.err
    )
    assert "Traceback" not in captured.err and not out.exists(), "something was written"
