"""``sbdeploy import`` as a user runs it: a state_dict file in, a checkpoint folder every command accepts out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import sbdeploy
from tests.conftest import run_cli


@pytest.mark.slow
def test_import_then_evaluate(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = sbdeploy.create_model("cifar_resnet20", num_classes=10, in_chans=1)
    torch.save({"model": source.state_dict(), "optimizer": {"lr": 0.1}}, tmp_path / "r20.pth")
    names = tmp_path / "classes.txt"
    names.write_text("".join(f"{i}\n" for i in range(10)))  # the digits data set names its classes 0..9
    done = run_cli(
        "import",
        str(tmp_path / "r20.pth"),
        "--arch",
        "cifar_resnet20",
        "--out",
        str(tmp_path / "ckpt"),
        "--mean",
        "0.305",
        "--std",
        "0.323",
        "--class-names",
        str(names),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["options"] == {"num_classes": 10, "in_chans": 1} and report["unwrapped"] == ["['model']"]
    assert report["reader"] == "torch.load(weights_only=True)" and report["mean"] == [0.305]
    evaluated = run_cli("evaluate", str(tmp_path / "ckpt"), "--data", "digits", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["model"] == "cifar_resnet20"
