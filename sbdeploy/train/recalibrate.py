"""BatchNorm recalibration: running statistics re-estimated on training images, no gradient.

A network whose weights were changed after training (an sbified baseline: the SB's mid
BN now sees sampled positions only, and every later BN sees the changed activations)
keeps running statistics that no longer describe its activations. Recalibration resets
them and runs the network in training mode over clean (unaugmented) training images with
``momentum=None``, so each BN holds the plain average of its batch statistics, which is
what ``torch.optim.swa_utils.update_bn`` does (used here). Weights are not touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from sbdeploy.data import ImageData, to_float
from sbdeploy.errors import ConfigError
from sbdeploy.train.evaluate import normalize, stats_tensors


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


def normalized_batches(
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> Iterator[torch.Tensor]:
    """Raw images as normalized float batches on ``device``, in order."""
    device = torch.device(device)
    m, s = stats_tensors(mean, std, device)
    for start in range(0, len(images), batch_size):
        yield normalize(to_float(images[start : start + batch_size]).to(device), m, s)


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
    """Re-estimate every BatchNorm's running statistics of ``model`` (in place) on ``images``.

    Args:
        model: the network; its training/eval mode is restored afterwards.
        images: raw training images (uint8 or [0, 1] float), e.g. :func:`calibration_images`.
        mean: per-channel normalization mean the model expects.
        std: per-channel normalization std.
        batch_size: images per forward pass (the batch statistics averaged).
        device: where to run.
        on_batch: called with (batches done, batches in all) after each batch.
    """
    layers = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if layers == 0:
        raise ConfigError(f"{type(model).__name__} has no BatchNorm layer to recalibrate")
    total = -(-len(images) // batch_size)

    def batches() -> Iterator[torch.Tensor]:
        for index, batch in enumerate(
            normalized_batches(images, mean, std, batch_size=batch_size, device=device), start=1
        ):
            yield batch
            if on_batch is not None:
                on_batch(index, total)

    update_bn(batches(), model)
    return Recalibration(bn_layers=layers, images=len(images), batches=total)
