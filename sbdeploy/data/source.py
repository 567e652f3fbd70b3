"""SOURCE strings -> in-memory datasets with train/test splits, class names and statistics.

A SOURCE names where the images come from:

=========================  ==========================================================
``digits``                 scikit-learn's handwritten digits (real, built in, 10 classes, 1 channel)
``synthetic``              random class templates plus noise, for smoke tests (10 classes, 3 channels)
``cifar10:PATH``           CIFAR-10 python-version folder (``cifar-10-batches-py``)
``cifar100:PATH``          CIFAR-100 python-version folder (``cifar-100-python``), fine labels
``imagefolder:PATH``       a tree with one sub-folder per class (optionally ``train/`` + ``test/``)
``PATH``                   a folder, detected as CIFAR-10, CIFAR-100 or an image folder
=========================  ==========================================================

Normalization statistics are the standard ones for CIFAR and are computed from the
training split otherwise; they travel into the checkpoint's ``config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sbdeploy.data import SOURCE_HELP, cifar
from sbdeploy.errors import DataError


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


def _with_stats(
    source: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    class_names: tuple[str, ...],
    *,
    pad: int,
    flip: bool,
) -> ImageData:
    mean, std = channel_stats(train[0])
    return ImageData(source, train[0], train[1], test[0], test[1], class_names, mean, std, pad=pad, flip=flip)


def open_source(source: str, *, size: int | None = None) -> ImageData:
    """Load the dataset a SOURCE string names (see the module docstring).

    Args:
        source: the SOURCE string.
        size: image height and width for sources that are resized (digits, synthetic, image
            folders; default 32). CIFAR is always 32x32 and refuses another size.
    """
    kind, sep, rest = source.partition(":")
    if not sep and kind not in ("digits", "synthetic"):
        kind, rest = "auto", source
    if size is not None and size < 8:
        raise DataError(f"image size must be at least 8, got {size}")
    side = size or 32
    if kind == "digits":
        from sbdeploy.data.digits import CLASS_NAMES, load_digits

        train = tuple(torch.from_numpy(a) for a in load_digits("train", side))
        test = tuple(torch.from_numpy(a) for a in load_digits("test", side))
        # No flips: a mirrored digit is another symbol.
        return _with_stats("digits", train, test, CLASS_NAMES, pad=max(1, side // 8), flip=False)  # type: ignore[arg-type]
    if kind == "synthetic":
        from sbdeploy.data.synthetic import load_synthetic

        train, test = load_synthetic("train", side), load_synthetic("test", side)
        return _with_stats("synthetic", train, test, tuple(f"class{i}" for i in range(10)), pad=0, flip=False)
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
        else:
            from sbdeploy.data.imagefolder import is_image_folder

            if not is_image_folder(path):
                raise DataError(
                    f"{path} is neither a CIFAR python-version folder nor an image folder (ROOT/<class>/<image>)"
                )
            kind = "imagefolder"
    if kind in ("cifar10", "cifar100"):
        if size not in (None, 32):
            raise DataError(f"CIFAR images are 32x32; drop --size {size}")
        variant = int(kind[5:])
        train_x, train_y, names = cifar.load_cifar(path, "train", variant=variant)
        test_x, test_y, _ = cifar.load_cifar(path, "test", variant=variant)
        mean, std = (
            (cifar.CIFAR10_MEAN, cifar.CIFAR10_STD) if variant == 10 else (cifar.CIFAR100_MEAN, cifar.CIFAR100_STD)
        )
        return ImageData(f"{kind}:{path}", train_x, train_y, test_x, test_y, names, mean, std, pad=4, flip=True)
    if kind == "imagefolder":
        from sbdeploy.data.imagefolder import load_image_folder

        splits, names = load_image_folder(path, side)
        return _with_stats(
            f"imagefolder:{path}", splits["train"], splits["test"], names, pad=max(1, side // 8), flip=True
        )
    raise DataError(f"unknown data source kind {kind!r} in {source!r}; sources: {SOURCE_HELP}")
