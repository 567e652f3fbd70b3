"""Accuracy of a model on a dataset split, and of a checkpoint folder on a SOURCE."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sbdeploy.checkpoint import CheckpointConfig, load_checkpoint
from sbdeploy.data import ImageData, open_source, to_float
from sbdeploy.errors import DataError


@dataclass(frozen=True)
class Accuracy:
    """Top-1 (and top-5 where there are more than 5 classes) accuracy and mean loss."""

    top1: float
    top5: float | None
    loss: float
    count: int


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Raw images (uint8, or float in [0, 1]) as ``(x - mean) / std`` per channel, on the images' device."""
    x = to_float(images)
    return (x - x.new_tensor(mean).view(-1, 1, 1)) / x.new_tensor(std).view(-1, 1, 1)


@torch.no_grad()
def measure_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> Accuracy:
    """Evaluate ``model`` (in eval mode, its mode restored afterwards) on raw images normalized by ``mean``/``std``."""
    was_training = model.training
    model.eval()
    correct1 = correct5 = num_classes = 0
    loss_sum = 0.0
    for x, y in zip(images.split(batch_size), labels.split(batch_size)):
        y = y.to(device)
        logits = model(normalize(x.to(device), mean, std))
        num_classes = logits.shape[1]
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        top = logits.topk(min(5, num_classes), dim=1).indices
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(dim=1).sum())
    model.train(was_training)
    n = max(len(labels), 1)
    return Accuracy(correct1 / n, correct5 / n if num_classes > 5 else None, loss_sum / n, len(labels))


@dataclass(frozen=True)
class EvalResult:
    """``sbdeploy evaluate``'s answer."""

    checkpoint: Path
    arch: str
    source: str
    split: str
    accuracy: Accuracy
    recorded_accuracy: float | None  # the test accuracy stored in config.json, if any
    time_s: float


def open_fitting_source(source: str, config: CheckpointConfig) -> ImageData:
    """Open a SOURCE at a checkpoint's input size; DataError unless its channels, size and classes fit it."""
    height, width = config.input_size
    if height != width:
        raise DataError(f"checkpoint input size {height}x{width} is not square; data sources give square images")
    data = open_source(source, size=height)
    if data.in_chans != config.in_chans or data.input_size != config.input_size:
        raise DataError(
            f"{source} gives {data.in_chans}-channel {data.input_size[0]}x{data.input_size[1]} images; "
            f"the checkpoint expects {config.in_chans}-channel {height}x{width}"
        )
    if data.class_names != config.class_names:
        raise DataError(
            f"{source} has classes {list(data.class_names)[:5]}... ({data.num_classes}); the checkpoint was trained on "
            f"{list(config.class_names)[:5]}... ({config.num_classes}); labels would not mean the same thing"
        )
    return data


def evaluate_checkpoint(
    path: str | Path, source: str, *, split: str = "test", batch_size: int = 256, device: str = "cpu"
) -> EvalResult:
    """Load a checkpoint folder and measure its accuracy on a split of a SOURCE (CheckpointError, DataError)."""
    ckpt = load_checkpoint(path)
    cfg = ckpt.config
    data = open_fitting_source(source, cfg)
    if split not in ("train", "test"):
        raise DataError(f"split must be train or test, got {split!r}")
    images, labels = (data.test_images, data.test_labels) if split == "test" else (data.train_images, data.train_labels)
    start = time.perf_counter()
    ckpt.model.to(device)
    acc = measure_accuracy(ckpt.model, images, labels, cfg.mean, cfg.std, batch_size=batch_size, device=device)
    recorded = cfg.metrics.get("test_accuracy")
    return EvalResult(
        checkpoint=Path(path),
        arch=cfg.arch,
        source=data.source,
        split=split,
        accuracy=acc,
        recorded_accuracy=float(recorded) if recorded is not None else None,
        time_s=time.perf_counter() - start,
    )
