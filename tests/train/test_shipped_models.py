"""The checkpoints committed under models/: they load, and reach their recorded test accuracy on digits."""

from __future__ import annotations

from pathlib import Path

import pytest

from sbdeploy.train.evaluate import evaluate_checkpoint

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = {"digits_resnet20": "cifar_resnet20", "digits_resnet20_sb": "cifar_resnet20_sb"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_reaches_its_recorded_accuracy(name: str) -> None:
    result = evaluate_checkpoint(MODELS / name, "digits")
    assert result.arch == SHIPPED[name]
    assert result.accuracy.count == 359
    assert result.recorded_accuracy is not None
    assert result.accuracy.top1 == pytest.approx(result.recorded_accuracy, abs=1e-5)
    assert result.accuracy.top1 >= 0.95
