"""The two Python routes of "Bring your own network" (docs/own-network.md), run as written there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import sbdeploy


def _sbdeploy(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The console entry point in this process: (exit code, stdout, stderr)."""
    from sbdeploy.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_zoo_architecture_trained_in_your_own_loop_then_save_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sbdeploy.checkpoint import CheckpointConfig, save_checkpoint

    torch.manual_seed(0)
    model = sbdeploy.create_model("cifar_resnet20_sb", num_classes=10, in_chans=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):  # the user's own training loop
        loss = nn.functional.cross_entropy(model(torch.randn(8, 1, 32, 32)), torch.randint(0, 10, (8,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    config = CheckpointConfig(
        arch="cifar_resnet20_sb",
        options={"num_classes": 10, "in_chans": 1, "sampling": "chessboard"},
        input_size=(32, 32),
        mean=(0.305,),
        std=(0.323,),
        class_names=tuple(str(i) for i in range(10)),
    )
    save_checkpoint(tmp_path / "mine", model.eval(), config)
    code, out, err = _sbdeploy(
        capsys, "evaluate", str(tmp_path / "mine"), "--data", "digits", "--json"
    )  # every command takes it
    assert code == 0, err
    assert json.loads(out)["model"] == "cifar_resnet20_sb"


def test_own_module_of_sbdeploy_blocks_then_export_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sbdeploy.backends import get_runner
    from sbdeploy.export.onnx_export import export_module
    from sbdeploy.nn.blocks import SBPreActBasicBlock

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        SBPreActBasicBlock(16, 16),
        SBPreActBasicBlock(16, 32, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()
    proto, _ = export_module(net, in_chans=3, input_size=(32, 32))
    onnx.save(proto, str(tmp_path / "mine.onnx"))
    x = torch.randn(3, 3, 32, 32)
    with get_runner("ort-cpu", tmp_path / "mine.onnx") as runner:
        logits = runner.infer({"input": x.numpy()})["logits"]
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))
    code, out, _ = _sbdeploy(capsys, "check", str(tmp_path / "mine.onnx"), "--json")
    assert code == 0 and json.loads(out)["ok"], out
