"""SOURCE strings (:data:`sbdeploy.data.SOURCE_HELP`) -> in-memory datasets with train/test splits and class names.

Normalization statistics: CIFAR's standard ones, else computed from the training split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sbdeploy.data import SOURCE_HELP, cifar
from sbdeploy.data.digits import CLASS_NAMES, load_digits
from sbdeploy.data.imagefolder import is_image_folder, load_image_folder
from sbdeploy.data.synthetic import load_synthetic
from sbdeploy.errors import DataError

Split = tuple[torch.Tensor, torch.Tensor]  # images, labels


@dataclass(frozen=True)
class ImageData:
    """A dataset held in memory: images are uint8 in [0, 255] or float32 in [0, 1], ``[N, C, H, W]``."""

    source: str  # the SOURCE string, as recorded in checkpoints
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int = 0  # default augmentation of this source: reflect padding before a random crop
    flip: bool = False  # default augmentation: random horizontal flip

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_chans(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def input_size(self) -> tuple[int, int]:
        return (int(self.train_images.shape[2]), int(self.train_images.shape[3]))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float32 in [0, 1]; float images unchanged."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation (in [0, 1] units) of ``[N, C, H, W]`` images."""
    x = to_float(images).transpose(0, 1).reshape(images.shape[1], -1).double()
    std = x.std(dim=1).clamp_min(1e-6)
    return tuple(round(v, 6) for v in x.mean(dim=1).tolist()), tuple(round(v, 6) for v in std.tolist())


def _with_stats(source: str, train: Split, test: Split, names: tuple[str, ...], pad: int, flip: bool) -> ImageData:
    return ImageData(source, *train, *test, names, *channel_stats(train[0]), pad=pad, flip=flip)


def open_source(source: str, *, size: int | None = None) -> ImageData:
    """Load the dataset a SOURCE string names; ``size``: the side of resized sources (default 32; CIFAR refuses others)."""
    kind, sep, rest = source.partition(":")
    if not sep and kind not in ("digits", "synthetic"):
        kind, rest = "auto", source
    if size is not None and size < 8:
        raise DataError(f"image size must be at least 8, got {size}")
    side = size or 32
    if kind == "digits":
        train, test = (tuple(map(torch.from_numpy, load_digits(split, side))) for split in ("train", "test"))
        # No flips: a mirrored digit is another symbol.
        return _with_stats("digits", train, test, CLASS_NAMES, max(1, side // 8), False)
    if kind == "synthetic":
        train, test = load_synthetic("train", side), load_synthetic("test", side)
        return _with_stats("synthetic", train, test, tuple(f"class{i}" for i in range(10)), 0, False)
    if not rest:
        raise DataError(f"data source {source!r} needs a path after the colon; sources: {SOURCE_HELP}")
    path = Path(rest).expanduser()
    if kind == "auto":
        if not path.exists():
            raise DataError(
                f"unknown data source {source!r}: not a built-in name and no such folder; sources: {SOURCE_HELP}"
            )
        variant = cifar.detect_cifar(path)
        if variant:
            kind = f"cifar{variant}"
        elif is_image_folder(path):
            kind = "imagefolder"
        else:
            raise DataError(
                f"{path} is neither a CIFAR python-version folder nor an image folder (ROOT/<class>/<image>)"
            )
    if kind in ("cifar10", "cifar100"):
        if size not in (None, 32):
            raise DataError(f"CIFAR images are 32x32; drop --size {size}")
        variant = int(kind[5:])
        train_x, train_y, names = cifar.load_cifar(path, "train", variant=variant)
        test_x, test_y, _ = cifar.load_cifar(path, "test", variant=variant)
        return ImageData(
            f"{kind}:{path}", train_x, train_y, test_x, test_y, names, *cifar.STATS[variant], pad=4, flip=True
        )
    if kind == "imagefolder":
        splits, names = load_image_folder(path, side)
        return _with_stats(f"imagefolder:{path}", splits["train"], splits["test"], names, max(1, side // 8), True)
    raise DataError(f"unknown data source kind {kind!r} in {source!r}; sources: {SOURCE_HELP}")
