"""BN recalibration: running statistics become the average of the batch statistics; nothing else changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sbdeploy.data import open_source
from sbdeploy.errors import ConfigError
from sbdeploy.train import calibration_images, recalibrate_bn


def test_running_statistics_are_the_average_of_the_batch_statistics() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3)).eval()
    model[1].running_mean.fill_(5.0)
    model[1].running_var.fill_(7.0)
    weights = {k: v.clone() for k, v in model.named_parameters()}
    images = torch.rand(8, 2, 5, 5)
    mean, std = (0.5, 0.4), (0.2, 0.3)
    calls: list[tuple[int, int]] = []
    result = recalibrate_bn(
        model, images, mean, std, batch_size=4, on_batch=lambda done, total: calls.append((done, total))
    )
    assert result.bn_layers == 1 and result.images == 8 and result.batches == 2 and calls == [(1, 2), (2, 2)]
    assert not model.training and model[1].momentum == 0.1  # mode and momentum restored
    x = (images - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
    with torch.no_grad():
        y = model[0](x)
    halves = [y[:4].transpose(0, 1).reshape(3, -1), y[4:].transpose(0, 1).reshape(3, -1)]
    assert torch.allclose(model[1].running_mean, sum(h.mean(1) for h in halves) / 2, atol=1e-6)
    assert torch.allclose(model[1].running_var, sum(h.var(1) for h in halves) / 2, atol=1e-6)
    assert all(torch.equal(v, weights[k]) for k, v in model.named_parameters())


def test_refuses_a_model_without_batchnorm() -> None:
    with pytest.raises(ConfigError, match="no BatchNorm"):
        recalibrate_bn(nn.Conv2d(1, 1, 1), torch.rand(2, 1, 4, 4), (0.5,), (0.2,))


def test_calibration_images_are_a_seeded_subset() -> None:
    data = open_source("synthetic", size=8)
    total = len(data.train_labels)
    assert calibration_images(data, None).shape[0] == total == calibration_images(data, total + 5).shape[0]
    a, b, c = (calibration_images(data, 10, seed=s) for s in (0, 0, 1))
    assert a.shape[0] == 10 and torch.equal(a, b) and not torch.equal(a, c)
