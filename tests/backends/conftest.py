"""Tiny models and ONNX files shared by the backend tests (a CIFAR ResNet-20 with SB blocks)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import sbdeploy
from sbdeploy.checkpoint import CheckpointConfig, save_checkpoint

NUM_CLASSES = 10


def save_sb_checkpoint(model: nn.Module, folder: Path) -> Path:
    """``model`` (the ``sb_model`` fixture) saved as a checkpoint folder with a full config."""
    config = CheckpointConfig(
        arch="cifar_resnet20_sb",
        options={"num_classes": NUM_CLASSES},
        input_size=(32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=tuple(str(i) for i in range(NUM_CLASSES)),
    )
    return save_checkpoint(folder, model, config)


def export_for_tests(model: nn.Module, path: Path, size: int = 32) -> Path:
    """Export with the ONNX names sbdeploy uses (``input`` -> ``logits``) and a dynamic batch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(1, 3, size, size),),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


@pytest.fixture(scope="session")
def sb_model() -> nn.Module:
    torch.manual_seed(0)
    model = sbdeploy.create_model("cifar_resnet20_sb", num_classes=NUM_CLASSES).eval()
    # Non-trivial BatchNorm statistics, so a wrong lowering cannot hide behind identity BNs.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="session")
def sb_onnx(sb_model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_for_tests(sb_model, tmp_path_factory.mktemp("onnx") / "cifar_resnet20_sb.onnx")
