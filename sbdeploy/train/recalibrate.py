"""BatchNorm recalibration: running statistics re-estimated on training images, no gradient.

For a network whose weights changed after training (an sbified baseline): each BN ends with the
plain average of its batch statistics (``torch.optim.swa_utils.update_bn``); weights are not touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from sbdeploy.data import ImageData
from sbdeploy.errors import ConfigError
from sbdeploy.train.evaluate import normalize


@dataclass(frozen=True)
class Recalibration:
    """What a recalibration ran over."""

    bn_layers: int
    images: int
    batches: int


def calibration_images(data: ImageData, count: int | None, *, seed: int = 0) -> torch.Tensor:
    """``count`` training images (all of them when None or more), drawn without replacement by ``seed``."""
    total = len(data.train_labels)
    if count is None or count >= total:
        return data.train_images
    if count < 1:
        raise ConfigError(f"calibration needs at least 1 image, got {count}")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count]
    return data.train_images[order.sort().values]


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    on_batch: Callable[[int, int], None] | None = None,
) -> Recalibration:
    """Re-estimate every BatchNorm's running statistics of ``model`` (in place) on raw training ``images``."""
    layers = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if layers == 0:
        raise ConfigError(f"{type(model).__name__} has no BatchNorm layer to recalibrate")
    batches = images.split(batch_size)

    def normalized() -> Iterator[torch.Tensor]:
        for index, batch in enumerate(batches, start=1):
            yield normalize(batch.to(device), mean, std)
            if on_batch is not None:
                on_batch(index, len(batches))

    update_bn(normalized(), model)
    return Recalibration(bn_layers=layers, images=len(images), batches=len(batches))
